"""Small JSON state that must survive restarts (cursors, rate-limit windows, the storm)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.engine import Connection

from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import kv_t


class KvStore(StoreBase):
    """The ``kv`` table."""

    def kv_get(self, key: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(kv_t.c.value).where(kv_t.c.key == key)).scalar()

    def kv_get_in(self, conn: Connection, key: str) -> Any:
        return conn.execute(select(kv_t.c.value).where(kv_t.c.key == key)).scalar()

    def kv_set_in(self, conn: Connection, key: str, value: Any, now: datetime) -> None:
        stmt = self.insert_stmt(kv_t).values(key=key, value=value, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                          set_={"value": value, "updated_at": now})
        conn.execute(stmt)

    def kv_set(self, key: str, value: Any, now: datetime) -> None:
        with self.transaction() as conn:
            self.kv_set_in(conn, key, value, now)

    def kv_setdefault(self, key: str, value: Any, now: datetime) -> Any:
        """The value under ``key``, storing ``value`` first if there is none (first writer
        wins; never fenced: every node may need it at start, leader or not)."""
        with self.transaction(fenced=False) as conn:
            stmt = self.insert_stmt(kv_t).values(key=key, value=value, updated_at=now)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            return self.kv_get_in(conn, key)
