"""An area is back by time, never by the order its records arrive in: a restoration (a meter's
power-restore, the command centre's ``incidents restore --at``) timed before a new report of
the area off — a re-trip the meters saw, a new fault record, an operator's ``reopen`` — brings
nothing back, whichever is processed first; and an incident is not over while such a report
is open. The village is never told 恢复送电 while a source says its area is dark.

The network is the two-feeder grid from conftest::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
                  │          └─ T3 (V2, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
                  └─ TIE (normally open) ─ J3
    F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident, Member, areas_back, restoration_signals
from outage_sentinel.lifecycle import LifecycleError
from tests.conftest import T0, build_grid
from tests.test_incidents import Core, ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def told(core: Core, purpose: str) -> list[str]:
    return [v for _, p, _, villages in core.sent if p == purpose for v in villages]


def step(event_id: str, *areas: str, at: datetime, source: str = "ami",
         start: datetime = T0) -> OutageEvent:
    """A restoration step: the meters' power-restore of an outage from ``start``, or (source
    ``operator``) the command centre's ``incidents restore --at``."""
    if source == "operator":
        start = at
    return ev(event_id, *areas, signal="alive", status="restored", start=start, end=at,
              source=source)


def test_a_late_operator_restore_timed_before_a_retrip_restores_only_what_is_back() -> None:
    """The meters saw T1 back at 08:30 and dark again at 08:35; at 08:50 the command centre
    records the crew's word that T1 and T2 came back at 08:30. T2 is back; T1 is not, and V1
    hears nothing of power back."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1", "T2", "T4"), m(1))
    core.feed(ev("T1@0", "T1", signal="dead", source="ami"), m(1))
    core.feed(step("T1@0", "T1", at=m(30)), m(31))
    core.feed(ev("T1@35", "T1", signal="dead", source="ami", start=m(35)), m(36))
    inc, _ = core.feed(step("restore", "T1", "T2", at=m(30), source="operator"), m(50))
    assert "T1" in inc.off and inc.restored == {"T2": m(30)}
    assert inc.status == "active" and inc.stage == "partially_restored"
    assert told(core, "restored") == []


@pytest.mark.parametrize("step_first", [False, True])
def test_a_late_meter_restore_does_not_end_a_newer_fault_record(step_first: bool) -> None:
    """A new fault record N2 names T1 from 08:35; the meters' restore of T1 (08:30) comes in
    before it or after it (a concentrator's backlog). Either way, once the first record ends
    the incident is still on, T1 off and V1 not told its power is back; when N2 ends V1 hears
    it came back when N2 ended, not at 08:30."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1", "T2"), m(1))
    core.feed(ev("T1@0", "T1", signal="dead", source="ami"), m(1))
    news = [step("T1@0", "T1", at=m(30)), ev("N2", "T1", start=m(35))]
    for event, now in zip(news if step_first else news[::-1], (m(36), m(40)), strict=True):
        core.feed(event, now)
    inc, _ = core.feed(ev("N1", "T1", "T2", status="restored", end=m(30)), m(41))
    assert inc.status == "active" and inc.members["feed|N2"].status == "active"
    assert inc.off == ("T1",) and told(core, "restored") == []
    done, notices = core.feed(ev("N2", "T1", start=m(35), status="restored", end=m(50)), m(51))
    assert done.status == "restored" and [n.purpose for n in notices] == ["restored"]
    assert done.restored["T1"] == m(50) and done.unconfirmed == ()


def test_an_operators_reopen_is_not_undone_by_a_restore_timed_before_it() -> None:
    """The command centre reopens T1 at 08:20 (still off after all); the meters' restore
    timed 08:15 arrives later: T1 stays off."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1", "T2"), m(1))
    core.feed(step("restore", "T1", at=m(10), source="operator"), m(10))
    reopened, _ = core.feed(ev("X:reopen", "T1", signal="dead", source="operator",
                               start=m(20)), m(20))
    assert "T1" in reopened.off
    inc, notices = core.feed(step("T1@0", "T1", at=m(15)), m(25))
    assert "T1" in inc.off and "restored" not in [n.purpose for n in notices]


def member(key: str, *areas: str, signal: str, status: str, start: datetime,
           end: datetime | None = None, seen: datetime) -> Member:
    return Member(key=key, kind="fault", status=status, signal=signal,  # type: ignore[arg-type]
                  start=start, etr=None, end=end, device=None, transformers=areas, unknown=(),
                  area_text="", cause="", seen_at=seen)


def test_the_order_records_arrive_in_changes_nothing() -> None:
    """Every order of processing the same records gives the same areas back, at the same
    times: a step is undone only by a report of an outage begun at or after it (the feed
    re-stating an older outage does not undo it); a record that ended after a later outage
    began gives the time it ended."""
    records = [
        member("feed|N1", "T1", "T2", "T3", signal="notice", status="active", start=T0,
               seen=m(1)),
        member("ami|A", "T1", "T2", "T3", signal="alive", status="restored", start=T0,
               end=m(30), seen=m(31)),
        member("feed|N2", "T1", signal="notice", status="active", start=m(35), seen=m(36)),
        member("feed|N3", "T2", signal="notice", status="active", start=m(20), seen=m(21)),
        member("feed|N4", "T3", signal="notice", status="restored", start=m(40), end=m(45),
               seen=m(46)),
    ]
    results = set()
    for order in itertools.permutations(range(len(records))):
        seen = [replace_seen(records[i], m(60 + k)) for k, i in enumerate(order)]
        back = areas_back(seen)
        steps = restoration_signals(seen)
        results.add((tuple(sorted(back.items())), tuple(sorted(steps.items()))))
    assert results == {((("T2", m(30)), ("T3", m(45))), (("T2", m(30)),))}


def replace_seen(record: Member, seen: datetime) -> Member:
    return replace(record, seen_at=seen)


def test_through_the_daemon_the_village_is_not_told_power_is_back_while_meters_say_dark(
        daemon: Daemon) -> None:  # noqa: F811
    """The operator's step through the daemon (the CLI's and the board's path): a step
    timed before the meters' re-trip report, still open, is refused naming the area and the
    report's time (nothing is recorded); T2 alone, back, is counted back, and V1 is told
    nothing of power back."""
    d = daemon
    report(d, 1, "feed", ev("N1", "T1", "T2", "T4"))
    report(d, 1, "ami", ev("T1@0", "T1", signal="dead", source="ami"))
    report(d, 31, "ami", step("T1@0", "T1", at=m(30)))
    report(d, 36, "ami", ev("T1@35", "T1", signal="dead", source="ami", start=m(35)))
    (row,) = d.store.load_incidents(open_only=False)
    d.clock.now = m(50)  # type: ignore[attr-defined]
    at = m(30).astimezone(ZoneInfo(d.config.timezone)).strftime("%Y-%m-%d %H:%M")
    with pytest.raises(LifecycleError, match="T1 is reported off again since .*08:35"):
        d.processor.operator_restore(row["id"], "ops", "T1,T2", at, "班组反馈", now=m(50))
    assert d.processor.incident(row["id"]).restored == {}
    inc = d.processor.operator_restore(row["id"], "ops", "T2", at, "班组反馈", now=m(50))
    assert "T1" in inc.off and "T2" in inc.restored and inc.status == "active"
    purposes = {msg.purpose for msg in d.store.messages()
                if msg.recipient.startswith("village:V1:")}
    assert "restored" not in purposes and "outage" in purposes
    stored = d.store.get_incident(row["id"])
    assert stored is not None and Incident.from_json(stored["state"]).off == inc.off


def report(d: Daemon, minutes: float, source: str, event: OutageEvent) -> None:
    d.clock.now = m(minutes)  # type: ignore[attr-defined]
    d.store.ingest(source, PollResult(events=[event]), d.clock())
    d.process()


def test_a_record_published_late_moves_the_time_an_area_came_back() -> None:
    """T1 came back at 30 by N1's end; N3, published late, reports T1 off from 10 to 50:
    the area came back at 50 (the outage record, the reports and the indices count to
    then), not at the time first kept."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1"), m(1))
    core.feed(ev("N2", "T4"), m(1))
    inc, _ = core.feed(ev("N1", "T1", status="restored", end=m(30)), m(30))
    assert inc.restored["T1"] == m(30)
    inc, _ = core.feed(ev("N3", "T1", status="restored", start=m(10), end=m(50)), m(55))
    assert inc.status == "active" and inc.restored["T1"] == m(50)
    # A meter's power-restore published later still, timed before that end, moves it back
    # to when the meters saw the power come.
    inc, _ = core.feed(step("A", "T1", at=m(40), start=m(10)), m(60))
    assert inc.restored["T1"] == m(40)
