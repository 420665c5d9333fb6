"""Incidents, pure core: resolving references, correlating events, folding them into incidents,
estimating the fault point and deciding which villages hear what.

The network is the two-feeder grid from conftest::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
                  │          └─ T3 (V2, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
                  └─ TIE (normally open) ─ J3
    F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import (
    Estimate,
    Estimator,
    Evidence,
    Incident,
    Notice,
    apply_event,
    correlate,
    evidence_of,
    first_estimate,
    incident_class,
    member_keys,
    plan_notices,
    resolve_event,
)
from outage_sentinel.topology import Topology
from tests.conftest import T0

WINDOW = timedelta(minutes=30)


def ev(event_id: str = "E1", *transformers: str, kind: str = "fault", status: str = "active",
       start: datetime = T0, source: str = "feed", **kw: Any) -> OutageEvent:
    return OutageEvent(source=source, event_id=event_id, kind=kind,  # type: ignore[arg-type]
                       status=status, start=start, transformers=transformers,  # type: ignore[arg-type]
                       **kw)


@dataclass
class Core:
    """Drives the pure core the way the daemon does, keeping incidents in memory."""

    topo: Topology
    incidents: dict[str, Incident] = field(default_factory=dict)
    sent: list[tuple[str, str, int, tuple[str, ...]]] = field(default_factory=list)
    counter: int = 0
    estimator: Estimator = first_estimate

    def feed(self, event: OutageEvent, now: datetime) -> tuple[Incident, list[Notice]]:
        resolved = resolve_event(self.topo, event)
        open_ = [i for i in self.incidents.values() if i.status == "active"]
        keys = member_keys(list(self.incidents.values()))
        key = f"{event.source}|{event.event_id}"
        current = self.incidents[keys[key]] if key in keys else correlate(
            open_, event, resolved, now, WINDOW)
        planned = frozenset(t for i in open_ if i.kind != "fault"
                            for t in i.estimate.transformers)
        after = apply_event(current, event, resolved, self.topo, self.estimator, now,
                            self._new_id, planned)
        notices, after = plan_notices(current, after, self.topo)
        self.incidents[after.id] = after
        for n in notices:
            self.sent.append((after.id, n.purpose, after.revision, n.villages))
        return after, notices

    def _new_id(self) -> str:
        self.counter += 1
        return f"INC-{self.counter}"


@pytest.fixture
def core(grid: Topology) -> Core:
    return Core(grid)


def purposes(notices: list[Notice]) -> dict[str, tuple[str, ...]]:
    return {n.purpose: n.villages for n in notices}


# -- resolve_event -----------------------------------------------------------------------------


def test_resolve_by_id_name_and_customer(grid: Topology) -> None:
    r = resolve_event(grid, ev("E", "T1", "台区T2", "C-LIFE", "T1", device="马集1号熔断器"))
    assert r.transformers == ("T1", "T2", "T4")  # de-duplicated, in order
    assert r.device == "FU1"
    assert r.feeder == "F1"  # from the topology, not the event
    assert r.unknown == ()


def test_resolve_reports_unknown_refs(grid: Topology) -> None:
    r = resolve_event(grid, ev("E", "T1", "T404", "B1", device="XX-9", feeder="不存在线"))
    assert r.transformers == ("T1",)
    # B1 exists but is no transformer area: reported, not silently used as one.
    assert set(r.unknown) == {"T404", "B1", "XX-9", "不存在线"}
    assert r.feeder == "F1"


def test_resolve_feeder_by_name_or_id(grid: Topology) -> None:
    assert resolve_event(grid, ev("E", feeder="城关II线")).feeder == "F2"
    assert resolve_event(grid, ev("E", feeder="10kV马集线")).feeder == "F1"
    assert resolve_event(grid, ev("E", feeder="F2")).feeder == "F2"


def test_topology_feeder_wins_over_a_wrong_feeder_in_the_feed(grid: Topology) -> None:
    r = resolve_event(grid, ev("E", "T6", feeder="F1"))
    assert r.feeder == "F2"


# -- first_estimate ----------------------------------------------------------------------------


def test_estimate_common_protective_device_and_downstream(grid: Topology) -> None:
    e = first_estimate(grid, Evidence(dead=frozenset({"T1"})))
    assert e.devices == ("FU1",)
    # Everything downstream of the fault device is off, reported or not.
    assert set(e.transformers) == {"T1", "T2"}
    assert e.customers == 70 and e.villages == ("V1",)
    assert "C-HOSP" in e.important_customers and "C-PLAIN" not in e.important_customers
    assert set(e.section) == {"FU1", "T1", "T2"}

    e = first_estimate(grid, Evidence(dead=frozenset({"T1", "T3"})))
    assert e.devices == ("R1",)
    assert set(e.transformers) == {"T1", "T2", "T3"} and e.customers == 120
    assert set(e.villages) == {"V1", "V2"}

    e = first_estimate(grid, Evidence(dead=frozenset({"T2", "T5"})))
    assert e.devices == ("B1",) and e.customers == 200
    assert "C-LIFE" in e.important_customers


def test_estimate_named_device_wins(grid: Topology) -> None:
    e = first_estimate(grid, Evidence(dead=frozenset({"T4"}), open_devices=frozenset({"R1"})))
    assert e.devices == ("R1",)
    assert set(e.transformers) == {"T1", "T2", "T3", "T4"}  # R1's area plus the reported T4


def test_estimate_ignores_transformers_under_planned_work(grid: Topology) -> None:
    e = first_estimate(grid, Evidence(dead=frozenset({"T1", "T4"}), planned=frozenset({"T4"})))
    assert e.devices == ("FU1",)
    assert "T4" not in e.transformers


def test_estimate_without_evidence_is_empty(grid: Topology) -> None:
    e = first_estimate(grid, Evidence())
    assert e.devices == () and e.transformers == () and e.customers == 0


# -- correlation -------------------------------------------------------------------------------


def test_two_events_same_feeder_overlapping_make_one_incident(core: Core) -> None:
    a, _ = core.feed(ev("E1", "T1"), T0)
    b, notices = core.feed(ev("E2", "T4", start=T0 + timedelta(minutes=10)),
                           T0 + timedelta(minutes=10))
    assert a.id == b.id and len(core.incidents) == 1
    assert set(b.members) == {"feed|E1", "feed|E2"}
    assert b.fault_device == "B1"  # upstream of both T1 and T4
    assert b.start == T0
    assert b.revision == 2
    # V1 heard at revision 1; the merged estimate adds V2 and V3 only.
    assert purposes(notices) == {"outage": ("V2", "V3")}


def test_events_on_another_feeder_make_two_incidents(core: Core) -> None:
    a, _ = core.feed(ev("E1", "T1"), T0)
    b, notices = core.feed(ev("E2", "T6"), T0 + timedelta(minutes=1))
    assert a.id != b.id
    assert (a.feeder, b.feeder) == ("F1", "F2")
    assert b.fault_device == "FU3" and purposes(notices) == {"outage": ("V4",)}


def test_correlation_window(grid: Topology) -> None:
    core = Core(grid)
    inc, _ = core.feed(ev("E1", "T1"), T0)
    now = T0 + timedelta(minutes=5)
    too_early = ev("E2", "T3", start=T0 - WINDOW - timedelta(seconds=1))
    just_in = ev("E3", "T3", start=T0 - WINDOW)
    too_late = ev("E4", "T3", start=now + WINDOW + timedelta(seconds=1))
    for e, expected in ((too_early, None), (just_in, inc.id), (too_late, None)):
        got = correlate([inc], e, resolve_event(grid, e), now, WINDOW)
        assert (got.id if got else None) == expected, e.event_id


def test_restored_incidents_take_no_new_events(grid: Topology) -> None:
    core = Core(grid)
    core.feed(ev("E1", "T1"), T0)
    restored, _ = core.feed(ev("E1", "T1", status="restored"), T0 + timedelta(minutes=5))
    assert restored.status == "restored"
    e = ev("E2", "T2", start=T0 + timedelta(minutes=6))
    assert correlate([restored], e, resolve_event(grid, e), T0 + timedelta(minutes=6),
                     WINDOW) is None


def test_planned_events_never_merge_with_faults(grid: Topology, core: Core) -> None:
    fault, _ = core.feed(ev("F1", "T1"), T0)
    planned, _ = core.feed(ev("P1", "T2", kind="planned"), T0)
    temporary, _ = core.feed(ev("P2", "T3", kind="temporary"), T0)
    assert len({fault.id, planned.id, temporary.id}) == 3
    assert planned.kind == "planned" and temporary.kind == "temporary"
    # ... nor a fault with an open planned incident, nor two work orders with each other.
    f2 = ev("F2", "T2")
    assert correlate([planned], f2, resolve_event(grid, f2), T0, WINDOW) is None
    p3 = ev("P3", "T3", kind="planned")
    assert correlate([planned, temporary], p3, resolve_event(grid, p3), T0, WINDOW) is None
    assert incident_class("fault") == "unplanned" and incident_class("temporary") == "planned"


def test_a_later_revision_goes_to_the_incident_of_its_record(grid: Topology) -> None:
    core = Core(grid)
    inc, _ = core.feed(ev("P1", "T2", kind="planned"), T0)
    e = ev("P1", "T2", "T3", kind="planned")
    assert correlate([inc], e, resolve_event(grid, e), T0, WINDOW) is inc


def test_unlocated_fault_does_not_correlate(grid: Topology) -> None:
    core = Core(grid)
    inc, _ = core.feed(ev("E1", "T1"), T0)
    e = ev("E2", "T404", feeder="nowhere")
    assert correlate([inc], e, resolve_event(grid, e), T0, WINDOW) is None


# -- lifecycle and notices ---------------------------------------------------------------------


def test_new_incident_notifies_every_affected_village(core: Core) -> None:
    inc, notices = core.feed(ev("E1", "T1", "T3", cause="雷击", area_text="马集镇南部",
                                expected_restoration=T0 + timedelta(hours=2)), T0)
    assert inc.revision == 1 and inc.status == "active" and inc.kind == "fault"
    assert inc.id == "INC-1" and inc.feeder == "F1"
    assert inc.cause == "雷击" and inc.area_text == "马集镇南部"
    assert inc.etr == T0 + timedelta(hours=2)
    assert notices == [Notice("outage", ("V1", "V2"))]
    assert set(inc.notified_villages) == {"V1", "V2"}
    assert inc.created_at == T0 and inc.updated_at == T0


def test_restoration_notifies_exactly_the_villages_told(core: Core) -> None:
    core.feed(ev("E1", "T1"), T0)
    inc, notices = core.feed(ev("E2", "T3"), T0 + timedelta(minutes=1))  # grows to R1: +V2
    assert set(inc.notified_villages) == {"V1", "V2"}
    end = T0 + timedelta(hours=1)
    core.feed(ev("E1", "T1", status="restored", end=end), end)
    still, notices = core.incidents[inc.id], []
    assert still.status == "active"  # E2 is still out
    done, notices = core.feed(ev("E2", "T3", status="restored"), end + timedelta(minutes=3))
    assert done.status == "restored"
    assert done.end == end + timedelta(minutes=3)  # the later of the members' ends
    assert len(notices) == 1 and notices[0].purpose == "restored"
    assert set(notices[0].villages) == set(still.notified_villages)
    assert done.notified_villages == ()
    assert done.revision > still.revision


def test_partial_restoration_tells_the_villages_that_are_back(core: Core) -> None:
    core.feed(ev("E1", "T1"), T0)
    inc, _ = core.feed(ev("E2", "T4"), T0 + timedelta(minutes=1))
    assert inc.fault_device == "B1" and set(inc.notified_villages) == {"V1", "V2", "V3"}
    after, notices = core.feed(ev("E1", "T1", status="restored"), T0 + timedelta(minutes=30))
    assert after.status == "active"
    assert after.fault_device == "FU2"  # only T4 left dead
    assert purposes(notices) == {"restored": ("V1",)}
    assert set(after.notified_villages) == {"V2", "V3"}


def test_revision_adding_villages_notifies_only_the_new_ones(core: Core) -> None:
    inc, _ = core.feed(ev("E1", "T1"), T0)
    assert inc.notified_villages == ("V1",)
    grown, notices = core.feed(ev("E1", "T1", "T3"), T0 + timedelta(minutes=5))
    assert grown.id == inc.id and grown.revision == 2
    assert notices == [Notice("outage", ("V2",))]
    assert set(grown.notified_villages) == {"V1", "V2"}


def test_etr_change_is_an_update_for_villages_already_told(core: Core) -> None:
    inc, _ = core.feed(ev("E1", "T1", expected_restoration=T0 + timedelta(hours=1)), T0)
    moved, notices = core.feed(ev("E1", "T1", expected_restoration=T0 + timedelta(hours=3)),
                               T0 + timedelta(minutes=20))
    assert moved.revision == inc.revision + 1
    assert moved.etr == T0 + timedelta(hours=3)
    assert notices == [Notice("update", ("V1",))]


def test_etr_change_together_with_growth(core: Core) -> None:
    core.feed(ev("E1", "T1", expected_restoration=T0 + timedelta(hours=1)), T0)
    _, notices = core.feed(ev("E1", "T1", "T3", expected_restoration=T0 + timedelta(hours=2)),
                           T0 + timedelta(minutes=20))
    # Newly affected villages get the outage notice (with the new ETR), not an update.
    assert purposes(notices) == {"outage": ("V2",), "update": ("V1",)}


def test_identical_re_report_bumps_nothing_and_notifies_nobody(core: Core) -> None:
    first = ev("E1", "T1", cause="树障", expected_restoration=T0 + timedelta(hours=1))
    inc, _ = core.feed(first, T0)
    again, notices = core.feed(first, T0 + timedelta(minutes=5))
    assert again.revision == inc.revision and notices == []
    # Wording-only changes (area text, cause) are not material either.
    reworded = ev("E1", "T1", cause="树障（已确认）", area_text="东街",
                  expected_restoration=T0 + timedelta(hours=1))
    again2, notices = core.feed(reworded, T0 + timedelta(minutes=6))
    assert again2.revision == inc.revision and notices == []
    assert again2.cause == "树障（已确认）"  # kept for the next notice, silently
    assert core.sent == [("INC-1", "outage", 1, ("V1",))]


def test_cancelled_planned_work(core: Core) -> None:
    start = T0 + timedelta(days=1)
    inc, notices = core.feed(ev("P1", "T4", "T5", kind="planned", start=start,
                                device="FU2", expected_restoration=start + timedelta(hours=6)),
                             T0)
    assert inc.kind == "planned" and inc.fault_device == "FU2"
    assert notices == [Notice("outage", ("V2", "V3"))]
    done, notices = core.feed(ev("P1", "T4", "T5", kind="planned", start=start, device="FU2",
                                 status="cancelled"), T0 + timedelta(hours=2))
    assert done.status == "cancelled"
    assert notices == [Notice("cancelled", ("V2", "V3"))]
    assert done.notified_villages == ()


def test_a_record_called_off_after_the_meters_saw_the_outage_ends_restored(core: Core) -> None:
    """The outage system cancels a fault record (or planned work already under way) while
    the meters said the areas were dark: once they say power is back, the villages hear
    "restored"; "called off, supply normal" would deny an outage they had."""
    inc, _ = core.feed(ev("E1", "T4", "T5", device="FU2"), T0)
    core.feed(ev("ami-1", "T4", "T5", signal="dead", source="ami"), T0 + timedelta(minutes=1))
    called_off, notices = core.feed(ev("E1", "T4", "T5", device="FU2", status="cancelled"),
                                    T0 + timedelta(minutes=20))
    assert called_off.status == "active" and notices == []  # the meters still say dark
    back, notices = core.feed(ev("ami-1", "T4", "T5", signal="alive", source="ami",
                                 status="restored", end=T0 + timedelta(minutes=40)),
                              T0 + timedelta(minutes=41))
    assert back.status == "restored" and back.end == T0 + timedelta(minutes=40)
    assert notices == [Notice("restored", ("V2", "V3"))]


def test_unknown_refs_are_kept_on_the_incident(core: Core) -> None:
    inc, _ = core.feed(ev("E1", "T1", "T404", device="FU9"), T0)
    assert set(inc.unknown_refs) == {"T404", "FU9"}
    assert inc.fault_device == "FU1"  # estimated from what was known


def test_fault_during_planned_work_ignores_the_planned_area(core: Core) -> None:
    core.feed(ev("P1", "T4", kind="planned", device="FU2"), T0)
    fault, _ = core.feed(ev("F1", "T1", "T4"), T0 + timedelta(minutes=1))
    assert fault.fault_device == "FU1"  # T4 is explained by the planned work


def test_active_alive_report_is_diagnostic_evidence(core: Core) -> None:
    """A reading that an area has supply (while the incident is active) takes it out of the
    dead set the estimator sees, so the fault point moves downstream."""
    core.feed(ev("E1", "T1", "T4"), T0)
    inc, _ = core.feed(ev("A1", "T4", signal="alive"), T0 + timedelta(minutes=1))
    ev_ = evidence_of(inc.members.values())
    assert ev_.dead == {"T1"} and ev_.alive == {"T4"}
    assert inc.fault_device == "FU1"


# -- plan_notices directly ---------------------------------------------------------------------


def _incident(**kw: Any) -> Incident:
    base = Incident(id="I", feeder="F1", kind="fault", status="active", revision=1, start=T0,
                    etr=None, end=None, cause="", area_text="", members={},
                    estimate=Estimate(("FU1",), None, ("T1",), 40, ("V1",)))
    return replace(base, **kw)


def test_plan_notices_same_revision_is_silent() -> None:
    before = _incident(notified_villages=("V1",))
    after = replace(before, etr=T0 + timedelta(hours=1))  # same revision number
    notices, out = plan_notices(before, after)
    assert notices == [] and out is after


def test_plan_notices_restored_with_nobody_told_is_silent() -> None:
    notices, out = plan_notices(_incident(), _incident(status="restored", revision=2))
    assert notices == [] and out.notified_villages == ()


# -- serialisation -----------------------------------------------------------------------------


def test_to_json_from_json_round_trip(core: Core) -> None:
    core.feed(ev("E1", "T1", "T404", cause="雷击", area_text="马集",
                 expected_restoration=T0 + timedelta(hours=2)), T0)
    inc, _ = core.feed(ev("E2", "T4", signal="dead", device="FU2"), T0 + timedelta(minutes=1))
    inc = replace(inc, estimate=replace(inc.estimate, probability=0.8,
                                        hypotheses=({"devices": ["FU2"], "probability": 0.8},)))
    data = json.loads(json.dumps(inc.to_json(), ensure_ascii=False))
    back = Incident.from_json(data)
    assert back == inc
    assert back.to_json() == inc.to_json()
    # The restored incident round-trips as well (end set, nobody left to tell).
    done, _ = core.feed(ev("E1", "T1", status="restored"), T0 + timedelta(hours=1))
    assert Incident.from_json(json.loads(json.dumps(done.to_json()))) == done

