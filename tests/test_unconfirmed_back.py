"""An incident ends when its last record does; trouble calls and the localiser's inferences
are no records. An area only they put in the outage is counted back at the end with nothing
saying its supply is: its village hears the records ended and is asked, the crew and the
command centre see it, and a meter, a liaison's answer or an operator's step confirms it.

The daemon's real processing, store (SQLite and PostgreSQL) and delivery run under a fake
clock over the lifecycle tests' county (F1: B1 ─ J1 ─ FU1 ─ T1, T2 (东村); J1 ─ FU2 ─ T3
(西村))."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board.field import answer_event
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.incident_view import incident_text
from outage_sentinel.incidents import Incident
from outage_sentinel.lifecycle import LifecycleError, unasked_areas
from outage_sentinel.reports import build_report, daily_report_message
from outage_sentinel.sms_params import VARIABLE_LIMIT
from tests.test_lifecycle import T0, TZ, Harness, ev


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def state(h: Harness, iid: str) -> Incident:
    return Incident.from_json(h.incident(iid)["state"])


def over_with_t2_unsure(h: Harness) -> str:
    """One record names T1 and T3; the localiser puts T2 (under FU1 with T1) in the outage.
    The record ends half an hour later."""
    h.feed(ev("A", "T1", "T3"))
    iid = h.only_incident()
    inc = state(h, iid)
    assert inc.estimate.devices == ("B1",) and inc.mark("T2") == "inferred"
    h.at(30)
    h.feed(ev("A", "T1", "T3", status="restored"))
    return iid


def test_a_village_with_an_area_no_record_named_is_asked_not_told(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    inc = state(h, iid)
    assert inc.status == "restored" and inc.unconfirmed == ("T2",)
    restored = {m.target: m for m in h.sent("restored", "liaison")}
    east, west = restored["V1群"], restored["V2群"]
    # 东村: T1 is back (its record ended), T2's supply is a question, not a statement.
    assert "恢复送电待确认" in east.text and "T1（100户）已恢复送电" in east.text
    assert "T2（50户）" in east.text and "尚未得到确认" in east.text
    assert east.params["sms_template"] == "unconfirmed"
    assert east.params["sms"]["areas"] == "T2" and east.params["sms"]["households"] == "50"
    assert east.params["status"] == "unconfirmed"
    # 西村's only area was in the record: told plainly.
    assert west.text.startswith("【恢复送电】") and west.params["sms_template"] == "restored"
    summary = [m for m in h.sent("summary", "command") if "【已恢复】" in m.text][-1]
    assert "恢复送电未经确认" in summary.text and "T2" in summary.text
    back = h.sent("crew_power_back", "crew")
    assert back and "T2" in back[-1].text and "未经确认" in back[-1].text
    shown = incident_text(h.incident(iid), [], [], h.topology, TZ)
    assert "恢复待确认" in shown and "T2" in shown.split("恢复待确认")[1]


def test_a_crew_by_sms_hears_which_areas_nobody_confirmed_and_that_its_orders_stand(
        h: Harness) -> None:
    """The crew's SMS ``summary`` used to be the first line cut to 35 characters ("已恢复送电
    INC-…：10kV一号线（20…"): power back stated for T2 too, the orders standing lost."""
    over_with_t2_unsure(h)
    (back,) = h.sent("crew_power_back", "crew")
    assert back.text.startswith("【已恢复送电·部分未确认】")
    assert back.params["sms_template"] == "command"
    summary = back.params["sms"]["summary"]
    assert summary == "已恢复送电（据停电信息系统），T2来电未确认；派工未撤回"
    assert len(summary) <= VARIABLE_LIMIT


def test_a_meters_power_restore_confirms_the_area_and_tells_nobody_again(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    told = len(h.sent(audience="liaison"))
    h.at(35)
    h.feed(ev("m-T2", "T2", signal="alive", status="restored", source="ami"))
    inc = state(h, iid)
    assert inc.unconfirmed == () and inc.status == "restored"
    assert len(h.sent(audience="liaison")) == told
    assert len(h.daemon.store.load_incidents(open_only=False)) == 1  # no incident of its own


def test_the_command_centre_confirms_with_a_restoration_step(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    processor = h.daemon.processor
    with pytest.raises(LifecycleError, match="T3.*unconfirmed: T2"):
        processor.operator_restore(iid, "operator:li", "T3", None, "", now=h.now)
    h.at(50)
    processor.operator_restore(iid, "operator:li", None, "2026-11-23 10:45", "村委电话确认",
                               now=h.now)
    after = state(h, iid)
    assert after.unconfirmed == ()
    # the time the command centre gives, not the end it was counted back at
    assert after.restored["T2"].astimezone(TZ).strftime("%H:%M") == "10:45"
    assert after.restored["T1"].astimezone(TZ).strftime("%H:%M") == "10:30"
    with pytest.raises(LifecycleError, match="nothing to restore"):
        processor.operator_restore(iid, "operator:li", None, None, "", now=h.now)


def test_a_record_naming_the_device_confirms_every_area_below_it(h: Harness) -> None:
    h.feed(ev("A", "T1", device="FU1"))
    iid = h.only_incident()
    assert state(h, iid).mark("T2") == "inferred"
    h.at(30)
    h.feed(ev("A", "T1", device="FU1", status="restored"))
    inc = state(h, iid)
    assert inc.status == "restored" and inc.unconfirmed == ()
    (east,) = h.sent("restored", "liaison")
    assert east.text.startswith("【恢复送电】") and "待确认" not in east.text


def test_the_crews_orders_say_how_many_households_are_only_inferred(h: Harness) -> None:
    h.feed(ev("A", "T1", "T3"))
    h.daemon.lifecycle.dispatch(h.only_incident(), "operator:li")
    h.deliver()
    (orders,) = h.sent("dispatch", "crew")
    # T1 (100) and T3 (80) reported; T2 (50) only under the estimated breaker.
    assert "230户（已确认180户，其余未确认）" in orders.text


def test_off_again_a_village_that_was_only_asked_is_not_told_it_heard_power_was_back(
        h: Harness) -> None:
    over_with_t2_unsure(h)
    h.at(60)
    h.feed(ev("A", "T1", "T3", start=h.now))
    outage = {m.target: m.text for m in h.sent("outage", "liaison")[2:]}
    assert "此前通知本村停电记录已结束" in outage["V1群"]
    assert "已恢复送电" not in outage["V1群"]
    assert "此前通知本村已恢复送电" in outage["V2群"]


def test_the_digest_counts_the_households_asked_about(h: Harness) -> None:
    over_with_t2_unsure(h)
    (east,) = [m for m in h.sent("restored", "liaison") if m.target == "V1群"]
    assert east.params["households"] == 50 and east.params["status"] == "unconfirmed"


def log_steps(h: Harness, iid: str, stage: str) -> list[dict]:
    return [e for e in h.daemon.store.incident_log(iid) if e["stage"] == stage]


def hours_off(h: Harness, iid: str, area: str) -> float:
    report = build_report(h.daemon.store, h.topology, T0 - timedelta(hours=1),
                          T0 + timedelta(days=1), TZ, h.now)
    rows = report.areas[(report.areas["incident_id"] == iid)
                        & (report.areas["transformer"] == area)]
    return float(sum((b - a).total_seconds() for a, b in zip(rows["off_from"], rows["back_at"],
                                                            strict=True)) / 3600)


def test_a_confirmation_is_a_step_of_the_log_and_of_the_reliability_figures(
        h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    assert log_steps(h, iid, "confirmed_back") == []
    assert hours_off(h, iid, "T2") == pytest.approx(0.5)  # counted back at the end, for now
    h.at(50)
    h.daemon.processor.operator_restore(iid, "operator:li", None, "2026-11-23 10:45",
                                        "村委电话确认", now=h.now)
    (step,) = log_steps(h, iid, "confirmed_back")
    assert step["actor"] == "operator:li" and step["note"] == "村委电话确认"
    assert step["details"]["transformers"] == ["T2"] and step["details"]["customers"] == 50
    assert step["at"].astimezone(TZ).strftime("%H:%M") == "10:45"
    # T2 was off until the time the command centre gives, not until the records ended.
    assert hours_off(h, iid, "T2") == pytest.approx(0.75)
    assert hours_off(h, iid, "T1") == pytest.approx(0.5)
    shown = incident_text(h.incident(iid), [], h.daemon.store.incident_log(iid), h.topology, TZ)
    assert "确认已恢复送电" in shown


def test_a_meters_confirmation_is_logged_as_the_meters(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(40)
    h.feed(ev("m-T2", "T2", signal="alive", status="restored", source="ami",
              start=T0 + timedelta(minutes=38)))
    (step,) = log_steps(h, iid, "confirmed_back")
    assert step["actor"] == "source:ami" and step["details"]["transformers"] == ["T2"]
    assert hours_off(h, iid, "T2") == pytest.approx(38 / 60)


def test_still_dark_after_the_end_hands_the_area_to_the_new_outage(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(45)
    inc = state(h, iid)
    h.daemon.processor.report(answer_event("link-key", inc, "T2", "dark", 1, h.now), h.now)
    h.deliver()
    new_id = next(r["id"] for r in h.daemon.store.load_incidents(open_only=False)
                  if r["id"] != iid)
    new = state(h, new_id)
    assert new.status == "active" and "T2" in new.off and new.parent_id == iid
    old = state(h, iid)
    # No longer asked about, nor offered to the command centre to confirm back...
    assert old.unconfirmed == () and old.continued == {"T2": new_id}
    with pytest.raises(LifecycleError, match="nothing to restore"):
        h.daemon.processor.operator_restore(iid, "operator:li", None, None, "", now=h.now)
    # ...and off here until the new outage began, which counts it from there.
    assert old.restored["T2"] == h.now and hours_off(h, iid, "T2") == pytest.approx(0.75)
    (step,) = log_steps(h, iid, "continued")
    assert step["details"] == {"transformers": ["T2"], "by": new_id, "customers": 50,
                               "recorded_at": h.now.isoformat()}
    assert log_steps(h, iid, "confirmed_back") == []
    shown = incident_text(h.incident(iid), [], [], h.topology, TZ)
    assert f"仍停电，转入 {new_id}" in shown and "恢复待确认" not in shown
    # A later meter restore of T2 belongs to the new outage, not to the old one.
    h.at(70)
    h.feed(ev("m-T2", "T2", signal="alive", status="restored", source="ami", start=h.now))
    assert "T2" in state(h, new_id).restored
    assert state(h, iid).continued == {"T2": new_id} and state(h, iid).unconfirmed == ()


def test_the_summary_says_which_areas_no_liaison_was_asked_about(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    inc = state(h, iid)
    assert "V1" in inc.restored_villages
    asked = h.daemon.lifecycle.render_summary(inc)
    assert "已请联络人确认；" in asked and "未能询问" not in asked
    # 东村 not told (held back as dark elsewhere, or no liaison): nobody was asked.
    held = h.daemon.lifecycle.render_summary(replace(inc, restored_villages=("V2",)))
    assert "未能询问联络人" in held and "已请联络人确认" not in held and "T2" in held


def test_closing_out_with_areas_nobody_confirmed_back_takes_the_operators_word(
        h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    life = h.daemon.lifecycle
    with pytest.raises(LifecycleError, match=r"1 area\(s\).*T2.*--unconfirmed-ok"):
        life.close(iid, "operator:li", "设备故障")
    assert state(h, iid).stage == "restored"
    life.close(iid, "operator:li", "设备故障", unconfirmed_ok=True)
    (closed,) = log_steps(h, iid, "closed")
    assert closed["details"]["unconfirmed"] == ["T2"]


def test_closing_out_after_the_confirmation_needs_no_word(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.daemon.processor.operator_restore(iid, "operator:li", None, None, "", now=h.now)
    h.daemon.lifecycle.close(iid, "operator:li", "设备故障")
    (closed,) = log_steps(h, iid, "closed")
    assert "unconfirmed" not in closed["details"]


def hand_t2_on(h: Harness, iid: str, minutes: float = 45) -> str:
    """A liaison answers 仍停电 for T2 ``minutes`` in: the new incident's id."""
    h.at(minutes)
    h.daemon.processor.report(answer_event("link-key", state(h, iid), "T2", "dark", 1, h.now),
                              h.now)
    h.deliver()
    return next(r["id"] for r in h.daemon.store.load_incidents(open_only=False)
                if r["id"] != iid)


def test_a_meters_new_outage_in_the_reopen_window_takes_the_area_on(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(40)
    h.feed(ev("m-T2", "T2", signal="dead", source="ami", start=h.now))
    new_id = next(r["id"] for r in h.daemon.store.load_incidents(open_only=False)
                  if r["id"] != iid)
    old = state(h, iid)
    assert old.unconfirmed == () and old.continued == {"T2": new_id}
    assert hours_off(h, iid, "T2") == pytest.approx(40 / 60)


def test_a_closed_out_incident_is_not_changed_by_a_new_outage(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.daemon.lifecycle.close(iid, "operator:li", "设备故障", unconfirmed_ok=True)
    revision = state(h, iid).revision
    h.at(40)
    h.feed(ev("m-T2", "T2", signal="dead", source="ami", start=h.now))
    old = state(h, iid)
    assert (old.revision, old.unconfirmed, old.continued) == (revision, ("T2",), {})
    assert log_steps(h, iid, "continued") == []
    assert hours_off(h, iid, "T2") == pytest.approx(0.5)  # as closed out


def test_on_again_its_areas_are_its_own_and_the_next_end_asks_again(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    hand_t2_on(h, iid)
    h.at(60)
    h.feed(ev("A", "T1", "T3", start=h.now))  # the record re-opened
    assert state(h, iid).status == "active" and state(h, iid).continued == {}
    h.at(90)
    h.feed(ev("A", "T1", "T3", start=h.now, status="restored"))
    assert state(h, iid).status == "restored" and "T2" in state(h, iid).unconfirmed


def test_a_report_starting_after_the_records_ended_counts_a_handed_on_area(h: Harness
                                                                          ) -> None:
    iid = over_with_t2_unsure(h)
    new_id = hand_t2_on(h, iid, minutes=300)  # 5 hours later: 仍停电
    h.at(330)
    report = build_report(h.daemon.store, h.topology, T0 + timedelta(hours=1),
                          T0 + timedelta(hours=6), TZ, h.now)
    rows = report.areas[(report.areas["incident_id"] == iid)]
    assert list(rows["transformer"]) == ["T2"]
    assert float(rows["hours"].iloc[0]) == pytest.approx(4.0)  # 11:00 to 15:00
    new = report.areas[(report.areas["incident_id"] == new_id)
                       & (report.areas["transformer"] == "T2")]
    assert float(new["hours"].iloc[0]) == pytest.approx(0.5)  # from 15:00, still off


def test_the_new_outage_called_off_gives_the_area_back_unconfirmed(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    new_id = hand_t2_on(h, iid)
    assert state(h, iid).continued == {"T2": new_id}
    h.at(60)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).cancel(
        new_id, "联络人误报，实际已来电", "operator:li")
    old = state(h, iid)
    assert (old.unconfirmed, old.continued) == (("T2",), {})
    assert old.restored["T2"] == old.end  # counted back at the end, unconfirmed, as before
    (undone,) = log_steps(h, iid, "continued_undone")
    assert undone["actor"] == "operator:li" and undone["details"]["by"] == new_id
    assert hours_off(h, iid, "T2") == pytest.approx(0.5)
    # the command centre can confirm it again
    h.daemon.processor.operator_restore(iid, "operator:li", None, None, "", now=h.now)
    assert state(h, iid).unconfirmed == ()


def test_a_feed_cancelling_the_new_outage_gives_the_area_back_too(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(40)
    h.feed(ev("N2", "T2", start=h.now))  # the outage system's record of it
    new_id = state(h, iid).continued["T2"]
    h.at(50)
    h.feed(ev("N2", "T2", start=h.now, status="cancelled"))
    assert state(h, new_id).status == "cancelled"
    assert state(h, iid).unconfirmed == ("T2",) and state(h, iid).continued == {}


def test_a_confirmation_after_the_give_back_counts_at_the_time_it_gives(h: Harness) -> None:
    """Logged after the give-back but with an earlier time (the operator's --at): the report
    follows the order the steps were written in, not their times."""
    iid = over_with_t2_unsure(h)
    new_id = hand_t2_on(h, iid)
    h.at(60)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).cancel(
        new_id, "联络人误报", "operator:li")
    h.at(65)
    h.daemon.processor.operator_restore(iid, "operator:li", None, "2026-11-23 10:50", "",
                                        now=h.now)
    assert state(h, iid).restored["T2"].astimezone(TZ).strftime("%H:%M") == "10:50"
    assert hours_off(h, iid, "T2") == pytest.approx(50 / 60)


def test_the_new_outage_restored_then_cancelled_by_the_feed_gives_the_area_back(
        h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(40)
    h.feed(ev("N2", "T2", start=h.now))
    new_id = state(h, iid).continued["T2"]
    h.at(50)
    h.feed(ev("N2", "T2", start=T0 + timedelta(minutes=40), status="restored"))
    assert state(h, new_id).status == "restored"
    h.at(55)
    h.feed(ev("N2", "T2", start=T0 + timedelta(minutes=40), status="cancelled"))
    assert state(h, new_id).status == "cancelled"
    assert state(h, iid).unconfirmed == ("T2",) and state(h, iid).continued == {}


def test_the_daily_report_names_the_incidents_with_areas_still_to_confirm(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    h.at(120)

    def report() -> Any:
        return build_report(h.daemon.store, h.topology, T0 - timedelta(hours=1),
                            T0 + timedelta(days=1), TZ, h.now)

    r = report()
    assert list(r.incidents["unconfirmed_areas"]) == [1]
    assert int(r.summary["unconfirmed_areas"].iloc[0]) == 1
    assert f"恢复送电未经确认的台区 1 个（{iid}），请核实后记录恢复" in daily_report_message(r)
    h.daemon.processor.operator_restore(iid, "operator:li", None, None, "", now=h.now)
    r = report()
    assert int(r.summary["unconfirmed_areas"].iloc[0]) == 0
    assert "未经确认" not in daily_report_message(r)


def test_an_area_whose_village_has_no_liaison_was_not_asked(h: Harness) -> None:
    iid = over_with_t2_unsure(h)
    inc = state(h, iid)
    planner = h.daemon.lifecycle.planner
    assert unasked_areas(inc, h.topology, planner.village_recipients) == []
    assert unasked_areas(inc, h.topology, lambda village: []) == ["T2"]
