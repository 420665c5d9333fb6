"""A village's update held for its void expected restoration time, kept true while it waits.

A village's update whose only news is that its expected restoration time is no longer known
(:data:`~outage_sentinel.ordering.VOID_ETR`: the record that gave it ended) is held
``notify.void_etr_hold_seconds`` (:meth:`outage_sentinel.revision_writer.PacedSummaries.hold_in`),
its text rendered when it was queued. An area of the village coming back meanwhile is no news
on its own (:func:`~outage_sentinel.incidents.village_scope_change`): nothing supersedes the
held text, and at the end of the hold 马集村 read "已确认停电：马集村1号…8号台区，本村820户"
although 1–4 had been back for minutes. Sent at once, it was true when sent; held, it must
be too.

So when a revision that tells a village nothing changes what its held update names off (an
area back, an inferred area added or dropped, one now reported; :func:`overtaken`), the update
is queued again, said of the incident as it is now, due when the held one was
(:meth:`HeldVoid.renew_in`): a later off-notice of its chain, it supersedes the held one when
delivered (:func:`~outage_sentinel.ordering.held_superseded`). Every area back, the village
hears 恢复送电, which supersedes both. In a round that gathers the villages' notices
(:class:`~outage_sentinel.revision_writer.OwedNotices`) the villages are noted per revision
and renewed once, when the round's notices are queued, of the round's last state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel.incidents import Incident, Notice, village_etr, villages_off
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.ordering import BACK_PURPOSES, ETR_ONLY, ETR_SAID, VOID_ETR, is_off_notice
from outage_sentinel.outgoing import LATEST_ONLY, OutboxMessage
from outage_sentinel.round_cache import RoundCache
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology

#: The payload marks a renewed update keeps from the held one (what ordering reads of it).
KEPT_MARKS = (ETR_SAID, ETR_ONLY, VOID_ETR)


def said_off(inc: Incident, village: str, topology: Topology) -> frozenset[tuple[str, str]]:
    """The village's areas ``inc`` has off, each with its mark (what an update names: 已确认
    停电 or 可能受影响, and the households)."""
    areas = set(topology.village_transformers(village))
    return frozenset((t, inc.mark(t)) for t in inc.off if t in areas)


def overtaken(current: Incident | None, after: Incident, notices: Sequence[Notice],
              topology: Topology) -> tuple[str, ...]:
    """The villages still off in ``after`` that its ``notices`` do not tell, whose areas off
    (or their marks) changed from ``current``: what an update held for them names is no longer
    so."""
    if current is None or current.status != "active" or after.status != "active":
        return ()
    pos = topology.pos
    was, now = set(current.off), set(after.off)
    moved = [t for t in dict.fromkeys((*current.off, *after.off)) if t in pos
             and ((t in was) != (t in now) or current.mark(t) != after.mark(t))]
    if not moved:
        return ()
    told = {v for n in notices for v in n.villages}
    changed = set(topology.villages_of(moved)) - told
    return tuple(v for v in villages_off(after, topology) if v in changed
                 and said_off(current, v, topology) != said_off(after, v, topology))


def held_void(heard: Sequence[OutboxRow]) -> dict[str, OutboxRow]:
    """Recipient -> its held update of a void time (pending, latest-only), where that is the
    latest notice of its chain that says the village's state (``heard``: the chain's rows,
    oldest first): one a later notice already supersedes needs no renewal."""
    last: dict[str, OutboxRow] = {}
    for r in heard:
        if is_off_notice(r.purpose) or r.purpose in BACK_PURPOSES:
            last[r.recipient] = r
    return {rc: r for rc, r in last.items()
            if r.purpose == "update" and r.status == "pending"
            and (r.payload or {}).get(VOID_ETR) and (r.payload or {}).get(LATEST_ONLY)}


class VoidOwner(Protocol):
    """What :class:`HeldVoid` reads of the processor (the topology and planner change on a
    reload)."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner


class Holder(Protocol):
    """Queues a held update due at ``due`` (:meth:`PacedSummaries.hold_in`)."""

    def hold_in(self, conn: Connection, row: OutboxMessage, now: datetime, due: datetime
                ) -> int: ...


class HeldVoid:
    """Renews the villages' updates held for a void time that a revision overtook
    (:func:`overtaken`). One per writer."""

    def __init__(self, owner: VoidOwner, holder: Holder, log: Any) -> None:
        self.owner, self.holder, self.log = owner, holder, log
        #: The round the noted villages belong to (a round rolled back is forgotten with it).
        self.round: RoundCache | None = None
        #: (incident id, village) noted in :attr:`round`, in order.
        self.noted: dict[tuple[str, str], None] = {}

    def note(self, current: Incident | None, after: Incident, notices: Sequence[Notice],
             rnd: RoundCache) -> tuple[str, ...]:
        """Note the villages ``after`` overtook in ``rnd``; returns them."""
        villages = overtaken(current, after, notices, self.owner.topology)
        if rnd is not self.round:
            self.round, self.noted = rnd, {}
        self.noted.update(dict.fromkeys((after.id, v) for v in villages))
        return villages

    def renew_in(self, conn: Connection, rnd: RoundCache, get: Callable[[str], Incident | None],
                 now: datetime, told: Collection[tuple[str, str]] = ()) -> int:
        """Renew the held updates of the villages noted in ``rnd``, each said of its incident
        as ``get`` has it now; but not for those ``told`` (incident id, village) have a
        notice of their own just queued. Returns the rows queued."""
        if rnd is not self.round:
            return 0
        noted, self.noted = list(self.noted), {}
        added = 0
        for incident_id, village in noted:
            inc = get(incident_id)
            if (incident_id, village) in told or inc is None or inc.status != "active":
                continue
            added += self._renew_village_in(conn, inc, village, now)
        return added

    def _renew_village_in(self, conn: Connection, inc: Incident, village: str,
                          now: datetime) -> int:
        """Queue ``village``'s held update of ``inc`` again, said of ``inc`` now, for each
        recipient whose chain ends in one; due when that one was."""
        topo, planner = self.owner.topology, self.owner.planner
        if village not in villages_off(inc, topo) or village_etr(inc, village, topo) is not None:
            return 0  # all back (恢复送电 supersedes it), or a time again (news: an update)
        recipients = planner.village_recipients(village)
        held = held_void(self.owner.store.heard_in(conn, inc.id, recipients)) \
            if recipients else {}
        if not held:
            return 0
        added = 0
        for row in planner.rows(inc, [Notice("update", (village,))], now, previous=inc):
            old = held.get(row.recipient)
            if old is None:
                continue
            marks = {k: old.payload[k] for k in KEPT_MARKS if k in (old.payload or {})}
            row = row.but(payload={**row.payload, **marks})
            added += self.holder.hold_in(conn, row, now, max(now, old.next_attempt_at))
        self.log.info("void_etr_renewed", incident_id=inc.id, revision=inc.revision,
                      village=village, replaces=sorted(r.id for r in held.values()),
                      queued=added)
        return added
