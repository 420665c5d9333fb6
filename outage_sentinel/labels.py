"""Words people read for the codes the daemon keeps: incident kinds, statuses, stages, classes.

One table per code, in every notice language (``zh``, ``en``). Notices, command-centre texts,
CLI views and reports all take their words from here, so a stage is called the same thing
everywhere. :func:`label` falls back to the code itself for a value it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping

KIND_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"fault": "故障停电", "planned": "计划停电", "temporary": "临时停电",
           # a record whose type the source could not classify: no claim about the kind
           "unclassified": "停电"},
    "en": {"fault": "Fault outage", "planned": "Planned outage", "temporary": "Temporary outage",
           "unclassified": "Outage"},
}

STATUS_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"active": "停电中", "restored": "已恢复", "cancelled": "已取消"},
    "en": {"active": "off", "restored": "restored", "cancelled": "cancelled"},
}

#: Appended to the command centre's kind of an incident whose records' type no mapping
#: classified (it is handled as that kind; the villages hear a neutral 停电通知).
UNCLASSIFIED_NOTE: Mapping[str, str] = {"zh": "（类型未识别，按此处理）",
                                        "en": " (type not recognised; handled as this)"}

#: Lifecycle stages (see :data:`outage_sentinel.incidents.STAGES`).
STAGE_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"detected": "已发现", "confirmed": "已确认", "dispatched": "已派工",
           "on_site": "已到场", "partially_restored": "部分恢复", "restored": "已恢复",
           "cancelled": "已取消", "closed": "已销号",
           # log steps of the command centre's corrections
           "etr_set": "调整预计恢复时间", "scope_added": "扩大停电范围",
           "scope_readmitted": "撤销移出（重新纳入）",
           "scope_removed": "更正停电范围", "device_set": "更正故障点",
           "device_cleared": "撤销更正的故障点（重新推断）",
           "etr_cleared": "撤销调整的预计恢复时间（按停电信息）",
           "device_set_dropped": "更正的故障点不再涵盖停电范围", "opened": "来电立案",
           "etr_changed": "预计恢复时间变更",
           "reopened": "再次停电", "escalated": "升级", "stood_down": "抢修撤回",
           "restoration_undone": "撤销恢复（仍停电）",
           "past_stop": "超过计划结束时间才收到，未通知村",
           "reissued": "停电计划以新编号重新发布（延续原工作）",
           "called_off": "部分台区停电取消（未开工前移出）",
           "confirmed_back": "确认已恢复送电（此前记录结束时未经确认）",
           "continued": "未确认恢复的台区仍停电，转入新停电事件",
           "continued_undone": "转入的新停电事件已取消，台区恢复待确认",
           "held_back": "暂不通知恢复送电（该村仍有台区在其他停电事件中停电）",
           "held_released": "暂缓的恢复送电通知已发出",
           "evidence_conflict": "联络人反馈已来电，但电表仍报停电（未按恢复处理）",
           "meters_disagree": "停电记录已结束，但电表仍报停电",
           "overrun": "预计恢复时间已过仍停电（已告知村、已提醒指挥中心）",
           "back_untold": "停电通知未发出即已恢复，未通知恢复送电"},
    "en": {"detected": "detected", "confirmed": "confirmed", "dispatched": "crew dispatched",
           "on_site": "crew on site", "partially_restored": "partly restored",
           "restored": "restored", "cancelled": "cancelled", "closed": "closed",
           "etr_set": "ETR set", "scope_added": "areas added", "scope_readmitted": "removal undone",
           "scope_removed": "areas removed", "device_set": "fault device set",
           "device_cleared": "fault device set taken back (estimated again)",
           "etr_cleared": "ETR set taken back (the sources' again)",
           "device_set_dropped": "fault device set no longer covers the outage",
           "opened": "opened from a call", "etr_changed": "ETR changed", "reopened": "reopened",
           "escalated": "escalated", "stood_down": "crew stood down",
           "restoration_undone": "restoration undone (still off)",
           "past_stop": "first seen after its planned end: villages not told",
           "reissued": "work re-issued under a new record id (continued)",
           "called_off": "called off for some areas before the work began",
           "confirmed_back": "confirmed back (unconfirmed when the records ended)",
           "continued": "areas never confirmed back are off in a new incident",
           "continued_undone": "the new incident was called off: back unconfirmed again",
           "held_back": "power-back notice held (the village is off in another incident)",
           "held_released": "held power-back notice sent",
           "evidence_conflict": "liaison said power back; the meters still say off (not taken)",
           "meters_disagree": "record ended; the meters still say off",
           "overrun": "expected restoration passed, still off (villages told, command "
                      "centre alerted)",
           "back_untold": "over before its notice went out: no power-back sent"},
}

#: Report classes (DL/T 836): faults, and planned plus temporary work (预安排停电).
CLASS_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"fault": "故障", "planned": "预安排"},
    "en": {"fault": "fault", "planned": "planned/temporary"},
}

#: Whether an incident counts in the reliability figures (``reports.interruption_of``).
INTERRUPTION_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"sustained": "计入", "momentary": "短时停电（不计入）", "none": "未停电（不计入）"},
    "en": {"sustained": "counted", "momentary": "short (not counted)",
           "none": "no interruption (not counted)"},
}

#: Village area types (villages.csv ``area_type``).
AREA_TYPE_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"urban": "城区", "rural": "农村", "remote": "偏远"},
    "en": {"urban": "urban", "rural": "rural", "remote": "remote"},
}


def label(table: Mapping[str, Mapping[str, str]], language: str, code: str) -> str:
    """The word for ``code`` in ``language`` (English if the language is unknown; the code
    itself if the table has no word for it)."""
    words = table.get(language) or table["en"]
    return words.get(code, code)

