"""The record of a message sent keeps what each channel got: a command-centre escalation
counted again at send (:func:`outage_sentinel.delivery.recounted`) says 已超N分钟 in its text
and in the markdown a group robot sends instead of it, and the stored row keeps both as sent
(:func:`outage_sentinel.sending.said_of`) — it used to keep the text and params as sent but
the markdown as queued (剩N分钟), so the board and ``/api/outbox`` showed a robot's message
that no robot got.

Through the daemon's own clock check, outbox control and deliverer (SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from outage_sentinel import crew as crews
from outage_sentinel.outbox_control import OutboxControl
from outage_sentinel.sending import said_of
from tests.test_escalation_minutes_sent import deadline_line, queued_escalation
from tests.test_escalation_minutes_sent import h as h  # noqa: F401  (the fixture)
from tests.test_lifecycle import Harness


def test_a_recounted_escalation_keeps_the_markdown_the_robot_got(h: Harness) -> None:  # noqa: F811
    row = queued_escalation(h)
    assert row.payload["markdown"] == row.body  # a robot sends the markdown, as queued
    deadline = datetime.fromisoformat(row.payload["params"]["deadline_at"])
    left = crews.minutes_left(deadline, h.now)
    control = OutboxControl(h.daemon.store, lambda: h.daemon.topology)
    control.take("hold", [row.id], "board:wang", h.now, reason="核实")
    h.at(76 + left + 6)
    control.take("release", [row.id], "board:wang", h.now)
    while h.daemon.deliverer.run_once(h.now):
        pass
    (sent,) = [m for m in h.channel.sent if m.purpose == row.purpose]
    over = -crews.minutes_left(deadline, h.now)
    assert f"已超{over}分钟" in deadline_line(sent.markdown or "", "到达时限：")
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent"
    # Each channel's words, as it got them: the text, the robot's markdown, the SMS params.
    assert kept.body == sent.text
    assert kept.payload["markdown"] == sent.markdown
    assert kept.payload["params"] == sent.params
    assert f"剩{left}分钟" not in kept.payload["markdown"]


def test_a_message_as_queued_keeps_nothing_more(h: Harness) -> None:  # noqa: F811
    """Sent at once, nothing was made true at send: the row is as it was queued."""
    row = queued_escalation(h)
    assert said_of(row) is None
    while h.daemon.deliverer.run_once(h.now):
        pass
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert (kept.status, kept.body, kept.payload["markdown"]) == ("sent", row.body, row.body)
