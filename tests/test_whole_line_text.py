"""Area text saying a whole line is off ("马集I线全线停电", "10kV马集线整条线路停电", "全线停电"
beside the record's line): every transformer area of that line, confirmed — the record states
it. It used to find the line and read nothing more: no area placed, no village told.

On the tests' grid (``tests/conftest.py``): 马集线 (F1, "马集I线", from 马集变) feeds T1–T5
(马集村 V1, 刘庄村 V2, 王楼村 V3); 城关线 (F2, "城关II线") T6, T7 (城关社区 V4)."""

from __future__ import annotations

import pytest

from outage_sentinel.area_text import resolve_area_text
from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.topology.bundle import TopologyWarning
from tests.conftest import (
    GRID_CUSTOMERS,
    GRID_EDGES,
    GRID_F2,
    GRID_VILLAGES,
    T0,
    build_grid,
    build_topology,
)
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed

GRID = build_grid()
F1_AREAS = ("T1", "T2", "T3", "T4", "T5")


@pytest.mark.parametrize("text", [
    "马集I线全线停电", "10kV马集线全线停电", "马集线全线", "马集线全线路停电", "马集线整条线路停电",
    "马集线全部台区", "马集线所有台区停电", "10kV马集线全部公变停电", "马集线全部停电", "马集线整线停电",
    "马集变10kV马集线全线停电", "10kV马集线（马集变）全线停电", "马集I线 全线停电", "１０ｋＶ马集线全线停电",
])
def test_a_line_said_off_whole_names_every_area_of_it(text: str) -> None:
    scope = resolve_area_text(GRID, text)
    assert (set(scope.confirmed), scope.possible, scope.feeder, scope.unplaced) == (
        set(F1_AREAS), (), "F1", ()), text


def test_the_other_line_said_off_whole_names_its_own_areas() -> None:
    scope = resolve_area_text(GRID, "10kV城关II线全线停电", feeder="F2")
    assert set(scope.confirmed) == {"T6", "T7"}


@pytest.mark.parametrize("text", ["全线停电", "全线路停电", "整条线路停电", "整线停电"])
def test_the_whole_line_without_its_name_is_the_records_line(text: str) -> None:
    """"全线停电" beside the record's line: that line's areas. Without a line known it places
    nothing and stays unplaced, for a person to read. ("全部台区" alone is no line's: it may
    be a village's, read with the village named before it.)"""
    assert set(resolve_area_text(GRID, text, feeder="F1").confirmed) == set(F1_AREAS)
    alone = resolve_area_text(GRID, text)
    assert (alone.confirmed, alone.possible, alone.unplaced) == ((), (), (text,))


@pytest.mark.parametrize("text", ["10kV马集线全线停电（王楼村除外）", "马集线全线停电，王楼村已恢复送电"])
def test_the_whole_line_but_a_village_excluded(text: str) -> None:
    scope = resolve_area_text(GRID, text)
    assert set(scope.confirmed) == {"T1", "T2", "T3", "T4"}
    assert scope.excluded == ("王楼村",)


def test_a_line_name_two_lines_share_makes_their_areas_possible() -> None:
    """Whole, but of which line? Their areas may be off, none is confirmed — unless the
    record's own line is one of them."""
    with pytest.warns(TopologyWarning, match="feeder name shared"):
        twin = build_topology(GRID_EDGES, feeders={n: ("F2" if n in GRID_F2 else "F1")
                                                   for e in GRID_EDGES for n in e},
                              customers=GRID_CUSTOMERS, villages=GRID_VILLAGES,
                              normally_open=["TIE"],
                              names={"S1": "10kV马集线", "S2": "10kV马集线"})
    scope = resolve_area_text(twin, "10kV马集线全线停电")
    assert (scope.confirmed, set(scope.possible)) == ((), {*F1_AREAS, "T6", "T7"})
    mine = resolve_area_text(twin, "10kV马集线全线停电", feeder="F2")
    assert (set(mine.confirmed), mine.possible) == ({"T6", "T7"}, ())


@pytest.mark.parametrize("text, confirmed, possible", [
    ("马集线部分台区停电", set(), set()),  # part of the line: which part, the words do not say
    ("马集线沿线", set(), set()),
    ("马集线", set(), set()),  # the line alone, as before
    ("10kV马集线王楼村全村", {"T5"}, set()),  # a place after the line, as before
    ("全部停电", set(), set()),  # "all of it": of no line named
    ("全部台区停电", set(), set()),
    ("王楼村全线停电", set(), {"T5"}),  # a village's words, no line's: as before
])
def test_other_words_after_a_line_read_as_before(text: str, confirmed: set[str],
                                                 possible: set[str]) -> None:
    scope = resolve_area_text(GRID, text, feeder="F1")
    assert (set(scope.confirmed), set(scope.possible)) == (confirmed, possible), text


def test_a_record_of_a_whole_line_off_tells_its_villages(daemon: Daemon) -> None:  # noqa: F811
    """The outage system's record names the line and "马集I线全线停电": the incident holds the
    line's areas and their villages (马集村, 刘庄村, 王楼村) are told; 城关社区 is not."""
    d = daemon
    feed(d, 1, ev("N1", start=T0, feeder="10kV马集线", area_text="马集I线全线停电"))
    (inc,) = [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]
    assert set(inc.estimate.transformers) == set(F1_AREAS)
    told = {m.recipient.split(":")[1] for m in d.store.messages()
            if m.audience == "liaison" and m.recipient.startswith("village:")
            and m.purpose == "outage"}
    assert told == {"V1", "V2", "V3"}
