"""Areas' own faults where a device above them is contradicted, and where the area is silent.

A feeder whose areas hang straight off its head breaker (IEEE 123 imported: 86 areas, two
devices) has nothing between an area's own fault and the breaker. One area's own fault and two
false reports elsewhere used to be pinned on the breaker at ~1.0, though areas under it report
alive; and a lone report was that area's own fault at ~1.0, though any silent area's own fault
with the report false explains it too.
"""

from __future__ import annotations

import pytest

from outage_sentinel.localise import Evidence, LocaliserParams, localise
from outage_sentinel.topology import Topology, topology_from_records

AREAS = [f"T{k}" for k in range(1, 21)]


@pytest.fixture(scope="module")
def flat() -> Topology:
    """Source S, breaker B, a bus J, and 20 areas of 30 customers on J."""
    edges = [("S", "B"), ("B", "J"), *[("J", t) for t in AREAS]]
    kinds = {"S": "source", "B": "breaker", "J": "junction"}
    nodes = [{"id": n, "kind": kinds.get(n, "transformer"), "name": n, "feeder": "FD",
              "normally_open": 0, "village": "V" if n.startswith("T") else "",
              "customers": 30 if n.startswith("T") else 0, "lat": "", "lon": ""}
             for n in ["S", "B", "J", *AREAS]]
    villages = [{"id": "V", "name": "V", "township": "t", "grid": "g", "area_type": "rural"}]
    return topology_from_records(nodes, edges, villages)


def test_reports_among_alive_areas_are_not_pinned_on_the_breaker(flat: Topology) -> None:
    # three dead reports, one with calls, among areas reporting alive: the breaker is
    # contradicted by six alive reports, so the areas' own faults are scored
    result = localise(flat, Evidence(dead={"T2", "T9", "T15"}, calls={"T9": 3},
                                     alive={"T1", "T4", "T7", "T11", "T13", "T18"}))
    top = result.hypotheses[0]
    assert top.devices == ("T9",)  # the one whose customers call
    assert top.transformers == ("T9",)
    breaker = [h.probability for h in result.hypotheses if h.devices == ("B",)]
    assert sum(breaker) < 0.01


def test_too_many_reports_under_one_device_stay_its_fault(flat: Topology) -> None:
    # seven dead reports under the breaker beside one alive one: beyond the limit the
    # breaker (one stale alive reading) explains them, not seven own faults
    dead = {f"T{k}" for k in range(1, 8)}
    result = localise(flat, Evidence(dead=dead, alive={"T12"}))
    assert result.hypotheses[0].devices == ("B",)


def test_a_lone_report_shares_its_probability_with_silent_areas_own_faults(
        flat: Topology) -> None:
    params = LocaliserParams(transformer_prior_factor=0.05)  # own faults common (fitted)
    result = localise(flat, Evidence(dead={"T3"}, alive={"T1", "T2", "T4", "T5"}), params)
    top = result.hypotheses[0]
    assert top.devices == ("T3",)
    # the other 15 silent areas (no alive report) might be the fault, T3's report false
    silent = [h for h in result.hypotheses[1:] if h.devices[0] in AREAS]
    assert silent and all(h.devices[0] not in {"T1", "T2", "T4", "T5"} for h in silent)
    assert 0.3 < top.probability < 0.95
    assert sum(h.probability for h in result.hypotheses) <= 1.0 + 1e-9


def test_no_silent_own_faults_when_the_county_has_none(flat: Topology) -> None:
    params = LocaliserParams(transformer_prior_factor=0.0)
    result = localise(flat, Evidence(dead={"T3"}, alive={"T1", "T2", "T4", "T5"}), params)
    assert all(not h.devices[0].startswith("T") for h in result.hypotheses)
