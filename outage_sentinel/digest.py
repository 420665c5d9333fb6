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
``incident``   the incident id (also ``Message.incident_id``)
=============  ====================================================================

A digest line keeps what the notices it stands for kept apart: a village only possibly
affected is listed under 可能受影响, households are given as confirmed plus possible, and the
expected restoration time and the incident id close the line.

A message without params is still covered: its first text line is quoted in the digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from outage_sentinel.channels.base import Message
from outage_sentinel.textlimits import trim_bytes, utf8_len

Language = Literal["zh", "en"]

_KIND_RANK = {"fault": 3, "temporary": 2, "planned": 1}
_STATUS_RANK = {"active": 2, "unconfirmed": 1, "restored": 1, "cancelled": 0, "corrected": 0}

_LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "fault": "故障停电", "temporary": "临时停电", "planned": "计划停电", "unknown": "停电",
        "restored": "已恢复送电", "cancelled": "已取消", "corrected": "更正：不涉及",
        "unconfirmed": "恢复待确认",
        "households": "户", "sep": "、", "colon": "：", "total": "共",
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
        "unconfirmed": "Back unconfirmed",
        "corrected": "Correction: not affected",
        "households": " households", "sep": ", ", "colon": ": ", "total": "total ",
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
    #: Villages back on (or whose notice was cancelled) since an earlier pending message.
    restored: dict[str, int] = field(default_factory=dict)
    #: Villages whose outage records ended with no evidence their supply is back.
    unconfirmed: dict[str, int] = field(default_factory=dict)
    #: Villages an operator's correction took out of the incident (never off by it).
    corrected: dict[str, int] = field(default_factory=dict)
    #: Of each village's households off, those in areas a source reported (the rest inferred).
    confirmed: dict[str, int] = field(default_factory=dict)
    #: Households off, when a message gives a total but no per-village breakdown.
    households: int = 0
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


#: Purposes that say nothing of whether a village is off (a care call, a crew's progress): they
#: leave its line in the digest as it was.
NEUTRAL_PURPOSES = ("care", "progress_")

#: Purposes that take a village out of the incident (an operator's correction, an inference
#: dropped): it is neither off nor back, and leaves the digest's lines.
OUT_PURPOSES = ("corrected", "withdrawn")


def _message_status(m: Message, p: Mapping[str, Any]) -> str:
    if m.purpose.startswith(NEUTRAL_PURPOSES):
        return "neutral"
    if m.purpose in OUT_PURPOSES:
        return "out"
    if p.get("status") in _STATUS_RANK:
        return str(p["status"])
    if m.purpose in ("restored", "restoration"):
        return "restored"
    if m.purpose == "cancelled":
        return "cancelled"
    return "active"


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
        p: Mapping[str, Any] = m.params or {}
        # Messages without an incident id can't be merged safely: one entry each.
        ident = m.incident_id or f"\x00{m.key}"
        e = by_incident.get(ident)
        if e is None:
            e = by_incident[ident] = DigestEntry(incident_id=m.incident_id)
        e.keys.append(m.key)
        if p.get("kind") in _KIND_RANK:
            e.kind = str(p["kind"])
        if p.get("feeder"):
            e.feeder = str(p["feeder"])
        status = _message_status(m, p)
        villages = _message_villages(p)
        if status == "neutral":
            continue
        _fold(e, status, villages)
        _note(e, status, villages, p)
        # A total without a per-village breakdown still counts.
        if not sum(villages.values()) and "households" in p and status == "active":
            e.households = max(e.households, _int(p["households"]))
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
    for e in by_incident.values():
        _settle(e)
    return sorted(by_incident.values(), key=DigestEntry.rank)


def _settle(e: DigestEntry) -> None:
    """The entry's status once every message is in: active while a village is off, else what
    its villages are (not confirmed back before back before corrected)."""
    if e.villages:
        e.status = "active"
        e.households = max(e.households, sum(e.villages.values()))
    elif e.status == "active":
        e.status = next((status for status, places in (
            ("unconfirmed", e.unconfirmed), ("restored", e.restored),
            ("corrected", e.corrected)) if places), e.status)


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


def _fold(e: DigestEntry, status: str, villages: Mapping[str, int]) -> None:
    """A later message about a village wins: off, back, or out of the incident."""
    for name, hh in villages.items():
        for listed in (e.villages, e.restored, e.unconfirmed, e.corrected):
            listed.pop(name, None)
        target = {"active": e.villages, "out": e.corrected,
                  "unconfirmed": e.unconfirmed}.get(status, e.restored)
        target[name] = max(target.get(name, 0), hh)


def _places(villages: Mapping[str, int], labels: Mapping[str, str]) -> str:
    return labels["sep"].join(f"{name}({hh}{labels['households']})" if hh else name
                              for name, hh in villages.items())


def _possible(e: DigestEntry) -> dict[str, int]:
    """Village -> its households off that are only possibly affected (inferred)."""
    return {v: hh - min(e.confirmed.get(v, hh), hh) for v, hh in e.villages.items()}


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
    sep, zh = labels["sep"], labels is _LABELS["zh"]
    text = sep.join(sure)
    if maybe:
        text += ("；" if zh else "; ") * bool(sure) + labels["possible"] + labels["colon"]
        text += _places(maybe, labels)
    if e.households:
        more = sum(possible.values())
        total = labels["split"].format(c=e.households - more, p=more) if more else \
            f"{e.households}{labels['households']}"
        text += f"{'；' if maybe and zh else sep}{labels['total']}{total}"
    return text


def _tail(e: DigestEntry, labels: Mapping[str, str]) -> str:
    """The expected restoration (still-off lines) and the incident id, compactly."""
    zh = labels is _LABELS["zh"]
    bits = []
    if e.villages and e.etr:
        bits.append(labels["etr"].format(etr=_short_time(e.etr)))
    if e.incident_id:
        bits.append(e.incident_id)
    return "".join(("；" if zh else "; ") + b for b in bits)


def _short_time(text: str) -> str:
    """``2026-03-01 12:00`` -> ``03-01 12:00`` (the year is this year's in a digest)."""
    return text[5:] if len(text) == 16 and text[4] == "-" else text


def _line(e: DigestEntry, labels: Mapping[str, str]) -> str:
    state = (labels[e.status] if e.status in ("restored", "unconfirmed", "cancelled", "corrected")
             else labels[e.kind])
    zh = labels is _LABELS["zh"]
    head = f"【{state}】" if zh else f"[{state}] "
    if not (e.villages or e.restored or e.unconfirmed or e.corrected or e.feeder):
        # Nothing structured: quote the original message so it is still covered.
        return head + e.summary
    parts = [_off_places(e, labels)] if e.villages else []
    for places, name in ((e.unconfirmed, "unconfirmed"), (e.restored, "restored")):
        if places:  # named unless the head already says it
            said = not parts and e.status == name
            parts.append(("" if said else labels[name] + labels["colon"])
                         + _places(places, labels))
    if not parts:
        parts.append(_places(e.corrected, labels))
    text = head + (e.feeder + labels["colon"] if e.feeder else "")
    return text + ("；" if zh else "; ").join(parts) + _tail(e, labels)


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
    parts: list[DigestPart] = []
    for i, group in enumerate(groups, 1):
        covers = tuple(k for e, _ in group for k in e.keys)
        title = header + (labels["part"].format(i=i, n=n) if n > 1 else "")
        digest_id = hashlib.sha256("\n".join(sorted(covers)).encode()).hexdigest()[:16]
        parts.append(DigestPart(
            message=Message(
                key=f"digest/{channel}/{target}/{digest_id}", channel=channel, target=target,
                text="\n".join([title, *(line for _, line in group)]), subject=title,
                mentions=mentions, audience=first.audience, purpose="digest",
                incident_id="", params={"covers": list(covers), "part": i, "parts": n}),
            covers=covers,
        ))
    return parts


def _header(entries: Sequence[DigestEntry], labels: Mapping[str, str]) -> str:
    """The totals line; it counts villages still off (restored ones are listed in lines), and
    keeps the households only possibly affected apart."""
    feeders = {e.feeder for e in entries if e.feeder}
    villages = {v for e in entries for v in e.villages} or {
        v for e in entries for v in (*e.restored, *e.unconfirmed)}
    active = [e for e in entries if e.status == "active"]
    households = sum(e.households for e in active)
    possible = {(e.incident_id, v): p for e in active for v, p in _possible(e).items() if p}
    if not possible:
        return labels["header"].format(incidents=len(entries), feeders=len(feeders),
                                       villages=len(villages), households=households)
    only = {v for e in active for v, p in _possible(e).items() if p and p == e.villages[v]}
    sure = {v for e in active for v, p in _possible(e).items() if p != e.villages[v]}
    more = sum(possible.values())
    return labels["header_possible"].format(
        incidents=len(entries), feeders=len(feeders), villages=len(villages),
        possible_villages=len(only - sure), confirmed=households - more, possible=more)


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
