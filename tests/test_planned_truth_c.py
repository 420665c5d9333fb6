"""What a notice of planned work says must still be true when it goes, not only when queued.

* A reminder ("将于10:00停电…请提前做好准备") still waiting when the work begins (the village
  group's robot down) is never sent: it is kept as ``superseded`` with the reason.
* An announcement of planned work queued before the work began and sent after it says so under
  its heading (the village still needs to know why it is dark).
* An update of work in force whose new expected restoration falls inside the quiet hours is
  not held past it: it goes an hour before that time; and one sent after its time anyway (a
  channel down) says the time has passed, its SMS ``etr`` 待定.
* A reminder's SMS ``hours`` is how long before the start it actually goes (held by quiet
  hours from 23:30 to 07:00, 16.5 h before the work: "16", not "24").

Each scenario runs through the daemon's core (planner, lifecycle clock, deliverer) with the
harness's controllable clock; a channel that is "down" answers HTTP 502 (a RETRY) until a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.channels.base import Message, Outcome, SendResult
from tests.test_lifecycle import T0, Harness, ev

QUIET = {"quiet_hours": {"liaison": "22:00-07:00"}}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**config: object) -> Harness:
        made.append(Harness(tmp_path / str(len(made)), None, log={"level": "WARNING"},
                            **config))
        return made[-1]

    yield make
    for h in made:
        h.daemon.close()


def down_until(h: Harness, until: datetime, target: str = "V1群") -> None:
    """The village group's robot answers 502 until ``until`` (the harness's clock)."""
    send = h.channel.send

    def flaky(message: Message) -> SendResult:
        if h.now < until and message.target == target:
            return SendResult(Outcome.RETRY, "HTTP 502")
        return send(message)

    h.channel.send = flaky  # type: ignore[method-assign]


def run(h: Harness, first: int, last: int, step: int = 5) -> list[tuple[datetime, Message]]:
    """Deliver every ``step`` minutes from ``first`` to ``last`` (minutes after T0); what went
    to liaisons, with when."""
    out: list[tuple[datetime, Message]] = []
    for minute in range(first, last + 1, step):
        h.at(minute)
        out += [(h.now, m) for m in h.deliver() if m.audience == "liaison"]
    return out


# -- a reminder is never sent after the work began ---------------------------------------------


def test_a_reminder_held_up_past_the_start_is_superseded_not_sent(
        harness: Callable[..., Harness]) -> None:
    """Work at 10:00 the next day; the group's robot is down 09:00-10:30: the one-hour
    reminder never reaches the group late, and the command centre sees why."""
    h = harness()
    start = T0 + timedelta(days=1)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=4)))
    h.at(60 * 21)
    h.deliver()  # the day-before reminder went
    down_until(h, start + timedelta(minutes=30))
    sent = run(h, 60 * 23, 60 * 25)
    late = [(at, m.purpose) for at, m in sent if m.purpose.startswith("reminder")]
    assert late == [], late
    (row,) = [r for r in h.daemon.store.messages() if r.purpose == "reminder_1h"]
    assert row.status == "superseded"
    assert "began at 2026-11-24 10:00" in (row.last_error or "")


def test_a_reminder_held_up_but_not_past_the_start_still_goes(
        harness: Callable[..., Harness]) -> None:
    h = harness()
    start = T0 + timedelta(days=1)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=4)))
    down_until(h, start - timedelta(minutes=20))
    sent = run(h, 60 * 23, 60 * 24)
    hour = [(at, m) for at, m in sent if m.purpose == "reminder_1h"]
    assert len(hour) == 1 and hour[0][0] < start
    # its SMS hours is how long before the start it went: 20 min, not 1 h
    assert hour[0][1].params["sms"]["hours"] in ("0.3", "0.2")


def test_an_announcement_sent_after_the_work_began_says_so(
        harness: Callable[..., Harness]) -> None:
    """Temporary work at 10:30 announced at 10:00; the group's robot is down until 10:45:
    the announcement still goes (the village is dark and must hear why), saying the work has
    begun; no reminder goes."""
    h = harness()
    start = T0 + timedelta(minutes=30)
    down_until(h, T0 + timedelta(minutes=45))
    h.feed(ev("P1", "T1", kind="temporary", start=start, etr=start + timedelta(hours=3)))
    sent = run(h, 0, 60)
    (outage,) = [m for _, m in sent if m.purpose == "outage"]
    head, second = outage.text.splitlines()[:2]
    assert head.startswith("【")
    assert second == "（本通知发出时停电已于2026-11-23 10:30开始）"
    assert not [m for _, m in sent if m.purpose.startswith("reminder")]


# -- an update of work in force is not held past the time it states --------------------------


def extended_night_work(h: Harness) -> datetime:
    """Night work 22:00-02:00, announced at 10:00; at 01:50 its stop moves to 06:00."""
    start = T0 + timedelta(hours=12)
    stop = start + timedelta(hours=4)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=stop))
    h.at(15 * 60 + 50)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=stop + timedelta(hours=4)))
    return stop + timedelta(hours=4)


def test_an_extension_inside_quiet_hours_goes_before_its_new_time(
        harness: Callable[..., Harness]) -> None:
    h = harness(notify=QUIET)
    new_stop = extended_night_work(h)
    sent = run(h, 15 * 60 + 55, 21 * 60 + 30)
    update, overrun = [(at, m) for at, m in sent if m.purpose == "update"]
    # still off at 06:15: told its stop has passed (notify.overrun_grace_minutes), at 07:00
    assert "超出计划时间仍停电（原计划2026-11-24 06:00恢复）" in overrun[1].text
    at, message = update
    assert at == new_stop - timedelta(hours=1)  # 05:00, not 07:00
    assert "预计恢复时间调整为：2026-11-24 06:00" in message.text
    assert "已过" not in message.text
    assert message.params["sms"]["etr"] == "2026-11-24 06:00"


def test_an_update_sent_after_its_time_says_the_time_has_passed(
        harness: Callable[..., Harness]) -> None:
    """The same extension, the group's robot down until 06:30: at 07:00 the update goes
    saying its expected restoration has passed, the SMS ``etr`` 待定."""
    h = harness(notify=QUIET)
    new_stop = extended_night_work(h)
    down_until(h, new_stop + timedelta(minutes=30))
    sent = run(h, 15 * 60 + 55, 21 * 60 + 30)
    (update,) = [m for _, m in sent if m.purpose == "update"]
    assert update.text.splitlines()[1] == "（本通知发出时已过预计恢复时间2026-11-24 06:00，恢复时间待定）"
    assert update.params["sms"]["etr"] == "待定"
    assert update.params["etr"] == ""


# -- a reminder's SMS hours are counted when it goes --------------------------------------------


def test_a_reminder_held_by_quiet_hours_states_the_hours_left_when_it_goes(
        harness: Callable[..., Harness]) -> None:
    """Work at 23:30 the next day: its day-before reminder, due at 23:30 in quiet hours, goes at
    07:00, 16.5 h before the work — its SMS says about 16 hours, not 24."""
    h = harness(notify=QUIET)
    start = T0 + timedelta(hours=37, minutes=30)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=3)))
    sent = run(h, 13 * 60 + 30, 21 * 60, step=30)
    (reminder,) = [(at, m) for at, m in sent if m.purpose == "reminder_24h"]
    at, message = reminder
    assert at == T0 + timedelta(hours=21)  # 07:00
    assert message.params["sms"]["hours"] == "16"
    assert message.params["sms"]["start"] == "2026-11-24 23:30"
