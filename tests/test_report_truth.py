"""What the reliability figures count as fact, driven through the daemon's own processing:
a record naming part of a village (可能受影响) is listed apart, not counted; a fault joining
planned work counts only what it took off as a fault; an area off again within one incident
counts only its spells off; planned work re-issued once under way counts from when the power
went off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.events import OutageEvent
from outage_sentinel.reports import Report, build_report, daily_report_message
from tests.test_lifecycle import T0, TZ, Harness, ev

H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    yield harness
    harness.daemon.close()


def report(h: Harness) -> Report:
    return build_report(h.daemon.store, h.topology, T0 - 2 * H, T0 + 24 * H, TZ, h.now)


def spells(r: Report, transformer: str) -> list[tuple[str, float]]:
    """``(class, hours)`` of each spell of ``transformer`` in the areas table."""
    rows = r.areas[r.areas["transformer"] == transformer].sort_values("off_from")
    return [(str(c), float(x)) for c, x in zip(rows["class"], rows["hours"], strict=True)]


def marks(r: Report, transformer: str) -> set[str]:
    return set(r.areas.loc[r.areas["transformer"] == transformer, "mark"])


def record(event_id: str, text: str, *transformers: str, status: str = "active") -> OutageEvent:
    """A fault record of 10kV一号线 (F1) scoped in words, from 10:00 (ended at 12:00)."""
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       signal="notice", start=T0, end=T0 + 2 * H if status == "restored" else None,
                       feeder="F1", area_text=text, transformers=transformers, cause="线路故障")


# -- 1. part of a village (可能受影响) --------------------------------------------------------


def test_a_record_naming_part_of_a_village_counts_only_the_areas_it_confirms(h: Harness) -> None:
    """西村's T3 (80 customers) named, and "东村部分用户": 东村's T1 (100) and T2 (50) are only
    possibly off. The figures count T3's 2 hours; 东村's 300 customer-hours are listed apart
    as 可能受影响, in the areas table, the incident's line, the summary and the message."""
    h.feed(record("A", "东村部分用户", "T3"))
    h.at(120)
    h.feed(record("A", "东村部分用户", "T3", status="restored"))
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert s["customer_hours"] == pytest.approx(160)
    assert s["aihc1_h"] == pytest.approx(160 / h.topology.total_customers)
    assert s["possible_customer_hours"] == pytest.approx(300)
    assert spells(r, "T1") == [("fault", pytest.approx(2.0))]
    assert (marks(r, "T1"), marks(r, "T3")) == ({"possible"}, {"confirmed"})
    line = r.incidents.iloc[0]
    assert (line["customers"], line["customer_hours"]) == (80, pytest.approx(160))
    assert (line["possible_customers"], line["possible_customer_hours"]) == \
        (150, pytest.approx(300))
    v1 = r.by_village.set_index("village").loc["V1"]
    assert (v1["customer_hours"], v1["incidents"]) == (0, 0)
    text = daily_report_message(r)
    assert "停电时户数 160.0 时·户" in text and "可能受影响台区 300.0 时·户" in text


def test_an_area_only_the_localiser_inferred_is_not_counted_as_fact(h: Harness) -> None:
    """A fault record names 南村's T4 (40 customers); the localiser puts T5 (30) in its scope
    too (below FU3), which no record names and no device reported operated explains: listed
    as possibly off, like an imprecise name, not counted. (Planned work's scope is its
    record's: the localiser adds nothing to it.)"""
    work = {"kind": "fault", "start": T0, "etr": T0 + 4 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", **work))
    h.at(240)
    h.feed(ev("P1", "T4", **work, status="restored"))
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert s["customer_hours"] == pytest.approx(40 * 4)
    assert s["possible_customer_hours"] == pytest.approx(30 * 4)
    assert spells(r, "T5") == [("fault", pytest.approx(4.0))]
    assert marks(r, "T5") == {"possible"}


def test_an_inferred_area_below_the_device_the_crew_found_is_counted(h: Harness) -> None:
    """A fault record names only T1 (东村, 100 customers); the localiser has T2 (50) off too,
    below the fuse. The close-out says the crew found that fuse operated: below it the whole
    of T2 was off, and the figures count it (the localiser's guess became the crew's word)."""
    h.feed(record("A", "", "T1"))
    h.at(120)
    h.feed(record("A", "", "T1", status="restored"))
    h.at(130)
    before = report(h)
    guessed = [t for t in ("T2", "T3") if marks(before, t) == {"possible"}]
    assert guessed, "the localiser put no area beside T1: nothing to check"
    device = h.daemon.store.load_incidents(open_only=False)[0]["fault_device"]
    h.daemon.lifecycle.close(h.only_incident(), "operator:cc", "设备故障", device=device,
                             unconfirmed_ok=True)
    after = report(h)
    for t in guessed:
        assert marks(after, t) == {"confirmed"}, t
    assert after.summary.iloc[0]["customer_hours"] > before.summary.iloc[0]["customer_hours"]
    assert after.summary.iloc[0]["possible_customer_hours"] == pytest.approx(0)


# -- 2. a fault joining planned work ----------------------------------------------------------


def test_a_fault_joining_planned_work_counts_only_what_it_took_off_as_a_fault(
        h: Harness) -> None:
    """Planned work on T4 (40 customers) from 10:00; at 11:00 a fault record names T4 (the
    work explains it: it joins the work's incident), then T5 (30) too. T4 was taken off by
    the work: its 4.5 hours stay 预安排 (the fault kept it off to 14:30); T5's 3.5 are the
    fault's."""
    work = {"kind": "planned", "start": T0, "etr": T0 + 4 * H, "feeder": "F2"}
    fault = {"start": T0 + H, "feeder": "F2"}
    h.feed(ev("P1", "T4", **work))
    h.at(60)
    h.feed(ev("F1", "T4", **fault))
    h.at(90)
    h.feed(ev("F1", "T4", "T5", **fault))
    h.at(240)
    h.feed(ev("P1", "T4", **work, status="restored"))
    h.at(270)
    h.feed(ev("F1", "T4", "T5", **fault, status="restored"))
    h.at(300)
    r = report(h)
    assert len(r.incidents) == 1 and r.incidents.loc[0, "kind"] == "fault"
    assert spells(r, "T4") == [("planned", pytest.approx(4.5))]
    assert spells(r, "T5") == [("fault", pytest.approx(3.5))]
    s = r.summary.iloc[0]
    assert s["planned_customer_hours"] == pytest.approx(40 * 4.5)
    assert s["fault_customer_hours"] == pytest.approx(30 * 3.5)
    assert (s["incidents"], s["fault_incidents"]) == (1, 1)
    f2 = r.by_feeder.set_index("feeder").loc["F2"]
    assert f2["planned_customer_hours"] == pytest.approx(40 * 4.5)
    assert "故障 105.0，预安排 180.0" in daily_report_message(r)


def test_a_fault_report_the_work_explains_adds_no_fault(h: Harness) -> None:
    """The fault record names only T4, inside the work: every hour is the work's, and the
    incident counts as planned work, not as a fault."""
    work = {"kind": "planned", "start": T0, "etr": T0 + 4 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", "T5", **work))
    h.at(60)
    h.feed(ev("F1", "T4", start=T0 + H, feeder="F2"))
    h.at(240)
    h.feed(ev("P1", "T4", "T5", **work, status="restored"),
           ev("F1", "T4", start=T0 + H, feeder="F2", status="restored"))
    h.at(300)
    r = report(h)
    s = r.summary.iloc[0]
    assert (s["fault_customer_hours"], s["planned_customer_hours"]) == \
        (0, pytest.approx(70 * 4))
    assert (s["fault_incidents"], s["planned_incidents"]) == (0, 1)
    assert r.incidents.loc[0, "class"] == "planned"


# -- 3. off again within one incident ---------------------------------------------------------


@pytest.mark.parametrize("ended", [False, True])
def test_an_area_off_again_in_one_incident_counts_only_its_spells_off(
        h: Harness, ended: bool) -> None:
    """东村's T1 (record A) and 西村's T3 (record C) off at 10:00, one fault. A ends at 10:30:
    T1 is back. At 11:00 record D says T1 is off again. Counted: 10:00-10:30 and from 11:00
    (to 12:00 when everything ends; to now, 15:00, while it is on) — not the half hour it
    was back, and not only the first spell."""
    h.feed(ev("A", "T1"), ev("C", "T3"))
    h.at(30)
    h.feed(ev("A", "T1", status="restored"))
    h.at(60)
    h.feed(ev("D", "T1", start=T0 + H))
    if ended:
        h.at(120)
        h.feed(ev("D", "T1", start=T0 + H, status="restored"), ev("C", "T3", status="restored"))
    h.at(300)
    r = report(h)
    assert len(r.incidents) == 1
    second = 1.0 if ended else 4.0
    assert [x for _, x in spells(r, "T1")] == [pytest.approx(0.5), pytest.approx(second)]
    assert r.incidents.loc[0, "customer_hours"] == pytest.approx(
        100 * (0.5 + second) + 80 * (2.0 if ended else 5.0))


# -- 4. planned work re-issued under a new id -------------------------------------------------


def test_work_reissued_once_under_way_counts_from_when_the_power_went_off(h: Harness) -> None:
    """Work on T4 from 11:00; at 12:00, under way, the outage system re-issues it under a new
    id stamped 12:00, two hours longer. 南村 was off from 11:00 to 16:00, not from the
    re-issue: 5 hours."""
    first = {"kind": "planned", "start": T0 + H, "etr": T0 + 4 * H, "feeder": "F2"}
    again = {"kind": "planned", "start": T0 + 2 * H, "etr": T0 + 6 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", **first))
    h.at(120)
    h.feed(ev("P1", "T4", **first, status="cancelled"), ev("P2", "T4", **again))
    h.at(360)
    h.feed(ev("P2", "T4", **again, status="restored"))
    h.at(400)
    r = report(h)
    assert [e["stage"] for e in h.daemon.store.incident_log(r.incidents.loc[0, "id"])
            ].count("reissued") == 1
    assert spells(r, "T4") == [("planned", pytest.approx(5.0))]
    assert r.incidents.loc[0, "start"].hour == 11
    assert r.summary.iloc[0]["planned_customer_hours"] == pytest.approx(40 * 5)


def test_work_moved_before_it_began_counts_from_its_new_start(h: Harness) -> None:
    """The other way round (a guard): work planned from 12:00 is re-issued at 10:20, before
    it began, to start at 13:00. Nobody was off from 12:00: 13:00-16:00 counts."""
    first = {"kind": "planned", "start": T0 + 2 * H, "etr": T0 + 5 * H, "feeder": "F2"}
    moved = {"kind": "planned", "start": T0 + 3 * H, "etr": T0 + 6 * H, "feeder": "F2"}
    h.feed(ev("P1", "T4", **first))
    h.at(20)
    h.feed(ev("P1", "T4", **first, status="cancelled"), ev("P2", "T4", **moved))
    h.at(360)
    h.feed(ev("P2", "T4", **moved, status="restored"))
    h.at(400)
    r = report(h)
    assert spells(r, "T4") == [("planned", pytest.approx(3.0))]
