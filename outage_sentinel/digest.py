"""Merge the pending messages of one group into a digest (pure).

When a storm queues more messages for a robot than its rate limit lets through in useful time
(WeCom: 20 a minute), sending them one by one would deliver the last notices many minutes
late. Instead the delivery loop merges everything pending for that group into one digest
message: the affected feeders, villages and households, worst first. Nothing is dropped: every
pending message is *covered* by exactly one digest part, and the caller marks the covered
messages as delivered-by-digest once the part is confirmed.

The structured facts come from :attr:`Message.params` (the renderer fills them):

=============  ====================================================================
``feeder``     feeder name or id (``"10kV 城关线"``)
``villages``   list of village names, or a mapping ``{village: households}``
``village``    a single village name (alternative to ``villages``); ``households`` is then
               that village's count (the liaison notices are one message per village)
``households`` affected households (customers) in total for this message
``kind``       ``fault`` | ``temporary`` | ``planned``
``status``     ``active`` | ``restored`` | ``cancelled`` | ``unconfirmed`` (records ended,
               supply not confirmed back; default from the purpose: ``restored`` /
               ``cancelled`` messages, else active)
``priority``   optional number, higher is worse (overrides the kind/households order)
``confirmed``  of ``households``, those in areas a source reported (the rest are only
               "possibly affected", inferred); ``villages_confirmed`` the same per village
               for a message naming several; missing: all confirmed
``etr``        expected restoration, local time text (``"2026-03-01 12:00"``)
``begun``      of a cancellation: whether the work had begun when it was called off (the
               area may have been off since its start). Missing: begun unless the message
               is a ``cancelled`` notice of work ahead (``sms_template`` not
               ``cancelled_begun``), :func:`_work_ahead`
``incident``   the incident id (also ``Message.incident_id``)
=============  ====================================================================

A digest line states each incident's latest state: a later message wins, and one naming no
village speaks for the whole incident (a crew's messages never reach a digest: delivery sends
them whole, :data:`outage_sentinel.sending.WHOLE_AUDIENCES`). An outage called
off reads 故障停电已取消 with the cancelled notice's advice (如仍停电请拨打95598), never
"restored"; planned or temporary work reads 届时正常供电 only for a village whose
cancellation came before the work began (called off after it began, the village may have
been off since the start: it gets 如仍停电请拨打95598, as its notice did). A line keeps
what the notices it stands for kept apart: a village only possibly affected is listed under
可能受影响, households are given as confirmed plus possible, and the expected restoration
time and the incident id close the line.

Notices that say nothing of whether a village is off still say something, quoted in the line:
a special-care notice by its count-and-holder line (a group's notice names nobody) and the
latest repair progress.

A message without params is still covered: its first text line is quoted in the digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from outage_sentinel.channels.base import Message
from outage_sentinel.textlimits import trim_bytes, utf8_len

Language = Literal["zh", "en"]

_KIND_RANK = {"fault": 3, "temporary": 2, "planned": 1}
_STATUS_RANK = {"active": 2, "unconfirmed": 1, "restored": 1, "cancelled": 0, "corrected": 0}
#: States a message naming no village gives every village of its incident still listed off.
_ENDED = ("restored", "cancelled", "unconfirmed")

_LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "fault": "故障停电", "temporary": "临时停电", "planned": "计划停电", "unknown": "停电",
        "restored": "已恢复送电", "cancelled": "已取消", "corrected": "更正：不涉及",
        "unconfirmed": "恢复待确认", "cancelled_head": "{kind}已取消",
        "call": "如仍停电请拨打95598", "as_normal": "届时正常供电",
        "care": "重点关怀", "care_in": "（{village}）", "progress": "抢修进展：",
        "households": "户", "sep": "、", "colon": "：", "total": "共", "semi": "；", "comma": "，",
        "header": "停电汇总：{incidents}起事件，{feeders}条线路，{villages}个村，{households}户",
        "header_possible": ("停电汇总：{incidents}起事件，{feeders}条线路，{villages}个村"
                            "（{possible_villages}个仅可能受影响），确认{confirmed}户，"
                            "另可能{possible}户"),
        "possible": "可能受影响", "split": "确认{c}户+可能{p}户", "more": "另可能{p}户",
        "etr": "预计{etr}恢复",
        "part": "（第{i}/{n}部分）",
    },
    "en": {
        "fault": "Fault outage", "temporary": "Temporary outage", "planned": "Planned outage",
        "unknown": "Outage", "restored": "Restored", "cancelled": "Cancelled",
        "unconfirmed": "Back unconfirmed", "cancelled_head": "{kind} cancelled",
        "corrected": "Correction: not affected",
        "call": "if your power is off, call 95598", "as_normal": "no outage then",
        "care": "Special care", "care_in": " ({village})", "progress": "Repair progress: ",
        "households": " households", "sep": ", ", "colon": ": ", "total": "total ",
        "semi": "; ", "comma": ", ",
        "header": ("Outage digest: {incidents} incident(s), {feeders} feeder(s), "
                   "{villages} village(s), {households} household(s)"),
        "header_possible": ("Outage digest: {incidents} incident(s), {feeders} feeder(s), "
                            "{villages} village(s) ({possible_villages} only possibly "
                            "affected), {confirmed} household(s) confirmed, {possible} more "
                            "possibly"),
        "possible": "possibly affected", "split": "{c} confirmed + {p} possibly",
        "more": "{p} more possibly", "etr": "restoration expected {etr}",
        "part": " (part {i}/{n})",
    },
}


@dataclass
class DigestEntry:
    """What the digest says about one incident (several pending messages may merge into it)."""

    incident_id: str
    kind: str = "unknown"
    status: str = "active"
    feeder: str = ""
    #: Villages still off: village -> households (0 when unknown), in first-seen order.
    villages: dict[str, int] = field(default_factory=dict)
    #: Villages back on since an earlier pending message.
    restored: dict[str, int] = field(default_factory=dict)
    #: Villages whose outage was called off (a false alarm, planned work cancelled).
    cancelled: dict[str, int] = field(default_factory=dict)
    #: Of ``cancelled``, the villages whose planned or temporary work was called off before
    #: it began: only they may read 届时正常供电 (:func:`_work_ahead`).
    ahead: set[str] = field(default_factory=set)
    #: Villages whose outage records ended with no evidence their supply is back.
    unconfirmed: dict[str, int] = field(default_factory=dict)
    #: Villages an operator's correction took out of the incident (never off by it).
    corrected: dict[str, int] = field(default_factory=dict)
    #: Of each village's households off, those in areas a source reported (the rest inferred).
    confirmed: dict[str, int] = field(default_factory=dict)
    #: Households off, when a message gives a total but no per-village breakdown.
    households: int = 0
    #: Of that total, those confirmed (None: all, as far as the message said).
    total_confirmed: int | None = None
    #: What notices that change no village said, quoted: ``care:<village>`` (the count and
    #: who holds the list), ``progress`` (the latest).
    notes: dict[str, str] = field(default_factory=dict)
    #: Expected restoration, as the latest message about it said (local time text).
    etr: str = ""
    priority: float | None = None
    summary: str = ""
    keys: list[str] = field(default_factory=list)

    def rank(self) -> tuple[float, ...]:
        """Sort key, worst first: still-off before restored, faults before planned work, then
        explicit priority, then households."""
        return (
            -_STATUS_RANK.get(self.status, 2),
            -(self.priority if self.priority is not None else 0.0),
            -_KIND_RANK.get(self.kind, 2),
            -self.households,
            0.0 if self.incident_id else 1.0,
        )


@dataclass(frozen=True)
class DigestPart:
    """One digest message and the pending message keys it stands for."""

    message: Message
    covers: tuple[str, ...]


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


#: Purposes that say nothing of whether a village is off (a care notice, a crew's progress):
#: they leave its line as it was, and are quoted in it (:func:`_note_slot`).
NEUTRAL_PURPOSES = ("care", "progress_")

#: Purposes that take a village out of the incident (an operator's correction, an inference
#: dropped): it is neither off nor back, and leaves the digest's lines.
OUT_PURPOSES = ("corrected", "withdrawn")

#: The state a purpose gives when the params name none.
_PURPOSE_STATUS = {"restored": "restored", "restoration": "restored", "cancelled": "cancelled"}

#: The bracketed head of a notice's line (【抢修进展】, [Repair progress]).
_HEAD = re.compile(r"^\s*(【[^】]*】|\[[^\]]*\])\s*")


def _message_status(m: Message, p: Mapping[str, Any]) -> str:
    if m.purpose.startswith(NEUTRAL_PURPOSES):
        return "neutral"
    if m.purpose in OUT_PURPOSES:
        return "out"
    if p.get("status") in _STATUS_RANK:
        return str(p["status"])
    return _PURPOSE_STATUS.get(m.purpose, "active")


def _message_villages(p: Mapping[str, Any]) -> dict[str, int]:
    """village -> households named by one message's params."""
    out: dict[str, int] = {}
    villages = p.get("villages")
    if isinstance(villages, Mapping):
        out.update({str(k): _int(v) for k, v in villages.items()})
    elif isinstance(villages, (list, tuple)):
        out.update({str(k): 0 for k in villages})
    if p.get("village"):
        # One message per village (the liaison notices): its households are that village's.
        out.setdefault(str(p["village"]), _int(p.get("households")) if not villages else 0)
    return out


def entries_from_messages(messages: Sequence[Message]) -> list[DigestEntry]:
    """Merge messages per incident, worst first.

    Messages are taken in outbox order, so a later message about a village wins: an "outage"
    followed by a "restored" for the same village lists the village as restored.
    """
    by_incident: dict[str, DigestEntry] = {}
    for m in messages:
        # Messages without an incident id can't be merged safely: one entry each.
        ident = m.incident_id or f"\x00{m.key}"
        e = by_incident.setdefault(ident, DigestEntry(incident_id=m.incident_id))
        e.keys.append(m.key)
        _take(e, m, m.params or {})
    for e in by_incident.values():
        _settle(e)
    return sorted(by_incident.values(), key=DigestEntry.rank)


def _take(e: DigestEntry, m: Message, p: Mapping[str, Any]) -> None:
    """Fold one message into its incident's entry."""
    if p.get("kind") in _KIND_RANK:
        e.kind = str(p["kind"])
    if p.get("feeder"):
        e.feeder = str(p["feeder"])
    _keep_note(e, m, p)
    status = _message_status(m, p)
    if status == "neutral":
        return
    villages = _message_villages(p)
    if status == "cancelled":
        _mark_ahead(e, villages or e.villages, _work_ahead(m, p))
    _fold(e, status, villages)
    _note(e, status, villages, p)
    _total(e, status, villages, p)
    if not villages:
        e.status = status
    if p.get("priority") is not None:
        try:
            e.priority = float(p["priority"])
        except (TypeError, ValueError):
            pass
    first_line = (m.text or m.subject).strip().splitlines()
    if first_line:
        e.summary = first_line[0].strip()


def _work_ahead(m: Message, p: Mapping[str, Any]) -> bool:
    """Whether a cancellation was of work that had not begun: its params say so (``begun``),
    else only a liaison's ``cancelled`` notice not sent as ``cancelled_begun`` is taken as
    one (a summary's status says nothing of when the work was called off, and "届时正常供电"
    is a promise of supply no message may make without a notice behind it)."""
    if "begun" in p:
        return p["begun"] is False
    return m.purpose == "cancelled" and p.get("sms_template") != "cancelled_begun"


def _mark_ahead(e: DigestEntry, villages: Mapping[str, int], ahead: bool) -> None:
    """The villages a cancellation names are (or are no longer) of work called off ahead:
    the latest cancellation of a village decides its advice."""
    for name in villages:
        if ahead:
            e.ahead.add(name)
        else:
            e.ahead.discard(name)


def _note_slot(m: Message, p: Mapping[str, Any]) -> tuple[str, int] | None:
    """Where a notice that is more than a state is kept, and which of its lines says it."""
    if m.purpose == "care":  # line 2: the count and who holds the list (names come after)
        return f"care:{p.get('village') or ''}", 1
    if m.purpose.startswith("progress_"):
        return "progress", 0
    return None


def _keep_note(e: DigestEntry, m: Message, p: Mapping[str, Any]) -> None:
    """Quote what a notice said beyond a state (the latest of each kind)."""
    slot = _note_slot(m, p)
    if slot is None:
        return
    lines = [s.strip() for s in (m.text or m.subject).splitlines() if s.strip()]
    if lines:
        said = _HEAD.sub("", lines[min(slot[1], len(lines) - 1)]).rstrip("。.；; ")
        e.notes.pop(slot[0], None)  # the latest goes last
        e.notes[slot[0]] = said


def _settle(e: DigestEntry) -> None:
    """The entry's status once every message is in: active while a village is off, else what
    its villages are (not confirmed back before back before called off before corrected)."""
    if e.villages:
        e.status = "active"
        e.households = max(e.households, sum(e.villages.values()))
    else:
        e.status = next((status for status, places in (
            ("unconfirmed", e.unconfirmed), ("restored", e.restored),
            ("cancelled", e.cancelled), ("corrected", e.corrected)) if places), e.status)


def _note(e: DigestEntry, status: str, villages: Mapping[str, int],
          p: Mapping[str, Any]) -> None:
    """How many of each village's households off are confirmed, and the latest ETR."""
    if status == "active":
        per = p.get("villages_confirmed")
        for name, hh in villages.items():
            if isinstance(per, Mapping):
                e.confirmed[name] = _int(per.get(name, hh))
            elif p.get("village") and "confirmed" in p and len(villages) == 1:
                e.confirmed[name] = _int(p["confirmed"])
            else:
                e.confirmed[name] = hh
        if "etr" in p:
            e.etr = str(p["etr"] or "")
    else:
        for name in villages:
            e.confirmed.pop(name, None)


def _total(e: DigestEntry, status: str, villages: Mapping[str, int], p: Mapping[str, Any]
           ) -> None:
    """A total without a per-village breakdown still counts, the latest as it says it:
    confirmed as its params say, else all."""
    if status != "active" or any(villages.values()) or "households" not in p:
        return
    e.households = _int(p["households"])
    e.total_confirmed = _int(p["confirmed"]) if "confirmed" in p else None


def _fold(e: DigestEntry, status: str, villages: Mapping[str, int]) -> None:
    """A later message about a village wins: off, back, called off or out of the incident.
    One naming no village that ends the outage ends it for every village still off."""
    maps = {"active": e.villages, "out": e.corrected, "corrected": e.corrected,
            "unconfirmed": e.unconfirmed, "cancelled": e.cancelled, "restored": e.restored}
    target = maps.get(status)
    if target is None:
        return
    if not villages and status in _ENDED:
        villages = dict(e.villages)
    for name, hh in villages.items():
        for listed in (e.villages, e.restored, e.cancelled, e.unconfirmed, e.corrected):
            listed.pop(name, None)
        target[name] = max(target.get(name, 0), hh)


def _places(villages: Mapping[str, int], labels: Mapping[str, str]) -> str:
    return labels["sep"].join(f"{name}({hh}{labels['households']})" if hh else name
                              for name, hh in villages.items())


def _possible(e: DigestEntry) -> dict[str, int]:
    """Village -> its households off that are only possibly affected (inferred)."""
    return {v: hh - min(e.confirmed.get(v, hh), hh) for v, hh in e.villages.items()}


def _possible_total(e: DigestEntry) -> int:
    """Households off only possibly affected: per village, else of a total as it was given."""
    if any(e.villages.values()) or e.total_confirmed is None:
        return sum(_possible(e).values())
    return max(e.households - e.total_confirmed, 0)


def _off_places(e: DigestEntry, labels: Mapping[str, str]) -> str:
    """The villages off: confirmed ones (with a split count when only partly confirmed), then
    those only possibly affected under their own label, then the totals."""
    possible = _possible(e)
    sure, maybe = [], {}
    for v, hh in e.villages.items():
        p = possible[v]
        if hh and p == hh:
            maybe[v] = hh
        elif p:
            sure.append(f"{v}({labels['split'].format(c=hh - p, p=p)})")
        else:
            sure.append(f"{v}({hh}{labels['households']})" if hh else v)
    sep, semi = labels["sep"], labels["semi"]
    text = sep.join(sure)
    if maybe:
        text += semi * bool(sure) + labels["possible"] + labels["colon"]
        text += _places(maybe, labels)
    if e.households:
        more = _possible_total(e)
        total = labels["split"].format(c=e.households - more, p=more) if more else \
            f"{e.households}{labels['households']}"
        zh = labels is _LABELS["zh"]  # "；" after a 可能受影响 list, as in zh text
        text += f"{semi if maybe and zh else sep}{labels['total']}{total}"
    return text


def _tail(e: DigestEntry, labels: Mapping[str, str]) -> str:
    """The expected restoration (still-off lines) and the incident id, compactly."""
    bits = []
    if e.status == "active" and e.villages and e.etr:
        bits.append(labels["etr"].format(etr=_short_time(e.etr)))
    if e.incident_id:
        bits.append(e.incident_id)
    return "".join(labels["semi"] + b for b in bits)


def _short_time(text: str) -> str:
    """``2026-03-01 12:00`` -> ``03-01 12:00`` (the year is this year's in a digest)."""
    return text[5:] if len(text) == 16 and text[4] == "-" else text


def _head(e: DigestEntry, labels: Mapping[str, str]) -> str:
    if e.status == "cancelled":
        state = labels["cancelled_head"].format(kind=labels[e.kind])
    elif e.status in ("restored", "unconfirmed", "corrected"):
        state = labels[e.status]
    else:
        state = labels[e.kind]
    return f"【{state}】" if labels is _LABELS["zh"] else f"[{state}] "


def _state_parts(e: DigestEntry, labels: Mapping[str, str]) -> list[str]:
    """The villages by state, each named unless the head already says it; villages called
    off with the advice their notice gave (:func:`_cancelled_parts`)."""
    parts = [_off_places(e, labels)] if e.villages else []
    for places, name in ((e.unconfirmed, "unconfirmed"), (e.restored, "restored")):
        if places:
            said = not parts and e.status == name
            parts.append(("" if said else labels[name] + labels["colon"])
                         + _places(places, labels))
    if e.cancelled:
        parts += _cancelled_parts(e, labels, said=not parts and e.status == "cancelled")
    if not parts and e.corrected:
        parts.append(_places(e.corrected, labels))
    return parts


def _cancelled_parts(e: DigestEntry, labels: Mapping[str, str], said: bool) -> list[str]:
    """The villages called off, labelled unless the head ``said`` it: work called off before
    it began with 届时正常供电, the rest (begun work, a fault) with 如仍停电请拨打95598 — a
    village whose work had begun may have been off since its start, so "normal supply then"
    would be false."""
    work = e.kind in ("planned", "temporary")
    ahead = {v: hh for v, hh in e.cancelled.items() if work and v in e.ahead}
    rest = {v: hh for v, hh in e.cancelled.items() if v not in ahead}
    parts = [_places(places, labels) + labels["comma"] + labels[advice]
             for places, advice in ((ahead, "as_normal"), (rest, "call")) if places]
    if not said:
        parts[0] = labels["cancelled"] + labels["colon"] + parts[0]
    return parts


def _note_parts(e: DigestEntry, labels: Mapping[str, str]) -> list[str]:
    """What the notices beyond a state said (:func:`_keep_note`), labelled."""
    out = []
    for slot, said in e.notes.items():
        kind, _, village = slot.partition(":")
        label = {"care": labels["care"] + (labels["care_in"].format(village=village)
                                           if village else "") + labels["colon"],
                 "progress": labels["progress"]}.get(kind, "")
        out.append(label + said)
    return out


def _line(e: DigestEntry, labels: Mapping[str, str]) -> str:
    parts = _state_parts(e, labels) + _note_parts(e, labels)
    if not parts:  # nothing structured: quote the original message so it is still covered
        parts = [e.summary]
    text = _head(e, labels) + (e.feeder + labels["colon"] if e.feeder else "")
    return text + labels["semi"].join(parts) + _tail(e, labels)


def build_digest(
    messages: Sequence[Message],
    *,
    limit_bytes: int,
    language: Language = "zh",
    channel: str | None = None,
    target: str | None = None,
) -> list[DigestPart]:
    """Merge ``messages`` (all pending for one channel target) into as few parts as fit.

    Each part's text is at most ``limit_bytes`` UTF-8 bytes. Each part repeats the overall
    header (totals), so the first part alone gives the whole picture; lines are worst first,
    so if the later parts wait behind a rate limit the most important facts are already out.
    The digest key is derived from the covered keys, so rebuilding the same digest after a
    crash gives the same key (the outbox's idempotency holds for digests too).
    """
    if not messages:
        return []
    labels = _LABELS[language]
    entries = entries_from_messages(messages)
    header = _header(entries, labels)
    # Reserve room for the longest possible part marker.
    marker_room = utf8_len(labels["part"].format(i=len(entries), n=len(entries)))
    line_room = limit_bytes - (utf8_len(header) + marker_room + 1)  # + newline
    if line_room < 16:
        raise ValueError(f"limit_bytes={limit_bytes} is too small for a digest")
    groups = _pack(entries, labels, line_room)
    first = messages[0]
    channel = channel if channel is not None else first.channel
    target = target if target is not None else first.target
    mentions = tuple(dict.fromkeys(phone for m in messages for phone in m.mentions))
    n = len(groups)
    return [_part(group, header + (labels["part"].format(i=i, n=n) if n > 1 else ""), i, n,
                  channel=channel, target=target, mentions=mentions, audience=first.audience)
            for i, group in enumerate(groups, 1)]


def _part(lines: Sequence[tuple[DigestEntry, str]], title: str, i: int, n: int, *,
          channel: str, target: str, mentions: tuple[str, ...], audience: str) -> DigestPart:
    """Part ``i`` of ``n`` of a digest: ``lines`` under ``title``, keyed by the keys its
    entries cover (the same part rebuilt after a crash has the same key)."""
    covers = tuple(k for e, _ in lines for k in e.keys)
    digest_id = hashlib.sha256("\n".join(sorted(covers)).encode()).hexdigest()[:16]
    return DigestPart(
        message=Message(
            key=f"digest/{channel}/{target}/{digest_id}", channel=channel, target=target,
            text="\n".join([title, *(line for _, line in lines)]), subject=title,
            mentions=mentions, audience=audience, purpose="digest",
            incident_id="", params={"covers": list(covers), "part": i, "parts": n}),
        covers=covers,
    )


def _header(entries: Sequence[DigestEntry], labels: Mapping[str, str]) -> str:
    """The totals line; it counts villages still off (restored ones are listed in lines), and
    keeps the households only possibly affected apart."""
    feeders = {e.feeder for e in entries if e.feeder}
    active = [e for e in entries if e.status == "active"]
    villages = {v for e in active for v in e.villages} or {
        v for e in entries for v in (*e.restored, *e.unconfirmed)}
    households = sum(e.households for e in active)
    more = sum(_possible_total(e) for e in active)
    counts = {"incidents": len(entries), "feeders": len(feeders), "villages": len(villages)}
    if not more:
        return labels["header"].format(**counts, households=households)
    only = {v for e in active for v, p in _possible(e).items() if p and p == e.villages[v]}
    sure = {v for e in active for v, p in _possible(e).items() if p != e.villages[v]}
    return labels["header_possible"].format(
        **counts, possible_villages=len(only - sure), confirmed=households - more, possible=more)


def _pack(entries: Sequence[DigestEntry], labels: Mapping[str, str], line_room: int
          ) -> list[list[tuple[DigestEntry, str]]]:
    """Entries with their lines, in order, into parts of at most ``line_room`` bytes."""
    groups: list[list[tuple[DigestEntry, str]]] = [[]]
    used = 0
    for e in entries:
        line = trim_bytes(_line(e, labels), line_room)
        size = utf8_len(line) + 1
        if groups[-1] and used + size > line_room:
            groups.append([])
            used = 0
        groups[-1].append((e, line))
        used += size
    return groups
