"""The store: SQLAlchemy 2.x Core over SQLite (default) or PostgreSQL.

What lives here is the record the delivery guarantees rest on:

* ``events`` — every normalised event, unique on ``(source, event_id, revision)`` by a database
  constraint, written together with the source's cursor before a poll counts as done;
* ``quarantine`` — payloads that failed validation, with the reason, kept for inspection;
* ``incidents`` — the incident state the pure core computes;
* ``outbox`` — notifications, unique on ``(incident_id, revision, recipient, purpose)``,
  written in the same transaction as the incident change that causes them;
* ``kv`` — small JSON state (source cursors, channel rate-limit windows) that must survive
  restarts.

The schema is versioned: :data:`MIGRATIONS` is an ordered list and :meth:`Store.migrate` applies
the ones an existing database has not seen, so upgrading the daemon upgrades the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url

from outage_sentinel.events import OutageEvent, PollResult, Quarantined

SCHEMA_VERSION_TABLE = "schema_version"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; returns aware UTC (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = MetaData()

events_t = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("revision", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("signal", String(20), nullable=False, server_default="notice"),
    Column("start", UTCDateTime, nullable=False),
    Column("etr", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("feeder", String(100)),
    Column("device", String(200)),
    Column("transformers", JSON, nullable=False),
    Column("area_text", Text, nullable=False, server_default=""),
    Column("cause", Text, nullable=False, server_default=""),
    Column("raw", JSON),
    Column("received_at", UTCDateTime, nullable=False),
    Column("processed", Boolean, nullable=False, server_default="0"),
    Column("incident_id", String(40)),
    UniqueConstraint("source", "event_id", "revision", name="uq_events_source_id_rev"),
)

quarantine_t = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Text),
    Column("received_at", UTCDateTime, nullable=False),
)

incidents_t = Table(
    "incidents", metadata,
    Column("id", String(40), primary_key=True),
    Column("feeder", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("etr", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("fault_device", String(200)),
    Column("customers", Integer, nullable=False, server_default="0"),
    Column("state", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Lifecycle (schema version 3):
    Column("stage", String(30), nullable=False, server_default="detected"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("crew_id", String(100)),
    Column("parent_id", String(40)),
    Column("cause_category", String(60)),
    Column("closed_at", UTCDateTime),
)

outbox_t = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(40), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("recipient", String(300), nullable=False),
    Column("purpose", String(40), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("target", String(300), nullable=False),
    Column("audience", String(40), nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("body", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    # pending | inflight | sent | dead
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("inflight_count", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    # When it was given up on (schema version 4; NULL for dead letters of older versions).
    Column("dead_at", UTCDateTime),
    UniqueConstraint("incident_id", "revision", "recipient", "purpose", name="uq_outbox_key"),
)

incident_log_t = Table(
    "incident_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(40), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    #: detected | confirmed | dispatched | on_site | partially_restored | restored | closed |
    #: cancelled | reopened | etr_changed | escalated | note
    Column("stage", String(30), nullable=False),
    #: who: "daemon", "source:<name>", "operator:<name>"
    Column("actor", String(100), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    #: step details, e.g. {"transformers": [...], "customers": 120} for a restoration step
    Column("details", JSON, nullable=False),
)

kv_t = Table(
    "kv", metadata,
    Column("key", String(200), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

schema_version_t = Table(
    SCHEMA_VERSION_TABLE, metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)


def _m1_initial(conn: Connection) -> None:
    metadata.create_all(conn, tables=[events_t, quarantine_t, incidents_t, outbox_t, kv_t])


def _m2_indexes(conn: Connection) -> None:
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_events_unprocessed ON events (processed, id)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_outbox_due ON outbox (status, next_attempt_at)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_incidents_status ON incidents (status, feeder)"))


def _add_missing_columns(conn: Connection, table: Table, names: Sequence[str]) -> None:
    """ALTER TABLE ADD COLUMN for the named columns a database created earlier lacks."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        ddl = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))


def _m3_lifecycle(conn: Connection) -> None:
    _add_missing_columns(conn, incidents_t, ["stage", "priority", "crew_id", "parent_id",
                                             "cause_category", "closed_at"])
    incident_log_t.create(conn, checkfirst=True)


def _m4_dead_at(conn: Connection) -> None:
    _add_missing_columns(conn, outbox_t, ["dead_at"])


#: Ordered migrations; index + 1 is the schema version each one brings the database to.
MIGRATIONS: list[Callable[[Connection], None]] = [_m1_initial, _m2_indexes, _m3_lifecycle,
                                                  _m4_dead_at]


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the store (with its row id)."""

    row_id: int
    event: OutageEvent
    received_at: datetime
    incident_id: str | None


@dataclass(frozen=True)
class OutboxRow:
    id: int
    incident_id: str
    revision: int
    recipient: str
    purpose: str
    channel: str
    target: str
    audience: str
    subject: str
    body: str
    payload: dict[str, Any]
    status: str
    attempts: int
    inflight_count: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    dead_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.incident_id}/{self.revision}/{self.recipient}/{self.purpose}"


@dataclass(frozen=True)
class IngestCounts:
    inserted: int
    duplicates: int
    quarantined: int
    #: The events that were new (not already stored), in poll order.
    new_events: tuple[OutageEvent, ...] = ()


class Store:
    """All database access. One instance per process; thread-safe through the engine pool."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._save_stmts: dict[tuple[str, ...], Any] = {}
        self._event_insert: _EventInsert | None = None
        database = parsed.database or ""
        #: The SQLite file, absolute (None for PostgreSQL and in-memory SQLite).
        self.sqlite_path: Path | None = (
            Path(database).resolve() if self.dialect == "sqlite" and database
            and database != ":memory:" and not database.startswith("file:") else None)
        self._file_identity: tuple[int, int] | None = None

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""
        with self.engine.begin() as conn:
            schema_version_t.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version_t.c.version))).scalar() or 0
            for version, step in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                step(conn)
                conn.execute(schema_version_t.insert().values(version=version, applied_at=_now()))
            version_now = len(MIGRATIONS) if current < len(MIGRATIONS) else int(current)
        self.database_file_problem()  # the file exists now: remember which one it is
        return version_now

    def database_file_problem(self) -> str | None:
        """``"missing"`` or ``"replaced"`` once the SQLite file at :attr:`sqlite_path` is not
        the one this store opened (compared by device and inode); None while it is, and always
        for PostgreSQL and in-memory SQLite. The first call remembers the file (``migrate``
        makes it). SQLite itself notices neither: it goes on writing into the deleted file."""
        if self.sqlite_path is None:
            return None
        try:
            st = os.stat(self.sqlite_path)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:  # e.g. a directory on the path removed or made unreadable
            return f"missing ({exc.strerror or exc})"
        identity = (st.st_dev, st.st_ino)
        if self._file_identity is None:
            self._file_identity = identity
        return None if identity == self._file_identity else "replaced"

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(schema_version_t.c.version))).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction; commits on success, rolls back on any exception."""
        with self.engine.connect() as conn:
            # SQLite: take the write lock up front so two writers (daemon threads, the operator
            # CLI) queue on busy_timeout instead of failing with "database is locked" mid-way.
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def _insert(self, table: Table) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"database {self.dialect!r} is not supported (sqlite, postgresql)")

    # -- events -------------------------------------------------------------------------------

    def ingest(self, source: str, result: PollResult, now: datetime) -> IngestCounts:
        """Persist a poll's events, quarantined payloads and cursor in one transaction.

        Duplicates (same source, event id and revision) are skipped by the unique constraint.
        """
        with self.transaction() as conn:
            counts = self.ingest_in(conn, source, result, now)
        return counts

    def ingest_in(self, conn: Connection, source: str, result: PollResult,
                  now: datetime, *,
                  processed: Callable[[OutageEvent], bool] | None = None) -> IngestCounts:
        """:meth:`ingest` inside the caller's transaction. Events for which ``processed`` says
        so are stored as already handled (the caller handles them in this same transaction)."""
        inserted = 0
        if result.events:
            # Find what is already stored with one query per chunk, then insert the rest in one
            # executemany (a storm brings thousands of AMI reports per poll). The unique
            # constraint still guards against a concurrent writer (ON CONFLICT DO NOTHING).
            fresh: dict[tuple[str, str, str], OutageEvent] = {}
            for e in result.events:
                fresh.setdefault((e.source, e.event_id, e.revision), e)
            by_source: dict[str, list[str]] = {}
            for src, eid, _rev in fresh:
                by_source.setdefault(src, []).append(eid)
            for src, ids in by_source.items():
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    for row in conn.execute(select(events_t.c.event_id, events_t.c.revision)
                                            .where(events_t.c.source == src,
                                                   events_t.c.event_id.in_(chunk))):
                        fresh.pop((src, row[0], row[1]), None)
            if fresh and self.dialect == "sqlite":
                if self._event_insert is None:
                    self._event_insert = _EventInsert(self.engine.dialect)
                self._event_insert.run(conn, fresh.values(), now, processed)
            elif fresh:
                # PostgreSQL: SQLAlchemy batches an executemany into multi-row INSERTs.
                stmt = self._insert(events_t).on_conflict_do_nothing(
                    index_elements=["source", "event_id", "revision"])
                values = [_event_row(e, now) for e in fresh.values()]
                if processed is not None:
                    for value, e in zip(values, fresh.values(), strict=True):
                        value["processed"] = processed(e)
                conn.execute(stmt, values)
            inserted = len(fresh)
        for q in result.quarantined:
            self.quarantine_in(conn, q, now)
        if result.cursor is not None:
            self.kv_set_in(conn, f"cursor:{source}", result.cursor, now)
        return IngestCounts(inserted, len(result.events) - inserted, len(result.quarantined),
                            tuple(fresh.values()) if result.events else ())

    def quarantine_in(self, conn: Connection, q: Quarantined, now: datetime) -> None:
        raw = q.raw if isinstance(q.raw, str) else json.dumps(q.raw, ensure_ascii=False, default=str)
        conn.execute(quarantine_t.insert().values(source=q.source, reason=q.reason, raw=raw,
                                                  received_at=now))

    def quarantine(self, q: Quarantined, now: datetime) -> None:
        with self.transaction() as conn:
            self.quarantine_in(conn, q, now)

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(quarantine_t).order_by(quarantine_t.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def unprocessed_events(self, limit: int = 1000) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(events_t).where(events_t.c.processed.is_(False))
                                .order_by(events_t.c.id).limit(limit))
            return [_stored_event(r._mapping) for r in rows]

    def events(self, *, incident_id: str | None = None, limit: int = 10000) -> list[StoredEvent]:
        q = select(events_t).order_by(events_t.c.id).limit(limit)
        if incident_id is not None:
            q = q.where(events_t.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [_stored_event(r._mapping) for r in conn.execute(q)]

    def mark_processed_in(self, conn: Connection, row_id: int, incident_id: str | None) -> None:
        conn.execute(_MARK_PROCESSED, {"row_id": row_id, "incident": incident_id})

    def mark_many_processed_in(self, conn: Connection, row_ids: Sequence[int]) -> None:
        """Mark events processed (no incident) in bulk."""
        for i in range(0, len(row_ids), 500):
            conn.execute(update(events_t).where(events_t.c.id.in_(row_ids[i:i + 500]))
                         .values(processed=True))

    def processed_flags_in(self, conn: Connection, row_ids: Sequence[int]) -> dict[int, bool]:
        """``processed`` of each given event row (locked for update on PostgreSQL)."""
        out: dict[int, bool] = {}
        for i in range(0, len(row_ids), 500):
            q = select(events_t.c.id, events_t.c.processed).where(
                events_t.c.id.in_(list(row_ids[i:i + 500])))
            if self.dialect == "postgresql":
                q = q.with_for_update()
            out.update((int(r), bool(p)) for r, p in conn.execute(q))
        return out

    def member_incidents_in(self, conn: Connection, keys: Sequence[tuple[str, str]]
                            ) -> dict[tuple[str, str], tuple[int, str]]:
        """For each (source, event_id): (row id, incident id) of its newest row that belongs to
        an incident; keys with none are absent."""
        by_source: dict[str, list[str]] = {}
        for source, event_id in keys:
            by_source.setdefault(source, []).append(event_id)
        out: dict[tuple[str, str], tuple[int, str]] = {}
        for source, ids in by_source.items():
            uniq = sorted(set(ids))
            for i in range(0, len(uniq), 500):
                rows = conn.execute(select(events_t.c.id, events_t.c.event_id,
                                           events_t.c.incident_id)
                                    .where(events_t.c.source == source,
                                           events_t.c.event_id.in_(uniq[i:i + 500]),
                                           events_t.c.incident_id.is_not(None)))
                for row_id, event_id, incident_id in rows:
                    key = (source, str(event_id))
                    prev = out.get(key)
                    if prev is None or int(row_id) > prev[0]:
                        out[key] = (int(row_id), str(incident_id))
        return out

    def member_incident_in(self, conn: Connection, source: str, event_id: str) -> str | None:
        """The incident the newest row of (source, event_id) belongs to, if any."""
        row = conn.execute(select(events_t.c.incident_id)
                           .where(events_t.c.source == source, events_t.c.event_id == event_id,
                                  events_t.c.incident_id.is_not(None))
                           .order_by(events_t.c.id.desc()).limit(1)).first()
        return str(row[0]) if row else None

    def last_event_row_in(self, conn: Connection, source: str) -> int:
        """The highest event row id stored for ``source`` (0: none)."""
        return int(conn.execute(select(func.max(events_t.c.id))
                                .where(events_t.c.source == source)).scalar() or 0)

    def events_after(self, row_id: int, sources: set[str] | frozenset[str],
                     chunk: int = 5000) -> Iterator[StoredEvent]:
        """Stored events of ``sources`` with a row id above ``row_id``, in id order."""
        last = row_id
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(events_t).where(events_t.c.id > last,
                                                           events_t.c.source.in_(sorted(sources)))
                                    .order_by(events_t.c.id).limit(chunk)).all()
            if not rows:
                return
            for r in rows:
                yield _stored_event(r._mapping)
            last = int(rows[-1]._mapping["id"])

    def count(self, table: str) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)

    # -- key/value state ----------------------------------------------------------------------

    def kv_get(self, key: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(kv_t.c.value).where(kv_t.c.key == key)).scalar()

    def kv_get_in(self, conn: Connection, key: str) -> Any:
        return conn.execute(select(kv_t.c.value).where(kv_t.c.key == key)).scalar()

    def kv_set_in(self, conn: Connection, key: str, value: Any, now: datetime) -> None:
        stmt = self._insert(kv_t).values(key=key, value=value, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                          set_={"value": value, "updated_at": now})
        conn.execute(stmt)

    def kv_set(self, key: str, value: Any, now: datetime) -> None:
        with self.transaction() as conn:
            self.kv_set_in(conn, key, value, now)

    # -- incidents ----------------------------------------------------------------------------

    def load_incidents(self, *, open_only: bool = True, conn: Connection | None = None,
                       feeder: str | None = None, kinds: Sequence[str] | None = None,
                       status: str | None = None, ended_after: datetime | None = None
                       ) -> list[dict[str, Any]]:
        """Incident rows (``state`` is the pure core's JSON), optionally narrowed."""
        q = select(incidents_t).order_by(incidents_t.c.created_at, incidents_t.c.id)
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
                                .where(incidents_t.c.status == "active")
                                .group_by(incidents_t.c.kind))
            return {str(k): int(n) for k, n in rows}

    def open_faults_by_feeder_in(self, conn: Connection) -> dict[str, int]:
        """Open fault incidents with a fault device, per feeder (the county's storm state)."""
        rows = conn.execute(select(incidents_t.c.feeder, func.count())
                            .where(incidents_t.c.status == "active",
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
        keys = tuple(sorted(row))
        stmt = self._save_stmts.get(keys)
        if stmt is None:
            ins = self._insert(incidents_t)
            stmt = ins.on_conflict_do_update(
                index_elements=["id"],
                set_={k: ins.excluded[k] for k in keys if k not in ("id", "created_at")})
            self._save_stmts[keys] = stmt
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

    def report_snapshot(self, start: datetime, end: datetime) -> tuple[
            list[dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, datetime],
            dict[str, datetime], list[dict[str, Any]]]:
        """What a report over [start, end) reads, in one read-only pass (a single connection,
        so one consistent snapshot on SQLite WAL): the incidents overlapping the period, their
        logs, the first evidence and first liaison notice of each, and the period's dead
        letters."""
        t = incidents_t
        q = (select(t).where(t.c.start < end,
                             or_(t.c.end_time.is_(None), t.c.end_time > start,
                                 and_(t.c.start >= start, t.c.start < end)))
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
            dq = (select(outbox_t).where(outbox_t.c.status == "dead", died >= start, died < end)
                  .order_by(died, outbox_t.c.id))
            dead = [dict(r._mapping) for r in conn.execute(dq)]
        return rows, logs, evidence, notice, dead

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

    def crews_busy_in(self, conn: Connection, stages: Sequence[str], exclude: str
                      ) -> list[tuple[str, str, int]]:
        """(incident, crew, priority) of active incidents in ``stages`` holding a crew."""
        q = select(incidents_t.c.id, incidents_t.c.crew_id, incidents_t.c.priority).where(
            incidents_t.c.status == "active", incidents_t.c.crew_id.is_not(None),
            incidents_t.c.stage.in_(list(stages)), incidents_t.c.id != exclude)
        return [(str(i), str(c), int(p or 0)) for i, c, p in conn.execute(q)]

    def first_log_at_in(self, conn: Connection, incident_id: str) -> datetime | None:
        """When the incident's first lifecycle step was logged."""
        return conn.execute(select(incident_log_t.c.at).where(
            incident_log_t.c.incident_id == incident_id)
            .order_by(incident_log_t.c.at).limit(1)).scalar()

    def last_log_details_in(self, conn: Connection, incident_id: str, stage: str) -> Any:
        """The details of the incident's latest logged step of ``stage`` (``None``: none)."""
        return conn.execute(select(incident_log_t.c.details).where(
            incident_log_t.c.incident_id == incident_id, incident_log_t.c.stage == stage)
            .order_by(incident_log_t.c.id.desc()).limit(1)).scalar()

    def next_incident_number(self, conn: Connection, prefix: str) -> int:
        n = conn.execute(select(func.count()).select_from(incidents_t)
                         .where(incidents_t.c.id.like(f"{prefix}%"))).scalar() or 0
        return int(n) + 1

    # -- outbox -------------------------------------------------------------------------------

    def enqueue_in(self, conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> int:
        """Add outbox rows; a row whose unique key exists already is skipped. Returns added."""
        added = 0
        stmt = self._insert(outbox_t).on_conflict_do_nothing(
            index_elements=["incident_id", "revision", "recipient", "purpose"])
        for row in rows:
            values = {"status": "pending", "attempts": 0, "inflight_count": 0,
                      "next_attempt_at": now, "created_at": now, **row}
            added += conn.execute(stmt, values).rowcount or 0
        return added

    def due_messages(self, now: datetime, limit: int = 100,
                     exclude: Collection[tuple[str, str]] = ()) -> list[OutboxRow]:
        """Pending messages due at ``now``, oldest first; ``exclude`` leaves out the
        ``(channel, target)`` pairs whose delivery is still under way, so that a hung target's
        backlog never fills the batch and keeps other targets' messages from being read."""
        q = select(outbox_t).where(outbox_t.c.status == "pending",
                                   outbox_t.c.next_attempt_at <= now)
        for channel, target in exclude:
            q = q.where(~and_(outbox_t.c.channel == channel, outbox_t.c.target == target))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(outbox_t.c.next_attempt_at, outbox_t.c.id)
                                .limit(limit))
            return [OutboxRow(**r._mapping) for r in rows]

    def messages(self, *, status: str | None = None, incident_id: str | None = None
                 ) -> list[OutboxRow]:
        q = select(outbox_t).order_by(outbox_t.c.id)
        if status is not None:
            q = q.where(outbox_t.c.status == status)
        if incident_id is not None:
            q = q.where(outbox_t.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [OutboxRow(**r._mapping) for r in conn.execute(q)]

    def inflight_messages(self) -> list[OutboxRow]:
        return self.messages(status="inflight")

    def mark_inflight(self, row_id: int, now: datetime) -> bool:
        """Claim a pending message before sending it (committed, so a crash leaves a trace)."""
        with self.transaction() as conn:
            res = conn.execute(update(outbox_t)
                               .where(outbox_t.c.id == row_id, outbox_t.c.status == "pending")
                               .values(status="inflight",
                                       inflight_count=outbox_t.c.inflight_count + 1,
                                       attempts=outbox_t.c.attempts + 1))
            return bool(res.rowcount)

    def mark_sent(self, row_id: int, now: datetime, detail: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id)
                         .values(status="sent", sent_at=now, inflight_count=0,
                                 last_error=detail or None))

    def mark_retry(self, row_id: int, next_at: datetime, error: str, *,
                   clear_inflight: bool = True) -> None:
        values: dict[str, Any] = {"status": "pending", "next_attempt_at": next_at,
                                  "last_error": error}
        if clear_inflight:
            values["inflight_count"] = 0
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id).values(**values))

    def mark_dead(self, row_id: int, now: datetime, error: str) -> None:
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id)
                         .values(status="dead", last_error=error, sent_at=None, dead_at=now))

    def outbox_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox_t.c.status, func.count()).group_by(outbox_t.c.status))
            return {str(s): int(n) for s, n in rows}


_MARK_PROCESSED = (update(events_t).where(events_t.c.id == bindparam("row_id"))
                   .values(processed=True, incident_id=bindparam("incident")))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the operator CLI read while the daemon writes; NORMAL sync is durable in WAL
    # against process crashes (SIGKILL), which is what the delivery guarantees need.
    dbapi_conn.isolation_level = None  # let SQLAlchemy/our BEGIN IMMEDIATE drive transactions
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _now() -> datetime:
    return datetime.now(UTC)


def _event_row(e: OutageEvent, now: datetime) -> dict[str, Any]:
    return {
        "source": e.source, "event_id": e.event_id, "revision": e.revision, "kind": e.kind,
        "status": e.status, "signal": e.signal, "start": e.start, "etr": e.expected_restoration,
        "end_time": e.end, "feeder": e.feeder, "device": e.device,
        "transformers": list(e.transformers), "area_text": e.area_text, "cause": e.cause,
        "raw": _jsonable(e.raw), "received_at": now, "processed": False,
    }


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(_raw_json(value))


def _raw_json(value: Any) -> str:
    """A raw payload as JSON text; what JSON cannot take (a datetime) is kept as its string."""
    return json.dumps(value, ensure_ascii=False, default=str)


#: Columns of an event row written by :class:`_EventInsert` (all but ``id`` and ``incident_id``).
_EVENT_COLUMNS = ("source", "event_id", "revision", "kind", "status", "signal", "start", "etr",
                  "end_time", "feeder", "device", "transformers", "area_text", "cause", "raw",
                  "received_at", "processed")


class _EventInsert:
    """The SQLite executemany of new event rows, encoded column by column.

    A storm brings thousands of AMI reports per poll. Through Core, every row of an executemany
    goes through SQLAlchemy's generic per-parameter type processing, which cost more than SQLite
    itself. Here each column's processor (the very ones Core uses, so rows read back the same;
    raw payloads as :func:`_jsonable` writes them) is applied directly, and values shared by the
    whole batch (``received_at``, the ``processed`` flags, common ``transformers`` lists) are
    encoded once.
    """

    def __init__(self, dialect: Any) -> None:
        stmt = sqlite.insert(events_t).values(
            {name: bindparam(name) for name in _EVENT_COLUMNS}).on_conflict_do_nothing(
            index_elements=["source", "event_id", "revision"])
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        order = tuple(compiled.positiontup or ())
        if order != _EVENT_COLUMNS:  # rows below are built in this order
            raise RuntimeError(f"unexpected parameters in the event insert: {order}")

        def processor(name: str) -> Callable[[Any], Any]:
            proc = events_t.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            return proc if proc is not None else (lambda v: v)

        self.encode = {name: processor(name) for name in _EVENT_COLUMNS}

    def run(self, conn: Connection, events: Iterable[OutageEvent], now: datetime,
            processed: Callable[[OutageEvent], bool] | None) -> None:
        enc = self.encode
        when, raw = enc["start"], _raw_json  # one encoding, no test-encoding first
        received = enc["received_at"](now)
        flags = {True: enc["processed"](True), False: enc["processed"](False)}
        tx_cache: dict[tuple[str, ...], Any] = {}
        rows = []
        for e in events:
            txs = tx_cache.get(e.transformers)
            if txs is None:
                txs = tx_cache[e.transformers] = enc["transformers"](list(e.transformers))
            rows.append((
                e.source, e.event_id, e.revision, e.kind, e.status, e.signal, when(e.start),
                None if e.expected_restoration is None else when(e.expected_restoration),
                None if e.end is None else when(e.end), e.feeder, e.device, txs, e.area_text,
                e.cause, raw(e.raw), received,
                flags[bool(processed(e)) if processed is not None else False]))
        conn.exec_driver_sql(self.sql, rows)


def _stored_event(m: Any) -> StoredEvent:
    event = OutageEvent(
        source=m["source"], event_id=m["event_id"], revision=m["revision"], kind=m["kind"],
        status=m["status"], signal=m["signal"], start=m["start"], expected_restoration=m["etr"],
        end=m["end_time"], feeder=m["feeder"], device=m["device"],
        transformers=tuple(m["transformers"] or ()), area_text=m["area_text"] or "",
        cause=m["cause"] or "", raw=m["raw"] or {},
    )
    return StoredEvent(int(m["id"]), event, m["received_at"], m["incident_id"])

