"""Village liaison notices: who gets a message, grouping per group chat, and what it says."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.corrections import exclude_areas
from outage_sentinel.incidents import (
    Estimate,
    Evidence,
    Incident,
    Member,
    Notice,
    first_estimate,
)
from outage_sentinel.liaison import LiaisonPlanner, Renderer
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_topology

SHANGHAI = ZoneInfo("Asia/Shanghai")


def incident(grid: Topology, dead: set[str], **kw: Any) -> Incident:
    est = first_estimate(grid, Evidence(dead=frozenset(dead)))
    base = Incident(id="INC-20260301-0001", feeder="F1", kind="fault", status="active",
                    revision=1, start=T0, etr=T0 + timedelta(hours=2), end=None, cause="雷击",
                    area_text="马集镇南部", members={}, estimate=est)
    return replace(base, **kw)


def naming(inc: Incident, device: str) -> Incident:
    """``inc`` with a feed record that names ``device`` as the operated one, and the
    incident's cause (a village is told the cause its own records give)."""
    member = Member(key="feed|E1", kind="fault", status="active", signal="notice", start=T0,
                    etr=None, end=None, device=device, transformers=(), unknown=(),
                    area_text="", cause=inc.cause, seen_at=T0)
    return replace(inc, members={member.key: member})


def planner(grid: Topology, language: str = "zh", **kw: Any) -> LiaisonPlanner:
    return LiaisonPlanner(grid, Renderer(language), SHANGHAI, **kw)


def by_recipient(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.recipient: r for r in rows}


def test_liaisons_sharing_a_group_get_one_message_mentioning_all(grid: Topology) -> None:
    inc = incident(grid, {"T1"})
    rows = planner(grid).rows(inc, [Notice("outage", ("V1",))], T0)
    rows_by = by_recipient(rows)
    assert set(rows_by) == {"village:V1:wecom:group-v1", "village:V1:sms:13800000003"}
    group = rows_by["village:V1:wecom:group-v1"]
    assert group.payload["mentions"] == ["13800000001", "13800000002"]
    assert group.payload["roles"] == ["grid_manager", "village_liaison"]
    assert (group.channel, group.target, group.audience) == ("wecom", "group-v1",
                                                                      "liaison")
    sms = rows_by["village:V1:sms:13800000003"]
    assert sms.target == "13800000003"  # no target column: the phone is the target
    assert sms.payload["mentions"] == ["13800000003"]
    for r in rows:
        assert (r.incident_id, r.revision, r.purpose) == ("INC-20260301-0001", 1,
                                                                   "outage")
        assert r.payload["village"] == "V1"


def test_rows_for_several_villages_have_unique_keys(grid: Topology) -> None:
    inc = incident(grid, {"T1", "T4"})  # B1: V1, V2, V3
    rows = planner(grid).rows(inc, [Notice("outage", ("V1", "V2", "V3"))], T0)
    keys = [(r.incident_id, r.revision, r.recipient, r.purpose) for r in rows]
    assert len(keys) == len(set(keys)) == 4
    assert {r.payload["village"] for r in rows} == {"V1", "V2", "V3"}


def test_roles_filter(grid: Topology) -> None:
    inc = incident(grid, {"T1"})
    rows = planner(grid, roles=("grid_manager",)).rows(inc, [Notice("outage", ("V1",))], T0)
    (row,) = rows
    assert row.recipient == "village:V1:wecom:group-v1"
    assert row.payload["mentions"] == ["13800000002"]


def test_unknown_village_or_no_liaisons_means_no_rows(grid: Topology) -> None:
    topo = build_topology([("S1", "B1"), ("B1", "T1")])  # a village without liaisons
    inc = incident(grid, {"T1"})
    assert LiaisonPlanner(topo, Renderer(), SHANGHAI).rows(
        replace(inc, estimate=first_estimate(topo, Evidence(dead=frozenset({"T1"})))),
        [Notice("outage", ("V1",))], T0) == []
    assert planner(grid).rows(inc, [Notice("outage", ("V99",))], T0) == []


def test_chinese_outage_notice_carries_everything(grid: Topology) -> None:
    inc = naming(incident(grid, {"T1", "T3"}), "R1")  # R1 off: T1, T2 (V1), T3 (V2); 120 hh
    rows = planner(grid).rows(inc, [Notice("outage", ("V1",))], T0)
    body = by_recipient(rows)["village:V1:wecom:group-v1"].body
    assert body.startswith("【故障停电通知】马集村（马集镇）")
    assert "因雷击" in body
    assert "马集I线（马集重合器）停电" in body  # feeder name from feeder_name, device by name
    assert "台区T1、台区T2" in body and "台区T3" not in body  # this village's areas
    assert "本村70户（全部120户）" in body
    # Times in the configured zone: 00:00 UTC is 08:00 in Shanghai.
    assert "停电时间：2026-03-01 08:00；预计恢复：2026-03-01 10:00" in body
    assert "编号：INC-20260301-0001（第1版）" in body
    row = by_recipient(rows)["village:V1:wecom:group-v1"]
    assert row.subject == "【故障停电通知】马集村（马集镇）"
    assert row.payload["params"] == {
        "village": "马集村", "feeder": "马集I线", "start": "2026-03-01 08:00",
        "etr": "2026-03-01 10:00", "households": 70, "confirmed": 70, "incident": "INC-20260301-0001",
        "kind": "fault", "sms_template": "outage",
        # R1 is part of the line: the SMS's feeder parameter says so (its text has no device).
        "sms": {"village": "马集村", "feeder": "马集I线（马集重合器）", "kind": "故障停电",
                "start": "2026-03-01 08:00", "etr": "2026-03-01 10:00", "cause": "雷击",
                "households": "70", "incident": "INC-20260301-0001"}}


def test_a_fault_notice_says_crews_are_on_their_way_only_once_one_was_sent(grid: Topology
                                                                           ) -> None:
    """An outage only the meters saw waits for the command centre: its notice must not
    promise a crew that nobody sent."""
    def body(stage: str) -> str:
        inc = incident(grid, {"T1"}, stage=stage)
        rows = planner(grid).rows(inc, [Notice("outage", ("V1",))], T0)
        return by_recipient(rows)["village:V1:wecom:group-v1"].body

    for stage in ("detected", "confirmed"):
        assert "赶赴" not in body(stage) and "供电公司已获知停电，正在核查处理" in body(stage)
    assert "抢修人员正在赶赴现场" in body("dispatched")
    assert "抢修人员已在现场" in body("on_site")


def test_planned_work_called_off_and_then_on_again_is_not_said_to_be_back(grid: Topology
                                                                          ) -> None:
    """The village heard the work was cancelled, never that its power was back, and the work
    is tomorrow: "told power was back, still off" would be false twice."""
    start = T0 + timedelta(days=1)
    cancelled = incident(grid, {"T4"}, kind="planned", start=start, status="cancelled",
                         restored_villages=("V3",))
    again = incident(grid, {"T4"}, kind="planned", start=start, revision=3)
    (row,) = planner(grid).rows(again, [Notice("outage", ("V3",))], T0, previous=cancelled)
    assert "此前通知取消的停电恢复执行" in row.body
    assert "已恢复送电" not in row.body and "仍停电" not in row.body
    restored = replace(cancelled, kind="fault", status="restored", start=T0)
    (row,) = planner(grid).rows(replace(again, kind="fault", start=T0), [Notice("outage", ("V3",))],
                                T0, previous=restored)
    assert "此前通知本村已恢复送电" in row.body


def test_planned_notice_without_etr(grid: Topology) -> None:
    inc = incident(grid, {"T4"}, kind="planned", etr=None, cause="", start=T0 + timedelta(days=1))
    (row,) = planner(grid).rows(inc, [Notice("outage", ("V3",))], T0)
    assert row.body.startswith("【计划停电通知】王楼村\n")  # no township: no brackets
    assert "恢复时间待定" in row.body
    assert "因" not in row.body.splitlines()[1]  # no cause given: none is made up
    assert "请提前做好准备" in row.body
    assert row.payload["params"]["etr"] == ""


def test_work_already_under_way_is_not_announced_as_to_come(grid: Topology) -> None:
    """Temporary work reported ten minutes after it began: no "prepare in advance", and no
    "planned maintenance" made up for a cause the source did not give."""
    inc = incident(grid, {"T4"}, kind="temporary", cause="", start=T0 - timedelta(minutes=10))
    (row,) = planner(grid).rows(inc, [Notice("outage", ("V3",))], T0)
    assert "请提前做好准备" not in row.body and "计划检修" not in row.body
    assert "请相互转告，注意安全" in row.body


def test_english_rendering(grid: Topology) -> None:
    inc = naming(incident(grid, {"T1"}), "FU1")
    rows = planner(grid, "en").rows(inc, [Notice("outage", ("V1",))], T0)
    body = by_recipient(rows)["village:V1:wecom:group-v1"].body
    assert body.startswith("[Fault outage] 马集村 (马集镇)")
    assert "马集I线 (马集1号熔断器) is off: 雷击." in body
    assert "Confirmed off: 台区T1, 台区T2; 70 households in this village." in body
    assert "expected back 2026-03-01 10:00" in body
    # what the zh text says too: who is on it, and to keep away from fallen lines
    assert "is looking into it. Please pass this on, keep away from fallen lines" in body


def test_update_and_cancelled_notices(grid: Topology) -> None:
    inc = incident(grid, {"T1"}, revision=2, etr=T0 + timedelta(hours=5))
    (_, upd) = planner(grid).rows(inc, [Notice("update", ("V1",))], T0)
    assert upd.purpose == "update" and upd.revision == 2
    # what the village was told unknown, no adjustment of a time is claimed
    assert "预计恢复时间：2026-03-01 13:00" in upd.body and "调整为" not in upd.body
    told = replace(inc, revision=1, told_etr={"V1": T0 + timedelta(hours=2)})
    (_, upd) = planner(grid).rows(inc, [Notice("update", ("V1",))], T0, previous=told)
    assert "预计恢复时间调整为：2026-03-01 13:00" in upd.body
    can = planner(grid).rows(replace(inc, status="cancelled"), [Notice("cancelled", ("V1",))], T0)
    assert all(r.purpose == "cancelled" and "已取消" in r.body for r in can)
    # A fault called off is not a promise of supply (the record may be a duplicate, the
    # village may still be off): it says so and where to call. Planned work called off is.
    assert all("正常供电" not in r.body and "95598" in r.body and "原定" not in r.body
               for r in can)
    work = replace(inc, kind="planned", status="cancelled", start=T0 + timedelta(days=1))
    (planned, *_) = planner(grid).rows(work, [Notice("cancelled", ("V1",))], T0)
    assert "原定2026-03-02 08:00起的计划停电" in planned.body and "届时正常供电" in planned.body
    (english, *_) = planner(grid, "en").rows(replace(inc, status="cancelled"),
                                             [Notice("cancelled", ("V1",))], T0)
    assert "call 95598" in english.body


def test_every_notice_of_an_outage_names_it_as_the_outage_notice_did(grid: Topology) -> None:
    # The outage notice named the recloser a record reported: the restored and cancelled
    # notices, and their SMS, name it the same way (a liaison matches the two).
    inc = naming(incident(grid, {"T1", "T3"}), "R1")
    back = replace(inc, status="restored", end=T0 + timedelta(hours=1), revision=2)
    for purpose, case in (("outage", inc), ("restored", back),
                          ("cancelled", replace(back, status="cancelled"))):
        rows = by_recipient(planner(grid).rows(case, [Notice(purpose, ("V1",))], T0))
        assert "马集I线（马集重合器）" in rows["village:V1:wecom:group-v1"].body, purpose
        sms = rows["village:V1:sms:13800000003"].payload["params"]["sms"]
        assert sms["feeder"] == "马集I线（马集重合器）", purpose
    en = by_recipient(planner(grid, "en").rows(back, [Notice("restored", ("V1",))], T0))
    assert "马集I线 (马集重合器) outage" in en["village:V1:wecom:group-v1"].body
    # Without a named device the line and its extent are said, as before.
    plain = by_recipient(planner(grid).rows(replace(back, members={}),
                                            [Notice("restored", ("V1",))], T0))
    assert "马集I线（部分区段）停电（" in plain["village:V1:wecom:group-v1"].body


def test_restored_notice_uses_end_time(grid: Topology) -> None:
    end = T0 + timedelta(hours=1, minutes=30)
    inc = incident(grid, {"T1"}, status="restored", end=end, revision=2)
    rows = planner(grid).rows(inc, [Notice("restored", ("V1",))], end + timedelta(minutes=1))
    body = by_recipient(rows)["village:V1:wecom:group-v1"].body
    assert "已于2026-03-01 09:30恢复送电，本村70户" in body


def test_partially_restored_village_is_described_from_the_previous_estimate(
        grid: Topology) -> None:
    before = incident(grid, {"T1", "T4"})  # B1: V1..V3
    after = incident(grid, {"T4"}, revision=2)  # FU2 only: V1 is back
    assert "V1" not in after.estimate.villages
    now = T0 + timedelta(minutes=40)
    rows = planner(grid).rows(after, [Notice("restored", ("V1",))], now, previous=before)
    body = by_recipient(rows)["village:V1:wecom:group-v1"].body
    assert "本村70户" in body and "已于2026-03-01 08:40恢复送电" in body


def test_long_area_lists_are_shortened() -> None:
    edges = [("S1", "B1")] + [("B1", f"T{i:02d}") for i in range(12)]
    topo = build_topology(edges, liaisons=[{"village": "V1", "name": "a", "role": "village_liaison",
                                            "phone": "13800000009", "channel": "sms",
                                            "target": ""}])
    inc = Incident(id="I", feeder="F1", kind="fault", status="active", revision=1, start=T0,
                   etr=None, end=None, cause="", area_text="", members={},
                   estimate=first_estimate(topo, Evidence(dead=frozenset({"T00", "T11"}))))
    (row,) = LiaisonPlanner(topo, Renderer(), SHANGHAI).rows(inc, [Notice("outage", ("V1",))], T0)
    assert "等12个台区" in row.body and "name-T08" not in row.body
    (row,) = LiaisonPlanner(topo, Renderer("en"), SHANGHAI).rows(
        inc, [Notice("outage", ("V1",))], T0)
    assert "and 4 more" in row.body


def test_area_text_used_when_no_transformer_is_known(grid: Topology) -> None:
    inc = replace(incident(grid, {"T1"}), estimate=Estimate((), None, (), 0, ()))
    (_, row) = sorted(planner(grid).rows(inc, [Notice("outage", ("V1",))], T0),
                      key=lambda r: r.channel)
    assert "停电范围：马集镇南部" in row.body


def test_templates_can_be_overridden(grid: Topology, tmp_path: Path) -> None:
    (tmp_path / "liaison_outage.zh.j2").write_text(
        "停电 {{ village.name }} {{ village_customers }} {{ incident_id }}", encoding="utf-8")
    p = LiaisonPlanner(grid, Renderer("zh", tmp_path), SHANGHAI)
    rows = p.rows(incident(grid, {"T1"}), [Notice("outage", ("V1",)),
                                            Notice("restored", ("V1",))], T0)
    outage = [r for r in rows if r.purpose == "outage"]
    assert {r.body for r in outage} == {"停电 马集村 70 INC-20260301-0001"}
    restored = [r for r in rows if r.purpose == "restored"]
    assert restored and all(r.body.startswith("【恢复送电】") for r in restored)  # built-in


def test_template_referencing_an_unknown_name_falls_back_and_says_so(grid: Topology,
                                                                    tmp_path: Path) -> None:
    """A broken override never stops a notice: the built-in text goes out, the failure is
    reported (see tests/test_templates.py for the daemon's alert)."""
    (tmp_path / "liaison_outage.zh.j2").write_text("{{ no_such_thing }}", encoding="utf-8")
    failures: list[Any] = []
    p = LiaisonPlanner(grid, Renderer("zh", tmp_path, on_failure=failures.append), SHANGHAI)
    rows = p.rows(incident(grid, {"T1"}), [Notice("outage", ("V1",))], T0)
    builtin = planner(grid).rows(incident(grid, {"T1"}), [Notice("outage", ("V1",))], T0)
    assert [r.body for r in rows] == [r.body for r in builtin]
    assert {f.where for f in failures} == {f"{tmp_path / 'liaison_outage.zh.j2'}:1"}
    assert all("no_such_thing" in f.error for f in failures)


def test_inferred_areas_and_devices_are_not_stated_as_fact(grid: Topology) -> None:
    # The feed reported T1 only; the localiser infers the recloser R1 (T1, T2, T3).
    inc = replace(incident(grid, {"T1", "T3"}),
                  scope={"T1": "reported", "T2": "inferred", "T3": "inferred"})
    rows = by_recipient(planner(grid).rows(inc, [Notice("outage", ("V1", "V2"))], T0))
    v1 = rows["village:V1:wecom:group-v1"].body
    assert "已确认停电：台区T1；可能受影响：台区T2" in v1
    assert "马集重合器" not in v1 and "马集I线（部分区段）停电" in v1  # inferred: not named
    v2 = rows["village:V2:dingtalk:group-v2"].body
    assert "可能受影响：台区T3" in v2 and "已确认停电" not in v2
    en = by_recipient(planner(grid, "en").rows(inc, [Notice("outage", ("V1",))], T0))
    assert "Confirmed off: 台区T1; possibly affected: 台区T2" in \
        en["village:V1:wecom:group-v1"].body


def test_withdrawn_villages_get_no_liaison_notice(grid: Topology) -> None:
    inc = incident(grid, {"T1"})
    assert planner(grid).rows(inc, [Notice("withdrawn", ("V1",))], T0) == []


def record(key: str, *areas: str, start_h: float = 0, etr_h: float | None = None,
           device: str | None = None) -> Member:
    return Member(key=key, kind="fault", status="active", signal="notice",
                  start=T0 + timedelta(hours=start_h),
                  etr=None if etr_h is None else T0 + timedelta(hours=etr_h), end=None,
                  device=device, transformers=areas, unknown=(), area_text="", cause="",
                  seen_at=T0)


def test_each_village_is_told_its_own_start_time_and_devices(grid: Topology) -> None:
    """One incident, two records: N1 (T1, FU1) at 08:00 with no time; N2 (T5, FU2) at 10:00,
    expected back 12:00. Each village hears its own record's facts, in the text and by SMS."""
    members = {m.key: m for m in (record("feed|N1", "T1", device="FU1"),
                                  record("feed|N2", "T5", start_h=2, etr_h=4, device="FU2"))}
    inc = incident(grid, {"T1", "T5"}, members=members, etr=T0 + timedelta(hours=4),
                   estimate=replace(first_estimate(grid, Evidence(
                       dead=frozenset({"T1", "T5"}), open_devices=frozenset({"FU1", "FU2"})))))
    rows = by_recipient(planner(grid).rows(inc, [Notice("outage", ("V1", "V3"))], T0))
    v1, v1_sms = rows["village:V1:wecom:group-v1"], rows["village:V1:sms:13800000003"]
    assert "马集I线（马集1号熔断器）停电" in v1.body
    assert "停电时间：2026-03-01 08:00；恢复时间待定" in v1.body
    assert (v1_sms.payload["params"]["sms"]["start"], v1_sms.payload["params"]["sms"]["etr"]) \
        == ("2026-03-01 08:00", "待定")
    v3 = rows["village:V3:feishu:group-v3"]
    assert "马集I线（马集2号熔断器）停电" in v3.body
    assert "停电时间：2026-03-01 10:00；预计恢复：2026-03-01 12:00" in v3.body
    assert v3.payload["params"]["sms"]["start"] == "2026-03-01 10:00"


def test_a_partially_restored_village_is_told_when_its_areas_came_back(grid: Topology) -> None:
    inc = incident(grid, {"T1", "T4"}, revision=3,
                   restored={"T1": T0 + timedelta(minutes=30), "T2": T0 + timedelta(minutes=20)})
    now = T0 + timedelta(minutes=90)  # the feed published it an hour later
    rows = by_recipient(planner(grid).rows(inc, [Notice("restored", ("V1",))], now))
    assert "已于2026-03-01 08:30恢复送电" in rows["village:V1:wecom:group-v1"].body
    assert rows["village:V1:sms:13800000003"].payload["params"]["sms"]["restored"] == \
        "2026-03-01 08:30"
    en = by_recipient(planner(grid, "en").rows(inc, [Notice("restored", ("V1",))], now))
    assert "power restored at 2026-03-01 08:30" in en["village:V1:wecom:group-v1"].body


def test_an_update_for_changed_areas_says_so(grid: Topology) -> None:
    etr = T0 + timedelta(hours=2)
    before = incident(grid, {"T3", "T4"}, told_etr={"V2": etr})  # B1: T1..T5
    after = exclude_areas(before, grid, ["T4"], T0)  # the command centre: T4 has power
    rows = by_recipient(planner(grid).rows(after, [Notice("update", ("V2",))], T0,
                                           previous=before))
    body = rows["village:V2:dingtalk:group-v2"].body
    assert "本村停电范围有变化，以本通知为准（台区T4经供电指挥中心核实不在停电范围）" in body
    assert "预计恢复：2026-03-01 10:00" in body and "调整为" not in body  # the time held
    assert "已确认停电：台区T3，本村50户" in body
    en = by_recipient(planner(grid, "en").rows(after, [Notice("update", ("V2",))], T0,
                                               previous=before))["village:V2:dingtalk:group-v2"]
    assert "the areas off in this village are now as below (台区T4: not off" in en.body
    assert "expected back still 2026-03-01 10:00" in en.body


def test_a_branch_outage_is_not_announced_as_the_whole_line(grid: Topology) -> None:
    """"马集I线停电" tells a village the whole line is off: said only when it is; a branch
    without a device a source named is "马集I线（部分区段）停电"."""
    def body(inc: Incident, purpose: str = "outage", language: str = "zh") -> str:
        rows = planner(grid, language).rows(inc, [Notice(purpose, ("V1",))], T0)
        return by_recipient(rows)["village:V1:wecom:group-v1"].body

    branch = incident(grid, {"T1", "T2"})  # FU1, inferred: T1, T2 of F1's five areas
    assert "马集I线（部分区段）停电" in body(branch)
    assert "马集I线（部分区段）停电（" in body(replace(branch, status="restored",
                                                  end=T0 + timedelta(hours=1)), "restored")
    assert "on 马集I线 (part of the line) (" in body(branch, "update", "en")
    whole = incident(grid, {"T1", "T2", "T3", "T4", "T5"})  # B1: every area of F1
    assert whole.estimate.devices == ("B1",)
    assert "因雷击，马集I线停电" in body(whole)
    assert "部分区段" not in body(whole)
    assert "马集I线 is off" in body(whole, language="en")
    # A device a source named says which part; the qualifier is not repeated.
    assert "马集I线（马集1号熔断器）停电" in body(naming(branch, "FU1"))
    # Part of the line back: what is still off is part of it.
    part_back = replace(whole, restored={"T3": T0 + timedelta(minutes=10)})
    assert "马集I线（部分区段）故障停电" in body(part_back, "update")
    # The whole line, but part of it only inferred: possibly the whole line.
    assert "马集I线（可能全线）停电" in body(replace(whole, scope={"T2": "inferred"}))


def test_each_village_hears_of_the_line_its_own_areas_are_on(grid: Topology) -> None:
    """One record names areas on two feeders: 城关社区 (F2, both areas off) hears of 城关II线,
    not of the incident's 马集I线, of which only a branch is off."""
    inc = incident(grid, {"T1", "T6", "T7"})
    rows = by_recipient(planner(grid).rows(inc, [Notice("outage", ("V1", "V4"))], T0))
    assert "城关II线停电" in rows["village:V4:sms:13800000006"].body
    assert "马集I线" not in rows["village:V4:sms:13800000006"].body
    assert "马集I线（部分区段）停电" in rows["village:V1:wecom:group-v1"].body


def test_power_back_counts_households_as_sure_as_the_outage_notice_was(grid: Topology) -> None:
    """A village told "confirmed T1; possibly T2" is not told "70 households restored" as
    if all 70 had been known off: each kind is counted as it was announced."""
    inc = incident(grid, {"T1", "T2"}, status="restored", end=T0 + timedelta(hours=1),
                   scope={"T2": "inferred"})
    rows = planner(grid).rows(inc, [Notice("restored", ("V1",))], T0 + timedelta(hours=1))
    body = by_recipient(rows)["village:V1:wecom:group-v1"].body
    assert "本村确认停电的40户及可能受影响的30户。" in body
    inferred = replace(inc, scope={"T1": "inferred", "T2": "inferred"})
    rows = planner(grid, "en").rows(inferred, [Notice("restored", ("V1",))],
                                    T0 + timedelta(hours=1))
    assert "for the 70 possibly affected." in by_recipient(rows)["village:V1:wecom:group-v1"].body


def test_each_village_hears_its_own_records_cause(grid: Topology) -> None:
    """Two records in one storm incident: R1 names T1 (车辆撞杆), R2 names T4 (雷击). 马集村
    hears R1's cause, 刘庄村 R2's; 王楼村, which neither names (T5 inferred), hears no cause
    rather than one picked from the two."""
    def record(key: str, area: str, cause: str, minutes: int) -> Member:
        return Member(key=key, kind="fault", status="active", signal="notice", start=T0,
                      etr=None, end=None, device=None, transformers=(area,), unknown=(),
                      area_text="", cause=cause, seen_at=T0 + timedelta(minutes=minutes))
    inc = incident(grid, {"T1", "T4"}, cause="雷击",
                   members={"feed|R1": record("feed|R1", "T1", "外力破坏（车辆撞杆）", 0),
                            "feed|R2": record("feed|R2", "T4", "雷击", 5)})
    rows = by_recipient(planner(grid).rows(inc, [Notice("outage", ("V1", "V2", "V3"))], T0))
    assert "因外力破坏（车辆撞杆）" in rows["village:V1:wecom:group-v1"].body
    assert "雷击" not in rows["village:V1:wecom:group-v1"].body
    assert "因雷击" in rows["village:V2:dingtalk:group-v2"].body
    v3 = rows["village:V3:feishu:group-v3"].body
    assert "因" not in v3.split("\n")[1] and "雷击" not in v3 and "撞杆" not in v3


def test_an_sms_channel_is_known_by_its_type_whatever_its_name() -> None:
    """A carrier's channel keyed ``aliyun`` sends templates: the liaison's link is the
    template's ``link`` variable (not a line of text SMS never sends); a file sink keyed
    ``sms`` stands in for the carrier; a group channel gets the link as a line."""
    from outage_sentinel.config import parse_config
    from outage_sentinel.field_links import IssuedLink
    from outage_sentinel.liaison import sms_channels

    config = parse_config({
        "state_dir": "state", "topology": "topo",
        "sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
        "channels": {"aliyun": {"type": "sms", "access_key_id": "a", "access_key_secret": "s",
                                "sign_name": "x",
                                "template_code": "t"},
                     "sms": {"type": "file", "path": "out/sms.jsonl"},
                     "groups": {"type": "file", "path": "out/groups.jsonl"}}})
    names = sms_channels(config.channels)
    assert names == {"aliyun", "sms"}
    topology = build_topology([("S1", "B1"), ("B1", "T1")])
    planner = LiaisonPlanner(topology, Renderer("zh"), ZoneInfo("Asia/Shanghai"), sms=names)
    link = IssuedLink("http://b.example/f/tok", "tok", {"token": "tok"})
    params = {"sms_template": "outage", "sms": {"village": "东村"}}
    assert planner.with_link("正文", params, "aliyun", link) == (
        "正文", {"sms_template": "outage", "sms": {"village": "东村", "link": "tok"}})
    body, same = planner.with_link("正文", params, "groups", link) or ("", None)
    assert body.endswith("http://b.example/f/tok") and same == params
