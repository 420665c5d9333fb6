"""The daily report a daemon was not running for (down, restarting, or a standby not yet leading
at ``command_centre.daily_report_at``) is queued when a node starts leading, once: a start
after the report time queues yesterday's report, a second start (or another node's takeover)
the same day queues nothing more, a start before the report time leaves it to the day's job.

The real :class:`Daemon`, in process, on a hand-set clock, with file channels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.report_job import due_report_day
from outage_sentinel.store import Store
from tests.conftest import build_grid
from tests.test_shared_areas import CHANNELS

CN = ZoneInfo("Asia/Shanghai")
#: The report for this day is due at 07:00 local on 2026-12-08.
REPORT_DAY = "20261207"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def local(hour: int, minute: int, day: int = 8) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=CN)


def config(tmp_path: Path, db_url: str, **extra: Any) -> Any:
    return parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": db_url},
        "timezone": "Asia/Shanghai",
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心", "daily_report_at": "07:00"},
        **extra})


def reports(store: Store) -> list[Any]:
    return [m for m in store.messages() if m.purpose == "daily_report"]


def sunk_reports(tmp_path: Path) -> list[dict[str, Any]]:
    sink = tmp_path / "sink.jsonl"
    if not sink.exists():
        return []
    lines = [json.loads(line) for line in sink.read_text("utf-8").splitlines() if line]
    return [r for r in lines if "REPORT-" in r["key"]]


@pytest.fixture
def start(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """``start(now)``: a daemon on the test's database started at ``now`` (closed after)."""
    started: list[Daemon] = []

    def make(now: datetime, **extra: Any) -> Daemon:
        for d in started:  # one node at a time: the previous one stops first
            d.close()
        started.clear()
        d = Daemon(config(tmp_path, db_url, **extra), topology=build_grid(), sources=[],
                   clock=Clock(now))
        started.append(d)
        d.start()
        return d

    yield make
    for d in started:
        d.close()


def test_a_start_after_the_report_time_queues_yesterdays_report_once(
        start: Any, tmp_path: Path) -> None:
    first = start(local(7, 5))  # down 06:55-07:05: the 07:00 job never ran
    (row,) = reports(first.store)
    assert row.incident_id.endswith(REPORT_DAY) and row.incident_id.startswith("REPORT-")
    assert row.channel == "cc" and row.target == "指挥中心"
    first.run_once()  # delivers it (and starting again changes nothing)
    assert [r.status for r in reports(first.store)] == ["sent"]
    assert len(sunk_reports(tmp_path)) == 1

    again = start(local(9, 30))  # restarted later the same day
    assert [r.status for r in reports(again.store)] == ["sent"]
    again.run_once()
    assert len(reports(again.store)) == 1
    assert len(sunk_reports(tmp_path)) == 1


def test_a_start_before_the_report_time_queues_nothing(start: Any) -> None:
    d = start(local(6, 59))
    assert reports(d.store) == []
    # The day's job then queues it at 07:00; a start after that adds nothing.
    d.clock.now = local(7, 0)
    assert d.report_job.run_once(d.clock()) == 1
    later = start(local(7, 1))
    assert len(reports(later.store)) == 1


def test_only_the_most_recent_report_is_caught_up(start: Any) -> None:
    d = start(local(7, 5, day=10))  # down for days: no backlog, just the 9th's report
    assert [r.incident_id[-8:] for r in reports(d.store)] == ["20261209"]


def test_no_report_without_a_report_time(start: Any) -> None:
    d = start(local(7, 5), command_centre={"channel": "cc", "target": "指挥中心"})
    assert reports(d.store) == []


def test_due_report_day_in_local_time() -> None:
    # 23:30 UTC on the 7th is 07:30 on the 8th in Shanghai: the 7th's report is due.
    assert str(due_report_day(datetime.fromisoformat("2026-12-07T23:30:00+00:00"), "07:00",
                              CN)) == "2026-12-07"
    assert due_report_day(datetime.fromisoformat("2026-12-07T22:59:00+00:00"), "07:00",
                          CN) is None


def test_a_standby_taking_over_queues_the_missed_report_once(
        tmp_path: Path, pg_url: str) -> None:
    """Two nodes under ``ha``: the leader was up but did not run the 07:00 job (stopped
    before it); the standby that takes over at 07:05 queues it; the first node, leading again
    later the same day, does not queue it again."""
    clock = Clock(local(6, 50))
    nodes = [Daemon(config(tmp_path, pg_url, ha={"enabled": True, "node": name,
                                                  "lease_seconds": 60}),
                    topology=build_grid(), sources=[], clock=clock) for name in ("a", "b")]
    a, b = nodes
    try:
        a.start()
        b.start()
        assert a.leadership.is_leader() and not b.leadership.is_leader()
        assert reports(a.store) == []
        clock.now = local(7, 5)
        a.leadership.release()  # the leader goes (a clean stop gives the lease up)
        a.term.end()
        assert b.leadership.renew()  # the standby's lease job: it takes over...
        assert reports(b.store) == []  # ...and leaves the report's build to its own job
        assert b.catch_up_tick() == 1
        assert b.catch_up_tick() == 0  # once
        (row,) = reports(b.store)
        assert row.incident_id.endswith(REPORT_DAY)
        clock.now = local(8, 0)
        b.leadership.release()
        b.term.end()
        assert a.leadership.renew()  # back to the first node: nothing new
        assert a.catch_up_tick() == 0
        assert len(reports(a.store)) == 1
    finally:
        for d in nodes:
            d.close()
