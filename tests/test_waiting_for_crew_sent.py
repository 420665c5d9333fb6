"""The command centre's warning that no crew is free (``waiting_for_crew``, queued when a
dispatch finds none, :meth:`CrewDispatch._no_crew_in`) counts the minutes to the arrival
deadline as they are when it goes, as the escalations and a crew's dispatch do
(:data:`outage_sentinel.delivery.COUNTED_PURPOSES`): held, or retried, past the deadline it
says 已超N分钟 — in its text, in the markdown the robot gets and in the record the board
shows — never the 剩N分钟 it was queued with, which would tell the command centre it still
had time.

End to end through the daemon (real processing, clock check, outbox control, deliverer;
SQLite / PostgreSQL): the county's only crew is taken by the hospital's outage, so the first
outage's dispatch at the next check finds no crew."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from outage_sentinel import crew as crews
from outage_sentinel.events import PollResult
from outage_sentinel.outbox_control import OutboxControl
from outage_sentinel.store import OutboxRow
from tests.test_escalation_minutes_sent import deadline_line
from tests.test_lifecycle import Harness, ev


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def queued_warning(h: Harness) -> OutboxRow:
    """The first outage's crew preempted by the hospital's (both queued, not yet sent); the
    check a minute later finds no crew for the first: its warning waits in the outbox."""
    h.feed(ev("F1", "T1", "T2", "T3"))
    first = h.only_incident()
    h.at(2)
    h.daemon.store.ingest("feed", PollResult(events=[ev("F2", "T4", "T5", start=h.now)]),
                          h.now)
    h.daemon.process()
    h.at(3)
    h.daemon.lifecycle.check(h.now)
    (row,) = [m for m in h.daemon.store.messages() if m.purpose == "waiting_for_crew"]
    assert (row.incident_id, row.status, row.audience) == (first, "pending", "command")
    assert h.incident(first)["crew_id"] is None
    return row


def test_a_held_no_crew_warning_released_past_the_deadline_says_the_minutes_then(
        h: Harness) -> None:
    row = queued_warning(h)
    params = row.payload["params"]
    deadline = datetime.fromisoformat(params["deadline_at"])
    left = crews.minutes_left(deadline, h.now)
    assert left > 0 and params["deadline_count"] == f"剩{left}分钟"
    assert f"剩{left}分钟" in deadline_line(row.body, "到达时限：")
    control = OutboxControl(h.daemon.store, lambda: h.daemon.topology)
    control.take("hold", [row.id], "board:wang", h.now, reason="核实班组")
    h.at(3 + left + 9)  # nine minutes past the deadline
    control.take("release", [row.id], "board:wang", h.now)
    while h.daemon.deliverer.run_once(h.now):
        pass
    (sent,) = [m for m in h.channel.sent if m.purpose == "waiting_for_crew"]
    over = -crews.minutes_left(deadline, h.now)
    assert over == 9
    line = deadline_line(sent.text, "到达时限：")
    assert line == f"到达时限：{params['deadline']}（农村90分钟），已超{over}分钟。"
    assert deadline_line(sent.markdown or "", "到达时限：") == line
    assert sent.params["deadline_count"] == f"已超{over}分钟"
    # The rest of the warning is as queued: still no crew (how long the outage has lasted,
    # in its priority reason, is counted again too: tests/test_priority_minutes_sent.py).
    queued = deadline_line(row.body, "到达时限：")
    assert [a for a in sent.text.splitlines()
            if a != line and not a.startswith("优先原因：")] == [
        b for b in row.body.splitlines() if b != queued and not b.startswith("优先原因：")]
    assert "暂无可派抢修班组。" in sent.text.splitlines()
    # The record keeps what went, for every channel.
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent" and kept.body == sent.text
    assert kept.payload["markdown"] == sent.markdown
    assert kept.payload["params"]["deadline_count"] == f"已超{over}分钟"


def test_a_no_crew_warning_retried_before_the_deadline_counts_down(h: Harness) -> None:
    """The command centre's robot refused it (dead-lettered); the command centre sends it
    again 30 minutes later (the outbox's retry): it says the minutes left then."""
    h.channel.refuse.add("指挥中心")
    row = queued_warning(h)
    deadline = datetime.fromisoformat(row.payload["params"]["deadline_at"])
    h.daemon.deliverer.run_once(h.now)
    (tried,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert tried.status == "dead"
    h.channel.refuse.clear()
    h.at(33)
    OutboxControl(h.daemon.store, lambda: h.daemon.topology).take(
        "retry", [row.id], "board:wang", h.now)
    while h.daemon.deliverer.run_once(h.now):
        pass
    (sent,) = [m for m in h.channel.sent if m.purpose == "waiting_for_crew"]
    left = crews.minutes_left(deadline, h.now)
    assert left == crews.minutes_left(deadline, row.created_at) - 30
    assert f"剩{left}分钟" in deadline_line(sent.text, "到达时限：")
