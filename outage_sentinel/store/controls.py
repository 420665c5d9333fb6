"""The command centre's word on single outbox messages, as the store writes it.

A dead or silenced message retried (:meth:`ControlStore.requeue`); a message withdrawn, held
or released (:meth:`ControlStore.control`, the actions of
:data:`~outage_sentinel.store.outbox.CONTROLS`), each only from a status its action allows, in
the statement that changes it, so a claim the deliverer made meanwhile
(:class:`~outage_sentinel.store.claims.ClaimStore`) stands; a message sent again going to its
recipient's current address, or past the silences muting it
(:data:`~outage_sentinel.store.outbox.PAST_SILENCES`). Whether a message may go again, and
where, is decided by :mod:`outage_sentinel.outbox_control` and :mod:`outage_sentinel.resend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.engine import Connection

from outage_sentinel.outgoing import Address
from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.outbox import CONTROLS, PAST_SILENCES
from outage_sentinel.store.schema import outbox_t


class ControlStore(StoreBase):
    """The command centre's retry, withdraw, hold and release of outbox messages, with the
    addresses and silences a message is sent on with."""

    def requeue(self, row_ids: Sequence[int] | None, now: datetime, note: str,
                addresses: Mapping[int, Address] | None = None,
                past_silences: Mapping[int, Sequence[int]] | None = None) -> list[int]:
        """Dead or silenced messages (the given ones, or every dead letter for ``None``) made
        pending again, due now, with a fresh count of attempts. Returns the ids requeued;
        a message sent or still pending is left alone (sending it again would be a
        duplicate, not a retry). A message whose recipient the contact directory now reaches
        elsewhere goes to its address in ``addresses`` (see :meth:`readdress_in`); one sent on
        past the silences muting it (forced) is marked so (``past_silences``: id -> the
        silences' ids, :meth:`past_silences_in`)."""
        cond = outbox_t.c.status.in_(("dead", "silenced")) if row_ids is not None \
            else outbox_t.c.status == "dead"
        q = select(outbox_t.c.id).where(self.in_region(outbox_t), cond)
        if row_ids is not None:
            q = q.where(outbox_t.c.id.in_(list(row_ids)))
        with self.transaction() as conn:
            ids = [int(i) for i in conn.execute(q.order_by(outbox_t.c.id)).scalars()]
            if ids:
                conn.execute(update(outbox_t).where(outbox_t.c.id.in_(ids)).values(
                    status="pending", attempts=0, inflight_count=0, interruptions=0,
                    next_attempt_at=now, dead_at=None, sent_at=None, last_error=note,
                    age_from=now))  # an operator's retry: its own retry window
                self.readdress_in(conn, {i: a for i, a in (addresses or {}).items()
                                         if i in ids}, now, note)
                self.past_silences_in(conn, ids, past_silences or {})
        return ids

    def control(self, row_ids: Sequence[int], action: str, now: datetime, note: str,
                addresses: Mapping[int, Address] | None = None,
                past_silences: Mapping[int, Sequence[int]] | None = None) -> list[int]:
        """The command centre's ``action`` (a key of :data:`CONTROLS`: withdraw, hold,
        release) on the given messages. Each changes only from a status the action allows,
        in one statement whose condition is that status: a message the deliverer claimed
        meanwhile (in flight) is left alone, and one withdrawn or held first is never claimed
        after (the claim, :meth:`~outage_sentinel.store.claims.ClaimStore.mark_inflight`,
        asks for ``pending``). ``note`` (who, why) is kept as its last word, after what that
        said (``… (was dead: HTTP 500)``); a released one is due now, with its own retry
        window (``age_from``: the hold's time counts as no time failing), at its address in
        ``addresses`` if given, marked as sent on past the silences in ``past_silences``
        (:meth:`requeue`). Returns the ids changed."""
        allowed, to = CONTROLS[action]
        values: dict[str, Any] = {"status": to, "last_error": literal(note) + " (was "
                                  + outbox_t.c.status + func.coalesce(
                                      ": " + outbox_t.c.last_error, "") + ")"}
        if action == "withdraw":
            values["dead_at"] = now
        if action == "release":
            # Its own retry window, as a retry's: time held on purpose is not time failing.
            values.update(next_attempt_at=now, last_error=note, age_from=now)
        stmt = update(outbox_t).where(
            self.in_region(outbox_t), outbox_t.c.id.in_(list(row_ids)),
            outbox_t.c.status.in_(allowed)).values(**values).returning(outbox_t.c.id)
        with self.transaction() as conn:
            done = sorted(int(i) for i in conn.execute(stmt).scalars())
            self.readdress_in(conn, {i: a for i, a in (addresses or {}).items() if i in done},
                              now, note)
            if action == "release":
                self.past_silences_in(conn, done, past_silences or {})
        return done

    def past_silences_in(self, conn: Connection, row_ids: Sequence[int],
                         past: Mapping[int, Sequence[int]]) -> None:
        """Messages ``row_ids`` sent again: those in ``past`` marked as sent on past those
        silences (:data:`PAST_SILENCES`), the rest no longer (a mark is for one send)."""
        if not row_ids:
            return
        rows = conn.execute(select(outbox_t.c.id, outbox_t.c.payload)
                            .where(outbox_t.c.id.in_(list(row_ids)))).all()
        for row_id, payload in rows:
            silences = sorted(past.get(int(row_id)) or ())
            if not silences and PAST_SILENCES not in (payload or {}):
                continue
            kept = {k: v for k, v in (payload or {}).items() if k != PAST_SILENCES}
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id).values(
                payload={**kept, PAST_SILENCES: silences} if silences else kept))

    def readdress_in(self, conn: Connection, addresses: Mapping[int, Address], now: datetime,
                     note: str) -> None:
        """Messages sent from now on to the given addresses (the directory's current entry
        for their recipient: a liaison's number fixed). The recipient, the message's identity,
        stays; each change is kept in ``payload["readdressed"]`` (from, to, when, ``note``:
        who), and ``last_error`` says so."""
        if not addresses:
            return
        rows = conn.execute(select(outbox_t.c.id, outbox_t.c.target, outbox_t.c.payload)
                            .where(outbox_t.c.id.in_(list(addresses)))).all()
        for row_id, target, payload in rows:
            to = addresses[int(row_id)]
            moves = [*((payload or {}).get("readdressed") or ()),
                     {"from": target, "to": to.target, "at": now.isoformat(), "by": note}]
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id).values(
                target=to.target, last_error=f"{note}; re-addressed",
                payload={**(payload or {}), "mentions": list(to.mentions),
                         "readdressed": moves}))
