"""Planned work's reminders must announce the start the work has now, through the daemon's
own core on a controllable clock (SQLite and PostgreSQL):

1. Work postponed (or re-issued under a new id with a new window) after its day-before
   reminder gets the reminders of its new date — once each, whatever checks and restarts
   follow — and a reminder of the old date still waiting is taken back, never sent after
   the update.
2. The clock's check reads the open incidents without a lock: a cancellation or a new start
   committed between that read and the transaction queuing the reminder (the poll job, the
   CLI or the board in another process) wins. The interleaving is forced deterministically:
   the other actor's step commits just before the check's first transaction begins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.events import PollResult
from tests.test_lifecycle import T0, TZ, Harness, ev

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
START = T0 + 48 * H  # 11-25 10:00 (Shanghai), announced 11-23 10:00
NEW = START + 48 * H  # postponed to 11-27 10:00


def local(at: datetime) -> str:
    return at.astimezone(TZ).strftime("%m-%d %H:%M")


def work(event_id: str, start: datetime, status: str = "active") -> Any:
    return ev(event_id, "T1", kind="planned", status=status, start=start, etr=start + 4 * H)


def reminders_at(h: Harness, moments: list[datetime]) -> list[tuple[str, str, str]]:
    """Walk the clock through ``moments`` (a check and a delivery at each): each liaison
    reminder sent, as (when, purpose, the start its text announces)."""
    out = []
    for at in moments:
        h.now = at
        for m in h.deliver():
            if m.audience == "liaison" and m.purpose.startswith("reminder"):
                said = re.search(r"将于\d{4}-(\d\d-\d\d \d\d:\d\d)停电", m.text)
                out.append((local(at), m.purpose, said.group(1) if said else "?"))
    return out


def liaison(h: Harness, since: int = 0) -> list[tuple[str, str]]:
    """Liaison messages sent (after the first ``since``): (purpose, the start text said)."""
    out = []
    for m in h.channel.sent[since:]:
        if m.audience == "liaison":
            day = "old" if "2026-11-25 10:00" in m.text else "new" if "2026-11-27" in m.text \
                else "?"
            out.append((m.purpose, day))
    return out


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


# -- 1. postponed and re-issued work --------------------------------------------------------


def test_postponed_work_is_reminded_of_its_new_date_once(h: Harness, tmp_path: Path,
                                                         db_url: str) -> None:
    h.feed(work("P1", START))
    assert reminders_at(h, [START - 24 * H]) == [("11-24 10:00", "reminder_24h", "11-25 10:00")]
    h.now += 2 * H
    h.feed(work("P1", NEW))  # postponed by two days
    assert liaison(h)[-1] == ("update", "new")
    moments = [START - H, NEW - 48 * H, NEW - 24 * H, NEW - 23 * H, NEW - H,
               NEW - 50 * MINUTE]
    assert reminders_at(h, moments) == [("11-26 10:00", "reminder_24h", "11-27 10:00"),
                                        ("11-27 09:00", "reminder_1h", "11-27 10:00")]
    # A restart (another daemon on the same database) queues neither again.
    h.daemon.close()
    again = Harness(tmp_path / "restart", db_url)
    h.daemon = again.daemon  # closed by the fixture
    again.now = NEW - 30 * MINUTE
    assert not [m for m in again.deliver() if m.purpose.startswith("reminder")]
    assert [r.purpose for r in again.daemon.store.messages()
            if r.purpose.startswith("reminder")] == ["reminder_24h"] * 2 + ["reminder_1h"]


def test_a_waiting_reminder_of_the_old_date_is_taken_back_by_the_postponement(
        h: Harness) -> None:
    """The day-before reminder is queued but not sent yet (a channel slow, quiet hours)
    when the work is postponed: the village reads the update, never 将于11-25 10:00停电
    after it."""
    h.feed(work("P1", START))
    h.now = START - 24 * H
    assert h.daemon.lifecycle.check(h.now) == 1  # queued, not delivered
    n = len(h.channel.sent)
    h.now += 30 * MINUTE
    h.feed(work("P1", NEW))
    assert liaison(h, n) == [("update", "new")]
    (old,) = [r for r in h.daemon.store.messages() if r.purpose == "reminder_24h"]
    assert old.status == "withdrawn" and "moved" in (old.last_error or "")
    assert reminders_at(h, [NEW - 24 * H]) == [("11-26 10:00", "reminder_24h", "11-27 10:00")]


def test_work_reissued_with_the_same_window_is_not_reminded_twice(h: Harness) -> None:
    h.feed(work("P1", START))
    h.now = START - 24 * H
    h.deliver()
    h.now += H
    h.feed(work("P1", START, status="cancelled"), work("P2", START))  # re-issued (作废+新号)
    assert len(h.daemon.store.load_incidents(open_only=False)) == 1
    moments = [START - 22 * H, START - 2 * H, START - H, START - 30 * MINUTE]
    assert reminders_at(h, moments) == [("11-25 09:00", "reminder_1h", "11-25 10:00")]
    sent = [m.purpose for m in h.channel.sent
            if m.audience == "liaison" and m.purpose.startswith("reminder")]
    assert sent == ["reminder_24h", "reminder_1h"]


@pytest.mark.parametrize("reissued", ["before_reminders", "after_the_day_before_one"])
def test_work_reissued_with_a_later_start_is_reminded_of_it_once(h: Harness,
                                                                  reissued: str) -> None:
    """Re-issued three hours later (the old record 作废, a new id in the same poll): the
    reminders count from the new start, once each, however many checks follow — also when
    the old start's day-before reminder went already (the new date's is a new promise)."""
    h.feed(work("P1", START))
    later = START + 3 * H
    at = T0 + H if reissued == "before_reminders" else START - 23 * H
    early = reminders_at(h, [START - 24 * H]) if at > START - 24 * H else []
    h.now = at
    h.feed(work("P1", START, status="cancelled"), work("P2", later))
    assert len(h.daemon.store.load_incidents(open_only=False)) == 1
    hourly = [START - 24 * H + i * H for i in range(0, 28)]
    got = reminders_at(h, [m for m in hourly if m >= at])
    assert early + got == [
        *([("11-24 10:00", "reminder_24h", "11-25 10:00")] if early else []),
        ("11-24 13:00", "reminder_24h", "11-25 13:00"),
        ("11-25 12:00", "reminder_1h", "11-25 13:00")]


# -- 2. the check's read racing a cancellation or a new start -------------------------------


def committed_before_check_writes(h: Harness, step: Callable[[], None]) -> None:
    """Run the clock's check with ``step`` (another actor's change) committed after the
    check read the open incidents and before its first transaction (planned work only:
    the deadline check opens none) begins."""
    store = h.daemon.store
    original = store.transaction

    def transaction(*args: Any, **kwargs: Any) -> Any:
        del store.transaction  # once; the other actor's step uses the real one
        step()
        return original(*args, **kwargs)

    store.transaction = transaction  # type: ignore[method-assign]
    try:
        h.daemon.lifecycle.check(h.now)
    finally:
        store.__dict__.pop("transaction", None)


def fold(h: Harness, *events: Any) -> Callable[[], None]:
    def step() -> None:
        h.daemon.store.ingest("feed", PollResult(events=list(events)), h.now)
        h.daemon.process()
    return step


@pytest.mark.parametrize("actor", ["feed", "cli"])
def test_a_cancellation_racing_the_check_gets_no_reminder_after_it(h: Harness,
                                                                   actor: str) -> None:
    h.feed(work("P1", START))
    incident = h.only_incident()
    h.now = START - 24 * H
    n = len(h.channel.sent)
    steps = CommandSteps(h.daemon.lifecycle, h.daemon.processor, h.daemon.clock)
    step = fold(h, work("P1", START, status="cancelled")) if actor == "feed" else (
        lambda: steps.cancel(incident, "作业取消", "operator:li") and None)
    committed_before_check_writes(h, step)
    h.deliver()
    assert liaison(h, n) == [("cancelled", "old")]
    assert not [r for r in h.daemon.store.messages() if r.purpose.startswith("reminder")]


def test_a_postponement_racing_the_check_gets_no_reminder_of_the_old_date(
        h: Harness) -> None:
    h.feed(work("P1", START))
    h.now = START - 24 * H
    n = len(h.channel.sent)
    committed_before_check_writes(h, fold(h, work("P1", NEW)))
    h.deliver()
    assert liaison(h, n) == [("update", "new")]
    assert reminders_at(h, [NEW - 24 * H]) == [("11-26 10:00", "reminder_24h", "11-27 10:00")]
