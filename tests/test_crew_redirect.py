"""A crew on its way follows the estimate: when the fault point moves where its orders do not
lead it, it gets new orders — and only then (not for a point its section already passes,
not when the move would take it off an outage a record states, not once it is on site).

One feeder, one village:  S1 ─ B1 ─ J1 ─ FU1 ─ T1, T2
                                     └─ FU2 ─ T3, T4
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from tests.conftest import GRID_CREWS, T0, build_topology
from tests.test_shared_areas import ev, feed, make_daemon


def two_fuses(tmp_path: Path, db_url: str, own_area: bool = False) -> Daemon:
    """The daemon on the feeder above; ``own_area``: with T0 (60 customers) on J1 itself,
    in the breaker's own section."""
    edges = [("S1", "B1"), ("B1", "J1"), ("J1", "FU1"), ("FU1", "T1"), ("FU1", "T2"),
             ("J1", "FU2"), ("FU2", "T3"), ("FU2", "T4")]
    customers = {"T1": 40, "T2": 30, "T3": 50, "T4": 20}
    if own_area:
        edges.insert(2, ("J1", "T0"))
        customers["T0"] = 60
    topology = build_topology(
        edges, customers=customers,
        names={"FU1": "一号熔断器", "FU2": "二号熔断器", "B1": "出线开关"},
        liaisons=[{"village": "V1", "name": "张三", "role": "village_liaison",
                   "phone": "13800000001", "channel": "wecom", "target": "group-v1"}],
        crews=[GRID_CREWS[0]])
    return make_daemon(tmp_path, db_url, topology)


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = two_fuses(tmp_path, db_url)
    yield d
    d.close()


def dispatched_on_fu1(d: Daemon) -> str:
    """Meters of T1 and T2 dark: FU1 inferred; the command centre confirms and a crew goes,
    its orders delivered."""
    feed(d, 0, ev("A-1", "T1", "T2", signal="dead", source="ami"))
    (row,) = d.store.load_incidents()
    d.lifecycle.ack(row["id"], "operator:zhang")
    d.lifecycle.dispatch(row["id"], "operator:zhang")
    assert state(d, row["id"]).estimate.devices == ("FU1",)
    deliver(d)
    return str(row["id"])


def state(d: Daemon, incident_id: str) -> Incident:
    row = d.store.get_incident(incident_id)
    assert row is not None
    return Incident.from_json(row["state"])


def deliver(d: Daemon) -> None:
    while d.deliverer.run_once(d.clock()):
        pass


def orders(d: Daemon) -> list[str]:
    return [m.body for m in d.store.messages() if m.purpose == "dispatch"
            and m.status not in ("withdrawn", "superseded")]


def grow_to_b1(d: Daemon) -> None:
    """FU2's meters go dark too (the same village): one fault at B1 explains both sides, a
    section the crew sent to FU1 never walks."""
    feed(d, 10, ev("A-2", "T3", "T4", signal="dead", source="ami",
                   start=T0 + timedelta(minutes=9)))


def test_the_fault_point_moved_beyond_the_orders_sends_new_ones(daemon: Daemon) -> None:
    inc = dispatched_on_fu1(daemon)
    grow_to_b1(daemon)
    assert state(daemon, inc).estimate.devices == ("B1",)
    first, second = orders(daemon)
    assert "一号熔断器（疑似动作" in first and "巡视区段：自一号熔断器" in first
    assert second.startswith("【抢修派工·更新】")
    assert "新的停电信息指向另一处故障点：出线开关（疑似动作，可能性" in second
    assert "巡视区段：自出线开关" in second
    log = daemon.store.incident_log(inc)
    assert any(e["stage"] == "note" and e["details"].get("devices") == ["B1"] for e in log)
    deliver(daemon)
    # More of the same outage: the estimate stays, nothing more to say.
    feed(daemon, 12, ev("A-3", "T2", signal="dead", source="ami",
                        start=T0 + timedelta(minutes=11)))
    assert state(daemon, inc).estimate.devices == ("B1",) and len(orders(daemon)) == 2


def test_a_crew_on_site_gets_no_new_orders(daemon: Daemon) -> None:
    inc = dispatched_on_fu1(daemon)
    daemon.lifecycle.arrive(inc, "crew:CR1")
    grow_to_b1(daemon)
    assert state(daemon, inc).estimate.devices == ("B1",)
    assert len(orders(daemon)) == 1  # on site, the crew judges what it sees


def test_new_orders_never_leave_out_an_outage_a_record_states(daemon: Daemon) -> None:
    """The outage system names T1 and T2 off; telemetry then reports FU2 operated. An
    estimate that reads the record's areas as false reports must not send the crew away
    from them ('earlier orders are void')."""
    feed(daemon, 0, ev("F-1", "T1", "T2"))
    (row,) = daemon.store.load_incidents()
    assert state(daemon, row["id"]).estimate.devices == ("FU1",) and orders(daemon)
    deliver(daemon)
    feed(daemon, 10, ev("S-1", "T3", "T4", device="FU2", source="scada",
                        start=T0 + timedelta(minutes=9)))
    now = state(daemon, row["id"])
    assert set(now.off) >= {"T1", "T2", "T3", "T4"}
    if now.estimate.devices == ("FU2",):  # what the localiser makes of it today
        assert len(orders(daemon)) == 1
    else:
        assert all("一号熔断器" in o for o in orders(daemon))



def test_orders_name_the_protection_of_reported_areas_the_estimate_leaves_out(
        daemon: Daemon) -> None:
    """The record and the telemetry arrive together: whatever fault point the localiser
    names, the crew's orders lead it to the areas the record states are off."""
    feed(daemon, 0, ev("F-1", "T1", "T2"),
         ev("S-1", "T3", "T4", device="FU2", source="scada"))
    (row,) = daemon.store.load_incidents()
    now = state(daemon, row["id"])
    (order,) = orders(daemon)
    if now.estimate.devices == ("FU2",):  # the record's areas read as false reports
        assert "一号熔断器（其下已报停电的name-T1、name-T2不在上述区段，请一并核查）" in order
        assert "二号熔断器（数据源报告动作" in order
    else:
        assert "一号熔断器" in order
