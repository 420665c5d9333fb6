"""What the AMI screen holds dark, as the incident processor folds with it.

An outage the screen holds and has not released (an uploaded log waiting
``backlog_hold_seconds``, the momentary rule), with no power-on since, is dark evidence: a
record's end does not bring its areas back (:func:`outage_sentinel.incidents.held_off`).
:class:`HeldAreas` asks the screen once per batch (:meth:`HeldAreas.start_batch`, adding the
screen's releases the batch is still to fold: :func:`pending_dark`), and once the screen lets an
area go without an output of its own (a blip dropped, state forgotten) derives again the open
incidents it kept on (:meth:`HeldAreas.recheck`): their records' end stands then, and their
villages hear 恢复送电. A process that runs no screen (the board, the CLI: a liaison's 已来电,
a command step) folds with the held areas the screen's node keeps in the store
(:class:`outage_sentinel.screening.KeptHeld`); the daemon's recheck lets them go."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Estimator, Incident, Resolved, reestimated
from outage_sentinel.revision_writer import Fold, RevisionWriter
from outage_sentinel.round_cache import RoundCache
from outage_sentinel.screening import KeptHeld
from outage_sentinel.store import Store, StoredEvent
from outage_sentinel.topology import Topology

#: The source named for a revision made when the AMI screen let go of areas it held dark
#: (:meth:`HeldAreas.recheck`): the screen's own name.
HELD_SOURCE = "ami"


class HeldDark(Protocol):
    """What the AMI screen holds dark as the processor asks it
    (:meth:`outage_sentinel.screening.AmiScreener.held_dark`): areas whose power-off it has
    not released yet, and no power-on since. A record's end does not bring them back
    (:func:`outage_sentinel.incidents.held_off`)."""

    def held_dark(self, areas: Collection[str] | None = None) -> set[str]:
        """The areas of ``areas`` (``None``: all) the screen holds off."""


class HeldOwner(Protocol):
    """What :class:`HeldAreas` uses of the incident processor."""

    store: Store
    topology: Topology
    writer: RevisionWriter
    log: Any

    def estimator_for(self, conn: Connection, feeder: str | None, now: datetime
                      ) -> Estimator:
        """The estimator a fold of ``feeder`` uses now."""


def pending_dark(events: list[StoredEvent]) -> frozenset[str]:
    """The areas the AMI screen released as off that a batch is still to fold: an open
    ``dead`` of the screen's (:data:`HELD_SOURCE`) with no end of it in the batch. Held by
    the screen a moment ago, folded after the record of the batch that names them: the
    record's end must not count them back in between (a village told 恢复送电, then 仍停电)."""
    ended = {s.event.event_id for s in events
             if s.event.source == HELD_SOURCE and s.event.status != "active"}
    return frozenset(t for s in events
                     if s.event.source == HELD_SOURCE and s.event.signal == "dead"
                     and s.event.status == "active" and s.event.event_id not in ended
                     for t in s.event.transformers)


class HeldAreas:
    """The screen's held areas for the processor ``owner`` (``held`` ``None``: no screen
    here; the areas its node keeps in the store are held, :attr:`kept`, and never let go
    here); ``planned(conn, now)``: the areas planned work explains now."""

    def __init__(self, owner: HeldOwner, held: HeldDark | None,
                 planned: Callable[[Connection, datetime], frozenset[str]]) -> None:
        self.owner = owner
        self.held = held
        #: What the screen holds as its node wrote it, for a process without the screen.
        self.kept: HeldDark = KeptHeld(owner.store)
        self.planned = planned
        #: The held areas as this process last saw them (None: not asked yet): when one is
        #: let go, the incidents holding it are derived again.
        self.seen: set[str] | None = None
        #: The held areas for the batch being folded (asked once per batch).
        self.batch: frozenset[str] | None = None

    def start_batch(self, rest: list[StoredEvent]) -> None:
        """Ask the screen once for the batch whose events to fold are ``rest``."""
        self.batch = self.now() | pending_dark(rest)

    def now(self, after_fold: bool = False) -> frozenset[str]:
        """The areas the screen holds dark now (without a screen here, as its node kept them
        in the store). ``after_fold``: asked for a fold, whose incident :meth:`recheck` must
        look at again once the screen lets them go. Within a batch, the batch's (the screen
        changes only between)."""
        if after_fold and self.batch is not None:
            held = self.batch
        else:
            held = frozenset((self.held if self.held is not None else self.kept).held_dark())
        if after_fold and held and self.seen is not None:
            self.seen |= held
        return held

    def recheck_logged(self, now: datetime) -> None:
        """:meth:`recheck`, a failure logged and the look done again next time (the events
        folded stay folded)."""
        try:
            self.recheck(now)
        except Exception:
            self.seen = None
            self.owner.log.exception("held_recheck_failed")

    def recheck(self, now: datetime) -> int:
        """Derive again the open incidents that kept areas off because the screen held their
        power-off (:attr:`Incident.held`) once it lets one go: looked for at the first call
        and when an area the screen held is held no longer. Returns how many were revised."""
        if self.held is None:
            return 0
        held = self.now()
        gone = self.seen is None or bool(self.seen - held)
        self.seen = set(held)
        if not gone:
            return 0
        revised = 0
        store = self.owner.store
        with store.transaction() as conn:
            for row in store.load_incidents(open_only=True, conn=conn):
                inc = Incident.from_json(row["state"])
                if inc.status == "active" and set(inc.held) - held:
                    revised += self._released(conn, inc, held, now)
        return revised

    def _released(self, conn: Connection, inc: Incident, held: frozenset[str],
                  now: datetime) -> int:
        """``inc`` derived again with the screen's ``held`` areas now, and written (a
        revision, its notices) if that changed it; 1 if it did."""
        owner, planned = self.owner, self.planned(conn, now)
        after = reestimated(inc, owner.topology, owner.estimator_for(conn, inc.feeder, now),
                            planned, now, held)
        if after.material() == inc.material() and after.held == inc.held:
            return 0
        after = replace(after, revision=inc.revision + int(after.material() != inc.material()))
        areas = tuple(t for t in inc.held if t not in held)
        event = OutageEvent(source=HELD_SOURCE, event_id=f"held:{inc.id}:{now.isoformat()}",
                            kind=inc.kind, status="restored", start=now, end=now,
                            feeder=inc.feeder, transformers=areas, signal="alive")
        resolved = Resolved(feeder=inc.feeder, transformers=areas, device=None, unknown=())
        owner.writer.write(conn, inc, after, Fold(event, resolved, RoundCache(owner.store), now,
                                                  planned, False))
        owner.log.info("held_areas_let_go", incident_id=inc.id, transformers=list(areas),
                       status=after.status)
        return 1
