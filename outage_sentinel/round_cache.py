"""What one processing transaction has read and written (the processor's round cache)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from outage_sentinel.incidents import Incident, Notice
from outage_sentinel.store import Store, StoredEvent


@dataclass(frozen=True)
class Owed:
    """A village's outage or update notices of one incident that the round's revisions
    decided and that are not queued yet: a storm's reports for the areas of one village,
    folded one by one, each made a revision with news for it, and the village heard 停电
    and then an update per area within a second. Queued once, as one notice
    (:class:`outage_sentinel.revision_writer.OwedNotices`): of the first one's purpose,
    saying what the round's last revision of the incident says (:attr:`final`), against what
    the village was told before the round. Not the last revision with news for the village:
    a later one with none of its own (an area back) would be missing from it — 薛店村 read
    "已确认停电：2#、6#、7#" while the round ended with 6# and 7# off."""

    village: str
    #: The first one's purpose: "outage" when the round first tells the village.
    purpose: str
    #: The incident as the village was told before the first one (``None``: a new one).
    previous: Incident | None
    #: The last revision with news for the village (the log names it beside the one said).
    latest: Incident
    #: The revisions that had news for it (the log keeps each revision's own steps).
    revisions: tuple[int, ...]
    #: The incident as the round has it when the notice is queued
    #: (:meth:`RoundCache.take_owed`): what the notice says, and what decides whether an
    #: update is still news (a later revision with no news for the village may have undone
    #: what the last one said: an area back).
    final: Incident | None = None

    @property
    def said(self) -> Incident:
        """The revision the notice is written from: the round's final state of the incident
        (:attr:`final`), else — not taken yet — the last one with news for the village."""
        return self.final or self.latest


class RoundCache:
    """What one processing transaction has read and written, so that a storm's events on the
    same feeder correlate with the state in memory instead of re-reading and re-parsing it.

    Only valid inside its transaction: every incident change is still written at once (the
    database stays the truth for ids, reopen links, dispatch), the cache only saves reads.
    """

    def __init__(self, store: Store, *, gather: bool = False) -> None:
        self.store = store
        #: The villages' outage and update notices owed and not queued yet, by (incident,
        #: village), when the round gathers them (``None``: each revision's are queued at once).
        self.owed: dict[tuple[str, str], Owed] | None = {} if gather else None
        self.processed: dict[int, bool] = {}
        self.members: dict[tuple[str, str], tuple[int, str]] = {}
        self.members_known: set[tuple[str, str]] = set()
        self.forget()

    def forget(self) -> None:
        self.incidents: dict[str, Incident | None] = {}
        self.created: dict[str, Any] = {}
        self.feeders: dict[str, list[str]] = {}
        self.planned: list[Incident] | None = None
        #: Every open incident of the region (ids, in load order), once asked for.
        self.open_ids: list[str] | None = None
        self.faults: dict[str, int] | None = None
        self.storm: bool | None = None

    def preload(self, conn: Connection, batch: list[StoredEvent]) -> None:
        self.processed.update(self.store.processed_flags_in(conn, [s.row_id for s in batch]))
        keys = [(s.event.source, s.event.event_id) for s in batch]
        self.members.update(self.store.member_incidents_in(conn, keys))
        self.members_known.update(keys)

    def is_processed(self, conn: Connection, row_id: int) -> bool:
        if row_id in self.processed:
            return self.processed[row_id]
        return self.store.processed_flags_in(conn, [row_id]).get(row_id, False)

    def member_incident(self, conn: Connection, source: str, event_id: str) -> str | None:
        key = (source, event_id)
        if key in self.members_known:
            hit = self.members.get(key)
            return hit[1] if hit else None
        return self.store.member_incident_in(conn, source, event_id)

    def owe(self, after: Incident, notices: Sequence[Notice], previous: Incident | None
            ) -> None:
        """``after``'s outage and update ``notices`` are owed to their villages (``previous``:
        the incident as they were told before it); one already owed to a village in the
        round now says what ``after`` says, of the purpose it had."""
        if self.owed is None:
            raise RuntimeError("this round queues each revision's notices at once")
        for notice in notices:
            for village in notice.villages:
                had = self.owed.get((after.id, village))
                self.owed[(after.id, village)] = Owed(
                    village, notice.purpose, previous, after, (after.revision,)
                ) if had is None else replace(had, latest=after,
                                              revisions=(*had.revisions, after.revision))

    def forgo_outage(self, incident_id: str, villages: Sequence[str]) -> tuple[str, ...]:
        """Of ``villages``, those owed the outage notice of ``incident_id`` (the round
        first tells them of it): no longer owed, for the outage ended before it went out
        (a terminal's off and on uploaded together). A village owed an update was told of
        the outage before the round: it keeps its notice. Returns the villages forgone."""
        if not self.owed:
            return ()
        gone = tuple(dict.fromkeys(v for v in villages if (o := self.owed.get(
            (incident_id, v))) is not None and o.purpose == "outage"))
        for v in gone:
            del self.owed[(incident_id, v)]
        return gone

    def take_owed(self) -> list[Owed]:
        """The notices owed, in the order first owed, each with its incident as the round
        has it now (:attr:`Owed.final`: the state the round ended in, or the one before the
        revision that settles them); none owed any more."""
        if not self.owed:
            return []
        owed, self.owed = list(self.owed.values()), {}
        return [replace(o, final=self.incidents.get(o.latest.id) or o.latest) for o in owed]

    def done(self, stored: StoredEvent, incident_id: str | None) -> None:
        """The event was folded (in this round's transaction) into this incident."""
        self.processed[stored.row_id] = True
        key = (stored.event.source, stored.event.event_id)
        if incident_id is not None and key in self.members_known:
            prev = self.members.get(key)
            if prev is None or stored.row_id > prev[0]:
                self.members[key] = (stored.row_id, incident_id)

    def _remember(self, row: Mapping[str, Any]) -> Incident:
        iid = str(row["id"])
        inc = self.incidents.get(iid)
        if inc is None:
            inc = Incident.from_json(row["state"])
            self.incidents[iid] = inc
            self.created[iid] = row["created_at"]
        return inc

    def of_row(self, row: Mapping[str, Any]) -> Incident:
        """The incident of a row read in the round: as the round last saved it, else as the
        row has it (then kept)."""
        return self._remember(row)

    def get(self, conn: Connection, incident_id: str) -> Incident | None:
        if incident_id in self.incidents:
            return self.incidents[incident_id]
        row = self.store.get_incident(incident_id, conn)
        if row is None:
            return None
        return self._remember(row)

    def open_on(self, conn: Connection, feeder: str) -> list[Incident]:
        ids = self.feeders.get(feeder)
        if ids is None:
            rows = self.store.load_incidents(conn=conn, open_only=True, feeder=feeder)
            out = [self._remember(r) for r in rows]
            self.feeders[feeder] = [i.id for i in out]
            return out
        return [inc for i in ids if (inc := self.incidents.get(i)) is not None]

    def open_all(self, conn: Connection) -> list[Incident]:
        """Every open incident, whatever feeder it is filed under (a record's own line may
        not be the feeder of the areas it names; an unplaced one is under "?")."""
        if self.open_ids is None:
            rows = self.store.load_incidents(conn=conn, open_only=True)
            self.open_ids = [self._remember(r).id for r in rows]
        return [inc for i in self.open_ids if (inc := self.incidents.get(i)) is not None]

    def open_planned(self, conn: Connection) -> list[Incident]:
        if self.planned is None:
            self.planned = [Incident.from_json(r["state"]) for r in self.store.load_incidents(
                conn=conn, open_only=True, kinds=("planned", "temporary"))]
        return self.planned

    def open_faults(self, conn: Connection) -> dict[str, int]:
        """Devices the open fault incidents name as operated, per feeder, kept current in the
        round."""
        if self.faults is None:
            self.faults = self.store.open_fault_devices_by_feeder_in(conn)
        return self.faults

    def saved(self, before: Incident | None, after: Incident, now: datetime) -> None:
        """``after`` was just written (as :func:`incident_columns` does)."""
        if self.faults is not None:
            for inc, step in ((before, -1), (after, 1)):
                if (inc is not None and inc.kind == "fault" and inc.status == "active"
                        and inc.fault_device is not None):
                    self.faults[inc.feeder] = max(
                        0, self.faults.get(inc.feeder, 0) + step * len(inc.estimate.devices))
        iid = after.id
        self.created.setdefault(iid, after.created_at or now)
        self.incidents[iid] = after
        for listed in self.feeders.values():
            if iid in listed:
                listed.remove(iid)
        ids = self.feeders.get(after.feeder) if after.feeder is not None else None
        if ids is not None and after.status == "active":
            ids.append(iid)
            ids.sort(key=lambda i: (self.created[i], i))  # as load_incidents orders them
        if self.open_ids is not None:
            if iid in self.open_ids:
                self.open_ids.remove(iid)
            if after.status == "active":
                self.open_ids.append(iid)
        planned = ("planned", "temporary")
        if after.kind in planned or (before is not None and before.kind in planned):
            self.planned = None
