"""A village told some of its areas are confirmed off and others only possibly affected is told
the households of each apart: "本村70户" after the list read as 70 households off, while 30 of
them were only inferred. The outage notice, the update and the planned-work reminder say it
the same way; a village whose areas are all confirmed, or all only possible, hears one count."""

from __future__ import annotations

from dataclasses import replace

from outage_sentinel.incidents import Notice
from outage_sentinel.topology import Topology
from tests.conftest import grid as grid  # noqa: F401  (the fixture)
from tests.test_liaison import by_recipient, incident, planner

V1 = "village:V1:wecom:group-v1"


def mixed(grid: Topology):  # noqa: F811
    """T1 (40 households) reported off, T2 (30) only inferred: both 马集村 (V1)."""
    return replace(incident(grid, {"T1", "T3"}),
                   scope={"T1": "reported", "T2": "inferred", "T3": "inferred"})


def test_confirmed_and_possible_households_are_counted_apart(grid: Topology) -> None:  # noqa: F811
    inc = mixed(grid)
    for purpose in ("outage", "update"):
        body = by_recipient(planner(grid).rows(inc, [Notice(purpose, ("V1",))], inc.start))[V1].body
        assert "本村已确认停电40户、可能受影响30户" in body, (purpose, body)
        assert "本村70户" not in body
    en = by_recipient(planner(grid, "en").rows(inc, [Notice("outage", ("V1",))], inc.start))
    assert "40 households confirmed off and 30 possibly affected in" in en[V1].body


def test_one_count_when_nothing_is_only_possible(grid: Topology) -> None:  # noqa: F811
    inc = replace(incident(grid, {"T1", "T2"}), scope={"T1": "reported", "T2": "reported"})
    body = by_recipient(planner(grid).rows(inc, [Notice("outage", ("V1",))], inc.start))[V1].body
    assert "已确认停电：台区T1、台区T2，本村70户" in body
