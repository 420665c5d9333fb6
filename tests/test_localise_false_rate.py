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
    total = sum(math.comb(m, k) * math.exp(comp.lik.false_dead_ll(k, m)) for k in range(m + 1))
    assert total == pytest.approx(1.0, rel=1e-9)


def test_an_uncertain_rate_makes_several_false_reports_in_one_window_likelier() -> None:
    known, uncertain = component(0.0), component(1.0)
    for k in (3, 5):
        assert uncertain.lik.false_dead_ll(k, 40) > known.lik.false_dead_ll(k, 40)


def test_the_fit_finds_false_reports_clustered_by_window() -> None:
    clustered = solved(history(150, 1, false_rate=0.0) + history(150, 2, false_rate=0.12))
    even = solved(history(300, 3, false_rate=0.06))
    # a small shape = a rate that varies a lot between windows; 0 = a known rate, and a
    # large shape is all but known (what sampling noise leaves on independent reports)
    assert 0.0 < fit(TOPOLOGY, clustered, LocaliserParams()).params.false_dead_shape < 2.0
    even_shape = fit(TOPOLOGY, even, LocaliserParams()).params.false_dead_shape
    assert even_shape == 0.0 or even_shape > 3.0


def flaky_history(n: int, seed: int, flaky: str, rate: float) -> list[dict[str, object]]:
    """history() with one area reporting dead falsely in ``rate`` of the windows it is
    energised in (and 1 % false reports elsewhere)."""
    import random

    from outage_sentinel.fitting import downstream

    rng = random.Random(seed)
    cases = history(n, seed, false_rate=0.01)
    for c in cases:
        dead = set(downstream(TOPOLOGY, c["truth"]["devices"][0]))  # type: ignore[index]
        root = TOPOLOGY.ids[TOPOLOGY.root[TOPOLOGY.pos[c["truth"]["devices"][0]]]]  # type: ignore[index]
        if flaky in downstream(TOPOLOGY, root) and flaky not in dead and rng.random() < rate:
            c["dead"] = sorted(set(c["dead"]) | {flaky})  # type: ignore[call-overload]
    return cases


FLAKY = sorted(a for a in TOPOLOGY.transformers)[7]


def test_the_fit_gives_a_flaky_area_its_own_false_rate() -> None:
    params = fit(TOPOLOGY, solved(flaky_history(600, 4, FLAKY, 0.4)), LocaliserParams()).params
    own = dict(params.false_dead_areas)
    assert FLAKY in own and own[FLAKY] == pytest.approx(0.4, abs=0.12)
    assert len(own) <= 3  # chance reports elsewhere do not qualify
    assert params.false_dead_per_area == pytest.approx(0.01, abs=0.005)


def test_a_history_without_flaky_areas_gives_none() -> None:
    params = fit(TOPOLOGY, solved(history(600, 5, false_rate=0.02)), LocaliserParams()).params
    assert params.false_dead_areas == ()


def test_a_flaky_area_report_weighs_less_than_an_ordinary_one() -> None:
    # T3 alone reported dead beside the clear F1 fault: with T3 a known flaky terminal, the
    # second device above it (F2) is less likely than with T3 an ordinary one
    from outage_sentinel.localise import FaultContext, localise

    topo = build()
    ev = Evidence(dead={"T1", "T2", "T3"}, alive={"T4", "T7"}, calls={"T1": 3, "T2": 2})
    storm = FaultContext(storm=True)

    def f1_f2(params: LocaliserParams) -> float:
        return sum(h.probability for h in localise(topo, ev, params, storm).hypotheses
                   if set(h.devices) == {"F1", "F2"})

    assert f1_f2(LocaliserParams(false_dead_areas=(("T3", 0.3),))) < f1_f2(LocaliserParams())


def test_a_county_rate_above_the_default_cap_is_priced_as_learnt() -> None:
    # small feeders, one false report each: 1 in 6 areas. The cap is for the default's guess
    # (false_dead_per_feeder / N); a rate learnt from close-outs was cut to it, and a fuse's
    # own reports beside two false ones were priced as unlikely (the breaker stated at 0.98)
    learnt = fit(TOPOLOGY, solved(history(2000, 5, false_rate=0.15)), LocaliserParams()).params
    assert learnt.false_dead_per_area == pytest.approx(0.15, abs=0.03)
    assert loc.false_dead_rate(learnt, 100) == learnt.false_dead_per_area
    assert loc.false_dead_rate(LocaliserParams(), 5) == LocaliserParams().false_dead_max_rate
    topo = build()
    ev = Evidence(dead={"T1", "T2", "T5", "T7"})  # F1's region and two areas elsewhere

    def fuse_probability(rate: float) -> float:
        result = loc.localise(topo, ev, LocaliserParams(false_dead_per_area=rate))
        return sum(h.probability for h in result.hypotheses if h.devices == ("F1",))

    assert fuse_probability(0.15) > fuse_probability(0.05) + 0.05
