"""A village's update held for its void expected restoration time (``notify.void_etr_hold_seconds``)
never goes out saying what came back during the hold is still off: held for six minutes, the
text rendered when the record ended would name areas whose power came back meanwhile — 马集村
read "已确认停电：马集村1号…8号台区，本村820户" although 1–4 had been back for minutes. An area
coming back is no news on its own (no update of its own), so the held update is queued again,
said of the incident as it is now, due when the first was: that one supersedes it.

Through the daemon, in process, on the storm night of :mod:`tests.test_void_etr_hold`
(10kV马集线; 马集村 is T-MJ01-001..008)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from outage_sentinel.held_void import overtaken
from outage_sentinel.incidents import Notice
from outage_sentinel.ordering import VOID_ETR
from outage_sentinel.topology import Topology
from tests.conftest import T0
from tests.test_liaison import incident
from tests.test_storm_village_truth import ON, Night, areas, at, meters
from tests.test_void_etr_hold import ENDS, VOID, night_with, record_ends, voids

MAJI = "V032"
#: 马集村's first area as a notice names it (1–4 come back), and its last (5–8 stay dark).
FIRST, LAST = "马集村1号台区", "马集村8号台区"


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Night]:
    n = night_with(tmp_path, 360)
    yield n
    n.daemon.close()


def run_past_the_hold(night: Night) -> None:
    for minute in (ENDS + 1, ENDS + 3, ENDS + 5.9, ENDS + 6.1, ENDS + 7, ENDS + 10):
        night.go(minute)


def households(night: Night, first: int, last: int) -> int:
    return night.daemon.topology.customers_of(areas(first, last))


def test_areas_back_within_the_hold_are_not_read_as_off(held: Night) -> None:
    """The record ends (马集村's time void, its update held); 24 s later the meters of 1–4
    report power on, 5–8 stay dark: at the end of the hold the village reads its time is
    unknown, of 5–8 and their households — not of the eight areas of the record's end."""
    mark = record_ends(held)
    held.go(ENDS + 0.4, meters(ON, areas(1, 4), at(ENDS)))
    run_past_the_hold(held)
    heard = held.heard(MAJI, mark)
    assert [p for p, _ in heard] == ["update"], heard
    text = heard[0][1]
    assert VOID in text
    assert FIRST not in text and "马集村4号台区" not in text, text
    assert all(f"马集村{i}号台区" in text for i in range(5, 9)), text
    assert f"本村{households(held, 5, 8)}户" in text, text
    # the first held one never went: superseded by the one said of the village now
    assert sorted(voids(held, MAJI)).count("superseded") >= 1
    sent = [m for m in held.daemon.store.messages()[mark:]
            if m.recipient.startswith(f"village:{MAJI}:") and m.status == "sent"]
    assert sent and all(m.sent_at is not None and m.sent_at >= at(ENDS + 6) for m in sent)
    assert all(m.payload.get(VOID_ETR) for m in sent)


def test_areas_back_one_by_one_within_the_hold_the_village_reads_the_last_state(
        held: Night) -> None:
    """1 back 24 s after the record's end, 2 a minute later, each alone in its poll: the
    held update is renewed each time, still due when the first was; the village reads one
    update, of 3–8, at the end of the hold."""
    mark = record_ends(held)
    held.go(ENDS + 0.4, meters(ON, areas(1, 1), at(ENDS)))
    held.go(ENDS + 1.4, meters(ON, areas(2, 2), at(ENDS + 1)))
    run_past_the_hold(held)
    heard = held.heard(MAJI, mark)
    assert [p for p, _ in heard] == ["update"], heard
    text = heard[0][1]
    assert VOID in text and FIRST not in text and "马集村2号台区" not in text, text
    assert all(f"马集村{i}号台区" in text for i in range(3, 9)), text
    assert f"本村{households(held, 3, 8)}户" in text, text
    sent = [m for m in held.daemon.store.messages()[mark:]
            if m.recipient.startswith(f"village:{MAJI}:") and m.status == "sent"]
    assert sent and all(m.sent_at is not None and at(ENDS + 6) <= m.sent_at < at(ENDS + 6.2)
                        for m in sent)


def test_every_area_back_within_the_hold_tells_only_that_power_is_back(held: Night) -> None:
    """1–4 back 24 s after the record's end, 5–8 a minute later: 马集村 reads 恢复送电 and
    nothing else; every update held for its void time is superseded."""
    mark = record_ends(held)
    held.go(ENDS + 0.4, meters(ON, areas(1, 4), at(ENDS)))
    held.go(ENDS + 1.4, meters(ON, areas(5, 8), at(ENDS + 1)))
    run_past_the_hold(held)
    assert [p for p, _ in held.heard(MAJI, mark)] == ["restored"]
    assert voids(held, MAJI) and set(voids(held, MAJI)) == {"superseded"}


def test_an_area_back_after_the_held_update_went_changes_nothing_it_said(held: Night) -> None:
    """Past the hold the update went (eight areas, all off then); 1–4 back later is no news
    and queues nothing: what went was true when it went."""
    mark = record_ends(held)
    run_past_the_hold(held)
    assert [p for p, _ in held.heard(MAJI, mark)] == ["update"]
    assert FIRST in held.heard(MAJI, mark)[0][1] and LAST in held.heard(MAJI, mark)[0][1]
    later = held.go(ENDS + 11, meters(ON, areas(1, 4), at(ENDS + 10.5)))
    held.go(ENDS + 12)
    held.go(ENDS + 20)
    assert held.heard(MAJI, later) == []
    assert [m.purpose for m in held.daemon.store.messages()[later:]
            if m.recipient.startswith(f"village:{MAJI}:")] == []


def test_overtaken_names_a_village_still_off_whose_areas_off_changed_untold(
        grid: Topology) -> None:
    """马集村 (V1: T1, T2) off; T1 back: overtaken — unless this revision tells it anyway,
    both are back (its 恢复送电 says so), or nothing it names changed."""
    before = incident(grid, {"T1", "T2"})
    back = {"T1": T0}
    after = replace(before, revision=2, restored=back)
    assert overtaken(before, after, [], grid) == ("V1",)
    assert overtaken(before, after, [Notice("update", ("V1",))], grid) == ()
    assert overtaken(before, replace(after, restored={**back, "T2": T0}), [], grid) == ()
    assert overtaken(before, replace(before, revision=2), [], grid) == ()
    assert overtaken(before, replace(after, status="restored"), [], grid) == ()
