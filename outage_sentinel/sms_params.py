"""SMS template parameters, one fixed set per purpose (pure).

An SMS is a template registered with Aliyun plus a ``TemplateParam`` JSON object, so unlike a
robot message its text cannot say anything the template does not: a restoration needs its own
template, and every fact the reader needs (cause, expected restoration, restored time) must be
a variable. Each purpose below has one builder returning exactly its documented keys
(docs/channels.md, "SMS templates per purpose"), always all of them, always strings (Aliyun
requires string values), never empty (a missing fact reads "待定"/"待查"; a start or a
restored time that may be hours wrong, "待核实": :func:`start_value`, :func:`restored_value`).
With field links on, a liaison's ``outage``, ``update``, ``restored`` and ``unconfirmed``
carry one more, ``link`` (:func:`with_link`). Both SMS types
(:data:`outage_sentinel.channels.base.SMS_CHANNEL_TYPES`) send these sets: Aliyun (``sms``)
by name, Tencent Cloud (``tencent_sms``) positionally, in the order its config's ``params``
give for the template's ``{1}``, ``{2}``….

Length: Aliyun caps one variable of a notification template at 35 characters unless the
limit is lifted for the template ("单个模板变量的长度可以超过默认的 35 字符上限" only after
lifting it; the whole SMS, signature and fixed text included, stays within 500 characters —
help.aliyun.com/zh/document_detail/3041859.html; variable rules per attribute:
help.aliyun.com/document_detail/2806243.html). Aliyun counts characters, not bytes, so every
value is cut to :data:`VARIABLE_LIMIT` characters; lists (villages, care households) are cut
whole items at a time and end with the total ("等3户"), so a cut is never silent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from outage_sentinel.priority import SPECIAL_CARE_TAGS

#: Default per-variable limit of an Aliyun notification template, in characters.
VARIABLE_LIMIT = 35

#: The SMS purposes, each with its own template code key (``channels.<sms>.templates``).
#: ``cancelled_begun``: planned or temporary work called off after it began (its text cannot
#: say ``cancelled``'s 届时正常供电: :func:`sms_purpose`).
PURPOSES = ("outage", "planned", "update", "restored", "unconfirmed", "cancelled",
            "cancelled_begun", "corrected", "reminder", "care", "dispatch", "command")

#: A purpose a channel may have no template of its own for, and the purpose whose template it
#: is sent on then (the same parameters): a template added in an upgrade must not stop the
#: daemon until the provider approves the new one. ``check`` notes it.
FALLBACK_PURPOSES = {"cancelled_begun": "cancelled"}


def purpose_on(purpose: str, configured: Collection[str]) -> str:
    """The purpose whose template an SMS of ``purpose`` is sent on, given the purposes a
    channel has templates for (``configured``): its own, else its fallback's when that has
    one (:data:`FALLBACK_PURPOSES`)."""
    fallback = FALLBACK_PURPOSES.get(purpose)
    if purpose in configured or fallback is None or fallback not in configured:
        return purpose
    return fallback

_LABELS: dict[str, dict[str, str]] = {
    "zh": {"unknown_time": "待定", "unverified_time": "待核实", "unknown_cause": "待查",
           "none": "无", "sep": "、",
           "more_households": "等{n}户", "more_villages": "等{n}个村", "more_areas": "等{n}个台区",
           "more": "等{n}项"},
    "en": {"unknown_time": "TBD", "unverified_time": "to be confirmed",
           "unknown_cause": "under investigation", "none": "none",
           "sep": ", ", "more_households": " ({n} in all)", "more_villages": " ({n} in all)",
           "more_areas": " ({n} in all)",
           "more": " ({n} in all)"},
}

#: Special-care tags, short: a 35-character variable has no room for
#: :data:`outage_sentinel.priority.TAG_LABELS` ("生命支持设备用户").
_TAGS: dict[str, dict[str, str]] = {
    "zh": {"life_support": "生命支持", "elderly_alone": "独居老人"},
    "en": {"life_support": "life support", "elderly_alone": "elderly alone"},
}

#: Most urgent first (a life-support household without power is the emergency), as priority
#: orders them.
_TAG_ORDER = {tag: i for i, tag in enumerate(SPECIAL_CARE_TAGS)}


def _labels(language: str) -> Mapping[str, str]:
    return _LABELS.get(language, _LABELS["zh"])


def fit(value: object, limit: int = VARIABLE_LIMIT) -> str:
    """``value`` as a string of at most ``limit`` characters (cut ones end with "…")."""
    text = " ".join(str(value).split())  # SMS variables are one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pack(items: Sequence[str], total: int, more: str, sep: str = "、",
         limit: int = VARIABLE_LIMIT) -> str:
    """As many whole ``items`` as fit in ``limit`` characters, followed by ``more`` (``{n}`` =
    ``total``) when some are left out; the first item alone is cut if even it does not fit."""
    shown: list[str] = []
    for item in items:
        tail = more.format(n=total) if len(shown) + 1 < total else ""
        if len(sep.join([*shown, item]) + tail) > limit:
            break
        shown.append(item)
    if not shown and items:
        tail = more.format(n=total) if total > 1 else ""
        return fit(items[0], limit - len(tail)) + tail
    return sep.join(shown) + (more.format(n=total) if len(shown) < total else "")


def _time(value: str | None, language: str) -> str:
    return fit(value) if value else _labels(language)["unknown_time"]


def start_value(start: str | None, unverified: bool, language: str = "zh") -> str | None:
    """The ``start`` an SMS states: ``start``; for a start that may be hours wrong
    (``unverified``: only an AMI source flagged as read in the wrong zone gives it,
    :func:`outage_sentinel.liaison.stated_start`) "待核实" — in doubt, not merely unknown
    (待定), and never the time as read."""
    return _labels(language)["unverified_time"] if unverified else start


def restored_value(restored: str | None, unverified: bool, language: str = "zh") -> str | None:
    """The ``restored`` (``ended``) an SMS states: ``restored``; "待核实" for a time only an
    AMI source flagged as read in the wrong zone gives (its meters' power-on, as read hours
    wrong: :func:`outage_sentinel.liaison.stated_restored`), as :func:`start_value` does."""
    return start_value(restored, unverified, language)


#: The ``cause`` of a village's outage or update SMS when the outage system's records of it
#: all ended (:func:`outage_sentinel.liaison.records_over`: restored, cancelled, or ended —
#: some each) and the meters still hold it off: their closing words are no cause of it.
_RECORDS_OVER: dict[str, dict[str, str]] = {
    "zh": {"restored": "已恢复", "cancelled": "已取消", "ended": "已结束",
           "cause": "待查（停电信息系统报{word}，电表仍显示停电）"},
    "en": {"restored": "over", "cancelled": "cancelled", "ended": "ended",
           "cause": "records {word}, meters still off"},
}


def records_over_cause(over: str, language: str = "zh") -> str:
    """The ``cause`` an SMS states of a village its records no longer report off and its
    meters still do (``over``: how the records ended, :data:`_RECORDS_OVER`; "" when they
    have not): "待查（停电信息系统报已取消，电表仍显示停电）"; "" for ``over`` ""."""
    if not over:
        return ""
    words = _RECORDS_OVER.get(language, _RECORDS_OVER["zh"])
    return fit(words["cause"].format(word=words.get(over, words["ended"])))


def _cause(value: str | None, language: str) -> str:
    return fit(value) if value and value.strip() else _labels(language)["unknown_cause"]


#: ``households`` when only some of them are in areas a source reported off (the rest
#: inferred, or named imprecisely): the registered text goes on with 户 / households.
_SOME_POSSIBLE = {"zh": ("确认{c}户、可能另有{p}", "可能{p}"),
                  "en": ("{c} confirmed, possibly {p} more", "possibly {p}")}


def households_value(households: int, confirmed: int | None = None,
                     language: str = "zh") -> str:
    """The ``households`` variable: the count, or, when only ``confirmed`` of them are in
    areas a source reported off, how many are sure and how many only possibly off ("确认100户、
    可能另有50" before the template's 户): a number alone would state an inference as fact."""
    if confirmed is None or confirmed >= households:
        return str(households)
    some, none = _SOME_POSSIBLE.get(language, _SOME_POSSIBLE["zh"])
    possible = households - max(confirmed, 0)
    return some.format(c=confirmed, p=possible) if confirmed > 0 else none.format(p=possible)


def outage_params(*, village: str, feeder: str, kind: str, start: str | None,
                  etr: str | None, cause: str | None, households: int, incident: str,
                  language: str = "zh", confirmed: int | None = None) -> dict[str, str]:
    """Fault (or unplanned) outage: ``village feeder kind start etr cause households incident``
    (``households`` says how many are only possibly off, :func:`households_value`)."""
    return {"village": fit(village), "feeder": fit(feeder), "kind": fit(kind),
            "start": _time(start, language), "etr": _time(etr, language),
            "cause": _cause(cause, language),
            "households": households_value(households, confirmed, language),
            "incident": fit(incident)}


def planned_params(*, village: str, feeder: str, kind: str, start: str | None,
                   end: str | None, cause: str | None, households: int, incident: str,
                   language: str = "zh", confirmed: int | None = None) -> dict[str, str]:
    """Planned or temporary work announced: ``village feeder kind start end cause households
    incident`` (``cause`` = the work's reason)."""
    return {"village": fit(village), "feeder": fit(feeder), "kind": fit(kind),
            "start": _time(start, language), "end": _time(end, language),
            "cause": _cause(cause, language),
            "households": households_value(households, confirmed, language),
            "incident": fit(incident)}


def update_params(*, village: str, feeder: str, kind: str, start: str | None,
                  etr: str | None, cause: str | None, households: int, incident: str,
                  language: str = "zh", confirmed: int | None = None) -> dict[str, str]:
    """New times for an outage already announced: same keys as :func:`outage_params`."""
    return outage_params(village=village, feeder=feeder, kind=kind, start=start, etr=etr,
                         cause=cause, households=households, incident=incident,
                         language=language, confirmed=confirmed)


def restored_params(*, village: str, feeder: str, start: str | None, restored: str | None,
                    incident: str, language: str = "zh") -> dict[str, str]:
    """Power back in the village: ``village feeder start restored incident``."""
    return {"village": fit(village), "feeder": fit(feeder), "start": _time(start, language),
            "restored": _time(restored, language), "incident": fit(incident)}


def unconfirmed_params(*, village: str, feeder: str, start: str | None, ended: str | None,
                       areas: Sequence[str], households: int, incident: str,
                       language: str = "zh") -> dict[str, str]:
    """The village's ``areas`` (names) left the outage's records and are not confirmed back:
    the records ended and no record named them (only possibly affected), or a record still
    open stopped naming them (:func:`outage_sentinel.incidents.dropped_areas`, perhaps
    supplied from another line now). ``village feeder start ended areas households
    incident`` (``ended``: when they left the records — the last record's end, or the edit
    that dropped them, never a claim that an open record ended; ``households`` = theirs;
    ``areas`` cut whole names at a time with the total). The liaison is asked whether the
    power is back."""
    labels = _labels(language)
    return {"village": fit(village), "feeder": fit(feeder), "start": _time(start, language),
            "ended": _time(ended, language),
            "areas": pack(list(areas), len(areas), labels["more_areas"], labels["sep"])
            or labels["none"],
            "households": str(households), "incident": fit(incident)}


def cancelled_params(*, village: str, feeder: str, kind: str, start: str | None,
                     incident: str, language: str = "zh") -> dict[str, str]:
    """Announced work called off (the ``cancelled`` template before it began, the
    ``cancelled_begun`` one after), or (the ``corrected`` template) a notice taken back: the
    village is not in the outage after all, or the fault it was told of was called off (a
    duplicate or false record): ``village feeder kind start incident``."""
    return {"village": fit(village), "feeder": fit(feeder), "kind": fit(kind),
            "start": _time(start, language), "incident": fit(incident)}


def reminder_params(*, village: str, feeder: str, kind: str, start: str | None,
                    end: str | None, hours: float, households: int, incident: str,
                    language: str = "zh", confirmed: int | None = None) -> dict[str, str]:
    """Reminder before planned work: ``village feeder kind start end hours households
    incident`` (``hours`` = how long before the start, "24"; the deliverer sets it again
    when the SMS goes, :func:`with_hours`)."""
    return {"village": fit(village), "feeder": fit(feeder), "kind": fit(kind),
            "start": _time(start, language), "end": _time(end, language),
            "hours": hours_value(hours),
            "households": households_value(households, confirmed, language),
            "incident": fit(incident)}


def hours_value(hours: float) -> str:
    """The reminder's ``hours`` ("将在约{hours}小时后开始"): whole hours, tenths under one
    hour ("0.8"), never negative."""
    hours = max(hours, 0.0)
    return f"{round(hours, 1 if hours < 1 else 0):g}"


def with_hours(params: Mapping[str, Any], hours: float) -> dict[str, Any]:
    """``payload["params"]`` of a reminder with its SMS ``hours`` as it is when the SMS goes
    (the reminder may have waited out quiet hours or a channel down since it was queued:
    "约24小时后" read 16 h before the work is a wrong time); other params as they are."""
    values = params.get("sms")
    if params.get("sms_template") != "reminder" or not isinstance(values, Mapping):
        return dict(params)
    return {**params, "sms": {**values, "hours": hours_value(hours)}}


def without_etr(params: Mapping[str, Any], language: str = "zh") -> dict[str, Any]:
    """``payload["params"]`` of a notice whose expected restoration passed before it went:
    the SMS ``etr`` 待定 (as the planner writes one it does not know) and the digest's
    ``etr`` empty — "预计<a time gone by>恢复送电" is no promise."""
    values = params.get("sms")
    out: dict[str, Any] = {**params, "etr": ""}
    if isinstance(values, Mapping) and "etr" in values:
        out["sms"] = {**values, "etr": _labels(language)["unknown_time"]}
    return out


def care_params(*, village: str, households: Sequence[Mapping[str, object]],
                total: int, start: str | None, etr: str | None, incident: str,
                language: str = "zh",
                tag_counts: Mapping[str, int] | None = None) -> dict[str, str]:
    """Special-care list for the village liaison (an individual recipient only):
    ``village count tags households start etr incident``.

    ``households`` are dicts with ``name``, ``phone`` (in full: the liaison must call them)
    and ``tags`` (codes), most urgent first, as the channel's cap cut the list; ``total``
    counts all of them, listed or not, and so must ``tag_counts`` (households per tag; None:
    counted over ``households``, right only when none was cut): counted over the 8 listed,
    "本村13户（生命支持8户）" hid 2 of 10 life-support households.
    ``households`` packs "name+phone" items into one variable ("王秀英13800001111、李建国…等3户");
    ``tags`` gives the households per tag ("生命支持1户、独居老人2户").
    """
    labels = _labels(language)
    tag_names = _TAGS.get(language, _TAGS["zh"])
    counts = dict(tag_counts) if tag_counts is not None else _listed_tags(households)
    unit = "户" if language == "zh" else ""
    tags = [f"{tag_names.get(t, t)}{n}{unit}" if language == "zh" else f"{tag_names.get(t, t)} {n}"
            for t, n in sorted(counts.items(), key=lambda kv: (_TAG_ORDER.get(kv[0], 9), kv[0]))]
    items = [f"{h.get('name') or '-'}{h.get('phone') or ''}" if language == "zh"
             else f"{h.get('name') or '-'} {h.get('phone') or ''}".strip() for h in households]
    return {"village": fit(village), "count": str(total),
            "tags": pack(tags, len(tags), labels["more"], labels["sep"]) or labels["none"],
            "households": pack(items, max(total, len(items)), labels["more_households"],
                               labels["sep"]) or labels["none"],
            "start": _time(start, language), "etr": _time(etr, language),
            "incident": fit(incident)}


def _listed_tags(households: Sequence[Mapping[str, object]]) -> dict[str, int]:
    """Households per tag among ``households`` (dicts with ``tags``, a list of codes)."""
    counts: dict[str, int] = {}
    for h in households:
        tags_of = h.get("tags")
        for tag in tags_of if isinstance(tags_of, (list, tuple)) else ():
            counts[str(tag)] = counts.get(str(tag), 0) + 1
    return counts


#: How sure a dispatch's fault point is, after its name (``device``): by whose word, and
#: the probability of an inference. A crew by SMS reads no other line of the dispatch.
_DEVICE_BASIS: dict[str, dict[str, str]] = {
    "zh": {"set": "（指挥中心确认）", "reported": "（已报告动作）", "inferred": "（推断）",
           "inferred_p": "（推断，可能性{p}）"},
    "en": {"set": " (confirmed)", "reported": " (reported operated)", "inferred": " (inferred)",
           "inferred_p": " (inferred, {p})"},
}


def device_value(device: str, basis: str = "", probability: str = "",
                 language: str = "zh") -> str:
    """The ``device`` variable: the fault point's name with how sure it is (``basis``:
    ``set``, ``reported`` or ``inferred``, with its ``probability`` label "约80%" if any),
    the qualifier kept whole when the name is cut; 待查 when there is none."""
    if not device:
        return _labels(language)["unknown_cause"]
    words = _DEVICE_BASIS.get(language, _DEVICE_BASIS["zh"])
    if basis in ("set", "reported"):
        suffix = words[basis]
    else:  # an inference, or a basis not known: never stated as fact
        suffix = words["inferred_p"].format(p=probability) if probability else words["inferred"]
    return fit(device, VARIABLE_LIMIT - len(suffix)) + suffix


#: ``customers`` of a dispatch when only some are in areas a source reported off: the
#: registered text goes on with 户 / customers ("共150（已确认50）户").
_CUSTOMERS_SOME = {"zh": ("{n}（已确认{c}）", "{n}（均未确认）"),
                   "en": ("{n} ({c} confirmed)", "{n} (none confirmed)")}


def customers_value(customers: int, confirmed: int | None = None,
                    language: str = "zh") -> str:
    """The ``customers`` variable of a dispatch: the count, or, when only ``confirmed`` of
    them are in areas a source reported off, the count with how many are sure ("150（已确认
    50）", none sure: "150（均未确认）"), as the crew's text says: a number alone would state an
    inference as fact."""
    if confirmed is None or confirmed >= customers:
        return str(customers)
    some, none = _CUSTOMERS_SOME.get(language, _CUSTOMERS_SOME["zh"])
    return some.format(n=customers, c=confirmed) if confirmed > 0 else none.format(n=customers)


def dispatch_params(*, incident: str, priority: int, deadline: str | None, feeder: str,
                    device: str, villages: Sequence[str], customers: int, cause: str | None,
                    care: int, language: str = "zh", basis: str = "",
                    probability: str = "", confirmed: int | None = None) -> dict[str, str]:
    """Crew dispatch: ``incident priority deadline feeder device villages customers cause
    care`` (``care`` = number of special-care households, listed in the crew's message;
    ``device`` says how sure the fault point is, :func:`device_value`; ``customers`` how
    many of them are sure, :func:`customers_value`)."""
    labels = _labels(language)
    return {"incident": fit(incident), "priority": str(priority),
            "deadline": _time(deadline, language), "feeder": fit(feeder),
            "device": device_value(device, basis, probability, language),
            "villages": pack(list(villages), len(villages), labels["more_villages"],
                             labels["sep"]) or labels["none"],
            "customers": fit(customers_value(customers, confirmed, language)),
            "cause": _cause(cause, language), "care": str(care)}


def with_link(values: Mapping[str, str], token: str) -> dict[str, str]:
    """``values`` and ``link``: the liaison's short link token, for the ``outage``, ``update``,
    ``restored`` and ``unconfirmed`` templates when field links are on. Carriers take a link only as fixed
    text of the template, so the template holds the board's address and the variable is the
    link's last part (``…/f/${link}``). A token is never cut (a cut link opens nothing)."""
    if len(token) > VARIABLE_LIMIT or not token:
        raise ValueError(f"a link token must be 1 to {VARIABLE_LIMIT} characters")
    return {**values, "link": token}


#: A crew's power-back ``summary``: power back (by whose word), the areas nobody confirmed,
#: and that its orders stand — all within the one variable.
_POWER_BACK: dict[str, dict[str, str]] = {
    "zh": {"back": "已恢复送电", "by": "（据{by}）", "unsure": "，{areas}来电未确认",
           "stands": "；派工未撤回", "count": "{n}个台区", "one": "1个台区"},
    "en": {"back": "Back", "by": " (per {by})", "unsure": "; {areas} unconfirmed",
           "stands": "; proceed", "count": "{n} areas", "one": "1 area"},
}


def _areas_within(names: Sequence[str], room: int, language: str) -> str:
    """``names`` in ``room`` characters: whole names, cut with the total, else the count."""
    labels, words = _labels(language), _POWER_BACK.get(language, _POWER_BACK["zh"])
    tail = labels["more_areas"].format(n=len(names)) if len(names) > 1 else ""
    if len(names[0]) + len(tail) <= room:
        return pack(list(names), len(names), labels["more_areas"], labels["sep"], room)
    return fit(words["count" if len(names) > 1 else "one"].format(n=len(names)), room)


def power_back_summary(by: str, unconfirmed: Sequence[str], language: str = "zh") -> str:
    """The ``command`` template's ``summary`` of a crew's power-back notice: what its first
    line cut to 35 characters would lose — the areas no ended record named (names, else their
    count; "已恢复送电（据feed），T2来电未确认；派工未撤回") and that the dispatch stands. Who
    said so (``by``) is dropped first when it does not fit."""
    words = _POWER_BACK.get(language, _POWER_BACK["zh"])
    unsure = ""
    if unconfirmed:
        room = VARIABLE_LIMIT - len(words["back"] + words["stands"]
                                    + words["unsure"].format(areas=""))
        unsure = words["unsure"].format(areas=_areas_within(unconfirmed, room, language))
    said = words["by"].format(by=" ".join(by.split())) if by.strip() else ""
    if len(words["back"] + said + unsure + words["stands"]) > VARIABLE_LIMIT:
        said = ""
    return words["back"] + said + unsure + words["stands"]


def command_params(*, summary: str, incident: str) -> dict[str, str]:
    """Command-centre messages (summaries, escalations, dead letters, reports) and a crew's
    stand-down and power-back by SMS: ``summary incident`` (``summary`` = the message's
    first line; a crew's power-back, :func:`power_back_summary`)."""
    # 【】 is reserved for the signature in an Aliyun SMS: "【故障停电】INC-1" → "故障停电 INC-1".
    plain = summary.replace("【", "").replace("】", " ")
    return {"summary": fit(plain) or "-", "incident": fit(incident) or "-"}


def sms_purpose(purpose: str, kind: str = "fault", begun: bool = False) -> str:
    """The SMS template purpose of an outbox purpose (``reminder_24h`` → ``reminder``; an
    outage notice of planned/temporary work → ``planned``; command-centre purposes →
    ``command``). ``begun``: the village's outage had begun when the notice was planned
    (work called off then is ``cancelled_begun``: the power may be off since its start, and
    ``cancelled``'s text says 届时正常供电, as the group notice says only of work ahead)."""
    if purpose == "outage" and kind in ("planned", "temporary"):
        return "planned"
    if purpose.startswith("reminder"):
        return "reminder"
    if purpose == "cancelled" and kind not in ("planned", "temporary"):
        # a fault record called off is no word that the power is on ("届时正常供电" is for
        # announced work): the village hears the notice it had was taken back
        return "corrected"
    if purpose == "cancelled" and begun:
        return "cancelled_begun"
    return purpose if purpose in PURPOSES else "command"


def template_purpose(purpose: str, params: Mapping[str, Any]) -> str:
    """The SMS template purpose of a message (``payload["params"]``): what the planner named
    (``sms_template``), else derived from the outbox purpose and the incident kind."""
    named = params.get("sms_template")
    if isinstance(named, str) and named in PURPOSES:
        return named
    return sms_purpose(purpose, str(params.get("kind") or "fault"))


def template_values(params: Mapping[str, Any]) -> dict[str, str]:
    """The template variables an SMS carries (its ``TemplateParam``): ``params["sms"]`` (the
    purpose's fixed parameter set) if the planner gave one, else the scalars (messages queued
    before per-purpose parameters existed).

    Non-scalar params (village lists for digests) can't be template variables, and Aliyun
    requires string values.
    """
    source = params.get("sms")
    if isinstance(source, Mapping):
        params = source
    return {str(k): str(v) for k, v in params.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
