"""Triage (pure core): what one resolved event may do before it touches an incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Estimate, Incident, Resolved
from outage_sentinel.triage import (
    planned_transformers,
    storm_declared,
    triage,
    unknown_references_reason,
)

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def event(kind: str = "fault", status: str = "active", signal: str = "notice") -> OutageEvent:
    return OutageEvent(source="feed", event_id="E1", kind=kind, status=status,  # type: ignore[arg-type]
                       start=NOW, signal=signal, transformers=("T1",))  # type: ignore[arg-type]


def incident(kind: str = "fault", status: str = "active", start: datetime = NOW,
             etr: datetime | None = None, areas: tuple[str, ...] = ("T1", "T2")) -> Incident:
    return Incident(id="INC-1", feeder="F1", kind=kind, status=status, revision=1, start=start,
                    etr=etr, end=None, cause="", area_text="", members={},
                    estimate=Estimate(devices=(), probability=None, transformers=areas,
                                      customers=0, villages=()))


NAMED = Resolved(feeder="F1", transformers=("T1",), device=None, unknown=())
POSSIBLE = Resolved(feeder="F1", transformers=(), device=None, unknown=(), possible=("T2",))
DEVICE = Resolved(feeder="F1", transformers=(), device="FU1", unknown=())
NOTHING = Resolved(feeder=None, transformers=(), device=None, unknown=("XX村",))
PLANNED = frozenset({"T1", "T2"})

CASES = [
    # (current, event, resolved, planned) -> (action, unplaced)
    ("restoration of nothing", None, event(status="restored", signal="alive"), NAMED,
     frozenset(), ("without_incident", False)),
    ("alive report of nothing", None, event(signal="alive"), NAMED, frozenset(),
     ("without_incident", False)),
    ("restoration of an incident", incident(), event(status="restored", signal="alive"), NAMED,
     frozenset(), ("incident", False)),
    ("new outage, named area", None, event(), NAMED, frozenset(), ("incident", False)),
    ("new outage, AMI dead", None, event(signal="dead"), NAMED, frozenset(),
     ("incident", False)),
    ("new outage, possible area only", None, event(), POSSIBLE, frozenset(),
     ("incident", False)),
    ("new outage, device only", None, event(), DEVICE, frozenset(), ("incident", False)),
    ("new outage, nothing placed", None, event(), NOTHING, frozenset(), ("incident", True)),
    ("fault inside planned work", None, event(), NAMED, PLANNED, ("explained", False)),
    ("fault partly outside planned work", None, event(), NAMED, frozenset({"T9"}),
     ("incident", False)),
    ("planned record inside planned work", None, event(kind="planned"), NAMED, PLANNED,
     ("incident", False)),
    ("fault by device inside planned work", None, event(), DEVICE, PLANNED, ("incident", False)),
    ("fault joining an incident in planned work", incident(), event(), NAMED, PLANNED,
     ("incident", False)),
]


@pytest.mark.parametrize(("current", "ev", "resolved", "planned", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_triage_table(current: Incident | None, ev: OutageEvent, resolved: Resolved,
                      planned: frozenset[str], expected: tuple[str, bool]) -> None:
    decision = triage(current, ev, resolved, planned)
    assert (decision.action, decision.unplaced) == expected


def test_planned_transformers_only_inside_the_window_of_active_planned_work() -> None:
    hour = timedelta(hours=1)
    incidents = [
        incident(kind="planned", start=NOW - hour, etr=NOW + hour, areas=("T1",)),
        incident(kind="temporary", start=NOW - hour, etr=None, areas=("T2",)),
        incident(kind="planned", start=NOW + hour, etr=NOW + 2 * hour, areas=("T3",)),  # later
        incident(kind="planned", start=NOW - 2 * hour, etr=NOW - hour, areas=("T4",)),  # over
        incident(kind="planned", status="restored", start=NOW - hour, areas=("T5",)),
        incident(kind="fault", start=NOW - hour, areas=("T6",)),
    ]
    assert planned_transformers(incidents, NOW) == {"T1", "T2"}


@pytest.mark.parametrize(("value", "held"), [
    (None, False), ({}, False), ({"declared": False}, False), ("yes", False),
    ({"declared": True}, True),
    ({"declared": True, "until": "2026-11-23T03:00:00+00:00"}, True),
    ({"declared": True, "until": "2026-11-23T01:00:00+00:00"}, False),
    ({"declared": True, "until": "not a time"}, True),  # unreadable end: keep it
])
def test_storm_declared(value: object, held: bool) -> None:
    assert storm_declared(value, NOW) is held


def test_unknown_references_reason_names_what_each_reference_is() -> None:
    ev = OutageEvent(source="feed", event_id="R7", kind="fault", status="active", start=NOW,
                     feeder="L9", device="K3", transformers=("TX",), area_text="某村")
    reason = unknown_references_reason(ev, ("L9", "K3", "TX", "某村"))
    assert reason == ("record R7: unknown references, not in the topology bundle: "
                      "'L9' (line), 'K3' (device), 'TX' (area), '某村' (area text)")
