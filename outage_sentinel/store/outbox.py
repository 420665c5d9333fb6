"""The outbox: notifications written with the incident change that causes them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import outbox_t


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



class OutboxStore(StoreBase):
    """The ``outbox`` table."""

    def enqueue_in(self, conn: Connection, rows: Sequence[OutboxMessage], now: datetime) -> int:
        """Add outbox rows; a row whose unique key exists already is skipped. Returns added."""
        added = 0
        stmt = self.insert_stmt(outbox_t).on_conflict_do_nothing(
            index_elements=["incident_id", "revision", "recipient", "purpose"])
        for row in rows:
            values = {"status": "pending", "attempts": 0, "inflight_count": 0,
                      "next_attempt_at": now, "created_at": now, **row.columns()}
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
