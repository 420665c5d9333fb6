"""Silences: the command centre's mutes on notices, and what they match an incident by."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from outage_sentinel.silences import Silence
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import incidents_t, silences_t


class SilenceStore(StoreBase):
    """The ``silences`` table — adding a silence, reading those that hold, ending one — and
    the one read of the ``incidents`` table a silence needs: each incident's feeder and kind,
    what the deliverer's muter (:mod:`outage_sentinel.silencing`) matches a message by. The
    messages a silence mutes stay the outbox's
    (:meth:`~outage_sentinel.store.outbox.OutboxStore.mark_silenced`)."""

    def add_silence(self, silence: Silence) -> int:
        """Store a silence; returns its id."""
        values = {"matcher": silence.matcher, "value": silence.value,
                  "starts_at": silence.starts_at, "ends_at": silence.ends_at,
                  "reason": silence.reason, "actor": silence.actor, "force": silence.force}
        with self.transaction() as conn:
            key = conn.execute(silences_t.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def silences(self, *, holding_at: datetime | None = None) -> list[Silence]:
        """Every silence, newest first, or those holding at ``holding_at``."""
        q = select(silences_t).order_by(silences_t.c.id.desc())
        if holding_at is not None:
            q = q.where(silences_t.c.expired_at.is_(None), silences_t.c.starts_at <= holding_at,
                        silences_t.c.ends_at > holding_at)
        with self.engine.connect() as conn:
            return [Silence(**r._mapping) for r in conn.execute(q)]

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        """End a silence now; False if there is no such silence or it had ended."""
        with self.transaction() as conn:
            res = conn.execute(update(silences_t).where(
                silences_t.c.id == silence_id, silences_t.c.expired_at.is_(None),
                silences_t.c.ends_at > now).values(expired_at=now))
            return bool(res.rowcount)

    def incident_addresses(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Feeder and kind of each incident named (what a silence matches)."""
        if not ids:
            return {}
        q = select(incidents_t.c.id, incidents_t.c.feeder, incidents_t.c.kind) \
            .where(incidents_t.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return {r.id: {"feeder": r.feeder, "kind": r.kind} for r in conn.execute(q)}
