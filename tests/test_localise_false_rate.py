"""The window's false dead rate integrated out (``false_dead_shape``): a beta-binomial over the
energised areas, and its shape fitted from the spread of false reports between close-outs."""

from __future__ import annotations

import math

import pytest

from outage_sentinel import localise as loc
from outage_sentinel.fitting import fit
from outage_sentinel.localise import Evidence, LocaliserParams
from tests.localise_fixture import build
from tests.test_fitting import TOPOLOGY, history, solved


def component(shape: float) -> loc._Component:
    topo = build()
    resolved = loc._resolve(topo, Evidence(dead={"T1"}))
    return loc._Component(topo, topo.pos["S1"], resolved, [],
                          LocaliserParams(false_dead_shape=shape, false_dead_per_area=0.02))


@pytest.mark.parametrize("shape", [0.0, 0.5, 4.0])
def test_the_false_report_count_is_a_distribution(shape: float) -> None:
    comp = component(shape)
    m = 40
    total = sum(math.comb(m, k) * math.exp(comp.false_dead_ll(k, m)) for k in range(m + 1))
    assert total == pytest.approx(1.0, rel=1e-9)


def test_an_uncertain_rate_makes_several_false_reports_in_one_window_likelier() -> None:
    known, uncertain = component(0.0), component(1.0)
    for k in (3, 5):
        assert uncertain.false_dead_ll(k, 40) > known.false_dead_ll(k, 40)


def test_the_fit_finds_false_reports_clustered_by_window() -> None:
    clustered = solved(history(150, 1, false_rate=0.0) + history(150, 2, false_rate=0.12))
    even = solved(history(300, 3, false_rate=0.06))
    # a small shape = a rate that varies a lot between windows; 0 = a known rate, and a
    # large shape is all but known (what sampling noise leaves on independent reports)
    assert 0.0 < fit(TOPOLOGY, clustered, LocaliserParams()).params.false_dead_shape < 2.0
    even_shape = fit(TOPOLOGY, even, LocaliserParams()).params.false_dead_shape
    assert even_shape == 0.0 or even_shape > 3.0
