"""Triage (pure core): what one resolved event may do before it touches an incident."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Estimate, Incident, Member, Resolved
from outage_sentinel.triage import (
    continued_records,
    explaining_outage,
    planned_transformers,
    reissued_work,
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


# -- planned work re-issued under a new id -----------------------------------------------------

H = timedelta(hours=1)


def work(**old: object) -> Incident:
    """Open planned work on F1 with one record, feed|P1 on T1, NOW+1h to NOW+5h."""
    fields: dict[str, object] = {
        "key": "feed|P1", "kind": "planned", "status": "active", "signal": "notice",
        "start": NOW + H, "etr": NOW + 5 * H, "end": None, "device": None,
        "transformers": ("T1",), "unknown": (), "area_text": "", "cause": "", "seen_at": NOW}
    fields.update(old)
    member = Member(**fields)  # type: ignore[arg-type]
    inc = incident(kind="planned", start=NOW + H, etr=NOW + 5 * H, areas=("T1",))
    return replace(inc, members={member.key: member})


def reissue(event_id: str = "P2", source: str = "feed", start: datetime = NOW + H,
            etr: datetime | None = NOW + 7 * H, kind: str = "planned") -> OutageEvent:
    return OutageEvent(source=source, event_id=event_id, kind=kind,  # type: ignore[arg-type]
                       status="active", start=start, expected_restoration=etr,
                       transformers=("T1",))


LEFT_NOW = {"feed|P1": NOW}

REISSUE_CASES = [
    # (why, incident, event, resolved, leaving) -> continued records
    ("longer window, old cancelled in the batch", work(), reissue(), NAMED, LEFT_NOW,
     ("feed|P1",)),
    ("window shifted, touching", work(), reissue(start=NOW + 5 * H, etr=NOW + 8 * H), NAMED,
     LEFT_NOW, ("feed|P1",)),
    ("window without a stop", work(), reissue(etr=None), NAMED, LEFT_NOW, ("feed|P1",)),
    ("the old record leaves nothing", work(), reissue(), NAMED, {}, ()),
    ("the old record left at its stop", work(), reissue(), NAMED, {"feed|P1": NOW + 5 * H},
     ()),
    ("the old record has no stop", work(etr=None), reissue(), NAMED, LEFT_NOW, ()),
    ("windows apart", work(), reissue(start=NOW + 6 * H, etr=NOW + 8 * H), NAMED, LEFT_NOW,
     ()),
    ("new window ends before the old begins", work(),
     reissue(start=NOW - 3 * H, etr=NOW - H), NAMED, LEFT_NOW, ()),
    ("no shared area", work(), reissue(), Resolved("F1", ("T2",), None, ()), LEFT_NOW, ()),
    ("another feeder", work(), reissue(), Resolved("F2", ("T1",), None, ()), LEFT_NOW, ()),
    ("another source", work(), reissue(source="other"), NAMED, {"other|P1": NOW, **LEFT_NOW},
     ()),
    ("a fault record", work(), reissue(kind="fault"), NAMED, LEFT_NOW, ()),
    ("a record of the work already", work(), reissue(event_id="P1"), NAMED, LEFT_NOW, ()),
    ("the old record ended on its own", work(status="restored"), reissue(), NAMED, LEFT_NOW,
     ()),
    ("re-issued already, split in two", work(status="cancelled", superseded_by="feed|P3"),
     reissue(), NAMED, LEFT_NOW, ("feed|P1",)),
]


@pytest.mark.parametrize("inc,ev,resolved,leaving,expected",
                         [c[1:] for c in REISSUE_CASES], ids=[c[0] for c in REISSUE_CASES])
def test_continued_records_table(inc: Incident, ev: OutageEvent, resolved: Resolved,
                                 leaving: dict[str, datetime], expected: tuple[str, ...]) -> None:
    assert continued_records(inc, ev, resolved, leaving) == expected
    assert (reissued_work([incident(), inc], ev, resolved, leaving) is inc) == bool(expected)


# -- what planned work in force explains --------------------------------------------------------


def vague_work(*, listed: tuple[str, ...] = ("T6",), status: str = "active",
               device: str | None = None, inferred: tuple[str, ...] = (),
               met: tuple[str, ...] = ()) -> Incident:
    """Work under way on F1 (since NOW-1h, until NOW+1h) whose record lists ``listed`` (below
    ``device`` if named: ``inferred``) and whose text names T2 and T3 vaguely (村部分区域);
    ``met``: areas only the meters reported dark (AMI members)."""
    record = Member(key="feed|P1", kind="planned", status=status,  # type: ignore[arg-type]
                    signal="notice", start=NOW - H, etr=NOW + H, end=None, device=device,
                    transformers=listed, unknown=(), area_text="某村部分区域", cause="",
                    seen_at=NOW, possible=("T2", "T3"))
    meters = {f"ami|{t}": Member(key=f"ami|{t}", kind="fault", status="active", signal="dead",
                                 start=NOW, etr=None, end=None, device=None, transformers=(t,),
                                 unknown=(), area_text="", cause="", seen_at=NOW)
              for t in met}
    scope = {**{t: "reported" for t in (*listed, *met)}, **{t: "inferred" for t in inferred},
             "T2": "possible", "T3": "possible"}
    inc = incident(kind="planned", start=NOW - H, etr=NOW + H, areas=tuple(scope))
    return replace(inc, members={record.key: record, **meters}, scope=scope)


def report(*areas: str, signal: str = "notice", kind: str = "fault") -> tuple[OutageEvent,
                                                                            Resolved]:
    ev = OutageEvent(source="feed", event_id="F1", kind=kind, status="active",  # type: ignore[arg-type]
                     start=NOW, signal=signal, transformers=areas)  # type: ignore[arg-type]
    return ev, Resolved(feeder="F1", transformers=areas, device=None, unknown=())


EXPLAINED_CASES = [
    # (why, work, areas, signal) -> joins the work
    ("a fault record of areas the work names only vaguely is a fault of its own",
     vague_work(), ("T2", "T3"), "notice", False),
    ("a fault record partly in the work's listed areas, partly in its vague ones",
     vague_work(), ("T6", "T2"), "notice", False),
    ("a fault record of the work's listed areas restates the work",
     vague_work(listed=("T6", "T7")), ("T6", "T7"), "notice", True),
    ("a fault record below the device the work names",
     vague_work(device="FU2", inferred=("T8",)), ("T8",), "notice", True),
    ("a fault record of areas only the meters reported dark in the work",
     vague_work(met=("T2",)), ("T2",), "notice", False),
    ("a fault record of areas a record no longer in force named",
     vague_work(status="restored", met=("T6",)), ("T6",), "notice", False),
    ("meters dark in the work's listed areas: the work",
     vague_work(), ("T6",), "dead", True),
    ("meters dark in the areas the work names vaguely: the work, as before",
     vague_work(), ("T2", "T3"), "dead", True),
    ("meters dark outside the work", vague_work(), ("T6", "T9"), "dead", False),
]


@pytest.mark.parametrize("work_inc,areas,signal,joins", [c[1:] for c in EXPLAINED_CASES],
                         ids=[c[0] for c in EXPLAINED_CASES])
def test_what_planned_work_explains(work_inc: Incident, areas: tuple[str, ...], signal: str,
                                    joins: bool) -> None:
    ev, resolved = report(*areas, signal=signal)
    host = explaining_outage([incident(), work_inc], ev, resolved, NOW)
    assert (host is work_inc) == joins
