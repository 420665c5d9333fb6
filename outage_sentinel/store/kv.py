"""Small JSON state that must survive restarts (cursors, rate-limit windows, the storm)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    delete,
    select,
)
from sqlalchemy.engine import Connection

from outage_sentinel.events import json_for_store
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import kv_t

T = TypeVar("T")


#: Keys every region shares: the field links' secret and the short links themselves
#: (``field:link_secret``, ``field:link:<key>``: a link works on any region's board) and the
#: channels' rate-limit windows (a robot or an SMS account counts every region's requests).
#: Every other key belongs to the store's region.
SHARED_PREFIXES = ("field:link", "rate:")


def checked(key: str, value: Any) -> None:
    """Raise :class:`~outage_sentinel.events.Unstorable` (``kv cursor:feed: page: NaN ...``)
    unless the JSON column can hold ``value``."""
    try:
        json_for_store(value)
    except ValueError as exc:
        raise type(exc)(f"kv {key}: {exc}") from None


class KvStore(StoreBase):
    """The ``kv`` table. Keys are the region's own (``<region>/<key>`` in the table for a
    region other than ``default``) unless they start with one of :data:`SHARED_PREFIXES`."""

    def kv_key(self, key: str) -> str:
        """The key as stored for this store's region."""
        if self.region == "default" or key.startswith(SHARED_PREFIXES):
            return key
        return f"{self.region}/{key}"

    def kv_get(self, key: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(kv_t.c.value).where(kv_t.c.key == self.kv_key(key))
                                ).scalar()

    def kv_get_in(self, conn: Connection, key: str) -> Any:
        return conn.execute(select(kv_t.c.value).where(kv_t.c.key == self.kv_key(key))).scalar()

    def kv_set_in(self, conn: Connection, key: str, value: Any, now: datetime) -> None:
        """Store ``value`` under ``key``; :class:`~outage_sentinel.events.Unstorable` naming
        the key path of a NaN / Infinity in it (checked first: PostgreSQL's json refuses one,
        and with it the whole transaction)."""
        checked(key, value)
        stmt = self.insert_stmt(kv_t).values(key=self.kv_key(key), value=value, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                          set_={"value": value, "updated_at": now})
        conn.execute(stmt)

    def kv_set(self, key: str, value: Any, now: datetime) -> None:
        with self.transaction() as conn:
            self.kv_set_in(conn, key, value, now)

    def kv_setdefault(self, key: str, value: Any, now: datetime) -> Any:
        """The value under ``key``, storing ``value`` first if there is none (first writer
        wins; never fenced: every node may need it at start, leader or not)."""
        checked(key, value)
        with self.transaction(fenced=False) as conn:
            stmt = self.insert_stmt(kv_t).values(key=self.kv_key(key), value=value,
                                                 updated_at=now)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            return self.kv_get_in(conn, key)

    def kv_get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The values under ``keys`` (absent keys are left out)."""
        stored = {self.kv_key(k): k for k in keys}
        with self.engine.connect() as conn:
            rows = conn.execute(select(kv_t.c.key, kv_t.c.value)
                                .where(kv_t.c.key.in_(sorted(stored))))
            return {stored[str(k)]: v for k, v in rows}

    def kv_update(self, keys: Sequence[str],
                  change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, T]],
                  now: datetime) -> T:
        """Read ``keys`` locked against every other writer (every node and region), let
        ``change`` decide from their values (absent: left out), write the values it returns
        (None: nothing) and return its result, as one transaction."""
        stored = {self.kv_key(k): k for k in keys}
        order = sorted(stored)  # one lock order for every writer: no deadlock
        with self.transaction() as conn:
            q = select(kv_t.c.key, kv_t.c.value).where(kv_t.c.key.in_(order))
            if self.dialect == "postgresql":  # SQLite's write lock is taken at BEGIN already
                conn.execute(self.insert_stmt(kv_t).on_conflict_do_nothing(index_elements=["key"]),
                             [{"key": k, "value": {}, "updated_at": now} for k in order])
                q = q.order_by(kv_t.c.key).with_for_update()
            values = {stored[str(k)]: v for k, v in conn.execute(q) if v}
            new, result = change(values)
            for key, value in (new or {}).items():
                self.kv_set_in(conn, key, value, now)
            return result

    def kv_delete_in(self, conn: Connection, key: str) -> None:
        conn.execute(delete(kv_t).where(kv_t.c.key == self.kv_key(key)))

    def kv_forget(self, prefix: str, before: datetime) -> int:
        """Delete the keys under ``prefix`` not written since ``before``; how many."""
        stored = self.kv_key(prefix)
        with self.transaction() as conn:
            return int(conn.execute(delete(kv_t).where(kv_t.c.key.like(stored + "%"),
                                                       kv_t.c.updated_at < before)).rowcount or 0)
