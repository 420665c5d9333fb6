"""A send whose outcome is unknown is resent once at most (DESIGN §3: "a crash between send and
mark may resend once, never more").

The senders post to a real local HTTP server (:class:`tests.channels.conftest.FakeService`)
that answers late, without a verdict, or not at all; delivery runs on real SQLite and
PostgreSQL. Crashes, timeouts after the request went out and replies without the service's
verdict all count in the row's ``interruptions``; nothing but an operator's retry resets it,
so a certain failure in between (a 503) or a quiet-hours deferral never buys a second
duplicate.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.email import EmailChannel
from outage_sentinel.channels.feishu import FeishuChannel
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.channels.webhook import WebhookChannel
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sending import message_of
from outage_sentinel.store import OutboxRow, Store
from tests.channels.conftest import FakeService, Reply
from tests.channels.conftest import service as service  # noqa: F401  (the fixture)
from tests.conftest import T0
from tests.test_delivery import FakeChannel

POLICY = RetryPolicy(initial_seconds=1, multiplier=1, max_seconds=1, jitter=0.0,
                     max_age_seconds=3600)
TIMEOUT = 0.3
LATE = Reply(200, {"errcode": 0, "errmsg": "ok"}, delay=TIMEOUT + 0.7)  # posted, answered late
# The service's JSON cut short: maybe its own reply (a proxy's HTML page is not: a plain retry,
# tests/channels/test_channel_replies.py).
NOT_JSON = Reply(200, raw=b'{"errcode":0,"errms')
NO_ERRCODE = Reply(200, {"ok": True})
BUSY = Reply(503, {"errcode": -1, "errmsg": "system busy"})
OK = Reply(200, {"errcode": 0, "errmsg": "ok"})


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


def wecom(service: FakeService) -> WeComChannel:
    return WeComChannel("wx", robots={"g1": "key-g1"}, base_url=service.url, timeout=TIMEOUT)


def notice(n: int = 1, kind: str = "fault") -> OutboxMessage:
    body = f"【故障停电通知】MARK-{n}\n10kV 线路故障"
    return OutboxMessage(incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}",
                         purpose="outage", channel="wx", target="g1", audience="liaison",
                         subject=body.splitlines()[0], body=body,
                         payload={"mentions": [], "params": {"village": f"MARK-{n}",
                                                             "kind": kind}})


def enqueue(store: Store, *rows: OutboxMessage) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, list(rows), T0)


def only(store: Store) -> OutboxRow:
    (m,) = store.messages()
    return m


def runs(d: Deliverer, n: int, start: timedelta = timedelta(0)) -> None:
    """``n`` delivery runs, 10 s apart (each after the 1 s backoff)."""
    for i in range(n):
        d.run_once(T0 + start + timedelta(seconds=10 * i))


def posts(service: FakeService) -> int:
    return len(service.requests)


def crash_mid_send(store: Store, channel: WeComChannel, now: datetime) -> None:
    """The claim is committed, the service posts the message, the process dies unrecorded."""
    row = only(store)
    assert store.mark_inflight(row.id, now)
    channel.send(message_of(row))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the channels say which failures may have delivered ----------------------------------------


@pytest.mark.parametrize(("reply", "uncertain"), [
    (LATE, True), (NOT_JSON, True), (NO_ERRCODE, True), (Reply(200, {"errcode": "x"}), True),
    (BUSY, False), (Reply(200, {"errcode": -1, "errmsg": "busy"}), False),
    (Reply(200, {"errcode": 45009, "errmsg": "freq"}), False),
])
def test_wecom_says_when_a_failed_send_may_have_arrived(service: FakeService, reply: Reply,
                                                        uncertain: bool) -> None:
    service.reply(reply)
    result = wecom(service).send(message_of_notice())
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, uncertain), result


def message_of_notice() -> Message:
    return Message(key="INC-1/1/village:V1/outage", channel="wx", target="g1", text="停电")


def test_a_refused_connection_is_certain() -> None:
    ch = WeComChannel("wx", robots={"g1": "k"}, base_url=f"http://127.0.0.1:{free_port()}",
                      timeout=TIMEOUT)
    result = ch.send(message_of_notice())
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), result


def test_every_robot_and_sms_reply_without_a_verdict_is_uncertain(service: FakeService) -> None:
    msg = Message(key="K/1/r/outage", channel="c", target="g1", text="停电",
                  mentions=("13800000001",), params={"village": "东村"})
    dd = DingTalkChannel("dd", robots={"g1": ("t", None)}, base_url=service.url, timeout=1)
    fs = FeishuChannel("fs", robots={"g1": ("t", None)}, base_url=service.url, timeout=1)
    sms = SmsChannel("sms", access_key_id="AK", access_key_secret="secret-0123456789",
                     sign_name="供电", template_code="SMS_1", endpoint=service.url + "/",
                     timeout=1)
    hook = WebhookChannel("hook", url=service.url + "/{target}", success_field="result",
                          timeout=1)
    for ch in (dd, fs, sms, hook):
        service.reply(Reply(200, {"data": {}}))
        result = ch.send(msg)
        assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), (ch, result)


def test_a_connection_lost_after_the_request_went_out_is_uncertain() -> None:
    """A server (a proxy, a gateway) that reads the request and hangs up without a reply."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def read_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()
    threading.Thread(target=read_and_hang_up, daemon=True).start()
    try:
        ch = WeComChannel("wx", robots={"g1": "k"},
                          base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2)
        result = ch.send(message_of_notice())
    finally:
        listener.close()
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), result


class SlowToAnswerData:
    """An SMTP server that takes the message and answers the end of DATA too late."""

    def __init__(self) -> None:
        self.taken: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.taken.append(envelope.content)
        await asyncio.sleep(1.0)
        return "250 Message accepted"


def test_an_smtp_timeout_after_the_data_is_uncertain_before_it_a_plain_retry() -> None:
    handler = SlowToAnswerData()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        ch = EmailChannel("mail", host="127.0.0.1", port=port, security="none",
                          sender="s@example.cn", timeout=0.3)
        result = ch.send(Message(key="K/1/r/outage", channel="mail", target="a@example.cn",
                                 text="停电"))
    finally:
        ctl.stop()
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), result
    assert len(handler.taken) == 1  # it did arrive
    refused = EmailChannel("mail", host="127.0.0.1", port=free_port(), security="none",
                           sender="s@example.cn", timeout=0.3).send(message_of_notice())
    assert (refused.outcome, refused.uncertain) == (Outcome.RETRY, False), refused


# -- delivery: once more at most -----------------------------------------------------------


@pytest.mark.parametrize("reply", [LATE, NOT_JSON, NO_ERRCODE], ids=["timeout", "not-json",
                                                                      "no-errcode"])
def test_a_send_that_may_have_arrived_is_resent_once_then_dead_lettered(
        store: Store, service: FakeService, reply: Reply) -> None:
    service.reply(reply, reply, reply)
    d = Deliverer(store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(store, notice())
    runs(d, 6)
    m = only(store)
    assert posts(service) == 2  # the first send, and the one resend allowed
    assert m.status == "dead" and m.interruptions == 2
    assert (m.last_error or "").startswith("delivery uncertain: ")
    assert d.metrics.registry.get_sample_value(
        "outage_sentinel_notifications_total", {"channel": "wx", "result": "uncertain"}) == 2


def test_an_uncertain_send_then_a_confirmed_one_is_sent_with_its_possible_duplicate_counted(
        store: Store, service: FakeService) -> None:
    service.reply(LATE)
    d = Deliverer(store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(store, notice())
    runs(d, 3)
    m = only(store)
    assert (m.status, m.interruptions, posts(service)) == ("sent", 1, 2)


def test_certain_failures_do_not_count_only_uncertain_ones_do(store: Store,
                                                             service: FakeService) -> None:
    """Three 503s and an error code (the service took nothing) cost no resend of the
    allowance; the two timeouts after them do."""
    service.reply(BUSY, BUSY, BUSY, Reply(200, {"errcode": -1, "errmsg": "busy"}), LATE, LATE)
    d = Deliverer(store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(store, notice())
    runs(d, 8)
    m = only(store)
    assert (m.status, m.interruptions, posts(service)) == ("dead", 2, 6)


def test_a_crash_and_then_a_timeout_make_one_duplicate_at_most(store: Store,
                                                               service: FakeService) -> None:
    ch = wecom(service)
    enqueue(store, notice())
    crash_mid_send(store, ch, T0)
    service.reply(LATE)  # the resend after the restart reaches the service, the reply does not
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    d.recover(T0)
    runs(d, 4, start=timedelta(seconds=10))
    m = only(store)
    assert (posts(service), m.status, m.interruptions) == (2, "dead", 2)


def test_an_uncertain_send_asks_the_channel_first(store: Store) -> None:
    """A channel that can tell whether it holds the message settles it without a resend."""
    unsure = SendResult(Outcome.RETRY, "timeout after 10 s", uncertain=True)
    ch = FakeChannel(name="wx", script=[unsure], held=True)
    enqueue(store, notice())
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    runs(d, 3)
    m = only(store)
    assert (m.status, m.interruptions, len(ch.sent)) == ("sent", 0, 1)
    assert ch.asked == [m.key]


def test_an_operators_retry_of_an_uncertain_dead_letter_sends_it_again(
        store: Store, service: FakeService) -> None:
    service.reply(NOT_JSON, NOT_JSON, NOT_JSON, NOT_JSON)
    d = Deliverer(store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(store, notice())
    runs(d, 4)
    assert only(store).status == "dead" and posts(service) == 2
    assert store.requeue([only(store).id], T0 + timedelta(minutes=5), "retried by ops") == [
        only(store).id]
    assert only(store).interruptions == 0  # the operator took the risk: a fresh count
    runs(d, 3, start=timedelta(minutes=5))
    m = only(store)
    assert (m.status, posts(service)) == ("dead", 4)  # again one resend, then given up
    assert (m.last_error or "").startswith("delivery uncertain: ")


# -- the count is never reset by a retry (issue #2) ---------------------------------------------


def test_a_certain_failure_between_two_crashes_does_not_reset_the_count(
        store: Store, service: FakeService) -> None:
    ch = wecom(service)
    enqueue(store, notice())
    crash_mid_send(store, ch, T0)
    Deliverer(store, {"wx": ch}, POLICY).recover(T0)
    service.reply(BUSY)
    Deliverer(store, {"wx": ch}, POLICY).run_once(T0 + timedelta(seconds=5))
    assert (only(store).status, only(store).interruptions) == ("pending", 1)
    crash_mid_send(store, ch, T0 + timedelta(seconds=10))
    d = Deliverer(store, {"wx": ch}, POLICY)
    d.recover(T0 + timedelta(seconds=11))
    m = only(store)
    assert m.status == "dead" and (m.last_error or "").startswith("delivery uncertain: ")
    d.run_once(T0 + timedelta(seconds=20))
    assert posts(service) == 3  # two posted copies (the 503 was not posted), never a third


def test_quiet_hours_between_two_crashes_do_not_reset_the_count(store: Store,
                                                                service: FakeService) -> None:
    ch = wecom(service)
    enqueue(store, notice(kind="planned"))
    crash_mid_send(store, ch, T0)
    quiet = {"liaison": (time(0, 0), time(23, 59))}
    Deliverer(store, {"wx": ch}, POLICY, quiet_hours=quiet).recover(T0)
    Deliverer(store, {"wx": ch}, POLICY, quiet_hours=quiet).run_once(T0 + timedelta(seconds=5))
    assert (only(store).status, only(store).last_error) == ("pending", "quiet hours")
    row = only(store)
    crash_mid_send(store, ch, row.next_attempt_at)
    Deliverer(store, {"wx": ch}, POLICY).recover(row.next_attempt_at + timedelta(seconds=1))
    assert only(store).status == "dead" and posts(service) == 2


def test_recover_after_a_timeout_dead_letters_rather_than_resend_a_third_time(
        store: Store, service: FakeService) -> None:
    """One uncertain reply, then a crash during the resend: the second unknown outcome."""
    service.reply(LATE)
    ch = wecom(service)
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    enqueue(store, notice())
    d.run_once(T0)
    assert (only(store).status, only(store).interruptions) == ("pending", 1)
    crash_mid_send(store, ch, T0 + timedelta(seconds=10))
    Deliverer(store, {"wx": ch}, POLICY).recover(T0 + timedelta(seconds=11))
    assert only(store).status == "dead" and posts(service) == 2
