"""A read of several queries (``Store.reading``) takes no write lock: on SQLite the daemon's
writers go on while the board reads (the board's overview reads each held crew's deadline in
one), and the reader sees one consistent state."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from outage_sentinel.store import Store

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_a_reader_holds_no_write_lock(sqlite_store: Store) -> None:
    store = sqlite_store
    store.kv_set("probe", {"n": 1}, NOW)
    assert store.sqlite_path is not None
    with store.reading() as conn:
        assert store.kv_get_in(conn, "probe") == {"n": 1}
        writer = sqlite3.connect(store.sqlite_path, timeout=0)
        try:
            writer.execute("BEGIN IMMEDIATE")  # "database is locked" under a write lock
            writer.rollback()
        finally:
            writer.close()
        store.kv_set("probe", {"n": 2}, NOW)  # another writer, meanwhile
    assert store.kv_get("probe") == {"n": 2}


def test_a_reader_writes_nothing(store: Store) -> None:
    with store.reading() as conn:
        store.kv_set_in(conn, "probe", {"n": 3}, NOW)
    assert store.kv_get("probe") is None
