"""Tencent Cloud SMS through the delivery loop: a number Tencent refuses for a while (its
per-number daily, hourly or 30-second limit) in a message to several numbers is held for every
message to it, as a one-number message's refusal is; and a message resumed after some of its
numbers got their SMS counts only the numbers it sends now against the per-number limit.

A local server plays Tencent (:class:`tests.channels.test_tencent_sms.FakeTencent`: it checks
every request's TC3 signature and answers each number with its scripted status); the outbox
and the shared rate-limit windows are a real SQLite store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from outage_sentinel.channels.tencent_sms import Template, TencentSmsChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DAY, RateLimit
from outage_sentinel.shared_limits import SharedLimits
from outage_sentinel.store import Store
from tests.channels.test_tencent_sms import (
    APP_ID,
    NOW,
    OTHER,
    PHONE,
    POLICY,
    SECRET_ID,
    SECRET_KEY,
    SMS,
    FakeTencent,
    tencent,  # noqa: F401 - the fixture
)
from tests.conftest import T0
from tests.test_delivery import enqueue

PHONE_E164, OTHER_E164 = "+8613812341234", "+8613900001111"


def tx(url: str, limits: tuple[RateLimit, ...]) -> TencentSmsChannel:
    return TencentSmsChannel(
        "tx", secret_id=SECRET_ID, secret_key=SECRET_KEY, sms_sdk_app_id=APP_ID,
        sign_name="某县供电公司", base_url=url, timeout=2.0, clock=lambda: NOW,
        templates={"outage": Template("1830001", ("village", "incident"))},
        rate_limits=limits)


def sms(recipient: str, target: str, mentions: list[str], revision: int = 1) -> OutboxMessage:
    """An outage SMS to ``mentions`` (or to ``target`` alone)."""
    return OutboxMessage(
        incident_id="INC-7", revision=revision, recipient=recipient, purpose="outage",
        channel="tx", target=target, audience="crew", subject="s", body="b",
        payload={"mentions": mentions, "params": {"sms_template": "outage", "sms": SMS}})


def run(store: Store, channel: TencentSmsChannel, seconds: float) -> None:
    Deliverer(store, {"tx": channel}, POLICY, Metrics(),
              rand=lambda: 0.5).run_once(T0 + timedelta(seconds=seconds))


def status(store: Store, recipient: str) -> tuple[str, str]:
    (m,) = [m for m in store.messages() if m.recipient == recipient]
    return m.status, m.last_error or ""


#: Each per-number refusal, and a time it still holds the number after it came (T0).
HOLDS = [("LimitExceeded.PhoneNumberDailyLimit", 6 * 3600.0, DAY),
         ("LimitExceeded.PhoneNumberOneHourLimit", 1800.0, 3700.0),
         ("LimitExceeded.PhoneNumberThirtySecondLimit", 10.0, 40.0)]


@pytest.mark.parametrize("limits", [(), (RateLimit(10, DAY),)], ids=["no-limits", "per-day"])
@pytest.mark.parametrize(("code", "within", "after"), HOLDS,
                         ids=[c.split(".")[1] for c, _, _ in HOLDS])
def test_a_number_refused_in_a_message_to_several_is_held_for_its_other_messages(
        sqlite_store: Store, tencent: FakeTencent,  # noqa: F811 - the fixture
        code: str, within: float, after: float, limits: tuple[RateLimit, ...]) -> None:
    """Tencent refuses the second number of a crew's SMS for a while: a later SMS to that
    number alone waits for the hold to run out without a request (no second refusal), while
    one to the first number, which Tencent took, goes at once."""
    ch = tx(tencent.url, limits)
    enqueue(sqlite_store, sms("crew:C1", "crew-c1", [PHONE, OTHER]))
    tencent.statuses[OTHER_E164] = code
    run(sqlite_store, ch, 0)
    assert [b["PhoneNumberSet"] for b in tencent.sent()] == [[PHONE_E164], [OTHER_E164]]
    enqueue(sqlite_store, sms("liaison:refused", OTHER, []), sms("liaison:taken", PHONE, []),
            now=T0 + timedelta(seconds=within / 2))
    run(sqlite_store, ch, within)
    assert [b["PhoneNumberSet"] for b in tencent.sent()[2:]] == [[PHONE_E164]], \
        "only the number Tencent did not refuse is sent to"
    held, why = status(sqlite_store, "liaison:refused")
    assert held == "pending" and "blocked by the service" in why, why
    assert status(sqlite_store, "liaison:taken")[0] == "sent"
    key = f"tx/{OTHER_E164}"
    assert SharedLimits(sqlite_store, T0).saved([key]).blocked_for(key, T0) > within
    tencent.statuses.clear()
    run(sqlite_store, ch, after)
    assert status(sqlite_store, "liaison:refused")[0] == "sent"
    assert status(sqlite_store, "crew:C1")[0] == "sent"


@pytest.mark.parametrize("limits", [(), (RateLimit(10, DAY),)], ids=["no-limits", "per-day"])
def test_a_later_message_to_several_still_reaches_the_numbers_not_held(
        sqlite_store: Store, tencent: FakeTencent,  # noqa: F811 - the fixture
        limits: tuple[RateLimit, ...]) -> None:
    """Another crew's SMS to both numbers while the second is held for the day: the first
    number gets it at once (its notice does not wait a day for another number's quota), the
    second waits without a request and gets it when the hold ends."""
    ch = tx(tencent.url, limits)
    enqueue(sqlite_store, sms("crew:C1", "crew-c1", [PHONE, OTHER]))
    tencent.statuses[OTHER_E164] = "LimitExceeded.PhoneNumberDailyLimit"
    run(sqlite_store, ch, 0)
    enqueue(sqlite_store, sms("crew:C2", "crew-c2", [PHONE, OTHER]),
            now=T0 + timedelta(seconds=60))
    run(sqlite_store, ch, 120)
    assert [b["PhoneNumberSet"] for b in tencent.sent()[2:]] == [[PHONE_E164]]
    (later,) = [m for m in sqlite_store.messages() if m.recipient == "crew:C2"]
    assert (later.status, later.payload.get("parts_sent")) == ("pending", 1)
    assert "blocked by the service" in (later.last_error or ""), later.last_error
    tencent.statuses.clear()
    run(sqlite_store, ch, DAY)
    assert {m.recipient: m.status for m in sqlite_store.messages()} == {
        "crew:C1": "sent", "crew:C2": "sent"}
    assert [b["PhoneNumberSet"] for b in tencent.sent()[3:]] == [[OTHER_E164], [OTHER_E164]]


def test_a_one_number_message_refused_holds_its_number_too(
        sqlite_store: Store, tencent: FakeTencent) -> None:  # noqa: F811 - the fixture
    """The refusal of a message to one number already held it (as Aliyun's does): the
    behaviour the several-number case now shares."""
    ch = tx(tencent.url, (RateLimit(10, DAY),))
    enqueue(sqlite_store, sms("liaison:a", OTHER, []))
    tencent.statuses[OTHER_E164] = "LimitExceeded.PhoneNumberDailyLimit"
    run(sqlite_store, ch, 0)
    enqueue(sqlite_store, sms("liaison:b", OTHER, [], revision=2),
            now=T0 + timedelta(seconds=30))
    run(sqlite_store, ch, 60)
    assert len(tencent.sent()) == 1
    assert "blocked by the service" in status(sqlite_store, "liaison:b")[1]


def test_a_resumed_message_counts_only_the_numbers_it_sends_now(
        sqlite_store: Store, tencent: FakeTencent) -> None:  # noqa: F811 - the fixture
    """Two SMS a day per number. A crew's SMS reached the first number and was refused for
    30 seconds for the second; its retry sends to the second alone, so the first number has
    had one SMS of its two: a later SMS to it goes the same day, not the next."""
    limits = (RateLimit(2, DAY),)
    ch = tx(tencent.url, limits)
    enqueue(sqlite_store, sms("crew:C1", "crew-c1", [PHONE, OTHER]))
    tencent.statuses[OTHER_E164] = "LimitExceeded.PhoneNumberThirtySecondLimit"
    run(sqlite_store, ch, 0)
    assert sqlite_store.messages()[0].payload["parts_sent"] == 1
    tencent.statuses.clear()
    enqueue(sqlite_store, sms("liaison:later", PHONE, []), now=T0 + timedelta(seconds=60))
    run(sqlite_store, ch, 120)
    assert status(sqlite_store, "crew:C1")[0] == "sent"
    later, why = status(sqlite_store, "liaison:later")
    assert later == "sent", why
    sent: list[Any] = [b["PhoneNumberSet"] for b in tencent.sent()]
    assert sorted(map(tuple, sent)) == sorted([(PHONE_E164,), (OTHER_E164,), (OTHER_E164,),
                                               (PHONE_E164,)])
    key = f"tx/{PHONE_E164}"
    assert len(SharedLimits(sqlite_store, T0).saved([key]).history(key)) == 2, \
        "the first number is counted once per SMS it got"
