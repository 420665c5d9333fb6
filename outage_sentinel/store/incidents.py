"""Incidents and their lifecycle log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from outage_sentinel.closeouts import FOUND_STAGES, found_devices
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import (
    events_t,
    field_answers_t,
    incident_log_t,
    incidents_t,
    outbox_t,
)


class IncidentStore(StoreBase):
    """The ``incidents`` and ``incident_log`` tables."""

    def load_incidents(self, *, open_only: bool = True, conn: Connection | None = None,
                       feeder: str | None = None, kinds: Sequence[str] | None = None,
                       status: str | None = None, ended_after: datetime | None = None
                       ) -> list[dict[str, Any]]:
        """Incident rows (``state`` is the pure core's JSON), optionally narrowed."""
        q = select(incidents_t).where(self.in_region(incidents_t)) \
            .order_by(incidents_t.c.created_at, incidents_t.c.id)
        if open_only:
            q = q.where(incidents_t.c.status == "active")
        if feeder is not None:
            q = q.where(incidents_t.c.feeder == feeder)
        if kinds is not None:
            q = q.where(incidents_t.c.kind.in_(list(kinds)))
        if status is not None:
            q = q.where(incidents_t.c.status == status)
        if ended_after is not None:
            q = q.where(incidents_t.c.end_time >= ended_after)
        if conn is not None:
            return [dict(r._mapping) for r in conn.execute(q)]
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def awaiting_closeout(self, ended_after: datetime, limit: int = 50) -> list[dict[str, Any]]:
        """Incidents over (restored or cancelled) since ``ended_after`` and not closed out yet,
        latest first: id, kind, feeder, status, stage, end time (no state)."""
        t = incidents_t
        q = (select(t.c.id, t.c.kind, t.c.feeder, t.c.status, t.c.stage, t.c.end_time)
             .where(self.in_region(t), t.c.status.in_(("restored", "cancelled")),
                    t.c.stage != "closed", t.c.end_time >= ended_after)
             .order_by(t.c.end_time.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def awaiting_closeout_count(self) -> int:
        """How many incidents are over and not closed out, however long ago they ended."""
        t = incidents_t
        q = (select(func.count()).select_from(t)
             .where(self.in_region(t), t.c.status.in_(("restored", "cancelled")),
                    t.c.stage != "closed"))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def incident_heads(self) -> list[dict[str, Any]]:
        """The active incidents without their state (id, kind, start, stage, priority, crew,
        created/updated times): what tells a reader which states it must load again."""
        cols = [c for c in incidents_t.c if c.name != "state"]
        q = select(*cols).where(self.in_region(incidents_t), incidents_t.c.status == "active") \
            .order_by(incidents_t.c.created_at, incidents_t.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def incident_states(self, ids: Sequence[str]) -> dict[str, Any]:
        """Incident id -> its state (the pure core's JSON), for the given ids."""
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(incidents_t.c.id, incidents_t.c.state) \
                    .where(incidents_t.c.id.in_(list(ids[i:i + 500])))
                out.update({str(r.id): r.state for r in conn.execute(q)})
        return out

    def get_incident(self, incident_id: str, conn: Connection | None = None
                     ) -> dict[str, Any] | None:
        q = select(incidents_t).where(incidents_t.c.id == incident_id)
        if conn is not None:
            row = conn.execute(q).first()
            return dict(row._mapping) if row else None
        with self.engine.connect() as c:
            row = c.execute(q).first()
            return dict(row._mapping) if row else None

    def incident_counts(self) -> dict[str, int]:
        """Open incidents by kind."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(incidents_t.c.kind, func.count())
                                .where(self.in_region(incidents_t),
                                       incidents_t.c.status == "active")
                                .group_by(incidents_t.c.kind))
            return {str(k): int(n) for k, n in rows}

    def open_fault_devices_by_feeder_in(self, conn: Connection) -> dict[str, int]:
        """Protective devices the open fault incidents name as operated, per feeder (the
        county's storm state: an incident of two devices counts two)."""
        rows = conn.execute(select(incidents_t.c.feeder, func.sum(incidents_t.c.fault_devices))
                            .where(self.in_region(incidents_t), incidents_t.c.status == "active",
                                   incidents_t.c.kind == "fault",
                                   incidents_t.c.fault_device.is_not(None))
                            .group_by(incidents_t.c.feeder))
        return {str(f): int(n) for f, n in rows}

    def crew_of_in(self, conn: Connection, incident_id: str) -> str | None:
        """The crew an incident holds (``None``: none, or no such incident)."""
        crew = conn.execute(select(incidents_t.c.crew_id)
                            .where(incidents_t.c.id == incident_id)).scalar()
        return None if crew is None else str(crew)

    def save_incident_in(self, conn: Connection, row: dict[str, Any]) -> None:
        # One upsert statement per column set, built once: building it per call (a storm saves
        # an incident per event) cost more than executing it.
        row = {**row, "region": self.region}
        keys = tuple(sorted(row))
        stmt = self.statements.get(keys)
        if stmt is None:
            ins = self.insert_stmt(incidents_t)
            stmt = ins.on_conflict_do_update(
                index_elements=["id"],
                set_={k: ins.excluded[k] for k in keys if k not in ("id", "created_at")})
            self.statements[keys] = stmt
        conn.execute(stmt, row)

    def log_in(self, conn: Connection, incident_id: str, at: datetime, stage: str, actor: str,
               note: str = "", details: dict[str, Any] | None = None) -> None:
        """Append one lifecycle step to the incident's log."""
        conn.execute(incident_log_t.insert().values(incident_id=incident_id, at=at, stage=stage,
                                                    actor=actor, note=note, details=details or {}))

    def incident_log(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        q = select(incident_log_t).order_by(incident_log_t.c.at, incident_log_t.c.id)
        if incident_id is not None:
            q = q.where(incident_log_t.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def confirmed_devices(self) -> dict[str, list[str]]:
        """Incident id -> the devices found operated: the close-out's (board or CLI), else the
        crew's "fault found" from its page; the latest word counts."""
        q = (select(incident_log_t.c.incident_id, incident_log_t.c.stage,
                    incident_log_t.c.details)
             .where(incident_log_t.c.stage.in_(list(FOUND_STAGES)))
             .order_by(incident_log_t.c.id))
        logs: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                logs.setdefault(r.incident_id, []).append(
                    {"stage": r.stage, "details": r.details})
        found = {iid: found_devices(log) for iid, log in logs.items()}
        return {iid: devices for iid, devices in found.items() if devices}

    def report_snapshot(self, start: datetime, end: datetime) -> tuple[
            list[dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, datetime],
            dict[str, datetime], list[dict[str, Any]]]:
        """What a report over [start, end) reads, in one read-only pass (a single connection,
        so one consistent snapshot on SQLite WAL): the incidents overlapping the period, their
        logs, the first evidence and first liaison notice of each, and the period's dead
        letters."""
        t = incidents_t
        q = (select(t).where(self.in_region(t), *self._overlapping(start, end))
             .order_by(t.c.start, t.c.id))
        with self.engine.connect() as conn, conn.begin():
            rows = [dict(r._mapping) for r in conn.execute(q)]
            ids = [r["id"] for r in rows]
            logs: dict[str, list[dict[str, Any]]] = {}
            evidence: dict[str, datetime] = {}
            notice: dict[str, datetime] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                lq = (select(incident_log_t).where(incident_log_t.c.incident_id.in_(chunk))
                      .order_by(incident_log_t.c.at, incident_log_t.c.id))
                for r in conn.execute(lq):
                    logs.setdefault(r.incident_id, []).append(dict(r._mapping))
                evidence.update(self._first_per_incident(conn, events_t.c.received_at, chunk))
                notice.update(self._first_per_incident(
                    conn, outbox_t.c.sent_at, chunk, outbox_t.c.audience == "liaison",
                    outbox_t.c.status == "sent", outbox_t.c.sent_at.is_not(None)))
            died = func.coalesce(outbox_t.c.dead_at, outbox_t.c.created_at)
            dq = (select(outbox_t).where(self.in_region(outbox_t), outbox_t.c.status == "dead",
                                         died >= start, died < end)
                  .order_by(died, outbox_t.c.id))
            dead = [dict(r._mapping) for r in conn.execute(dq)]
        return rows, logs, evidence, notice, dead

    @staticmethod
    def _overlapping(start: datetime, end: datetime) -> tuple[Any, Any]:
        """The conditions of the incidents a report over [start, end) may count (the report
        decides, :func:`outage_sentinel.reports.went_off_at`). Begun before ``end``: by its
        start, or planned work re-issued under a new id once under way, whose row starts at
        the re-issue while the power went off at the first record's start (created before
        ``end``, or re-issued at all: the re-issue may come after a midnight or a week's end).
        Not over before ``start``: updated since counts too, as an area counted back at the
        end may have come back later (a confirmation, or a new outage that took it on: the
        report's LATER_BACK_STAGES), and so does one a liaison answered about in the period
        (its confirmation counts in the period it was given)."""
        t = incidents_t
        reissued = select(incident_log_t.c.incident_id).where(
            incident_log_t.c.stage == "reissued")
        answered = select(field_answers_t.c.incident_id).where(
            field_answers_t.c.at >= start, field_answers_t.c.at < end)
        began = or_(t.c.start < end, t.c.created_at < end, t.c.id.in_(reissued))
        not_over = or_(t.c.end_time.is_(None), t.c.end_time > start, t.c.updated_at > start,
                       and_(t.c.start >= start, t.c.start < end), t.c.id.in_(answered))
        return began, not_over

    @staticmethod
    def _first_per_incident(conn: Connection, column: Any, ids: Sequence[str],
                            *where: Any) -> dict[str, datetime]:
        """MIN(column) per incident id (aggregates bypass the column type on SQLite)."""
        table = column.table
        q = (select(table.c.incident_id, func.min(column))
             .where(table.c.incident_id.in_(list(ids)), *where).group_by(table.c.incident_id))
        out: dict[str, datetime] = {}
        for iid, at in conn.execute(q):
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            out[str(iid)] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        return out

    def lock_incident_in(self, conn: Connection, incident_id: str) -> dict[str, Any] | None:
        """The incident row, locked for update on PostgreSQL (``None``: no such incident)."""
        q = select(incidents_t).where(incidents_t.c.id == incident_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def first_log_at_in(self, conn: Connection, incident_id: str) -> datetime | None:
        """When the incident's first lifecycle step was logged."""
        return conn.execute(select(incident_log_t.c.at).where(
            incident_log_t.c.incident_id == incident_id)
            .order_by(incident_log_t.c.at).limit(1)).scalar()

    def last_log_at_in(self, conn: Connection, incident_id: str, stage: str
                       ) -> datetime | None:
        """When the incident's latest step of ``stage`` was logged (``None``: never)."""
        return conn.execute(select(incident_log_t.c.at).where(
            incident_log_t.c.incident_id == incident_id, incident_log_t.c.stage == stage)
            .order_by(incident_log_t.c.id.desc()).limit(1)).scalar()

    def last_log_details_in(self, conn: Connection, incident_id: str, stage: str) -> Any:
        """The details of the incident's latest logged step of ``stage`` (``None``: none)."""
        return conn.execute(select(incident_log_t.c.details).where(
            incident_log_t.c.incident_id == incident_id, incident_log_t.c.stage == stage)
            .order_by(incident_log_t.c.id.desc()).limit(1)).scalar()

    def next_incident_number(self, conn: Connection, prefix: str) -> int:
        n = conn.execute(select(func.count()).select_from(incidents_t)
                         .where(incidents_t.c.id.like(f"{prefix}%"))).scalar() or 0
        return int(n) + 1

    def crews_held_in(self, conn: Connection, stages: Sequence[str], exclude: str
                      ) -> list[tuple[str, str, int, bool, str]]:
        """(incident, crew, priority, on site, region) of active incidents in ``stages``
        holding a crew, in every region sharing the database: a crew is one crew whichever
        region's daemon sent it, so a choice must see it busy everywhere. On site: the stage
        says so, or the state's ``crew_progress`` does (a partly restored fault whose crew is
        there)."""
        t = incidents_t
        q = select(t.c.id, t.c.crew_id, t.c.priority, t.c.stage, t.c.state, t.c.region).where(
            t.c.status == "active", t.c.crew_id.is_not(None), t.c.stage.in_(list(stages)),
            t.c.id != exclude)
        return [(str(i), str(c), int(p or 0),
                 st == "on_site" or (isinstance(state, dict)
                                     and state.get("crew_progress") == "on_site"), str(r))
                for i, c, p, st, state, r in conn.execute(q)]
