"""Triage: what one resolved event may do before it touches an incident (pure core).

The decisions the processor takes for every event, kept out of the I/O shell so that each is a
row of a table-driven test:

* ``without_incident`` — a restoration or alive report for nothing we know of: recorded,
  nothing to do; a trouble call no open incident takes: recorded (never an incident of its
  own), for the fault incident that may open on its line within the correlation window to take
  in (:meth:`outage_sentinel.processing.IncidentProcessor._earlier_calls`);
* ``explained`` — a new unplanned outage whose areas all lie inside an announced planned
  outage's window: explained by the planned work, not a fault (it joins that work's incident
  as evidence, :func:`explaining_outage`, and opens none; one inside several works but wholly
  inside none of them is no work's news: the processor takes it as an ``incident``). The
  meters' dark report is the work's anywhere in its scope, vaguely named areas too; an
  outage-system record only where the work's own records name its areas
  (:func:`named_by_work`): a fault record beside work whose text is vague is a fault;
* ``incident`` — fold it into (or open) an incident (a planned record new under an id the
  outage system re-issued joins the work it continues, :func:`reissued_work`); ``unplaced``
  when a new one names no area or device the bundle knows (it still opens an incident, whose
  summary carries the raw text to the command centre for a person to place).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from outage_sentinel.events import OutageEvent, parse_time
from outage_sentinel.incidents import Incident, Member, Resolved, incident_class

#: kv key of a storm declared by an operator (``outage-sentinel storm declare``).
STORM_KEY = "storm"

Action = Literal["without_incident", "explained", "incident"]


@dataclass(frozen=True)
class Triage:
    """The decision for one event (see the module docstring)."""

    action: Action
    #: A new incident that names nothing the bundle knows (only with ``incident``).
    unplaced: bool = False


def triage(current: Incident | None, event: OutageEvent, resolved: Resolved,
           planned: frozenset[str]) -> Triage:
    """Decide what ``event`` does, given the incident it correlated with (``None``: none) and
    the areas inside planned outages in force (:func:`planned_transformers`)."""
    if current is not None:
        return Triage("incident")
    if event.status != "active" or event.signal not in ("notice", "dead"):
        return Triage("without_incident")
    if (incident_class(event.kind) == "unplanned" and planned and resolved.transformers
            and set(resolved.transformers) <= planned):
        return Triage("explained")
    unplaced = not (resolved.transformers or resolved.possible or resolved.device)
    return Triage("incident", unplaced=unplaced)


def explaining_outage(incidents: Iterable[Incident], event: OutageEvent, resolved: Resolved,
                      now: datetime) -> Incident | None:
    """The planned outage in force that an ``explained`` report joins: a record of the outage
    system, or the AMI screen's report of an area gone dark.

    The report is kept as a member of it, not dropped: when the work's record ends while the
    report still holds areas off (the record still lists them, or no meter reported power on
    since), they stay off, as for any record of an incident
    (:func:`outage_sentinel.incidents.areas_back`), and the
    villages are not told their power is back until a source or an operator says it is.

    What the work explains depends on who reports. The meters' dark report is evidence of
    the work anywhere in its scope, the areas its text names only vaguely ("XX村部分区域",
    可能受影响) too: the work is why they are dark. An outage-system record is the
    system's own word, and names its areas: it is the work's only where the work's records
    in force name every one of them (:func:`named_by_work`), the system restating the work's
    outage. A fault record of areas the work names only vaguely is a fault of its own
    (a fuse blowing beside the work): joined, it made the work a fault, its areas 误报 and
    the work's start the fault's."""
    if event.signal not in ("notice", "dead"):
        return None
    areas = set(resolved.transformers)
    for inc in incidents:
        if (inc.kind in ("planned", "temporary") and inc.status == "active"
                and inc.start <= now and (inc.etr is None or now <= inc.etr)
                and areas <= (named_by_work(inc) if event.signal == "notice"
                              else set(inc.estimate.transformers))):
            return inc
    return None


def named_by_work(incident: Incident) -> set[str]:
    """The areas planned or temporary work ``incident``'s records in force name explicitly:
    those they list, and those below a device one of them names (its scope's inferred areas:
    work infers only those, :func:`outage_sentinel.incidents.work_areas`). Not the areas
    its text names vaguely (possible), nor those only the meters reported dark."""
    named = {t for m in incident.members.values()
             if m.signal == "notice" and incident_class(m.kind) != "unplanned"
             and m.status == "active" for t in m.transformers}
    named.update(t for t, mark in incident.scope.items() if mark == "inferred")
    return named & set(incident.estimate.transformers)


def restoring_work(incidents: Iterable[Incident], event: OutageEvent, resolved: Resolved,
                   now: datetime) -> Incident | None:
    """The planned or temporary work, begun and still open, that a restoration signal no
    incident took (an AMI area's power-restore, its dark report never seen) is about: every
    area it names is the work's, and supply came back after the work began. Joined to it,
    the signal ends those areas as the meters' word does inside the work; dropped, a
    finished record the feed still lists kept the areas dark (and held other incidents'
    "power back" from their villages) whatever the meters said."""
    areas = set(resolved.transformers)
    if event.status == "active" or event.signal not in ("alive", "dead") or not areas:
        return None
    back = event.end or event.start
    for inc in incidents:
        if (inc.kind in ("planned", "temporary") and inc.status == "active"
                and inc.start <= min(now, back) and areas <= set(inc.estimate.transformers)):
            return inc
    return None


def reissued_work(incidents: Iterable[Incident], event: OutageEvent, resolved: Resolved,
                  leaving: Mapping[str, datetime]) -> Incident | None:
    """The planned or temporary work that ``event``, a record seen for the first time,
    continues under a new id (:func:`continued_records`): outage systems re-issue a record
    after an edit, and the old id is cancelled or leaves the list. Opened on its own, the
    same work was announced twice and called off once."""
    for inc in incidents:
        if continued_records(inc, event, resolved, leaving):
            return inc
    return None


def continued_records(incident: Incident, event: OutageEvent, resolved: Resolved,
                      leaving: Mapping[str, datetime]) -> tuple[str, ...]:
    """The keys of ``incident``'s records that ``event`` re-issues: ``incident`` is open
    planned or temporary work on the event's feeder, the event a planned or temporary record
    of the same source new to it, and each record it continues

    * shares an area with it, and their windows overlap or touch;
    * leaves before its planned stop: ``leaving`` (``source|event_id`` -> when) holds it,
      because its ending is in the same batch or the source reported it missing from the
      complete snapshot poll in which the event first appeared, at a time before its
      expected restoration (a record without one is never continued).

    Requiring the early leave keeps apart a job that finished at its stop and a new job on
    the same areas after it."""
    key = f"{event.source}|{event.event_id}"
    if (incident_class(event.kind) == "unplanned" or event.status != "active"
            or event.signal != "notice" or incident_class(incident.kind) == "unplanned"
            or incident.status != "active" or key in incident.members
            or resolved.feeder is None or incident.feeder != resolved.feeder):
        return ()
    return tuple(m.key for m in incident.members.values()
                 if _continues(m, event, set(resolved.transformers), leaving.get(m.key)))


def _continues(m: Member, event: OutageEvent, areas: set[str], left: datetime | None) -> bool:
    """Whether ``event`` (naming ``areas``) continues record ``m``, which left at ``left``."""
    if (left is None or m.etr is None or left >= m.etr or m.signal != "notice"
            or m.key.split("|", 1)[0] != event.source
            or not (m.status == "active" or m.superseded_by)):
        return False
    stop = event.expected_restoration
    return bool(areas & set(m.transformers)) and event.start <= m.etr and (
        stop is None or m.start <= stop)


def planned_transformers(incidents: Iterable[Incident], now: datetime) -> frozenset[str]:
    """Areas inside an active planned/temporary outage whose window holds ``now``."""
    out: set[str] = set()
    for inc in incidents:
        if inc.kind in ("planned", "temporary") and inc.status == "active":
            if inc.start <= now and (inc.etr is None or now <= inc.etr):
                out.update(inc.estimate.transformers)
    return frozenset(out)


#: The longest a storm may be declared for at once (a longer one overflowed the clock).
MAX_STORM_HOURS = 30 * 24


def storm_declaration(declared: bool, actor: str, now: datetime, *,
                      hours: float | None = None, note: str = "") -> dict[str, Any]:
    """The value stored under :data:`STORM_KEY` by ``storm declare|end`` (CLI and board):
    declared from ``now`` until ended or for ``hours``."""
    if not declared:
        return {"declared": False, "by": actor, "at": now.isoformat()}
    if hours is not None and not 0 < hours <= MAX_STORM_HOURS:
        raise ValueError(f"hours must be greater than 0 and at most {MAX_STORM_HOURS} "
                         f"({MAX_STORM_HOURS // 24} days)")
    until = now + timedelta(hours=hours) if hours is not None else None
    return {"declared": True, "by": actor, "at": now.isoformat(), "note": note,
            "until": until.isoformat() if until else None}


def storm_declared(value: Any, now: datetime) -> bool:
    """Whether the stored storm declaration (``{"declared", "until", ...}``) holds at ``now``."""
    if not isinstance(value, Mapping) or not value.get("declared"):
        return False
    until = value.get("until")
    if not until:
        return True
    try:
        return now < parse_time(until, "until")
    except ValueError:
        return True  # an unreadable end: keep the operator's declaration


def unknown_references_reason(event: OutageEvent, refs: tuple[str, ...]) -> str:
    """The quarantine reason for a record naming lines, areas or devices the bundle lacks."""
    def what(ref: str) -> str:
        if ref == event.feeder:
            return "line"
        if ref == event.device:
            return "device"
        if ref in event.transformers:
            return "area"
        return "area text"

    named = ", ".join(f"{ref!r} ({what(ref)})" for ref in refs)
    return f"record {event.event_id}: unknown references, not in the topology bundle: {named}"
