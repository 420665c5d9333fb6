""""Power back" notices held back, and sent once they are true.

An incident that ends does not tell a village its supply is normal while an area of the
village is still off in another open incident (:func:`incidents.hold_back`). Usually that other
incident tells the village when its own areas come back; but it may stop holding the village
without a word of "restored" (its estimate moves to another device, the command centre takes
the area out), and then the village would never hear that its power is back. So each village
held is kept (``held:<incident>`` in the store's key-value table), and the clock's check sends
the held notice once the village is dark nowhere, unless the last thing its people heard was
already that their supply is normal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from outage_sentinel.incidents import BACK_NOTICES, Incident, Notice, dark_villages
from outage_sentinel.lifecycle import Lifecycle
from outage_sentinel.logs import get_logger
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology

#: Key prefix of the villages an incident holds back, ``held:<incident id>``.
HELD_PREFIX = "held:"


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
    hours, retries, a channel down): one to a village dark again by then, in any open incident,
    is moot — the last thing its people read would be false (the incident that darkens it tells
    them when their power is back)."""

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
        dark: dict[str, set[str]] = {}
        out: dict[int, str] = {}
        for r in back:
            if r.incident_id not in dark:
                dark[r.incident_id] = dark_villages(open_incidents, now, topology,
                                                    exclude=r.incident_id)
            village = str(r.payload["village"])
            if village in dark[r.incident_id]:
                out[r.id] = f"village {village} is dark again (another open incident)"
        self._hold(back, out, now)
        return out

    def _hold(self, back: Sequence[OutboxRow], moot: dict[int, str], now: datetime) -> None:
        """Each village a moot notice was for is held by its incident, as one held back when
        planned: the incident that darkens it may never tell it its power is back (it
        inferred the area and dropped it, it never announced it), and then the clock's
        check tells it once it is dark nowhere (unless it heard so meanwhile)."""
        held: dict[str, set[str]] = {}
        for r in back:
            if r.id in moot:
                held.setdefault(r.incident_id, set()).add(str(r.payload["village"]))
        if not held:
            return
        with self.store.transaction() as conn:
            for incident_id, villages in sorted(held.items()):
                # Under the incident's row lock, as the processor and the release write it:
                # the held list is read, added to and written back.
                self.store.lock_incident_in(conn, incident_id)
                keep_held_in(self.store, conn, incident_id, villages, now)


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
        with self.store.transaction() as conn:
            row = self.store.lock_incident_in(conn, incident_id)
            # Read again under the lock: a village held since the list was read (by the
            # processor, or by the deliverer finding a notice moot) is not written away.
            value = self.store.kv_get_in(conn, HELD_PREFIX + incident_id) or {}
            inc = Incident.from_json(row["state"]) if row is not None else None
            if inc is None or inc.status not in BACK_NOTICES:
                # Gone, or off again: its own notices speak for the village now (an open
                # incident is in ``dark``'s count, and never among those held here).
                self.store.kv_delete_in(conn, HELD_PREFIX + incident_id)
                return 0
            villages = [str(v) for v in value.get("villages") or ()]
            free = [v for v in villages if v not in dark]
            if not free:
                return 0
            # Only a village this incident told (or will tell) of the outage hears it is over;
            # one already told its supply is normal (by the incident that held it dark) needs
            # no second word.
            heard = {r.split(":")[1] for r in self.store.queued_in(conn, inc.id,
                                                                    ("outage", "update"))
                     if r.startswith("village:")}
            tell = tuple(v for v in free if v in heard
                         and self.store.last_village_purpose_in(conn, v, now) not in BACK_NOTICES)
            if tell:
                self._tell(conn, inc, tell, now)
            # Held no longer, told now or needing no word: the timeline says so either way.
            self.store.log_in(conn, inc.id, now, "held_released", "daemon", "",
                              {"villages": list(tell),
                               "already_told": [v for v in free if v not in tell]})
            rest = [v for v in villages if v not in free]
            if rest:
                self.store.kv_set_in(conn, HELD_PREFIX + incident_id, {"villages": rest}, now)
            else:
                self.store.kv_delete_in(conn, HELD_PREFIX + incident_id)
            self.log.info("held_notice_released", incident_id=inc.id, told=list(tell),
                          already_told=[v for v in free if v not in tell], still_held=rest)
            return len(tell)

    def _tell(self, conn: Connection, inc: Incident, villages: tuple[str, ...],
              now: datetime) -> None:
        """Queue ``inc``'s back notice to ``villages`` and record them as told."""
        rows = self.lifecycle.planner.rows(inc, [Notice(inc.status, villages)], now)
        if self.store.taken_back_in(conn, inc.id, (inc.status,)) & {r.recipient for r in rows}:
            # Its notice at this revision was superseded (dark again when it was due): the
            # one sent now is a revision of its own, or its key, taken, would drop it.
            inc = replace(inc, revision=inc.revision + 1)
            rows = self.lifecycle.planner.rows(inc, [Notice(inc.status, villages)], now)
        self.store.enqueue_in(conn, rows, now)
        told_back = tuple(dict.fromkeys([*inc.restored_villages, *villages]))
        self.lifecycle.save_in(conn, replace(inc, restored_villages=told_back), now)
