"""What a notice said when it went is what its row keeps, and what a retry of its rest sends.

A notice is made true when it goes (:func:`outage_sentinel.delivery.as_sent`): a late line
under its heading, its SMS ``etr`` 待定, a reminder's ``hours`` counted from then. The board's
incident page and ``/api/outbox`` show the stored row, so the row must hold those words once
they went — not the text queued. And a message in parts is cut from one text: once its first
part went, a retry sends the rest of that text, never one rendered anew (a late line added
before the retry would shift the cut, and a line would arrive twice).

Through the daemon's core and the deliverer, with local channels, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.board.views import Viewer, notice_row
from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.common import split_message
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.store import OutboxRow, Store
from tests.channels.conftest import FakeService
from tests.test_delivery import POLICY, FakeChannel, enqueue
from tests.test_lifecycle import T0, Harness, ev
from tests.test_planned_truth_c import QUIET, down_until, extended_night_work, run

pytestmark = pytest.mark.usefixtures("no_secrets")

SHANGHAI = ZoneInfo("Asia/Shanghai")
LATE = "（本通知发出时已过预计恢复时间2026-11-23 10:30，恢复时间待定）"
#: What the board shows an operator, the village groups' channel read as an SMS one too (so
#: the parameters sent are shown).
OPERATOR = Viewer("zh", UTC, phones=True, links=True, sms=frozenset({"sms", "wecom"}))


@pytest.fixture
def harness(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    h = Harness(tmp_path / "h", db_url, log={"level": "WARNING"}, notify=QUIET)
    yield h
    h.daemon.close()


def stored(h: Harness, message: Message) -> OutboxRow:
    (row,) = [r for r in h.daemon.store.messages()
              if r.key == message.key and r.target == message.target]
    return row


# -- the row keeps what was sent ---------------------------------------------------------------


def test_an_update_sent_after_its_time_is_stored_and_shown_as_it_went(
        harness: Harness) -> None:
    """The extension of night work reaches the village group after its new time has passed:
    the row, and the board's view of it, say what the group read — the late line, ``etr``
    待定 — not the text queued."""
    h = harness
    new_stop = extended_night_work(h)
    down_until(h, new_stop + timedelta(minutes=30))
    sent = run(h, 15 * 60 + 55, 21 * 60 + 30)
    (update,) = [m for _, m in sent if m.purpose == "update"]
    assert LATE.replace("2026-11-23 10:30", "2026-11-24 06:00") in update.text
    row = stored(h, update)
    assert (row.status, row.body) == ("sent", update.text)
    assert row.payload["params"] == dict(update.params)
    assert row.payload["params"]["sms"]["etr"] == "待定"
    shown = notice_row(row, OPERATOR)
    assert shown["text"] == update.text
    assert shown["sms"]["params"]["etr"] == "待定"


def test_an_announcement_sent_after_the_work_began_is_stored_with_its_late_line(
        harness: Harness) -> None:
    h = harness
    start = T0 + timedelta(minutes=30)
    down_until(h, T0 + timedelta(minutes=45))
    h.feed(ev("P1", "T1", kind="temporary", start=start, etr=start + timedelta(hours=3)))
    sent = run(h, 0, 60)
    (outage,) = [m for _, m in sent if m.purpose == "outage"]
    assert outage.text.splitlines()[1] == "（本通知发出时停电已于2026-11-23 10:30开始）"
    assert notice_row(stored(h, outage), OPERATOR)["text"] == outage.text


def test_a_reminder_is_stored_with_the_hours_it_stated(harness: Harness) -> None:
    """Held by quiet hours to 07:00, 16.5 h before the work: the row says "16", as the SMS."""
    h = harness
    start = T0 + timedelta(hours=37, minutes=30)
    h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=3)))
    sent = run(h, 13 * 60 + 30, 21 * 60, step=30)
    (reminder,) = [m for _, m in sent if m.purpose == "reminder_24h"]
    assert reminder.params["sms"]["hours"] == "16"
    row = stored(h, reminder)
    assert row.payload["params"]["sms"]["hours"] == "16"
    assert notice_row(row, OPERATOR)["sms"]["params"]["hours"] == "16"


def test_a_notice_sent_on_time_is_stored_as_queued(harness: Harness) -> None:
    """Nothing to make true: the row is left as queued (no mark that it was changed)."""
    h = harness
    new_stop = extended_night_work(h)
    sent = run(h, 15 * 60 + 55, 21 * 60 + 30)
    # 06:00 passed, still off: followed up at 07:00 (notify.overrun_grace_minutes)
    update, _overrun = [m for _, m in sent if m.purpose == "update"]
    row = stored(h, update)
    assert row.body == update.text and "已过" not in row.body
    assert "as_sent" not in row.payload
    assert row.payload["params"]["sms"]["etr"] == "2026-11-24 06:00" == \
        new_stop.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# -- a message in parts is cut from one text ---------------------------------------------------

#: The update's stated restoration (10:30 in Shanghai) and a moment before and after it.
ETR = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
BEFORE, AFTER = ETR - timedelta(minutes=20), ETR + timedelta(minutes=20)


@dataclass
class Robot(FakeChannel):
    """A local robot channel taking at most 300 bytes a request: longer texts go in parts;
    ``read`` holds the parts it took (the group read)."""

    read: list[Message] = field(default_factory=list)

    def parts(self, message: Message) -> tuple[Message, ...]:
        return split_message(message, 300, markdown=False)

    def send(self, message: Message) -> SendResult:
        result = super().send(message)
        if result.outcome is Outcome.DELIVERED:
            self.read.append(message)
        return result


def long_update() -> OutboxMessage:
    lines = ["【停电信息更新】东村", "预计恢复时间调整为：2026-11-23 10:30。"]
    lines += [f"第{i:02d}行：东村{i}号台区，受影响用户若干。" for i in range(1, 25)]
    return OutboxMessage(
        incident_id="INC-1", revision=2, recipient="village:V1:wecom:g1", purpose="update",
        channel="wecom", target="g1", audience="liaison", subject=lines[0],
        body="\n".join(lines), payload={"mentions": [], "params": {
            "kind": "planned", "etr": "2026-11-23 10:30",
            "sms_template": "update", "sms": {"etr": "2026-11-23 10:30"}}})


def deliverer(store: Store, robot: Robot) -> Deliverer:
    return Deliverer(store, {"wecom": robot}, POLICY, Metrics(), rand=lambda: 0.5,
                     tz=SHANGHAI, language="zh")


def arrived(robot: Robot) -> list[str]:
    """The lines the group read, each part's heading and " (i/n)" marker apart."""
    out: list[str] = []
    for i, m in enumerate(robot.read):
        lines = m.text.rsplit(" (", 1)[0].splitlines()
        out += lines if i == 0 else lines[1:]
    return out


def twice(lines: list[str]) -> list[str]:
    return sorted({x for x in lines if lines.count(x) > 1})


def test_the_rest_of_a_message_part_sent_on_time_is_of_the_same_text(store: Store) -> None:
    """Part 1 of the update goes before its time, the rest fails; the retry comes after the
    time: it sends the rest of the text part 1 was cut from — every line once, no late line
    slipped in to shift the cut — and the row shows that text."""
    (queued,) = enqueue(store, long_update(), now=BEFORE - timedelta(minutes=1))
    failed = SendResult(Outcome.RETRY, "HTTP 502")
    robot = Robot(script=[SendResult(Outcome.DELIVERED, "ok"), failed])
    deliverer(store, robot).run_once(BEFORE)
    (row,) = store.messages()
    assert (row.status, row.payload["parts_sent"]) == ("pending", 1)
    deliverer(store, robot).run_once(AFTER)
    (row,) = store.messages()
    assert row.status == "sent"
    got = arrived(robot)
    assert twice(got) == []
    assert [x for x in got if x] == queued.body.splitlines()
    assert row.body == queued.body and LATE not in got


def test_a_message_part_sent_late_keeps_its_late_line_for_the_rest(store: Store) -> None:
    """Part 1 goes after the time, with the late line; the rest fails. The row holds that text
    at once (the board shows what part 1 said), and the retry sends its rest: the late line
    arrives once, every line once, and the row ends as the text the group read."""
    (queued,) = enqueue(store, long_update(), now=BEFORE)
    robot = Robot(script=[SendResult(Outcome.DELIVERED, "ok"),
                          SendResult(Outcome.RETRY, "HTTP 502")])
    deliverer(store, robot).run_once(AFTER)
    (row,) = store.messages()
    assert (row.status, row.payload["parts_sent"]) == ("pending", 1)
    assert row.body.splitlines()[1] == LATE
    assert row.payload["params"]["sms"]["etr"] == "待定"
    deliverer(store, robot).run_once(AFTER + timedelta(minutes=5))
    (row,) = store.messages()
    got = arrived(robot)
    assert row.status == "sent" and twice(got) == [] and got.count(LATE) == 1
    assert [x for x in got if x] == row.body.splitlines()
    assert row.body.splitlines()[2:] == queued.body.splitlines()[1:]
    assert notice_row(row, OPERATOR)["sms"]["params"]["etr"] == "待定"


# -- a digest's notices keep what they said too ----------------------------------------------


@pytest.fixture
def wecom_service() -> Iterator[FakeService]:
    s = FakeService()
    yield s
    s.close()


def test_notices_merged_into_a_digest_after_their_time_are_stored_as_they_went(
        store: Store, wecom_service: FakeService) -> None:
    """Three villages' updates wait past their stated restoration for a robot over its limit:
    merged into one digest, each row keeps the words it went with (late line, etr 待定)."""
    channel = WeComChannel("wecom", robots={"g1": "key-town-0123456789abcdef"},
                           base_url=wecom_service.url, rate_limits=(RateLimit(1, 60),))
    updates = [replace(long_update(), recipient=f"village:V{i}:wecom:g1",
                       body=f"【停电信息更新】{i}村\n预计恢复时间调整为：2026-11-23 10:30。")
               for i in range(1, 4)]
    enqueue(store, *updates, now=BEFORE)
    Deliverer(store, {"wecom": channel}, POLICY, Metrics(), rand=lambda: 0.5, tz=SHANGHAI,
              language="zh").run_once(AFTER)
    assert len(wecom_service.requests) == 1
    covered = [m for m in store.messages() if m.purpose == "update"]
    assert len(covered) == 3
    for row, queued in zip(covered, updates, strict=True):
        assert row.status == "sent" and "digest" in row.payload
        assert row.body.splitlines() == [queued.body.splitlines()[0], LATE,
                                         *queued.body.splitlines()[1:]]
        assert row.payload["params"]["sms"]["etr"] == "待定"
