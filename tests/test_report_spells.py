"""What the reliability figures count, driven through the daemon's own processing: an area's
spells off (a restoration undone, an area off again, an area a later record added), what never
interrupted anyone (a false alarm, work called off for an area), one customer's hours counted
once when two outages overlap, short interruptions apart, and areas a topology reload renamed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.reports import Report, build_report, daily_report_message
from outage_sentinel.topology import Topology, topology_from_records
from tests.test_lifecycle import T0, TZ, Harness, ev

H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    yield harness
    harness.daemon.close()


def report(h: Harness, topology: Topology | None = None) -> Report:
    return build_report(h.daemon.store, topology or h.topology, T0 - 2 * H, T0 + 24 * H, TZ,
                        h.now)


def hours_of(r: Report, transformer: str) -> float:
    return float(r.areas.loc[r.areas["transformer"] == transformer, "hours"].sum())


def restore(h: Harness, iid: str, areas: str | None, hhmm: str) -> None:
    """The crew's restoration of ``areas`` (None: all) at ``hhmm`` on the harness's day."""
    h.daemon.processor.operator_restore(iid, "operator:crew", areas, f"2026-11-23 {hhmm}", "",
                                        now=h.now)


def steps(h: Harness) -> CommandSteps:
    return CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now)


def test_an_area_restored_then_reopened_counts_both_spells(h: Harness) -> None:
    h.feed(ev("A", "T1", "T2", "T3"))  # 10:00
    iid = h.only_incident()
    h.at(60)
    restore(h, iid, "T3", "11:00")
    h.at(70)
    steps(h).reopen(iid, "T3", "operator:li", "又跳闸")  # lost again, not "still off"
    h.at(120)
    restore(h, iid, None, "12:00")
    h.at(300)
    r = report(h)
    assert hours_of(r, "T3") == pytest.approx(1.0 + 50 / 60)  # 10:00-11:00 and 11:10-12:00
    assert hours_of(r, "T1") == pytest.approx(2.0)


def test_an_area_a_source_says_is_off_again_is_off_while_the_incident_is_on(h: Harness) -> None:
    h.feed(ev("F", "T1", "T3", device="B1"))  # 10:00
    h.at(30)
    h.feed(ev("m1", "T3", signal="alive", status="restored", source="ami", start=T0 + 30 * M))
    h.at(40)
    h.feed(ev("m2", "T3", signal="dead", source="ami", start=T0 + 40 * M))
    h.at(300)
    r = report(h)
    # Off again at 10:40 (the meter's report) and still off at 15:00: 10:00-10:30 and
    # 10:40-15:00; the ten minutes it was back are not counted off.
    assert hours_of(r, "T3") == pytest.approx(0.5 + 4 + 20 / 60)
    assert r.incidents.loc[0, "status"] == "active"


def test_an_area_a_later_record_adds_is_off_from_that_records_start(h: Harness) -> None:
    h.feed(ev("A", "T1"))  # 10:00
    iid = h.only_incident()
    h.at(60)
    # 10:30, another village: within the correlation window of the outage's onset, so the
    # same incident (a fault an hour later elsewhere on the line would be its own)
    h.feed(ev("B", "T3", start=T0 + H / 2))
    h.at(120)
    restore(h, iid, None, "12:00")
    h.at(300)
    r = report(h)
    assert hours_of(r, "T3") == pytest.approx(1.5)
    assert hours_of(r, "T1") == pytest.approx(2.0)


def test_a_false_alarm_counts_nothing(h: Harness) -> None:
    h.feed(ev("A", "T1", "T2", "T3"))
    iid = h.only_incident()
    h.at(90)
    steps(h).cancel(iid, "误报：线路未停电", "operator:li")
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert (s["customer_hours"], s["incidents"], s["fault_incidents"]) == (0, 0, 0)
    assert s["cancelled_incidents"] == 1 and s["rs1_pct"] == 100
    assert r.incidents.loc[0, "interruption"] == "none"
    assert "停电事件 0 起" in daily_report_message(r) and "另已取消 1 起" in daily_report_message(r)


def test_an_area_the_work_was_called_off_for_counts_nothing(h: Harness) -> None:
    work = {"kind": "planned", "start": T0 + H, "etr": T0 + 4 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", "T5", **work))
    h.at(10)
    h.feed(ev("P1", "T4", **work))  # edited before it began: T5 left out
    h.at(240)
    h.feed(ev("P1", "T4", **work, status="restored"))
    h.at(300)
    r = report(h)
    assert hours_of(r, "T5") == 0 and hours_of(r, "T4") == pytest.approx(3.0)
    assert r.summary.iloc[0]["customer_hours"] == pytest.approx(40 * 3)


def test_two_outages_over_one_area_count_its_customers_hours_once(h: Harness) -> None:
    line = {"kind": "planned", "start": T0, "etr": T0 + 4 * H, "feeder": "F2"}
    box = {"kind": "planned", "start": T0 + H, "etr": T0 + 3 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", "T5", **line), ev("P2", "T4", "T5", **box))
    h.at(180)
    h.feed(ev("P2", "T4", "T5", **box, status="restored"))
    h.at(240)
    h.feed(ev("P1", "T4", "T5", **line, status="restored"))
    h.at(300)
    r = report(h)
    assert len(r.incidents) == 2
    # Both take FU3's areas (T4 40 customers, T5 30) off. Each incident keeps its own hours;
    # the scope counts those 70 customers' 10:00-14:00 once.
    assert float(r.incidents["customer_hours"].sum()) == pytest.approx(70 * 4 + 70 * 2)
    s = r.summary.iloc[0]
    assert s["customer_hours"] == pytest.approx(70 * 4)
    assert s["planned_customer_hours"] == pytest.approx(70 * 4)
    f2 = r.by_feeder.set_index("feeder").loc["F2"]
    assert f2["customer_hours"] == pytest.approx(70 * 4)
    v3 = r.by_village.set_index("village").loc["V3"]
    assert v3["customer_hours"] == pytest.approx(70 * 4)


def test_a_recloser_operation_is_a_short_interruption_counted_apart(h: Harness) -> None:
    h.feed(ev("R1", "T1", "T2", "T3", device="B1"))
    h.now = T0 + 40 * timedelta(seconds=1)
    h.feed(ev("R1", "T1", "T2", "T3", device="B1", status="restored"))
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert (s["customer_hours"], s["incidents"], s["momentary_incidents"]) == (0, 0, 1)
    assert r.incidents.loc[0, "interruption"] == "momentary"
    assert "短时停电（3 分钟及以内，不计入指标）1 起" in daily_report_message(r)


def test_an_interruption_of_four_minutes_is_sustained(h: Harness) -> None:
    h.feed(ev("R1", "T1", device="B1"))
    h.at(4)
    h.feed(ev("R1", "T1", device="B1", status="restored"))
    h.at(300)
    s = report(h).summary.iloc[0]
    assert (s["incidents"], s["momentary_incidents"]) == (1, 0)
    assert s["customer_hours"] == pytest.approx(230 * 4 / 60)  # B1's three areas


def test_an_area_a_reload_renamed_keeps_its_customers_hours(h: Harness) -> None:
    h.feed(ev("A", "T1", "T3", device="B1"))  # T1 100, T2 50, T3 80 customers
    iid = h.only_incident()
    h.at(60)
    restore(h, iid, None, "11:00")
    h.at(300)
    assert report(h).summary.iloc[0]["customer_hours"] == pytest.approx(230)
    renamed = renamed_topology(h.topology, "T3", "T3A")
    r = report(h, renamed)
    assert r.summary.iloc[0]["customer_hours"] == pytest.approx(230)
    assert r.incidents.loc[0, "customer_hours"] == pytest.approx(230)


def renamed_topology(t: Topology, old: str, new: str) -> Topology:
    """``t`` with transformer ``old`` renumbered ``new`` (a reloaded bundle)."""
    def name(n: str) -> str:
        return new if n == old else n

    nodes = [{"id": name(n), "kind": t.nodes[n].kind, "name": n, "feeder": t.nodes[n].feeder,
              "normally_open": 0, "village": t.nodes[n].village or "",
              "customers": t.nodes[n].customers, "lat": 36.5, "lon": 115.5} for n in t.nodes]
    edges = [(name(a), name(b)) for a, b in t.graph.edges]
    villages = [{"id": v.id, "name": v.name, "township": v.township, "grid": "G1",
                 "area_type": v.area_type} for v in t.villages.values()]
    return topology_from_records(nodes, edges, villages, [], [], [])


def test_a_regions_figures_are_of_its_own_customers(tmp_path: Path) -> None:
    from datetime import datetime

    from outage_sentinel.config import RegionConfig
    from outage_sentinel.region import region_feeders
    from outage_sentinel.store import Store
    from tests.conftest import build_grid
    from tests.test_reports import _incident

    topology = build_grid()
    feeders = region_feeders(RegionConfig(name="east", feeders=["F1"]), topology)
    assert feeders == {"F1"}
    assert region_feeders(RegionConfig(), topology) is None
    url = f"sqlite:///{tmp_path}/db.sqlite"
    east, west = Store(url, region="east"), Store(url, region="west")
    east.migrate()
    day = datetime(2026, 3, 2, tzinfo=TZ)
    with east.transaction() as c:  # T1 (40 customers, F1) off 2 h
        _incident(east, c, "INC-east-1", feeder="F1", kind="fault", status="restored",
                  start=day + 8 * H, end=day + 10 * H, transformers=["T1"], customers=40,
                  updated=day + 10 * H)
    with west.transaction() as c:  # T6 (35 customers, F2) off 4 h
        _incident(west, c, "INC-west-1", feeder="F2", kind="fault", status="restored",
                  start=day + 8 * H, end=day + 12 * H, transformers=["T6"], customers=35,
                  updated=day + 12 * H)
    try:
        r = build_report(east, topology, day, day + 24 * H, TZ, day + 33 * H, feeders)
        s = r.summary.iloc[0]
        served = sum(topology.nodes[t].customers for t in topology.transformers
                     if topology.feeder_of(t) == "F1")
        assert s["customers"] == served < topology.total_customers
        assert s["aihc1_h"] == pytest.approx(80 / served)
        assert list(r.by_feeder["feeder"]) == ["F1"]  # not west's F2 at 100 %
        villages = {topology.nodes[t].village for t in topology.transformers
                    if topology.feeder_of(t) == "F1"}
        assert set(r.by_village["village"]) == villages
        whole = build_report(east, topology, day, day + 24 * H, TZ, day + 33 * H)
        assert whole.summary.iloc[0]["customers"] == topology.total_customers
    finally:
        east.close()
        west.close()


def test_an_area_is_off_from_its_own_records_start_not_its_villages(h: Harness) -> None:
    """T1 and T2 share village V1. T1's record ends at 11:00; T2's, published at 12:00, began
    at 10:30 (within the correlation window of the outage's onset: the same incident): T1 was
    off 10:00-11:00 (not from V1's newer start), T2 10:30-13:00."""
    h.feed(ev("A", "T1"), ev("C", "T3"))
    iid = h.only_incident()
    h.at(60)
    h.feed(ev("A", "T1", status="restored"))
    h.at(120)
    h.feed(ev("B", "T2", start=T0 + H / 2))
    h.at(180)
    restore(h, iid, None, "13:00")
    h.at(300)
    r = report(h)
    assert (hours_of(r, "T1"), hours_of(r, "T2")) == (pytest.approx(1.0), pytest.approx(2.5))


def test_an_area_taken_out_of_the_scope_after_its_return_is_not_off_again(h: Harness) -> None:
    h.feed(ev("A", "T1", "T2", "T3", device="B1"))
    iid = h.only_incident()
    h.at(30)
    restore(h, iid, "T3", "10:30")
    h.at(60)
    steps(h).remove(iid, "T3", "operator:li", "not ours")
    h.at(300)
    assert hours_of(report(h), "T3") == pytest.approx(0.5)


def test_an_outage_whose_customers_are_unknown_is_still_an_outage_event(h: Harness) -> None:
    from outage_sentinel.events import OutageEvent

    def record(status: str) -> OutageEvent:
        return OutageEvent(source="feed", event_id="X1", kind="fault", status=status,  # type: ignore[arg-type]
                           signal="notice", start=T0, end=T0 + 2 * H if status == "restored"
                           else None, feeder="F1", area_text="某村某台区", cause="线路故障")

    h.feed(record("active"))
    h.at(120)
    h.feed(record("restored"))
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert (s["incidents"], s["fault_incidents"]) == (1, 1)
    assert r.incidents.loc[0, "interruption"] == "sustained"


def test_work_cancelled_after_it_began_counts_once_in_the_message(h: Harness) -> None:
    work = {"kind": "planned", "start": T0, "etr": T0 + 4 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", **work))
    h.at(60)
    h.feed(ev("P1", "T4", **work, status="cancelled"))  # stopped after an hour
    h.at(300)
    r = report(h)
    assert r.incidents.loc[0, "interruption"] == "sustained"
    text = daily_report_message(r)
    assert "计划/临时 1 起" in text and "已取消" not in text
