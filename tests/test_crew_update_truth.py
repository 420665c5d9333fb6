"""A crew's new orders say what changed since its previous ones: the villages added, or those
its orders named that are no longer off (not "the outage grew" when it shrank), under the arrival
deadline it was given (not an earlier one counted from a restoration logged at the time power
came back); and while a meter's clock is flagged the priority reason states no duration only
the meters' start gives. The daemon's real processing, store (SQLite) and lifecycle run under
the tests' fake clock (tests/test_lifecycle.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.topology import topology_from_records
from tests import test_lifecycle
from tests.test_lifecycle import T0, Harness, ev, node

ORDERS_LINE = 1  # the line after the heading says why there are new orders


def three_villages() -> object:
    """The tests' county with a third village (北村, T6 behind its own fuse) on line F1."""
    records = test_lifecycle.county_records()
    records["nodes"] += [node("FU4", "fuse", "F1"), node("T6", "transformer", "F1", "V4", 60)]
    records["edges"] += [("J1", "FU4"), ("FU4", "T6")]
    records["villages"] += [{"id": "V4", "name": "北村", "township": "城关镇", "grid": "G1",
                             "area_type": "rural"}]
    records["liaisons"] += [{"village": "V4", "name": "V4联络人", "role": "village_liaison",
                             "phone": "13800000009", "channel": "wecom", "target": "V4群"}]
    return topology_from_records(**records)


@pytest.fixture
def h(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(test_lifecycle, "county", three_villages)
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def deadline_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("到达时限"))


def shrunk_then_off_again(h: Harness) -> tuple[str, str]:
    """Found at 60 minutes (the records say off since T0) in 东村, 西村 and 北村; 西村 and
    北村 came back at 30 minutes (before it was found: logged at that time), as the records
    say at 62; 西村 goes off again at 70 (a second fuse). The crew's first and new orders."""
    h.at(60)
    h.feed(ev("R1", "T1", "T2", "T3", "T6", device="B1"))
    inc = h.only_incident()
    h.at(62)
    h.daemon.processor.operator_restore(inc, "operator:test", "T3,T6", "2026-11-23 10:30",
                                        "倒闸恢复", now=h.now)
    h.deliver()
    h.at(70)
    h.feed(ev("R4", "T3", start=T0 + timedelta(minutes=69)))
    orders = h.sent("dispatch")
    assert len(orders) == 2, [m.text for m in orders]
    return orders[0].text, orders[1].text


def test_new_orders_after_the_outage_shrank_do_not_say_it_grew(h: Harness) -> None:
    was, now = shrunk_then_off_again(h)
    assert "北村" in was and "西村" in was and "东村" in was
    why = now.splitlines()[ORDERS_LINE]
    assert "扩大" not in why and "更多村" not in why, why
    assert "北村" in why and "不再" in why, why
    assert "北村" not in now.split("到达时限")[0].splitlines()[-1]


def test_new_orders_keep_the_arrival_deadline_the_crew_was_given(h: Harness) -> None:
    """Found at 60 minutes in rural villages: due by 150 minutes (rural 90), whatever a
    restoration logged at 30 minutes (when power came back) says of the log's first step."""
    was, now = shrunk_then_off_again(h)
    due = (T0 + timedelta(minutes=150)).astimezone(test_lifecycle.TZ).strftime("%H:%M")
    assert due in deadline_line(was)
    assert due in deadline_line(now), deadline_line(now)
    assert "剩80分钟" in deadline_line(now)


def test_new_orders_name_the_villages_added(h: Harness) -> None:
    """西村 off and the crew sent; 北村 joins: the new orders say the outage reached 北村."""
    h.feed(ev("R1", "T3"))
    h.at(10)
    h.feed(ev("R2", "T6", start=T0 + timedelta(minutes=9)))
    orders = h.sent("dispatch")
    assert len(orders) == 2
    why = orders[1].text.splitlines()[ORDERS_LINE]
    assert "停电范围扩大" in why and "北村" in why and "西村" not in why, why
