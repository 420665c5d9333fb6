"""The schema: tables, column types and the ordered migrations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Connection

from outage_sentinel.events import TEXT_LIMITS

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
    # The event's texts: as wide as an event may hold (``events.TEXT_LIMITS``, checked when
    # an event is made, so a longer one costs its record only, never the poll's batch).
    Column("source", String(TEXT_LIMITS["source"]), nullable=False),
    Column("event_id", String(TEXT_LIMITS["event_id"]), nullable=False),
    Column("revision", String(TEXT_LIMITS["revision"]), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("signal", String(20), nullable=False, server_default="notice"),
    Column("start", UTCDateTime, nullable=False),
    Column("etr", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("feeder", String(TEXT_LIMITS["feeder"])),
    Column("device", String(TEXT_LIMITS["device"])),
    Column("transformers", JSON, nullable=False),
    Column("area_text", Text, nullable=False, server_default=""),
    Column("cause", Text, nullable=False, server_default=""),
    Column("raw", JSON),
    Column("received_at", UTCDateTime, nullable=False),
    Column("processed", Boolean, nullable=False, server_default="0"),
    Column("incident_id", String(40)),
    # The region whose daemons store and process it (schema version 9; ``region.name``).
    Column("region", String(40), nullable=False, server_default="default"),
    UniqueConstraint("region", "source", "event_id", "revision",
                     name="uq_events_region_source_id_rev"),
)

quarantine_t = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(TEXT_LIMITS["source"]), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Text),
    Column("received_at", UTCDateTime, nullable=False),
    # The region that received it (schema version 9): a province-wide feed's bad payload is
    # each region's to see, once.
    Column("region", String(40), nullable=False, server_default="default"),
    # Schema version 14: the same payload of a source with the same reason is kept once a
    # day (``store/events.py``); ``digest`` is sha256 of (source, reason, raw), and the row
    # says when it was last seen again and how often (NULL / 0 for older rows).
    Column("digest", String(64)),
    Column("last_seen", UTCDateTime),
    Column("repeats", Integer, nullable=False, server_default="0"),
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
    # Region sharding (schema version 9).
    Column("region", String(40), nullable=False, server_default="default"),
    # How many protective devices the estimate names (schema version 12): the county's
    # storm context counts devices operated, and an incident may hold two.
    Column("fault_devices", Integer, nullable=False, server_default="0"),
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
    # pending | inflight | sent | dead | silenced | withdrawn | superseded | held
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("inflight_count", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    # When it was given up on (schema version 4; NULL for dead letters of older versions).
    Column("dead_at", UTCDateTime),
    # The region whose leader sends it (schema version 9).
    Column("region", String(40), nullable=False, server_default="default"),
    # How often a send of it was interrupted with the outcome unknown and it was sent again
    # (schema version 9): each one a possible duplicate at the service, counted apart.
    Column("interruptions", Integer, nullable=False, server_default="0"),
    # When its age limit counts from, if not from created_at: the end of the last quiet-hours
    # hold (schema version 13; a night held on purpose is not time spent failing).
    Column("age_from", UTCDateTime),
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

silences_t = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    #: feeder | village | incident
    Column("matcher", String(20), nullable=False),
    Column("value", String(200), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("force", Boolean, nullable=False, server_default=false()),
    Column("expired_at", UTCDateTime),
)

#: People who sign in to the board (schema version 6).
users_t = Table(
    "users", metadata,
    Column("name", String(100), primary_key=True),
    #: viewer | operator | admin
    Column("role", String(20), nullable=False),
    #: argon2 hash (the encoded form carries its own salt and cost)
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    #: set for a password that must be changed at the next sign-in (the first admin's)
    Column("must_change", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Board sessions: only a hash of the cookie's token is kept, so a copy of the database signs
#: nobody in.
board_sessions_t = Table(
    "board_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

#: Every sign-in (and failed attempt) and every action taken on the board.
audit_t = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    #: sign_in | sign_in_failed | sign_in_throttled | sign_out | action | denied
    Column("kind", String(30), nullable=False),
    Column("action", String(60), nullable=False, server_default=""),
    Column("target", String(200), nullable=False, server_default=""),
    Column("remote", String(100), nullable=False, server_default=""),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

#: Who leads each region (active/standby on PostgreSQL, schema version 7). ``epoch`` grows by
#: one at every change of holder; a write carries the writer's epoch and is refused once
#: another node holds the lease (fencing).
leases_t = Table(
    "leases", metadata,
    Column("region", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("renewed_at", UTCDateTime, nullable=False),
)

#: What the field said through its links (schema version 8): one row per link and area, the
#: latest answer; ``revision`` counts changes (a second tap changes it, it adds no report).
field_answers_t = Table(
    "field_answers", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("area", String(200), primary_key=True),
    Column("incident_id", String(40), nullable=False, index=True),
    Column("village", String(200), nullable=False),
    Column("answer", String(20), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("revision", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
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


def _m5_silences(conn: Connection) -> None:
    silences_t.create(conn, checkfirst=True)


def _m6_board(conn: Connection) -> None:
    for table in (users_t, board_sessions_t, audit_t):
        table.create(conn, checkfirst=True)
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_audit_actor ON audit (actor, kind, at)"))


def _m7_leases(conn: Connection) -> None:
    leases_t.create(conn, checkfirst=True)


def _m8_field_answers(conn: Connection) -> None:
    field_answers_t.create(conn, checkfirst=True)


def _m9_regions(conn: Connection) -> None:
    """A region column on events, incidents, outbox and quarantine; an event is unique per region (two
    regions polling one province-wide feed each keep the part in their own feeders)."""
    for table in (events_t, incidents_t, outbox_t, quarantine_t):
        _add_missing_columns(conn, table, ["region"])
    _add_missing_columns(conn, outbox_t, ["interruptions"])
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE events DROP CONSTRAINT IF EXISTS uq_events_source_id_rev"))
    # A database made before version 9 keeps (on SQLite, which cannot drop a constraint) the
    # old three-column one too: SQLite is one node and serves one region.
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS uq_events_region_source_id_rev "
                      "ON events (region, source, event_id, revision)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_events_region_unprocessed "
                      "ON events (region, processed, id)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_outbox_region_due "
                      "ON outbox (region, status, next_attempt_at)"))


def _m10_outbox_chains(conn: Connection) -> None:
    """The deliverer reads each due message's chain (its incident and recipient) every run."""
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_outbox_chain "
                      "ON outbox (incident_id, recipient)"))


def _m11_calls_by_start(conn: Connection) -> None:
    """A fault incident that opens reads its line's earlier trouble calls by start time; the
    events table also holds every AMI report, so a scan would grow with them."""
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_events_signal_start "
                      "ON events (signal, start)"))


def _m12_fault_devices(conn: Connection) -> None:
    """The storm context counts the devices open fault incidents hold, not the incidents.
    An incident written before counts one device until its next revision rewrites it."""
    _add_missing_columns(conn, incidents_t, ["fault_devices"])
    conn.execute(text("UPDATE incidents SET fault_devices = 1 "
                      "WHERE fault_device IS NOT NULL AND fault_devices = 0"))


def _m13_age_from(conn: Connection) -> None:
    """A message quiet hours held counts its age limit from the end of the hold."""
    _add_missing_columns(conn, outbox_t, ["age_from"])


def _m14_quarantine_repeats(conn: Connection) -> None:
    """A bad record a snapshot feed lists at every poll is kept once a day, not once a poll:
    found again by its digest, the row's ``last_seen`` and ``repeats`` change instead."""
    _add_missing_columns(conn, quarantine_t, ["digest", "last_seen", "repeats"])
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_quarantine_digest "
                      "ON quarantine (region, digest, received_at)"))


#: Ordered migrations; index + 1 is the schema version each one brings the database to.
MIGRATIONS: list[Callable[[Connection], None]] = [_m1_initial, _m2_indexes, _m3_lifecycle,
                                                  _m4_dead_at, _m5_silences, _m6_board,
                                                  _m7_leases, _m8_field_answers, _m9_regions,
                                                  _m10_outbox_chains, _m11_calls_by_start,
                                                  _m12_fault_devices, _m13_age_from,
                                                  _m14_quarantine_repeats]


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the operator CLI read while the daemon writes; NORMAL sync is durable in WAL
    # against process crashes (SIGKILL), which is what the delivery guarantees need.
    dbapi_conn.isolation_level = None  # let SQLAlchemy/our BEGIN IMMEDIATE drive transactions
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def utc_now() -> datetime:
    return datetime.now(UTC)
