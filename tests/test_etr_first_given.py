"""A village told 恢复时间待定 that later gets a time is not told the time was "adjusted"
(调整为): it never had one. "预计恢复时间调整为" says only the change of a time the village was
told; a first time reads "预计恢复时间：10:10".

Through the daemon, in process, on the storm night's feeder (:mod:`tests.test_storm_village_truth`:
10kV马集线; the outage system's record of the breaker first without a time), and on the
planner alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Notice
from outage_sentinel.topology import Topology
from tests.conftest import T0
from tests.test_liaison import by_recipient, incident, planner
from tests.test_storm_village_truth import BREAKER_CAUSE, OFF, Night, areas, at, meters

MAJI = "V032"
ADJUSTED = "调整为"


def breaker(etr: datetime | None) -> OutageEvent:
    return OutageEvent(source="oms", event_id="A1", kind="fault", status="active",
                       signal="notice", start=at(0), end=None, expected_restoration=etr,
                       device="BRK-MJ01", transformers=tuple(areas(1, 31)),
                       cause=BREAKER_CAUSE)


@pytest.fixture
def night(tmp_path: Path) -> Iterator[Night]:
    n = Night(tmp_path)
    yield n
    n.daemon.close()


def test_a_first_time_after_none_is_given_not_adjusted(night: Night) -> None:
    """The breaker's record gives no time: 马集村 reads 恢复时间待定. Then it gives 12:00: the
    update says 预计恢复时间：…12:00, not 调整为. Then 12:30: that is an adjustment, said so."""
    night.go(0.2, meters(OFF, areas(1, 31), at(0)), oms=[breaker(None)])
    night.go(3)
    (outage,) = night.heard(MAJI)
    assert outage[0] == "outage" and "恢复时间待定" in outage[1], outage
    mark = night.go(10, oms=[breaker(at(120))])
    (update,) = night.heard(MAJI, mark)
    assert update[0] == "update", update
    assert "预计恢复时间：2026-11-23 12:00" in update[1] and ADJUSTED not in update[1], update
    mark = night.go(20, oms=[breaker(at(150))])
    (update,) = night.heard(MAJI, mark)
    assert "预计恢复时间调整为：2026-11-23 12:30" in update[1], update


def test_the_planner_says_adjusted_only_of_a_time_told(grid: Topology) -> None:
    """An update's words for the time: given (the village was told none), adjusted (it was
    told another), or held (the areas changed, the time did not); none known of what the
    village was told, no adjustment is claimed."""
    etr = T0 + timedelta(hours=2)

    def body(told: datetime | None, now_etr: datetime | None, language: str = "zh",
             none_before: bool = False) -> str:
        before = incident(grid, {"T1"}, etr=told, told_etr={"V1": told})
        after = replace(before, revision=2, etr=now_etr)
        rows = planner(grid, language).rows(after, [Notice("update", ("V1",))], T0,
                                            previous=None if none_before else before)
        return by_recipient(rows)["village:V1:wecom:group-v1"].body

    assert "预计恢复时间：2026-03-01 10:00" in body(None, etr)
    assert ADJUSTED not in body(None, etr)
    assert "预计恢复时间调整为：2026-03-01 11:00" in body(etr, etr + timedelta(hours=1))
    assert ADJUSTED not in body(None, etr, none_before=True)
    assert "预计恢复时间：2026-03-01 10:00" in body(None, etr, none_before=True)
    assert "; expected back 2026-03-01 10:00" in body(None, etr, "en")
    assert "; now expected back 2026-03-01 11:00" in body(etr, etr + timedelta(hours=1), "en")
