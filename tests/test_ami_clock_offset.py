"""An AMI stream read in the wrong zone is said, not told as outage times (the audit's H7): a
concentrator stamps its meters' events in UTC without an offset while the county is read in
Asia/Shanghai, so a live outage at 10:00 is read as 02:00 — every report eight hours "old",
which the screen takes for an ordinary backlog. The daemon (in process: demo topology, a
``file_drop`` AMI source, SQLite) flags the source once (``ami_clock_offset``, naming the key
to set) and exports ``outage_sentinel_ami_clock_offset_hours{source}``, shifts nothing, and
clears the flag once the times read right; a real backlog, or a stream read right, is never
flagged. The pure core (:mod:`outage_sentinel.clock_offset`) is tested on its own at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.clock_offset import ClockOffsets, OffsetRule, stamped_zone
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from tests.test_daemon_ami_truth import CHANNELS, METERS, NOW
from tests.test_lifecycle import Recorder

ROOT = Path(__file__).resolve().parents[1]
OFF, ON = "3.26.0.85", "3.26.0.216"
SOURCE = "ami-files"
GAUGE = "outage_sentinel_ami_clock_offset_hours"
#: Meters of other areas, one off on its own now and then: the stream's everyday trickle.
TRICKLE = [f"M-T-CG01-{a:03d}-{i:03d}" for a in (2, 3, 4) for i in range(1, 9)]


class Stream:
    """The daemon on a clock the test moves, fed by files dropped into its AMI directory
    (``zone``: the source's ``ami.timezone``; none: the daemon's Asia/Shanghai)."""

    def __init__(self, tmp: Path, zone: str | None = None) -> None:
        self.tmp, self.drop = tmp, tmp / "drop"
        self.drop.mkdir(exist_ok=True)
        self.now = NOW
        self.files = count(len(list(self.drop.rglob("*.jsonl"))))
        source: dict[str, Any] = {"name": SOURCE, "type": "file_drop",
                                  "directory": str(self.drop), "settle_seconds": 0,
                                  "format": "jsonl"}
        if zone is not None:
            source["ami"] = {"timezone": zone}
        config = parse_config({
            "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
            "database": {"url": f"sqlite:///{tmp / 'db.sqlite'}"}, "sources": [source],
            "channels": {name: {"type": "file", "path": str(tmp / "sink.jsonl")}
                         for name in CHANNELS}})
        self.daemon = Daemon(config, channels={name: Recorder(name) for name in CHANNELS},
                             clock=lambda: self.now)
        self.daemon.start()

    def step(self, at: datetime, records: list[dict[str, Any]] | None = None) -> None:
        """Move the clock to ``at``; drop ``records`` as one file and poll; screen; process."""
        self.now = at
        if records:
            path = self.drop / f"f{next(self.files):04d}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
            os.utime(path, (at.timestamp() - 1, at.timestamp() - 1))
            for source in self.daemon.sources:
                self.daemon.poll(source)
        self.daemon.screen_tick(at)
        self.daemon.process()

    def gauge(self) -> float | None:
        return self.daemon.metrics.registry.get_sample_value(GAUGE, {"source": SOURCE})

    def outage_notices(self) -> list[str]:
        return [m.body for m in self.daemon.store.messages()
                if m.audience == "liaison" and ":V001:" in m.key and m.purpose == "outage"]


def stamp(t: datetime, zone_hours: float) -> str:
    """``t`` as a device on UTC+``zone_hours`` writes it: local wall time, no offset."""
    wall = t.astimezone(UTC) + timedelta(hours=zone_hours)
    return wall.replace(tzinfo=None).isoformat(sep=" ")


def trickle(run: Stream, start: datetime, minutes: int, zone_hours: float,
            late: timedelta = timedelta(seconds=20)) -> None:
    """A meter of another area off each minute and back 40 s later, each report arriving
    ``late`` after it happened, stamped on UTC+``zone_hours``."""
    for k in range(minutes):
        at = start + timedelta(minutes=k)
        meter = TRICKLE[k % len(TRICKLE)]
        run.step(at + late, [{"device_id": meter, "code": OFF, "time": stamp(at, zone_hours)},
                             {"device_id": meter, "code": ON,
                              "time": stamp(at + timedelta(seconds=40), zone_hours)}])


def flagged(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == "ami_clock_offset"]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stream]:
    r = Stream(tmp_path)
    yield r
    r.daemon.close()


def test_a_stream_stamped_in_utc_is_flagged_once_naming_the_key(run: Stream) -> None:
    with capture_logs() as logs:
        # The area's ten meters off at 10:00 Beijing (02:00 UTC), stamped 02:00 without an
        # offset, and the trickle of the next quarter hour.
        run.step(NOW + timedelta(seconds=12), [
            {"device_id": m, "code": OFF, "time": stamp(NOW + timedelta(seconds=i), 0)}
            for i, m in enumerate(METERS)])
        trickle(run, NOW + timedelta(minutes=1), 14, zone_hours=0)
        assert run.gauge() == -8.0
        trickle(run, NOW + timedelta(minutes=15), 10, zone_hours=0)
    (warning,) = flagged(logs)  # once, however long the stream goes on
    assert warning["log_level"] == "warning" and warning["source"] == SOURCE
    assert warning["offset_hours"] == -8.0
    assert warning["config_key"] == f"sources ({SOURCE}).ami.timezone"
    assert warning["read_in"] == "Asia/Shanghai" and warning["stamped_in"] == "UTC"
    assert f"sources ({SOURCE}).ami.timezone" in warning["hint"]
    assert run.gauge() == -8.0
    # Nothing is shifted: the command centre decides. The outage still stands as read.
    assert run.daemon.screener.screen.outages() == {"T-CG01-001": NOW - timedelta(hours=8)}


def test_a_stream_read_right_is_not_flagged(run: Stream) -> None:
    with capture_logs() as logs:
        trickle(run, NOW, 25, zone_hours=8)
    assert flagged(logs) == [] and run.gauge() == 0.0


def test_a_real_backlog_is_not_a_clock_offset(run: Stream) -> None:
    """A concentrator's log of an outage eight hours ago, uploaded in one burst, and a
    head-end catching up on four hours over twenty minutes, amid a live stream read right."""
    with capture_logs() as logs:
        old = NOW - timedelta(hours=8)
        run.step(NOW + timedelta(seconds=5), [
            {"device_id": m, "code": code, "time": stamp(old + timedelta(minutes=dt), 8)}
            for m in METERS for code, dt in ((OFF, 0), (ON, 30))])
        trickle(run, NOW + timedelta(minutes=1), 5, zone_hours=8)
        for k in range(20):  # report times 8 h → 4 h old, arriving a minute apart
            at = NOW + timedelta(minutes=6 + k)
            was = old + timedelta(minutes=12 * k)
            meter = TRICKLE[k % len(TRICKLE)]
            run.step(at, [{"device_id": meter, "code": OFF, "time": stamp(was, 8)},
                          {"device_id": meter, "code": ON,
                           "time": stamp(was + timedelta(minutes=2), 8)}])
    assert flagged(logs) == [] and run.gauge() == 0.0


def test_a_source_stamped_ahead_is_flagged_with_the_zone_it_stamps_in(tmp_path: Path) -> None:
    """Read in UTC (``ami.timezone: UTC``) while its devices stamp Beijing time: every report
    eight hours in the future."""
    run = Stream(tmp_path, zone="UTC")
    try:
        with capture_logs() as logs:
            trickle(run, NOW, 25, zone_hours=8)
        (warning,) = flagged(logs)
        assert warning["offset_hours"] == 8.0 and warning["read_in"] == "UTC"
        assert warning["stamped_in"] == "UTC+08:00"
        assert run.gauge() == 8.0
    finally:
        run.daemon.close()


def test_the_flag_survives_a_restart_and_clears_once_the_zone_is_set(tmp_path: Path) -> None:
    run = Stream(tmp_path)
    with capture_logs() as logs:
        trickle(run, NOW, 25, zone_hours=0)
    assert len(flagged(logs)) == 1 and run.gauge() == -8.0
    run.daemon.close()
    # The command centre sets the source's zone and restarts: the flag stands until the
    # stream shows the times read right.
    run = Stream(tmp_path, zone="UTC")
    try:
        run.now = NOW + timedelta(minutes=30)
        run.step(run.now)
        assert run.gauge() == -8.0
        with capture_logs() as logs:
            trickle(run, NOW + timedelta(minutes=30), 30, zone_hours=0)
        assert flagged(logs) == []
        (cleared,) = [e for e in logs if e["event"] == "ami_clock_offset_cleared"]
        assert cleared["source"] == SOURCE and cleared["offset_hours"] == -8.0
        assert run.gauge() == 0.0
    finally:
        run.daemon.close()


def test_the_audits_outage_at_ten_is_flagged_by_its_restoration(run: Stream) -> None:
    """The audit's reproduction: ten meters off at 10:00 and back at 10:30, stamped in UTC.
    The outage notice goes out before any stream could be judged (it still says 02:00); the
    restoration's reports, half an hour on, make the stream and the source is flagged."""
    with capture_logs() as logs:
        run.step(NOW + timedelta(seconds=12), [
            {"device_id": m, "code": OFF, "time": stamp(NOW + timedelta(seconds=i), 0)}
            for i, m in enumerate(METERS)])
        run.step(NOW + timedelta(minutes=3))
        assert run.outage_notices() and run.gauge() == 0.0
        back = NOW + timedelta(minutes=30)
        run.step(back + timedelta(seconds=5),
                 [{"device_id": m, "code": ON, "time": stamp(back, 0)} for m in METERS])
    (warning,) = flagged(logs)
    assert warning["offset_hours"] == -8.0 and run.gauge() == -8.0


# -- the pure core ---------------------------------------------------------------------------

def feed(offsets: ClockOffsets, source: str, arrivals: list[datetime],
         offset: timedelta) -> None:
    for a in arrivals:
        offsets.observe(source, a + offset, a)


def minutes(n: int, per: int = 1, start: datetime = NOW) -> list[datetime]:
    return [start + timedelta(minutes=k, milliseconds=s) for k in range(n) for s in range(per)]


def test_core_half_hour_zones_and_batched_exports_are_flagged() -> None:
    offsets = ClockOffsets()
    feed(offsets, "india", minutes(20), timedelta(hours=-5, minutes=-30, seconds=-20))
    # Files exported every 15 minutes: each report 0–15 min late, the zone 8 h off.
    for k in range(40):
        at = NOW + timedelta(minutes=k)
        offsets.observe("files", at - timedelta(hours=8, minutes=k % 15), at)
    changes = offsets.review(NOW + timedelta(minutes=40))
    assert {c.source: c.hours for c in changes} == {"india": -5.5, "files": -8.0}
    assert offsets.flags() == {"india": -5.5, "files": -8.0}


def test_core_near_zero_one_burst_or_too_few_reports_flag_nothing() -> None:
    offsets = ClockOffsets()
    feed(offsets, "late", minutes(30), timedelta(minutes=-25))  # steady, but within ±30 min
    feed(offsets, "burst", minutes(1, per=200), timedelta(hours=-8))  # one upload
    feed(offsets, "sparse", minutes(19), timedelta(hours=-8))  # 19 reports
    feed(offsets, "odd", minutes(30), timedelta(hours=-3, minutes=-17))  # no zone's offset
    assert offsets.review(NOW + timedelta(minutes=30)) == [] and offsets.flags() == {}


def test_core_a_burst_weighs_no_more_than_a_minute_of_the_stream() -> None:
    offsets = ClockOffsets()
    feed(offsets, "s", minutes(40), timedelta(hours=-8))
    # 500 reports read right in one minute: ten of them judged, 40 of 50 still at -8 h.
    feed(offsets, "s", minutes(1, per=500, start=NOW + timedelta(minutes=40)), timedelta(0))
    (change,) = offsets.review(NOW + timedelta(minutes=41))
    assert change.hours == -8.0


def test_core_clears_with_hysteresis_and_keeps_a_quiet_sources_flag() -> None:
    rule = OffsetRule()
    offsets = ClockOffsets(rule)
    feed(offsets, "s", minutes(30), timedelta(hours=-8))
    assert [c.hours for c in offsets.review(NOW + timedelta(minutes=30))] == [-8.0]
    # Quiet for longer than the window: nothing to judge, the flag stands.
    assert offsets.review(NOW + timedelta(hours=12)) == [] and offsets.flags() == {"s": -8.0}
    saved = ClockOffsets.from_state(json.loads(json.dumps(offsets.to_state())), rule)
    later = NOW + timedelta(hours=12)
    feed(saved, "s", minutes(30, start=later), timedelta(hours=-8))
    feed(saved, "s", minutes(20, start=later + timedelta(minutes=30)), timedelta(seconds=-5))
    assert saved.review(later + timedelta(minutes=50)) == []  # 30 of 50 still at -8 h
    feed(saved, "s", minutes(20, start=later + timedelta(minutes=50)), timedelta(seconds=-5))
    (cleared,) = saved.review(later + timedelta(minutes=70))
    assert cleared.hours is None and cleared.previous == -8.0 and saved.flags() == {}


def test_core_stamped_zone_names_the_utc_offset() -> None:
    assert stamped_zone("Asia/Shanghai", -8.0, NOW) == "UTC"
    assert stamped_zone("Asia/Shanghai", -2.5, NOW) == "UTC+05:30"
    assert stamped_zone("UTC", -5.0, NOW) == "UTC-05:00"


def board_record(run: Stream) -> Any:
    """What the board reads of the source's flag (kv ``clock_offset:<source>``)."""
    return run.daemon.store.kv_prefixed("clock_offset:").get(SOURCE)


def test_the_daemon_keeps_the_boards_record_of_the_flag_while_it_stands(tmp_path: Path
                                                                        ) -> None:
    """The flag reaches the board: the screen writes its record in the transaction that
    raises it and deletes it in the one that clears it; a start puts back a record lost
    with a state saved late, and drops one no flag stands for."""
    run = Stream(tmp_path)
    trickle(run, NOW, 25, zone_hours=0)
    record = board_record(run)
    assert record["offset_hours"] == -8.0 and record["stamped_in"] == "UTC"
    assert record["config_key"] == f"sources ({SOURCE}).ami.timezone"
    with run.daemon.store.transaction() as conn:  # lost; and one of a source long gone
        run.daemon.store.kv_delete_in(conn, f"clock_offset:{SOURCE}")
        run.daemon.store.kv_set_in(conn, "clock_offset:old-head-end", {"offset_hours": 8.0},
                                   run.now)
    run.daemon.close()
    run = Stream(tmp_path, zone="UTC")
    try:
        assert set(run.daemon.store.kv_prefixed("clock_offset:")) == {SOURCE}
        assert board_record(run)["offset_hours"] == -8.0
        trickle(run, NOW + timedelta(minutes=30), 30, zone_hours=0)
        assert run.gauge() == 0.0 and board_record(run) is None
    finally:
        run.daemon.close()
