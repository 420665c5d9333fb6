"""Regression tests for the reports audit (the daily/weekly 停电日报 and the reliability
figures): each test is one reproduced finding, driven through the daemon's own processing on a
real SQLite database.

* planned work re-issued under a new id after midnight still counts in the day (and the week)
  it began;
* a daily report job that failed once is tried again by the catch-up tick;
* a close-out naming the device the crew found corrects which inferred areas count;
* planned work that has not begun is no interruption (nor "still off");
* a short interruption is judged by an area's longest spell, not the sum of its spells;
* "restored to confirmed" minutes run from the area's last real restoration;
* the incidents-by-day chart counts what the summary counts;
* a day with a DST change has its real number of hours;
* a crew's arrival counts in the day its outcome was settled;
* the summary CSV's times carry their UTC offset."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel import report_view
from outage_sentinel.board.field import answer_event
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.reports import (
    Report,
    build_report,
    daily_report_message,
    day_period,
    week_period,
)
from outage_sentinel.topology import Topology
from tests.conftest import build_grid
from tests.test_lifecycle import T0, TZ, Harness, ev
from tests.test_report_spells import renamed_topology

H, M, S = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    yield harness
    harness.daemon.close()


def report(h: Harness, topology: Topology | None = None) -> Report:
    return build_report(h.daemon.store, topology or h.topology, T0 - 2 * H, T0 + 24 * H, TZ,
                        h.now)


def day(h: Harness, d: date, tz: ZoneInfo = TZ) -> Report:
    start, end = day_period(d, tz)
    return build_report(h.daemon.store, h.topology, start, end, tz, h.now)


def week(h: Harness, d: date) -> Report:
    start, end = week_period(d, TZ)
    return build_report(h.daemon.store, h.topology, start, end, TZ, h.now)


def restore(h: Harness, iid: str, areas: str | None, local: str) -> None:
    h.daemon.processor.operator_restore(iid, "operator:crew", areas, local, "", now=h.now)


def steps(h: Harness) -> CommandSteps:
    return CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now)


def summary(r: Report) -> dict[str, object]:
    return dict(r.summary.iloc[0])


# -- 1. planned work re-issued after midnight --------------------------------------------------


@pytest.mark.parametrize("first_day, period", [(date(2026, 11, 23), "day"),
                                               (date(2026, 11, 29), "week")])
def test_work_reissued_after_midnight_counts_in_the_period_it_began(
        h: Harness, first_day: date, period: str) -> None:
    """南村 T4 (40 customers) off from 22:00; at 01:00, under way, the work is re-issued under
    a new id stamped 01:00, ending 04:00. The first day (and, over a Sunday night, the first
    week) counts 22:00-24:00; the next one 00:00-04:00."""
    d22 = datetime.combine(first_day, datetime.min.time(), tzinfo=TZ) + 22 * H
    first = {"kind": "planned", "start": d22, "etr": d22 + 4 * H, "feeder": "F2"}
    again = {"kind": "planned", "start": d22 + 3 * H, "etr": d22 + 6 * H, "feeder": "F2"}
    h.now = d22 - H
    h.feed(ev("P1", "T4", **first))  # type: ignore[arg-type]
    h.now = d22 + 3 * H
    h.feed(ev("P1", "T4", **first, status="cancelled"),  # type: ignore[arg-type]
           ev("P2", "T4", **again))  # type: ignore[arg-type]
    h.now = d22 + 6 * H
    h.feed(ev("P2", "T4", **again, status="restored"))  # type: ignore[arg-type]
    h.now = d22 + 30 * H
    build = day if period == "day" else week
    before, after = build(h, first_day), build(h, first_day + timedelta(days=1))
    assert summary(before)["planned_customer_hours"] == pytest.approx(40 * 2)
    assert summary(before)["planned_incidents"] == 1
    assert "计划/临时 1 起" in daily_report_message(before)
    assert summary(after)["planned_customer_hours"] == pytest.approx(40 * 4)


# -- 2. the daily report job failing once ------------------------------------------------------


def test_a_daily_report_job_that_failed_is_retried_by_the_catch_up(tmp_path: Path) -> None:
    """At 07:00 the database cannot serve the report (here: its incidents table is away); at
    the next catch-up tick it can, and the day's report is queued, once."""
    cn = ZoneInfo("Asia/Shanghai")
    db = tmp_path / "db.sqlite"
    now = [datetime(2026, 12, 8, 6, 0, tzinfo=cn)]
    cfg = parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": f"sqlite:///{db}"},
        "timezone": "Asia/Shanghai",
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {"cc": {"type": "file", "path": str(tmp_path / "sink.jsonl")}},
        "command_centre": {"channel": "cc", "target": "指挥中心", "daily_report_at": "07:00"}})
    d = Daemon(cfg, topology=build_grid(), sources=[], clock=lambda: now[0])
    try:
        d.start()  # 06:00: nothing due yet

        def queued() -> list[str]:
            return [m.incident_id[-8:] for m in d.store.messages()
                    if m.purpose == "daily_report"]

        def rename(old: str, new: str) -> None:  # another writer changes the database
            with closing(sqlite3.connect(db)) as other, other:
                other.execute(f"ALTER TABLE {old} RENAME TO {new}")

        now[0] = datetime(2026, 12, 8, 7, 0, tzinfo=cn)
        rename("incidents", "incidents_away")
        assert d.daily_report_tick(now[0]) == 0  # failed: logged, not raised
        rename("incidents_away", "incidents")
        assert queued() == []
        now[0] = datetime(2026, 12, 8, 7, 1, tzinfo=cn)
        assert d.catch_up_tick() == 1
        assert d.catch_up_tick() == 0
        assert queued() == ["20261207"]
    finally:
        d.close()


# -- 3. a close-out that corrects the device ---------------------------------------------------


def test_a_close_out_naming_a_smaller_device_corrects_the_figures(h: Harness) -> None:
    """The notice says breaker B1 operated and names T1 only; the crew finds fuse FU1 blew
    (T1 and T2 off) and 西村's T3, on FU2, never lost supply. The close-out names FU1."""
    h.feed(ev("A", "T1", device="B1"))
    iid = h.only_incident()
    h.at(120)
    h.feed(ev("A", "T1", device="B1", status="restored"))
    h.at(130)
    assert summary(report(h))["customer_hours"] == pytest.approx(230 * 2)  # B1's three
    h.daemon.lifecycle.close(iid, "operator:cc", "设备故障", device="FU1", unconfirmed_ok=True)
    r = report(h)
    marks = dict(zip(r.areas["transformer"], r.areas["mark"], strict=True))
    assert marks == {"T1": "confirmed", "T2": "confirmed", "T3": "possible"}
    assert summary(r)["customer_hours"] == pytest.approx(150 * 2)


# -- 4. planned work not begun -----------------------------------------------------------------


def test_planned_work_not_begun_is_no_interruption_nor_still_off(h: Harness) -> None:
    """At 11:00 the outage system publishes work on 南村 for 16:00-18:00; at 11:30 nobody has
    lost supply."""
    h.at(60)
    work = {"kind": "planned", "start": T0 + 6 * H, "etr": T0 + 8 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", "T5", **work))  # type: ignore[arg-type]
    h.at(90)
    for r in (day(h, date(2026, 11, 23)), week(h, date(2026, 11, 23))):
        s = summary(r)
        assert (s["incidents"], s["planned_incidents"], s["active_incidents"]) == (0, 0, 0)
        assert list(r.incidents["interruption"]) == ["none"]
        assert "仍在停电" not in daily_report_message(r)
    h.at(7 * 60)  # 17:00: under way
    s = summary(day(h, date(2026, 11, 23)))
    assert (s["incidents"], s["active_incidents"]) == (1, 1)


# -- 5/6. momentary vs sustained ---------------------------------------------------------------


def test_two_short_spells_of_one_area_are_a_short_interruption(h: Harness) -> None:
    """B1 trips at 10:00, is back at 10:02, recloses onto the fault at 10:03 and is back for
    good at 10:05: no area was off longer than 3 minutes at a time."""
    h.feed(ev("R1", "T1", "T2", "T3", device="B1"))
    iid = h.only_incident()
    h.now = T0 + 120 * S
    restore(h, iid, None, "2026-11-23 10:02")
    h.now = T0 + 180 * S
    steps(h).reopen(iid, None, "operator:li", "又跳闸")
    h.now = T0 + 300 * S
    restore(h, iid, None, "2026-11-23 10:05")
    h.at(300)
    s = summary(report(h))
    assert (s["customer_hours"], s["incidents"], s["momentary_incidents"]) == (0, 0, 1)


def test_areas_a_reload_renamed_are_judged_each_on_its_own_spell(h: Harness) -> None:
    """T3 back after 1 minute, T1 and T2 after 2.5; then a reload renames every transformer,
    so the report places the customers by the restoration steps' counts: two groups, each
    off 3 minutes or less."""
    h.feed(ev("R1", "T1", "T2", "T3", device="B1"))
    iid = h.only_incident()
    h.now = T0 + 60 * S
    restore(h, iid, "T3", "2026-11-23 10:01")
    h.now = T0 + 150 * S
    h.feed(ev("R1", "T1", "T2", "T3", device="B1", status="restored"))
    h.at(300)
    renamed = h.topology
    for old in ("T1", "T2", "T3"):
        renamed = renamed_topology(renamed, old, old + "A")
    r = report(h, renamed)
    s = summary(r)
    assert (s["customer_hours"], s["incidents"], s["momentary_incidents"]) == (0, 0, 1)
    assert list(r.incidents["interruption"]) == ["momentary"]


# -- 7. restored-to-confirmed minutes ----------------------------------------------------------


def confirm(h: Harness, iid: str, area: str, key: str) -> None:
    """A liaison's "power back" answer, as the board's field page records it."""
    store = h.daemon.store
    rev = store.record_answer(key, area, iid, h.topology.nodes[area].village or "", "back", "",
                              h.now)
    assert rev is not None
    incident = h.daemon.processor.incident(iid)
    assert incident is not None
    h.daemon.processor.report(answer_event(key, incident, area, "back", rev, h.now), h.now)


def test_a_confirmation_after_midnight_counts_in_its_own_day_from_the_real_return(
        h: Harness) -> None:
    """西村 T3 off 23:00, back 01:30; the liaison confirms at 01:40: 10 minutes, on the 24th."""
    start = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    h.now = start
    h.feed(ev("A", "T3", start=start, device="FU2"))
    iid = h.only_incident()
    h.now = start + 150 * M
    restore(h, iid, None, "2026-11-24 01:30")
    h.now = start + 160 * M
    confirm(h, iid, "T3", "k-west")
    h.now = start + 2 * 24 * H
    first, second = day(h, date(2026, 11, 23)), day(h, date(2026, 11, 24))
    west = first.by_village.set_index("village").loc["V2"]
    assert (west["field_confirmations"], summary(first)["field_confirmations"]) == (0, 0)
    west = second.by_village.set_index("village").loc["V2"]
    assert (west["field_confirmations"], west["confirm_minutes_median"]) == (1, 10.0)
    assert summary(second)["field_confirmations"] == 1


def test_confirmation_minutes_run_from_the_areas_last_return(h: Harness) -> None:
    """东村 T1 back 10:30, off again 10:40, back 11:00; confirmed 11:05: 5 minutes."""
    h.feed(ev("B", "T1", device="FU1"))
    iid = h.only_incident()
    h.at(30)
    restore(h, iid, "T1", "2026-11-23 10:30")
    h.at(40)
    steps(h).reopen(iid, "T1", "operator:li", "仍停电")
    h.at(60)
    restore(h, iid, None, "2026-11-23 11:00")
    h.at(65)
    confirm(h, iid, "T1", "k-east")
    h.at(300)
    east = report(h).by_village.set_index("village").loc["V1"]
    assert (east["field_confirmations"], east["confirm_minutes_median"]) == (1, 5.0)


# -- 8. the incidents-by-day chart -------------------------------------------------------------


def test_the_chart_counts_incidents_as_the_summary_does(h: Harness) -> None:
    """A 40-second recloser operation, a false alarm, and one real 2-hour fault: one incident."""
    h.feed(ev("R1", "T1", "T2", "T3", device="B1"))
    h.now = T0 + 40 * S
    h.feed(ev("R1", "T1", "T2", "T3", device="B1", status="restored"))
    h.at(60)
    h.feed(ev("X1", "T4", feeder="F2", start=T0 + H))
    alarm = [r["id"] for r in h.daemon.store.load_incidents(open_only=True)][0]
    h.at(70)
    steps(h).cancel(alarm, "误报：线路未停电", "operator:li")
    h.at(120)
    h.feed(ev("F1", "T1", start=T0 + 2 * H, device="FU1"))
    h.at(240)
    h.feed(ev("F1", "T1", start=T0 + 2 * H, device="FU1", status="restored"))
    h.at(600)
    r = report(h)
    assert summary(r)["incidents"] == 1
    counts = report_view.incidents_by_day(r)
    assert sum(c["fault"] + c["planned"] for c in counts.values()) == 1
    assert counts[date(2026, 11, 23)] == {"fault": 1, "planned": 0}


# -- 9. a day with a DST change ----------------------------------------------------------------


def test_a_day_the_clocks_go_back_has_25_hours(tmp_path: Path) -> None:
    ny = ZoneInfo("America/New_York")
    h = Harness(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", timezone="America/New_York")
    try:
        start = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)  # Oct 31 08:00 EDT
        h.now = start
        h.feed(ev("A", "T1", start=start, device="FU1"))  # T1 100 + T2 50 customers
        h.now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # back Nov 2 07:00 EST
        h.feed(ev("A", "T1", start=start, device="FU1", status="restored"))
        h.now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
        r = day(h, date(2026, 11, 1), ny)  # the clocks go back: 25 hours
        s = summary(r)
        assert s["hours_in_period"] == pytest.approx(25)
        assert s["customer_hours"] == pytest.approx(150 * 25)
        assert list(r.areas["hours"]) == [pytest.approx(25), pytest.approx(25)]
        assert s["rs1_pct"] == pytest.approx((1 - 3750 / 300 / 25) * 100)  # 300 customers
    finally:
        h.daemon.close()


# -- 10. a crew's arrival over midnight --------------------------------------------------------


def test_a_missed_arrival_counts_in_the_day_its_deadline_passed(h: Harness) -> None:
    """A fault at 23:00 (arrival deadline 00:30), no arrival logged, back at 01:30: the
    arrival was missed on the 24th, not on both days."""
    start = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    h.now = start
    h.feed(ev("A", "T1", "T3", start=start, device="B1"))
    iid = h.only_incident()
    h.now = start + 150 * M
    restore(h, iid, None, "2026-11-24 01:30")
    h.now = start + 2 * 24 * H
    first, second = day(h, date(2026, 11, 23)), day(h, date(2026, 11, 24))
    assert (summary(first)["crew_arrivals_met"], summary(first)["crew_arrivals_missed"]) == (0, 0)
    assert "抢修到达" not in daily_report_message(first)
    assert summary(second)["crew_arrivals_missed"] == 1
    assert summary(week(h, date(2026, 11, 23)))["crew_arrivals_missed"] == 1


# -- 11. the CSV's times -----------------------------------------------------------------------


def test_the_summary_csv_times_carry_their_offset(h: Harness, tmp_path: Path) -> None:
    h.feed(ev("A", "T1", device="FU1"))
    iid = h.only_incident()
    h.at(60)
    restore(h, iid, None, "2026-11-23 11:00")
    h.at(300)
    paths = report_view.write_report(report(h), "csv", tmp_path / "out" / "r.csv")
    (path,) = [p for p in paths if p.name == "r_summary.csv"]
    with path.open(encoding="utf-8-sig", newline="") as f:
        (cells,) = list(csv.DictReader(f))
    assert cells["period_start"] == "2026-11-23 08:00:00+08:00"
    assert cells["period_end"] == "2026-11-24 10:00:00+08:00"
    assert cells["generated_at"] == "2026-11-23 15:00:00+08:00"
