"""A service's "you are sending too fast" holds back the whole target, not one message.

DingTalk answers 130101 and blocks the robot for ten minutes (a request sooner extends the
block); WeCom 45009, Aliyun's flow control and an HTTP 429 likewise refuse the target for a
while. The refusal is written into the target's shared rate-limit row (``rate:<key>``), so the
group's other messages, and new ones, wait without a request — across restarts, daemons and
regions — and when the block ends a backlog over the budget goes as a digest, nothing dropped.
Real senders against a real local service; real SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.channels.webhook import WebhookChannel
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DEFAULT_LIMITS, MINUTE, RateLimit, RateLimiter
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import Store
from tests.channels.conftest import FakeService, Reply
from tests.channels.conftest import service as service  # noqa: F401  (the fixture)
from tests.conftest import T0

POLICY = RetryPolicy(initial_seconds=1, multiplier=2, max_seconds=60, jitter=0.0,
                     max_age_seconds=6 * 3600)
BLOCKED = Reply(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
OK = Reply(200, {"errcode": 0, "errmsg": "ok"})


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


def dingtalk(service: FakeService) -> DingTalkChannel:
    return DingTalkChannel("dd", robots={"g1": ("tok-g1", None)}, base_url=service.url,
                           timeout=2, rate_limits=DEFAULT_LIMITS["dingtalk"])


def notice(n: int, channel: str = "dd", target: str = "g1",
           mentions: tuple[str, ...] = ()) -> OutboxMessage:
    body = f"【故障停电通知】MARK-{n}-\n10kV 线路故障"
    return OutboxMessage(incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}",
                         purpose="outage", channel=channel, target=target, audience="liaison",
                         subject=body.splitlines()[0], body=body,
                         payload={"mentions": list(mentions),
                                  "params": {"village": f"MARK-{n}-"}})


def enqueue(store: Store, rows: list[OutboxMessage], now: datetime) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, rows, now)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def marks_posted(service: FakeService) -> list[int]:
    """The notice numbers the service received (singly or in digests), in order."""
    out = []
    for r in service.requests:
        text = r.body.decode("utf-8")
        out += [int(p.split("-")[0]) for p in text.split("MARK-")[1:]]
    return out


def test_a_blocked_robot_gets_no_request_until_the_block_ends_then_one_digest(
        store: Store, service: FakeService) -> None:
    service.default = BLOCKED
    d = Deliverer(store, {"dd": dingtalk(service)}, POLICY, Metrics())
    enqueue(store, [notice(n) for n in range(1, 6)], T0)
    d.run_once(T0)
    assert len(service.requests) == 1  # the one that learnt of the block
    rows = store.messages()
    assert all(r.status == "pending" and r.next_attempt_at >= at(600) for r in rows)
    assert sum(r.attempts for r in rows) == 1  # the others waited: no attempt spent
    assert all(r.last_error == "rate limited: blocked by the service" for r in rows[1:])
    for k in range(1, 5):  # new notices during the block go nowhere either
        enqueue(store, [notice(10 + k)], at(60 * k))
        d.run_once(at(60 * k))
    enqueue(store, [notice(n) for n in range(20, 36)], at(300))  # a storm: 25 waiting
    d.run_once(at(599))
    assert len(service.requests) == 1
    service.default = OK
    d.run_once(at(600))
    assert all(r.status == "sent" for r in store.messages() if r.purpose != "digest")
    assert 1 < len(service.requests) <= 3  # merged: 25 notices over a budget of 20
    expected = [*range(1, 6), *range(11, 15), *range(20, 36)]
    assert sorted(marks_posted(service)[1:]) == expected  # every notice, once, none dropped


def test_the_block_holds_for_a_restarted_daemon_and_another_region(
        store: Store, service: FakeService) -> None:
    service.default = BLOCKED
    enqueue(store, [notice(1)], T0)
    Deliverer(store, {"dd": dingtalk(service)}, POLICY, Metrics()).run_once(T0)
    assert len(service.requests) == 1
    service.default = OK
    south = Store(store.url, region="south")
    try:
        enqueue(south, [notice(2)], at(10))
        enqueue(store, [notice(3)], at(10))
        for s in (store, south):  # a restart of each region's daemon
            Deliverer(s, {"dd": dingtalk(service)}, POLICY, Metrics()).run_once(at(30))
        assert len(service.requests) == 1
        assert south.messages()[0].last_error == "rate limited: blocked by the service"
        for s in (store, south):
            Deliverer(s, {"dd": dingtalk(service)}, POLICY, Metrics()).run_once(at(601))
        assert sorted(marks_posted(service)[1:]) == [1, 2, 3]
    finally:
        south.close()


def test_wecom_45009_holds_back_the_robot_for_its_minute(store: Store,
                                                         service: FakeService) -> None:
    service.reply(Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
    ch = WeComChannel("wx", robots={"g1": "key"}, base_url=service.url, timeout=2,
                      rate_limits=DEFAULT_LIMITS["wecom"])
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    enqueue(store, [notice(n, channel="wx") for n in (1, 2, 3)], T0)
    d.run_once(T0)
    d.run_once(at(30))
    assert len(service.requests) == 1
    d.run_once(at(61))
    assert sorted(marks_posted(service)) == [1, 1, 2, 3]
    assert all(r.status == "sent" for r in store.messages())


def test_sms_flow_control_holds_back_that_number_only(store: Store,
                                                      service: FakeService) -> None:
    ch = SmsChannel("sms", access_key_id="AK", access_key_secret="secret-0123456789",
                    sign_name="供电", template_code="SMS_1", endpoint=service.url + "/",
                    timeout=2, rate_limits=DEFAULT_LIMITS["sms"])
    d = Deliverer(store, {"sms": ch}, POLICY, Metrics())
    service.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "biz-1"})
    service.reply(Reply(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL",
                              "Message": "触发分钟级流控Permits:1"}))
    a = "13800000001"
    enqueue(store, [notice(n, channel="sms", target=a) for n in (1, 2)], T0)
    d.run_once(T0)
    enqueue(store, [notice(3, channel="sms", target="13900000002")], at(5))
    d.run_once(at(10))
    numbers = [r.form()["PhoneNumbers"] for r in service.requests]
    assert numbers == [a, "13900000002"]  # the other number is not held back
    d.run_once(at(61))
    assert [r.form()["PhoneNumbers"] for r in service.requests][2:] == [a, a]
    assert all(r.status == "sent" for r in store.messages())


def test_a_quota_refused_for_an_sms_to_several_numbers_holds_back_none_of_them(
        store: Store, service: FakeService) -> None:
    """A daily quota refused for a message to two numbers: which number is over it the reply
    does not say, so no number is blocked (blocking both held the other's own notices until
    the next day, past their max age, unsent); only that message waits."""
    ch = SmsChannel("sms", access_key_id="AK", access_key_secret="secret-0123456789",
                    sign_name="供电", template_code="SMS_1", endpoint=service.url + "/",
                    timeout=2, rate_limits=DEFAULT_LIMITS["sms"])
    d = Deliverer(store, {"sms": ch}, POLICY, Metrics())
    service.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "biz-1"})
    service.reply(Reply(200, {"Code": "isv.DAY_LIMIT_CONTROL", "Message": "触发日发送限额"}))
    a, b = "13800000001", "13900000002"
    enqueue(store, [notice(1, channel="sms", target=a, mentions=(a, b))], T0)
    d.run_once(T0)
    enqueue(store, [notice(2, channel="sms", target=b, mentions=(b,))], at(1))
    d.run_once(at(2))
    numbers = [r.form()["PhoneNumbers"] for r in service.requests]
    assert numbers == [f"{a},{b}", b]  # b's own notice is not held back
    assert [m.status for m in store.messages()] == ["pending", "sent"]


def test_http_429_holds_back_a_target_of_a_channel_without_limits(
        store: Store, service: FakeService) -> None:
    service.reply(Reply(429, {"error": "slow down"}, headers={"Retry-After": "30"}))
    hook = WebhookChannel("hook", url=service.url + "/{target}", timeout=2)
    d = Deliverer(store, {"hook": hook}, POLICY, Metrics())
    enqueue(store, [notice(n, channel="hook") for n in (1, 2)], T0)
    d.run_once(T0)
    d.run_once(at(20))
    assert len(service.requests) == 1
    d.run_once(at(31))
    assert len(service.requests) == 3
    assert all(r.status == "sent" for r in store.messages())


def test_a_block_is_part_of_the_saved_window() -> None:
    limits = (RateLimit(20, MINUTE),)
    limiter = RateLimiter()
    limiter.allow("dd/g1", 1000.0, limits)
    limiter.block("dd/g1", 1600.0)
    limiter.block("dd/g1", 1300.0)  # a shorter block never shortens it
    restored = RateLimiter.of_keys({"dd/g1": limiter.key_state("dd/g1")})
    decision = restored.check("dd/g1", 1100.0, limits)
    assert (decision.ok, decision.blocked, decision.wait_seconds) == (False, True, 500.0)
    assert decision.why == "blocked by the service"
    assert restored.budget("dd/g1", 1100.0, limits) == 0
    assert restored.allow("dd/g1", 1601.0, limits).ok
    restored.prune(1700.0)
    assert "blocked_until" not in restored.key_state("dd/g1")
    assert RateLimiter.of_keys({"x": {"horizon": 0, "times": [], "blocked_until": 5.0}}
                               ).blocked_for("x", 4.0) == 1.0
