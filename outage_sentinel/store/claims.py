"""The deliverer's writes on outbox rows: the claim before a send and the outcome after it.

Every write here starts from the statuses the deliverer itself left the row in (a message it
read as due, or claimed), in the statement that changes it, so an operator's word in between
(withdraw, hold) stands, and a write repeated after a lost commit acknowledgement (the database
dropped the connection at the commit, :meth:`ClaimStore.is_transient`) changes nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import outbox_t

#: The statuses the deliverer's own writes start from: a message it read as due (pending)
#: or claimed (inflight). A message withdrawn or held meanwhile is left as the operator left it.
DELIVERING = ("pending", "inflight")


class ClaimStore(StoreBase):
    """Claims of outbox messages and the outcomes of their sends."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """Whether ``exc`` is the database being briefly away (a dropped connection, a
        failover, a lock wait given up): the write may be tried again."""
        if isinstance(exc, (OperationalError, InterfaceError)):
            return True
        return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)

    def mark_inflight(self, row_id: int, now: datetime, target: str | None = None) -> bool:
        """Claim a pending message before sending it (committed, so a crash leaves a trace);
        with ``target``, only while it still goes there (a release re-addressed it since it
        was read: the copy in hand would go to the old address). While it is in flight its
        ``next_attempt_at`` says when it was claimed (``now``): how long its send has been
        under way, for the deliverer's sweep of sends whose outcome was never recorded."""
        where = [outbox_t.c.id == row_id, outbox_t.c.status == "pending"]
        if target is not None:
            where.append(outbox_t.c.target == target)
        with self.transaction() as conn:
            res = conn.execute(update(outbox_t)
                               .where(*where)
                               .values(status="inflight", next_attempt_at=now,
                                       inflight_count=outbox_t.c.inflight_count + 1,
                                       attempts=outbox_t.c.attempts + 1))
            return bool(res.rowcount)

    def mark_sent(self, row_id: int, now: datetime, detail: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id,
                                                outbox_t.c.status.in_(DELIVERING))
                         .values(status="sent", sent_at=now, inflight_count=0,
                                 last_error=detail or None))

    def unclaim(self, row_id: int) -> None:
        """A claimed message not sent after all (its digest must be rebuilt): pending again
        as it was before :meth:`mark_inflight` counted the claim."""
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id,
                                                outbox_t.c.status == "inflight")
                         .values(status="pending",
                                 inflight_count=outbox_t.c.inflight_count - 1,
                                 attempts=outbox_t.c.attempts - 1))

    def mark_retry(self, row_id: int, next_at: datetime, error: str, *,
                   clear_inflight: bool = True, age_from: datetime | None = None) -> None:
        """Pending again from ``next_at``: the service certainly did not take it, or it was
        not sent at all (deferred, held by quiet hours: ``age_from``, the hold's end, is when
        its age limit counts from). A send that may have arrived is :meth:`settle_interrupted`
        instead."""
        values: dict[str, Any] = {"status": "pending", "next_attempt_at": next_at,
                                  "last_error": error}
        if clear_inflight:
            values["inflight_count"] = 0
        if age_from is not None:
            values["age_from"] = age_from
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id,
                                                outbox_t.c.status.in_(DELIVERING))
                         .values(**values))

    def settle_interrupted(self, row_id: int, next_at: datetime, now: datetime, *,
                           allowed: int, resend_note: str, dead_note: str
                           ) -> Literal["resend", "dead"] | None:
        """A message in flight whose send's outcome is unknown (cut off by a crash or a
        database error before it was recorded, a timeout waiting for the reply, a reply
        without a verdict): counted in ``interruptions``, and pending again from ``next_at``
        while it has had fewer than ``allowed`` such sends (``"resend"``), else dead-lettered
        (``"dead"``) rather than risk one duplicate more. ``None``: it was not in flight any
        more (another settled it first). One transaction: the count never races. Asked again
        after a commit whose acknowledgement was lost, it answers what that commit did (the
        row as these notes left it), so the caller still tells of the dead letter."""
        mine = (outbox_t.c.id == row_id, outbox_t.c.status == "inflight")
        more = outbox_t.c.interruptions + 1
        with self.transaction() as conn:
            if conn.execute(update(outbox_t).where(*mine, outbox_t.c.interruptions < allowed)
                            .values(status="pending", next_attempt_at=next_at,
                                    last_error=resend_note, interruptions=more)).rowcount:
                return "resend"
            if conn.execute(update(outbox_t).where(*mine).values(
                    status="dead", last_error=dead_note, sent_at=None, dead_at=now,
                    interruptions=more)).rowcount:
                return "dead"
            left = conn.execute(select(outbox_t.c.status, outbox_t.c.last_error)
                                .where(outbox_t.c.id == row_id)).first()
        if left is not None and tuple(left) == ("dead", dead_note):
            return "dead"
        if left is not None and tuple(left) == ("pending", resend_note):
            return "resend"
        return None

    def mark_dead(self, row_id: int, now: datetime, error: str) -> None:
        with self.transaction() as conn:
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id,
                                                outbox_t.c.status.in_(DELIVERING))
                         .values(status="dead", last_error=error, sent_at=None, dead_at=now))

    def record_digest(self, digest: OutboxMessage, covered: Sequence[int], now: datetime,
                      detail: str,
                      said: Mapping[int, tuple[str, Mapping[str, Any]]] | None = None) -> int:
        """A confirmed digest: stored as its own ``sent`` row (what the group read, with the
        ids it covers in ``payload["covers"]``), and the covered messages marked sent by it
        (``payload["digest"]`` = its id) — those whose words were made true when they went
        with their ``(body, payload keys)`` as sent (``said``) — in one transaction. Returns
        the digest's id; asked again for messages a digest already covers (a commit whose
        acknowledgement was lost), it returns that digest's id and stores nothing."""
        with self.transaction() as conn:
            rows = conn.execute(select(outbox_t.c.id, outbox_t.c.payload, outbox_t.c.status)
                                .where(outbox_t.c.id.in_(list(covered)))).all()
            done = {(p or {}).get("digest") for _, p, st in rows if st == "sent"}
            earlier = done.pop() if len(done) == 1 else None
            if earlier is not None and all(st == "sent" for _, _, st in rows):
                return int(earlier)
            values = {"status": "sent", "attempts": 1, "inflight_count": 0,
                      "next_attempt_at": now, "created_at": now, "sent_at": now,
                      "last_error": detail or None, "region": self.region, **digest.columns()}
            values["payload"] = {**values["payload"], "covers": list(covered)}
            key = conn.execute(outbox_t.insert().values(**values)).inserted_primary_key
            assert key is not None
            digest_id = int(key[0])
            for row_id, payload, _ in rows:
                body, keys = (said or {}).get(row_id, (None, {}))
                conn.execute(update(outbox_t).where(outbox_t.c.id == row_id).values(
                    status="sent", sent_at=now, inflight_count=0,
                    last_error=f"in digest #{digest_id}: {detail}",
                    payload={**(payload or {}), **keys, "digest": digest_id},
                    **({"body": body} if body is not None else {})))
            return digest_id

    def mark_parts_sent(self, row_id: int, parts: int, of: int) -> None:
        """A message sent in parts: the first ``parts`` of ``of`` are confirmed (kept in its
        payload as ``parts_sent`` / ``parts``, so a retry, even after a restart, sends only the
        rest and the board can tell how far it got)."""
        with self.transaction() as conn:
            payload = conn.execute(select(outbox_t.c.payload)
                                   .where(outbox_t.c.id == row_id)).scalar_one()
            payload = {**(payload or {}), "parts_sent": parts, "parts": of}
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id)
                         .values(payload=payload))

    def postpone(self, row_id: int, until: datetime) -> None:
        """A pending message due no earlier than ``until`` (it waits for another)."""
        with self.transaction() as conn:
            conn.execute(update(outbox_t)
                         .where(outbox_t.c.id == row_id, outbox_t.c.status == "pending",
                                outbox_t.c.next_attempt_at < until)
                         .values(next_attempt_at=until))
