"""What villages, the crew and the command centre are told across an outage's life: only
what the records say (audit D).

The network is the tests' two-feeder grid (tests/conftest.py)::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1 马集村, 40), T2 (V1, 30)
                  │          └─ T3 (V2 刘庄村, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3 王楼村, 60)
                  └─ TIE (normally open) ─ J3
    F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def deliver(d: Daemon, minutes: float) -> None:
    """The clock's check and every due message sent, at ``T0 + minutes``."""
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    d.clock_stage.run_once(d.clock())
    while d.deliverer.run_once(d.clock()):
        pass


def heard(d: Daemon, village: str) -> list[tuple[str, str]]:
    """(purpose, body) of every notice sent to the village's first recipient."""
    rows = [m for m in d.store.messages() if m.audience == "liaison" and m.status == "sent"
            and m.recipient.startswith(f"village:{village}:") and m.purpose != "care"]
    first = rows[0].recipient if rows else ""
    return [(m.purpose, m.body) for m in rows if m.recipient == first]


def incidents(d: Daemon) -> list[Incident]:
    return [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]


# -- planned work's scope is its record's -------------------------------------------------


def test_planned_work_on_one_area_promises_no_outage_to_a_village_it_does_not_name(
        daemon: Daemon) -> None:  # noqa: F811
    """Work on 王楼村's T5 alone: the localiser's fuse above it (FU2) is no reason to tell
    刘庄村 (T4, beside T5) of planned work, remind it, and ask it after the work whether its
    power is back."""
    d = daemon
    feed(d, -1440, ev("P1", "T5", kind="planned", start=at(0), expected_restoration=at(240),
                      cause="配变更换"))
    deliver(d, -1439)
    deliver(d, -60)
    (work,) = incidents(d)
    assert work.estimate.transformers == ("T5",) and dict(work.scope) == {"T5": "reported"}
    feed(d, 230, ev("P1", "T5", kind="planned", start=at(0), expected_restoration=at(240),
                    status="restored", end=at(230)))
    deliver(d, 231)
    assert heard(d, "V2") == []
    assert [p for p, _ in heard(d, "V3")] == ["outage", "reminder_1h", "restored"]
    (work,) = incidents(d)
    assert work.unconfirmed == ()


def test_planned_work_on_a_device_still_tells_the_areas_below_it(
        daemon: Daemon) -> None:  # noqa: F811
    """Work on the fuse FU2 (the record names the device and T5): T4, below the device the
    record names, is in the work's outage (possibly affected), and 刘庄村 hears of it."""
    d = daemon
    feed(d, -1440, ev("P1", "T5", kind="planned", device="FU2", start=at(0),
                      expected_restoration=at(240)))
    deliver(d, -1439)
    (work,) = incidents(d)
    assert set(work.estimate.transformers) == {"T4", "T5"}
    assert [p for p, _ in heard(d, "V2")] == ["outage"]


# -- work called off after it began ----------------------------------------------------------


def test_work_called_off_after_it_began_is_not_announced_as_a_day_of_normal_supply(
        daemon: Daemon) -> None:  # noqa: F811
    """Work on T4, T5 from 08:00, voided (作废) at 09:00: the power may have been off since
    08:00. 王楼村 hears the work is cancelled, not 届时正常供电 of a time gone by, and what to
    do if its power is still off."""
    d = daemon
    feed(d, -1440, ev("P1", "T4", "T5", kind="planned", start=at(0),
                      expected_restoration=at(240)))
    deliver(d, -1439)
    feed(d, 60, ev("P1", "T4", "T5", kind="planned", start=at(0),
                   expected_restoration=at(240), status="cancelled"))
    deliver(d, 61)
    purpose, body = heard(d, "V3")[-1]
    assert purpose == "cancelled"
    assert "已取消" in body and "届时正常供电" not in body and "如仍停电" in body, body


def test_work_called_off_before_it_began_still_speaks_of_its_day(
        daemon: Daemon) -> None:  # noqa: F811
    d = daemon
    feed(d, -1440, ev("P1", "T4", "T5", kind="planned", start=at(0),
                      expected_restoration=at(240)))
    deliver(d, -1439)
    feed(d, -120, ev("P1", "T4", "T5", kind="planned", start=at(0),
                     expected_restoration=at(240), status="cancelled"))
    deliver(d, -119)
    purpose, body = heard(d, "V3")[-1]
    assert purpose == "cancelled" and "届时正常供电" in body, body


# -- a withdrawn fault record is no word that power is on ------------------------------------


def test_an_area_only_a_withdrawn_record_named_is_not_told_back_as_fact(
        daemon: Daemon) -> None:  # noqa: F811
    """N1 (T1, T2) is withdrawn, N2 (T1) ends: 马集村 is told T1 is back and asked about T2,
    whose only record was withdrawn — not told its 70 households are back."""
    d = daemon
    feed(d, 1, ev("N1", "T1", "T2", start=at(0)), ev("N2", "T1", start=at(0)))
    deliver(d, 2)
    feed(d, 10, ev("N1", "T1", "T2", start=at(0), status="cancelled"))
    deliver(d, 11)
    feed(d, 60, ev("N2", "T1", start=at(0), status="restored", end=at(60)))
    deliver(d, 61)
    (inc,) = incidents(d)
    assert inc.status == "restored" and inc.unconfirmed == ("T2",)
    purpose, body = heard(d, "V1")[-1]
    assert purpose == "restored"
    assert "待确认" in body and "（40户）已恢复送电" in body and "70户" not in body, body


def test_a_village_whose_records_were_all_withdrawn_is_not_asked_about_later(
        daemon: Daemon) -> None:  # noqa: F811
    """马集村's only record is withdrawn while 王楼村's stays open: 马集村 hears 停电取消 (as
    when the whole incident is called off), and the incident's end does not count its areas
    as a restoration to confirm."""
    d = daemon
    feed(d, 1, ev("N1", "T1", "T2", start=at(0)), ev("N2", "T5", start=at(0)))
    deliver(d, 2)
    feed(d, 10, ev("N1", "T1", "T2", start=at(0), status="cancelled"))
    deliver(d, 11)
    feed(d, 60, ev("N2", "T5", start=at(0), status="restored", end=at(60)))
    deliver(d, 61)
    (inc,) = incidents(d)
    assert [p for p, _ in heard(d, "V1")] == ["outage", "cancelled"]
    assert [p for p, _ in heard(d, "V3")] == ["outage", "restored"]
    assert inc.status == "restored" and not {"T1", "T2"} & set(inc.unconfirmed)


# -- the cause: the one the open records agree on --------------------------------------------


def test_the_crew_and_the_command_centre_are_not_told_one_records_cause_as_the_outages(
        daemon: Daemon) -> None:  # noqa: F811
    """N1 (马集村's T1) says 树线矛盾, N2 (王楼村's T5) says 雷击: the summary and the crew's
    dispatch state neither as the cause of the whole outage (刘庄村, whose areas no record
    names, hears none either)."""
    d = daemon
    feed(d, 1, ev("N1", "T1", start=at(0), cause="树线矛盾"),
         ev("N2", "T5", start=at(0), cause="雷击"))
    (inc,) = incidents(d)
    assert inc.cause == ""
    rows = d.store.messages(incident_id=inc.id)
    v2 = [m.body for m in rows if m.recipient.startswith("village:V2:") and m.purpose == "outage"]
    assert v2 and all("雷击" not in b and "树线矛盾" not in b for b in v2)
    said = [m.body for m in rows if m.audience in ("command", "crew")
            and m.revision == inc.revision]
    assert said
    assert [b for b in said if "雷击" in b or "树线矛盾" in b] == []
    v1 = [m.body for m in rows if m.recipient.startswith("village:V1:") and m.purpose == "outage"]
    assert v1 and all("树线矛盾" in b for b in v1)  # each village its own record's word


def test_a_cause_the_open_records_agree_on_is_the_outages(daemon: Daemon) -> None:  # noqa: F811
    d = daemon
    feed(d, 1, ev("N1", "T1", start=at(0), cause="雷击"),
         ev("N2", "T5", start=at(0), cause="雷击"))
    (inc,) = incidents(d)
    assert inc.cause == "雷击"
    said = [m.body for m in d.store.messages(incident_id=inc.id)
            if m.audience == "command" and m.revision == inc.revision]
    assert said and all("雷击" in b for b in said)
    # The records disagree once one changes its word; one ending leaves the other's.
    feed(d, 20, ev("N1", "T1", start=at(0), cause="树线矛盾"),
         ev("N2", "T5", start=at(0), cause="雷击"))
    (inc,) = incidents(d)
    assert inc.cause == ""
    feed(d, 40, ev("N1", "T1", start=at(0), cause="已处理完毕", status="restored", end=at(40)))
    (inc,) = incidents(d)
    assert inc.cause == "雷击"


def test_a_withdrawn_records_area_is_asked_about_when_the_meters_saw_the_village_back(
        daemon: Daemon) -> None:  # noqa: F811
    """Review: N1 (T1, T2) withdrawn; T1's meters went dark and came back. The village hears
    恢复送电 (the outage was real), and T2, named only by the withdrawn record, was counted
    back as fact (本村70户) because the village's only record had been withdrawn."""
    feed(daemon, 1, ev("N1", "T1", "T2", start=at(0)),
         ev("A1", "T1", start=at(0), signal="dead"))
    deliver(daemon, 2)
    feed(daemon, 10, ev("N1", "T1", "T2", start=at(0), status="cancelled"))
    deliver(daemon, 11)
    feed(daemon, 60, ev("A1", "T1", start=at(0), signal="alive", status="restored",
                        end=at(60)))
    deliver(daemon, 61)
    (inc,) = incidents(daemon)
    assert inc.status == "restored" and inc.unconfirmed == ("T2",)
