"""The store: SQLAlchemy 2.x Core over SQLite (default) or PostgreSQL.

What lives here is the record the delivery guarantees rest on:

* ``events`` — every normalised event, unique on ``(source, event_id, revision)`` by a database
  constraint, written together with the source's cursor before a poll counts as done;
* ``quarantine`` — payloads that failed validation, with the reason, kept for inspection;
* ``incidents`` — the incident state the pure core computes;
* ``outbox`` — notifications, unique on ``(incident_id, revision, recipient, purpose)``,
  written in the same transaction as the incident change that causes them;
* ``users``, ``board_sessions``, ``audit`` — who may sign in to the board, and what they did;
* ``kv`` — small JSON state (source cursors, channel rate-limit windows) that must survive
  restarts.

The schema is versioned: :data:`MIGRATIONS` is an ordered list and :meth:`Store.migrate` applies
the ones an existing database has not seen, so upgrading the daemon upgrades the database.
"""

from __future__ import annotations

from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.board import BoardStore
from outage_sentinel.store.controls import ControlStore
from outage_sentinel.store.events import EventStore, IngestCounts, StoredEvent
from outage_sentinel.store.incidents import IncidentStore
from outage_sentinel.store.kv import KvStore
from outage_sentinel.store.leases import FencedError, LeaseStore
from outage_sentinel.store.outbox import OutboxRow, OutboxStore
from outage_sentinel.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    events_t,
    incident_log_t,
    incidents_t,
    kv_t,
    metadata,
    outbox_t,
    quarantine_t,
    schema_version_t,
)
from outage_sentinel.store.silences import SilenceStore

__all__ = ["MIGRATIONS", "FencedError", "SCHEMA_VERSION_TABLE", "IngestCounts", "OutboxRow", "Store",
           "StoreBase", "StoredEvent", "events_t", "incident_log_t", "incidents_t", "kv_t",
           "metadata", "outbox_t", "quarantine_t", "schema_version_t"]


class Store(EventStore, IncidentStore, OutboxStore, ControlStore, SilenceStore, BoardStore,
            KvStore, LeaseStore):
    """All database access, by aggregate (events, incidents, outbox, silences, key-value
    state) over one engine. One instance per process; thread-safe through the engine pool."""
