"""Quiet hours against the retry age limit and the outage's start.

* Time a notice spends held by quiet hours does not count toward its age limit
  (``delivery.retry.max_age_seconds``, 6 h by default): the documented window 22:00-07:00
  holds a notice queued at 22:30 for 8.5 h, and a 503 or a rate-limit refusal at 07:00 must
  not dead-letter it. Its age counts from the hold's end, so it still dies 6 h after that.
* A notice of an outage not begun yet (planned or temporary work: the notice, a reminder) is
  released no later than an hour before the outage starts (at once when queued later than
  that); one about an outage already in force waits for the window's end; faults never wait.

The real :class:`~outage_sentinel.delivery.Deliverer` sends through the WeCom channel to a
real local HTTP server (:class:`tests.channels.conftest.FakeService`) on a real store (SQLite
and PostgreSQL); the last test runs the daemon's planner and lifecycle clock end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.config import RetryConfig
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import OutboxRow, Store
from tests.channels.conftest import FakeService, Reply
from tests.channels.conftest import service as service  # noqa: F401  (the fixture)
from tests.test_lifecycle import T0 as LIFECYCLE_T0
from tests.test_lifecycle import Harness, ev

CN = ZoneInfo("Asia/Shanghai")
QUIET = {"liaison": (time(22, 0), time(7, 0))}  # the documented example
POLICY = RetryPolicy.from_config(RetryConfig())  # the config's defaults: max age 6 h
BUSY = Reply(503, {"errcode": -1, "errmsg": "system busy"})
FREQ = Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
OK = Reply(200, {"errcode": 0, "errmsg": "ok"})


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


def cn(day: int, hour: int, minute: int = 0) -> datetime:
    """A local time in December 2026, as the aware UTC instant the deliverer is given."""
    return datetime(2026, 12, day, hour, minute, tzinfo=CN).astimezone(UTC)


def notice(purpose: str = "outage", kind: str = "planned", start: str | None = None,
           n: int = 1) -> OutboxMessage:
    """A liaison notice as the planner writes it (``params["start"]``: local, to the minute)."""
    body = f"【计划停电通知】MARK-{n} 将于{start}停电，请提前做好准备"
    params = {"village": f"MARK-{n}", "kind": kind, "incident": f"INC-{n}"}
    if start is not None:
        params["start"] = start
    return OutboxMessage(incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}",
                         purpose=purpose, channel="wx", target="g1", audience="liaison",
                         subject=body, body=body, payload={"mentions": [], "params": params})


def enqueue(store: Store, message: OutboxMessage, at: datetime) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, [message], at)


def only(store: Store) -> OutboxRow:
    (m,) = store.messages()
    return m


def deliverer(store: Store, service: FakeService) -> Deliverer:
    channel = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=service.url, timeout=2.0)
    return Deliverer(store, {"wx": channel}, POLICY, Metrics(), tz=CN, quiet_hours=QUIET,
                     rand=lambda: 0.5)


def held_overnight(store: Store, service: FakeService) -> tuple[Deliverer, OutboxRow]:
    """A planned notice (work at 10:00, after the window) queued at 22:30, held until 07:00."""
    enqueue(store, notice(start="2026-12-08 10:00"), cn(7, 22, 30))
    d = deliverer(store, service)
    d.run_once(cn(7, 22, 30))
    m = only(store)
    assert (m.status, m.last_error, m.next_attempt_at) == ("pending", "quiet hours", cn(8, 7))
    assert service.requests == []
    return d, m


# -- the age limit counts from the end of the quiet hold --------------------------------------


def test_a_503_when_quiet_hours_end_is_retried_not_dead_lettered(store: Store,
                                                                  service: FakeService) -> None:
    d, _ = held_overnight(store, service)
    service.reply(BUSY)
    service.reply(BUSY)
    d.run_once(cn(8, 7))  # 8.5 h after it was queued: past 6 h, but it waited on purpose
    m = only(store)
    assert m.status == "pending" and m.attempts == 1, m.last_error
    d.run_once(m.next_attempt_at)  # the second failure still knows when its age started
    m = only(store)
    assert m.status == "pending" and m.attempts == 2, m.last_error
    d.run_once(m.next_attempt_at)
    assert only(store).status == "sent"
    assert len(service.requests) == 3


def test_a_rate_limit_refusal_when_quiet_hours_end_waits_for_the_window(
        store: Store, service: FakeService) -> None:
    """Two notices held overnight for one robot: WeCom 45009 on the first at 07:00 blocks the
    robot for a minute, and the second is deferred behind the block ("rate limited"), not
    dead-lettered as "rate limited past max age"; both go once the block ends."""
    for n in (1, 2):
        enqueue(store, notice(start="2026-12-08 10:00", n=n), cn(7, 22, 30))
    d = deliverer(store, service)
    d.run_once(cn(7, 22, 30))
    assert {(m.status, m.next_attempt_at) for m in store.messages()} == {("pending", cn(8, 7))}
    service.reply(FREQ)
    d.run_once(cn(8, 7))
    first, second = sorted(store.messages(), key=lambda m: m.id)
    assert first.status == "pending", first.last_error
    assert second.status == "pending" and (second.last_error or "").startswith(
        "rate limited: "), second.last_error
    assert len(service.requests) == 1  # the second waited without a request
    d.run_once(max(first.next_attempt_at, second.next_attempt_at))
    assert [m.status for m in store.messages()] == ["sent", "sent"]
    assert len(service.requests) == 3


def test_the_age_limit_still_applies_from_the_end_of_the_hold(store: Store,
                                                               service: FakeService) -> None:
    d, _ = held_overnight(store, service)
    service.default = BUSY
    d.run_once(cn(8, 7))
    m = only(store)
    assert m.status == "pending"
    # Retries are never scheduled past 13:00, six hours after the hold let it go.
    while m.status == "pending":
        assert m.next_attempt_at <= cn(8, 13)
        d.run_once(max(m.next_attempt_at, cn(8, 12, 59)))
        m = only(store)
    assert m.status == "dead" and "max age 21600 s" in (m.last_error or "")
    assert m.dead_at == cn(8, 13)


def test_an_operators_retry_of_an_old_dead_letter_gets_its_own_window(
        store: Store, service: FakeService) -> None:
    """A notice queued at 08:00 died of 503s at 14:00; the operator retries it at 20:00 (no
    quiet hours then): one more 503 must not dead-letter it at once, it is retried until 02:00."""
    enqueue(store, notice(kind="fault"), cn(7, 8))
    d = deliverer(store, service)
    service.default = BUSY
    m = only(store)
    while m.status == "pending":
        d.run_once(m.next_attempt_at)
        m = only(store)
    assert m.status == "dead"
    assert store.requeue([m.id], cn(7, 20), "retried by operator:li") == [m.id]
    d.run_once(cn(7, 20))
    m = only(store)
    assert m.status == "pending" and m.attempts == 1, m.last_error
    assert m.next_attempt_at < cn(8, 2)
    service.default = OK
    d.run_once(m.next_attempt_at)
    assert only(store).status == "sent"


# -- a notice of an outage not begun yet is released before the outage starts -----------------


def test_a_one_hour_reminder_for_work_at_six_goes_at_once(store: Store,
                                                          service: FakeService) -> None:
    enqueue(store, notice("reminder_1h", start="2026-12-08 06:00"), cn(8, 5))
    deliverer(store, service).run_once(cn(8, 5))
    assert only(store).status == "sent" and len(service.requests) == 1


def test_a_planned_notice_queued_overnight_goes_an_hour_before_early_work(
        store: Store, service: FakeService) -> None:
    enqueue(store, notice(start="2026-12-08 06:30"), cn(7, 23))
    d = deliverer(store, service)
    d.run_once(cn(7, 23))
    m = only(store)
    assert (m.status, m.next_attempt_at) == ("pending", cn(8, 5, 30))  # not 07:00
    d.run_once(cn(8, 5, 30))
    assert only(store).status == "sent" and len(service.requests) == 1


def test_temporary_work_queued_less_than_an_hour_ahead_goes_at_once(
        store: Store, service: FakeService) -> None:
    enqueue(store, notice(kind="temporary", start="2026-12-08 03:40"), cn(8, 3))
    deliverer(store, service).run_once(cn(8, 3))
    assert only(store).status == "sent"


def test_a_day_ahead_reminder_still_waits_for_the_morning(store: Store,
                                                          service: FakeService) -> None:
    enqueue(store, notice("reminder_24h", start="2026-12-08 23:00"), cn(7, 23))
    deliverer(store, service).run_once(cn(7, 23))
    m = only(store)
    assert (m.status, m.next_attempt_at) == ("pending", cn(8, 7))


def test_a_notice_of_work_already_under_way_waits_for_the_morning(
        store: Store, service: FakeService) -> None:
    enqueue(store, notice("update", start="2026-12-07 21:00"), cn(7, 23))
    deliverer(store, service).run_once(cn(7, 23))
    m = only(store)
    assert (m.status, m.next_attempt_at) == ("pending", cn(8, 7))
    assert service.requests == []


def test_a_fault_notice_is_never_held(store: Store, service: FakeService) -> None:
    enqueue(store, notice(kind="fault", start="2026-12-07 23:50"), cn(7, 23))
    deliverer(store, service).run_once(cn(7, 23))
    assert only(store).status == "sent"


def test_a_released_early_notice_that_fails_keeps_trying_in_the_window(
        store: Store, service: FakeService) -> None:
    """Released at 05:30 for work at 06:30: a 503 then is retried seconds later, not held
    again until 07:00, and its age counts from 05:30."""
    enqueue(store, notice(start="2026-12-08 06:30"), cn(7, 23))
    d = deliverer(store, service)
    d.run_once(cn(7, 23))
    service.reply(BUSY)
    d.run_once(cn(8, 5, 30))
    m = only(store)
    assert m.status == "pending" and m.next_attempt_at < cn(8, 5, 31), m.last_error
    d.run_once(m.next_attempt_at)
    assert only(store).status == "sent" and len(service.requests) == 2


# -- through the daemon: the planner's own notices ---------------------------------------------


def test_overnight_notice_and_reminder_of_work_at_six_go_at_five(tmp_path: Path) -> None:
    """The daemon's planner and lifecycle clock with the file-channel config: planned work at
    06:00 announced at 23:00 is not held until 07:00 — its notice goes at 05:00, with the
    1-hour reminder the clock queues then."""
    h = Harness(tmp_path, notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    try:
        h.at(13 * 60)  # 23:00 in Shanghai
        start = LIFECYCLE_T0 + timedelta(hours=20)  # 06:00 the next morning
        h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=4)))
        assert not h.sent(audience="liaison")
        h.at(19 * 60 - 1)  # 04:59
        assert not [m for m in h.deliver() if m.audience == "liaison"]
        h.at(19 * 60)  # 05:00: an hour before the work
        sent = [m for m in h.deliver() if m.audience == "liaison"]
        assert [(m.purpose, m.target) for m in sent] == [("outage", "V1群"),
                                                         ("reminder_1h", "V1群")]
        assert all("06:00" in m.text for m in sent), [m.text for m in sent]
    finally:
        h.daemon.close()
