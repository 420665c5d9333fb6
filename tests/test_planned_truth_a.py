"""Planned work called off is told as called off, whatever else the village is going through.

A cancellation of work still ahead speaks of its day (届时正常供电), not of the supply now: a
village dark in a fault hears it at once, and it is never dropped as "already told" because
the fault's 恢复送电 came last (the village kept expecting an outage that would not happen).
Work called off after it began is a "power back" word and stays held while the village is
dark elsewhere — and is still said once it is true. And a record gone from a snapshot feed
before its start was called off, even when the confirming miss comes after the start.

Topology (tests.test_lifecycle ``county``): 东村 V1 has T1 (100 households) and T2 (50), both
behind fuse FU1; the harness's T0 is 10:00 in Shanghai.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.channels.base import Message
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.sources.http_json import snapshot
from tests.conftest import T0 as CT0
from tests.test_held_notices import by_feeder, check, steps
from tests.test_held_notices import shared as shared  # noqa: F401  (the fixture)
from tests.test_http_json import NOW, Scripted, listing, make_source
from tests.test_http_json import server as server  # noqa: F401  (the fixture)
from tests.test_lifecycle import T0, Harness, ev
from tests.test_shared_areas import ev as sev
from tests.test_shared_areas import feed, told


@pytest.fixture
def make(tmp_path: Path, db_url: str) -> Iterator[Any]:
    made: list[Harness] = []

    def build(**config: Any) -> Harness:
        made.append(Harness(tmp_path / str(len(made)), db_url, **config))
        return made[-1]

    yield build
    for h in made:
        h.daemon.close()


def planned(status: str = "active", start: datetime = T0 + timedelta(days=3)) -> OutageEvent:
    return ev("P1", "T1", kind="planned", status=status, start=start,
              etr=start + timedelta(hours=4))


def fault(status: str = "active") -> OutageEvent:
    return ev("F1", "T2", status=status, start=T0 + timedelta(minutes=60))


def clock(h: Harness, minutes: float) -> list[Message]:
    """The clock's checks at ``minutes`` (held notices released), then delivery."""
    h.at(minutes)
    h.daemon.clock_stage.run_once(h.now)
    return h.deliver()


def to_v1(h: Harness, incident_id: str) -> list[str]:
    return [m.purpose for m in h.channel.sent
            if m.audience == "liaison" and m.target == "V1群" and m.incident_id == incident_id]


def by_kind(h: Harness, kind: str) -> str:
    (row,) = [r for r in h.daemon.store.load_incidents(open_only=False) if r["kind"] == kind]
    return str(row["id"])


@pytest.mark.parametrize("by", ["feed", "operator"])
def test_work_ahead_called_off_reaches_a_village_dark_in_a_fault_at_once(
        make: Any, by: str) -> None:
    h = make()
    h.feed(planned())
    h.at(60)
    h.feed(fault())
    work, outage = by_kind(h, "planned"), by_kind(h, "fault")
    h.at(90)
    if by == "feed":
        h.feed(planned("cancelled"))
    else:  # the command centre's `incidents cancel`
        CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).cancel(
            work, "施工取消", "ops")
        h.deliver()
    (said,) = [m for m in h.sent("cancelled", "liaison") if m.incident_id == work]
    # It says the work is off on its day; it does not claim the supply is normal now.
    assert said.target == "V1群" and "已取消" in said.text and "届时正常供电" in said.text
    assert "恢复送电" not in said.text and "2026-11-26 10:00" in said.text
    assert h.daemon.store.kv_prefixed("held:") == {}
    assert not [r for r in h.daemon.store.incident_log(work) if r["stage"] == "held_back"]
    # The fault still tells its own end; the work's cancellation is not said twice.
    h.at(150)
    h.feed(fault("restored"))
    clock(h, 151)
    assert to_v1(h, outage)[-1] == "restored"
    assert to_v1(h, work) == ["outage", "cancelled"]


def sent_feed(d: Daemon, minutes: int, *events: OutageEvent) -> None:
    """Fold ``events`` at ``minutes`` and deliver what they queued."""
    feed(d, minutes, *events)
    while d.deliverer.run_once(d.clock()):
        pass


def test_work_called_off_after_it_began_is_held_then_told_after_the_fault(
        shared: Daemon) -> None:
    """Begun work called off is a word of power back: held while a fault keeps the village
    dark; once it is dark nowhere, the fault's 恢复送电 (of its own area) does not stand in
    for it. (马集村 V1: T1 on F1 under the work, T6 on F2 in the fault.)"""
    began = CT0 + timedelta(minutes=30)
    work_ev = {"kind": "planned", "start": began, "expected_restoration": began + timedelta(
        hours=4)}
    sent_feed(shared, 1, sev("P1", "T1", **work_ev))
    sent_feed(shared, 60, sev("N2", "T6", start=CT0 + timedelta(minutes=60)))
    work, outage = by_feeder(shared, "F1").id, by_feeder(shared, "F2").id
    sent_feed(shared, 90, sev("P1", "T1", status="cancelled", **work_ev))
    assert ("V1", "cancelled", work) not in told(shared)  # held: V1 is dark in the fault
    assert shared.store.kv_prefixed("held:") == {work: {"villages": ["V1"]}}
    check(shared, 91)
    assert ("V1", "cancelled", work) not in told(shared)
    sent_feed(shared, 150, sev("N2", "T6", start=CT0 + timedelta(minutes=60), status="restored",
                          end=CT0 + timedelta(minutes=150)))
    assert ("V1", "restored", outage) in told(shared)
    check(shared, 151)
    assert ("V1", "cancelled", work) in told(shared)
    assert shared.store.kv_prefixed("held:") == {}
    assert steps(shared, work, "held_released") == [{"villages": ["V1"], "already_told": []}]


def test_a_cancellation_that_waited_out_quiet_hours_is_not_made_moot_by_a_fault(
        make: Any) -> None:
    """Queued at night, it waits for the morning; a fault darkening the village meanwhile
    makes no word of work three days ahead false."""
    h = make(notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    h.feed(planned())
    work = by_kind(h, "planned")
    h.at(780)  # 23:00
    h.feed(planned("cancelled"))
    assert to_v1(h, work) == ["outage"]  # quiet hours: it waits
    h.at(800)
    h.feed(ev("F1", "T2", start=T0 + timedelta(minutes=800)))  # a fault: never quiet
    h.at(1261)  # 07:01, the fault still on
    h.deliver()
    assert to_v1(h, work) == ["outage", "cancelled"]
    assert h.daemon.store.kv_prefixed("held:") == {}


# -- a snapshot record gone before its start -----------------------------------------------


def test_work_gone_before_its_start_is_called_off_though_confirmed_after_it(
        make: Any) -> None:
    """Work 10:10-14:10 gone from the list at 10:05 and again at 10:12: called off, never
    "恢复送电" at 10:12 (nor an outage counted in the reliability figures)."""
    h = make()
    work = OutageEvent(source="feed", event_id="P1", kind="planned", status="active",
                       start=T0 + timedelta(minutes=10), transformers=("T1",),
                       expected_restoration=T0 + timedelta(hours=4, minutes=10), cause="检修")
    cursor: dict[str, Any] = {}
    for minutes, events in ((0, [work]), (5, []), (12, [])):
        h.at(minutes)
        result, new = PollResult(events=list(events)), dict[str, Any]()
        snapshot("feed", cursor, result, new, h.now, complete=True, held=set())
        cursor = new
        h.daemon.store.ingest("feed", result, h.now)
        h.daemon.process()
        h.deliver()
    inc = by_kind(h, "planned")
    assert to_v1(h, inc) == ["outage", "cancelled"]
    assert not h.sent("restored")
    assert h.incident(inc)["status"] == "cancelled"


WORK = {"powerOffId": "P1", "typeCode": "1", "startTime": "2026-11-23 16:10:00",
        "stopTime": "2026-11-23 20:00:00", "lineName": "10kV马集线",
        "pubTranName": "南谢庄村2#公变"}


def test_the_feed_judges_work_gone_by_its_first_miss(server: tuple[str, Scripted]) -> None:  # noqa: F811
    """NOW is 16:00 in Beijing: work for 16:10 missing at 16:05 and 16:12 is cancelled; work
    that began at 15:00 and is missing from then on is restored, at the second miss."""
    url, script = server
    begun = dict(WORK, powerOffId="P2", startTime="2026-11-23 15:00:00")
    script.replies = [listing(WORK, begun), listing(), listing()]
    source = make_source(url + "/notices")
    source.start(None)
    results = []
    for minutes in (0, 5, 12):
        results.append(source.poll(NOW + timedelta(minutes=minutes)))
        source.acknowledge(results[-1])
    assert not results[1].events
    ended = {e.event_id: e for e in results[2].events}
    assert ended["P1"].status == "cancelled" and ended["P1"].end is None
    assert ended["P2"].status == "restored" and ended["P2"].end == NOW + timedelta(minutes=12)


def test_a_cursor_written_before_the_first_miss_was_kept_reads_as_before(
        server: tuple[str, Scripted]) -> None:  # noqa: F811
    """An older cursor knows a miss but not when: the second miss's time decides, as it did."""
    url, script = server
    script.replies = [listing()]
    old = {"active": {"P1": {"kind": "planned", "start": "2026-11-23T08:10:00+00:00",
                             "feeder": "10kV马集线"}},
           "missing": {"P1": 1}}
    source = make_source(url + "/notices")
    source.start(old)
    (ended,) = source.poll(NOW + timedelta(minutes=12)).events
    assert ended.status == "restored"
    source.start(old)
    (ended,) = source.poll(NOW + timedelta(minutes=5)).events
    assert ended.status == "cancelled"
