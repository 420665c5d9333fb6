"""A command-centre escalation queued while the crew's arrival deadline was only at risk
(【到达超时预警】到达时限将超) and sent after the deadline passed — held by the command centre,
or retried — says the deadline was missed in its heading too (已超到达时限), not only in its
recounted minutes (已超N分钟, :func:`outage_sentinel.crew.deadline_true_at`): a heading
saying "at risk" above a count saying "overdue" tells the command centre there is still time.
Its SMS ``summary`` (the first line) and its params' ``escalation_reason`` say so too; sent
before the deadline it is as queued.

The escalation is the daemon's own (real processing, clock checks, rendering and deliverer;
SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from outage_sentinel import crew as crews
from outage_sentinel.channels.base import Message
from outage_sentinel.store import OutboxRow
from tests.shared_setup import h as h  # noqa: F401  (the fixture)
from tests.shared_setup import h_en as h_en  # noqa: F401  (the fixture)
from tests.shared_setup import hold_then_send
from tests.test_lifecycle import Harness, ev

AT_RISK = {"zh": "到达时限将超", "en": "arrival deadline at risk"}
MISSED = {"zh": "已超到达时限", "en": "arrival deadline missed"}


def at_risk_escalation(h: Harness) -> OutboxRow:
    """A fault its crew is sent to (抢修一班, rural: 90 minutes); 14 minutes before the
    deadline, the crew not there, the clock check queues the at-risk escalation (not yet
    delivered)."""
    h.feed(ev("F1", "T1", "T2", "T3"))
    assert h.incident(h.only_incident())["crew_id"] == "C1"
    h.at(76)
    h.daemon.lifecycle.check(h.now)
    (row,) = [m for m in h.daemon.store.messages() if m.purpose.startswith("escalation_")]
    assert row.purpose == "escalation_at_risk" and row.status == "pending"
    return row


def released_late(h: Harness, row: OutboxRow, past: int) -> tuple[Message, int]:
    """``row`` held, released ``past`` minutes after its deadline and delivered: what was
    sent, and the minutes it was over by then."""
    deadline = datetime.fromisoformat(row.payload["params"]["deadline_at"])
    sent = hold_then_send(h, row, deadline + timedelta(minutes=past))
    assert sent, "the released escalation was sent"
    return sent[-1], -crews.minutes_left(deadline, h.now)


def test_the_at_risk_escalation_keeps_its_reason_for_when_it_goes(h: Harness) -> None:
    row = at_risk_escalation(h)
    assert row.body.splitlines()[0].startswith(f"【到达超时预警】{AT_RISK['zh']}：")
    assert row.payload["params"]["escalation_reason"] == "at_risk"


def test_an_at_risk_escalation_released_after_the_deadline_says_it_was_missed(
        h: Harness) -> None:
    row = at_risk_escalation(h)
    queued_head = row.body.splitlines()[0]
    assert AT_RISK["zh"] in queued_head
    sent, over = released_late(h, row, past=6)
    head = sent.text.splitlines()[0]
    assert head == queued_head.replace(AT_RISK["zh"], MISSED["zh"]), head
    assert f"已超{over}分钟" in sent.text and AT_RISK["zh"] not in sent.text
    assert (sent.markdown or "").splitlines()[0] == head
    assert sent.subject == head  # an email's Subject, a Feishu or DingTalk title
    # Only the heading, the count and how long the outage has lasted (its priority reason:
    # tests/test_priority_minutes_sent.py) changed; every other line is as queued.
    def rest(text: str) -> list[str]:
        return [ln for ln in text.splitlines()[1:]
                if not ln.startswith(("到达时限：", "优先原因："))]
    assert rest(sent.text) == rest(row.body)
    params = sent.params
    assert params["escalation_reason"] == "overdue"
    assert params["sms"]["summary"].startswith(f"到达超时预警 {MISSED['zh']}")
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent" and kept.body.splitlines()[0] == head


def test_an_at_risk_escalation_sent_in_time_is_as_queued(h: Harness) -> None:
    row = at_risk_escalation(h)
    while h.daemon.deliverer.run_once(h.now):
        pass
    (sent,) = [m for m in h.channel.sent if m.purpose == row.purpose]
    assert sent.text == row.body and AT_RISK["zh"] in sent.text.splitlines()[0]
    assert sent.params["sms"]["summary"] == row.payload["params"]["sms"]["summary"]


def test_the_english_heading_says_the_deadline_was_missed_too(h_en: Harness) -> None:
    row = at_risk_escalation(h_en)
    queued_head = row.body.splitlines()[0]
    assert AT_RISK["en"] in queued_head
    sent, over = released_late(h_en, row, past=3)
    assert sent.text.splitlines()[0] == queued_head.replace(AT_RISK["en"], MISSED["en"])
    assert f"{over} min overdue" in sent.text


def test_an_escalation_queued_before_its_reason_was_kept_is_read_by_its_heading(
        h: Harness) -> None:
    """A row queued by an earlier version (no ``escalation_reason`` in its params) is judged
    by its heading; a crew's dispatch, whose heading names no reason, only has its count
    recounted."""
    row = at_risk_escalation(h)
    params = {k: v for k, v in row.payload["params"].items() if k != "escalation_reason"}
    deadline = datetime.fromisoformat(params["deadline_at"])
    body, said = crews.deadline_true_at(row.body, params, deadline + timedelta(minutes=2))
    assert body.splitlines()[0] == row.body.splitlines()[0].replace(AT_RISK["zh"], MISSED["zh"])
    assert said["escalation_reason"] == "overdue"
    (dispatch,) = [m for m in h.daemon.store.messages() if m.purpose == "dispatch"]
    late = datetime.fromisoformat(dispatch.payload["params"]["deadline_at"]) + timedelta(
        minutes=2)
    body, said = crews.deadline_true_at(dispatch.body, dispatch.payload["params"], late)
    assert body.splitlines()[0] == dispatch.body.splitlines()[0]
    assert "已超2分钟" in body and "escalation_reason" not in said
