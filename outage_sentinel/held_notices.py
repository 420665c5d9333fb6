""""Power back" notices held back, and sent once they are true.

An incident that ends, or whose areas of a village come back while it goes on (a partial
restoration), does not tell the village its supply is normal while an area of the village is
still off in another open incident (:func:`incidents.hold_back`). Usually that other incident
tells the village when its own areas come back; but it may stop holding the village without a
word of "restored" (its estimate moves to another device, the command centre takes the area
out), and then the village would never hear that its power is back. So each village held is
kept (``held:<incident>`` in the store's key-value table), and the clock's check sends the
held notice once the village is dark nowhere — whether the holding incident is over or still
on — unless the last thing its people heard was already that their supply is normal. A village
held by an incident still on that goes off again in that incident is let go: that incident's
own notices speak for it (it hears of the outage again, and of its end).

Planned or temporary work called off before it began in a village is no "power back": its
【停电取消】 speaks of a day ahead (届时正常供电), not of the supply now, so it is not held
from a village dark in a fault (:func:`work_ahead`), nor found moot when it waited in the
outbox; and one held all the same (work called off after it began) is never dropped because
another incident's 恢复送电 came last: that said nothing of this work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from outage_sentinel.incidents import (
    BACK_NOTICES,
    Incident,
    Notice,
    back_notices,
    dark_villages,
    incident_class,
    village_start,
    villages_off,
)
from outage_sentinel.lifecycle import Lifecycle
from outage_sentinel.logs import get_logger
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology

#: Key prefix of the villages an incident holds back, ``held:<incident id>``.
HELD_PREFIX = "held:"


def work_ahead(notices: Iterable[Notice], inc: Incident, now: datetime,
               topology: Topology) -> set[str]:
    """Villages of ``inc``'s "cancelled" notices that are told of planned or temporary work
    called off before it began there (its start for the village, :func:`village_start`,
    still after ``now``): the notice speaks of that day, not of the supply now, so a village
    dark in another incident hears it at once — held, it waited for that other outage's
    restoration and was then taken as said by its 恢复送电, and the village kept expecting
    work that will not come."""
    if incident_class(inc.kind) == "unplanned":
        return set()
    return {v for n in notices if n.purpose == "cancelled" for v in n.villages
            if village_start(inc, v, topology) > now}


def keep_held_in(store: Store, conn: Connection, incident_id: str, villages: Iterable[str],
                 now: datetime) -> None:
    """Remember that ``incident_id``'s back notice was held from ``villages``; the incident's
    log says which (step ``held_back``: the command centre sees who has not heard)."""
    key = HELD_PREFIX + incident_id
    before = store.kv_get_in(conn, key) or {}
    held = sorted(set(before.get("villages") or ()) | set(villages))
    store.kv_set_in(conn, key, {"villages": held}, now)
    new = [v for v in held if v not in (before.get("villages") or ())]
    if new:
        store.log_in(conn, incident_id, now, "held_back", "daemon", "", {"villages": new})
    get_logger(component="held_notices").info(
        "restored_held_back", incident_id=incident_id, villages=held,
        reason="still off in another open incident")


class DarkAgain:
    """The deliverer's last look at a "power back" notice that waited in the outbox (quiet
    hours, retries, a channel down): one to a village dark again by then, in any open incident
    — its own included (a partial restoration's notice, the village off again in the same
    incident) — is moot: the last thing its people read would be false (the incident that
    darkens it tells them when their power is back)."""

    def __init__(self, store: Store, topology: Callable[[], Topology],
                 waited: timedelta = timedelta(minutes=1)) -> None:
        self.store = store
        self.topology = topology
        #: A notice queued this recently was checked when it was planned (incidents.hold_back).
        self.waited = waited

    def moot(self, rows: Sequence[OutboxRow], now: datetime) -> dict[int, str]:
        """Outbox id -> why, for the back notices of ``rows`` that are no longer true."""
        back = [r for r in rows if r.audience == "liaison" and r.purpose in BACK_NOTICES
                and now - r.created_at >= self.waited and (r.payload or {}).get("village")]
        if not back:
            return {}
        topology = self.topology()
        open_incidents = [Incident.from_json(r["state"])
                          for r in self.store.load_incidents(open_only=True)]
        # The notice's own incident counts too: one over darkens nothing, and one still on
        # has the village off only if it went off again after the notice was planned.
        dark = dark_villages(open_incidents, now, topology)
        found = [r for r in back if _village(r) in dark]
        ahead = self._work_ahead(found, now, topology)
        out: dict[int, str] = {}
        elsewhere: dict[str, set[str]] = {}
        for r in (r for r in found if r.id not in ahead):
            if r.incident_id not in elsewhere:  # rare: read only for the notices found moot
                elsewhere[r.incident_id] = dark_villages(open_incidents, now, topology,
                                                         exclude=r.incident_id)
            where = "another open incident" if _village(r) in elsewhere[r.incident_id] \
                else "off again in this incident"
            out[r.id] = f"village {_village(r)} is dark again ({where})"
        self._hold([r for r in back if r.id in out
                    and _village(r) in elsewhere[r.incident_id]], now)
        return out

    def _work_ahead(self, rows: Sequence[OutboxRow], now: datetime, topology: Topology
                    ) -> set[int]:
        """Ids of the cancellations among ``rows`` of planned or temporary work not begun in
        their village (:func:`work_ahead`): true whatever is dark now, never moot. Their
        incidents are read only for such rows (rare: a cancellation to a dark village)."""
        out: set[int] = set()
        for r in (r for r in rows if r.purpose == "cancelled"):
            row = self.store.get_incident(r.incident_id)
            if row is not None and work_ahead([Notice("cancelled", (_village(r),))],
                                              Incident.from_json(row["state"]), now, topology):
                out.add(r.id)
        return out

    def _hold(self, moot: Sequence[OutboxRow], now: datetime) -> None:
        """Each village a moot notice was for, dark in another incident, is held by the
        notice's incident, as one held back when planned: the incident that darkens it may
        never tell it its power is back (it inferred the area and dropped it, it never
        announced it), and then the clock's check tells it once it is dark nowhere (unless it
        heard so meanwhile). One off again in the notice's own incident alone is not held:
        that incident tells it of the outage again, and of its end."""
        held: dict[str, set[str]] = {}
        for r in moot:
            held.setdefault(r.incident_id, set()).add(_village(r))
        if not held:
            return
        with self.store.transaction() as conn:
            for incident_id, villages in sorted(held.items()):
                # Under the incident's row lock, as the processor and the release write it:
                # the held list is read, added to and written back.
                self.store.lock_incident_in(conn, incident_id)
                keep_held_in(self.store, conn, incident_id, villages, now)


def _village(row: OutboxRow) -> str:
    """The village a liaison notice is for (its payload's)."""
    return str((row.payload or {}).get("village"))


class HeldNotices:
    """Releases the villages held back when their power is back (the clock's check)."""

    def __init__(self, lifecycle: Lifecycle, lock: threading.Lock | None = None) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        #: the processing lock of this process (the processor's)
        self.lock = lock or threading.Lock()
        self.log = get_logger(component="held_notices")

    def release(self, now: datetime) -> int:
        """Send the held notices that are true now; returns how many villages were told.
        Runs under the processing lock: what is dark is read and the notices queued with no
        round of processing in between. What is dark is read once for every held incident
        (releasing a notice darkens nothing): read per held incident, a storm's hundred held
        incidents each parsed every open incident again, under the lock."""
        held = self.store.kv_prefixed(HELD_PREFIX)
        if not held:
            return 0
        told = 0
        with self.lock:
            open_incidents = [Incident.from_json(r["state"])
                              for r in self.store.load_incidents(open_only=True)]
            dark = dark_villages(open_incidents, now, self.lifecycle.topology)
            for incident_id in sorted(held):
                told += self._release_one(incident_id, dark, now)
        return told

    def _release_one(self, incident_id: str, dark: set[str], now: datetime) -> int:
        """Tell the villages ``incident_id`` holds that are dark nowhere (``dark``: every open
        incident's, the holder's own included) their power is back; let go, untold, those off
        again in the holder itself (its own notices speak for them now); keep the rest."""
        key = HELD_PREFIX + incident_id
        with self.store.transaction() as conn:
            row = self.store.lock_incident_in(conn, incident_id)
            # Read again under the lock: a village held since the list was read (by the
            # processor, or by the deliverer finding a notice moot) is not written away.
            value = self.store.kv_get_in(conn, key) or {}
            if row is None:  # gone: nobody to speak for
                self.store.kv_delete_in(conn, key)
                return 0
            inc = Incident.from_json(row["state"])
            villages = [str(v) for v in value.get("villages") or ()]
            # Held while the incident is still on (a partial restoration; or on again): kept
            # until the village is dark nowhere, unless it is off again in the incident.
            again = set(villages_off(inc, self.lifecycle.topology)).intersection(villages) \
                if inc.status not in BACK_NOTICES else set()
            free = [v for v in villages if v not in dark and v not in again]
            if not free and not again:
                return 0
            tell = self._to_tell(conn, inc, free, now)
            if free:
                # Held no longer, told now or needing no word: the timeline says so either way.
                self.store.log_in(conn, inc.id, now, "held_released", "daemon", "",
                                  {"villages": list(tell),
                                   "already_told": [v for v in free if v not in tell]})
            rest = [v for v in villages if v not in free and v not in again]
            if rest:
                self.store.kv_set_in(conn, key, {"villages": rest}, now)
            else:
                self.store.kv_delete_in(conn, key)
            self.log.info("held_notice_released", incident_id=inc.id, told=list(tell),
                          already_told=[v for v in free if v not in tell], still_held=rest,
                          off_again=sorted(again))
            return len(tell)

    def _to_tell(self, conn: Connection, inc: Incident, free: Sequence[str], now: datetime
                 ) -> tuple[str, ...]:
        """Of the held villages ``free`` (dark nowhere), those told now (queued, and counted
        as told back): only a village this incident told (or will tell) of the outage hears
        it is over; one already told its supply is normal (by the incident that held it dark)
        needs no second word — but not of planned or temporary work called off: no other
        outage's 恢复送电 says that this work will not come."""
        if not free:
            return ()
        heard = {r.split(":")[1] for r in self.store.queued_in(conn, inc.id,
                                                                ("outage", "update"))
                 if r.startswith("village:")}
        # Work called off is news of this work alone: another outage's 恢复送电 said nothing
        # of it, so it never counts as already told.
        work_off = self._work_called_off(inc, free)
        tell = tuple(v for v in free if v in heard and (
            v in work_off
            or self.store.last_village_purpose_in(conn, v, now) not in BACK_NOTICES))
        if tell:
            self._tell(conn, inc, tell, now)
        return tell

    def _work_called_off(self, inc: Incident, villages: Sequence[str]) -> set[str]:
        """Of ``villages``, those ``inc`` owes a cancellation of planned or temporary work."""
        if incident_class(inc.kind) == "unplanned":
            return set()
        return {v for n in self._back_notices(inc, tuple(villages)) if n.purpose == "cancelled"
                for v in n.villages}

    def _back_notices(self, inc: Incident, villages: tuple[str, ...]) -> list[Notice]:
        """The "power back" notices ``inc`` owes ``villages``, over or still on, as the
        processor plans them (:func:`incidents.back_notices`): "restored", or "cancelled"
        where the outage was called off for the village (every record of it withdrawn, no
        power seen back) or the whole incident was."""
        return back_notices(inc, villages, self.lifecycle.topology)

    def _tell(self, conn: Connection, inc: Incident, villages: tuple[str, ...],
              now: datetime) -> None:
        """Queue ``inc``'s back notice to ``villages`` and record them as told."""
        notices = self._back_notices(inc, villages)
        purposes = tuple(n.purpose for n in notices)
        rows = self.lifecycle.planner.rows(inc, notices, now)
        if self.store.taken_back_in(conn, inc.id, purposes) & {r.recipient for r in rows}:
            # Its notice at this revision was superseded (dark again when it was due): the
            # one sent now is a revision of its own, or its key, taken, would drop it.
            inc = replace(inc, revision=inc.revision + 1)
            rows = self.lifecycle.planner.rows(inc, notices, now)
        self.store.enqueue_in(conn, rows, now)
        told_back = tuple(dict.fromkeys([*inc.restored_villages, *villages]))
        self.lifecycle.save_in(conn, replace(inc, restored_villages=told_back), now)
