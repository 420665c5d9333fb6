"""A log step's details as the incident page's timeline says them: each key the core writes
(``incident_log`` details: the areas, the crew, the ETR, the operator's explicit word such as
``again`` or ``false_alarm``) in the viewer's words, ids as names, a flag as what it means,
times local — pure.

A key not listed here is shown as kept (``key: value``), never dropped. Phone numbers are
masked by the caller (:func:`outage_sentinel.board.views.step_details`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from outage_sentinel.labels import AREA_TYPE_LABELS, label
from outage_sentinel.topology import Topology

#: What each details key is, by language (a step-specific word in :data:`STEP_WORDS`).
DETAIL_WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {"transformers": "台区", "customers": "户数", "records": "停电记录",
           "unreleased": "电表停电暂未确认（AMI筛查未放行）的台区",
           "not_fed": "所确认设备不供电的已停电台区（运行人员确认仍按此销号）",
           "unconfirmed": "恢复待确认的台区", "from": "原", "to": "改为",
           "was": "原故障点", "now": "现故障点", "by": "由", "record": "原记录编号",
           "recorded_at": "记录时间", "villages": "村庄", "withdrawn": "撤回的通知",
           "etr": "预计恢复", "cleared": "撤销的预计恢复时间", "devices": "故障设备",
           "device": "故障设备", "set_by": "设置人", "reason": "原因", "cancelled": "停电取消",
           "crew": "班组", "crew_told": "班组", "feeder": "线路", "deadline": "到达时限",
           "area_type": "区域类型", "priority": "优先级", "distance_km": "距离（公里）",
           "eta": "预计到达", "preempts": "抢占（暂停）事件", "reassigned_to": "改派至事件",
           "already_told": "已通知过的村庄", "event_id": "记录编号", "start": "开始",
           "end": "结束", "stamped_start": "原记录开始时间", "closed_incident": "已结束的事件",
           "lat": "纬度", "lon": "经度", "cause": "原因", "file": "照片", "village": "村庄",
           "area": "台区", "cause_category": "原因分类", "said": "联络人反馈",
           "against": "依据"},
    "en": {"transformers": "areas", "customers": "customers", "records": "records",
           "unreleased": "areas whose meters' power-off the AMI screen holds (not released)",
           "not_fed": "areas confirmed off the devices do not feed (closed anyway)",
           "unconfirmed": "areas back unconfirmed", "from": "from", "to": "to",
           "was": "fault point was", "now": "fault point now", "by": "by",
           "record": "earlier record", "recorded_at": "recorded", "villages": "villages",
           "withdrawn": "notices withdrawn", "etr": "expected back",
           "cleared": "expected restoration taken back", "devices": "devices",
           "device": "device", "set_by": "set by", "reason": "reason",
           "cancelled": "called off", "crew": "crew", "crew_told": "crew",
           "feeder": "feeder", "deadline": "arrival deadline", "area_type": "area type",
           "priority": "priority", "distance_km": "distance (km)", "eta": "expected arrival",
           "preempts": "pulled off", "reassigned_to": "reassigned to",
           "already_told": "villages told already", "event_id": "record",
           "start": "start", "end": "end", "stamped_start": "record's start",
           "closed_incident": "ended incident", "lat": "lat", "lon": "lon", "cause": "cause",
           "file": "photo", "village": "village", "area": "area",
           "cause_category": "cause category", "said": "liaison said", "against": "against"},
}

#: A key's word in one step where it means something else than elsewhere.
STEP_WORDS: Mapping[str, Mapping[tuple[str, str], str]] = {
    "zh": {("continued", "by"): "转入事件", ("continued_undone", "by"): "已取消的事件",
           ("reopened", "by"): "再次停电事件", ("reissued", "by"): "新记录编号",
           ("device_set_dropped", "by"): "设置人", ("device_set_dropped", "was"): "原设置的故障点",
           ("stood_down", "to"): "改派班组", ("etr_cleared", "etr"): "现预计恢复",
           ("device_cleared", "devices"): "撤销的故障点",
           ("etr_changed", "from"): "原预计恢复", ("etr_changed", "to"): "新预计恢复"},
    "en": {("continued", "by"): "off in", ("continued_undone", "by"): "called-off incident",
           ("reopened", "by"): "off again in", ("reissued", "by"): "new record",
           ("device_set_dropped", "by"): "set by", ("device_set_dropped", "was"): "set was",
           ("stood_down", "to"): "sent to", ("etr_cleared", "etr"): "expected back now",
           ("device_cleared", "devices"): "devices taken back",
           ("etr_changed", "from"): "was expected back", ("etr_changed", "to"): "expected back"},
}

#: The operator's explicit yes or no, as what it means (an empty word: nothing to say).
FLAG_WORDS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "zh": {"again": ("恢复后再次失电（另计一次停电）", "恢复记录有误（停电持续，不另计）"),
           "false_alarm": ("误报：未停电（不计停电）", "非误报（已报停电的台区照计）"),
           "amended": ("更正销号", ""), "outside_area": ("非本线路班组", ""),
           "named": ("指定班组", "自动选派"), "told": ("已通知班组", "班组未曾接到派工")},
    "en": {"again": ("lost again after it came back (another outage spell)",
                     "the restoration was a mistake (the outage carried on)"),
           "false_alarm": ("false alarm: no supply was lost (nothing counts)",
                           "not a false alarm (the areas reported off count)"),
           "amended": ("close-out corrected", ""), "outside_area": ("outside its feeders", ""),
           "named": ("crew chosen", "crew chosen automatically"),
           "told": ("the crew had been told", "the crew had not been told")},
}

#: Coded values in words (``step:key`` for a key coded in one step only).
VALUE_WORDS: Mapping[str, Mapping[tuple[str, str], str]] = {
    "zh": {("crew_told", "power_back"): "已告知恢复送电", ("said", "field_back"): "已来电",
           ("against", "meters"): "电表仍报停电", ("stood_down:reason", "cancelled"): "停电取消",
           ("stood_down:reason", "reassigned"): "改派其他停电"},
    "en": {("crew_told", "power_back"): "told power is back", ("said", "field_back"): "power back",
           ("against", "meters"): "the meters still say off",
           ("stood_down:reason", "cancelled"): "outage called off",
           ("stood_down:reason", "reassigned"): "sent to other work"},
}

#: Keys whose values are ids of the topology (areas, devices, villages, crews, feeders).
NAMED_KEYS = frozenset({"transformers", "unreleased", "not_fed", "unconfirmed", "area",
                        "devices", "device", "was", "now", "villages", "already_told",
                        "village", "crew", "to", "feeder"})

#: Keys naming devices: the id beside the name (the close-out takes either, and several
#: devices may share a name, 1号开关).
DEVICE_KEYS = frozenset({"devices", "device", "was", "now"})

Shown = Callable[[Any, str], str]


def detail_parts(details: Mapping[str, Any], stage: str, language: str,
                 topology: Topology | None, shown: Shown) -> list[str]:
    """Each key of ``details`` with a value, in ``language``'s words (``shown``: how a
    plain value reads, by key)."""
    words = DETAIL_WORDS.get(language, DETAIL_WORDS["en"])
    flags = FLAG_WORDS.get(language, FLAG_WORDS["en"])
    colon, comma = ("：", "、") if language == "zh" else (": ", ", ")
    parts = []
    for key, value in details.items():
        if value in (None, "", []):
            continue
        if key in flags and isinstance(value, bool):
            said = flags[key][0 if value else 1]
            if said:
                parts.append(said)
            continue
        if key == "device" and value in (details.get("devices") or ()):
            continue  # the first of the devices listed
        values = value if isinstance(value, list) else [value]
        text = comma.join(_value(key, v, language, topology, shown, stage) for v in values)
        name = STEP_WORDS.get(language, {}).get((stage, key)) or words.get(key)
        parts.append(f"{name}{colon}{text}" if name else f"{key}: {text}")
    return parts


def _value(key: str, value: Any, language: str, topology: Topology | None,
           shown: Shown, stage: str = "") -> str:
    words = VALUE_WORDS.get(language, {})
    coded = words.get((key, str(value))) or words.get((f"{stage}:{key}", str(value)))
    if coded is not None:
        return coded
    if key == "area_type":
        return label(AREA_TYPE_LABELS, language, str(value))
    if isinstance(value, bool):
        return ("是" if value else "否") if language == "zh" else ("yes" if value else "no")
    if key in NAMED_KEYS and isinstance(value, str) and topology is not None:
        name = topology_name(topology, value)
        if name is not None and key in DEVICE_KEYS and name != value:
            return f"{name}（{value}）" if language == "zh" else f"{name} ({value})"
        if name is not None:
            return name
    return shown(value, key)


def topology_name(topology: Topology, ref: str) -> str | None:
    """What the bundle calls ``ref`` (an area, a device, a village, a crew, a feeder), its id
    when it has no name; ``None`` when the bundle has no such thing (a time, an incident)."""
    node = topology.nodes.get(ref)
    if node is not None:
        return node.name or ref
    village = topology.villages.get(ref)
    if village is not None:
        return village.name or ref
    crew = next((c for c in topology.crews if c.id == ref), None)
    if crew is not None:
        return crew.name or ref
    return topology.feeder_names.get(ref)
