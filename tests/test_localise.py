"""The localiser on a small two-feeder network (see tests/localise_fixture.py)."""

from __future__ import annotations

import math

import pytest

from outage_sentinel.localise import (
    Evidence,
    FaultContext,
    Hypothesis,
    LocaliserParams,
    localise,
    naive_common_ancestor,
)
from outage_sentinel.topology import Topology, topology_from_records
from tests.localise_fixture import build


@pytest.fixture(scope="module")
def topo() -> Topology:
    return build()


def best(topo: Topology, **kwargs: object) -> Hypothesis:
    result = localise(topo, Evidence(**kwargs))  # type: ignore[arg-type]
    assert result.hypotheses, "expected at least one hypothesis"
    return result.hypotheses[0]


def test_dead_reports_point_at_the_lateral_fuse(topo: Topology) -> None:
    h = best(topo, dead={"T1", "T2"})
    assert h.devices == ("F1",)
    assert set(h.transformers) == {"T1", "T2"}
    assert h.customers == 70
    assert h.villages == ("V1",)
    assert h.important_customers == ("C-HOSP",)
    assert h.section[0] == "F1" and set(h.section) == {"F1", "J3", "T1", "T2"}
    assert h.feeders == ("FD1",)


def test_probabilities_are_ranked_and_sum_to_at_most_one(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1"}))
    probs = [h.probability for h in result.hypotheses]
    assert probs == sorted(probs, reverse=True)
    assert 0.5 < probs[0] <= 1.0
    assert sum(probs) <= 1.0 + 1e-9
    assert result.hypotheses[0].devices == ("F1",)


def test_dead_reports_on_two_laterals_blame_the_recloser(topo: Topology) -> None:
    h = best(topo, dead={"T1", "T2", "T3", "T4"})
    assert h.devices == ("R1",)
    assert h.customers == 140
    assert set(h.important_customers) == {"C-HOSP", "C-LIFE"}


def test_trouble_calls_alone_localise(topo: Topology) -> None:
    result = localise(topo, Evidence.from_call_list(["T3", "T3", "T3"]))
    assert result.hypotheses[0].devices == ("F2",)


def test_calls_by_customer_id_are_mapped_to_their_area(topo: Topology) -> None:
    result = localise(topo, Evidence.from_call_list(["C-LIFE", "C-LIFE", "C-LIFE"]))
    assert result.hypotheses[0].devices == ("F2",)
    assert result.unknown == []


def test_device_reported_open_is_the_answer_without_area_reports(topo: Topology) -> None:
    h = best(topo, open_devices={"R1"})
    assert h.devices == ("R1",)
    assert h.probability > 0.9
    # A call source watched and nobody called from R1's many customers: "another device
    # operated, its region sent nothing and the open report is false" (the silent-region
    # hypothesis) now competes, and the answer is stated with less certainty.
    watched = best(topo, open_devices={"R1"}, calls_observed=True)
    assert watched.devices == ("R1",) and 0.5 < watched.probability < h.probability


def test_open_report_beats_ambiguous_area_reports(topo: Topology) -> None:
    # T1 alone would say F1; SCADA saying R1 tripped moves the answer up to R1.
    assert best(topo, dead={"T1"}).devices == ("F1",)
    assert best(topo, dead={"T1"}, open_devices={"R1"}).devices == ("R1",)


def test_alive_evidence_vetoes_the_common_ancestor(topo: Topology) -> None:
    # Dead areas under F1 and F3 share only B1 upstream; the naive answer is B1.
    dead = {"T1", "T2", "T5", "T6"}
    assert naive_common_ancestor(topo, Evidence(dead=dead)).hypotheses[0].devices == ("B1",)
    h = best(topo, dead=dead, alive={"T7", "T8", "T4"}, calls={"T1": 3, "T5": 4})
    assert set(h.devices) == {"F1", "F3"}
    assert "B1" not in h.devices and "R1" not in h.devices


def test_a_false_dead_report_does_not_move_the_answer_to_the_breaker(topo: Topology) -> None:
    # F1 area reported and called in; one lone report on T7 with alive neighbours.
    evidence = Evidence(dead={"T1", "T2", "T7"}, alive={"T8", "T5"},
                        calls={"T1": 4, "T2": 3})
    assert naive_common_ancestor(topo, evidence).hypotheses[0].devices == ("B1",)
    assert localise(topo, evidence).hypotheses[0].devices == ("F1",)


def test_contradicting_alive_report_inside_the_candidate(topo: Topology) -> None:
    # Everything under R1 reported dead except T4, which is reported alive: R1 is
    # contradicted, so the two fuses are blamed instead.
    h = best(topo, dead={"T1", "T2", "T3"}, alive={"T4"}, calls={"T1": 3, "T3": 4})
    assert "R1" not in h.devices
    assert set(h.devices) == {"F1", "F2"}


def test_normally_open_tie_keeps_feeders_apart(topo: Topology) -> None:
    # T5 (FD1, beside the tie) and T9 (FD2, beside the tie) dead: two faults, one per feeder,
    # never a common device across the open tie.
    h = best(topo, dead={"T5", "T6", "T9", "T10"})
    assert set(h.devices) == {"F3", "F4"}
    assert set(h.feeders) == {"FD1", "FD2"}


def test_normally_open_tie_reported_open_is_not_a_fault(topo: Topology) -> None:
    result = localise(topo, Evidence(open_devices={"TIE"}))
    assert result.hypotheses == []


def test_mixed_feeders_combine_per_feeder_answers(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T3", "T11"}, calls={"T3": 5, "T11": 3}))
    top = result.hypotheses[0]
    assert set(top.devices) == {"F2", "B2"}
    # alternatives vary one feeder at a time
    assert all(len(h.devices) >= 2 for h in result.hypotheses[:2])


def test_a_lone_dead_area_beside_areas_reporting_alive_may_be_its_own_transformer(
        topo: Topology) -> None:
    # T1 dead, T2 (same fuse F1) alive: F1 is ruled out; "T1's own transformer / drop-out
    # fuse" is a hypothesis of its own, its region T1 alone.
    ev = Evidence(dead={"T1"}, alive={"T2"})
    result = localise(topo, ev)
    probs = {h.devices: h.probability for h in result.hypotheses}
    assert probs.get(("F1",), 0.0) < 0.01
    own = next(h for h in result.hypotheses if h.devices == ("T1",))
    assert own.transformers == ("T1",) and own.customers == 40 and own.section == ("T1",)
    # switched off, the hypothesis is gone (as before it existed)
    off = localise(topo, ev, LocaliserParams(transformer_prior_factor=0.0))
    assert all("T1" not in h.devices for h in off.hypotheses)
    # six calls from T1 alone, T2's 30 customers silent: no false report looks like that,
    # and T1's own fault is the answer (the fuse above would leave T2 dead)
    calls = localise(topo, Evidence(dead={"T1"}, alive={"T2"}, calls={"T1": 6}))
    assert calls.hypotheses[0].devices == ("T1",) and calls.hypotheses[0].probability > 0.9
    # a fitted county where areas' own faults are common says so with less evidence
    common = LocaliserParams(kind_factors=(("transformer", 0.5),))
    assert localise(topo, ev, common).hypotheses[0].devices == ("T1",)


def test_planned_outage_explains_its_areas(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1", "T2", "T3", "T4"}, planned={"R1"}))
    assert result.hypotheses == []
    assert result.explained == ["T1", "T2", "T3", "T4"]


def test_planned_outage_leaves_other_faults_visible(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1", "T2", "T5", "T6"}, planned={"F1"},
                                     calls={"T5": 4}))
    assert result.hypotheses[0].devices == ("F3",)
    assert set(result.explained) == {"T1", "T2"}


def test_planned_transformer_area_is_excluded(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T3"}, planned={"T3"}))
    assert result.hypotheses == []
    assert result.explained == ["T3"]


def test_planned_area_is_not_counted_as_affected(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1", "T2", "T3", "T4"}, planned={"T4"}))
    top = result.hypotheses[0]
    assert top.devices == ("R1",)
    assert "T4" not in top.transformers
    assert top.customers == 120


def test_nested_outage_under_an_open_recloser(topo: Topology) -> None:
    # While R1 is open, reports below it are explained by it; nothing new to blame.
    held = localise(topo, Evidence(dead={"T1", "T2", "T3", "T4"}, known_open={"R1"}))
    assert held.hypotheses == []
    # R1 closes again: T3/T4 come back, T1/T2 stay dark - the fuse F1 blew beneath it.
    after = localise(topo, Evidence(dead={"T1", "T2"}, alive={"T3", "T4"}))
    assert after.hypotheses[0].devices == ("F1",)


def test_new_fault_elsewhere_while_a_recloser_is_open(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1", "T5", "T6"}, known_open={"R1"},
                                     calls={"T5": 3}))
    assert result.hypotheses[0].devices == ("F3",)
    assert result.explained == ["T1"]


def test_unknown_ids_are_reported_not_fatal(topo: Topology) -> None:
    result = localise(topo, Evidence(dead={"T1", "T2", "NOPE"}, alive={"J1"},
                                     open_devices={"T3", "GHOST"}, calls={"ZZ": 2}))
    assert result.hypotheses[0].devices == ("F1",)
    # J1 is a junction (not an area), T3 an area (not a device): both unusable as given.
    assert result.unknown == ["GHOST", "J1", "NOPE", "T3", "ZZ"]


def test_node_names_resolve(topo: Topology) -> None:
    assert best(topo, dead={"name-T1", "name-T2"}).devices == ("F1",)


def test_empty_evidence_gives_no_hypotheses(topo: Topology) -> None:
    result = localise(topo, Evidence())
    assert result.hypotheses == [] and result.unknown == []
    assert naive_common_ancestor(topo, Evidence()).hypotheses == []


def test_params_change_the_penalty_for_extra_devices(topo: Topology) -> None:
    evidence = Evidence(dead={"T1", "T2", "T5"}, alive={"T7", "T8", "T4"}, calls={"T5": 2})
    cautious = localise(topo, evidence, LocaliserParams(fault_prior=1e-12)).hypotheses[0]
    stormy = localise(topo, evidence, LocaliserParams(fault_prior=0.05)).hypotheses[0]
    assert len(stormy.devices) >= len(cautious.devices)
    assert set(stormy.devices) == {"F1", "F3"}
    assert len(cautious.devices) == 1


def test_to_json_is_serialisable(topo: Topology) -> None:
    import json

    result = localise(topo, Evidence(dead={"T1", "T2"}))
    doc = json.loads(json.dumps(result.to_json()))
    h = doc["hypotheses"][0]
    assert h["devices"] == ["F1"] and h["customers"] == 70
    assert set(h) >= {"devices", "probability", "transformers", "customers", "villages",
                      "important_customers", "section"}
    assert math.isclose(sum(x["probability"] for x in doc["hypotheses"]),
                        sum(x.probability for x in result.hypotheses), abs_tol=1e-5)


def test_evidence_accepts_lists_and_is_frozen() -> None:
    ev = Evidence(dead=["T1", "T1"], calls={"T2": 2, "T3": 0})  # type: ignore[arg-type]
    assert ev.dead == frozenset({"T1"})
    assert dict(ev.calls) == {"T2": 2}
    with pytest.raises(AttributeError):
        ev.dead = frozenset()  # type: ignore[misc]


# A clear fault at F1: its areas reported dead and calling, areas around it reported alive.
F1_DEAD = frozenset({"T1", "T2"})
F1_CALLS: dict[str, int] = {"T1": 4, "T2": 3}
F1_ALIVE = frozenset({"T7", "T4", "T8"})


def test_a_second_fault_with_reports_and_calls_is_found(topo: Topology) -> None:
    evidence = Evidence(dead=F1_DEAD | {"T5", "T6"}, alive=F1_ALIVE,
                        calls={**F1_CALLS, "T5": 5})
    assert set(localise(topo, evidence).hypotheses[0].devices) == {"F1", "F3"}


def test_silent_big_area_reported_dead_is_not_a_second_fault(topo: Topology) -> None:
    # T5/T6 (70 customers) reported dead but nobody there calls, while F1's area calls at
    # ~10 %: the call model says they are energised (dead modems), not a second fault.
    evidence = Evidence(dead=F1_DEAD | {"T5", "T6"}, alive=F1_ALIVE,
                        calls=F1_CALLS)
    assert localise(topo, evidence).hypotheses[0].devices == ("F1",)


def test_uncertain_fault_rate_makes_a_second_fault_likelier(topo: Topology) -> None:
    # One dead report and one call under F2 beside a clear F1 fault: with the fault rate
    # uncertain (bursty), one fault found makes another likelier and F2 is blamed too; with
    # devices failing independently at the same mean rate it is put down to false evidence.
    evidence = Evidence(dead=F1_DEAD | {"T3"}, alive=F1_ALIVE,
                        calls={**F1_CALLS, "T3": 1})
    bursty = LocaliserParams(fault_prior=1.2e-4, fault_rate_shape=0.1)
    assert set(localise(topo, evidence, bursty).hypotheses[0].devices) == {"F1", "F2"}
    independent = LocaliserParams(fault_prior=1.2e-4, fault_rate_shape=1e6)
    assert localise(topo, evidence, independent).hypotheses[0].devices == ("F1",)


# -- the weather of the window (FaultContext) ----------------------------------------------------

# F1 clearly out, and under F2 one dead report and one call: a second fault or false evidence?
WEAK_F2 = Evidence(dead=F1_DEAD | {"T3"}, alive=F1_ALIVE, calls={**F1_CALLS, "T3": 1})
QUIET_COUNTY = FaultContext(faults_elsewhere=0, devices_elsewhere=5000)
BUSY_COUNTY = FaultContext(faults_elsewhere=40, devices_elsewhere=5000)


def second_device_probability(topo: Topology, context: FaultContext | None) -> float:
    result = localise(topo, WEAK_F2, None, context)
    return sum(h.probability for h in result.hypotheses if set(h.devices) == {"F1", "F2"})


def test_a_declared_storm_accepts_a_weakly_reported_second_device(topo: Topology) -> None:
    calm = localise(topo, WEAK_F2, None, QUIET_COUNTY).hypotheses[0]
    storm = localise(topo, WEAK_F2, None, FaultContext(storm=True)).hypotheses[0]
    assert calm.devices == ("F1",)
    assert set(storm.devices) == {"F1", "F2"}


def test_devices_operated_elsewhere_in_the_county_make_a_second_device_likelier(
        topo: Topology) -> None:
    busy = localise(topo, WEAK_F2, None, BUSY_COUNTY).hypotheses[0]
    assert set(busy.devices) == {"F1", "F2"}
    quiet = second_device_probability(topo, QUIET_COUNTY)
    unknown = second_device_probability(topo, None)
    stormy = second_device_probability(topo, BUSY_COUNTY)
    assert quiet < unknown < stormy


def test_a_quiet_county_rejects_a_second_device_the_storm_prior_accepts(topo: Topology) -> None:
    # the reverse: one call alone under F2 beside the F1 fault is put down to a spurious call
    # in a calm window, and taken as a second fault in a declared storm
    evidence = Evidence(dead=F1_DEAD, alive=F1_ALIVE, calls={**F1_CALLS, "T3": 1})
    assert localise(topo, evidence, None, QUIET_COUNTY).hypotheses[0].devices == ("F1",)
    assert localise(topo, evidence).hypotheses[0].devices == ("F1",)
    stormy = localise(topo, evidence, None, FaultContext(storm=True)).hypotheses[0]
    assert set(stormy.devices) == {"F1", "F2"}


def test_storm_fault_prior_is_what_a_declared_storm_uses(topo: Topology) -> None:
    mild = LocaliserParams(storm_fault_prior=1e-6)
    h = localise(topo, WEAK_F2, mild, FaultContext(storm=True)).hypotheses[0]
    assert h.devices == ("F1",)


def test_no_context_is_a_calm_window(topo: Topology) -> None:
    a = localise(topo, WEAK_F2)
    b = localise(topo, WEAK_F2, None, FaultContext())
    assert [(h.devices, h.probability) for h in a.hypotheses] == \
        [(h.devices, h.probability) for h in b.hypotheses]


def test_a_lone_clear_fault_stays_single_in_a_storm(topo: Topology) -> None:
    evidence = Evidence(dead=F1_DEAD, alive=F1_ALIVE, calls=F1_CALLS)
    for context in (None, QUIET_COUNTY, BUSY_COUNTY, FaultContext(storm=True)):
        assert localise(topo, evidence, None, context).hypotheses[0].devices == ("F1",)


@pytest.mark.parametrize("kwargs", [
    {"storm": "yes"}, {"faults_elsewhere": -1, "devices_elsewhere": 5},
    {"faults_elsewhere": 3, "devices_elsewhere": 2}, {"devices_elsewhere": 2.5},
    {"faults_elsewhere": True, "devices_elsewhere": 3},
])
def test_fault_context_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultContext(**kwargs)  # type: ignore[arg-type]


def test_localise_rejects_a_context_of_the_wrong_type(topo: Topology) -> None:
    with pytest.raises(TypeError):
        localise(topo, WEAK_F2, None, {"storm": True})  # type: ignore[arg-type]


def test_calls_from_an_area_that_reports_alive_are_a_low_voltage_fault(topo: Topology) -> None:
    # F1's areas are dead and call; T3 (under F2, 50 customers) reports alive and six of its
    # customers call: a fault below its transformer, not the recloser above both laterals.
    evidence = Evidence(dead=F1_DEAD, alive={"T3", "T5", "T7"}, calls={**F1_CALLS, "T3": 6})
    h = localise(topo, evidence).hypotheses[0]
    assert h.devices == ("F1",) and h.probability > 0.9
    # Priced as six independent spurious calls (no low-voltage faults), they overrule the
    # alive report and blame the recloser.
    calls_only = LocaliserParams(lv_fault_rate=0.0)
    assert localise(topo, evidence, calls_only).hypotheses[0].devices == ("R1",)


def test_a_topology_the_localiser_used_is_freed_once_dropped() -> None:
    # the daemon reloads its topology on SIGHUP; the localiser's per-topology caches are
    # weak-keyed and must not keep a replaced topology (a province is a gigabyte) alive
    import gc
    import weakref

    nodes = [{"id": "S", "kind": "source", "feeder": "F"},
             {"id": "B", "kind": "breaker", "feeder": "F"}]
    nodes += [{"id": f"FU{k}", "kind": "fuse", "feeder": "F"} for k in range(6)]
    nodes += [{"id": f"T{k}", "kind": "transformer", "feeder": "F", "village": "V",
               "customers": 10} for k in range(60)]
    edges = [("S", "B"), *(("B", f"FU{k}") for k in range(6)),
             *((f"FU{k // 10}", f"T{k}") for k in range(60))]
    topo = topology_from_records(nodes, edges, [{"id": "V", "name": "V", "area_type": "rural"}])
    # more than 24 areas reported: the numpy path and its per-topology arrays
    localise(topo, Evidence(dead={f"T{k}" for k in range(30)}, alive={"T55", "T59"}))
    ref = weakref.ref(topo)
    del topo
    gc.collect()
    assert ref() is None
