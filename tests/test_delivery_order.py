"""Messages to one recipient about one incident arrive in the order they were queued.

A village's robot that times out while the village's power comes back must never leave the
group reading 【故障停电通知】 last: a later message waits for an earlier one of its chain
(incident, recipient), an earlier off-notice made moot by a later back-notice is superseded
(never sent, shown as such), and a message given up on does not hold the rest for ever.
Real stores (SQLite and PostgreSQL); WeCom through its real sender and a local server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.ordering import order
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.store import OutboxRow, Store
from tests.channels.conftest import FakeService, Reply
from tests.conftest import T0
from tests.test_delivery import POLICY, Crash, FakeChannel, deliverer, enqueue, row

RECIPIENT = "village:V1:wecom:g1"
RETRY = SendResult(Outcome.RETRY, "timeout after 10 s")


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


@pytest.fixture
def wecom_service() -> Iterator[FakeService]:
    s = FakeService()
    yield s
    s.close()


def notice(purpose: str, revision: int = 1, **kw: Any) -> Any:
    heads = {"outage": "【故障停电通知】马集村", "update": "【停电信息更新】马集村",
             "restored": "【恢复送电】马集村", "care": "【重点关怀】马集村"}
    head = heads.get(purpose, purpose)
    return row(purpose=purpose, revision=revision, subject=head, body=f"{head}\n正文。", **kw)


def by_purpose(store: Store) -> dict[str, OutboxRow]:
    return {m.purpose: m for m in store.messages()}


def heads(sent: list[Message]) -> list[str]:
    return [m.text.splitlines()[0] for m in sent]


def test_a_later_message_waits_while_an_earlier_one_retries(store: Store) -> None:
    enqueue(store, notice("outage"))
    ch = FakeChannel(script=[RETRY])
    d = deliverer(store, ch)
    d.run_once(T0)
    enqueue(store, notice("update", 2), now=T0 + timedelta(seconds=1))
    d.run_once(T0 + timedelta(seconds=2))  # the update is due, the outage is backing off
    assert heads(ch.sent) == ["【故障停电通知】马集村"]
    assert by_purpose(store)["update"].status == "pending"
    d.run_once(by_purpose(store)["outage"].next_attempt_at)
    assert heads(ch.sent) == ["【故障停电通知】马集村"] * 2 + ["【停电信息更新】马集村"]
    assert {m.status for m in store.messages()} == {"sent"}


def test_in_one_run_a_chain_stops_at_its_first_message_not_confirmed(store: Store) -> None:
    enqueue(store, notice("outage"), notice("care"), row("village:V2:wecom:g1"))
    ch = FakeChannel(script=[RETRY])
    deliverer(store, ch).run_once(T0)
    assert [m.key.split("/")[2] for m in ch.sent] == [RECIPIENT, "village:V2:wecom:g1"]
    assert by_purpose(store)["care"].attempts == 0  # not tried ahead of the outage


def test_an_outage_superseded_by_the_restoration_is_never_sent(store: Store) -> None:
    enqueue(store, notice("outage"))
    ch = FakeChannel(script=[RETRY])
    d = deliverer(store, ch)
    d.run_once(T0)
    enqueue(store, notice("restored", 2), now=T0 + timedelta(minutes=4))
    restored = by_purpose(store)["restored"]
    d.run_once(T0 + timedelta(minutes=4))
    assert heads(ch.sent) == ["【故障停电通知】马集村", "【恢复送电】马集村"]
    outage = by_purpose(store)["outage"]
    assert outage.status == "superseded"
    assert outage.last_error == f"superseded by #{restored.id} (restored) before it could be sent"
    d.run_once(T0 + timedelta(hours=1))
    assert heads(ch.sent)[-1] == "【恢复送电】马集村"  # the last word stays true
    assert d.metrics.registry.get_sample_value(
        "outage_sentinel_notifications_total", {"channel": "wecom", "result": "superseded"}) == 1


def test_a_dead_earlier_message_does_not_block_the_later_ones(store: Store) -> None:
    enqueue(store, notice("outage"), notice("care"))
    ch = FakeChannel(script=[SendResult(Outcome.PERMANENT, "errcode 93000")])
    d = deliverer(store, ch)
    d.run_once(T0)
    assert by_purpose(store)["outage"].status == "dead"
    d.run_once(T0 + timedelta(seconds=2))
    assert by_purpose(store)["care"].status == "sent"


def test_an_earlier_message_retrying_past_its_max_age_frees_its_chain(store: Store) -> None:
    enqueue(store, notice("outage"))
    ch = FakeChannel(default=RETRY)
    d = deliverer(store, ch)
    d.run_once(T0)
    enqueue(store, notice("care"), now=T0 + timedelta(minutes=1))
    now = T0
    while by_purpose(store)["outage"].status == "pending":
        assert by_purpose(store)["care"].attempts == 0
        now = by_purpose(store)["outage"].next_attempt_at
        d.run_once(now)
    assert by_purpose(store)["outage"].status == "dead"
    ch.default = SendResult(Outcome.DELIVERED, "errcode 0")
    d.run_once(now)
    assert by_purpose(store)["care"].status == "sent"


def test_order_holds_across_a_restart_with_a_message_left_in_flight(store: Store) -> None:
    enqueue(store, notice("outage"))
    ch = FakeChannel(script=[Crash()])
    with pytest.raises(Crash):
        deliverer(store, ch).run_once(T0)
    enqueue(store, notice("care"), now=T0 + timedelta(seconds=1))
    # Another node (or the restarted one before its recovery) must not overtake it.
    other = deliverer(store, ch)
    other.run_once(T0 + timedelta(seconds=2))
    assert by_purpose(store)["care"].status == "pending" and len(ch.sent) == 1
    restarted = deliverer(store, ch)
    restarted.recover(T0 + timedelta(seconds=3))
    restarted.run_once(T0 + timedelta(seconds=3))
    assert heads(ch.sent) == ["【故障停电通知】马集村"] * 2 + ["【重点关怀】马集村"]


def test_separate_incidents_and_recipients_do_not_wait_for_each_other(store: Store) -> None:
    enqueue(store, notice("outage"), notice("care", incident_id="INC-2"),
            notice("care", recipient="village:V2:wecom:g1"))
    ch = FakeChannel(script=[RETRY])
    deliverer(store, ch).run_once(T0)
    assert len(ch.sent) == 3


def test_a_chain_split_across_limiter_keys_keeps_its_order(store: Store) -> None:
    """SMS counts per number and template: a chain's messages may fall under different
    limiter keys, and still go in order."""
    ch = FakeChannel()
    ch.rate_limits = (RateLimit(20, 60),)  # type: ignore[attr-defined]
    # The care list under another key than the outage and its update.
    ch.rate_keys = lambda m: (m.target, str(m.purpose == "care"))  # type: ignore[attr-defined]
    enqueue(store, notice("outage"), notice("care"), notice("update", 2))
    d = deliverer(store, ch)
    for s in range(4):
        d.run_once(T0 + timedelta(seconds=2 * s))
    assert [m.purpose for m in ch.sent] == ["outage", "care", "update"]


def test_the_pure_order_reads_chains_not_groups(store: Store) -> None:
    enqueue(store, notice("outage"), notice("update", 2), notice("restored", 3))
    rows = store.messages()
    plan = order(rows[:2], rows)  # the restoration is queued but not in this batch
    assert plan.superseded == {rows[0].id: rows[2].id, rows[1].id: rows[2].id}
    assert plan.ready == ()


def test_a_wecom_group_reads_the_restoration_last(store: Store,
                                                  wecom_service: FakeService) -> None:
    """The review's case, through the real WeCom sender: the robot answers 'busy' for minutes,
    the restoration is queued meanwhile; the group receives only the restoration."""
    channel = WeComChannel("wecom", robots={"g1": "key-g1-0123456789abcdef"},
                           base_url=wecom_service.url, timeout=5)
    d = Deliverer(store, {"wecom": channel}, POLICY, Metrics(), rand=lambda: 0.5)
    wecom_service.default = Reply(200, {"errcode": -1, "errmsg": "system busy"})
    enqueue(store, notice("outage"))
    now = T0
    while now < T0 + timedelta(minutes=8):
        if now == T0 + timedelta(minutes=4):
            enqueue(store, notice("restored", 2), now=now)
        d.run_once(now)
        now += timedelta(seconds=2)
    wecom_service.default = Reply(200, {"errcode": 0, "errmsg": "ok"})
    d.run_once(now)
    d.run_once(now + timedelta(hours=1))
    texts = [r.json()["text"]["content"].splitlines()[0] for r in wecom_service.requests]
    first_back = texts.index("【恢复送电】马集村")
    assert set(texts[first_back:]) == {"【恢复送电】马集村"}  # nothing false after it
    assert {m.purpose: m.status for m in store.messages()} == {
        "outage": "superseded", "restored": "sent"}


def test_messages_waiting_in_their_chains_never_starve_the_rest(store: Store) -> None:
    """WeCom down: 120 village groups each have an outage notice retrying and an update
    waiting behind it. Left due, the waiting updates filled every run's batch (100), so the
    outages were never retried and a crew's SMS dispatch of another incident never went."""
    from outage_sentinel.channels.base import Outcome, SendResult
    from tests.test_delivery import FakeChannel, deliverer, enqueue, row

    wecom = FakeChannel(name="wecom", default=SendResult(Outcome.RETRY, "timeout after 10 s"))
    sms = FakeChannel(name="sms")
    enqueue(store, *[row(f"village:V{i}:wecom:g{i}", incident_id="INC-1") for i in range(120)])
    d = deliverer(store, wecom, sms)
    d.run_once(T0)
    enqueue(store, *[row(f"village:V{i}:wecom:g{i}", incident_id="INC-1", revision=2,
                         purpose="update") for i in range(120)], now=T0 + timedelta(seconds=2))
    enqueue(store, row("crew:CR1", purpose="dispatch", channel="sms", target="13900000001",
                       audience="crew", incident_id="INC-9"), now=T0 + timedelta(seconds=3))
    now = T0 + timedelta(seconds=3)
    for _ in range(60):
        now += timedelta(seconds=5)
        d.run_once(now)
    (crew,) = [m for m in store.messages() if m.recipient == "crew:CR1"]
    assert crew.status == "sent"
    wecom.default = SendResult(Outcome.DELIVERED, "errcode 0")  # WeCom is back
    for _ in range(120):
        now += timedelta(seconds=60)
        d.run_once(now)
    assert {m.status for m in store.messages()} == {"sent"}
    # Each group heard its outage before its update.
    for i in range(120):
        mine = [m for m in store.messages() if m.recipient == f"village:V{i}:wecom:g{i}"]
        assert [m.purpose for m in sorted(mine, key=lambda m: m.sent_at)] == ["outage", "update"]


def test_a_rate_limited_sms_chain_sends_everything_in_turn(store: Store) -> None:
    """SMS at one a minute per number, each of 110 liaisons with outage, care and update:
    all go, each number's in order."""
    from outage_sentinel.ratelimit import RateLimit
    from tests.test_delivery import FakeChannel, deliverer, enqueue, row

    sms = FakeChannel(name="sms")
    sms.rate_limits = (RateLimit(1, 60),)
    sms.rate_keys = lambda m: (m.target,)  # type: ignore[method-assign]
    enqueue(store, *[row(f"village:V{i}:sms:1390000{i:04d}", channel="sms",
                         target=f"1390000{i:04d}", purpose=p, revision=k)
                     for i in range(110) for k, p in ((1, "outage"), (2, "care"), (3, "update"))])
    d = deliverer(store, sms)
    now = T0
    while now < T0 + timedelta(hours=2):
        d.run_once(now)
        now += timedelta(seconds=10)
    assert {m.status for m in store.messages()} == {"sent"}
