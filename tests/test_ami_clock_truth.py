"""Device clocks and unknown devices through the daemon (demo topology, a ``file_drop`` AMI
source, SQLite, as in :mod:`tests.test_daemon_ami_truth`): one wrong clock must not turn a
reclose into an outage, nor date an outage to 2000, and a report the screen passes over is
never passed over silently."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from tests.test_daemon_ami_truth import CHANNELS, METERS, NOW, ROOT, TERMINAL, Run, report
from tests.test_lifecycle import Recorder

OFF, ON = "3.26.0.85", "3.26.0.216"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def liaison_body(run: Run) -> str:
    """The first notice told to village V001's liaisons."""
    return next(m.body for m in run.daemon.store.messages()
                if m.audience == "liaison" and ":V001:" in m.key)


def area_outputs(run: Run) -> list[tuple[str, str]]:
    """``(status, start)`` of the screen's area outputs, in order."""
    return [(s.event.status, s.event.start.isoformat()) for s in run.daemon.store.events()
            if s.event is not None and s.event.source == "ami"]


def test_a_slow_meter_clock_does_not_turn_a_reclose_into_an_outage(run: Run) -> None:
    """Nine meters off for 5 s; a tenth, its clock 3 h slow, reports its off in the next poll
    while the blip is still held: the start must not move 3 h back (released at once)."""
    slow = NOW - timedelta(hours=3)
    run.step(NOW + timedelta(seconds=1), [report(m, OFF, NOW) for m in METERS[:9]])
    run.step(NOW + timedelta(seconds=3), [report(METERS[9], OFF, slow)])
    run.step(NOW + timedelta(seconds=6),
             [report(m, ON, NOW + timedelta(seconds=5)) for m in METERS[:9]]
             + [report(METERS[9], ON, slow + timedelta(seconds=5))])
    run.step(NOW + timedelta(minutes=5))
    assert run.told() == []
    assert area_outputs(run) == []


def test_a_slow_meter_clock_leaves_a_real_outage_its_start(run: Run) -> None:
    slow = NOW - timedelta(hours=3)
    run.step(NOW + timedelta(seconds=1), [report(m, OFF, NOW) for m in METERS[:9]])
    run.step(NOW + timedelta(seconds=3), [report(METERS[9], OFF, slow)])
    run.step(NOW + timedelta(minutes=3))
    assert run.told() == ["outage"]
    assert "停电时间：2026-11-23 10:00" in liaison_body(run)  # NOW in Asia/Shanghai
    assert area_outputs(run) == [("active", NOW.isoformat())]


def test_a_meter_off_just_before_the_start_still_moves_it(run: Run) -> None:
    """The window still counts: a meter 30 s earlier, reported late, is the outage's start."""
    run.step(NOW + timedelta(seconds=1), [report(m, OFF, NOW) for m in METERS[:9]])
    run.step(NOW + timedelta(seconds=3), [report(METERS[9], OFF, NOW - timedelta(seconds=30))])
    run.step(NOW + timedelta(minutes=3))
    assert area_outputs(run) == [("active", (NOW - timedelta(seconds=30)).isoformat())]


def test_a_meter_clock_reset_to_2000_does_not_date_the_outage(run: Run) -> None:
    run.step(NOW + timedelta(seconds=1), [report(m, OFF, NOW) for m in METERS[:9]])
    run.step(NOW + timedelta(seconds=3),
             [{"device_id": METERS[9], "code": OFF, "time": "2000-01-01 00:00:00"}])
    run.step(NOW + timedelta(minutes=3))
    assert run.told() == ["outage"]
    body = liaison_body(run)
    assert "停电时间：2026-11-23 10:00" in body and "INC-20261123-" in body
    assert "2000" not in body
    (q,) = run.daemon.store.quarantined()
    assert METERS[9] in q["reason"] and "1999-12-31T16:00:00+00:00" in q["reason"]


@pytest.mark.parametrize("with_on", [True, False])
def test_a_terminal_clock_reset_to_2000_announces_no_outage(run: Run, with_on: bool) -> None:
    """A concentrator rebooting with a dead clock battery: ERC14 off at 2000-01-01 (the RTC's
    reset value), on at the real time; its meters kept power and say nothing."""
    record: dict[str, Any] = {"terminal_id": TERMINAL, "code": "ERC14",
                              "off_time": "2000-01-01 00:00:00"}
    if with_on:
        record["on_time"] = "2026-11-23 10:00:00"
    run.step(NOW + timedelta(seconds=5), [record])
    run.step(NOW + timedelta(minutes=5))
    assert run.told() == []
    assert area_outputs(run) == []
    (q,) = run.daemon.store.quarantined()
    assert q["source"] == "ami-files"
    assert TERMINAL in q["reason"] and "1999-12-31T16:00:00+00:00" in q["reason"]
    assert "ERC14" in q["raw"]  # the record itself is kept for a person to read


def test_a_set_aside_report_is_quarantined_once_across_a_restart(run: Run) -> None:
    """Reports screened before a crash are screened again on start; their quarantine entry,
    committed with them, is not written twice."""
    run.step(NOW + timedelta(seconds=5), [{"terminal_id": TERMINAL, "code": "ERC14",
                                           "off_time": "2000-01-01 00:00:00"}])
    again = Daemon(run.daemon.config, channels={n: Recorder(n) for n in CHANNELS},
                   clock=lambda: run.now)
    try:
        again.start()
        assert len(again.store.quarantined()) == 1
    finally:
        again.close()


class KeepRun(Run):
    """:class:`Run` with ``ami.unknown_devices: keep``."""

    def __init__(self, tmp: Path) -> None:
        self.drop = tmp / "drop"
        self.drop.mkdir()
        self.now = NOW
        self.files = iter(range(1_000_000))
        config = parse_config({
            "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
            "database": {"url": f"sqlite:///{tmp / 'db.sqlite'}"},
            "sources": [{"name": "ami-files", "type": "file_drop", "directory": str(self.drop),
                         "settle_seconds": 0, "format": "jsonl",
                         "ami": {"unknown_devices": "keep"}}],
            "channels": {name: {"type": "file", "path": str(tmp / "sink.jsonl")}
                         for name in CHANNELS},
        })
        self.daemon = Daemon(config, channels={name: Recorder(name) for name in CHANNELS},
                             clock=lambda: self.now)
        self.daemon.start()


def test_unknown_meters_kept_are_named_and_counted(tmp_path: Path) -> None:
    """Six of a dark area's ten meters were swapped for ids not yet in meters.csv: no outage
    can be told from four, but the log names each new meter once and the metric counts."""
    keep = KeepRun(tmp_path)
    try:
        new = [f"NEW-{i}" for i in range(6)]
        with capture_logs() as logs:
            keep.step(NOW + timedelta(seconds=2),
                      [report(m, OFF, NOW) for m in METERS[:4] + new])
            keep.step(NOW + timedelta(seconds=30),
                      [report(m, ON, NOW + timedelta(seconds=20)) for m in new])
        named = [entry["device"] for entry in logs if entry["event"] == "ami_unknown_device"]
        assert sorted(named) == [f"meter:{m}" for m in new]
        assert all(entry["source"] == "ami-files" for entry in logs
                   if entry["event"] == "ami_unknown_device")
        value = keep.daemon.metrics.registry.get_sample_value(
            "outage_sentinel_ami_unknown_device_reports_total", {"source": "ami-files"})
        assert value == 12
    finally:
        keep.daemon.close()


def test_unknown_devices_memory_is_bounded() -> None:
    from outage_sentinel.screening import UnknownDevices  # here: the old code lacks it

    seen = UnknownDevices(limit=3)
    said = [seen.note("s", f"meter:X{i}") for i in range(10_000)]
    assert said[:3] == ["name"] * 3 and said[3] == "limit" and set(said[4:]) == {None}
    assert len(seen.named["s"]) == 3
    assert seen.note("s", "meter:X0") is None  # named once
    assert seen.note("other", "meter:X0") == "name"  # once per source




def test_the_start_an_outage_opened_with_survives_a_restart() -> None:
    """Pure screen: the window is measured from the start the outage opened with (saved with
    the state), not from wherever late meters moved it, so late "offs" cannot walk the start
    back a window at a time."""
    from outage_sentinel.ami import AmiRegistry, AmiScreen, compact_time, device_ref
    from outage_sentinel.events import OutageEvent

    def off(meter: str, seconds: float) -> OutageEvent:
        t = NOW + timedelta(seconds=seconds)
        return OutageEvent(source="ami-files", event_id=f"{meter}:off:{compact_time(t)}",
                           kind="fault", status="active", signal="dead", start=t,
                           area_text=device_ref("meter", meter))

    reg = AmiRegistry.from_records([(f"M{i}", "TX", "meter") for i in range(11)])
    screen = AmiScreen(reg)
    screen.feed([off(f"M{i}", 0) for i in range(9)], NOW + timedelta(seconds=1))
    screen.feed([off("M9", -50)], NOW + timedelta(seconds=2))  # within the window: moves it
    screen = AmiScreen.from_state(screen.to_state(), reg)
    screen.feed([off("M10", -100)], NOW + timedelta(seconds=3))  # 50 s before, 100 s before
    result = screen.tick(NOW + timedelta(minutes=2))
    assert [e.start for e in result.events] == [NOW - timedelta(seconds=50)]


def test_a_polled_line_counts_the_reports_set_aside(run: Run) -> None:
    """The poll's log line is what an operator reads: a reset clock's report quarantined by the
    screen is counted there with the source's own bad records."""
    with capture_logs() as logs:
        run.step(NOW + timedelta(seconds=5), [{"terminal_id": TERMINAL, "code": "ERC14",
                                               "off_time": "2000-01-01 00:00:00"}])
    (polled,) = [entry for entry in logs if entry["event"] == "polled"]
    assert polled["quarantined"] == 1
    value = run.daemon.metrics.registry.get_sample_value(
        "outage_sentinel_events_quarantined_total", {"source": "ami-files"})
    assert value == 1  # once, not by the screener and the poller both


def test_a_dark_village_reported_days_late_is_an_outage(run: Run) -> None:
    """A typhoon took the concentrator's link down for 73 h while the village stayed dark: its
    meters' offs arrive now, 73 h late. That is a real time, not a reset clock."""
    run.step(NOW + timedelta(hours=73),
             [report(m, OFF, NOW + timedelta(seconds=i)) for i, m in enumerate(METERS)])
    run.step(NOW + timedelta(hours=73, minutes=5))
    assert run.told() == ["outage"]
    assert area_outputs(run) == [("active", NOW.isoformat())]
    assert run.daemon.store.quarantined() == []
    run.step(NOW + timedelta(hours=74),
             [report(m, ON, NOW + timedelta(hours=73, minutes=50)) for m in METERS])
    run.step(NOW + timedelta(hours=74, minutes=5))
    assert area_outputs(run)[-1] == ("restored", NOW.isoformat())


def test_an_outage_of_74_hours_reported_at_its_end_is_kept(run: Run) -> None:
    """A 74 h outage whose offs and ons all arrive when the link comes back: recorded, with
    its real start and end, nothing quarantined."""
    end = NOW + timedelta(hours=74)
    run.step(end + timedelta(seconds=60),
             [report(m, OFF, NOW + timedelta(seconds=i)) for i, m in enumerate(METERS)]
             + [report(m, ON, end) for m in METERS])
    run.step(end + timedelta(minutes=5))
    assert area_outputs(run) == [("active", NOW.isoformat()), ("restored", NOW.isoformat())]
    assert run.daemon.store.quarantined() == []
    assert len(run.daemon.store.load_incidents(open_only=False)) == 1


def test_offs_replayed_after_a_long_stop_are_still_restored(run: Run) -> None:
    """The daemon screened ten offs, then died before saving its screen; it is restarted 73 h
    later and replays them. They are judged as when first received (applied), so the ons
    that follow restore the outage rather than finding nothing to close."""
    run.step(NOW + timedelta(seconds=2),
             [report(m, OFF, NOW + timedelta(seconds=i)) for i, m in enumerate(METERS)])
    crashed = run.daemon
    run.now = NOW + timedelta(hours=73)
    run.daemon = Daemon(crashed.config, channels={n: Recorder(n) for n in CHANNELS},
                        clock=lambda: run.now)
    try:
        run.daemon.start()
        run.step(NOW + timedelta(hours=73, minutes=5))
        run.step(NOW + timedelta(hours=73, minutes=6),
                 [report(m, ON, NOW + timedelta(hours=73, minutes=5)) for m in METERS])
        run.step(NOW + timedelta(hours=73, minutes=10))
        assert area_outputs(run) == [("active", NOW.isoformat()),
                                     ("restored", NOW.isoformat())]
        assert run.daemon.store.quarantined() == []
    finally:
        crashed.close()


def test_a_replayed_report_is_judged_by_when_it_was_received() -> None:
    """Pure screen: the restart's time does not decide what is believed. An "off" received as
    it happened is applied even if replayed more than a year later; one a year older than its
    receipt (a reset clock) is set aside whenever it is screened."""
    from outage_sentinel.ami import AmiRegistry, AmiScreen, compact_time, device_ref
    from outage_sentinel.events import OutageEvent

    def off(meter: str, t: datetime) -> OutageEvent:
        return OutageEvent(source="ami-files", event_id=f"{meter}:off:{compact_time(t)}",
                           kind="fault", status="active", signal="dead", start=t,
                           area_text=device_ref("meter", meter))

    reg = AmiRegistry.from_records([(f"M{i}", "TX", "meter") for i in range(10)])
    reset = datetime(2000, 1, 1, tzinfo=UTC)
    events = [off(f"M{i}", NOW) for i in range(9)] + [off("M9", reset)]
    later = NOW + timedelta(days=400)
    screen = AmiScreen(reg)
    result = screen.feed(events, later, [NOW + timedelta(seconds=2)] * len(events))
    assert [s.event.start for s in result.set_aside] == [reset]
    released = screen.tick(later + timedelta(minutes=3)).events  # held as a backlog first
    assert [(e.status, e.start) for e in released] == [("active", NOW)]
