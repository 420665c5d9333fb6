"""Trouble calls received before the incident they are about.

A call comes in, joins no incident (nothing else is known yet), and a minute later an outage
system's record opens an incident on its line: had the call come after, correlation would
have put it in. :class:`EarlierCalls` finds those calls for a new fault incident; a call
about an outage already over (:func:`called_after_return`) is not taken in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Incident, Resolved, incident_class, resolve_event
from outage_sentinel.store import Store, StoredEvent
from outage_sentinel.topology import Topology


def called_after_return(call: OutageEvent, placed: Resolved, outage: Resolved,
                        back: Sequence[tuple[frozenset[str], datetime]]) -> bool:
    """Whether ``call`` is about an outage already over: placed after an incident counted its
    areas back (``back``: areas, when), and about none of the areas of the new ``outage``
    (「早上停电了」: had the area gone dark again, it would be the new outage's caller). Never
    when the new outage names no area (a device alone tripped: its calls are what places it)."""
    areas = set(placed.transformers)
    if not areas or not outage.transformers or areas & set(outage.transformers):
        return False
    return any(areas <= restored and at <= call.start for restored, at in back)


class EarlierCalls:
    """The calls a new fault incident takes in from before it, read in the processor's
    transaction: those within ``window`` (``correlation.window_minutes``) of its start, not
    about an outage restored within ``reopen`` before it."""

    def __init__(self, store: Store, topology: Topology, window: timedelta,
                 reopen: timedelta) -> None:
        self.store, self.topology, self.window, self.reopen = store, topology, window, reopen

    def calls_in(self, conn: Connection, event: OutageEvent, resolved: Resolved,
                 now: datetime) -> tuple[tuple[StoredEvent, Resolved], ...]:
        """The trouble calls an incident ``event`` opens takes in: calls processed before it
        that joined no incident, placed on its line, within the correlation window of its
        start: those that, had they come after, :func:`correlate` would have put in it. Not
        for planned work (a call is never its evidence), nor a line nobody could place, nor a
        call about an outage already over (:func:`called_after_return`)."""
        if incident_class(event.kind) != "unplanned" or resolved.feeder is None:
            return ()
        back = self.areas_back_on(conn, resolved.feeder,
                                  event.start - self.window - self.reopen)
        out: list[tuple[StoredEvent, Resolved]] = []
        for stored in self.store.unattached_calls_in(conn, event.start - self.window,
                                                     now + self.window):
            placed = resolve_event(self.topology, stored.event)
            if placed.feeder == resolved.feeder and incident_class(stored.event.kind) \
                    == "unplanned" and not called_after_return(stored.event, placed, resolved,
                                                               back):
                out.append((stored, placed))
        return tuple(out)

    def areas_back_on(self, conn: Connection, feeder: str, since: datetime
                       ) -> list[tuple[frozenset[str], datetime]]:
        """The areas of ``feeder``'s incidents restored since ``since`` (a call is about its
        outage that long after it, ``lifecycle.reopen_window_minutes``, at most), each with
        when they came back."""
        out = []
        for row in self.store.load_incidents(conn=conn, open_only=False, feeder=feeder,
                                             status="restored", ended_after=since):
            prev = Incident.from_json(row["state"])
            if prev.end is not None:
                out.append((frozenset(prev.estimate.transformers), prev.end))
        return out
