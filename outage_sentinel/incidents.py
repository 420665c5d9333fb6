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
  outage for newly affected villages only, an update when the expected restoration time moves,
  "restored" for villages that are back (whole incident restored, or the estimate shrank).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from outage_sentinel.area_text import find_feeder, resolve_area_text
from outage_sentinel.events import OutageEvent, parse_optional_time, parse_time
from outage_sentinel.topology import Topology

UNPLANNED = ("fault",)


@dataclass(frozen=True)
class Resolved:
    """An event's references mapped onto the topology.

    ``transformers`` are the areas the event names (by reference, or by precise area text);
    ``possible`` the areas its imprecise area text may mean ("XX村部分用户", 可能受影响), never
    one of ``transformers``.
    """

    feeder: str | None
    transformers: tuple[str, ...]
    device: str | None
    unknown: tuple[str, ...]
    possible: tuple[str, ...] = ()


def resolve_event(topology: Topology, event: OutageEvent) -> Resolved:
    """Resolve transformer/device references by id, name, meter id or customer id, and the
    event's area text by the bundle's names and aliases (:mod:`outage_sentinel.area_text`)."""
    transformers: list[str] = []
    unknown: list[str] = []
    for ref in event.transformers:
        nid = topology.resolve(ref)
        if nid is None or topology.nodes[nid].kind != "transformer":
            unknown.append(ref)
        elif nid not in transformers:
            transformers.append(nid)
    device: str | None = None
    if event.device:
        d = topology.resolve(event.device)
        if d is None:
            unknown.append(event.device)
        else:
            device = d
    feeder: str | None = None
    if event.feeder:
        if event.feeder in topology.feeder_ids:
            feeder = event.feeder
        else:
            # "10KV马集线", "马集线" or an alias mean the same line as "10kV马集线".
            feeder = topology.feeder_by_name.get(event.feeder) or find_feeder(topology,
                                                                                event.feeder)
            if feeder is None:
                unknown.append(event.feeder)
    anchor = device or (transformers[0] if transformers else None)
    if anchor is not None and topology.energised[topology.pos[anchor]]:
        feeder = topology.feeder_of(anchor)
    possible: list[str] = []
    if event.area_text:
        scope = resolve_area_text(topology, event.area_text, feeder)
        transformers.extend(t for t in scope.confirmed if t not in transformers)
        possible = [t for t in scope.possible if t not in transformers]
        if feeder is None:
            feeder = scope.feeder
        if anchor is None and transformers and topology.energised[topology.pos[transformers[0]]]:
            feeder = topology.feeder_of(transformers[0])
        if not transformers and not possible and device is None:
            unknown.extend(f for f in scope.unplaced if f not in unknown)
    return Resolved(feeder, tuple(transformers), device, tuple(unknown), tuple(possible))


@dataclass(frozen=True)
class Member:
    """The latest revision of one source record (``source|event_id``) within an incident."""

    key: str
    kind: str
    status: str
    signal: str
    start: datetime
    etr: datetime | None
    end: datetime | None
    device: str | None
    transformers: tuple[str, ...]
    unknown: tuple[str, ...]
    area_text: str
    cause: str
    seen_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "kind": self.kind, "status": self.status, "signal": self.signal,
            "start": self.start.isoformat(), "etr": _iso(self.etr), "end": _iso(self.end),
            "device": self.device, "transformers": list(self.transformers),
            "unknown": list(self.unknown), "area_text": self.area_text, "cause": self.cause,
            "seen_at": self.seen_at.isoformat(),
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
        )


def member_of(event: OutageEvent, resolved: Resolved, now: datetime) -> Member:
    return Member(
        key=f"{event.source}|{event.event_id}", kind=event.kind, status=event.status,
        signal=event.signal, start=event.start, etr=event.expected_restoration, end=event.end,
        device=resolved.device, transformers=resolved.transformers, unknown=resolved.unknown,
        area_text=event.area_text, cause=event.cause, seen_at=now,
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


Estimator = Callable[[Topology, Evidence], Estimate]


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
    important = tuple(c.id for t in transformers for c in topology.customers_by_transformer.get(t, ())
                      if c.importance or c.tags)
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
    kind: str
    status: str
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
    stage: str = "detected"
    #: The incident this one reopens (same areas off again soon after restoration).
    parent_id: str | None = None

    @property
    def fault_device(self) -> str | None:
        return self.estimate.devices[0] if self.estimate.devices else None

    @property
    def off(self) -> tuple[str, ...]:
        """Affected transformer areas still without supply."""
        return tuple(t for t in self.estimate.transformers if t not in self.restored)

    def material(self) -> tuple[Any, ...]:
        """What recipients care about; a change here is a new revision."""
        e = self.estimate
        return (self.status, self.kind, e.devices, e.transformers, self.etr, self.start,
                self.off)

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
            },
            "notified_villages": list(self.notified_villages),
            "unknown_refs": list(self.unknown_refs),
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
            "restored": {t: at.isoformat() for t, at in self.restored.items()},
            "stage": self.stage, "parent_id": self.parent_id,
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
            ),
            notified_villages=tuple(d.get("notified_villages") or ()),
            unknown_refs=tuple(d.get("unknown_refs") or ()),
            created_at=parse_optional_time(d.get("created_at"), "created_at"),
            updated_at=parse_optional_time(d.get("updated_at"), "updated_at"),
            restored={t: parse_time(at, "restored") for t, at in (d.get("restored") or {}).items()},
            stage=d.get("stage", "detected"), parent_id=d.get("parent_id"),
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
) -> Incident | None:
    """The open incident ``event`` belongs to, or ``None`` for a new one."""
    key = f"{event.source}|{event.event_id}"
    candidates = list(incidents)
    for inc in candidates:
        if key in inc.members:
            return inc
    if incident_class(event.kind) != "unplanned" or resolved.feeder is None:
        return None
    best: Incident | None = None
    for inc in candidates:
        if inc.status != "active" or inc.feeder != resolved.feeder:
            continue
        if incident_class(inc.kind) != "unplanned":
            continue
        lo = inc.start - window
        hi = (inc.end or now) + window
        if lo <= event.start <= hi and (best is None or inc.start > best.start):
            best = inc
    return best


def evidence_of(members: Iterable[Member]) -> Evidence:
    """Fold members into evidence. Later members override earlier ones per transformer."""
    dead: set[str] = set()
    alive: set[str] = set()
    calls: dict[str, int] = {}
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
                    calls[t] = calls.get(t, 0) + 1
            if m.device and m.signal in ("notice", "device_open"):
                open_devices.add(m.device)
    return Evidence(frozenset(dead), frozenset(alive), calls, frozenset(open_devices))


def apply_event(
    incident: Incident | None,
    event: OutageEvent,
    resolved: Resolved,
    topology: Topology,
    estimator: Estimator,
    now: datetime,
    new_id: Callable[[], str],
    planned: frozenset[str] = frozenset(),
) -> Incident:
    """Fold ``event`` into ``incident`` (or start a new one) and return the new state."""
    member = member_of(event, resolved, now)
    if incident is None:
        incident = Incident(
            id=new_id(), feeder=resolved.feeder or (event.feeder or "?"), kind=event.kind,
            status="active", revision=0, start=event.start, etr=None, end=None, cause="",
            area_text="", members={}, estimate=Estimate((), None, (), 0, ()), created_at=now,
        )
    members = dict(incident.members)
    members[member.key] = member
    reporting = [m for m in members.values() if m.signal in REPORTING_SIGNALS]
    active = [m for m in reporting if m.status == "active"]
    notices = [m for m in members.values() if m.signal == "notice"] or list(members.values())
    kind = _worst_kind(m.kind for m in notices)
    start = min(m.start for m in (reporting or list(members.values())))
    etrs = [m.etr for m in (active or notices) if m.etr is not None]
    etr = max(etrs) if etrs else None
    causes = [m.cause for m in sorted(notices, key=lambda m: m.seen_at) if m.cause]
    areas = [m.area_text for m in sorted(notices, key=lambda m: m.seen_at) if m.area_text]
    unknown = tuple(dict.fromkeys(u for m in members.values() for u in m.unknown))
    ev = evidence_of(members.values())
    # Restoration signals (AMI power-restore, an operator's step) for areas counted off are
    # restoration steps ("restore first, repair after": switching brings parts back before the
    # fault is repaired). They say nothing about where the fault is, so the estimator still
    # sees those areas as dead.
    back = restoration_signals(members.values())
    restored = {t: at for t, at in incident.restored.items() if t in back or not active}
    for t, at in back.items():
        if t in incident.estimate.transformers:
            restored.setdefault(t, at)
    if active:
        gone = frozenset(restored)
        ev_est = replace(ev, dead=ev.dead | gone, alive=ev.alive - gone,
                         planned=planned if incident_class(kind) == "unplanned" else frozenset())
        estimate = estimator(topology, ev_est)
    else:
        estimate = incident.estimate
    off = [t for t in estimate.transformers if t not in restored]
    if active and (off or not estimate.transformers):
        status, end = "active", None
    elif reporting and all(m.status == "cancelled" for m in reporting):
        status = "cancelled"
        end = max((m.end or m.seen_at) for m in members.values())
    else:
        status = "restored"
        times = [m.end or m.seen_at for m in reporting if m.status != "active"]
        times += list(restored.values())
        end = max(times) if times else now
        for t in off:  # the whole incident is over: the rest came back now
            restored[t] = end
    updated = replace(
        incident, kind=kind, status=status, start=start, etr=etr, end=end,
        cause=causes[-1] if causes else incident.cause,
        area_text=areas[-1] if areas else incident.area_text,
        members=members, estimate=estimate, unknown_refs=unknown, updated_at=now,
        feeder=incident.feeder if incident.feeder != "?" else (resolved.feeder or "?"),
        restored=restored,
    )
    updated = replace(updated, stage=next_stage(incident, updated))
    if updated.material() != incident.material() or incident.revision == 0:
        updated = replace(updated, revision=incident.revision + 1)
    return updated


#: Signals that say an area is off (and so keep an incident open while active).
REPORTING_SIGNALS = ("notice", "dead", "device_open")

#: Lifecycle stages in order. Operator steps (confirmed, dispatched, on_site) and the core's
#: (restoration) only move an incident forward, except that an outage returning on an incident's
#: own records (a feed re-activating a restored record) takes it back to detected/confirmed.
STAGES = ("detected", "confirmed", "dispatched", "on_site", "partially_restored", "restored",
          "cancelled", "closed")
ACTIVE_STAGES = ("detected", "confirmed", "dispatched", "on_site", "partially_restored")


def next_stage(before: Incident, after: Incident) -> str:
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
    if after.restored and after.off:
        stage = "partially_restored"
    elif stage == "partially_restored":
        stage = "confirmed"
    return stage


def restoration_step(before: Incident | None, after: Incident) -> tuple[str, ...]:
    """Transformer areas that came back between two states (in affected order)."""
    was = set(before.restored) if before is not None else set()
    return tuple(t for t in after.estimate.transformers if t in after.restored and t not in was)


def restoration_signals(members: Iterable[Member]) -> dict[str, datetime]:
    """Areas whose latest word is "supply is back" (``alive``/``dead`` signals with a restored
    status), with the time it came back. A later active dead report takes an area off again."""
    back: dict[str, datetime] = {}
    for m in sorted(members, key=lambda m: (m.seen_at, m.key)):
        if m.signal in ("alive", "dead") and m.status != "active":
            for t in m.transformers:
                back[t] = m.end or m.start
        elif m.signal in ("notice", "dead") and m.status == "active":
            for t in m.transformers:
                back.pop(t, None)
    return back


def _worst_kind(kinds: Iterable[str]) -> str:
    order = {"fault": 0, "temporary": 1, "planned": 2}
    ks = sorted(kinds, key=lambda k: order.get(k, 9))
    return ks[0] if ks else "fault"


@dataclass(frozen=True)
class Notice:
    """Tell these villages this about the incident (at its current revision)."""

    purpose: str  # outage | update | restored | cancelled
    villages: tuple[str, ...]


def plan_notices(before: Incident | None, after: Incident, topology: Topology | None = None
                 ) -> tuple[list[Notice], Incident]:
    """Decide which villages get which notice for ``after``'s revision.

    Returns the notices and ``after`` with ``notified_villages`` brought up to date.
    """
    if before is not None and before.revision == after.revision:
        return [], after
    notified = list(after.notified_villages)
    out: list[Notice] = []
    if after.status == "active":
        affected = villages_off(after, topology)
        new = [v for v in affected if v not in notified]
        gone = [v for v in notified if v not in affected]
        still = [v for v in notified if v in affected]
        if gone:
            out.append(Notice("restored", tuple(gone)))
        if new:
            out.append(Notice("outage", tuple(new)))
        changed = before is not None and before.status == "active" and (
            before.etr != after.etr or (after.kind != "fault" and before.start != after.start))
        if changed and still:
            out.append(Notice("update", tuple(still)))
        notified = still + new
    elif after.status in ("restored", "cancelled"):
        if notified:
            out.append(Notice(after.status, tuple(notified)))
        notified = []
    return out, replace(after, notified_villages=tuple(notified))


def villages_off(incident: Incident, topology: Topology | None = None) -> list[str]:
    """Villages with at least one affected area still off, in estimate order.

    Without a topology, restoration steps cannot be mapped to villages, so every village of
    the estimate counts while the incident is active.
    """
    if topology is None or not incident.restored:
        return list(incident.estimate.villages)
    still = {topology.nodes[t].village for t in incident.off if t in topology.nodes}
    return [v for v in incident.estimate.villages if v in still]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def member_keys(incidents: Sequence[Incident]) -> dict[str, str]:
    """``source|event_id`` -> incident id, for routing later revisions of the same record."""
    return {k: inc.id for inc in incidents for k in inc.members}
