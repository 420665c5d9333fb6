"""``incidents list`` / ``incidents show`` as an operator reads them: local times, stage words,
confirmed vs inferred areas, the crew by name, phone numbers masked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from outage_sentinel.incident_view import incident_line, incident_text
from outage_sentinel.incidents import Estimate, Incident, Member
from outage_sentinel.lifecycle import incident_columns
from tests.conftest import T0, build_grid

TZ = ZoneInfo("Asia/Shanghai")


def stored(**kw: object) -> dict[str, object]:
    grid = build_grid()
    areas = ("T1", "T2", "T3")
    member = Member(key="feed|E1", kind="fault", status="active", signal="notice", start=T0,
                    etr=None, end=None, device=None, transformers=("T1",), unknown=(),
                    area_text="马集镇南部", cause="", seen_at=T0)
    inc = Incident(id="INC-1", feeder="F1", kind="fault", status="active", revision=2, start=T0,
                   etr=T0 + timedelta(hours=2), end=None, cause="雷击", area_text="马集镇南部",
                   members={member.key: member},
                   estimate=Estimate(("R1",), 0.71, areas, grid.customers_of(areas),
                                     tuple(grid.villages_of(areas))),
                   scope={"T1": "reported", "T2": "inferred", "T3": "inferred"},
                   restored={"T3": T0 + timedelta(minutes=30)}, stage="dispatched")
    row = incident_columns(replace(inc, **kw), T0, crew_id="CR1")  # type: ignore[arg-type]
    return row


def test_show_reads_like_a_summary_not_json() -> None:
    log = [{"at": T0 + timedelta(minutes=5), "stage": "dispatched",
            "actor": "operator:13812345678", "note": ""}]
    text = incident_text(stored(), [], log, build_grid(), TZ)
    assert text.splitlines()[0] == "INC-1  故障停电  停电中  (rev 2)"
    assert "线路: 马集I线" in text
    assert "推断故障点: 马集重合器 (概率 约71%)" in text  # nobody named it: inferred, with p
    # An inference is never shown as certain (0.996 read "100%" here, ">99%" everywhere else).
    sure = incident_text(stored(estimate=Estimate(("R1",), 0.996, ("T1",),
                                                  build_grid().customers_of(("T1",)),
                                                  ("V1",))), [], log, build_grid(), TZ)
    assert "(概率 ＞99%)" in sure and "100%" not in sure
    assert "开始: 2026-03-01 08:00" in text  # local time, not UTC
    assert "阶段: 已派工   抢修班组: 马集抢修班 (CR1)" in text
    assert "已确认停电 (1 个台区): 台区T1" in text
    assert "可能受影响 (1 个台区): 台区T2" in text and "已恢复 (1 个台区): 台区T3" in text
    assert "13812345678" not in text and "138****5678" in text
    assert "{" not in text
    # Partly restored, the stage no longer says where the crew is: the crew line does.
    part = incident_text(stored(stage="partially_restored", crew_progress="on_site"), [], log,
                         build_grid(), TZ)
    assert "阶段: 部分恢复   抢修班组: 马集抢修班 (CR1) · 已到场" in part


def test_a_device_the_command_centre_set_is_shown_as_its_word_not_an_estimate() -> None:
    row = stored(device_set=("R1",), device_set_by="operator:13812345678",
                 estimate=Estimate(("R1",), None, ("T1",), 40, ("V1",)))
    text = incident_text(row, [], [], build_grid(), TZ)
    assert "故障点（运行人员确认）: 马集重合器 (设置人 operator:138****5678)" in text
    assert "推断故障点" not in text and "13812345678" not in text


def test_list_shows_the_stage_so_a_closed_incident_is_not_restored() -> None:
    row = stored(status="restored", stage="closed")
    line = incident_line(row, build_grid(), TZ)
    assert line.startswith("INC-1  已销号") and "已恢复" not in line
    assert "马集I线" in line and "2026-03-01 08:00" in line
    assert "Closed" not in incident_line(row, build_grid(), TZ, "en") and \
        "closed" in incident_line(row, build_grid(), TZ, "en")


def test_show_names_the_reports_the_fault_point_does_not_explain() -> None:
    """FU2 estimated (T4, T5 below it) while T1 is reported off: the operator reads that the
    estimate takes T1's report for false, not just "confirmed off: T1" under a fuse elsewhere."""
    grid = build_grid()
    areas = ("T1", "T4", "T5")
    row = stored(estimate=Estimate(("FU2",), 0.97, areas, grid.customers_of(areas),
                                   tuple(grid.villages_of(areas))),
                 scope={"T1": "reported", "T4": "inferred", "T5": "inferred"}, restored={})
    text = incident_text(row, [], [], grid, TZ)
    assert "已报停电、不在故障点下游（按误报处理或另有故障，请核实）: 台区T1" in text
    english = incident_text(row, [], [], grid, TZ, language="en")
    assert "Reported off, not below the fault point (read as false, or another fault: check): " \
        "台区T1" in english
    # The first example's R1 is above T1: nothing to remark.
    assert "不在故障点下游" not in incident_text(stored(), [], [], grid, TZ)
