"""A crew dispatch held by the command centre, or retried, and sent later counts the minutes to
its arrival deadline as they are when it goes (:func:`outage_sentinel.crew.deadline_true_at`):
queued with 剩89分钟 and released an hour later it says 剩29分钟, and past the deadline 已超N分钟
— never the count it had when queued. Only that count changes; the rest of the orders stand.

The dispatch is the daemon's own (real processing and rendering, SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from outage_sentinel import crew as crews
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.outbox_control import OutboxControl
from outage_sentinel.store import OutboxRow
from tests.conftest import T0, build_grid
from tests.test_lifecycle import Recorder
from tests.test_shared_areas import CHANNELS, Clock, ev, feed
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)


def queued_dispatch(d: Daemon) -> OutboxRow:
    feed(d, 1, ev("N1", "T4"))
    (row,) = [m for m in d.store.messages() if m.purpose == "dispatch"]
    assert row.status == "pending"
    return row


def deadline_line(body: str, marker: str) -> str:
    (line,) = [ln for ln in body.splitlines() if ln.startswith(marker)]
    return line


def test_a_dispatch_sent_later_counts_the_minutes_left_then(daemon: Daemon) -> None:  # noqa: F811
    row = queued_dispatch(daemon)
    params = row.payload["params"]
    deadline = datetime.fromisoformat(params["deadline_at"])
    left = crews.minutes_left(deadline, T0 + timedelta(minutes=1))
    queued = deadline_line(row.body, "到达时限：")
    assert f"剩{left}分钟" in queued
    # Sent at once: nothing changes (the deliverer keeps the row as queued).
    assert crews.deadline_true_at(row.body, params, T0 + timedelta(minutes=1), "zh") == (
        row.body, params)
    # Held an hour, then released: the minutes left then.
    body, said = crews.deadline_true_at(row.body, params, T0 + timedelta(minutes=61), "zh")
    line = deadline_line(body, "到达时限：")
    assert line == queued.replace(f"剩{left}分钟", f"剩{left - 60}分钟")
    # (and how long the outage has lasted: tests/test_priority_minutes_sent.py)
    assert said == {**params, "deadline_count": f"剩{left - 60}分钟",
                    "outage_for": "已停电1小时1分钟"}
    # Every other line of the orders but the priority reason's is as it was queued.
    assert [a for a in body.splitlines() if a != line and not a.startswith("优先原因：")] == [
        b for b in row.body.splitlines() if b != queued and not b.startswith("优先原因：")]
    # Past the deadline: overdue, and by how much.
    body, said = crews.deadline_true_at(row.body, params, deadline + timedelta(minutes=7), "zh")
    assert deadline_line(body, "到达时限：") == queued.replace(f"剩{left}分钟", "已超7分钟")
    assert "剩" not in deadline_line(body, "到达时限：")
    # Sent again from what was sent (the row keeps it): counted afresh from that text too.
    again, _ = crews.deadline_true_at(body, said, deadline + timedelta(minutes=20), "zh")
    assert deadline_line(again, "到达时限：") == queued.replace(f"剩{left}分钟", "已超20分钟")


def test_the_english_dispatch_is_counted_again_too(tmp_path: Path, db_url: str) -> None:
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "command"},
        "notify": {"language": "en"},
    })
    d = Daemon(config, topology=build_grid(), sources=[],
               channels={name: Recorder("all") for name in CHANNELS}, clock=Clock())
    d.start()
    try:
        row = queued_dispatch(d)
    finally:
        d.close()
    params = row.payload["params"]
    deadline = datetime.fromisoformat(params["deadline_at"])
    queued = deadline_line(row.body, "Arrive by ")
    left = crews.minutes_left(deadline, T0 + timedelta(minutes=1))
    assert f"; {left} min left)" in queued
    body, _ = crews.deadline_true_at(row.body, params, deadline + timedelta(minutes=3), "en")
    assert deadline_line(body, "Arrive by ") == queued.replace(f"{left} min left",
                                                              "3 min overdue")


def test_a_dispatch_queued_without_its_deadline_kept_is_left_as_it_is(
        daemon: Daemon) -> None:  # noqa: F811
    """Queued before the deadline was kept with it: nothing to count from, nothing changed."""
    row = queued_dispatch(daemon)
    old = {k: v for k, v in row.payload["params"].items()
           if k not in ("deadline_at", "deadline_count", "outage_since", "outage_for")}
    assert crews.deadline_true_at(row.body, old, T0 + timedelta(hours=3), "zh") == (row.body, old)


def test_the_deliverer_sends_a_released_dispatch_with_the_minutes_left_then(
        daemon: Daemon) -> None:  # noqa: F811
    """End to end: the command centre holds the orders; released an hour later, the crew reads
    the minutes left at the release, and the row keeps what was sent."""
    row = queued_dispatch(daemon)
    control = OutboxControl(daemon.store, lambda: daemon.topology)
    control.take("hold", [row.id], "board:wang", daemon.clock(), reason="核实班组")
    left = crews.minutes_left(datetime.fromisoformat(row.payload["params"]["deadline_at"]),
                              daemon.clock())
    daemon.clock.now += timedelta(minutes=60)  # type: ignore[attr-defined]
    control.take("release", [row.id], "board:wang", daemon.clock())
    while daemon.deliverer.run_once(daemon.clock()):
        pass
    sent = [m for ch in daemon.channels.values() for m in ch.sent  # type: ignore[attr-defined]
            if m.purpose == "dispatch"]
    assert sent, "the released dispatch was sent"
    line = deadline_line(sent[-1].text, "到达时限：")
    assert f"剩{left - 60}分钟" in line and f"剩{left}分钟" not in line, line
    (kept,) = [m for m in daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent" and f"剩{left - 60}分钟" in kept.body
