"""A crew sent to patrol a section gets new orders when the fault point moves to a fuse at
the edge of that section: its orders led it *to* the fuse (patrol down to, not past, the
next devices), never along the branch below it, where the fault now is.

One feeder, one village:  S1 ─ B1 ─ J1 ─ T0
                                     ├─ FU1 ─ T1, T2
                                     └─ FU2 ─ T3, T4

The breaker trips (every area dark), the crew goes to patrol from B1 down to the fuses; the
breaker recloses and T0 and FU2's areas come back: the fault is below FU1, a branch the
orders never had the crew walk (they led it *to* FU1, not along its branch).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel import crew
from outage_sentinel.daemon import Daemon
from tests.conftest import T0
from tests.test_crew_redirect import deliver, orders, state, two_fuses
from tests.test_shared_areas import ev, feed


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = two_fuses(tmp_path, db_url, own_area=True)
    yield d
    d.close()


def dispatched_on_b1(d: Daemon) -> str:
    """Meters of all five areas dark (FU1's in one record of the AMI screen, the rest in
    another): B1 inferred; the command centre confirms and a crew goes to patrol from B1 down
    to the two fuses, its orders delivered."""
    feed(d, 0, ev("A-1", "T1", "T2", signal="dead", source="ami"),
         ev("A-2", "T0", "T3", "T4", signal="dead", source="ami"))
    (row,) = d.store.load_incidents()
    d.lifecycle.ack(row["id"], "operator:zhang")
    d.lifecycle.dispatch(row["id"], "operator:zhang")
    assert state(d, row["id"]).estimate.devices == ("B1",)
    deliver(d)
    (first,) = orders(d)
    assert "巡视区段：自出线开关至一号熔断器、二号熔断器" in first
    return str(row["id"])


def test_a_fault_point_moved_to_a_fuse_at_the_sections_edge_sends_new_orders(
        daemon: Daemon) -> None:
    """The breaker recloses: T0 and FU2's areas come back together, FU1's stay dark. The
    fault point is FU1 — at the edge of the section the crew was sent to — and the crew is
    sent on along FU1's branch."""
    inc = dispatched_on_b1(daemon)
    feed(daemon, 10, ev("A-2", "T0", "T3", "T4", signal="dead", source="ami",
                        status="restored", end=T0 + timedelta(minutes=9)))
    assert state(daemon, inc).estimate.devices == ("FU1",)
    first, second = orders(daemon)
    assert second.startswith("【抢修派工·更新】")
    assert "巡视区段：自一号熔断器" in second
    log = daemon.store.incident_log(inc)
    assert any(e["stage"] == "note" and e["details"].get("devices") == ["FU1"] for e in log)


def test_the_orders_cover_the_section_not_the_devices_at_its_edge(daemon: Daemon) -> None:
    """What a dispatch has the crew walk (``covers``): the fault point and the section below
    it; the fuses at its edge bound it — their branches are not walked."""
    dispatched_on_b1(daemon)
    (sent,) = [m.payload for m in daemon.store.messages() if m.purpose == "dispatch"]
    assert sorted(sent["covers"]) == ["B1", "J1", "T0"]
    assert crew.orders_cover(sent["covers"], ["B1"])
    assert not crew.orders_cover(sent["covers"], ["FU1"])
    assert not crew.orders_cover(sent["covers"], ["FU2"])


def test_a_move_refused_for_one_revision_is_made_at_the_next(daemon: Daemon) -> None:
    """T0 comes back first (the estimate moves to FU1 while FU2's areas are still dark, left
    out of it: no new orders then), FU2's areas a poll later: FU1 explains all that is off
    and the crew, still sent to B1's section, is sent on along FU1's branch."""
    inc = dispatched_on_b1(daemon)
    feed(daemon, 10, ev("A-3", "T0", signal="alive", source="ami", status="restored",
                        end=T0 + timedelta(minutes=9)))
    now = state(daemon, inc)
    assert now.estimate.devices == ("FU1",) and {"T3", "T4"} <= set(now.off)
    assert len(orders(daemon)) == 1  # T3, T4 left out of the fault point: no new orders yet
    feed(daemon, 12, ev("A-2", "T0", "T3", "T4", signal="dead", source="ami",
                        status="restored", end=T0 + timedelta(minutes=11)))
    assert state(daemon, inc).estimate.devices == ("FU1",)
    assert len(orders(daemon)) == 2
