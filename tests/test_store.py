"""The store on SQLite and PostgreSQL: migrations, dedupe, atomic ingest, outbox, kv.

Every test here runs on both databases through the ``store`` fixture (PostgreSQL in a schema
of its own per test; skipped with the reason when the server is not reachable).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import (
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Store,
    events_t,
    outbox_t,
    schema_version_t,
)
from tests.conftest import T0


def event(event_id: str = "E1", **kw: Any) -> OutageEvent:
    fields: dict[str, Any] = {
        "source": "feed", "event_id": event_id, "kind": "fault", "status": "active",
        "start": T0 - timedelta(minutes=5), "feeder": "F1", "transformers": ("T1", "T2"),
        "area_text": "马集村", "cause": "树障", "raw": {"id": event_id, "范围": "马集村"},
    }
    fields.update(kw)
    return OutageEvent(**fields)


def outbox_row(recipient: str = "village:V1:wecom:g1", **kw: Any) -> OutboxMessage:
    row: dict[str, Any] = {
        "incident_id": "INC-1", "revision": 1, "recipient": recipient, "purpose": "outage",
        "channel": "wecom", "target": "g1", "audience": "liaison", "subject": "s",
        "body": "停电通知", "payload": {"mentions": ["13800000001"]},
    }
    row.update(kw)
    return OutboxMessage(**row)


def enqueue(store: Store, rows: list[OutboxMessage], now: datetime = T0) -> int:
    with store.transaction() as conn:
        return store.enqueue_in(conn, rows, now)


def index_names(store: Store, table: str) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(store.engine).get_indexes(table)}


# -- schema ------------------------------------------------------------------------------------


def test_migrate_is_idempotent(blank_store: Store) -> None:
    assert SCHEMA_VERSION_TABLE not in sa.inspect(blank_store.engine).get_table_names()
    assert blank_store.migrate() == len(MIGRATIONS)
    assert blank_store.migrate() == len(MIGRATIONS)
    assert blank_store.schema_version() == len(MIGRATIONS)
    with blank_store.engine.connect() as conn:
        versions = conn.execute(sa.select(schema_version_t.c.version)
                                .order_by(schema_version_t.c.version)).scalars().all()
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    tables = set(sa.inspect(blank_store.engine).get_table_names())
    assert {"events", "quarantine", "incidents", "outbox", "kv", SCHEMA_VERSION_TABLE} <= tables


def test_upgrades_a_version_1_database_keeping_its_rows(blank_store: Store) -> None:
    """A database created by the first release (only MIGRATIONS[0]) is brought up to date."""
    with blank_store.engine.begin() as conn:
        schema_version_t.create(conn)
        MIGRATIONS[0](conn)
        conn.execute(schema_version_t.insert().values(version=1, applied_at=T0))
    blank_store.ingest("feed", PollResult(events=[event()]), T0)
    assert blank_store.schema_version() == 1
    assert "ix_outbox_due" not in index_names(blank_store, "outbox")

    assert blank_store.migrate() == len(MIGRATIONS)
    assert blank_store.schema_version() == len(MIGRATIONS)
    assert {"ix_outbox_due"} <= index_names(blank_store, "outbox")
    assert {"ix_events_unprocessed"} <= index_names(blank_store, "events")
    assert {"ix_incidents_status"} <= index_names(blank_store, "incidents")
    assert [s.event.event_id for s in blank_store.events()] == ["E1"]


def test_version_4_adds_dead_at_to_an_older_outbox_keeping_its_rows(blank_store: Store) -> None:
    blank_store.migrate()
    enqueue(blank_store, [outbox_row()])
    with blank_store.engine.begin() as conn:  # as a version-3 database had it
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN dead_at"))
        conn.execute(sa.text("DROP TABLE silences"))
        conn.execute(schema_version_t.delete().where(schema_version_t.c.version >= 4))
    assert "dead_at" not in {c["name"] for c in sa.inspect(blank_store.engine).get_columns("outbox")}
    assert blank_store.migrate() == len(MIGRATIONS)
    (row,) = blank_store.messages()
    assert row.dead_at is None and row.body == "停电通知"
    blank_store.mark_dead(row.id, T0 + timedelta(hours=6), "HTTP 500 five times")
    (dead,) = blank_store.messages(status="dead")
    assert dead.dead_at == T0 + timedelta(hours=6) and dead.created_at == T0


# -- events ------------------------------------------------------------------------------------


def test_event_round_trips(store: Store) -> None:
    e = event(expected_restoration=T0 + timedelta(hours=2), device="FU1",
              start=datetime(2026, 3, 1, 9, 30, tzinfo=UTC) + timedelta(microseconds=0))
    counts = store.ingest("feed", PollResult(events=[e]), T0)
    assert (counts.inserted, counts.duplicates, counts.quarantined) == (1, 0, 0)
    (stored,) = store.events()
    assert stored.event == e  # every normalised field, raw excluded from equality
    assert stored.event.revision == e.revision
    assert stored.event.raw == {"id": "E1", "范围": "马集村"}
    assert stored.event.start.tzinfo is not None and stored.event.start == e.start
    assert stored.received_at == T0
    assert stored.incident_id is None


def test_bulk_ingest_reads_back_as_core_writes_it(store: Store) -> None:
    """A storm's batch (the SQLite fast path encodes columns itself) reads back exactly, and
    its times compare in SQL like rows written through Core."""
    cst = timezone(timedelta(hours=8))
    batch = [event(f"B{i}", start=(T0 - timedelta(seconds=i)).astimezone(cst),
                   status="restored" if i % 3 == 0 else "active",
                   end=T0 + timedelta(microseconds=i) if i % 3 == 0 else None,
                   expected_restoration=T0 + timedelta(hours=1) if i % 5 == 0 else None,
                   transformers=() if i % 2 else ("T1",),
                   raw={"i": i, "at": T0, "村": "马集"})  # a datetime JSON cannot take
             for i in range(600)]
    with store.transaction() as conn:
        counts = store.ingest_in(conn, "feed", PollResult(events=batch), T0,
                                 processed=lambda e: e.status == "restored")
    assert counts.inserted == 600 and len(counts.new_events) == 600
    with store.transaction() as conn:  # a Core-written row among them
        conn.execute(events_t.insert().values(
            source="feed", event_id="core", revision="r", kind="fault", status="active",
            start=T0 - timedelta(seconds=299, microseconds=500000), transformers=[],
            received_at=T0, processed=False))
    stored = {s.event.event_id: s for s in store.events(limit=1000)}
    for e in batch:
        got = stored[e.event_id]
        assert got.event == e and got.event.start == e.start and got.event.end == e.end
        assert got.event.raw == {"i": e.raw["i"], "at": str(T0), "村": "马集"}
        assert got.received_at == T0
    assert {s.event.event_id for s in store.unprocessed_events(1000)} == {
        e.event_id for e in batch if e.status == "active"} | {"core"}
    with store.engine.connect() as conn:
        later = conn.execute(sa.select(events_t.c.event_id).where(
            events_t.c.start > T0 - timedelta(seconds=300)).order_by(events_t.c.start)).scalars()
        assert list(later) == ["core"] + [f"B{i}" for i in range(299, -1, -1)]


def test_duplicate_events_are_skipped_and_counted(store: Store) -> None:
    first = store.ingest("feed", PollResult(events=[event("E1"), event("E2")]), T0)
    assert (first.inserted, first.duplicates) == (2, 0)
    again = store.ingest("feed", PollResult(events=[event("E1"), event("E2"), event("E3")]), T0)
    assert (again.inserted, again.duplicates) == (1, 2)
    # A new revision of the same record (ETR moved) is a new row.
    moved = event("E1", expected_restoration=T0 + timedelta(hours=3))
    assert moved.revision != event("E1").revision
    assert store.ingest("feed", PollResult(events=[moved]), T0).inserted == 1
    # The same id from another source is another record.
    assert store.ingest("other", PollResult(events=[event("E1", source="other")]), T0).inserted == 1
    assert store.count("events") == 5


def test_a_record_back_in_an_earlier_state_is_stored_again(store: Store) -> None:
    """停电 → 已复电 → 停电: the third state hashes to the first's revision, and is news all
    the same (the incident must reopen); a repeat of the latest state is still a duplicate."""
    dark, back = event("E1"), event("E1", status="restored", end=T0 + timedelta(minutes=10))
    for ev, inserted in ((dark, 1), (back, 1), (dark, 1), (dark, 0), (back, 1), (back, 0)):
        assert store.ingest("feed", PollResult(events=[ev]), T0).inserted == inserted, ev.status
    rows = [(s.event.status, s.event.revision) for s in store.events(limit=10)]
    assert sorted(rows) == sorted([("active", dark.revision), ("restored", back.revision),
                                   ("active", f"{dark.revision}~r3"),
                                   ("restored", f"{back.revision}~r4")])
    # One poll listing a state twice stores it once.
    assert store.ingest("feed", PollResult(events=[dark, dark]), T0).inserted == 1


def test_dedupe_is_a_database_constraint(store: Store) -> None:
    store.ingest("feed", PollResult(events=[event()]), T0)
    (stored,) = store.events()
    row = {"source": "feed", "event_id": "E1", "revision": stored.event.revision, "kind": "fault",
           "status": "active", "signal": "notice", "start": T0, "transformers": [],
           "area_text": "", "cause": "", "received_at": T0, "processed": False}
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(events_t.insert().values(**row))
    with store.engine.begin() as conn:  # a different revision is fine
        conn.execute(events_t.insert().values(**{**row, "revision": "other"}))
    assert store.count("events") == 2


def test_ingest_persists_events_quarantine_and_cursor_together(store: Store) -> None:
    result = PollResult(events=[event()],
                        quarantined=[Quarantined("feed", "start: expected a time", {"x": [1]})],
                        cursor={"etag": "W/\"abc\"", "page": 3})
    counts = store.ingest("feed", result, T0)
    assert counts.quarantined == 1
    assert store.count("events") == 1
    (q,) = store.quarantined()
    assert q["reason"] == "start: expected a time" and q["source"] == "feed"
    assert q["raw"] == '{"x": [1]}'
    assert store.kv_get("cursor:feed") == {"etag": "W/\"abc\"", "page": 3}


def test_ingest_is_atomic(store: Store) -> None:
    """If any part fails (here the cursor cannot be stored), nothing of the poll is kept."""
    store.kv_set("cursor:feed", {"offset": 1}, T0)
    result = PollResult(events=[event("E1"), event("E2")],
                        quarantined=[Quarantined("feed", "bad", "{oops")],
                        cursor={"offset": object()})  # not JSON-serialisable
    with pytest.raises(Exception):  # noqa: B017 - the driver's serialisation error
        store.ingest("feed", result, T0)
    assert store.count("events") == 0
    assert store.count("quarantine") == 0
    assert store.kv_get("cursor:feed") == {"offset": 1}
    # The same poll, fixed, goes through completely afterwards.
    result.cursor = {"offset": 2}
    assert store.ingest("feed", result, T0).inserted == 2
    assert store.kv_get("cursor:feed") == {"offset": 2}


def test_quarantine_keeps_raw_text_as_is(store: Store) -> None:
    store.quarantine(Quarantined("feed", "not valid JSON", "{truncated"), T0)
    (q,) = store.quarantined()
    assert q["raw"] == "{truncated"


def test_unprocessed_events_and_mark_processed(store: Store) -> None:
    store.ingest("feed", PollResult(events=[event("E1"), event("E2"), event("E3")]), T0)
    pending = store.unprocessed_events()
    assert [s.event.event_id for s in pending] == ["E1", "E2", "E3"]  # arrival order
    with store.transaction() as conn:
        store.mark_processed_in(conn, pending[0].row_id, "INC-1")
        store.mark_processed_in(conn, pending[2].row_id, None)
    assert [s.event.event_id for s in store.unprocessed_events()] == ["E2"]
    assert [s.event.event_id for s in store.events(incident_id="INC-1")] == ["E1"]


def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.enqueue_in(conn, [outbox_row()], T0)
        raise RuntimeError("crash after the write")
    assert store.count("outbox") == 0


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.kv_set("k", 1, datetime(2026, 1, 1))


# -- incidents ---------------------------------------------------------------------------------


def incident_row(iid: str, status: str = "active", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": iid, "feeder": "F1", "kind": "fault", "status": status,
                           "revision": 1, "start": T0, "etr": None, "end_time": None,
                           "fault_device": "FU1", "customers": 70, "state": {"id": iid},
                           "created_at": T0, "updated_at": T0}
    row.update(kw)
    return row


def test_incidents_upsert_and_filter(store: Store) -> None:
    with store.transaction() as conn:
        assert store.next_incident_number(conn, "INC-20260301-") == 1
        store.save_incident_in(conn, incident_row("INC-20260301-0001"))
        store.save_incident_in(conn, incident_row("INC-20260301-0002",
                                                  created_at=T0 + timedelta(minutes=1)))
        assert store.next_incident_number(conn, "INC-20260301-") == 3
        assert store.next_incident_number(conn, "INC-20260302-") == 1
    later = T0 + timedelta(hours=1)
    with store.transaction() as conn:
        store.save_incident_in(conn, incident_row("INC-20260301-0001", status="restored",
                                                  revision=2, end_time=later, updated_at=later,
                                                  created_at=later))
    row = store.get_incident("INC-20260301-0001")
    assert row is not None
    assert (row["status"], row["revision"], row["end_time"]) == ("restored", 2, later)
    assert row["created_at"] == T0  # the first save's creation time is kept
    assert [r["id"] for r in store.load_incidents()] == ["INC-20260301-0002"]
    assert [r["id"] for r in store.load_incidents(open_only=False)] == [
        "INC-20260301-0001", "INC-20260301-0002"]
    assert store.get_incident("nope") is None


# -- outbox ------------------------------------------------------------------------------------


def test_outbox_unique_key(store: Store) -> None:
    assert enqueue(store, [outbox_row(), outbox_row()]) == 1
    assert enqueue(store, [outbox_row()]) == 0
    # Any part of the key differing makes a new message.
    assert enqueue(store, [outbox_row(purpose="restored"), outbox_row(revision=2),
                           outbox_row(recipient="village:V2:sms:1"),
                           outbox_row(incident_id="INC-2")]) == 4
    assert store.count("outbox") == 5


def test_outbox_unique_key_is_a_database_constraint(store: Store) -> None:
    enqueue(store, [outbox_row()])
    values = {**outbox_row(body="another body").columns(), "status": "pending", "attempts": 0,
              "inflight_count": 0, "next_attempt_at": T0, "created_at": T0}
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(outbox_t.insert().values(**values))
    assert [m.body for m in store.messages()] == ["停电通知"]


def test_enqueued_row_defaults(store: Store) -> None:
    enqueue(store, [outbox_row()])
    (m,) = store.messages()
    assert (m.status, m.attempts, m.inflight_count) == ("pending", 0, 0)
    assert m.next_attempt_at == T0 and m.created_at == T0 and m.sent_at is None
    assert m.payload == {"mentions": ["13800000001"]}
    assert m.key == "INC-1/1/village:V1:wecom:g1/outage"


def test_due_messages_order_and_filter(store: Store) -> None:
    enqueue(store, [outbox_row("r-late")], T0 + timedelta(seconds=30))
    enqueue(store, [outbox_row("r-a"), outbox_row("r-b")], T0)
    enqueue(store, [outbox_row("r-early")], T0 - timedelta(seconds=30))
    enqueue(store, [outbox_row("r-future")], T0 + timedelta(hours=1))
    enqueue(store, [outbox_row("r-sent")], T0 - timedelta(hours=1))
    sent = next(m for m in store.messages() if m.recipient == "r-sent")
    store.mark_sent(sent.id, T0)

    due = store.due_messages(T0 + timedelta(minutes=1))
    assert [m.recipient for m in due] == ["r-early", "r-a", "r-b", "r-late"]
    assert [m.recipient for m in store.due_messages(T0 + timedelta(minutes=1), limit=2)] == [
        "r-early", "r-a"]
    assert [m.recipient for m in store.due_messages(T0)] == ["r-early", "r-a", "r-b"]
    # A retried message moves to where its next attempt puts it.
    a = next(m for m in due if m.recipient == "r-a")
    store.mark_retry(a.id, T0 + timedelta(seconds=45), "429")
    assert [m.recipient for m in store.due_messages(T0 + timedelta(minutes=1))] == [
        "r-early", "r-b", "r-late", "r-a"]


def test_outbox_status_transitions(store: Store) -> None:
    enqueue(store, [outbox_row()])
    (m,) = store.messages()

    assert store.mark_inflight(m.id, T0) is True
    m1 = store.messages()[0]
    assert (m1.status, m1.attempts, m1.inflight_count) == ("inflight", 1, 1)
    assert store.due_messages(T0 + timedelta(hours=1)) == []  # in flight is not due
    assert store.inflight_messages()[0].id == m.id
    assert store.mark_inflight(m.id, T0) is False  # only a pending message can be claimed

    later = T0 + timedelta(seconds=10)
    store.mark_retry(m.id, later, "HTTP 503")
    m2 = store.messages()[0]
    assert (m2.status, m2.inflight_count, m2.next_attempt_at, m2.last_error) == (
        "pending", 0, later, "HTTP 503")
    assert m2.attempts == 1

    assert store.mark_inflight(m.id, later) is True
    store.mark_retry(m.id, later, "interrupted", clear_inflight=False)
    assert store.messages()[0].inflight_count == 1
    assert store.mark_inflight(m.id, later) is True
    m3 = store.messages()[0]
    assert (m3.attempts, m3.inflight_count) == (3, 2)

    store.mark_sent(m.id, later, "errcode 0")
    m4 = store.messages()[0]
    assert (m4.status, m4.sent_at, m4.inflight_count, m4.last_error) == (
        "sent", later, 0, "errcode 0")
    assert store.mark_inflight(m.id, later) is False  # a sent message is never claimed again


def test_mark_dead_and_counts(store: Store) -> None:
    enqueue(store, [outbox_row("a"), outbox_row("b"), outbox_row("c")])
    a, b, _c = store.messages()
    store.mark_dead(a.id, T0, "errcode 310000 keywords not in content")
    store.mark_inflight(b.id, T0)
    dead = store.messages(status="dead")
    assert [m.recipient for m in dead] == ["a"]
    assert dead[0].last_error == "errcode 310000 keywords not in content"
    assert dead[0].sent_at is None
    assert store.due_messages(T0 + timedelta(days=1)) == [store.messages()[2]]
    assert store.outbox_counts() == {"dead": 1, "inflight": 1, "pending": 1}
    assert [m.recipient for m in store.messages(incident_id="INC-1")] == ["a", "b", "c"]
    assert store.messages(incident_id="INC-9") == []


# -- kv ----------------------------------------------------------------------------------------


def test_kv_set_overwrites_and_survives_reopening(store: Store) -> None:
    assert store.kv_get("ratelimit:wecom:g1") is None
    store.kv_set("ratelimit:wecom:g1", {"sent": [1, 2]}, T0)
    store.kv_set("ratelimit:wecom:g1", {"sent": [1, 2, 3], "名": "村"}, T0 + timedelta(seconds=1))
    store.kv_set("cursor:feed", ["a", 1, None, True], T0)
    url = store.url
    store.close()

    reopened = Store(url)
    try:
        assert reopened.migrate() == len(MIGRATIONS)  # already current: nothing re-applied
        assert reopened.kv_get("ratelimit:wecom:g1") == {"sent": [1, 2, 3], "名": "村"}
        assert reopened.kv_get("cursor:feed") == ["a", 1, None, True]
        assert reopened.count("kv") == 2
    finally:
        reopened.close()
