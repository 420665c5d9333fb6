"""Incidents: correlating events into incidents and deciding whom to tell. Pure core.

No I/O and no clock reads: the daemon passes ``now``, the topology and the stored state in, and
persists what comes out (the new incident state and the notices to plan) in one transaction.

* :func:`resolve_event` maps an event's references (ids, names, meter or customer ids) onto the
  topology and reports what it could not resolve.
* :func:`correlate` picks the open incident an event belongs to: the one it already belongs to
  (same source and event id), else an active incident of the same class on the same feeder whose
  outage window is within the correlation window.
* :func:`apply_event` folds the event into the incident, re-estimates the fault point and bumps
  the revision when anything a recipient cares about changed.
* :func:`plan_notices` compares two revisions and says which villages get which notice: a new
  outage for newly affected villages only, an update when a village's own expected restoration
  time moves or a report or correction changes which of its areas are off, "restored" for
  villages that are back (whole incident restored, or the estimate shrank).
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from outage_sentinel.area_text import normalise, qualified_feeders, resolve_area_text
from outage_sentinel.events import (
    Kind,
    OutageEvent,
    Signal,
    Status,
    kind_unclassified,
    parse_optional_time,
    parse_time,
)
from outage_sentinel.topology import Topology

UNPLANNED = ("fault",)


@dataclass(frozen=True)
class Resolved:
    """An event's references mapped onto the topology.

    ``transformers`` are the areas the event names (by reference, or by precise area text);
    ``possible`` the areas its imprecise area text may mean ("XX村部分用户", 可能受影响), never
    one of ``transformers``. ``set_aside``: a call's references that name another area than
    the one it is placed in (:func:`_call_areas`), for the command centre to hear of.
    ``caller``: who made a call, the customer or meter number it names (:func:`call_caller`);
    "" when it names none the bundle knows.
    """

    feeder: str | None
    transformers: tuple[str, ...]
    device: str | None
    unknown: tuple[str, ...]
    possible: tuple[str, ...] = ()
    set_aside: tuple[str, ...] = ()
    caller: str = ""


def resolve_event(topology: Topology, event: OutageEvent) -> Resolved:
    """Resolve transformer/device references by id, name, meter id or customer id, and the
    event's area text by the bundle's names and aliases (:mod:`outage_sentinel.area_text`).

    An area reference that is no id or name of one node is read in its normalised form, as
    area text is (:func:`_ref_areas`); a name several areas, devices or feeders share is
    narrowed by the record's line (:func:`record_lines`), never taken as the first in the
    bundle: that guess would tell the wrong village and send the crew to the wrong line."""
    unknown: list[str] = []
    lines = record_lines(topology, event.feeder) if event.feeder else ()
    feeder = lines[0] if len(lines) == 1 else None
    transformers: list[str] = []
    possible: list[str] = []
    set_aside: tuple[str, ...] = ()
    if event.signal == "call":
        transformers, possible, set_aside = _call_areas(topology, event.transformers, lines,
                                                        unknown)
    else:
        for ref in event.transformers:
            _place_ref(topology, ref, lines, transformers, possible, unknown)
    transformers = list(dict.fromkeys(transformers))
    device = _device(topology, event.device, lines) if event.device else None
    if event.device and device is None:
        unknown.append(event.device)
    if event.feeder and not lines:
        unknown.append(event.feeder)
    anchor = device or (transformers[0] if transformers else None)
    if anchor is not None and topology.energised[topology.pos[anchor]]:
        feeder = topology.feeder_of(anchor)
    if event.area_text and not (event.signal == "call" and transformers):
        scope = resolve_area_text(topology, event.area_text, feeder)
        confirmed = scope.confirmed
        if event.signal == "call":
            # One caller is one customer: an address naming several areas (a village) places
            # none of them, only the feeder when they share one.
            feeder = feeder or _one_feeder(topology, (*confirmed, *scope.possible))
            confirmed = confirmed if len(confirmed) == 1 else ()
        transformers.extend(t for t in confirmed if t not in transformers)
        possible.extend(scope.possible)
        if feeder is None and not lines:
            feeder = scope.feeder
        if anchor is None and transformers and topology.energised[topology.pos[transformers[0]]]:
            feeder = topology.feeder_of(transformers[0])
        if not transformers and not possible and device is None:
            unknown.extend(f for f in scope.unplaced if f not in unknown)
    possible = [t for t in dict.fromkeys(possible) if t not in transformers]
    caller = call_caller(topology, event.transformers) if event.signal == "call" else ""
    return Resolved(feeder, tuple(transformers), device, tuple(unknown), tuple(possible),
                    set_aside, caller)


def _place_ref(topology: Topology, ref: str, lines: Sequence[str], transformers: list[str],
               possible: list[str], unknown: list[str]) -> None:
    """Place one area reference: an id, name, meter or customer number of one area, else
    as :func:`_ref_areas` reads it."""
    nid = topology.resolve(ref)
    if nid is not None and topology.nodes[nid].kind == "transformer":
        transformers.append(nid)
    else:
        _ref_areas(topology, ref, lines, transformers, possible, unknown)


def _call_areas(topology: Topology, refs: Sequence[str], lines: Sequence[str],
                unknown: list[str]) -> tuple[list[str], list[str], tuple[str, ...]]:
    """A call's areas, possible areas and the references set aside: one caller is in one
    place, so the call goes where its most precise reference that places it says — the
    caller's customer or meter number (:func:`_is_customer_ref`), then the area the work
    order names (the agent's pick from an address) — never in all of them: a work order whose
    area disagreed with its customer put one call on two feeders, and a lit village heard it
    was off. References naming another area are set aside; those placing nothing are
    ``unknown``, as for any record."""
    placed: list[tuple[str, list[str], list[str]]] = []
    for ref in refs:
        areas: list[str] = []
        maybe: list[str] = []
        _place_ref(topology, ref, lines, areas, maybe, unknown)
        placed.append((ref, areas, maybe))
    ranked = sorted(placed, key=lambda p: not _is_customer_ref(topology, p[0]))
    chosen = next((areas for _, areas, _ in ranked if areas), None)
    if chosen is None:
        return [], [t for _, _, maybe in placed for t in maybe], ()
    aside = tuple(ref for ref, areas, _ in placed if areas and not set(areas) <= set(chosen))
    return chosen, [], aside


def call_caller(topology: Topology, refs: Sequence[str]) -> str:
    """Who made a call: the first of its references that is a customer or meter number the
    bundle knows (:func:`_is_customer_ref`; the mapper lists the customer first), "" when
    none is (a work order placed by its area or address alone). Two work orders of one
    caller are one customer calling twice (:func:`evidence_of`)."""
    return next((ref for ref in refs if _is_customer_ref(topology, ref)), "")


def _is_customer_ref(topology: Topology, ref: str) -> bool:
    """Whether ``ref`` is a customer or meter number: placed by the bundle, yet no node's id
    or name (whatever order a stored event lists its references in)."""
    return (ref not in topology.pos and not topology.named(ref)
            and topology.resolve(ref) is not None)


def record_lines(topology: Topology, name: str) -> tuple[str, ...]:
    """The feeders a record's line means: its id; the feeder of that name, or every feeder a
    name several substations share; else by the normalised name or an alias ("10KV马集线",
    "马集线"). Empty when no feeder is called so."""
    if name in topology.feeder_ids:
        return (name,)
    exact = topology.feeders_by_name.get(name, ())
    if len(exact) == 1:
        return exact
    # "马集变10kV王庄线", "10kV王庄线（马集变）", "10kV王庄线911": the line of that substation.
    return _line_keys(topology).get(normalise(name), exact) or qualified_feeders(topology, name)


_LINE_KEYS: weakref.WeakKeyDictionary[Topology, dict[str, tuple[str, ...]]] = \
    weakref.WeakKeyDictionary()


def _line_keys(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Normalised feeder id or name -> every feeder it may mean; an alias means its feeder
    only (aliases are explicit). Built once per topology."""
    keys = _LINE_KEYS.get(topology)
    if keys is None:
        keys = {}
        named = [*((fid, (fid,)) for fid in sorted(topology.feeder_ids)),
                 *topology.feeders_by_name.items()]
        for name, fids in named:
            key = normalise(name)
            keys[key] = (*keys.get(key, ()), *(f for f in fids if f not in keys.get(key, ())))
        keys.update((normalise(a.alias), (a.id,)) for a in topology.aliases if a.kind == "feeder")
        keys.pop("", None)
        _LINE_KEYS[topology] = keys
    return keys


def _on_lines(topology: Topology, nodes: Sequence[str], lines: Sequence[str]
              ) -> tuple[str, ...]:
    """The ``nodes`` on one of the record's ``lines``; all of them when none is (or no line)."""
    on = tuple(n for n in nodes if topology.feeder_of(n) in lines)
    return on or tuple(nodes)


def _ref_areas(topology: Topology, ref: str, lines: Sequence[str], transformers: list[str],
               possible: list[str], unknown: list[str]) -> None:
    """Place a transformer reference that is no id or name of one area: by its normalised
    form ("建设路社区１号台区", "建设路社区 1号台区", "建设路社区1#公变", an alias), else as
    areas separated by spaces, each one a reference. A name several areas share means the one
    on the record's line; still several, each is only possibly off (可能受影响). Never by a
    prefix ("T404" is not area T4): a reference names an area whole or is unknown."""
    named = _area_keys(topology).get(normalise(ref))
    pieces = ref.split()
    if named:
        named = _on_lines(topology, named, lines)
        (transformers if len(named) == 1 else possible).extend(named)
    elif len(pieces) > 1:
        for piece in pieces:
            nid = topology.resolve(piece)
            if nid is not None and topology.nodes[nid].kind == "transformer":
                transformers.append(nid)
            else:
                _ref_areas(topology, piece, lines, transformers, possible, unknown)
    elif ref not in unknown:
        unknown.append(ref)


_AREA_KEYS: weakref.WeakKeyDictionary[Topology, dict[str, tuple[str, ...]]] = \
    weakref.WeakKeyDictionary()


def _area_keys(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Normalised transformer-area id or name -> every area it may mean, as area text reads
    them (:func:`~outage_sentinel.area_text.normalise`); an alias means its area only. Built
    once per topology."""
    keys = _AREA_KEYS.get(topology)
    if keys is None:
        keys = {}
        for t in topology.transformers:
            for key in {normalise(t), normalise(topology.nodes[t].name)} - {""}:
                keys[key] = (*keys.get(key, ()), t)
        keys.update((normalise(a.alias), (a.id,)) for a in topology.aliases
                    if a.kind == "transformer")
        _AREA_KEYS[topology] = keys
    return keys


def _device(topology: Topology, ref: str, lines: Sequence[str]) -> str | None:
    """The device (or node) a record names; of several of that name, the one on the record's
    line, else none."""
    nid = topology.resolve(ref)
    if nid is None:
        named = _on_lines(topology, topology.named(ref), lines)
        nid = named[0] if len(named) == 1 else None
    return nid


def _one_feeder(topology: Topology, areas: Iterable[str]) -> str | None:
    """The feeder all energised ``areas`` are on, if it is one."""
    feeders = {topology.feeder_of(t) for t in areas if topology.energised[topology.pos[t]]}
    return feeders.pop() if len(feeders) == 1 else None


@dataclass(frozen=True)
class Member:
    """The latest revision of one source record (``source|event_id``) within an incident."""

    key: str
    kind: Kind
    status: Status
    signal: Signal
    start: datetime
    etr: datetime | None
    end: datetime | None
    device: str | None
    transformers: tuple[str, ...]
    unknown: tuple[str, ...]
    area_text: str
    cause: str
    seen_at: datetime
    #: Areas the record names imprecisely ("XX村部分用户"): in scope as 可能受影响, not evidence.
    possible: tuple[str, ...] = ()
    #: False when the source could not classify the record's outage type
    #: (:func:`~outage_sentinel.events.kind_unclassified`): ``kind`` is how it is handled,
    #: not a fact to announce.
    kind_known: bool = True
    #: The record (member key) that re-issued this one under a new id: planned work edited in
    #: the outage system (:func:`outage_sentinel.triage.reissued_work`). Ended (called off)
    #: when it was, its times are no longer the work's.
    superseded_by: str = ""
    #: Areas planned or temporary work named and no longer does, edited under its own id
    #: before it began: the work is called off for them (:func:`edited_out`).
    left: tuple[str, ...] = ()
    #: A call's caller (:attr:`Resolved.caller`): its work orders count once
    #: (:func:`evidence_of`). "" for any other record, and for a call naming no customer.
    caller: str = ""
    #: When the record stated its ``cause`` (the revision that first gave it; ``None``: the
    #: revision seen at ``seen_at``): a feed re-stating every record each poll, or an update
    #: that gives none, does not make an older word the latest (:func:`agreed_cause`).
    cause_at: datetime | None = None
    #: Areas an outage-system record of a fault named off and no longer names, edited under
    #: its own id while open (:func:`dropped_from`), each with when the edit was seen: the
    #: record stopped reporting them off there (its outage for them ended then), which is no
    #: word that their power is back (the rest switched to another supply, or a record put
    #: right): counted back unconfirmed (:func:`unconfirmed_back`). An area named again
    #: leaves the list.
    dropped: tuple[tuple[str, datetime], ...] = ()

    @property
    def cause_stated(self) -> datetime:
        """When :attr:`cause` was stated."""
        return self.cause_at or self.seen_at

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "kind": self.kind, "status": self.status, "signal": self.signal,
            "start": self.start.isoformat(), "etr": _iso(self.etr), "end": _iso(self.end),
            "device": self.device, "transformers": list(self.transformers),
            "unknown": list(self.unknown), "area_text": self.area_text, "cause": self.cause,
            "seen_at": self.seen_at.isoformat(), "possible": list(self.possible),
            **({} if self.kind_known else {"kind_known": False}),
            **({"superseded_by": self.superseded_by} if self.superseded_by else {}),
            **({"left": list(self.left)} if self.left else {}),
            **({"caller": self.caller} if self.caller else {}),
            **({"cause_at": self.cause_at.isoformat()} if self.cause_at else {}),
            **({"dropped": {t: at.isoformat() for t, at in self.dropped}}
               if self.dropped else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Member:
        return cls(
            key=d["key"], kind=d["kind"], status=d["status"], signal=d.get("signal", "notice"),
            start=parse_time(d["start"], "start"), etr=parse_optional_time(d.get("etr"), "etr"),
            end=parse_optional_time(d.get("end"), "end"), device=d.get("device"),
            transformers=tuple(d.get("transformers") or ()), unknown=tuple(d.get("unknown") or ()),
            area_text=d.get("area_text", ""), cause=d.get("cause", ""),
            seen_at=parse_time(d["seen_at"], "seen_at"),
            possible=tuple(d.get("possible") or ()),
            kind_known=bool(d.get("kind_known", True)),
            superseded_by=str(d.get("superseded_by") or ""),
            left=tuple(d.get("left") or ()),
            caller=str(d.get("caller") or ""),
            cause_at=parse_optional_time(d.get("cause_at"), "cause_at"),
            dropped=tuple((t, parse_time(at, "dropped"))
                          for t, at in (d.get("dropped") or {}).items()),
        )


def stated_percent(p: float | None) -> int | None:
    """A probability as the texts state it: a whole percent, rounded half up, 100 for what
    reads "＞99%" (≥ 99.5 %) and 0 for "＜1%" (< 0.5 %); None for none.
    (:func:`outage_sentinel.crew.percent_label` words it.)"""
    if p is None:
        return None
    return min(100, max(0, math.floor(p * 100 + 0.5)))


def member_of(event: OutageEvent, resolved: Resolved, now: datetime) -> Member:
    return Member(
        key=f"{event.source}|{event.event_id}", kind=event.kind, status=event.status,
        signal=event.signal, start=event.start, etr=event.expected_restoration, end=event.end,
        device=resolved.device, transformers=resolved.transformers, unknown=resolved.unknown,
        area_text=event.area_text, cause=event.cause, seen_at=now,
        possible=resolved.possible, kind_known=not kind_unclassified(event),
        caller=resolved.caller,
    )


@dataclass(frozen=True)
class Evidence:
    """What the members of an incident say about the network, for the estimator."""

    dead: frozenset[str] = frozenset()
    alive: frozenset[str] = frozenset()
    calls: Mapping[str, int] = field(default_factory=dict)
    open_devices: frozenset[str] = frozenset()
    #: Transformers under an active planned outage: explained, not evidence of a fault.
    planned: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Estimate:
    """The fault-point estimate for an incident."""

    devices: tuple[str, ...]
    probability: float | None
    transformers: tuple[str, ...]
    customers: int
    villages: tuple[str, ...]
    section: tuple[str, ...] = ()
    important_customers: tuple[str, ...] = ()
    hypotheses: tuple[Mapping[str, Any], ...] = ()
    #: The weather the estimate was made in, as ``locate`` reads it (``storm``,
    #: ``faults_elsewhere``, ``devices_elsewhere``); empty = a calm window. Kept so that a
    #: close-out's history case is localised again in the window it happened in.
    context: Mapping[str, Any] = field(default_factory=dict)


Estimator = Callable[[Topology, Evidence], Estimate]


def important_customers(topology: Topology, areas: Iterable[str]) -> tuple[str, ...]:
    """The important users and special-care households of ``areas`` (ids, in area order)."""
    return tuple(c.id for t in areas for c in topology.customers_by_transformer.get(t, ())
                 if c.importance or c.tags)


def first_estimate(topology: Topology, evidence: Evidence) -> Estimate:
    """The simple estimator: the named device, else the nearest protective device upstream of
    all transformer areas reported dead. Affected = everything downstream of that device."""
    dead = [t for t in sorted(evidence.dead, key=lambda t: topology.tin[topology.pos[t]])
            if t not in evidence.planned]
    devices: list[str] = sorted(evidence.open_devices)
    if not devices and dead:
        d = topology.common_protective_device(dead)
        if d is not None:
            devices = [d]
    affected: dict[str, None] = {}
    for d in devices:
        for t in topology.downstream_transformers(d):
            affected.setdefault(t, None)
    for t in dead:  # reported areas the device does not explain (e.g. de-energised) stay in
        affected.setdefault(t, None)
    transformers = tuple(affected)
    section: list[str] = []
    for d in devices:
        section.extend(topology.suspected_section(d))
    important = important_customers(topology, transformers)
    return Estimate(
        devices=tuple(devices),
        probability=None,
        transformers=transformers,
        customers=topology.customers_of(transformers),
        villages=tuple(topology.villages_of(transformers)),
        section=tuple(section),
        important_customers=important,
    )


@dataclass(frozen=True)
class Incident:
    """One outage as the command centre sees it. Serialised whole into ``incidents.state``."""

    id: str
    feeder: str
    kind: Kind
    status: IncidentStatus
    revision: int
    start: datetime
    etr: datetime | None
    end: datetime | None
    cause: str
    area_text: str
    members: Mapping[str, Member]
    estimate: Estimate
    #: Villages that have been told of the outage and not yet that it is over.
    notified_villages: tuple[str, ...] = ()
    unknown_refs: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Transformer areas back on supply (restoration steps), with the time each came back.
    restored: Mapping[str, datetime] = field(default_factory=dict)
    #: Lifecycle stage, see :data:`STAGES`.
    stage: Stage = "detected"
    #: The incident this one reopens (same areas off again soon after restoration).
    parent_id: str | None = None
    #: Where each affected area's place in the incident comes from, see :data:`SCOPE_MARKS`.
    #: Its keys are ``estimate.transformers``. Empty for incidents stored before it existed:
    #: every affected area then counts as reported.
    scope: Mapping[str, str] = field(default_factory=dict)
    #: Villages told their power is back. They hear of this incident again only if a source
    #: reports one of their areas off again, never on an inference.
    restored_villages: tuple[str, ...] = ()
    #: Villages told of areas the estimate later dropped, nothing having reported them: taken
    #: out quietly (the command centre is told, the liaisons are not).
    withdrawn_villages: tuple[str, ...] = ()
    #: The expected restoration time each notified village was last told (``None``: not known),
    #: and each withdrawn one before it was taken out.
    told_etr: Mapping[str, datetime | None] = field(default_factory=dict)
    #: Operator corrections (``incidents etr|scope|cancel``), which later evidence never undoes:
    #: the expected restoration time the command centre set (wins over the sources'), areas it
    #: took out of the scope, and why it cancelled the incident as a false alarm.
    etr_set: datetime | None = None
    excluded: tuple[str, ...] = ()
    cancel_reason: str = ""
    #: For each area excluded, the records (member keys) that named it then: what the command
    #: centre overruled. Another record naming it off later is news and takes it back in.
    #: (An area excluded before this was kept has no entry: only an operator's add undoes it.)
    excluded_against: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The fault device(s) the command centre set (``incidents device``, SCADA or a crew's
    #: call), which every later estimate names in place of the localiser's, and who set them.
    device_set: tuple[str, ...] = ()
    device_set_by: str = ""
    #: Where the crew the incident holds is: "" (none), "dispatched" or "on_site". The stage
    #: says it too until part of the supply comes back (``partially_restored`` says only that).
    crew_progress: CrewProgress = ""
    #: Areas counted back when the incident ended that no evidence says are (only inferred,
    #: possibly affected or called in; :func:`unconfirmed_back`): their villages hear that the
    #: outage's records ended and are asked whether their power is back, and the command
    #: centre sees them until a meter, a liaison's answer or an operator's step confirms them.
    unconfirmed: tuple[str, ...] = ()
    #: Areas counted back unconfirmed that a later outage took on before anything said they
    #: were back (a liaison's 仍停电, a meter's report), with that incident's id: counted off
    #: until it began (:func:`continued_in`), no longer asked about here.
    continued: Mapping[str, str] = field(default_factory=dict)
    #: For each withdrawn village, its areas it had been told may be off (inferred) when the
    #: estimate dropped them: rejoining, it hears an update only if a source reports another
    #: of its areas off, or its expected restoration time moved from the one it was told.
    withdrawn_areas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The devices each village's outage notice named (:func:`village_devices`; () for the
    #: line alone): every later notice of the outage to it (update, restored, cancelled)
    #: names the same, whatever the estimate says since, so that it reads as the outage it
    #: was told of. A village without an entry (told before this was kept) is named the
    #: devices as they are now.
    told_devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Areas kept off only because the AMI screen holds their power-off, not yet released
    #: (:func:`held_off`): a record's end said they were back, the meters say dark. The
    #: processor asks the screen again until it releases or drops them.
    held: tuple[str, ...] = ()

    @property
    def fault_device(self) -> str | None:
        return self.estimate.devices[0] if self.estimate.devices else None

    @property
    def off(self) -> tuple[str, ...]:
        """Affected transformer areas still without supply."""
        return tuple(t for t in self.estimate.transformers if t not in self.restored)

    def mark(self, transformer: str) -> str:
        """How ``transformer`` came to be affected: ``reported``, ``possible`` or ``inferred``."""
        return self.scope.get(transformer, "reported")

    @property
    def confirmed(self) -> tuple[str, ...]:
        """Affected areas a source reported off (已确认停电), in affected order."""
        return tuple(t for t in self.estimate.transformers if self.mark(t) == "reported")

    def material(self) -> tuple[Any, ...]:
        """What recipients care about; a change here is a new revision. The fault point's
        probability counts as the texts state it (:func:`stated_percent`), and which of its
        devices a source named: the summary, the crew and the board state them per revision.
        (Villages are never told either: :func:`plan_notices` gives them no notice for it.)"""
        e = self.estimate
        # Each open record's ETR, and each named area's (None when no record naming it gives
        # one): a village's expected restoration is that of its own records' areas.
        etrs = tuple(sorted((k, m.etr) for k, m in self.members.items()
                            if m.etr is not None and m.status == "active"))
        named = tuple(sorted({m.device for m in self.members.values() if m.device}
                             & set(e.devices)))
        # An area the meters hold off against a record's end or a liaison's 已来电 is news
        # for the command centre (:func:`disputed_areas`), though the villages hear nothing.
        return (self.status, self.kind, e.devices, e.transformers, self.etr, self.start,
                self.off, etrs, tuple(sorted(named_area_etrs(self.members.values()).items())),
                self.unconfirmed, stated_percent(e.probability), named,
                tuple(sorted(disputed_areas(self).items())))

    def to_json(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "id": self.id, "feeder": self.feeder, "kind": self.kind, "status": self.status,
            "revision": self.revision, "start": self.start.isoformat(), "etr": _iso(self.etr),
            "end": _iso(self.end), "cause": self.cause, "area_text": self.area_text,
            "members": {k: m.to_json() for k, m in self.members.items()},
            "estimate": {
                "devices": list(e.devices), "probability": e.probability,
                "transformers": list(e.transformers), "customers": e.customers,
                "villages": list(e.villages), "section": list(e.section),
                "important_customers": list(e.important_customers),
                "hypotheses": [dict(h) for h in e.hypotheses],
                "context": dict(e.context),
            },
            "notified_villages": list(self.notified_villages),
            "unknown_refs": list(self.unknown_refs),
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
            "restored": {t: at.isoformat() for t, at in self.restored.items()},
            "stage": self.stage, "parent_id": self.parent_id, "scope": dict(self.scope),
            "restored_villages": list(self.restored_villages),
            "withdrawn_villages": list(self.withdrawn_villages),
            "told_etr": {v: _iso(at) for v, at in self.told_etr.items()},
            "etr_set": _iso(self.etr_set), "excluded": list(self.excluded),
            "cancel_reason": self.cancel_reason,
            "excluded_against": {t: list(k) for t, k in self.excluded_against.items()},
            "device_set": list(self.device_set), "device_set_by": self.device_set_by,
            **({"crew_progress": self.crew_progress} if self.crew_progress else {}),
            **({"unconfirmed": list(self.unconfirmed)} if self.unconfirmed else {}),
            **({"continued": dict(self.continued)} if self.continued else {}),
            **({"withdrawn_areas": {v: list(a) for v, a in self.withdrawn_areas.items()}}
               if self.withdrawn_areas else {}),
            **({"told_devices": {v: list(a) for v, a in self.told_devices.items()}}
               if self.told_devices else {}),
            **({"held": list(self.held)} if self.held else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Incident:
        e = d["estimate"]
        return cls(
            id=d["id"], feeder=d["feeder"], kind=d["kind"], status=d["status"],
            revision=int(d["revision"]), start=parse_time(d["start"], "start"),
            etr=parse_optional_time(d.get("etr"), "etr"), end=parse_optional_time(d.get("end"), "end"),
            cause=d.get("cause", ""), area_text=d.get("area_text", ""),
            members={k: Member.from_json(m) for k, m in d["members"].items()},
            estimate=Estimate(
                devices=tuple(e["devices"]), probability=e.get("probability"),
                transformers=tuple(e["transformers"]), customers=int(e["customers"]),
                villages=tuple(e["villages"]), section=tuple(e.get("section") or ()),
                important_customers=tuple(e.get("important_customers") or ()),
                hypotheses=tuple(e.get("hypotheses") or ()),
                context=dict(e.get("context") or {}),
            ),
            notified_villages=tuple(d.get("notified_villages") or ()),
            unknown_refs=tuple(d.get("unknown_refs") or ()),
            created_at=parse_optional_time(d.get("created_at"), "created_at"),
            updated_at=parse_optional_time(d.get("updated_at"), "updated_at"),
            restored={t: parse_time(at, "restored") for t, at in (d.get("restored") or {}).items()},
            stage=d.get("stage", "detected"), parent_id=d.get("parent_id"),
            scope=dict(d.get("scope") or {}),
            restored_villages=tuple(d.get("restored_villages") or ()),
            withdrawn_villages=tuple(d.get("withdrawn_villages") or ()),
            told_etr={v: parse_optional_time(at, "told_etr")
                      for v, at in (d.get("told_etr") or {}).items()},
            etr_set=parse_optional_time(d.get("etr_set"), "etr_set"),
            excluded=tuple(d.get("excluded") or ()),
            cancel_reason=str(d.get("cancel_reason") or ""),
            excluded_against={t: tuple(k) for t, k in
                              (d.get("excluded_against") or {}).items()},
            device_set=tuple(d.get("device_set") or ()),
            device_set_by=str(d.get("device_set_by") or ""),
            crew_progress=_crew_progress(d),
            unconfirmed=tuple(d.get("unconfirmed") or ()),
            continued=dict(d.get("continued") or {}),
            withdrawn_areas={v: tuple(a) for v, a in (d.get("withdrawn_areas") or {}).items()},
            told_devices={v: tuple(a) for v, a in (d.get("told_devices") or {}).items()},
            held=tuple(d.get("held") or ()),
        )


def incident_class(kind: str) -> str:
    """Faults correlate with faults; each planned/temporary work order stands alone."""
    return "unplanned" if kind in UNPLANNED else "planned"


def correlate(
    incidents: Iterable[Incident],
    event: OutageEvent,
    resolved: Resolved,
    now: datetime,
    window: timedelta,
    topology: Topology | None = None,
) -> Incident | None:
    """The open incident ``event`` belongs to, or ``None`` for a new one.

    A fault record joins an open fault incident on its feeder (the latest begun, of several)
    when it began no earlier than ``window`` before the incident, and either is the same
    outage seen again (:func:`same_outage`) or began within ``window`` of the incident's
    latest onset (:func:`last_onset`). Not "before now": an outage open for a day took in
    every later fault on its line, however far away, and the new village was counted in the
    old days' reports and the old outage's close-out. A record naming no place on the line
    cannot be told apart and joins as before, up to ``window`` after now."""
    key = f"{event.source}|{event.event_id}"
    candidates = list(incidents)
    for inc in candidates:
        if key in inc.members:
            return inc
    if incident_class(event.kind) != "unplanned" or resolved.feeder is None:
        return None
    placed = bool(resolved.transformers) or resolved.device is not None
    best: Incident | None = None
    for inc in candidates:
        if inc.status != "active" or inc.feeder != resolved.feeder:
            continue
        if incident_class(inc.kind) != "unplanned" or event.start < inc.start - window:
            continue
        if placed:
            joins = (event.start <= last_onset(inc) + window
                     or same_outage(topology, inc, resolved))
        else:
            joins = event.start <= (inc.end or now) + window
        if joins and (best is None or inc.start > best.start):
            best = inc
    return best


def last_onset(inc: Incident) -> datetime:
    """When the latest part of ``inc``'s outage began: the latest start of a record of an
    outage (:func:`reports_outage`) the source did not call off, or the incident's start.
    A record's ``seen_at`` is none: an old outage's record seen in this poll says nothing
    of when a fault began."""
    starts = [m.start for m in inc.members.values()
              if m.status != "cancelled" and reports_outage(m)]
    return max([inc.start, *starts])


def same_outage(topology: Topology | None, inc: Incident, resolved: Resolved) -> bool:
    """Whether a record is ``inc``'s outage seen again, however late: it names an area the
    incident holds off (reported, or inferred below its fault point: a village told
    already) or brought back while it is still open (switching that failed, an area off
    again while the crew is on the line: its crew and villages are this incident's), or
    areas or a device above or below a device the incident's records named or
    the command centre set (a fuse blowing under the breaker a storm's record named). The
    estimate's own fault point is an inference and joins nothing by itself: on a line whose
    first record named two areas it may be the breaker, and everything is below it.
    (Without ``topology``, a device only by its name.)"""
    named = {m.device for m in inc.members.values() if m.device and m.status != "cancelled"}
    named.update(inc.device_set)
    held = {*inc.off, *inc.restored}
    if held & set(resolved.transformers):
        return True
    device = resolved.device
    if topology is None:
        return device is not None and device in named
    known = [d for d in named if d in topology.pos]
    places = [t for t in resolved.transformers if t in topology.pos]
    if device is not None and device in topology.pos:
        places.append(device)
        if held & set(topology.downstream_transformers(device)):
            return True
    return any(topology.is_downstream(p, d) or topology.is_downstream(d, p)
               for p in places for d in known)


def evidence_of(members: Iterable[Member]) -> Evidence:
    """Fold members into evidence. Later members override earlier ones per transformer.

    An area's ``calls`` are how many callers it has (the localiser reads them as how many of
    its customers called): the work orders of one caller (:attr:`Member.caller`) count
    once, one a customer placed nowhere known counts as its own caller."""
    dead: set[str] = set()
    alive: set[str] = set()
    callers: dict[str, set[str]] = {}
    open_devices: set[str] = set()
    for m in sorted(members, key=lambda m: (m.seen_at, m.key)):
        if m.status == "active":
            if m.signal in ("notice", "dead"):
                dead.update(m.transformers)
                alive.difference_update(m.transformers)
            elif m.signal == "alive":  # a reading or ping: diagnostic evidence
                alive.update(m.transformers)
                dead.difference_update(m.transformers)
            elif m.signal == "call":
                for t in m.transformers:
                    callers.setdefault(t, set()).add(m.caller or f"\x00{m.key}")
            if m.device and m.signal in ("notice", "device_open"):
                open_devices.add(m.device)
    calls = {t: len(who) for t, who in callers.items()}
    return Evidence(frozenset(dead), frozenset(alive), calls, frozenset(open_devices))


def reported_evidence(members: Iterable[Member]) -> Evidence:
    """The evidence an incident's records gave while its outage was on, as a close-out's
    history case needs it: :func:`evidence_of` over every record the source did not call
    off, a record that has ended included (an area reported off and since restored was
    reported off; an AMI area back on, ``alive`` and restored, went off first). The live fold
    keeps open records only, so an incident closed after its restoration had no evidence
    left at all and the refit learnt that reports are never made."""
    def as_reported(m: Member) -> Member:
        if m.signal == "alive" and m.status == "restored":
            return replace(m, status="active", signal="dead")
        return replace(m, status="active") if m.status == "restored" else m
    return evidence_of(as_reported(m) for m in members if m.status != "cancelled")


def checked_evidence(evidence: Evidence, excluded: Iterable[str]) -> Evidence:
    """``evidence`` without the dead reports of the areas the command centre took out of the
    scope ("wrongly included"): a report it overruled is no evidence of where the fault is.
    (Not alive evidence either: on a small feeder the localiser then explained a lone dead
    area as a false report beside a silent fuse elsewhere, at 0.99.)"""
    overruled = frozenset(excluded)
    if not overruled:
        return evidence
    return replace(evidence, dead=evidence.dead - overruled)


def unexplained_areas(topology: Topology, incident: Incident) -> list[str]:
    """Areas a source reported off, still off, that are not below the estimate's fault point:
    the localiser read their reports as false, or they have a fault it did not name. The
    command centre and the crew are told of them: the fault point and "confirmed off" would
    otherwise contradict each other unremarked (a lone area reported off on a small feeder,
    estimated "a fuse elsewhere, this report false" at 0.99)."""
    below: set[str] = set()
    for d in incident.estimate.devices:
        if d in topology.pos:
            below.update(topology.downstream_transformers(d))
    found = [t for t in incident.off if incident.mark(t) == "reported" and t not in below]
    # In the feeder's order, whatever order the estimate holds them in: the texts that list
    # them say the same words at every revision (and on every run).
    return sorted(found, key=lambda t: (topology.tin[topology.pos[t]] if t in topology.pos
                                        else -1, t))


def contradicted_reports(topology: Topology, incident: Incident) -> list[str]:
    """:func:`unexplained_areas` where they contradict an estimated fault point (a fault
    incident with one), which the command centre is told of; planned work's scope is its
    record's, no estimate's."""
    if incident.kind in ("planned", "temporary") or not incident.estimate.devices:
        return []
    return unexplained_areas(topology, incident)


def naming(members: Iterable[Member], area: str) -> tuple[str, ...]:
    """The keys of the records that name ``area`` (off, or imprecisely)."""
    return tuple(m.key for m in members if area in m.transformers or area in m.possible)


def readmit_named_anew(incident: Incident, members: Iterable[Member]) -> Incident:
    """``incident`` with its excluded areas that an active record reports off, other than the
    records the command centre overruled, back in (the correction stands against what it was
    about, not against news)."""
    fresh = {t for m in members if m.status == "active" and m.signal in ("notice", "dead")
             for t in m.transformers if t in incident.excluded_against
             and m.key not in incident.excluded_against[t]}
    if not fresh:
        return incident
    return replace(incident, excluded=tuple(t for t in incident.excluded if t not in fresh),
                   excluded_against={t: k for t, k in incident.excluded_against.items()
                                     if t not in fresh})


def _superseded_reports(members: dict[str, Member]) -> dict[str, Member]:
    """``members`` with each command-centre report of areas off (an area added, a restoration
    undone) ended once every area it names has evidence of being back since the report: the
    operator's word stands against what it overruled, not against a later restoration."""
    ops = [m for m in members.values() if m.key.startswith(OPERATOR_SOURCE + "|")
           and m.signal == "dead" and m.status == "active" and m.transformers]
    if not ops:
        return members
    others = [m for m in members.values() if m not in ops]
    out = dict(members)
    for m in ops:
        # Evidence since the report: records still on (they keep an area off), and endings
        # and restoration signals after it.
        back = areas_back(x for x in others
                          if x.status == "active" or (x.end or x.seen_at) > m.start)
        if all(t in back and back[t] > m.start for t in m.transformers):
            out[m.key] = replace(m, status="restored", end=max(back[t] for t in m.transformers))
    return out


def edited_out(member: Member, before: Member | None, now: datetime) -> Member:
    """``member`` with the areas planned or temporary work no longer names (:attr:`Member.left`)
    when the record was edited under its own id before the work began: nobody's power went
    off there, so those villages hear the work is called off for them (:func:`called_off`).
    An edit after the work began says nothing of whether those areas are back: they stay off
    until something says so. An area named again leaves the list."""
    if before is None:
        return member
    named = {*member.transformers, *member.possible}
    left = [t for t in before.left if t not in named]
    if (member.status == "active" and before.status == "active" and now < member.start
            and now < before.start and incident_class(member.kind) != "unplanned"):
        left += [t for t in (*before.transformers, *before.possible)
                 if t not in named and t not in left]
    return replace(member, left=tuple(left)) if left or member.left else member


def dropped_from(member: Member, before: Member | None) -> Member:
    """``member``, a fault's outage-system record edited under its own id, with the areas
    its open revision ``before`` named (off or possibly) and it no longer does
    (:attr:`Member.dropped`, at the edit): the record no longer reports them off (P-F7 "已
    转供部分负荷": 8 areas, then 3). Its later revisions, its time and its end are no longer
    theirs; nothing said their power is back either: they are counted back unconfirmed
    (:func:`unconfirmed_back`), asked about, unless another record or the meters keep them
    off. Planned or temporary work edited so is :func:`edited_out`'s (before it began)."""
    if before is None or member.signal != "notice" or before.signal != "notice" \
            or incident_class(member.kind) != "unplanned":
        return member
    named = {*member.transformers, *member.possible, *member.left}
    dropped = {t: at for t, at in before.dropped if t not in named}
    if before.status == "active":
        for t in (*before.transformers, *before.possible):
            if t not in named:
                dropped.setdefault(t, member.seen_at)
    if not dropped and not member.dropped:
        return member
    return replace(member, dropped=tuple(dropped.items()))


def kept_cause(member: Member, before: Member | None) -> Member:
    """``member``, a record's new revision, with the cause it stated before: an open
    record's update that gives none keeps it (an outage system's edit that left the field
    blank, a feed that sends it only once: a known cause is never dropped for an empty one,
    and the villages would read 原因待查 of a cause they were told), and one that states the
    same again keeps when it was first stated (:attr:`Member.cause_at`). Its ending that
    gives none keeps it too: a village whose meters have yet to come back is still told
    its record's cause (:func:`own_cause`), not another's."""
    if before is None or not before.cause:
        return member
    if not member.cause:
        return replace(member, cause=before.cause, cause_at=before.cause_stated)
    if member.cause == before.cause:
        return replace(member, cause_at=before.cause_stated)
    return member


def _ending_keeps_areas(member: Member, before: Member | None) -> Member:
    """A record's ending that names no areas (a snapshot feed's record gone from the list,
    inferred restored) ends the areas it named before: without them the areas would stay off
    until the whole incident ended."""
    if (before is None or member.status == "active" or member.transformers or member.possible
            or member.unknown):
        return member
    return replace(member, transformers=before.transformers, possible=before.possible,
                   unknown=before.unknown)


def apply_event(
    incident: Incident | None,
    event: OutageEvent,
    resolved: Resolved,
    topology: Topology,
    estimator: Estimator,
    now: datetime,
    new_id: Callable[[], str],
    planned: frozenset[str] = frozenset(),
    joined: Iterable[Member] = (),
    supersedes: Iterable[str] = (),
    held: frozenset[str] = frozenset(),
) -> Incident:
    """Fold ``event`` into ``incident`` (or start a new one) and return the new state.

    ``joined`` are records that join with the event, folded in as if they had come before it
    (the trouble calls of the line received before the outage they are about opened an
    incident: evidence as much as the calls after it). ``supersedes`` are the keys of the
    records the event re-issues under a new id (:func:`outage_sentinel.triage.reissued_work`):
    they end with this fold, so the work's times are the new record's alone.

    The affected areas (the incident's *scope*) are what sources reported off, plus what they
    named imprecisely, plus what the localiser infers from the evidence. An area leaves the
    off list only on evidence that its supply is back (:func:`areas_back`); an area only ever
    inferred that a new estimate no longer covers is withdrawn instead (never "restored").
    ``held``: the areas the AMI screen holds off, not yet released (:func:`held_off`).
    """
    member = member_of(event, resolved, now)
    if incident is None:
        incident = _blank(new_id(), resolved.feeder or (event.feeder or "?"), event, now)
    members = _folded_members(incident, member, joined, supersedes, now)
    updated = _refolded(incident, members, resolved.feeder, topology, estimator, planned, now,
                        held)
    updated = replace(updated, stage=next_stage(incident, updated))
    if updated.material() != incident.material() or incident.revision == 0:
        updated = replace(updated, revision=incident.revision + 1)
    return updated


def _refolded(incident: Incident, members: dict[str, Member], feeder: str | None,
              topology: Topology, estimator: Estimator, planned: frozenset[str], now: datetime,
              held: frozenset[str] = frozenset()) -> Incident:
    """``incident`` re-derived from its records ``members`` (the event folded in): kind,
    scope and estimate, status and end, times and words (stage and revision still
    ``incident``'s). ``feeder``: the event's, for an incident not yet placed on one.
    ``held``: areas the AMI screen holds off (:func:`held_off`)."""
    reporting = [m for m in members.values() if m.signal in REPORTING_SIGNALS]
    active = [m for m in reporting if m.status == "active"]
    notices = [m for m in members.values() if m.signal == "notice"] or list(members.values())
    kind = _worst_kind(m.kind for m in notices)
    estimate, scope, corrected, device_set, restored = _where_off(
        incident, members, active, topology, estimator,
        planned if incident_class(kind) == "unplanned" else frozenset(), kind, held)
    restored, kept = held_off(incident, estimate, restored, held, members.values())
    status, end, restored = _status_after(incident, members, reporting, active, estimate,
                                          restored, now, bool(kept))
    continued = incident.continued if status == "restored" else {}
    unconfirmed = tuple(t for t in unconfirmed_back(members.values(), status,
                                                    estimate.transformers, restored, topology,
                                                    kind)
                        if t not in continued)
    # The command centre's time was for the outage that ended; off again, it is unknown, and
    # the crew it held had finished (the lifecycle frees it: ``revived_in``).
    revived = incident.status != "active" and status == "active"
    updated = _as_recorded(incident, members, active, notices, kind, feeder, revived)
    return replace(
        updated, status=status, end=end, estimate=estimate, updated_at=now, scope=scope,
        restored=restored, excluded=corrected.excluded,
        excluded_against=corrected.excluded_against, device_set=device_set,
        device_set_by=incident.device_set_by if device_set else "", unconfirmed=unconfirmed,
        # On again, its areas are its own again: the next end asks about them afresh.
        continued=continued, held=kept)


def reestimated(incident: Incident, topology: Topology, estimator: Estimator,
                planned: frozenset[str], now: datetime, held: frozenset[str] = frozenset()
                ) -> Incident:
    """``incident`` derived afresh from its own records by ``estimator``, as folding a record
    that says nothing new would derive it: estimate, scope, status, times and words, with
    the command centre's corrections that stand (its time, its exclusions, its fault point
    while that explains the outage) and the stage moved on as a fold moves it. The revision
    stays ``incident``'s: the step that asks for it makes the new one. ``planned``: areas
    explained by planned work in force (for a fault incident). ``held``: areas the AMI
    screen holds off (:func:`held_off`)."""
    updated = _refolded(incident, dict(incident.members), None, topology, estimator, planned,
                        now, held)
    return replace(updated, stage=next_stage(incident, updated))


def recorded_etr(incident: Incident) -> datetime | None:
    """The expected restoration time ``incident``'s own records give (as a fold derives
    :attr:`Incident.etr` when the command centre set none): the latest of its open reports',
    else of its notices'."""
    members = list(incident.members.values())
    active = [m for m in members if m.signal in REPORTING_SIGNALS and m.status == "active"]
    return _etr(active, [m for m in members if m.signal == "notice"] or members)


def _where_off(incident: Incident, members: dict[str, Member], active: Sequence[Member],
               topology: Topology, estimator: Estimator, planned: frozenset[str],
               kind: Kind = "fault", held: frozenset[str] = frozenset()
               ) -> tuple[Estimate, dict[str, str], Incident, tuple[str, ...], dict[str, datetime]]:
    """The estimate, scope, standing corrections and fault point set of ``incident`` (of
    ``kind``) with its records ``members`` (re-estimated only while a record is open:
    :func:`_rescoped`), and the areas back so far, with when (:func:`_restored_so_far`).
    ``held``: areas the AMI screen holds off (:func:`held_off`)."""
    scope = dict(incident.scope) or {t: "reported" for t in incident.estimate.transformers}
    restored = _restored_so_far(incident, members, active, scope)
    if active:
        estimate, scope, corrected, device_set = _rescoped(
            incident, members, active, scope, restored, topology, estimator, planned, kind,
            held)
    else:
        estimate, corrected, device_set = incident.estimate, incident, incident.device_set
    return estimate, scope, corrected, device_set, restored


def _restored_so_far(incident: Incident, members: Mapping[str, Member],
                     active: Sequence[Member], scope: Mapping[str, str]) -> dict[str, datetime]:
    """The areas of ``incident`` back on supply, with the time each came back: those it had
    back that evidence still says are (all of them once no record is open), and the areas of
    its scope with new evidence of being back (:func:`areas_back`), each at the time the
    evidence now gives (a record published late, ended after the one that brought the area
    back, moves it; an area counted back unconfirmed takes the time someone vouches for)."""
    back = areas_back(members.values())
    kept = inferred_back(incident, members.values(), scope)
    restored = {t: at for t, at in incident.restored.items()
                if t in back or t in kept or not active}
    for t, at in back.items():  # the time the evidence gives now: a late record moves it
        if t in scope or t in restored:
            restored[t] = at
    return restored


def inferred_back(incident: Incident, members: Iterable[Member], scope: Mapping[str, str]
                  ) -> frozenset[str]:
    """The areas ``incident`` counted back on evidence (not :attr:`Incident.unconfirmed`: a
    device's restoration, a step) that only an inference ever put off (scope mark
    ``inferred``) and that no open report names off now: they stay back when the incident is
    on again (a late record of the same outage, a record re-opened). Nothing reported them
    off; an estimate that infers them again is no evidence, and their villages, told their
    power is back, would hear 停电 again on a guess. A source reporting one off is evidence:
    it is off again, reported. An area counted back with no evidence goes off again with
    the outage (nothing said it was back)."""
    open_now = {t for t, spans in outages_reported(members).items()
                if any(end is None for _, end in spans)}
    unsure = {*incident.unconfirmed, *incident.continued}
    return frozenset(t for t in incident.restored if scope.get(t) == "inferred"
                     and t not in open_now and t not in unsure)


def _status_after(incident: Incident, members: Mapping[str, Member],
                  reporting: Sequence[Member], active: Sequence[Member], estimate: Estimate,
                  restored: Mapping[str, datetime], now: datetime, held: bool = False
                  ) -> tuple[IncidentStatus, datetime | None, dict[str, datetime]]:
    """The status and end of ``incident`` with its records ``members``, and its areas back
    (``restored``, with the areas still off marked back at the end once the whole incident
    is over). ``held``: an area is kept off on the AMI screen's word (:func:`held_off`): an
    incident whose records all ended is still on, not over."""
    off = [t for t in estimate.transformers if t not in restored]
    status, end = _status(reporting, active, off, bool(estimate.transformers), restored, now,
                          seen_coming_back(members.values()))
    if held and status == "restored":
        status, end = "active", None
    if incident.cancel_reason:  # a false alarm stays cancelled; its evidence is still kept
        status, end = "cancelled", incident.end
    restored = dict(restored)
    if status != "active":
        for t in off:  # the whole incident is over: the rest came back now
            restored[t] = end or now
    return status, end, restored


def held_off(incident: Incident, estimate: Estimate, restored: Mapping[str, datetime],
             held: frozenset[str], members: Iterable[Member] = ()
             ) -> tuple[dict[str, datetime], tuple[str, ...]]:
    """``restored`` without the areas of ``estimate`` the AMI screen holds off (``held``:
    a power-off it has not released yet — the momentary rule, a backlog's hold — and no
    power-on since), unless ``incident`` had counted them back already or the command
    centre's (or a crew's) restoration step among ``members`` brought them back; and those
    areas. A record's end or a liaison's 已来电 is no word against the meters (the rule of
    :func:`meters_dark`): the village would hear 恢复送电 while the screen still holds its
    areas' power-off, and a correction (仍停电) once it released it. They stay off, a
    dispute the command centre sees (:func:`disputed_areas`), until the screen releases the
    outage (its ``dead`` is then the evidence) or closes or drops it (the processor asks
    again: :attr:`Incident.held`), or the command centre restores them. An area already
    told back is not taken off again on a report nobody released (a new outage's ``dead``
    does that)."""
    if not held:
        return dict(restored), ()
    stepped = restoration_signals(m for m in members if source_of(m) == OPERATOR_SOURCE)
    kept = tuple(t for t in estimate.transformers
                 if t in held and t not in incident.restored and t not in stepped)
    return {t: at for t, at in restored.items() if t not in kept}, kept


def unconfirmed_back(members: Iterable[Member], status: IncidentStatus, areas: Sequence[str],
                     restored: Mapping[str, datetime], topology: Topology,
                     kind: Kind = "fault") -> tuple[str, ...]:
    """The ``areas`` of an incident (of ``kind``) counted back with no evidence that they are
    (:attr:`Incident.unconfirmed`): none of :func:`areas_back` (for a fault, a withdrawn record's
    end is none: :func:`_back_on_record`; nor a record's edit that stopped naming them,
    :attr:`Member.dropped`), nor below a device a record named that was restored (its device
    closed again; not an area that record had dropped). An incident ends when its last record
    does, and trouble calls and inferences are no records: an area only they put in the
    outage may still be dark. While the incident is on, only the areas a record dropped
    (counted back at the edit). Empty when it was called off (all its areas off again, or
    never off)."""
    members = list(members)
    left = {t for m in members for t, _ in m.dropped}
    if status == "cancelled" or (status != "restored" and not left):
        return ()
    back = _back_on_record([replace(m, dropped=()) for m in members], kind, topology)
    for m in members:
        if (m.device in topology.pos and m.status == "restored"
                and m.signal in ("notice", "device_open")):
            gone = {t for t, _ in m.dropped}
            back.update(t for t in topology.downstream_transformers(m.device) if t not in gone)
    return tuple(t for t in areas if t in restored and t not in back
                 and (status == "restored" or t in left))


def dropped_unsure(members: Iterable[Member]) -> frozenset[str]:
    """The areas a record stopped naming (:attr:`Member.dropped`) with no evidence that they
    are back (:func:`areas_back` but for those edits): counted back, never on supply for the
    estimator (a transfer round the fault leaves the device that operated open: its section
    is no proof it reclosed, :func:`estimated_past_restoration`)."""
    members = list(members)
    left = {t for m in members for t, _ in m.dropped}
    if not left:
        return frozenset()
    return frozenset(left - set(areas_back(replace(m, dropped=()) for m in members)))


def dropped_areas(incident: Incident) -> tuple[str, ...]:
    """The areas ``incident`` counts back unconfirmed (:attr:`Incident.unconfirmed`) because
    a record stopped naming them (:func:`dropped_from`), not because its records ended: what
    the command centre reads as 已移出停电记录（疑似转供） and a village is asked about
    without being told its record ended."""
    unsure = dropped_unsure(incident.members.values())
    return tuple(t for t in incident.unconfirmed if t in unsure)


def _back_on_record(members: Sequence[Member], kind: Kind, topology: Topology) -> set[str]:
    """The areas :func:`areas_back` says are back, but for a fault, where a withdrawn record
    (cancelled) is no word that power is on (the rule of :func:`called_off`): an area named
    only by records withdrawn, beside one that ended, was counted back at the withdrawal and
    would be told back as fact; it is asked about instead. Not so in a village for which the
    outage was called off (every record of it withdrawn): it heard 停电取消, as when the
    whole incident is, and is no restoration to confirm."""
    back = set(areas_back(members))
    if incident_class(kind) != "unplanned":
        return back
    on_record = set(areas_back(m for m in members if m.status != "cancelled"))
    return on_record | {t for t in back - on_record
                        if _withdrawn_village(members, t, topology)}


def _withdrawn_village(members: Sequence[Member], area: str, topology: Topology) -> bool:
    """Whether every record that says something of ``area``'s village (:func:`_concerns`)
    was withdrawn (cancelled), one at least, and nothing saw an area of it come back (the
    village then hears 恢复送电, not 停电取消: the rule of :func:`called_off`)."""
    if area not in topology.nodes:
        return False
    areas = topology.village_transformers(topology.nodes[area].village)
    if seen_coming_back(members, areas):
        return False
    records = [m for m in members if m.signal in REPORTING_SIGNALS
               and _concerns(m, areas, topology)]
    return bool(records) and all(m.status == "cancelled" for m in records)


def _as_recorded(incident: Incident, members: dict[str, Member], active: Sequence[Member],
                 notices: Sequence[Member], kind: Kind, feeder: str | None,
                 revived: bool) -> Incident:
    """``incident`` with what its records ``members`` say: kind, start, expected restoration,
    cause, area text, unresolved references, feeder. ``revived``: off again after it ended,
    the command centre's time and the crew's progress are dropped."""
    etr_set = None if revived else incident.etr_set
    return replace(
        incident, kind=kind, start=_start(members),
        etr=etr_set or _etr(active, notices), etr_set=etr_set, members=members,
        # The cause the open records agree on (:func:`agreed_cause`), none when they differ;
        # the last known when no open record gives one.
        cause=_or_known(agreed_cause(notices), incident.cause),
        area_text=_latest([m for m in notices if m.signal != "call"], "area_text")
        or incident.area_text,
        unknown_refs=tuple(dict.fromkeys(u for m in members.values() for u in m.unknown)),
        feeder=incident.feeder if incident.feeder != "?" else (feeder or "?"),
        crew_progress="" if revived else incident.crew_progress,
    )


def _folded_members(incident: Incident, member: Member, joined: Iterable[Member],
                    supersedes: Iterable[str], now: datetime) -> dict[str, Member]:
    """``incident``'s records with ``member`` (and the records ``joined`` with it) folded in,
    the records it re-issues ended (:func:`_supersede`), and the command centre's reports
    that later evidence answered ended (:func:`_superseded_reports`)."""
    members = dict(incident.members)
    for m in joined:
        members.setdefault(m.key, m)
    before = members.get(member.key)
    member = edited_out(_ending_keeps_areas(kept_cause(member, before), before), before, now)
    member = dropped_from(member, before)
    members[member.key] = _still_superseded(member, before)
    members = _supersede(members, supersedes, member.key, now)
    return _superseded_reports(members)


def _rescoped(incident: Incident, members: Mapping[str, Member], active: Sequence[Member],
              scope: dict[str, str], restored: Mapping[str, datetime], topology: Topology,
              estimator: Estimator, planned: frozenset[str], kind: Kind = "fault",
              held: frozenset[str] = frozenset()
              ) -> tuple[Estimate, dict[str, str], Incident, tuple[str, ...]]:
    """The estimate and scope of an incident (of ``kind``) with open records, the incident
    with the command centre's exclusions that still stand (:func:`readmit_named_anew`), and
    the fault point it set while that still explains the outage. ``planned``: areas
    explained by planned work in force (for a fault incident). Planned or temporary work
    takes on by inference only the areas below a device its records name
    (:func:`work_areas`): the localiser's fault point is shown to the command centre, never
    announced to villages as the work's. The areas back are evidence as
    :func:`estimated_past_restoration` says; ``held``: areas the AMI screen holds off."""
    corrected = readmit_named_anew(incident, members.values())
    ev = checked_evidence(evidence_of(members.values()), corrected.excluded)
    # Areas a restoration step brought back are no evidence of where the fault is, unless
    # the device named is re-energised: :func:`estimated_past_restoration`.
    steps = restoration_signals(members.values())
    unsure = held | dropped_unsure(members.values())
    estimate = estimated_past_restoration(
        topology, estimator, replace(ev, planned=planned),
        frozenset(t for t in restored if t in steps),
        frozenset(t for t in restored if t not in unsure))
    told_back = set(incident.restored_villages)
    inferred = [t for t in estimate.transformers
                if (t in scope or topology.nodes[t].village not in told_back)
                and work_areas(topology, kind, active, t)]
    scope = widen_scope(scope, ev.dead, possible_areas(active) - ev.dead, inferred, restored)
    scope = {t: m for t, m in scope.items() if t not in corrected.excluded}
    estimate = scoped_estimate(topology, estimate, scope)
    # The command centre's fault point stands against the evidence — while it still
    # explains every area reported off (an outage grown past it drops it).
    device_set = incident.device_set if covers(
        topology, incident.device_set, estimate.transformers, scope, restored) else ()
    if device_set:
        estimate = with_devices(topology, estimate, device_set)
    return steady(incident.estimate, estimate), scope, corrected, device_set


def estimated_past_restoration(topology: Topology, estimator: Estimator, ev: Evidence,
                               gone: frozenset[str], back: frozenset[str]) -> Estimate:
    """The estimate of the evidence ``ev`` of an incident some of whose areas are ``back``
    on supply on evidence (none the AMI screen holds off), ``gone`` those a restoration step
    brought back.

    "Restore first, repair after": switching brings parts back before the fault is repaired
    (a tie transfer, an isolating switch opened), so the areas a step brought back say
    nothing of where the fault is and the estimator still sees them dead; the areas of a
    record that ended are no evidence at all. Not once a device the estimate names is
    re-energised (:func:`reclosed_devices`: its own section all back): closed again with its
    own areas on supply, it has no permanent fault there, and the areas back below it are
    alive; the fault is below a device still open (a reclosed breaker with two fuses' areas
    dark: the fuses). A record naming the device operated is no longer taken for it open.
    Fed round the fault, its own section stays dark: it stays the fault point; so it does
    when nothing still dark is left to place a fault below it (all back, a record still
    open: what operated is all there is to name)."""
    estimate = estimator(topology, replace(ev, dead=ev.dead | gone, alive=ev.alive - gone))
    reclosed = reclosed_devices(topology, estimate.devices, back)
    if not reclosed:
        return estimate
    fed = frozenset(t for t in back if t in topology.pos
                    and any(topology.is_downstream(t, d) for d in reclosed))
    below = estimator(topology, replace(
        ev, dead=(ev.dead | gone) - fed, alive=(ev.alive - gone) | fed,
        open_devices=ev.open_devices - frozenset(reclosed)))
    return below if below.devices else estimate


def own_section(topology: Topology, device: str) -> tuple[str, ...]:
    """The areas of ``device``'s own section: those whose nearest protective device above
    them is ``device`` (none for a device not protective, or not in ``topology``)."""
    if device not in topology.pos:
        return ()
    return tuple(t for t in topology.downstream_transformers(device)
                 if topology.protective_upstream(t) == device)


def reclosed_devices(topology: Topology, devices: Iterable[str], back: Collection[str]
                     ) -> tuple[str, ...]:
    """The ``devices`` re-energised: each with an own section (:func:`own_section`) every
    area of which is ``back`` on supply. A device with no area of its own says nothing."""
    if not back:
        return ()
    out = []
    for d in devices:
        own = own_section(topology, d)
        if own and all(t in back for t in own):
            out.append(d)
    return tuple(out)


def work_areas(topology: Topology, kind: Kind, active: Iterable[Member], area: str) -> bool:
    """Whether an incident of ``kind`` with the open records ``active`` may take on ``area``
    by inference: any area for a fault; for planned or temporary work, whose scope is what
    its records say (:func:`contradicted_reports`), only an area below a device one of them
    names (work on a switch takes off everything it feeds). A fuse the localiser infers
    above the one area a work order names is no work on the area beside it: its village
    would be told of planned work, reminded and asked after it of an outage it never had."""
    if incident_class(kind) == "unplanned":
        return True
    return area in topology.pos and any(
        m.device in topology.pos and topology.is_downstream(area, str(m.device))
        for m in active)


#: Points the stated probability must move, the fault point and its areas unchanged, for a
#: new estimate to replace the one stated (each stated figure is a revision, and each revision
#: a summary to the command centre: every meter reading of a storm moved it by a point).
STEADY_POINTS = 5


def steady(before: Estimate, after: Estimate) -> Estimate:
    """``after``, or what ``before`` states when ``after`` says the same but for a probability
    within :data:`STEADY_POINTS` of the one stated: the same devices, areas, customers and
    villages. The figure every text states stays the one stated until it moves by that much
    (and with it what else the texts show: the hypotheses, the section); what no text states,
    the weather it was estimated in (``context``), is ``after``'s: a storm declared meanwhile
    is the window the close-out's history case localises the incident in again."""
    same = (before.devices, before.transformers, before.customers, before.villages) == \
        (after.devices, after.transformers, after.customers, after.villages)
    was, now = stated_percent(before.probability), stated_percent(after.probability)
    if not same or was is None or now is None or abs(now - was) >= STEADY_POINTS:
        return after
    return replace(before, context=after.context)


def _supersede(members: dict[str, Member], keys: Iterable[str], by: str, now: datetime
               ) -> dict[str, Member]:
    """``members`` with the records ``keys`` ended as re-issued by the record ``by``: called
    off now (a cancellation, whose areas the new record still names stay off), marked
    ``superseded_by`` for the command centre."""
    for k in keys:
        if k in members and k != by:
            members[k] = replace(members[k], status="cancelled", end=None, seen_at=now,
                                 superseded_by=by)
    return members


def superseded_now(before: Incident | None, after: Incident) -> dict[str, str]:
    """The records ``after`` marks re-issued under a new id that ``before`` did not: old key
    -> the key of the record that re-issued it."""
    was = before.members if before is not None else {}
    return {k: m.superseded_by for k, m in after.members.items()
            if m.superseded_by and not (k in was and was[k].superseded_by)}


def _still_superseded(member: Member, before: Member | None) -> Member:
    """A re-issued record's own ending (its cancellation listed, or its id gone from the
    list) keeps the mark of the record that re-issued it."""
    if before is None or not before.superseded_by or member.status == "active":
        return member
    return replace(member, superseded_by=before.superseded_by)


def _blank(incident_id: str, feeder: str, event: OutageEvent, now: datetime) -> Incident:
    """A new incident before its first event is folded in (revision 0)."""
    return Incident(id=incident_id, feeder=feeder, kind=event.kind, status="active", revision=0,
                    start=event.start, etr=None, end=None, cause="", area_text="", members={},
                    estimate=Estimate((), None, (), 0, ()), created_at=now)


#: Where an affected area's place in an incident comes from: a source reported it off
#: (已确认停电); a source named it imprecisely, e.g. "XX村部分用户" (可能受影响); or the localiser
#: infers it from the operated device (可能受影响). Reported and possible areas stay affected
#: until a source says they are back; inferred ones go when the estimate no longer covers them.
SCOPE_MARKS = ("reported", "possible", "inferred")


def widen_scope(scope: Mapping[str, str], reported: Iterable[str], possible: Iterable[str],
                inferred: Iterable[str], restored: Mapping[str, datetime]) -> dict[str, str]:
    """The incident's new scope: the old one, with reported areas marked so, newly named or
    inferred areas added, and inferred areas the estimate dropped (not back) taken out."""
    inferred = tuple(inferred)
    out = dict(scope)
    # Sets come in an order that changes from run to run: areas newly added are added sorted,
    # so that the texts listing them (after the localiser's own) say the same every time.
    for t in sorted(reported):
        out[t] = "reported"
    for t in sorted(possible):
        if out.get(t) != "reported":
            out[t] = "possible"
    for t in inferred:
        out.setdefault(t, "inferred")
    keep = set(inferred)
    return {t: mark for t, mark in out.items()
            if mark != "inferred" or t in keep or t in restored}


def scoped_estimate(topology: Topology, estimate: Estimate, scope: Mapping[str, str]
                    ) -> Estimate:
    """``estimate`` with its affected areas, customers and villages those of ``scope`` (the
    localiser's own areas first, in its order)."""
    areas = tuple(dict.fromkeys([t for t in estimate.transformers if t in scope] + list(scope)))
    if areas == estimate.transformers:
        return estimate
    return replace(estimate, transformers=areas, customers=topology.customers_of(areas),
                   villages=tuple(topology.villages_of(areas)),
                   important_customers=important_customers(topology, areas))


def covers(topology: Topology, devices: Sequence[str], areas: Iterable[str],
           scope: Mapping[str, str], restored: Mapping[str, datetime]) -> bool:
    """Whether every area of ``areas`` reported off and not back lies below one of
    ``devices`` (False for none)."""
    known = [d for d in devices if d in topology.pos]
    return bool(known) and all(
        any(topology.is_downstream(t, d) for d in known) for t in areas
        if scope.get(t, "reported") == "reported" and t not in restored and t in topology.pos)


def with_devices(topology: Topology, estimate: Estimate, devices: Sequence[str]) -> Estimate:
    """``estimate`` naming ``devices`` as the fault point on the command centre's word: their
    suspected section, no probability (no inference); its areas and the localiser's
    hypotheses (what the evidence alone says) are kept."""
    section = [n for d in devices if d in topology.pos for n in topology.suspected_section(d)]
    return replace(estimate, devices=tuple(devices), probability=None,
                   section=tuple(dict.fromkeys(section)))


def possible_areas(active: Iterable[Member]) -> frozenset[str]:
    """Areas active records name imprecisely."""
    return frozenset(t for m in active for t in m.possible)


def _status(reporting: Sequence[Member], active: Sequence[Member], off: Sequence[str],
            has_scope: bool, restored: Mapping[str, datetime], now: datetime,
            came_back: bool = False) -> tuple[IncidentStatus, datetime | None]:
    """The incident's status and end from its records and what is still off: "cancelled" when
    every record was called off and nothing says an area went dark and ``came_back`` (work
    called off after the meters saw it begin ended in a restoration, not a cancellation)."""
    if active and (off or not has_scope):
        return "active", None
    if reporting and not came_back and all(m.status == "cancelled" for m in reporting):
        return "cancelled", max((m.end or m.seen_at) for m in reporting)
    times = [m.end or m.seen_at for m in reporting if m.status != "active"]
    times += list(restored.values())
    return "restored", max(times) if times else now


def _start(members: Mapping[str, Member]) -> datetime:
    """The earliest start of the records (those that report an outage if any,
    :func:`reports_outage`: an area whose meters came back was off from its record's start,
    and the outage's start must not move later when it comes back), leaving out records
    re-issued under a new id while another is left: a shifted window is the new record's."""
    pool = [m for m in members.values() if reports_outage(m)] or list(members.values())
    return min(m.start for m in ([m for m in pool if not m.superseded_by] or pool))


def _etr(active: Sequence[Member], notices: Sequence[Member]) -> datetime | None:
    etrs = [m.etr for m in (active or notices) if m.etr is not None]
    return max(etrs) if etrs else None


def _latest(members: Sequence[Member], name: str) -> str:
    """The latest non-empty ``cause`` or ``area_text`` among ``members``."""
    values = [getattr(m, name) for m in sorted(members, key=lambda m: m.seen_at)]
    values = [v for v in values if v]
    return str(values[-1]) if values else ""


#: Signals that say an area is off (and so keep an incident open while active).
REPORTING_SIGNALS = ("notice", "dead", "device_open")


def reports_outage(m: Member) -> bool:
    """Whether ``m`` is a record of an outage, for when an outage began: one of
    :data:`REPORTING_SIGNALS`, or an area's outage that ended in a restoration — ``alive``
    and restored, begun before it ended (the AMI screen replaces an area's dark report with
    such a record when its meters come back, its start kept: the area was off from then).
    A restoration step given as a moment (start = end) and a reading (active ``alive``)
    are none. (:func:`_reported_span` reads the same records as outages.)"""
    if m.signal in REPORTING_SIGNALS:
        return True
    return (m.signal == "alive" and m.status == "restored" and m.end is not None
            and m.start < m.end)


#: An incident's status: the outage is on, over, or was a false alarm.
IncidentStatus = Literal["active", "restored", "cancelled"]

#: Lifecycle stages in order. Operator steps (confirmed, dispatched, on_site) and the core's
#: (restoration) only move an incident forward, except that an outage returning on an incident's
#: own records (a feed re-activating a restored record) takes it back to detected/confirmed.
Stage = Literal["detected", "confirmed", "dispatched", "on_site", "partially_restored",
                "restored", "cancelled", "closed"]
STAGES: tuple[Stage, ...] = ("detected", "confirmed", "dispatched", "on_site",
                             "partially_restored", "restored", "cancelled", "closed")
ACTIVE_STAGES: tuple[Stage, ...] = ("detected", "confirmed", "dispatched", "on_site",
                                     "partially_restored")
CrewProgress = Literal["", "dispatched", "on_site"]


def next_stage(before: Incident, after: Incident) -> Stage:
    """The lifecycle stage ``after`` is in, given the stage ``before`` was in."""
    if before.stage == "closed":
        return "closed"
    if after.status == "restored":
        return "restored"
    if after.status == "cancelled":
        return "cancelled"
    stage = before.stage if before.stage in ACTIVE_STAGES else "detected"
    # The outage information system is authoritative: its notice confirms the outage.
    if stage == "detected" and any(m.signal == "notice" for m in after.members.values()):
        stage = "confirmed"
    if set(after.restored) - set(called_off_areas(after)) and after.off:
        stage = "partially_restored"
    elif stage == "partially_restored":  # all off again: where the crew is, if it has one
        stage = after.crew_progress or "confirmed"
    return stage


def called_off_areas(incident: Incident) -> tuple[str, ...]:
    """Areas of planned or temporary work that left it before the work began (back before its
    start: a record cancelled or edited to leave them out). Their power never went off: no
    restoration, for the command centre as for the villages."""
    if incident_class(incident.kind) == "unplanned":
        return ()
    return tuple(t for t, at in incident.restored.items() if at < incident.start)


def restoration_step(before: Incident | None, after: Incident) -> tuple[str, ...]:
    """Transformer areas that came back between two states (in affected order)."""
    was = set(before.restored) if before is not None else set()
    return tuple(t for t in after.estimate.transformers if t in after.restored and t not in was)


def restoration_signals(members: Iterable[Member]) -> dict[str, datetime]:
    """Areas a restoration step says are back (``alive``/``dead`` signals with a restored
    status: an AMI power-restore, an operator's or crew's step, a liaison's 已来电), with the
    time they came back. Decided by time, never by the order the records arrived in: a report
    of an outage that started at or after an area's last step takes the area off again (a
    step published late, timed before a re-trip, a new fault record or an operator's
    ``reopen``, brings nothing back); a feed re-stating an outage that began before the step
    (feeds lag behind the field) does not undo it. The time is the first step after the
    latest reported outage began (:func:`outages_reported`; the first step when none was)."""
    members = list(members)
    spans = outages_reported(members)
    back: dict[str, datetime] = {}
    for t, times in _steps(members).items():
        at = _back_since(times, [(start, None) for start, _ in spans.get(t, ())])
        if at is not None:
            back[t] = at
    return back


def _steps(members: Iterable[Member]) -> dict[str, list[datetime]]:
    """The times of each area's restoration steps (:func:`restoration_signals`), in order. A
    report called off (a trouble call withdrawn, a meter's report the source cancelled) is
    no word that power came back; nor is a liaison's 已来电 while the area's meters still
    report it off (:func:`meters_dark`): the village would be told 恢复送电 against the
    meters. The answer is kept; the meters' own power-on or the command centre's step
    brings the area back (:func:`disputed_areas` shows the command centre the conflict)."""
    members = list(members)
    dark = meters_dark(members)
    out: dict[str, list[datetime]] = {}
    for m in members:
        if m.signal in ("alive", "dead") and m.status == "restored":
            for t in m.transformers:
                if t not in dark or source_of(m) != FIELD_SOURCE:
                    out.setdefault(t, []).append(m.end or m.start)
    return {t: sorted(times) for t, times in out.items()}


def source_of(m: Member) -> str:
    """The source of the record ``m`` (its key is ``source|event_id``)."""
    return m.key.split("|", 1)[0]


def meters_dark(members: Iterable[Member]) -> dict[str, datetime]:
    """Areas the meters report off now, with since when: an open ``dead`` report of a
    source that measures (the AMI screen's area outage), not a person's word (a liaison's
    or the command centre's "still off")."""
    out: dict[str, datetime] = {}
    for m in members:
        if m.signal == "dead" and m.status == "active" \
                and source_of(m) not in (FIELD_SOURCE, OPERATOR_SOURCE):
            for t in m.transformers:
                out[t] = min(m.start, out.get(t, m.start))
    return out


def _said_back(m: Member) -> datetime | None:
    """When ``m`` said its areas' power is back, if it is a word the meters may contradict:
    an outage-system record that ended (restored), or a liaison's 已来电."""
    if m.status != "restored":
        return None
    if m.signal == "notice" or (m.signal == "alive" and source_of(m) == FIELD_SOURCE):
        return m.end or m.seen_at
    return None


def disputed_areas(incident: Incident) -> dict[str, tuple[str, ...]]:
    """The areas ``incident`` holds off because their meters still report them off, though
    a record ended or a liaison said 已来电 after the meters went dark, each with those
    records (member keys): the village is not told 恢复送电, and the command centre sees
    who said what (the meters, or its own restoration step, settle it). The meters' word is
    a released outage (:func:`meters_dark`) or a power-off the AMI screen holds, not
    released yet (:attr:`Incident.held`, :func:`held_disputes`: 电表仍报停电（暂未确认）)."""
    dark = meters_dark(incident.members.values())
    out: dict[str, tuple[str, ...]] = {}
    for t in incident.off:
        if t in dark:
            keys = tuple(m.key for m in incident.members.values()
                         if t in m.transformers and (at := _said_back(m)) is not None
                         and at >= dark[t])
        elif t in incident.held:
            keys = tuple(m.key for m in incident.members.values() if _ended_for(m, t))
        else:
            continue
        if keys:
            out[t] = keys
    return out


def held_disputes(incident: Incident) -> tuple[str, ...]:
    """The areas of :func:`disputed_areas` whose meters' word is only the AMI screen's
    hold (a power-off not released yet: the momentary rule, a backlog's hold), no released
    outage: 电表仍报停电（暂未确认）. The screen may still drop it as a blip."""
    dark = meters_dark(incident.members.values())
    return tuple(t for t in disputed_areas(incident) if t not in dark)


def _ended_for(m: Member, area: str) -> bool:
    """Whether the record ``m`` said ``area`` is back in a word the screen's hold stands
    against: an outage-system record that ended (restored or called off) naming it, or a
    liaison's 已来电 for it."""
    if _said_back(m) is None and not (m.signal == "notice" and m.status != "active"):
        return False
    return area in m.transformers or (m.signal == "notice" and area in m.possible)


def newly_disputed(before: Incident | None, after: Incident) -> dict[str, tuple[str, ...]]:
    """The records (by area) that :func:`disputed_areas` names in ``after`` and did not in
    ``before``: what a revision's log tells the command centre."""
    was = disputed_areas(before) if before is not None else {}
    out = {t: tuple(k for k in keys if k not in was.get(t, ()))
           for t, keys in disputed_areas(after).items()}
    return {t: keys for t, keys in out.items() if keys}


def _back_since(steps: Sequence[datetime], spans: Sequence[tuple[datetime, datetime | None]]
                ) -> datetime | None:
    """When an area came back, given the times of its restoration ``steps`` (in order) and
    the outages reported for it (``spans``: start, end or ``None`` while open): once every
    outage ended or was followed by a step, the latest of those ends (its first step when
    no outage was reported); ``None``: not back."""
    if not spans:
        return steps[0] if steps else None
    ends: list[datetime] = []
    for start, end in spans:
        i = bisect_right(steps, start)  # the first step after the outage began
        step = steps[i] if i < len(steps) else None
        came = end if step is None or (end is not None and end < step) else step
        if came is None:
            return None
        ends.append(came)
    return max(ends)


def outages_reported(members: Iterable[Member]
                     ) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Each area's outages as its records report them: when each began and ended (``None``
    while the record is open). Every outage-system record naming the area (off or possibly:
    open, restored or cancelled; planned work edited to leave it out ends for it at the
    edit, a fault's record edited to no longer name it at that edit, :attr:`Member.dropped`),
    every open report of it off (meters, a device, an operator's or a liaison's word)
    and a meter's outage that ended in a power-restore. A step given as a moment (start =
    end) and a meter's report called off are none. An open record's vague words
    (:attr:`Member.possible`) are no outage of an area a record named off and ended since
    that record began (:func:`_vaguely_named`)."""
    members = list(members)
    ended = _explicit_ends(members)
    out: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for m in members:
        span = _reported_span(m)
        if span is not None:
            for t in _vaguely_named(m, ended):
                out.setdefault(t, []).append(span)
        for t in m.left:
            out.setdefault(t, []).append((m.start, m.end or m.seen_at))
        for t, at in m.dropped:
            out.setdefault(t, []).append((m.start, max(m.start, at)))
    return out


def _explicit_ends(members: Sequence[Member]) -> dict[str, datetime]:
    """Each area an outage-system record named off (not only possibly) and that record
    ended (restored or called off), with the latest such end."""
    out: dict[str, datetime] = {}
    for m in members:
        if m.signal == "notice" and m.status != "active":
            at = m.end or m.seen_at
            for t in m.transformers:
                out[t] = max(at, out.get(t, at))
    return out


def _vaguely_named(m: Member, ended: Mapping[str, datetime]) -> tuple[str, ...]:
    """The areas whose outage the record ``m`` reports (:func:`outages_reported`): those it
    names, and while it is an open outage-system record those it names imprecisely — but
    for an area a record named explicitly and ended (``ended``) at or after ``m`` began:
    B-F2's "王庄村部分区域" makes T-002 possibly off, it does not keep it off once B-F1,
    which named it, ended (vague words are never an area's report against an explicit
    end). Vague words of an outage begun after that end are news: possibly off again."""
    if m.signal != "notice" and m.status != "active":
        return m.transformers
    if m.signal != "notice" or m.status != "active":
        return (*m.transformers, *m.possible)
    return (*m.transformers, *(t for t in m.possible if t not in ended or ended[t] < m.start))


def _reported_span(m: Member) -> tuple[datetime, datetime | None] | None:
    """The outage ``m`` reports (:func:`outages_reported`): its start and end; ``None``:
    none."""
    if m.status == "active":
        return (m.start, None) if m.signal in REPORTING_SIGNALS else None
    if m.signal == "notice":
        return m.start, m.end or m.seen_at
    if m.signal in ("alive", "dead") and m.status == "restored" and m.end is not None \
            and m.start < m.end:
        return m.start, m.end
    return None


#: The source of the field's answers (a liaison's "已来电 / 仍停电" from a link or a reply).
FIELD_SOURCE = "field"
#: Source name of the command centre's reports (restoration steps, areas added or still off).
OPERATOR_SOURCE = "operator"


def back_on_field_word(incident: Incident, areas: Iterable[str]) -> bool:
    """Whether any of ``areas`` is back on a liaison's answer alone: no feed, meter reading or
    operator's or crew's step says so. A notice that tells the village then says whose word
    it is rather than stating it as the system's own finding."""
    return bool(on_field_word(incident, areas))


def on_field_word(incident: Incident, areas: Iterable[str]) -> tuple[str, ...]:
    """The areas of ``areas`` back on a liaison's answer alone (:func:`back_on_field_word`)."""
    field: list[Member] = []
    others: list[Member] = []
    for m in incident.members.values():  # a member's key is "source|event_id"
        (field if m.key.split("|", 1)[0] == FIELD_SOURCE else others).append(m)
    if not field:
        return ()
    by_field, back = restoration_signals(field), areas_back(others)
    return tuple(t for t in areas if t in by_field and t not in back)


def answers_to(incident: Incident, event: OutageEvent, resolved: Resolved) -> bool:
    """Whether a liaison's answer ``event`` about ``incident`` is folded into it: while the
    outage is on; after it ended, only "power is back" for an area it counted back without
    evidence (:attr:`Incident.unconfirmed`: the answer confirms it). "Still dark" after the
    end is a new outage."""
    if incident.status == "active":
        return True
    return (incident.status == "restored" and event.status != "active"
            and bool(set(resolved.transformers) & set(incident.unconfirmed)))


def confirmed_back(before: Incident | None, after: Incident) -> tuple[str, ...]:
    """The areas ``after`` no longer counts back unconfirmed because evidence now says they
    are back (a meter, a liaison's answer, the command centre's step), not because an outage
    took them on (:attr:`Incident.continued`) or the incident is on again."""
    if before is None or after.status != "restored":
        return ()
    return tuple(t for t in before.unconfirmed
                 if t not in after.unconfirmed and t not in after.continued
                 and t in after.restored)


def continued_in(incident: Incident, areas: Iterable[str], by: str, at: datetime,
                 now: datetime) -> Incident:
    """``incident`` once the outage ``by``, begun at ``at``, took on ``areas`` it counted back
    with nothing saying they were (:attr:`Incident.unconfirmed`): they were not confirmed,
    so they stay off here until ``by`` began (its own record counts them from there) and are
    no longer asked about. Unchanged when none of ``areas`` is unconfirmed."""
    wanted = set(areas)
    taken = [t for t in incident.unconfirmed if t in wanted]
    if not taken:
        return incident
    restored = {**incident.restored,
                **{t: max(at, incident.restored.get(t, at)) for t in taken}}
    return replace(incident, unconfirmed=tuple(t for t in incident.unconfirmed
                                               if t not in taken),
                   continued={**incident.continued, **{t: by for t in taken}},
                   restored=restored, revision=incident.revision + 1, updated_at=now)


def handed_back(incident: Incident, by: str, now: datetime) -> Incident:
    """``incident`` once the outage ``by`` that took on areas it had counted back
    unconfirmed (:func:`continued_in`) was called off (a false alarm: those areas were not
    off then after all): they are unconfirmed again, counted back at the incident's end.
    Unchanged when ``by`` took none of its areas."""
    taken = [t for t, i in incident.continued.items() if i == by]
    if not taken:
        return incident
    end = incident.end
    restored = {**incident.restored, **{t: end for t in taken if end is not None}}
    return replace(incident, unconfirmed=(*incident.unconfirmed, *taken),
                   continued={t: i for t, i in incident.continued.items() if i != by},
                   restored=restored, revision=incident.revision + 1, updated_at=now)


def areas_back(members: Iterable[Member]) -> dict[str, datetime]:
    """Areas with evidence that supply is back, and since when: restoration steps
    (:func:`restoration_signals`), and the end of the records that named them (restored,
    cancelled, gone from a complete snapshot; planned work edited to leave them out) once no
    record still reports them off. Decided by time, whatever order the records arrived in:
    an area is back once every outage reported for it (:func:`outages_reported`) ended or was
    followed by a step, since the latest of those; a report of an outage that began at or
    after its last step keeps it off."""
    members = list(members)
    steps, spans = _steps(members), outages_reported(members)
    back: dict[str, datetime] = {}
    for t in dict.fromkeys([*spans, *steps]):
        at = _back_since(steps.get(t, []), spans.get(t, []))
        if at is not None:
            back[t] = at
    return back


#: What a notice calls an incident whose outage-system records no mapping classified.
UNCLASSIFIED = "unclassified"


def announced_kind(incident: Incident) -> str:
    """The kind notices may name: the incident's, unless every outage-system record of it is
    of a type the source could not classify (:data:`UNCLASSIFIED`: a neutral 停电 with no
    claim; the incident is still handled as its ``kind``, a fault by default, crew and all).
    A record that classified the kind wins over one that did not."""
    notices = [m for m in incident.members.values() if m.signal == "notice"]
    if not notices:
        return incident.kind
    known = [m.kind for m in notices if m.kind_known]
    return _worst_kind(known) if known else UNCLASSIFIED


def _worst_kind(kinds: Iterable[Kind]) -> Kind:
    order = {"fault": 0, "temporary": 1, "planned": 2}
    ks = sorted(kinds, key=lambda k: order.get(k, 9))
    return ks[0] if ks else "fault"


@dataclass(frozen=True)
class Notice:
    """Tell these villages this about the incident (at its current revision)."""

    purpose: str  # outage | update | restored | cancelled | withdrawn (command centre only)
    villages: tuple[str, ...]


def plan_notices(before: Incident | None, after: Incident, topology: Topology | None = None,
                 etr_step: timedelta = timedelta(minutes=15), dropped_as: str = "withdrawn"
                 ) -> tuple[list[Notice], Incident]:
    """Decide which villages get which notice for ``after``'s revision.

    A village hears "outage" when one of its areas is first affected, and "restored" when every
    affected area of it is back (or the whole incident is over): once each, unless a source
    reports it off again after it was told power is back. A village whose areas were only
    inferred and that the estimate dropped is withdrawn: a ``withdrawn`` notice, which goes to
    the command centre only; affected again, it rejoins without a second outage notice, and
    hears an update only when a source reports off an area of it it was not told of or its
    expected restoration time moved (:func:`_rejoin_news`). A village told already hears an
    update when its own expected restoration time (:func:`village_etr`) moved at least
    ``etr_step`` from the one it was last told, or when the areas it was told are off
    changed on a report or a command-centre correction (:func:`village_scope_change`; never
    on the estimate's inferences alone).
    ``dropped_as`` names the notice of villages that left the scope: ``withdrawn`` (an
    inference dropped) or ``corrected`` (an operator took them out: they hear it was a mistake).
    Returns the notices and ``after`` with its village lists brought up to date.
    """
    if before is not None and before.revision == after.revision:
        return [], after
    if after.status == "active":
        return _plan_while_on(before, after, topology, etr_step, dropped_as)
    return _plan_when_over(after, topology)


def _plan_while_on(before: Incident | None, after: Incident, topology: Topology | None,
                   etr_step: timedelta, dropped_as: str) -> tuple[list[Notice], Incident]:
    """:func:`plan_notices` for an incident still on: villages joining the outage, back,
    dropped from its scope, or whose expected restoration time moved."""
    notified = list(after.notified_villages)
    withdrawn = list(after.withdrawn_villages)
    affected = villages_off(after, topology)
    in_scope = set(affected) | set(villages_of_scope(after, topology))
    back = [v for v in notified if v not in affected and v in in_scope]
    dropped = [v for v in notified if v not in affected and v not in in_scope]
    rejoin = [v for v in affected if v not in notified and v in withdrawn]
    new = [v for v in affected if v not in notified and v not in withdrawn]
    still = [v for v in notified if v in affected]
    out = _scope_notices(after, topology, back, dropped, new, dropped_as)
    was_told = dict(after.told_etr)
    moved, after = _etr_moves(before, after, topology, etr_step, still, rejoin, new)
    if moved:
        out.append(Notice("update", tuple(moved)))
    # A village told it was a mistake (corrected) hears of the outage again if it is
    # affected after all; one whose inference was dropped rejoins quietly unless there is
    # news for it (:func:`_rejoin_news`).
    withdrawn = [v for v in withdrawn if v not in rejoin] + (
        dropped if dropped_as == "withdrawn" else [])
    told_back = [v for v in after.restored_villages if v not in new] + back
    told_devices = {**after.told_devices, **{v: village_devices(after, v, topology)
                                             for v in new if topology is not None}}
    return out, replace(after, notified_villages=tuple(still + rejoin + new),
                        withdrawn_villages=tuple(withdrawn), restored_villages=tuple(told_back),
                        told_devices=told_devices,
                        **_withdrawn_told(before, after, withdrawn, was_told, topology))


def _withdrawn_told(before: Incident | None, after: Incident, withdrawn: Sequence[str],
                    was_told: Mapping[str, datetime | None], topology: Topology | None
                    ) -> dict[str, Any]:
    """What the ``withdrawn`` villages were told (:attr:`Incident.withdrawn_areas` and
    :attr:`Incident.told_etr`): kept from ``after`` for those withdrawn before; for those
    the estimate drops now, their areas in ``before``'s scope and the time they were told
    (``was_told``)."""
    areas = {v: a for v, a in after.withdrawn_areas.items() if v in withdrawn}
    for v in withdrawn:
        if v not in areas and before is not None and topology is not None:
            areas[v] = tuple(t for t in before.estimate.transformers if t in topology.nodes
                             and topology.nodes[t].village == v)
    told = {v: was_told[v] for v in withdrawn if v in was_told}
    return {"withdrawn_areas": areas, "told_etr": {**after.told_etr, **told}}


def _scope_notices(after: Incident, topology: Topology | None, back: Sequence[str],
                   dropped: Sequence[str], new: Sequence[str], dropped_as: str) -> list[Notice]:
    """The notices of villages whose place in the outage changed: "restored" for those
    ``back`` ("cancelled" where the work was called off for them, :func:`called_off`),
    ``dropped_as`` for those ``dropped`` from the scope, "outage" for the ``new``."""
    return back_notices(after, back, topology) + [
        notice for notice in (Notice(dropped_as, tuple(dropped)), Notice("outage", tuple(new)))
        if notice.villages]


def _etr_moves(before: Incident | None, after: Incident, topology: Topology | None,
               etr_step: timedelta, still: Sequence[str], rejoin: Sequence[str],
               new: Sequence[str]) -> tuple[list[str], Incident]:
    """The villages ``still`` off whose expected restoration time moved enough to tell them
    (:func:`_told_moved`), and those rejoining after their inference was withdrawn
    (``rejoin``) with news for them (:func:`_rejoin_news`); and ``after`` with the time each
    village off was last told (the ``new`` and those told now are told theirs; a village
    rejoining quietly keeps the one it was told, or counts as told its current one)."""
    etrs = {v: village_etr(after, v, topology) for v in [*still, *rejoin, *new]}
    told_etr = {v: after.told_etr.get(v, before.etr if before else None)
                for v in still if v in after.told_etr or before is not None}
    told_etr.update({v: after.told_etr[v] for v in rejoin if v in after.told_etr})
    moved = [v for v in still if before is not None and before.status == "active"
             and _told_moved(before, after, v, (told_etr.get(v), etrs[v], etr_step), topology)]
    moved += [v for v in rejoin if _rejoin_news(
        after, v, topology, (told_etr.get(v, etrs[v]), etrs[v], etr_step))]
    told_etr.update({v: etrs[v] for v in [*moved, *new]})
    return moved, replace(after, told_etr={v: told_etr.get(v, etrs[v])
                                           for v in [*still, *rejoin, *new]})


def _rejoin_news(after: Incident, village: str, topology: Topology | None,
                 etr: tuple[datetime | None, datetime | None, timedelta]) -> bool:
    """Whether ``village``, withdrawn (its inferred areas dropped, its liaisons not told) and
    affected again, hears of it (an update): a source reports off an area of it it was not
    told may be off (:attr:`Incident.withdrawn_areas`), or its expected restoration time
    (``etr``: as told, as now, the step) moved enough (:func:`_moved`). Inferred again with
    nothing new, it rejoins quietly."""
    if topology is None:
        return False
    told = after.withdrawn_areas.get(village, ())
    return _moved(*etr) or any(
        after.mark(t) == "reported" and t not in told for t in after.off
        if t in topology.nodes and topology.nodes[t].village == village)


def _plan_when_over(after: Incident, topology: Topology | None
                    ) -> tuple[list[Notice], Incident]:
    """:func:`plan_notices` for an incident that is over: the villages told of it hear it
    was restored or cancelled (:func:`back_notices`), once."""
    notified = list(after.notified_villages)
    told_back = list(after.restored_villages)
    out: list[Notice] = []
    if after.status in ("restored", "cancelled"):
        out = back_notices(after, notified, topology)
        told_back += [v for v in notified if v not in told_back]
        notified = []
    return out, replace(after, notified_villages=tuple(notified),
                        withdrawn_villages=tuple(after.withdrawn_villages),
                        restored_villages=tuple(told_back))


def back_notices(incident: Incident, villages: Sequence[str], topology: Topology | None
                 ) -> list[Notice]:
    """The notices telling ``villages`` their supply is normal: "cancelled" to every one of
    an incident cancelled; else "restored", or "cancelled" to a village for which the
    outage was called off (:func:`called_off`: its records withdrawn, no power seen back),
    whether the incident is still on or that ended it."""
    off = [v for v in villages
           if incident.status == "cancelled" or called_off(incident, v, topology)]
    return [notice for notice in (Notice("restored", tuple(v for v in villages if v not in off)),
                                  Notice("cancelled", tuple(off)))
            if notice.villages]


#: Notices that tell a village its supply is normal again.
BACK_NOTICES = ("restored", "cancelled")


def hold_back(notices: list[Notice], after: Incident, dark: Iterable[str]
              ) -> tuple[list[Notice], Incident, tuple[str, ...]]:
    """Take out of ``after``'s "restored" and "cancelled" notices the villages in ``dark``
    (still off in another open incident: its own areas came back, the village did not), and
    out of the villages the incident counts as told so. Returns the notices, the incident and
    the villages held back; the other incident tells them when their power is back."""
    dark = set(dark)
    held = tuple(dict.fromkeys(v for n in notices if n.purpose in BACK_NOTICES
                               for v in n.villages if v in dark))
    if not held:
        return notices, after, ()
    kept = [replace(n, villages=tuple(v for v in n.villages if v not in dark))
            if n.purpose in BACK_NOTICES else n for n in notices]
    told = tuple(v for v in after.restored_villages if v not in held)
    return [n for n in kept if n.villages], replace(after, restored_villages=told), held


def past_stop_unannounced(notices: list[Notice], after: Incident, now: datetime,
                          topology: Topology, dark: Iterable[str]
                          ) -> tuple[list[Notice], Incident, tuple[str, ...]]:
    """Take out of ``after``'s "outage" notices the villages of planned or temporary work
    whose planned stop (:func:`village_etr`) has already passed, unless an area of theirs
    still off is reported dark (``dark``: :func:`reported_dark`): work first seen after its
    end is no outage to announce. Those villages are not counted as told (a later stop still
    ahead announces them). Returns the notices, the incident and the villages left out."""
    if incident_class(after.kind) == "unplanned" or after.status != "active":
        return notices, after, ()
    dark = set(dark)
    off = set(after.off)

    def quiet(v: str) -> bool:
        etr = village_etr(after, v, topology)
        return etr is not None and etr <= now and not any(
            t in dark for t in topology.village_transformers(v) if t in off)

    left = tuple(v for n in notices if n.purpose == "outage" for v in n.villages if quiet(v))
    if not left:
        return notices, after, ()
    kept = [replace(n, villages=tuple(v for v in n.villages if v not in left))
            if n.purpose == "outage" else n for n in notices]
    after = replace(after, notified_villages=tuple(v for v in after.notified_villages
                                                   if v not in left),
                    told_etr={v: t for v, t in after.told_etr.items() if v not in left})
    return [n for n in kept if n.villages], after, left


def reported_dark(incidents: Iterable[Incident]) -> set[str]:
    """Areas an open report says are dark now: an AMI area's outage, an operator's or a
    liaison's "still off" (active ``dead`` reports) in any of ``incidents``."""
    return {t for inc in incidents if inc.status == "active" for m in inc.members.values()
            if m.signal == "dead" and m.status == "active" for t in m.transformers}


def seen_coming_back(members: Iterable[Member], areas: Sequence[str] | None = None) -> bool:
    """Whether meters or a step said an area (of ``areas``, or any) came back: a restoration
    (AMI power-restore, an operator's or crew's step, a liaison's 已来电). The outage was
    real then, whatever became of the record that reported it."""
    return any(m.signal in ("alive", "dead") and m.status == "restored"
               and (areas is None or any(t in areas for t in m.transformers))
               for m in members)


def called_off(incident: Incident, village: str, topology: Topology | None) -> bool:
    """Whether the outage was called off for ``village``: every record that says something of
    it (:func:`village_records`) was cancelled (one re-issued without the village's areas, a
    fault record withdrawn while others stay open), and one at least did (or, for planned or
    temporary work, was edited before the work began to leave the village out,
    :attr:`Member.left`: a fault record that shrinks is as often a partial restoration). Work
    called off never switched it off; a withdrawn fault record is no word that power is on:
    either way it hears 停电取消, as when the whole incident is, not "power back" — unless
    power was seen coming back there (:func:`seen_coming_back`): the outage was real, and
    its end a restoration."""
    if topology is None:
        return False
    records = village_records(incident, village, topology)
    areas = topology.village_transformers(village)
    if seen_coming_back(incident.members.values(), areas):
        return False
    if incident_class(incident.kind) == "unplanned":
        return bool(records) and all(m.status == "cancelled" for m in records)
    edited = [m for m in incident.members.values() if any(t in areas for t in m.left)]
    return bool(records or edited) and all(m.status == "cancelled" for m in records)


def _told_moved(before: Incident, after: Incident, village: str,
                etr: tuple[datetime | None, datetime | None, timedelta],
                topology: Topology | None) -> bool:
    """Whether what ``village`` was told changed enough to tell it again: its expected
    restoration time (``etr``: as told, as now, the step) moved (:func:`_moved`), its planned
    work's own start moved (:func:`village_start`: the incident's is the earliest of every
    record's, which hides a re-issued record's shifted window), or the areas it was told
    are off changed (:func:`_areas_moved`)."""
    return (_moved(*etr)
            or (after.kind != "fault" and village_start(before, village, topology)
                != village_start(after, village, topology))
            or _areas_moved(before, after, village, topology))


def _moved(told: datetime | None, now: datetime | None, step: timedelta) -> bool:
    """Whether an expected restoration time moved enough to tell the village again."""
    if told is None or now is None:
        return (told is None) != (now is None)
    return now != told and abs(now - told) >= step


def village_etr(incident: Incident, village: str, topology: Topology | None = None
                ) -> datetime | None:
    """The expected restoration time that concerns ``village``: the command centre's for the
    whole incident when it set one; else that of the open records naming the village's areas
    still off (a storm's other records on the feeder are other villages' news). An area named
    only by records that give no time makes the village's time unknown (``None``): a time one
    record gives for another area is no promise for it. The incident's own time for a village
    no record names (its areas only inferred), or without a topology."""
    if topology is None or incident.etr_set is not None:
        return incident.etr
    per_area = area_etrs(incident, village, topology)
    if not per_area:
        return incident.etr
    times = list(per_area.values())
    return None if any(t is None for t in times) else max(t for t in times if t is not None)


def area_etrs(incident: Incident, village: str, topology: Topology
              ) -> dict[str, datetime | None]:
    """Each area of ``village`` still off that an open record names, with the latest time
    those records give for it (``None``: none of them gives one). Meters' reports give no
    time: an area only they name, below the device an open record with a time names (work
    on a switch, its areas inferred), has that record's time."""
    off = set(incident.off)
    out = {t: at for t, at in named_area_etrs(incident.members.values()).items()
           if t in off and t in topology.nodes and topology.nodes[t].village == village}
    notices = [m for m in incident.members.values()
               if m.status == "active" and m.signal == "notice"]
    timed = [m for m in notices if m.etr is not None and m.device in topology.pos]
    # An area a record names without a time stays unknown: that record promised nothing.
    named = {t for m in notices for t in (*m.transformers, *m.possible)}
    for t in [t for t, at in out.items() if at is None and t not in named]:
        below = [m.etr for m in timed if m.etr and topology.is_downstream(t, str(m.device))]
        out[t] = max(below) if below else None
    return out


def named_area_etrs(members: Iterable[Member]) -> dict[str, datetime | None]:
    """Each area an open record names, with the latest expected restoration time those
    records give for it (``None``: none of them gives one)."""
    out: dict[str, datetime | None] = {}
    for m in members:
        if m.status != "active" or m.signal not in REPORTING_SIGNALS:
            continue
        for t in (*m.transformers, *m.possible):
            best = out.get(t)
            out[t] = m.etr if best is None else max(best, m.etr or best)
    return out


def agreed_cause(members: Iterable[Member]) -> str | None:
    """The cause the open ones of ``members`` agree on: for each area they name (a device,
    or the record itself, when it names none) the latest stated (:attr:`Member.cause_stated`:
    a second record of the same outage, or the same record edited, corrects the first); the
    one cause every area has, "" when areas have different ones (in a storm one record's
    word is its own area's, not the outage's: stated for the whole incident, the crew and
    the command centre read "雷击" of an area whose record says 树线矛盾), ``None`` when none
    gives one. A record's cause while it is open only: an ended one's says how it ended
    ("已处理完毕恢复送电"). Never a call's: one caller's words (a name, a number to ring
    back) are no record's."""
    latest: dict[str, Member] = {}
    for m in members:
        if m.status != "active" or not m.cause or m.signal == "call":
            continue
        for where in (*m.transformers, *m.possible) or (m.device or m.key,):
            was = latest.get(where)
            if was is None or (m.cause_stated, m.key) > (was.cause_stated, was.key):
                latest[where] = m
    causes = {m.cause for m in latest.values()}
    if not causes:
        return None
    return causes.pop() if len(causes) == 1 else ""


def _or_known(cause: str | None, known: str) -> str:
    """``cause`` (:func:`agreed_cause`), or the ``known`` one when no open record gives one."""
    return known if cause is None else cause


def village_cause(incident: Incident, records: Sequence[Member]) -> str:
    """The cause a village is told: what its own records (:func:`village_records`) say
    (:func:`own_cause`) — never another village's record: in a storm, one branch's fuse is
    no cause of a village its breaker's record concerned, and that record's ending does not
    make the fuse's word this village's. A village whose records are evidence only (its
    meters, a device seen open: they say where, never why) hears the cause the incident's
    open records that place nothing (no area, no device: their scope may be this village)
    agree on; one no record concerns (its areas only inferred), the one the incident's open
    records agree on, else the incident's last known cause."""
    own = own_cause(records)
    if own is not None:
        return own
    if records:
        unplaced = (m for m in incident.members.values() if m.signal in REPORTING_SIGNALS
                    and not (m.transformers or m.possible or m.device))
        return agreed_cause(unplaced) or ""
    return _or_known(agreed_cause(m for m in incident.members.values()
                                  if m.signal in REPORTING_SIGNALS), incident.cause)


def own_cause(records: Sequence[Member]) -> str | None:
    """The cause a village's ``records`` give: the latest stated by its open outage-system
    records while one is open ("" when none of them gives one: an ended record's word is of
    the outage it ended, not of the one on now); once none is, the latest its ended ones
    stated (the outage it was told of, its meters yet to say the power is back); ``None``
    when no outage-system record concerns it and no record gives one. Records only
    (:data:`REPORTING_SIGNALS`): a trouble call's cause is what an agent typed of one
    caller — a name, a number to ring back — never for a village group."""
    reporting = [m for m in records if m.signal in REPORTING_SIGNALS]
    open_ = [m for m in reporting if m.status == "active"]
    said = [m for m in (open_ if any(m.signal == "notice" for m in open_) else reporting)
            if m.cause]
    if said:
        return max(said, key=lambda m: (m.cause_stated, m.key)).cause
    return "" if any(m.signal == "notice" for m in reporting) else None


def village_records(incident: Incident, village: str, topology: Topology) -> list[Member]:
    """The records that say something of ``village``: those naming one of its areas, and
    those naming an operated device that feeds one of them; outage reports
    (:func:`reports_outage`), an area's outage that ended in its meters coming back
    included (its start is when the village went dark)."""
    areas = topology.village_transformers(village)
    return [m for m in incident.members.values()
            if reports_outage(m) and _concerns(m, areas, topology)]


def _concerns(m: Member, areas: Sequence[str], topology: Topology) -> bool:
    if any(t in areas for t in (*m.transformers, *m.possible)):
        return True
    return m.device is not None and m.device in topology.pos and any(
        topology.is_downstream(t, m.device) for t in areas if t in topology.pos)


def village_devices(incident: Incident, village: str, topology: Topology) -> tuple[str, ...]:
    """The devices of ``incident``'s fault point a village's notice names: those a record of
    the village (:func:`village_records`) names as operated — an inferred fault point is the
    command centre's working hypothesis, not a fact to announce — that feed one of the
    village's areas (a device a record names beside areas it does not supply is no news of
    this village's outage): its areas in the outage (all of its areas when none is). Its
    open records' when one is open (:func:`open_or_ended`): a breaker that reclosed an hour
    ago is no news of the fuse that blew since."""
    named = {m.device for m in open_or_ended(village_records(incident, village, topology))
             if m.device}
    own = topology.village_transformers(village)
    areas = [t for t in incident.estimate.transformers if t in own] or list(own)
    areas = [t for t in areas if t in topology.pos]
    return tuple(d for d in incident.estimate.devices if d in named and d in topology.pos
                 and any(topology.is_downstream(t, d) for t in areas))


def open_or_ended(records: Sequence[Member]) -> list[Member]:
    """The open ones of a village's ``records`` that can name a device (outage-system
    records, devices seen open: not its meters) when one is open — the outage it is in now;
    else all of them (the one it was told of, ended, its meters yet to say it is back)."""
    open_ = [m for m in records
             if m.status == "active" and m.signal in ("notice", "device_open")]
    return open_ or list(records)


def village_start(incident: Incident, village: str, topology: Topology | None = None
                  ) -> datetime:
    """When ``village``'s outage began: the earliest start of the open records that say
    something of it (:func:`village_records`), reaching back through ended records that were
    still on when a later one began (a record re-issued under a new id with a later start, or
    one that stopped naming the village while another took it over: the village never came
    back in between); once none is open, of those not re-issued under a new id (a cancelled
    re-issue was to start at its own time, not the old record's); the incident's start when
    none does (its areas only inferred), or without a topology."""
    if topology is None:
        return incident.start
    records = village_records(incident, village, topology)
    if not records:
        return incident.start
    open_ = ([m for m in records if m.status == "active"]
             or [m for m in records if not m.superseded_by] or records)
    start = min(m.start for m in open_)
    for m in sorted((m for m in records if m not in open_), key=lambda m: m.start,
                    reverse=True):
        if m.start < start <= (m.end or m.seen_at):
            start = m.start
    return start


def restored_at(incident: Incident, areas: Iterable[str]) -> datetime | None:
    """The latest time one of ``areas`` came back (``None``: none of them is recorded back)."""
    times = [incident.restored[t] for t in areas if t in incident.restored]
    return max(times) if times else None


def off_since_back(before: Incident, after: Incident, village: str, topology: Topology
                   ) -> bool:
    """Whether ``village``, back in ``before`` (:func:`restored_at` of its areas), is off in
    ``after`` in an outage that began after it came back (:func:`village_start`): a new
    outage, not the old one still on. Its 恢复送电 was true, so its notice is no
    correction (更正) of a mistake but news of another outage (再次停电); one whose outage
    began before (a late report of an area that never came back) corrects it."""
    back = restored_at(before, topology.village_transformers(village))
    return back is not None and village_start(after, village, topology) > back


def village_scope_change(before: Incident, after: Incident, village: str, topology: Topology
                         ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """How the areas of ``village`` off changed between two revisions in a way its liaisons
    must hear of: areas a source or an operator reported off that were not in the scope
    (added), and areas off that the command centre took out or planned work's records left
    out before it began (removed: :func:`called_off_areas`). An inferred area the estimate
    adds or drops is no news to them, nor an area coming back."""
    was, now = set(before.estimate.transformers), set(after.estimate.transformers)
    areas = topology.village_transformers(village)
    added = tuple(t for t in after.estimate.transformers
                  if t in areas and t not in was and after.mark(t) == "reported"
                  and t not in after.restored)
    called = set(called_off_areas(after))
    removed = tuple(t for t in before.estimate.transformers
                    if t in areas and t not in before.restored
                    and ((t not in now and t in after.excluded) or t in called))
    return added, removed


def _areas_moved(before: Incident, after: Incident, village: str,
                 topology: Topology | None) -> bool:
    """Whether the areas ``village`` was told are off changed by a report or a correction
    (:func:`village_scope_change`)."""
    if topology is None:
        return False
    added, removed = village_scope_change(before, after, village, topology)
    return bool(added or removed)


def villages_off(incident: Incident, topology: Topology | None = None) -> list[str]:
    """Villages with at least one affected area still off, in estimate order.

    Without a topology, areas cannot be mapped to villages, so every village of the estimate
    counts while the incident is active.
    """
    if topology is None:
        return list(incident.estimate.villages)
    pos = topology.pos
    still = set(topology.villages_of(t for t in incident.off if t in pos))
    return [v for v in incident.estimate.villages if v in still]


def dark_villages(incidents: Iterable[Incident], now: datetime, topology: Topology,
                  exclude: str | None = None) -> set[str]:
    """Villages with an area off in an active incident other than ``exclude``: a fault, or
    planned or temporary work once it has started (work announced for later darkens no
    village yet) and whose areas are not known to be back after its planned stop
    (:func:`dark_areas`)."""
    incidents = list(incidents)
    on = areas_on(incidents)
    pos = topology.pos
    return {v for o in incidents if o.id != exclude and o.status == "active"
            and (incident_class(o.kind) == "unplanned" or o.start <= now)
            for v in topology.villages_of(t for t in dark_areas(o, now, on) if t in pos)}


def areas_on(incidents: Iterable[Incident]) -> dict[str, datetime]:
    """Areas whose latest restoration signal (an AMI power-restore, an operator's or crew's
    step) in any of ``incidents`` says supply is back, with the latest such time."""
    out: dict[str, datetime] = {}
    for inc in incidents:
        for t, at in restoration_signals(inc.members.values()).items():
            out[t] = max(at, out.get(t, at))
    return out


def dark_areas(incident: Incident, now: datetime, on: Mapping[str, datetime]
               ) -> tuple[str, ...]:
    """The areas of ``incident`` still off as far as anyone knows. For planned or temporary
    work whose planned stop has passed (a finished record a feed still lists), an area is
    not dark when the meters (or a step) said it is back since the work began (``on``,
    :func:`areas_on`), or when every open record naming it gives an actual end already past.
    Without such evidence the work may have overrun: the area stays dark."""
    if (incident_class(incident.kind) == "unplanned" or incident.etr is None
            or incident.etr > now):
        return incident.off
    named: dict[str, list[Member]] = {}
    for m in incident.members.values():
        if m.status == "active" and m.signal in REPORTING_SIGNALS:
            for t in (*m.transformers, *m.possible):
                named.setdefault(t, []).append(m)
    return tuple(t for t in incident.off
                 if not ((t in on and on[t] >= incident.start)
                         or (named.get(t) and all(m.end is not None and m.end <= now
                                                  for m in named[t]))))


def villages_of_scope(incident: Incident, topology: Topology | None = None) -> list[str]:
    """Villages with any affected area, off or back."""
    if topology is None:
        return list(incident.estimate.villages)
    return list(topology.villages_of(incident.estimate.transformers))


def _crew_progress(d: Mapping[str, Any]) -> CrewProgress:
    """A stored state's ``crew_progress``; one stored before it existed has it in its stage
    (a partly restored one: not known, taken as none)."""
    value = d.get("crew_progress") or d.get("stage")
    return value if value in ("dispatched", "on_site") else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def member_keys(incidents: Sequence[Incident]) -> dict[str, str]:
    """``source|event_id`` -> incident id, for routing later revisions of the same record."""
    return {k: inc.id for inc in incidents for k in inc.members}
