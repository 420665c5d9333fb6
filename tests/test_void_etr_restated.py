"""A village told a time, whose time went void when the outage system's record ended, and
whose record comes back within ``notify.void_etr_hold_seconds`` with the same time (the same
record re-issued, or a new id for it): the village hears nothing new. The update held for the
void time never goes (superseded), and no "预计恢复时间调整为 X" follows when X is the very
time it was told before — a notice announcing a change that is no change. A really different
time is news, and the village hears it; so is the same time once the void update went.

Through the daemon, in process, on the storm night of :mod:`tests.test_void_etr_hold`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.ordering import ETR_ONLY, ETR_SAID, VOID_ETR, order
from tests.test_storm_village_truth import (
    BREAKER_CAUSE,
    BREAKER_ONLY,
    Night,
    areas,
    at,
    breaker,
    fuse,
    record,
)
from tests.test_void_etr_hold import ENDS, VOID, night_with, record_ends, voids

#: The time the breaker's record gives (12:00 local) as the villages read it.
TOLD = "12:00"


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Night]:
    n = night_with(tmp_path, 360)
    yield n
    n.daemon.close()


def comes_back(night: Night, event_id: str = "A1", etr_minutes: float = 120,
               after: float = 1) -> None:
    """The breaker's record (``event_id``: the same, or re-issued under a new id) is in force
    again ``after`` minutes after it ended, its time at ``etr_minutes``; the night runs on
    past the hold."""
    again = breaker() if event_id == "A1" and etr_minutes == 120 else record(
        event_id, "BRK-MJ01", areas(1, 31), BREAKER_CAUSE, at(0), at(etr_minutes))
    night.go(ENDS + after, oms=[again, fuse()])
    for minute in (ENDS + after + 2, ENDS + after + 5, ENDS + 8, ENDS + 15):
        night.go(minute)


def updates(night: Night, village: str, since: int) -> list[tuple[int, str]]:
    """(revision, status) of the village's updates since ``since``."""
    return [(m.revision, m.status) for m in night.daemon.store.messages()[since:]
            if m.recipient.startswith(f"village:{village}:") and m.purpose == "update"]


@pytest.mark.parametrize("event_id", ["A1", "A1-R"])
def test_the_same_time_again_within_the_hold_tells_the_village_nothing(
        held: Night, event_id: str) -> None:
    """The record ends (the village's time void, its update held) and comes back a minute
    later with the time the village was told: it hears nothing — neither 恢复时间待定 nor
    "调整为 12:00"; every update queued meanwhile is superseded, none sent."""
    mark = record_ends(held)
    comes_back(held, event_id)
    for village in BREAKER_ONLY:
        assert held.heard(village, mark) == [], (village, held.heard(village, mark))
        assert set(voids(held, village)) == {"superseded"}, village
        statuses = {s for _, s in updates(held, village, mark)}
        assert statuses == {"superseded"}, (village, updates(held, village, mark))


def test_a_different_time_within_the_hold_is_told(held: Night) -> None:
    """The record comes back with another time (12:20): that is news — the village reads
    it, once, and never that its time was unknown."""
    mark = record_ends(held)
    comes_back(held, "A1-R", etr_minutes=140)
    for village in BREAKER_ONLY:
        heard = held.heard(village, mark)
        assert [p for p, _ in heard] == ["update"], (village, heard)
        assert "12:20" in heard[0][1] and VOID not in heard[0][1], village
        assert set(voids(held, village)) == {"superseded"}, village


def test_the_same_time_after_the_void_update_went_is_told(held: Night) -> None:
    """The hold passed and the village read 恢复时间待定; the record then comes back with the
    time it was told before: it reads that time again (its last word said unknown)."""
    mark = record_ends(held)
    held.go(ENDS + 6.5)
    for village in BREAKER_ONLY:
        assert set(voids(held, village)) == {"sent"}, village
    comes_back(held, "A1-R", after=7)
    for village in BREAKER_ONLY:
        heard = held.heard(village, mark)
        assert [p for p, _ in heard] == ["update", "update"], (village, heard)
        assert VOID in heard[0][1] and TOLD in heard[1][1] and VOID not in heard[1][1]


@dataclass(frozen=True)
class Row:
    """An outbox row as ordering reads it, with its payload."""

    id: int
    purpose: str
    status: str = "pending"
    payload: dict[str, Any] = field(default_factory=dict)
    revision: int = 1
    incident_id: str = "INC-1"
    recipient: str = "village:V1:wecom:g1"


NOON, LATER = "2026-11-23T04:00:00+00:00", "2026-11-23T04:20:00+00:00"


def told(row_id: int, purpose: str, etr: str | None, status: str = "sent", **more: Any) -> Row:
    return Row(row_id, purpose, status, {ETR_SAID: etr, **more})


def void(row_id: int, status: str = "pending") -> Row:
    return told(row_id, "update", None, status, **{ETR_ONLY: True, VOID_ETR: True})


def again(row_id: int, etr: str = NOON) -> Row:
    return told(row_id, "update", etr, "pending", **{ETR_ONLY: True})


def test_an_update_of_the_time_the_village_last_read_is_superseded_by_that_word() -> None:
    """Outage told at noon; the void update held (or already superseded, dead, withdrawn:
    never read); an update of the time alone saying noon is superseded by the outage notice;
    the held void update by it, as before. Nothing goes."""
    for status in ("pending", "superseded", "dead", "withdrawn"):
        rows = [told(1, "outage", NOON), Row(2, "care", "sent"), void(3, status), again(4)]
        plan = order([r for r in rows if r.status == "pending"], rows,
                     {3} if status == "pending" else ())
        assert plan.ready == () and plan.superseded.get(4) == 1, status
        assert status != "pending" or plan.superseded[3] == 4


def test_the_time_is_news_when_the_last_word_said_otherwise() -> None:
    """The void update went (or is going, or waits unheld): the village's last word says
    the time is unknown, and noon is news. Another time than the one told is news. An update
    with other news, an old row without its time, a back-notice: the update goes."""
    rows = [told(1, "outage", NOON), void(2, "sent"), again(3)]
    assert order([rows[2]], rows, ()).ready == (3,)
    rows = [told(1, "outage", NOON), void(2, "inflight"), again(3)]
    assert order([rows[2]], rows, ()).held == {3: 2}  # goes once the void update did
    rows = [told(1, "outage", NOON), void(2), again(3, LATER)]
    assert order([rows[2]], rows, {2}).ready == (3,)
    rows = [told(1, "outage", NOON), told(2, "update", None, "dead"), again(3)]
    assert order([rows[2]], rows, ()).ready == (3,)  # what the village missed said more
    rows = [Row(1, "outage", "sent"), void(2), again(3)]
    assert order([rows[2]], rows, {2}).ready == (3,)
    rows = [told(1, "outage", NOON), Row(2, "restored", "sent"), again(3)]
    assert order([rows[2]], rows, ()).ready == (3,)


def test_a_second_restatement_reads_through_the_first() -> None:
    """Void, noon again (moot), void again, noon again: still the outage notice's time."""
    rows = [told(1, "outage", NOON), void(2, "superseded"), again(3),
            void(4, "superseded"), again(5)]
    plan = order([rows[2], rows[4]], rows, ())
    assert plan.ready == () and plan.superseded == {3: 1, 5: 1}
