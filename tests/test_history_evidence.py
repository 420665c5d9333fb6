"""A close-out's history case keeps the evidence its incident had while the outage was on.

Incidents are closed out after their power is back, when every record that reported them has
ended; the case exported then (``localisation history``, the daemon's refit) must still say
which areas were reported off, which called, which device a record named — not nothing, which
taught the refit that reports are never made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import downstream, history_case
from outage_sentinel.incidents import Incident, apply_event, resolve_event
from tests.test_fitting import DEVICES, TOPOLOGY, history

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
FUSE = next(d for d in DEVICES if len(downstream(TOPOLOGY, d)) >= 4)
A, B, C, D = downstream(TOPOLOGY, FUSE)[:4]


def fold(incident: Incident | None, event: OutageEvent, minutes: int) -> Incident:
    at = NOW + timedelta(minutes=minutes)
    return apply_event(incident, event, resolve_event(TOPOLOGY, event), TOPOLOGY,
                       BayesEstimator(), at, lambda: "INC-1")


def record(event_id: str, status: str, *areas: str, signal: str = "notice",
           source: str = "oms", end: datetime | None = None) -> OutageEvent:
    return OutageEvent(source=source, event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       signal=signal, start=NOW, end=end, transformers=areas)  # type: ignore[arg-type]


def case_of(incident: Incident) -> dict[str, object]:
    state = Incident.from_json(incident.to_json()).to_json()  # as stored and read back
    return history_case(incident.id, state, [FUSE])


def on_and_then_back() -> tuple[Incident, Incident]:
    inc = fold(None, record("F1", "active", A, B), 0)
    inc = fold(inc, record(f"{C}@x", "active", C, signal="dead", source="ami"), 1)
    inc = fold(inc, record("CALL-1", "active", D, signal="call", source="calls"), 2)
    during = inc
    back = NOW + timedelta(hours=2)
    inc = fold(inc, record("F1", "restored", A, B, end=back), 120)
    inc = fold(inc, record(f"{C}@x", "restored", C, signal="alive", source="ami", end=back), 121)
    inc = fold(inc, record("CALL-1", "restored", D, signal="call", source="calls", end=back), 122)
    return during, inc


def test_a_case_closed_after_the_power_came_back_keeps_what_was_reported() -> None:
    during, after = on_and_then_back()
    assert after.status != "active"
    live, closed = case_of(during), case_of(after)
    assert set(live["dead"]) == {A, B, C} and live["calls"] == [D]  # type: ignore[arg-type]
    # The same evidence once every record has ended: before, dead [] and no calls.
    assert closed["dead"] == live["dead"] and closed["calls"] == live["calls"]
    assert closed["alive"] == []


def test_a_record_the_source_called_off_is_no_evidence_in_the_case() -> None:
    inc = fold(None, record("F1", "active", A, B), 0)
    inc = fold(inc, record("F2", "active", C), 1)
    inc = fold(inc, record("F2", "cancelled", C), 2)
    assert set(case_of(inc)["dead"]) == {A, B}  # type: ignore[arg-type]


def test_what_a_closed_incident_exports_is_the_evidence_it_was_given() -> None:
    """Thirty cases drawn from the fit tests' evidence model, each folded into an incident as
    a county's sources would report it (an AMI area off per dead area, a ping per alive one,
    a trouble call per call), every outage then ended, and the incident exported: the case
    is the evidence drawn, area for area and call for call."""
    for k, drawn in enumerate(history(30, 11)):
        dead = [str(a) for a in drawn["dead"]]  # type: ignore[attr-defined]
        alive = [str(a) for a in drawn["alive"] if a not in dead]  # type: ignore[attr-defined]
        calls = [str(a) for a in drawn["calls"]]  # type: ignore[attr-defined]
        if not dead:
            continue
        events = ([record(f"{a}@{k}", "active", a, signal="dead", source="ami") for a in dead]
                  + [record(f"P{a}@{k}", "active", a, signal="alive", source="ami")
                     for a in alive]
                  + [record(f"C{i}@{k}", "active", a, signal="call", source="calls")
                     for i, a in enumerate(calls)])
        inc: Incident | None = None
        for minute, event in enumerate(events):
            inc = fold(inc, event, minute)
        back = NOW + timedelta(hours=3)
        for minute, a in enumerate(dead, start=180):
            inc = fold(inc, record(f"{a}@{k}", "restored", a, signal="alive", source="ami",
                                   end=back), minute)
        assert inc is not None and inc.status != "active"
        case = case_of(inc)
        assert case["dead"] == sorted(dead), k
        assert case["alive"] == sorted(alive), k
        assert sorted(case["calls"]) == sorted(calls), k  # type: ignore[arg-type]
