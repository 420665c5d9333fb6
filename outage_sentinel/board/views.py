"""What the board's pages show, built from the store's rows and the topology. Pure: the rows,
the topology, ``now`` and the time zone in, JSON-ready dicts out.

Phones are masked unless the viewer's role may see them; ids come with names; every time is
local (``YYYY-MM-DD HH:MM``) and also ISO for the page's countdowns.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

from outage_sentinel import crew as crews
from outage_sentinel.board.step_text import detail_parts
from outage_sentinel.field_links import REDACTED, redact_links
from outage_sentinel.incidents import Incident, contradicted_reports, villages_off
from outage_sentinel.labels import KIND_LABELS, STAGE_LABELS, label
from outage_sentinel.liaison import dispute_names
from outage_sentinel.lifecycle import held_to_deadline
from outage_sentinel.logs import mask_phones, redact
from outage_sentinel.outgoing import MAX_ID, OUTBOX_STATUSES
from outage_sentinel.priority import affected_customers, special_care_customers
from outage_sentinel.sms_params import template_purpose, template_values
from outage_sentinel.store.events import REQUEUED, failed_event
from outage_sentinel.topology import DEVICE_KINDS, Topology

#: Minutes before the arrival deadline when the countdown turns amber.
AMBER_MINUTES = 15.0


@dataclass(frozen=True)
class Viewer:
    language: str
    tz: tzinfo
    phones: bool  # whether phone numbers are shown unmasked
    #: Whether the field's personal links (``/c/<token>``, ``/f/<token>``) are shown whole:
    #: a token lets whoever holds it act as the crew or liaison it names.
    links: bool = False
    #: The channels that send SMS templates (:func:`outage_sentinel.liaison.sms_channels`).
    sms: frozenset[str] = frozenset({"sms"})


def local(value: datetime | None, tz: tzinfo) -> str | None:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value is not None else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def phone(value: str, viewer: Viewer) -> str:
    return value if viewer.phones else mask_phones(value)


def said_text(value: str, viewer: Viewer) -> str:
    """A message's words as ``viewer`` may read them: phones masked and personal links cut
    unless the role may see them."""
    value = phone(value, viewer)
    return value if viewer.links else redact_links(value)


def name_of(topology: Topology, node: str) -> str:
    n = topology.nodes.get(node)
    return (n.name or node) if n is not None else node


def village_name(topology: Topology, village: str) -> str:
    v = topology.villages.get(village)
    return v.name if v is not None else village


def deadline_state(deadline: datetime | None, now: datetime, arrived: bool) -> str:
    """``ok`` | ``amber`` (within :data:`AMBER_MINUTES`) | ``red`` (missed) | ``met``."""
    if deadline is None or arrived:
        return "met" if arrived else "ok"
    left = (deadline - now).total_seconds() / 60
    return "red" if left < 0 else "amber" if left < AMBER_MINUTES else "ok"


#: The arrival deadline an incident's crew is held to and its area type.
Held = tuple[datetime, str]
#: The :data:`Held` deadline of each incident row given (with its state), by incident id, as
#: the daemon holds the crew to it (the board's:
#: :func:`outage_sentinel.board.app.held_deadlines`).
Deadlines = Callable[[Sequence[Mapping[str, Any]]], Mapping[str, Held]]


def incident_card(row: Mapping[str, Any], topology: Topology, now: datetime, viewer: Viewer,
                  commitments: crews.Commitments, held: Held | None = None) -> dict[str, Any]:
    """One incident as the overview lists it. Its countdown is to ``held``, the deadline the
    daemon holds the crew to (:meth:`CrewDispatch.deadline_in`: the dispatch's, else counted
    from when the outage was known or went off again); a row without it (no store to read
    the log from) counts from the incident's creation. One no crew is held to
    (:func:`held_to_deadline`) has none."""
    inc = Incident.from_json(row["state"])
    stage = str(row.get("stage") or inc.stage)
    villages = villages_off(inc, topology)
    deadline: datetime | None = None
    area_type: str | None = None
    if held_to_deadline(inc.kind, stage):
        deadline, area_type = held or crews.arrival_deadline(
            topology, villages, row.get("created_at") or inc.start, commitments)
    # Partly restored says nothing of the crew: switching may have come before it did.
    arrived = stage in ("on_site", "restored", "closed") or inc.crew_progress == "on_site"
    off = inc.off
    care = special_care_customers(affected_customers(topology, off))
    return {
        "id": inc.id, "kind": inc.kind, "kind_label": label(KIND_LABELS, viewer.language, inc.kind),
        "status": inc.status, "stage": stage,
        "stage_label": label(STAGE_LABELS, viewer.language, stage),
        "priority": int(row.get("priority") or 0),
        "feeder": inc.feeder, "feeder_name": topology.feeder_names.get(inc.feeder, inc.feeder),
        **fault_point(inc, topology, viewer),
        # Reported off, unexplained by the fault point; kept off as the meters say (disputed).
        "unexplained": [name_of(topology, t) for t in contradicted_reports(topology, inc)],
        **dispute_names(topology, inc),
        "customers": inc.estimate.customers, "areas_off": len(off),
        "areas_confirmed": sum(1 for t in off if inc.mark(t) == "reported"),
        "villages": [{"id": v, "name": village_name(topology, v)} for v in villages],
        "important": len(inc.estimate.important_customers), "special_care": len(care),
        "crew": row.get("crew_id"), "crew_name": _crew_name(topology, row.get("crew_id")),
        "start": iso(inc.start), "start_local": local(inc.start, viewer.tz),
        "etr": iso(inc.etr), "etr_local": local(inc.etr, viewer.tz),
        "deadline": iso(deadline), "deadline_local": local(deadline, viewer.tz),
        "deadline_area": area_type, "deadline_state": deadline_state(deadline, now, arrived),
        "parent": inc.parent_id, "arrived": arrived,
    }


def fault_point(inc: Incident, topology: Topology, viewer: Viewer) -> dict[str, Any]:
    """The card's fault point: its ``devices``; ``device_reported`` when a source named every
    one of them (a fact: :func:`crew.device_bases`, as the crew's checks say it — not one the
    command centre set, nor a pair part inferred); the ``probability`` (the number, for
    sorting) and its ``probability_label``, the texts' own words for it
    (:func:`crew.percent_label`: one rounding, the page never rounds again); and
    ``certainty``, how sure in the crew's words (set by the command centre and by whom,
    reported, or the localiser's probability with a close alternative)."""
    p = inc.estimate.probability
    return {
        "devices": [{"id": d, "name": name_of(topology, d)} for d in inc.estimate.devices],
        "device_reported": set(crews.device_bases(inc).values()) == {"reported"},
        "probability": p,
        "probability_label": "" if p is None else crews.percent_label(p, viewer.language),
        "certainty": _certainty(inc, topology, viewer),
    }


def _certainty(inc: Incident, topology: Topology, viewer: Viewer) -> dict[str, Any]:
    """:func:`outage_sentinel.crew.certainty` for the board (who set it, phones masked)."""
    sure = crews.certainty(topology, inc, viewer.language)
    return {**sure, "set_by": mask_phones(sure["set_by"])}


def _crew_name(topology: Topology, crew_id: Any) -> str | None:
    if not crew_id:
        return None
    crew = next((c for c in topology.crews if c.id == crew_id), None)
    return crew.name if crew is not None and crew.name else str(crew_id)


class CardCache:
    """Overview cards by incident, kept while the incident row (revision, stage, crew,
    priority), the topology and the language stay the same; the countdown colour is recomputed
    at each read. A board serving 500 incidents decodes only the states that changed, and
    reads only their deadlines: what a deadline depends on (a dispatch, the outage off again,
    its villages: steps that save the incident, so move ``updated_at``; the crew; the bundle)
    is in the key."""

    def __init__(self) -> None:
        self._cards: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()  # requests run on several worker threads

    def cards(self, heads: Sequence[Mapping[str, Any]],
              states: Callable[[Sequence[str]], Mapping[str, Any]], topology: Topology,
              now: datetime, viewer: Viewer, commitments: crews.Commitments,
              deadlines: Deadlines | None = None) -> list[dict[str, Any]]:
        """The cards of ``heads`` (the active incident rows without state), in their order,
        each counting down to the deadline ``deadlines`` gives it."""
        with self._lock:
            return self._refresh(heads, states, topology, now, viewer, commitments, deadlines)

    def _refresh(self, heads: Sequence[Mapping[str, Any]],
              states: Callable[[Sequence[str]], Mapping[str, Any]], topology: Topology,
              now: datetime, viewer: Viewer, commitments: crews.Commitments,
              deadlines: Deadlines | None) -> list[dict[str, Any]]:
        keys = {h["id"]: (h["updated_at"], h["revision"], h.get("stage"), h.get("crew_id"),
                          h.get("priority"), id(topology), viewer.language, str(viewer.tz))
                for h in heads}
        stale = [i for i, k in keys.items() if self._cards.get(i, ((), {}))[0] != k]
        fresh = states(stale) if stale else {}
        rows = [{**h, "state": fresh[h["id"]]} for h in heads if h["id"] in fresh]
        held = deadlines(rows) if deadlines is not None and rows else {}
        for row in rows:
            card = incident_card(row, topology, now, viewer, commitments, held.get(row["id"]))
            self._cards[row["id"]] = (keys[row["id"]], card)
        self._cards = {i: c for i, c in self._cards.items() if i in keys}
        out = []
        for h in heads:
            cached = self._cards.get(h["id"])
            if cached is None:
                continue  # its state vanished between the two reads: next time
            card = dict(cached[1])
            deadline = datetime.fromisoformat(card["deadline"]) if card["deadline"] else None
            card["deadline_state"] = deadline_state(deadline, now, card["arrived"])
            out.append(card)
        return out


def overview(cards: list[dict[str, Any]], planned: list[dict[str, Any]], now: datetime, *,
             storm: Mapping[str, Any] | None, health: Mapping[str, Any],
             outbox: Mapping[str, int], viewer: Viewer,
             clock_offsets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The overview: active incidents by priority, planned work, storm, sources, outbox.
    ``clock_offsets``: the AMI sources flagged as read in the wrong zone, by source (the kv
    records under :data:`~outage_sentinel.clock_offset.CLOCK_OFFSET_PREFIX`); a flagged
    source is listed even with no health record, so no flag goes unseen."""
    cards = sorted(cards, key=lambda c: (-c["priority"], c["start"] or ""))
    offsets = clock_offsets or {}
    return {
        "now": iso(now), "incidents": cards, "planned": planned,
        "storm": {k: mask_phones(v) if isinstance(v, str) else v for k, v in storm.items()}
        if storm else None,
        "sources": [source_health(k, health.get(k), viewer, offsets.get(k))
                    for k in sorted({*health, *offsets})],
        "outbox": dict(outbox),
        "totals": {"customers": sum(c["customers"] for c in cards),
                   "special_care": sum(c["special_care"] for c in cards)},
    }


def _when(value: Any) -> datetime | None:
    """A stored ISO time, or None (missing or unreadable)."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def source_health(name: str, value: Any, viewer: Viewer, clock_offset: Any = None
                  ) -> dict[str, Any]:
    """One source as the overview shows it: ok or failing, its last successful poll, and
    (``clock_offset``) its times' offset when they look read in the wrong zone."""
    value = value if isinstance(value, Mapping) else {}
    last = _when(value.get("last_ok"))
    return {"name": name, "ok": bool(value.get("ok")), "last_ok": iso(last),
            "last_ok_local": local(last, viewer.tz),
            "error": redact(str(value.get("error") or "")),
            "clock_offset": clock_offset_view(clock_offset, viewer)}


def clock_offset_view(record: Any, viewer: Viewer) -> dict[str, Any] | None:
    """A flagged AMI source's offset as the board shows it (None: not flagged): the hours its
    report times sit from their arrival (report minus arrival), the zone they are read in and
    the one they look stamped in, and the config key to set. Outage times from the source —
    in notices too — may be that far off until someone checks, so the command centre must
    see it where it sees the source; nothing is shifted by the daemon."""
    if not isinstance(record, Mapping):
        return None
    try:
        hours = float(record["offset_hours"])
    except (KeyError, TypeError, ValueError):
        return None
    if not math.isfinite(hours) or hours == 0:
        return None
    since = _when(record.get("flagged_at"))
    return {"hours": hours, "config_key": str(record.get("config_key") or "ami.timezone"),
            "read_in": str(record.get("read_in") or ""),
            "stamped_in": str(record.get("stamped_in") or ""),
            "reports": reports if isinstance(reports := record.get("reports"), int) else 0,
            "since": iso(since), "since_local": local(since, viewer.tz)}


def notice_row(m: Any, viewer: Viewer) -> dict[str, Any]:
    """One outbox message as the board shows it: to whom, how it stands, and exactly what it
    says (the subject, the text and whom a group message @-mentions; numbers masked and
    personal links cut for a viewer). A stored delivery error is shown without the secrets it
    may hold (a webhook's key in its URL), for every role. Recipients' numbers are masked for every role: an
    operator reads whole numbers only in the texts whose reader must call them (a crew's
    dispatch, a care list)."""
    mentions = (m.payload or {}).get("mentions") or ()
    words = viewer if m.audience == "crew" or m.purpose == "care" else \
        replace(viewer, phones=False)
    return {"id": m.id, "incident": m.incident_id, "status": m.status, "purpose": m.purpose,
            "audience": m.audience, "channel": m.channel, "target": mask_phones(m.target),
            "attempts": m.attempts, "queued_at": local(m.created_at, viewer.tz),
            "sent_at": local(m.sent_at, viewer.tz),
            "error": said_text(redact(m.last_error or ""), viewer)
            if m.status != "sent" or (m.payload or {}).get("digest") else "",
            "subject": said_text(m.subject or "", words), "text": said_text(m.body or "", words),
            "mentions": [mask_phones(str(x)) for x in mentions],
            "readdressed": [{"from": mask_phones(str(x.get("from", ""))),
                             "to": mask_phones(str(x.get("to", "")))}
                            for x in (m.payload or {}).get("readdressed") or ()],
            "sms": sms_sent(m, viewer)}


def sms_sent(m: Any, viewer: Viewer) -> dict[str, Any] | None:
    """What an SMS carried (None for any other channel): no text of ours, only the template
    of its purpose and the template's parameters — the care list as cut to fit ("…等3户"),
    the link as its token. Numbers masked (an operator reads them only where the reader
    must call them: a crew's dispatch, a care list) and the token cut for a viewer. The SMS
    channels are the planner's (``viewer.sms``: of type ``sms``, or a sink named so)."""
    if m.channel not in viewer.sms:
        return None
    params = (m.payload or {}).get("params") or {}
    calls = m.audience == "crew" or m.purpose == "care"
    values = {k: REDACTED if k == "link" and not viewer.links
              else said_text(v if calls else mask_phones(v), viewer)
              for k, v in template_values(params).items()}
    return {"template": template_purpose(m.purpose, params), "params": values}


#: ``/api/outbox``: messages per page unless ``limit`` says, and at most.
OUTBOX_PAGE, OUTBOX_PAGE_MAX = 200, 500
#: What an outbox id and purpose hold at most (the columns' lengths).
NAME_CHARS = 40
OUTBOX_PARAMETERS = ("status", "purpose", "incident", "before", "limit")


class QueryError(ValueError):
    """A query parameter the page cannot use; the message names it."""


@dataclass(frozen=True)
class OutboxQuery:
    """Which messages ``/api/outbox`` lists: newest first, ``limit`` of those with an id below
    ``before``, of the statuses, purpose and incident given (None: any)."""

    statuses: tuple[str, ...] | None = None
    purpose: str | None = None
    incident: str | None = None
    before: int | None = None
    limit: int = OUTBOX_PAGE


def outbox_query(params: Mapping[str, str]) -> OutboxQuery:
    """The query string's :class:`OutboxQuery`, or :class:`QueryError` naming the parameter."""
    unknown = sorted(set(params) - set(OUTBOX_PARAMETERS))
    if unknown:
        raise QueryError(f"{unknown[0]}: unknown parameter (parameters: "
                         f"{', '.join(OUTBOX_PARAMETERS)})")
    statuses = None
    if params.get("status"):
        statuses = tuple(dict.fromkeys(x.strip() for x in params["status"].split(",")))
        bad = [x for x in statuses if x not in OUTBOX_STATUSES]
        if bad:
            raise QueryError(f"status: {bad[0]!r} is none of {', '.join(OUTBOX_STATUSES)} "
                             "(several: comma-separated)")
    return OutboxQuery(statuses, _name(params, "purpose"), _name(params, "incident"),
                       _whole(params, "before", MAX_ID),
                       _whole(params, "limit", OUTBOX_PAGE_MAX) or OUTBOX_PAGE)


def _name(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key) or None
    if value is not None and len(value) > NAME_CHARS:
        raise QueryError(f"{key}: at most {NAME_CHARS} characters")
    return value


def _whole(params: Mapping[str, str], key: str, most: int) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= most:
        raise QueryError(f"{key}: a whole number from 1 to {most}")
    return int(value)


def found_devices(log: Sequence[Mapping[str, Any]]) -> list[str]:
    """The devices the latest close-out confirmed."""
    for e in reversed(log):
        if e.get("stage") == "closed":
            d = e.get("details") or {}
            return [str(x) for x in d.get("devices") or ([d["device"]] if d.get("device")
                                                         else [])]
    return []


#: A time as a log step's details keep it (ISO, with its offset).
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)")


def step_details(details: Any, tz: tzinfo = UTC, language: str = "", stage: str = "",
                 topology: Topology | None = None) -> str:
    """A log step's details in a line (the areas removed, the ETR set, the crew sent),
    numbers masked, times local in ``tz`` like the rest of the page, fractions rounded; in
    ``language``'s words (:mod:`~outage_sentinel.board.step_text`: the operator's flags as
    what they mean, ids named from ``topology``), or keys as kept without one."""
    if not isinstance(details, Mapping) or not details:
        return ""
    if language:
        parts = detail_parts(details, stage, language, topology,
                             lambda v, k: _shown(v, tz, k))
        return mask_phones(("；" if language == "zh" else "; ").join(parts))[:500]
    parts = [f"{k}: {'、'.join(_shown(x, tz, k) for x in v) if isinstance(v, list) else _shown(v, tz, k)}"
             for k, v in details.items() if v not in (None, "", [])]
    return mask_phones("; ".join(parts))[:300]


#: Detail keys whose numbers are coordinates: shown as kept (0.1° is 11 km off).
COORDINATE_KEYS = frozenset({"lat", "lon", "latitude", "longitude"})


def _shown(value: Any, tz: tzinfo, key: str = "") -> str:
    """One value of a step's details as the page says it: a time (ISO) local, a fraction
    rounded (a distance to 0.1 km, as the crew's texts say it), a coordinate as kept."""
    if isinstance(value, float) and key not in COORDINATE_KEYS:
        return str(round(value, 1) if abs(value) >= 1 else float(f"{value:.2g}"))
    if isinstance(value, str) and _ISO_TIME.fullmatch(value):
        return local(datetime.fromisoformat(value), tz) or value
    return str(value)


#: Why a quarantined payload has no retry button, by language.
NOT_RETRIED: Mapping[str, Mapping[str, str]] = {
    "zh": {"refused": "校验未通过、未入库的记录，无可重新处理的事件（请修正数据源，它会再次发送）",
           "requeued": "已重新排队"},
    "en": {"refused": "refused as it came, never stored: nothing to process again (fix the "
                      "source, it sends it again)",
           "requeued": "re-queued already"},
}


def quarantine_row(q: Mapping[str, Any], viewer: Viewer) -> dict[str, Any]:
    """A quarantined payload on the overview: when, from where, why (secrets cut, numbers
    masked), how often again; ``retry``: whether it is a processing failure's stored event
    not put back yet (:func:`~outage_sentinel.store.events.failed_event`, the rule
    ``quarantine retry`` applies first), else ``not_retried`` says why not."""
    reason = str(q["reason"] or "")
    words = NOT_RETRIED.get(viewer.language, NOT_RETRIED["en"])
    why = None
    if failed_event(reason, q.get("raw")) is None:
        why = words["refused"]
    elif REQUEUED in reason:
        why = f"{words['requeued']} ({reason.split(REQUEUED, 1)[1]})"
    return {"id": q["id"], "source": q["source"], "reason": redact(reason)[:300],
            "at": local(q["received_at"], viewer.tz), "repeats": q.get("repeats") or 0,
            "last_seen": local(q["last_seen"], viewer.tz) if q.get("repeats") else None,
            "retry": why is None, "not_retried": mask_phones(redact(why)) if why else None}


def closable_devices(inc: Incident, topology: Topology) -> list[dict[str, str]]:
    """The devices a close-out may name from the page: the estimate's, then those of its
    suspected section (the transformers in it too: an area's own fault) and its other
    hypotheses; junctions are no devices. Any other is typed by id or name."""
    ids = [*inc.estimate.devices, *inc.estimate.section,
           *(str(d) for h in inc.estimate.hypotheses for d in h.get("devices", ()))]
    kinds = DEVICE_KINDS | {"source", "transformer"}
    return [{"id": d, "name": name_of(topology, d)} for d in dict.fromkeys(ids)
            if d in topology.nodes and topology.nodes[d].kind in kinds]


def incident_detail(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]],
                    notices: Sequence[Any], evidence: Sequence[Any], topology: Topology,
                    now: datetime, viewer: Viewer, commitments: crews.Commitments,
                    held: Held | None = None) -> dict[str, Any]:
    """The incident page: the card (counting down to ``held``) plus timeline, evidence,
    hypotheses, section, areas, special-care households and every notice."""
    inc = Incident.from_json(row["state"])
    card = incident_card(row, topology, now, viewer, commitments, held)
    care = special_care_customers(affected_customers(topology, inc.off))
    card.update({
        "timeline": [{"at": local(e["at"], viewer.tz), "stage": str(e["stage"]),
                      "stage_label": label(STAGE_LABELS, viewer.language, str(e["stage"])),
                      "actor": mask_phones(str(e.get("actor") or "")),
                      "note": mask_phones(str(e.get("note") or "")),
                      "details": step_details(e.get("details"), viewer.tz, viewer.language,
                                              str(e["stage"]), topology)} for e in log],
        # What the close-out confirmed (the crews' finding), in place of the estimate.
        "found": [{"id": d, "name": name_of(topology, d)} for d in found_devices(log)],
        "evidence": [_evidence(s, viewer) for s in evidence],
        "hypotheses": hypotheses(inc.estimate.hypotheses, topology, viewer.language),
        "section": [{"id": d, "name": name_of(topology, d)} for d in inc.estimate.section],
        "closable": closable_devices(inc, topology),
        # The fault point the command centre set: the close-out's device field starts there.
        "device_set": [{"id": d, "name": name_of(topology, d)} for d in inc.device_set],
        # The expected restoration the command centre set (its clear button takes it back).
        "etr_set": local(inc.etr_set, viewer.tz),
        "areas": [area_row(inc, t, topology, viewer) for t in inc.estimate.transformers],
        "care": [{"name": c.name, "phone": phone(c.phone, viewer), "tags": list(c.tags),
                  "area": name_of(topology, c.transformer)} for c in care],
        "notices": [notice_row(m, viewer) for m in notices],
        "villages_all": [{"id": v, "name": village_name(topology, v)}
                         for v in inc.estimate.villages],
        "cause": mask_phones(row.get("cause_category") or inc.cause),
        "cancel_reason": mask_phones(inc.cancel_reason or "") or None,
        "area_text": mask_phones(inc.area_text),
        "crew_position": crew_position(topology, row.get("crew_id"), inc,
                                       str(row.get("stage") or inc.stage)),
        # Every crew may be sent ("or any"): those covering the feeder first.
        "crews": sorted(({"id": c.id, "name": c.name,
                          "covers": not c.feeders or inc.feeder in c.feeders}
                         for c in topology.crews), key=lambda c: not c["covers"]),
    })
    return card


def area_row(inc: Incident, t: str, topology: Topology, viewer: Viewer) -> dict[str, Any]:
    """One area of the incident page: its mark, when it came back, and whose it is."""
    node = topology.nodes.get(t)
    return {"id": t, "name": name_of(topology, t), "mark": inc.mark(t),
            "restored": local(inc.restored[t], viewer.tz) if t in inc.restored else None,
            # counted back when the records ended, nothing saying it is: to confirm
            "unconfirmed": t in inc.unconfirmed,
            # never confirmed back, and off in this later incident
            "continued": inc.continued.get(t),
            "village": village_name(topology, node.village) if node is not None else "",
            "customers": node.customers if node is not None else 0}


def crew_position(topology: Topology, crew_id: Any, inc: Incident, stage: str
                  ) -> list[float] | None:
    """Where to draw the crew on the map, ``[lon, lat]``: at the fault once on site, else at
    its base (``crews.csv`` lat/lon); None when the bundle does not say."""
    if not crew_id:
        return None
    if stage == "on_site" or (stage == "partially_restored" and inc.crew_progress == "on_site"):
        for d in inc.estimate.devices:
            node = topology.nodes.get(d)
            if node is not None and node.lat is not None and node.lon is not None:
                return [node.lon, node.lat]
    crew = next((c for c in topology.crews if c.id == crew_id), None)
    try:
        return [float(crew.extra["lon"]), float(crew.extra["lat"])] if crew else None
    except (KeyError, ValueError):
        return None


def _evidence(stored: Any, viewer: Viewer) -> dict[str, Any]:
    e = stored.event
    return {"source": e.source, "signal": e.signal, "status": e.status,
            "at": local(e.start, viewer.tz), "transformers": list(e.transformers),
            "device": e.device,
            "text": mask_phones(e.area_text or str((e.raw or {}).get("note") or ""))}


def hypotheses(ranked: Sequence[Mapping[str, Any]], topology: Topology, language: str = "zh"
               ) -> list[dict[str, Any]]:
    """The ranked hypotheses, each with what separates it from the first: the areas only it
    would have off, and the areas only the first would (where a patrol or a call-back decides);
    each probability with the texts' words for it (:func:`crew.percent_label`)."""
    top = set(ranked[0].get("transformers", ())) if ranked else set()
    out = []
    for h in ranked:
        areas = set(h.get("transformers", ()))
        p = h.get("probability")
        out.append({
            "devices": [{"id": str(d), "name": name_of(topology, str(d))}
                        for d in h.get("devices", ())],
            "probability": p,
            "probability_label": crews.percent_label(float(p), language)
            if isinstance(p, int | float) else "",
            "customers": h.get("customers"),
            "areas": len(areas),
            "only_here": [name_of(topology, t) for t in sorted(areas - top)][:8],
            "only_first": [name_of(topology, t) for t in sorted(top - areas)][:8],
        })
    return out


def field_answers(rows: Sequence[Mapping[str, Any]], topology: Topology, viewer: Viewer
                  ) -> list[dict[str, Any]]:
    """What liaisons answered through their links, latest first."""
    words = {"back": "已来电", "dark": "仍停电"} if viewer.language == "zh" else \
        {"back": "power back", "dark": "still off"}
    return [{"area": name_of(topology, str(r["area"])),
             "village": village_name(topology, str(r["village"])),
             "answer": r["answer"], "answer_label": words.get(str(r["answer"]), r["answer"]),
             "note": mask_phones(str(r["note"] or "")), "at": local(r["at"], viewer.tz),
             "revision": r["revision"]} for r in reversed(rows)]


def field_photos(log: Sequence[Mapping[str, Any]], incident_id: str, topology: Topology,
                 viewer: Viewer) -> list[dict[str, Any]]:
    """The photos crews and liaisons uploaded (the log's ``photo`` steps), oldest first: who,
    when, which device or area, and where the board serves them (signed-in staff only)."""
    zh = viewer.language == "zh"
    out = []
    for e in log:
        details = e.get("details") or {}
        name = str(details.get("file") or "")
        if e["stage"] != "photo" or not name:
            continue
        actor = str(e.get("actor") or "")
        kind, _, who = actor.partition(":")
        if kind == "crew":
            by = _crew_name(topology, who) or who
        elif kind == "liaison":
            by = (f"{village_name(topology, who)}联络人" if zh
                  else f"liaison of {village_name(topology, who)}")
        else:
            by = actor
        where = details.get("device") or details.get("area") or ""
        base = f"/api/incidents/{quote(incident_id, safe='')}/photos/{name}"
        out.append({"name": name, "at": local(e["at"], viewer.tz), "by": mask_phones(by),
                    "where": name_of(topology, str(where)) if where else "",
                    "url": base, "thumb": base + "?size=thumb"})
    return out
