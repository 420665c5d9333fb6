"""Incidents as an operator reads them on a terminal: ``incidents list``, ``incidents show``
and ``calls list``.

Pure: given the stored incident row, its notices and log, the topology and the time zone, return
text. Local times, words for kinds and stages (:mod:`outage_sentinel.labels`), names instead of
ids, affected areas split into confirmed (reported by a source) and inferred, the areas kept
off because the meters say off against a record's end or a liaison's 已来电 (with who said
back), phone numbers masked. ``--json`` keeps the machine form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from outage_sentinel.crew import device_bases, joint_label, percent_label, reported_elsewhere
from outage_sentinel.incidents import (
    FIELD_SOURCE,
    Incident,
    contradicted_reports,
    disputed_areas,
    dropped_areas,
    held_disputes,
)
from outage_sentinel.labels import KIND_LABELS, STAGE_LABELS, STATUS_LABELS, label
from outage_sentinel.logs import mask_phones
from outage_sentinel.topology import Topology

_WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {"feeder": "线路", "device": "故障点", "inferred_device": "推断故障点",
           "set_device": "故障点（运行人员确认）", "set_by": "设置人",
           "probability": "概率", "pending": "待定", "since": "开始", "etr": "预计恢复",
           "end": "结束", "stage": "阶段", "crew": "抢修班组", "cause": "原因",
           "confirmed": "已确认停电", "possible": "可能受影响", "restored": "已恢复",
           "unconfirmed": "恢复待确认（记录已结束，无来电证据）",
           "dropped": "恢复待确认（已移出停电记录，疑似转供，无来电证据）",
           "continued": "未确认恢复，仍停电，转入",
           "villages": "涉及村庄", "customers": "户", "areas": "个台区", "none": "无",
           "notices": "通知", "log": "处理记录", "unknown": "未能识别", "area_text": "停电范围原文",
           "withdrawn": "已撤回推断（未通知联络人）", "reopens": "重复停电，关联",
           "dispatched": "在途", "on_site": "已到场",
           "unexplained": "已报停电、不在故障点下游（按误报处理或另有故障，请核实）",
           "named_elsewhere": "数据源报告动作、未列为故障点（请核实）",
           "alive_below": "其下表计报告有电：",
           "disputed": "电表仍报停电，未按恢复处理",
           "disputed_held": "电表仍报停电（暂未确认），未按恢复处理",
           "said_back": "称已恢复", "liaison": "联络人"},
    "en": {"feeder": "Feeder", "device": "Fault point", "inferred_device": "Estimated fault point",
           "set_device": "Fault point (set by the command centre)", "set_by": "by",
           "probability": "probability", "pending": "unknown", "since": "Since",
           "etr": "Expected back", "end": "Ended", "stage": "Stage", "crew": "Crew",
           "cause": "Cause", "confirmed": "Confirmed off", "possible": "Possibly affected",
           "restored": "Back", "villages": "Villages", "customers": "customers",
           "unconfirmed": "Back unconfirmed (records ended, no evidence of supply)",
           "dropped": "Back unconfirmed (dropped from a record still open, perhaps switched; "
                      "no evidence of supply)",
           "continued": "Never confirmed back, off in",
           "areas": "areas", "none": "none", "notices": "Notices", "log": "Log",
           "unknown": "Not recognised", "area_text": "Scope as reported",
           "withdrawn": "Inference withdrawn (liaisons not told)", "reopens": "Reopens",
           "dispatched": "on its way", "on_site": "on site",
           "unexplained": "Reported off, not below the fault point (read as false, or another "
                          "fault: check)",
           "named_elsewhere": "Reported operated by a source, not taken as the fault point (check)",
           "alive_below": "meters below it report power:",
           "disputed": "Meters still report off, not taken as back",
           "disputed_held": "Meters still report off (not yet confirmed), not taken as back",
           "said_back": "said back", "liaison": "liaison"},
}


def local(value: datetime | None, tz: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM`` in ``tz``, or ``-``."""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def incident_line(row: Mapping[str, Any], topology: Topology, tz: tzinfo,
                  language: str = "zh") -> str:
    """One line of ``incidents list``: id, stage, kind, feeder, start, customers, villages."""
    inc = Incident.from_json(row["state"])
    return (f"{row['id']}  {label(STAGE_LABELS, language, str(row.get('stage') or inc.stage)):6}"
            f"  {label(KIND_LABELS, language, inc.kind):6}  "
            f"{topology.feeder_names.get(inc.feeder, inc.feeder):12}  {local(inc.start, tz)}  "
            f"{inc.estimate.customers:>6} {_WORDS[_lang(language)]['customers']}  "
            f"{_village_names(topology, inc.estimate.villages, 4)}")


def incident_text(row: Mapping[str, Any], notices: Sequence[Any], log: Sequence[Mapping[str, Any]],
                  topology: Topology, tz: tzinfo, language: str = "zh") -> str:
    """The whole of ``incidents show``: what is off, since when, who was told, what was done."""
    w = _WORDS[_lang(language)]
    inc = Incident.from_json(row["state"])
    lines = [
        f"{inc.id}  {label(KIND_LABELS, language, inc.kind)}  "
        f"{label(STATUS_LABELS, language, inc.status)}  (rev {inc.revision})",
        f"{w['feeder']}: {topology.feeder_names.get(inc.feeder, inc.feeder)}",
        _device_line(inc, topology, w, language),
        f"{w['since']}: {local(inc.start, tz)}   {w['etr']}: {local(inc.etr, tz)}"
        + (f"   {w['end']}: {local(inc.end, tz)}" if inc.end else ""),
        _stage_line(row, inc, topology, w, language),
        f"{w['villages']}: {_village_names(topology, inc.estimate.villages, 12)}  "
        f"({inc.estimate.customers} {w['customers']})",
    ]
    lines += _area_lines(inc, topology, w)
    lines += _dispute_lines(inc, topology, w)
    lines += _named_elsewhere_lines(inc, topology, w)
    lines += _remark_lines(inc, topology, w)
    lines.append(f"{w['log']}:")
    lines += [f"  {local(e['at'], tz)}  {label(STAGE_LABELS, language, str(e['stage'])):6} "
              f"{mask_phones(str(e.get('actor') or ''))}"
              + (f"  {mask_phones(str(e['note']))}" if e.get("note") else "") for e in log]
    lines.append(f"{w['notices']}:")
    lines += [f"  {m.status:8} {m.purpose:10} {m.channel:10} {mask_phones(m.target):24} "
              f"{local(m.sent_at, tz) if m.sent_at else ''}" for m in notices]
    return "\n".join(lines)


def _stage_line(row: Mapping[str, Any], inc: Incident, topology: Topology,
                w: Mapping[str, str], language: str) -> str:
    """The stage, the crew (and where it is, when the stage does not say) and the cause."""
    stage = str(row.get("stage") or inc.stage)
    return (f"{w['stage']}: {label(STAGE_LABELS, language, stage)}"
            + (f"   {w['crew']}: {_crew_name(topology, row.get('crew_id'))}"
               # where the crew is, when the stage does not say (partly restored)
               + (f" · {w[inc.crew_progress]}" if inc.crew_progress and inc.crew_progress != stage
                  else "")
               if row.get("crew_id") else "")
            + (f"   {w['cause']}: {row.get('cause_category') or inc.cause}"
               if (row.get("cause_category") or inc.cause) else ""))


def _remark_lines(inc: Incident, topology: Topology, w: Mapping[str, str]) -> list[str]:
    """What else an operator must know of ``inc``: areas reported off the fault point does
    not explain, inferences withdrawn, the scope as reported, references not recognised, the
    incident it reopens."""
    lines = []
    stray = contradicted_reports(topology, inc)
    if stray:
        lines.append(f"{w['unexplained']}: {_area_names(topology, stray)}")
    if inc.withdrawn_villages:
        lines.append(f"{w['withdrawn']}: {_village_names(topology, inc.withdrawn_villages, 12)}")
    if inc.area_text:
        lines.append(f"{w['area_text']}: {mask_phones(inc.area_text)}")
    if inc.unknown_refs:
        lines.append(f"{w['unknown']}: {', '.join(inc.unknown_refs[:10])}")
    if inc.parent_id:
        lines.append(f"{w['reopens']}: {inc.parent_id}")
    return lines


def _lang(language: str) -> str:
    return language if language in _WORDS else "en"


def _device_line(inc: Incident, topology: Topology, w: Mapping[str, str],
                 language: str = "zh") -> str:
    """The fault point, each device as sure as it is (:func:`device_bases`): set by the
    command centre, named by a source, or inferred with the probability (of a set of several,
    the set's: :func:`joint_label`)."""
    devices = inc.estimate.devices
    if not devices:
        return f"{w['device']}: {w['pending']}"

    def names(ds: Sequence[str]) -> str:
        return "、".join(topology.nodes[d].name or d if d in topology.nodes else d for d in ds)

    if inc.device_set:
        return f"{w['set_device']}: {names(devices)} ({w['set_by']} {mask_phones(inc.device_set_by)})"
    bases = device_bases(inc)
    named = [d for d in devices if bases[d] != "inferred"]
    guessed = [d for d in devices if bases[d] == "inferred"]
    parts = [f"{w['device']}: {names(named)}"] if named else []
    p = inc.estimate.probability
    if guessed:
        joint = "" if p is None else joint_label(topology, devices, p, language,
                                                 guessed[0] if len(guessed) == 1 else None)
        said = joint or (f"{w['probability']} {percent_label(p, language)}" if p is not None
                         else "")
        parts.append(f"{w['inferred_device']}: {names(guessed)}" + (f" ({said})" if said else ""))
    return "；".join(parts) if language == "zh" else "; ".join(parts)


def _named_elsewhere_lines(inc: Incident, topology: Topology, w: Mapping[str, str]) -> list[str]:
    """The devices a source reported operated that the fault point leaves out
    (:func:`reported_elsewhere`), with the areas below them whose meters report power."""
    elsewhere = reported_elsewhere(topology, inc)
    if not elsewhere:
        return []
    return [f"{w['named_elsewhere']}: " + "、".join(
        (topology.nodes[d].name or d) + (f" ({w['alive_below']} {_area_names(topology, a)})"
                                         if a else "") for d, a in elsewhere.items())]


def _area_lines(inc: Incident, topology: Topology, w: Mapping[str, str]) -> list[str]:
    def names(areas: Sequence[str]) -> str:
        return _area_names(topology, areas) or w["none"]

    off = [t for t in inc.estimate.transformers if t not in inc.restored]
    confirmed = [t for t in off if inc.mark(t) == "reported"]
    possible = [t for t in off if inc.mark(t) != "reported"]
    back = [t for t in inc.estimate.transformers
            if t in inc.restored and t not in inc.unconfirmed and t not in inc.continued]
    dropped = set(dropped_areas(inc))
    out = [f"{w['confirmed']} ({len(confirmed)} {w['areas']}): {names(confirmed)}"]
    for key, areas in (("possible", possible), ("restored", back),
                       ("dropped", [t for t in inc.unconfirmed if t in dropped]),
                       ("unconfirmed", [t for t in inc.unconfirmed if t not in dropped])):
        if areas:
            out.append(f"{w[key]} ({len(areas)} {w['areas']}): {names(areas)}")
    for by in dict.fromkeys(inc.continued.values()):  # in the order they were taken on
        areas = [t for t, i in inc.continued.items() if i == by]
        out.append(f"{w['continued']} {by} ({len(areas)} {w['areas']}): {names(areas)}")
    return out


def _dispute_lines(inc: Incident, topology: Topology, w: Mapping[str, str]) -> list[str]:
    """The areas kept off because their meters say off against a record's end or a
    liaison's 已来电 (:func:`disputed_areas`): a released outage, or a power-off the AMI
    screen holds, not yet released (:func:`held_disputes`: 暂未确认); with who said back
    (a record as ``source:id``, a liaison's answer as the liaison)."""
    disputed = disputed_areas(inc)
    held = set(held_disputes(inc))
    out = []
    for key, areas in (("disputed", [t for t in disputed if t not in held]),
                       ("disputed_held", [t for t in disputed if t in held])):
        if not areas:
            continue
        said = dict.fromkeys(w["liaison"] if k.split("|", 1)[0] == FIELD_SOURCE
                             else k.replace("|", ":", 1) for t in areas for k in disputed[t])
        out.append(f"{w[key]} ({len(areas)} {w['areas']}): {_area_names(topology, areas)}"
                   f" ({w['said_back']}: {mask_phones(', '.join(said))})")
    return out


def _village_names(topology: Topology, villages: Sequence[str], limit: int) -> str:
    names = [topology.villages[v].name if v in topology.villages else v for v in villages]
    more = f" … +{len(names) - limit}" if len(names) > limit else ""
    return "、".join(names[:limit]) + more if names else "-"


def _crew_name(topology: Topology, crew_id: Any) -> str:
    crew = next((c for c in topology.crews if c.id == crew_id), None)
    return f"{crew.name} ({crew_id})" if crew is not None and crew.name else str(crew_id)


def call_line(event: Any, resolved: Any, incident_id: str | None, topology: Topology,
              tz: tzinfo, language: str = "zh") -> str:
    """One line of ``calls list``: when, which order, where it was placed (area and village,
    or why not), its incident; phone numbers masked."""
    zh = language == "zh"
    areas = resolved.transformers
    if areas:
        names = [topology.nodes[t].name or t for t in areas[:3]]
        villages = _village_names(topology, topology.villages_of(areas), 2)
        where = f"{'、'.join(names)}（{villages}）"
    else:
        feeder = topology.feeder_names.get(resolved.feeder, resolved.feeder or "")
        where = ("未定位" if zh else "unplaced") + (
            f"（{'线路' if zh else 'feeder'} {feeder}）" if feeder else "")
    said = "；".join(x for x in (event.area_text, event.cause, "、".join(event.transformers)) if x)
    return (f"{local(event.start, tz)}  {event.source}:{event.event_id}  {where}  "
            f"{incident_id or '-'}  {mask_phones(said)[:120]}")


def _area_names(topology: Topology, areas: Sequence[str], most: int = 12) -> str:
    shown = [topology.nodes[t].name or t if t in topology.nodes else t for t in areas[:most]]
    return "、".join(shown) + (f" … +{len(areas) - most}" if len(areas) > most else "")
