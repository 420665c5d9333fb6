"""Late reports: a source's report that arrives after the outage it is about was over.

An outage system's record or the meters' report (a backlog uploaded late) may name areas off
after the incident that had them counted them back. Where it belongs is decided here, pure
of the processor's loop: folded into an incident restored a little while ago
(:func:`lagging_incident`, :func:`confirming_incident`), timed when it arrived when its stamp
falls inside a closed-out incident's span (:func:`stamped_after_closeout`), or, an outage
already over inside an ended incident, recorded in that incident's log and told to nobody
(:func:`finished_within_ended`). :class:`LateReports` writes those log steps
(``late_report``, ``late_stamp``) inside the processor's transaction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import FIELD_SOURCE, OPERATOR_SOURCE, Incident, Resolved
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology


def late_report(event: OutageEvent) -> bool:
    """Whether ``event`` is a source's report of areas off that may come in after the outage
    it is about was over (:func:`lagging_incident`): an outage system's record or the meters'
    report (a backlog uploaded late). A liaison's 仍停电 after the end and the command
    centre's word are news of now, not a late report of then."""
    if event.status != "active":
        return False
    return event.signal == "notice" or (
        event.signal == "dead" and event.source not in (FIELD_SOURCE, OPERATOR_SOURCE))


def lagging_incident(store: Store, conn: Connection, event: OutageEvent, resolved: Resolved,
                     now: datetime, window: timedelta) -> Incident | None:
    """The incident restored a little while ago (within ``window``) that a late report
    (:func:`late_report`: an outage system's record, the meters' report) is about: its areas,
    and an outage that began before the incident ended. Folded into it, decided by time as
    inside an open incident: a report of an outage that began before a restoration step does
    not undo it (on its own it opened a new incident and told the villages the power was off
    again while every meter said it was on); one that nothing says came back after it began
    (the meters: dark since 08:02, still; the incident ended at 08:30 on its records' end)
    takes the incident on again, and its villages told 恢复送电 hear the correction (on its
    own it was a new outage, told as news, timed before the power back they had read)."""
    areas = set(resolved.transformers)
    if not late_report(event) or not areas:
        return None
    for row in store.load_incidents(conn=conn, open_only=False, feeder=resolved.feeder,
                                    status="restored", ended_after=now - window):
        prev = Incident.from_json(row["state"])
        if (prev.stage != "closed" and prev.end is not None and event.start < prev.end
                and areas <= set(prev.estimate.transformers)):
            return prev
    return None


def closed_over(store: Store, conn: Connection, event: OutageEvent, resolved: Resolved
                ) -> Incident | None:
    """The closed-out incident that counted ``event``'s areas back after the moment ``event``
    says they went off: the village was told its power came back inside the span the
    report's stamp claims. A close-out's record is final (:func:`lagging_incident` leaves it
    alone), so the report is news of now, not of then (:func:`stamped_after_closeout`)."""
    areas = set(resolved.transformers)
    if event.signal == "call" or event.status == "cancelled" or not areas:
        return None
    for row in store.load_incidents(conn=conn, open_only=False, feeder=resolved.feeder,
                                    status="restored", ended_after=event.start):
        prev = Incident.from_json(row["state"])
        if (prev.stage == "closed" and prev.end is not None and event.start < prev.end
                and areas & set(prev.estimate.transformers)):
            return prev
    return None


def stamped_after_closeout(store: Store, conn: Connection, event: OutageEvent,
                           resolved: Resolved, current: Incident | None, received: datetime
                           ) -> OutageEvent:
    """``event`` as the outage it reports is told: a late report of areas off (the meters:
    dark since 02:02, no power back yet) stamped before the end of a closed-out incident that
    counted them back is timed when it arrived (``received``), its stamp kept in ``raw``
    (``stamped_start``). Timed by its stamp, the new outage was told to a village as begun an
    hour ago, inside the span it had been told its power was back. A later revision of the
    record keeps the time its first one was given."""
    key = f"{event.source}|{event.event_id}"
    known = current.members.get(key) if current is not None else None
    if known is None and (current is not None or not late_report(event)):
        return event
    if known is not None and known.start <= event.start:
        return event
    closed = closed_over(store, conn, event, resolved)
    if closed is None:
        return event
    at = known.start if known is not None else max(received, event.start)
    return replace(event, start=at, raw={**event.raw, "stamped_start": event.start.isoformat(),
                                         "closed_incident": closed.id})


def finished_within_ended(store: Store, conn: Connection, event: OutageEvent,
                          resolved: Resolved, window: timedelta) -> Incident | None:
    """The ended incident (restored, closed out or not) a late report of an outage already
    over (off 02:01, on 02:29) fell inside: its areas, begun after the incident began (less
    ``window``) and before it ended. Recorded in that incident's log, never folded in (a
    close-out's record is final, and the outage it reports is over) and never told to a
    village; dropped, no incident had it at all."""
    areas = set(resolved.transformers)
    if (event.status != "restored" or event.end is None or not event.start < event.end
            or event.signal == "call" or not areas):
        return None
    for row in store.load_incidents(conn=conn, open_only=False, feeder=resolved.feeder,
                                    status="restored", ended_after=event.start):
        prev = Incident.from_json(row["state"])
        if (prev.end is not None and prev.start - window <= event.start < prev.end
                and areas <= set(prev.estimate.transformers)):
            return prev
    return None


def confirming_incident(store: Store, conn: Connection, event: OutageEvent,
                        resolved: Resolved, now: datetime, window: timedelta
                        ) -> Incident | None:
    """The incident restored a little while ago (within ``window``) that counted an area
    back with no evidence (:attr:`Incident.unconfirmed`) which ``event``, a restoration
    signal (a meter's power-restore), now says is back: folded into it, it confirms the
    area; on its own it was evidence of nothing."""
    areas = set(resolved.transformers)
    if event.status == "active" or event.signal not in ("alive", "dead") or not areas:
        return None
    for row in store.load_incidents(conn=conn, open_only=False, feeder=resolved.feeder,
                                    status="restored", ended_after=now - window):
        prev = Incident.from_json(row["state"])
        if prev.stage != "closed" and areas & set(prev.unconfirmed):
            return prev
    return None


class LateReports:
    """The log steps of late reports, in the processor's transaction: an outage already over
    inside an ended incident (``late_report``), and the stamp a new incident was not timed
    by (``late_stamp``)."""

    def __init__(self, store: Store, topology: Topology, window: timedelta) -> None:
        self.store, self.topology, self.window = store, topology, window

    def finished_in(self, conn: Connection, event: OutageEvent, resolved: Resolved,
                    log: Any, now: datetime) -> bool:
        """Record a late report of an outage over, inside an ended incident
        (:func:`finished_within_ended`), in that incident's log; True if it was."""
        closed = finished_within_ended(self.store, conn, event, resolved, self.window)
        if closed is None:
            return False
        self.store.log_in(conn, closed.id, now, "late_report", f"source:{event.source}", "", {
            "event_id": event.event_id, "transformers": list(resolved.transformers),
            "start": event.start.isoformat(),
            "end": event.end.isoformat() if event.end is not None else None,
            "customers": self.topology.customers_of(resolved.transformers)})
        log.info("late_report_after_closeout", incident_id=closed.id,
                 transformers=list(resolved.transformers))
        return True

    def note_stamp_in(self, conn: Connection, current: Incident | None, after: Incident,
                      event: OutageEvent, now: datetime) -> None:
        """Log, on the incident a late report opened, the stamp it was not timed by
        (:func:`stamped_after_closeout`) and the closed-out incident it fell inside."""
        stamp = event.raw.get("stamped_start")
        if current is not None or not stamp:
            return
        self.store.log_in(conn, after.id, now, "late_stamp", f"source:{event.source}", "", {
            "event_id": event.event_id, "stamped_start": stamp,
            "closed_incident": event.raw.get("closed_incident")})
