"""A command-centre escalation held, or retried, and sent later counts the minutes to the
arrival deadline as they are when it goes (:func:`outage_sentinel.crew.deadline_true_at`), as
a crew dispatch does: queued at 剩14分钟 and released 20 minutes later it says 已超6分钟 —
never the count it had when queued, which would tell the command centre there is still time.
Only that count changes; the rest of the warning stands.

The escalation is the daemon's own (real processing, clock checks, rendering and deliverer;
SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from outage_sentinel import crew as crews
from outage_sentinel.store import OutboxRow
from tests.shared_setup import h as h  # noqa: F401  (the fixture)
from tests.shared_setup import h_en as h_en  # noqa: F401  (the fixture)
from tests.shared_setup import hold_then_send
from tests.test_lifecycle import T0, Harness, ev


def deadline_line(text: str, marker: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(marker)]
    return line


def queued_escalation(h: Harness) -> OutboxRow:
    """A fault whose only crew went to the hospital: 15 minutes before its rural deadline the
    clock check queues its escalation (not yet delivered)."""
    h.feed(ev("F1", "T1", "T2", "T3"))
    h.at(2)
    h.feed(ev("F2", "T4", "T5", start=h.now))
    h.at(76)
    h.daemon.lifecycle.check(h.now)
    (row,) = [m for m in h.daemon.store.messages() if m.purpose.startswith("escalation_")]
    assert row.status == "pending" and row.audience == "command"
    return row


def test_the_escalation_row_keeps_its_deadline_beside_the_digest_facts(h: Harness) -> None:
    row = queued_escalation(h)
    params = row.payload["params"]
    deadline = datetime.fromisoformat(params["deadline_at"])
    left = crews.minutes_left(deadline, h.now)
    assert params["deadline_count"] == f"剩{left}分钟"
    line = deadline_line(row.body, "到达时限：")
    assert line.startswith(f"到达时限：{params['deadline']}（") and f"剩{left}分钟" in line
    # What a digest reads of a command row is still there.
    assert {"feeder", "kind", "status", "incident", "villages", "households"} <= set(params)
    # A summary (not an escalation) carries no deadline of its own.
    assert not [m for m in h.daemon.store.messages()
                if m.purpose == "summary" and "deadline_at" in (m.payload or {})["params"]]


def test_a_held_escalation_released_late_says_the_minutes_then(h: Harness) -> None:
    """End to end: the command centre's channel is held up (held here), the deadline passes;
    released, the warning reads 已超N分钟, in its text and its markdown, and the row keeps
    what was sent."""
    row = queued_escalation(h)
    deadline = datetime.fromisoformat(row.payload["params"]["deadline_at"])
    left = crews.minutes_left(deadline, h.now)
    assert left > 0
    sent = hold_then_send(h, row, T0 + timedelta(minutes=76 + left + 6))
    assert sent, "the released escalation was sent"
    over = crews.minutes_left(deadline, h.now)
    assert over < 0
    line = deadline_line(sent[-1].text, "到达时限：")
    assert f"已超{-over}分钟" in line and "剩" not in line, line
    assert deadline_line(sent[-1].markdown or "", "到达时限：") == line
    # Every other line of the warning is as it was queued (but how long the outage has
    # lasted, in its priority reason: tests/test_priority_minutes_sent.py).
    queued = deadline_line(row.body, "到达时限：")
    assert [a for a in sent[-1].text.splitlines()
            if a != line and not a.startswith("优先原因：")] == [
        b for b in row.body.splitlines() if b != queued and not b.startswith("优先原因：")]
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent" and f"已超{-over}分钟" in kept.body
    assert kept.payload["params"]["deadline_count"] == f"已超{-over}分钟"


def test_an_escalation_sent_at_once_is_as_queued(h: Harness) -> None:
    row = queued_escalation(h)
    while h.daemon.deliverer.run_once(h.now):
        pass
    (sent,) = [m for m in h.channel.sent if m.purpose == row.purpose]
    assert sent.text == row.body


def test_the_english_escalation_is_counted_again_too(h_en: Harness) -> None:
    row = queued_escalation(h_en)
    params = row.payload["params"]
    deadline = datetime.fromisoformat(params["deadline_at"])
    left = crews.minutes_left(deadline, h_en.now)
    queued = deadline_line(row.body, "Arrival deadline ")
    assert f"{left} min left" in queued
    body, said = crews.deadline_true_at(row.body, params, deadline + timedelta(minutes=3),
                                        "en")
    assert deadline_line(body, "Arrival deadline ") == queued.replace(f"{left} min left",
                                                                     "3 min overdue")
    assert said["deadline_count"] == "3 min overdue"
    # The old name still counts a dispatch's (or an escalation's) minutes.
    assert crews.deadline_true_at(row.body, params, deadline + timedelta(minutes=3), "en") == (
        body, said)
