"""Outbox delivery against a real Store (SQLite) and a scripted in-test channel.

The channel here is the collaborator, not the thing under test: it records what it was asked to
send, answers with scripted outcomes, and can say whether it already holds a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outage_sentinel.channels.base import Channel, Message, Outcome, SendResult
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import OutboxRow, Store
from tests.conftest import T0

POLICY = RetryPolicy(initial_seconds=10, multiplier=2, max_seconds=300, jitter=0.2,
                     max_age_seconds=3600)


class Crash(BaseException):
    """The process dying mid-send (SIGKILL): nothing after the send runs."""


@dataclass
class FakeChannel:
    """Implements the Channel protocol; outcomes are scripted per call."""

    name: str = "wecom"
    type: str = "fake"
    script: list[SendResult | BaseException | Callable[[Message], SendResult]] = field(
        default_factory=list)
    default: SendResult = field(default_factory=lambda: SendResult(Outcome.DELIVERED, "errcode 0"))
    held: bool | None = None
    sent: list[Message] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        step = self.script.pop(0) if self.script else self.default
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(message)
        return step

    def already_delivered(self, key: str) -> bool | None:
        self.asked.append(key)
        return self.held

    def close(self) -> None:
        pass


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


def row(recipient: str = "village:V1:wecom:g1", **kw: Any) -> OutboxMessage:
    r: dict[str, Any] = {
        "incident_id": "INC-1", "revision": 1, "recipient": recipient, "purpose": "outage",
        "channel": "wecom", "target": recipient.rsplit(":", 1)[-1], "audience": "liaison",
        "subject": "【故障停电通知】马集村", "body": "【故障停电通知】马集村\n停电。",
        "payload": {"mentions": ["13800000001"], "params": {"village": "马集村"}},
    }
    r.update(kw)
    return OutboxMessage(**r)


def enqueue(store: Store, *rows: OutboxMessage, now: datetime = T0) -> list[OutboxRow]:
    with store.transaction() as conn:
        store.enqueue_in(conn, list(rows), now)
    return store.messages()


def deliverer(store: Store, *channels: FakeChannel, u: float = 0.5,
              **kw: Any) -> Deliverer:
    return Deliverer(store, {c.name: c for c in channels}, POLICY, Metrics(), rand=lambda: u,
                     **kw)


def only(store: Store) -> OutboxRow:
    (m,) = store.messages()
    return m


def count(d: Deliverer, channel: str, result: str) -> float:
    v = d.metrics.registry.get_sample_value("outage_sentinel_notifications_total",
                                            {"channel": channel, "result": result})
    return v or 0.0


def close_to(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 0.01


def test_the_fake_is_a_channel() -> None:
    assert isinstance(FakeChannel(), Channel)


def test_delivered_is_marked_sent(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    ch = FakeChannel()
    d = deliverer(sqlite_store, ch)
    assert d.run_once(T0) == 1
    m = only(sqlite_store)
    assert (m.status, m.sent_at, m.attempts, m.last_error) == ("sent", T0, 1, "errcode 0")
    (msg,) = ch.sent
    assert msg.key == "INC-1/1/village:V1:wecom:g1/outage"
    assert (msg.channel, msg.target, msg.text, msg.subject) == (
        "wecom", "g1", "【故障停电通知】马集村\n停电。", "【故障停电通知】马集村")
    assert msg.mentions == ("13800000001",) and msg.params == {"village": "马集村"}
    assert (msg.incident_id, msg.purpose, msg.audience) == ("INC-1", "outage", "liaison")
    assert count(d, "wecom", "delivered") == 1
    assert d.run_once(T0 + timedelta(hours=1)) == 0  # never sent again
    assert len(ch.sent) == 1


def test_retry_goes_back_to_pending_with_backoff(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    ch = FakeChannel(script=[SendResult(Outcome.RETRY, "HTTP 503"),
                             SendResult(Outcome.RETRY, "HTTP 503")])
    d = deliverer(sqlite_store, ch, u=0.5)
    d.run_once(T0)
    m = only(sqlite_store)
    assert (m.status, m.attempts, m.inflight_count, m.last_error) == ("pending", 1, 0, "HTTP 503")
    assert close_to(m.next_attempt_at, T0 + timedelta(seconds=10))  # backoff(1) at u=0.5
    assert d.run_once(T0 + timedelta(seconds=9)) == 0  # not due yet
    now = T0 + timedelta(seconds=10)
    assert d.run_once(now) == 1
    m = only(sqlite_store)
    assert m.attempts == 2
    assert close_to(m.next_attempt_at, now + timedelta(seconds=20))  # backoff(2)
    d.run_once(now + timedelta(seconds=20))
    assert only(sqlite_store).status == "sent" and len(ch.sent) == 3
    assert count(d, "wecom", "retry") == 2 and count(d, "wecom", "delivered") == 1


def test_jitter_comes_from_the_injected_random(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    d = deliverer(sqlite_store, FakeChannel(script=[SendResult(Outcome.RETRY, "x")]), u=0.0)
    d.run_once(T0)
    assert close_to(only(sqlite_store).next_attempt_at, T0 + timedelta(seconds=8))  # 10 * 0.8


def test_retry_after_is_honoured(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    ch = FakeChannel(script=[SendResult(Outcome.RETRY, "errcode 130101 blocked", retry_after=600)])
    d = deliverer(sqlite_store, ch)
    d.run_once(T0)
    m = only(sqlite_store)
    assert m.status == "pending" and close_to(m.next_attempt_at, T0 + timedelta(seconds=600))
    assert d.run_once(T0 + timedelta(seconds=599)) == 0


def test_short_retry_after_does_not_shorten_the_backoff(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    d = deliverer(sqlite_store, FakeChannel(script=[SendResult(Outcome.RETRY, "x", retry_after=1)]))
    d.run_once(T0)
    assert close_to(only(sqlite_store).next_attempt_at, T0 + timedelta(seconds=10))


def test_permanent_refusal_is_dead_lettered(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    ch = FakeChannel(script=[SendResult(Outcome.PERMANENT,
                                        "errcode 310000 keywords not in content")])
    d = deliverer(sqlite_store, ch)
    d.run_once(T0)
    m = only(sqlite_store)
    assert m.status == "dead" and m.last_error == "refused: errcode 310000 keywords not in content"
    assert count(d, "wecom", "permanent") == 1
    assert d.run_once(T0 + timedelta(days=1)) == 0 and len(ch.sent) == 1


def test_message_past_its_max_age_is_dead_lettered(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row(), now=T0)
    ch = FakeChannel(default=SendResult(Outcome.RETRY, "HTTP 502"))
    d = deliverer(sqlite_store, ch)
    late = T0 + timedelta(seconds=POLICY.max_age_seconds + 1)
    d.run_once(late)
    m = only(sqlite_store)
    assert m.status == "dead"
    assert "HTTP 502" in (m.last_error or "") and "max age" in (m.last_error or "")
    assert count(d, "wecom", "dead") == 1


def test_retries_never_schedule_past_the_max_age(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row(), now=T0)
    ch = FakeChannel(default=SendResult(Outcome.RETRY, "HTTP 502"))
    d = deliverer(sqlite_store, ch)
    now = T0
    for _ in range(50):
        if d.run_once(now) == 0:
            m = only(sqlite_store)
            if m.status == "dead":
                break
            now = m.next_attempt_at
    m = only(sqlite_store)
    assert m.status == "dead"
    assert now <= T0 + timedelta(seconds=POLICY.max_age_seconds)


def test_unconfigured_channel_is_dead_lettered(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row(channel="pager"))
    d = deliverer(sqlite_store, FakeChannel())
    d.run_once(T0)
    m = only(sqlite_store)
    assert m.status == "dead" and "'pager' is not configured" in (m.last_error or "")


def test_channel_exception_is_a_retry_and_the_loop_goes_on(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row("village:V1:wecom:g1"), row("village:V2:wecom:g2"),
            row("village:V3:sms:13800000003", channel="sms"))
    def bug_for_g1(m: Message) -> SendResult:
        # By target, not by call order: the two groups are sent side by side.
        if m.target == "g1":
            raise RuntimeError("bug talking to 13912345678")
        return SendResult(Outcome.DELIVERED, "ok")

    wecom = FakeChannel(script=[bug_for_g1, bug_for_g1])
    sms = FakeChannel(name="sms")
    d = deliverer(sqlite_store, wecom, sms)
    assert d.run_once(T0) == 3
    by = {m.recipient: m for m in sqlite_store.messages()}
    broken = by["village:V1:wecom:g1"]
    assert broken.status == "pending" and broken.inflight_count == 0
    assert broken.last_error == "channel raised RuntimeError: bug talking to 139****5678"
    assert by["village:V2:wecom:g2"].status == "sent"
    assert by["village:V3:sms:13800000003"].status == "sent"


def test_one_failing_target_does_not_hold_up_others(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row("village:V1:wecom:bad"), row("village:V2:wecom:good"))
    ch = FakeChannel(default=SendResult(Outcome.DELIVERED, "ok"))
    ch.script = [lambda m: SendResult(Outcome.RETRY, "429") if m.target == "bad"
                 else SendResult(Outcome.DELIVERED, "ok")] * 4
    d = deliverer(sqlite_store, ch)
    d.run_once(T0)
    d.run_once(T0 + timedelta(seconds=1))
    statuses = {m.target: m.status for m in sqlite_store.messages()}
    assert statuses == {"bad": "pending", "good": "sent"}


def test_batch_size_limits_one_run(sqlite_store: Store) -> None:
    enqueue(sqlite_store, *[row(f"village:V{i}:wecom:g{i}") for i in range(5)])
    ch = FakeChannel()
    d = deliverer(sqlite_store, ch, batch_size=2)
    assert d.run_once(T0) == 2
    assert sorted(m.target for m in ch.sent) == ["g0", "g1"]  # groups go side by side
    assert d.run_once(T0) == 2 and d.run_once(T0) == 1 and d.run_once(T0) == 0


def test_dry_run_sends_nothing(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row("village:V1:wecom:g1"), row("village:V2:wecom:g2"))
    ch = FakeChannel()
    d = deliverer(sqlite_store, ch, dry_run=True)
    assert d.run_once(T0) == 2
    assert ch.sent == []
    assert count(d, "wecom", "dry_run") == 2
    # Settled, not retried on every cycle.
    assert d.run_once(T0 + timedelta(minutes=5)) == 0 and ch.sent == []
    assert all("dry run" in (m.last_error or "") for m in sqlite_store.messages())


def test_gauges_show_backlog_and_dead_letters(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row("village:V1:wecom:a"), row("village:V2:wecom:b"),
            row("village:V3:wecom:c"))
    ch = FakeChannel(script=[SendResult(Outcome.PERMANENT, "no"), SendResult(Outcome.RETRY, "x"),
                             SendResult(Outcome.DELIVERED, "ok")])
    d = deliverer(sqlite_store, ch)
    d.run_once(T0)
    reg = d.metrics.registry
    assert reg.get_sample_value("outage_sentinel_outbox_backlog_messages") == 1
    assert reg.get_sample_value("outage_sentinel_outbox_dead_letters_messages") == 1


# -- recovery after a crash mid-send -----------------------------------------------------------


def crash_mid_send(store: Store, now: datetime = T0) -> OutboxRow:
    """What a SIGKILL between mark_inflight and mark_sent leaves behind."""
    m = only(store)
    assert store.mark_inflight(m.id, now)
    return only(store)


def test_recover_channel_holds_it_marks_sent(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    crash_mid_send(sqlite_store)
    ch = FakeChannel(held=True)
    d = deliverer(sqlite_store, ch)
    assert d.recover(T0 + timedelta(minutes=1)) == 1
    m = only(sqlite_store)
    assert m.status == "sent" and m.sent_at == T0 + timedelta(minutes=1)
    assert ch.asked == [m.key]
    d.run_once(T0 + timedelta(minutes=2))
    assert ch.sent == []  # no duplicate


def test_recover_channel_does_not_hold_it_resends(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    crash_mid_send(sqlite_store)
    ch = FakeChannel(held=False)
    d = deliverer(sqlite_store, ch)
    now = T0 + timedelta(minutes=1)
    d.recover(now)
    m = only(sqlite_store)
    assert (m.status, m.inflight_count) == ("pending", 0)  # known not sent: a clean retry
    assert m.next_attempt_at == now
    d.run_once(now)
    assert only(sqlite_store).status == "sent" and len(ch.sent) == 1


def test_recover_unknown_resends_once_then_dead_letters(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    crash_mid_send(sqlite_store)
    ch = FakeChannel(held=None, script=[Crash()])
    d = deliverer(sqlite_store, ch)
    now = T0 + timedelta(minutes=1)
    d.recover(now)
    m = only(sqlite_store)
    assert (m.status, m.inflight_count) == ("pending", 1)  # remembered: one crash already
    # The single resend docs/design.md allows ... and the process dies mid-send again.
    with pytest.raises(Crash):
        d.run_once(now)
    m = only(sqlite_store)
    assert (m.status, m.inflight_count, m.attempts) == ("inflight", 2, 2)
    assert len(ch.sent) == 1

    restarted = deliverer(sqlite_store, ch)
    restarted.recover(now + timedelta(minutes=1))
    m = only(sqlite_store)
    assert m.status == "dead" and "delivery uncertain" in (m.last_error or "")
    restarted.run_once(now + timedelta(hours=1))
    assert len(ch.sent) == 1  # never a second duplicate
    assert count(restarted, "wecom", "dead") == 1


def test_recover_unknown_then_successful_resend(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    crash_mid_send(sqlite_store)
    ch = FakeChannel(held=None)
    d = deliverer(sqlite_store, ch)
    d.recover(T0)
    d.run_once(T0)
    m = only(sqlite_store)
    assert (m.status, m.inflight_count, m.interruptions) == ("sent", 0, 1)  # a possible duplicate
    assert len(ch.sent) == 1


def test_recover_with_nothing_in_flight(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    ch = FakeChannel(held=True)
    assert deliverer(sqlite_store, ch).recover(T0) == 0
    assert only(sqlite_store).status == "pending" and ch.asked == []


def test_recover_for_a_channel_no_longer_configured(sqlite_store: Store) -> None:
    """Can't ask anyone: treated as unknown, so one resend is allowed (then dead-lettered
    by the send path because the channel is missing)."""
    enqueue(sqlite_store, row(channel="gone"))
    crash_mid_send(sqlite_store)
    d = deliverer(sqlite_store, FakeChannel())
    d.recover(T0)
    assert only(sqlite_store).status == "pending"
    d.run_once(T0)
    assert only(sqlite_store).status == "dead"


def test_datetimes_come_back_aware(sqlite_store: Store) -> None:
    enqueue(sqlite_store, row())
    m = only(sqlite_store)
    assert m.next_attempt_at.tzinfo is not None and m.created_at == T0
    assert datetime.now(UTC) > m.created_at
