"""The reliability figures against what happened, driven through the daemon's own processing
on a real SQLite database (audit B of the reports):

* a restoration the command centre undid (``incidents reopen``: the area is still off) never
  happened: the area was off all along; a real return (the meters said so, or the note says
  it went off again) then off again is two spells;
* a short or sustained interruption goes by the areas counted, not by areas only possibly off;
* a cancel that is not a false alarm does not erase what the meters saw; a duplicate is not
  counted twice; a false alarm, or a call about a customer's own breaker, counts nothing;
* where planned work and a fault have one area off at once, the work's hours stay planned;
* a village counts an incident in a period only if one of its areas was off in it;
* a liaison's answer that was itself the restoration is not a confirmation of one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from outage_sentinel import report_view
from outage_sentinel.board.field import answer_event
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.incidents import Incident
from outage_sentinel.reports import Report, build_report, daily_report_message, day_period
from tests.test_lifecycle import T0, TZ, Harness, ev

H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    yield harness
    harness.daemon.close()


def report(h: Harness) -> Report:
    return build_report(h.daemon.store, h.topology, T0 - 2 * H, T0 + 24 * H, TZ, h.now)


def day(h: Harness, when: date) -> Report:
    start, end = day_period(when, TZ)
    return build_report(h.daemon.store, h.topology, start, end, TZ, h.now)


def steps(h: Harness) -> CommandSteps:
    return CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now)


def restore(h: Harness, iid: str, areas: str | None, hhmm: str) -> None:
    """The command centre's restoration of ``areas`` (None: all) at ``hhmm`` on the 23rd."""
    h.daemon.processor.operator_restore(iid, "operator:crew", areas, f"2026-11-23 {hhmm}", "",
                                        now=h.now)


def hours_of(r: Report, transformer: str, mark: str = "confirmed") -> float:
    a = r.areas
    return float(a.loc[(a["transformer"] == transformer) & (a["mark"] == mark), "hours"].sum())


def summary(r: Report) -> dict[str, float]:
    return dict(r.summary.iloc[0])


def ids_of(h: Harness) -> list[str]:
    return sorted(str(r["id"]) for r in h.daemon.store.load_incidents(open_only=False))


# -- 1. a restoration undone ---------------------------------------------------------------


def test_a_mistaken_restoration_undone_was_never_a_return(h: Harness) -> None:
    """东村 T1 off at 10:00; the command centre records it back at 10:02 by mistake, undoes
    that at 11:00 (误恢复); the outage system's record ends at 11:01. T1 was off 61 minutes,
    not 2 + 1."""
    h.feed(ev("A", "T1", device="FU1"))
    iid = h.only_incident()
    h.at(50)
    restore(h, iid, "T1", "10:02")
    h.at(60)
    steps(h).reopen(iid, "T1", "operator:li", "误恢复")
    h.at(61)
    h.feed(ev("A", "T1", device="FU1", status="restored"))
    h.at(300)
    r = report(h)
    assert hours_of(r, "T1") == pytest.approx(61 / 60)
    assert len(r.areas[r.areas["transformer"] == "T1"]) == 1
    assert summary(r)["customer_hours"] == pytest.approx((100 + 50) * 61 / 60)
    assert r.incidents.loc[0, "interruption"] == "sustained"


def test_a_return_the_meters_saw_then_off_again_is_two_spells(h: Harness) -> None:
    """西村 T3's meters said it was back at 10:30; the command centre reopens it at 10:40
    (no words): it was back, so the ten minutes are not counted."""
    h.feed(ev("F", "T1", "T3", device="B1"))  # 10:00
    iid = h.only_incident()
    h.at(30)
    h.feed(ev("m1", "T3", signal="alive", status="restored", source="ami", start=T0 + 30 * M))
    h.at(40)
    steps(h).reopen(iid, "T3", "operator:li")
    h.at(60)
    restore(h, iid, None, "11:00")
    h.at(300)
    assert hours_of(report(h), "T3") == pytest.approx(0.5 + 20 / 60)


def test_a_two_minute_outage_of_the_area_counted_is_short_whatever_was_only_possible(
        h: Harness) -> None:
    """The record names 东村 T1 alone; the localiser infers 东村 T2 below the same fuse (only
    possibly off, not counted). T1 is back after 2 minutes, the rest an hour later: the
    interruption of the customers counted was short (短时停电), not a sustained one of 0.5
    customer-hours."""
    h.feed(ev("A", "T1"))
    iid = h.only_incident()
    h.at(2)
    restore(h, iid, "T1", "10:02")
    h.at(60)
    h.feed(ev("A", "T1", status="restored"))
    h.at(300)
    r = report(h)
    assert r.incidents.loc[0, "possible_customers"] == 50  # T2, listed as possibly off
    assert r.incidents.loc[0, "interruption"] == "momentary"
    s = summary(r)
    assert (s["incidents"], s["momentary_incidents"], s["customer_hours"]) == (0, 1, 0)


# -- 2. cancels ---------------------------------------------------------------------------------


def test_a_cancel_that_is_no_false_alarm_keeps_what_the_meters_saw(h: Harness) -> None:
    """Every meter of 南村 T4 and T5 reports off at 10:00 and never on; at 10:40 the command
    centre cancels the incident as merged into another ticket it never opened here. The
    customers were off: 70 × 40 minutes count."""
    h.feed(ev("m", "T4", "T5", signal="dead", source="ami", feeder="F2"))
    iid = h.only_incident()
    h.at(40)
    steps(h).cancel(iid, "重复工单，与95598工单合并处理", "operator:li")
    h.at(300)
    r = report(h)
    s = summary(r)
    assert s["customer_hours"] == pytest.approx(70 * 40 / 60)
    assert (s["incidents"], s["fault_incidents"], s["cancelled_incidents"]) == (1, 1, 1)
    assert r.incidents.loc[0, "interruption"] == "sustained"
    assert "已取消" not in daily_report_message(r)


def test_a_duplicate_cancelled_counts_once(h: Harness) -> None:
    """The meters open one incident of 南村 at 11:00, the outage system's record (begun
    10:00) another; the meters' is cancelled as a duplicate: one incident, each customer's
    hour once."""
    h.feed(ev("M1", "T4", "T5", start=T0 + H, signal="dead", source="ami", feeder="F2"))
    h.at(65)
    h.feed(ev("N1", "T4", "T5", feeder="F2"))
    first, second = ids_of(h)
    h.at(70)
    steps(h).cancel(first, "重复工单", "operator:li")
    h.at(120)
    h.feed(ev("N1", "T4", "T5", feeder="F2", status="restored"))
    h.at(300)
    r = report(h)
    s = summary(r)
    assert s["incidents"] == 1
    assert s["customer_hours"] == pytest.approx(70 * 2)
    line = r.incidents.set_index("id")
    assert line.loc[first, "interruption"] == "none"
    assert line.loc[second, "interruption"] == "sustained"


def test_a_false_alarm_and_a_customers_own_breaker_count_nothing(h: Harness) -> None:
    h.feed(ev("A", "T4", "T5", feeder="F2"))
    alarm = h.only_incident()
    h.at(30)
    steps(h).cancel(alarm, "误报：线路未停电", "operator:li")
    h.at(60)
    call = steps(h).open("operator:li", feeder=None, transformers="T1")
    h.at(90)
    steps(h).cancel(call.id, "用户内部开关跳闸", "operator:li")
    h.at(300)
    r = report(h)
    assert set(r.incidents["interruption"]) == {"none"}
    assert summary(r)["customer_hours"] == 0


# -- 3. planned work and a fault over one area --------------------------------------------------


def test_the_works_areas_stay_planned_while_a_fault_keeps_them_off(h: Harness) -> None:
    """Planned work on 东村 T1, T2 10:00-12:00; a fault record names T2 and 西村 T3 from
    11:00 until 12:01 (its own incident). Planned: 150 × 2 h; fault: T3's 61 minutes and
    the minute T2 was off after the work."""
    work = {"kind": "planned", "etr": T0 + 2 * H}
    h.feed(ev("P1", "T1", "T2", **work))
    h.at(60)
    h.feed(ev("F1", "T2", "T3", start=T0 + H))
    h.at(120)
    h.feed(ev("P1", "T1", "T2", **work, status="restored"))
    h.at(121)
    h.feed(ev("F1", "T2", "T3", start=T0 + H, status="restored"))
    kinds = {Incident.from_json(r["state"]).kind
             for r in h.daemon.store.load_incidents(open_only=False)}
    assert kinds == {"planned", "fault"}  # two incidents, as in the audit
    h.at(300)
    s = summary(report(h))
    assert s["planned_customer_hours"] == pytest.approx(150 * 2)
    assert s["fault_customer_hours"] == pytest.approx(80 * 61 / 60 + 50 / 60)
    assert s["customer_hours"] == pytest.approx(150 * 2 + 80 * 61 / 60 + 50 / 60)


# -- 4. villages in a period --------------------------------------------------------------------


def test_a_village_counts_an_incident_only_in_the_days_its_power_was_off(h: Harness) -> None:
    """东村 off from 10:00 on the 23rd; the command centre adds 西村 T3 at 01:00 on the 24th;
    all back at 02:00. 西村 had no outage on the 23rd."""
    h.feed(ev("A", "T1", device="FU1"))
    iid = h.only_incident()
    h.at(15 * 60)  # 01:00 on the 24th
    steps(h).add(iid, "T3", "operator:li", "西村来电")
    h.at(16 * 60)
    h.daemon.processor.operator_restore(iid, "operator:crew", None, "2026-11-24 02:00", "",
                                        now=h.now)
    h.at(48 * 60)
    first = day(h, date(2026, 11, 23)).by_village.set_index("village")
    second = day(h, date(2026, 11, 24)).by_village.set_index("village")
    assert (first.loc["V2", "incidents"], first.loc["V2", "customer_hours"]) == (0, 0)
    assert first.loc["V1", "incidents"] == 1
    assert second.loc["V2", "incidents"] == 1
    assert second.loc["V2", "customer_hours"] == pytest.approx(80)


# -- 5. a liaison's answer that restored the area; latency shown ---------------------------------


def test_an_answer_that_was_the_restoration_is_no_confirmation_of_one(h: Harness) -> None:
    """西村 T3 off at 10:00; nothing records it back until the liaison answers 已来电 at
    10:30: that answer is the restoration, not a confirmation 0 minutes after one."""
    h.feed(ev("A", "T3", device="FU2"))
    iid = h.only_incident()
    h.at(30)
    store = h.daemon.store
    rev = store.record_answer("k-west", "T3", iid, "V2", "back", "", h.now)
    assert rev is not None
    inc = h.daemon.processor.incident(iid)
    h.daemon.processor.report(answer_event("k-west", inc, "T3", "back", rev, h.now), h.now)
    h.at(300)
    r = report(h)
    assert hours_of(r, "T3") == pytest.approx(0.5)
    west = r.by_village.set_index("village").loc["V2"]
    assert west["field_confirmations"] == 0 and math.isnan(west["confirm_minutes_median"])


def test_a_notice_within_seconds_does_not_show_as_zero_minutes(h: Harness) -> None:
    h.feed(ev("A", "T3", device="FU2"))
    h.at(300)
    r = report(h)
    r.incidents.loc[0, "notice_latency_min"] = 0.034
    r.summary.loc[0, "notice_latency_median_min"] = 0.034
    shown = report_view.people_table(r.incidents, report_view.RESPONSE_VIEW, "en")
    assert shown.loc[0, "First village notice (min)"] == "0.03"
    cells = report_view.people_table(r.incidents, report_view.RESPONSE_VIEW, "en", cells=True)
    assert cells.loc[0, "First village notice (min)"] == pytest.approx(0.03)
    assert "中位 0.03 分钟" in daily_report_message(r)
