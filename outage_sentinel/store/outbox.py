"""The outbox: notifications written with the incident change that causes them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from outage_sentinel.field_links import LINK_PREFIX, MAX_AGE
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store.claims import DELIVERING, ClaimStore
from outage_sentinel.store.schema import incidents_t, kv_t, outbox_t

#: A stored field link is written again (its ``issued`` renewed) at most this often.
LINK_REFRESH = timedelta(hours=1)
#: What the command centre may do to one message not delivered: the statuses it may be in,
#: and the status it takes. A message being sent (``inflight``) is in none of them: whether
#: it went is not known until its send settles.
CONTROLS: dict[str, tuple[tuple[str, ...], str]] = {
    "withdraw": (("pending", "held", "dead", "silenced"), "withdrawn"),
    "hold": (("pending",), "held"),
    "release": (("held",), "pending"),
}
#: How the record of a message the command centre withdrew begins (``withdrawn by board:li:
#: wrong village``, :mod:`outage_sentinel.outbox_control`); the daemon's own take-backs give
#: their reason, never this.
WITHDRAWN_BY = "withdrawn by "
#: Who takes back a message when no one is named: the daemon itself (a crew change it made, a
#: new estimate). A message the daemon takes back of itself, pending, keeps only the reason.
DAEMON = "daemon"
#: How the record of a message taken back by something done to its incident (a cancel, a crew
#: change) goes on after the reason: ``incident cancelled: 误报; taken back by operator:li (was
#: held: held by operator:wang: …)``. Not :data:`WITHDRAWN_BY`: that is the command centre's
#: own word about this one message (:meth:`OutboxStore.withdrawn_by_command_in`).
TAKEN_BACK_BY = "; taken back by "
#: The payload key of a message the command centre sent on past the silences muting it (a
#: forced retry or release): those silences' ids, which then mute it no more
#: (:meth:`outage_sentinel.silencing.Silencing.muted`). Set or cleared at each retry and
#: release, so it holds for that send only.
PAST_SILENCES = "past_silences"


@dataclass(frozen=True, kw_only=True)
class OutboxRow(OutboxMessage):
    """A stored message: what was asked to be sent, and how its delivery stands."""

    id: int
    status: str
    attempts: int
    inflight_count: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    dead_at: datetime | None = None
    #: The region whose leader sends it.
    region: str = "default"
    #: Sends whose outcome is unknown (cut off by a crash, a timeout waiting for the reply, a
    #: reply without the service's verdict): each a possible duplicate at the service. One is
    #: allowed and resent; at the next the message is dead-lettered (see
    #: :meth:`ClaimStore.settle_interrupted`). Only an operator's retry starts it afresh.
    interruptions: int = 0
    #: When its age limit counts from, if later than ``created_at``: the end of the last
    #: quiet-hours hold (see :func:`outage_sentinel.sending.age_from`).
    age_from: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.incident_id}/{self.revision}/{self.recipient}/{self.purpose}"



class OutboxStore(ClaimStore):
    """The ``outbox`` table, and the short field links its messages carry (kept with them in
    ``kv``). The deliverer's claims and their outcomes are
    :class:`~outage_sentinel.store.claims.ClaimStore`'s; the command centre's retry, withdraw,
    hold and release, :class:`~outage_sentinel.store.controls.ControlStore`'s; silences, which
    mute some of its messages, :class:`~outage_sentinel.store.silences.SilenceStore`'s."""

    def enqueue_in(self, conn: Connection, rows: Sequence[OutboxMessage], now: datetime) -> int:
        """Add outbox rows; a row whose unique key exists already is skipped. Returns added.
        The short field links the rows carry (``payload["field_links"]``) are kept in the same
        transaction: a link exists exactly when a message carrying it was queued."""
        added = 0
        stmt = self.insert_stmt(outbox_t).on_conflict_do_nothing(
            index_elements=["incident_id", "revision", "recipient", "purpose"])
        links: dict[str, dict[str, str]] = {}
        for row in rows:
            values = {"status": "pending", "attempts": 0, "inflight_count": 0,
                      "next_attempt_at": now, "created_at": now, "region": self.region,
                      **row.columns()}
            added += conn.execute(stmt, values).rowcount or 0
            links.update((link["key"], link) for link in row.payload.get("field_links") or ())
        self.keep_links_in(conn, list(links.values()), now)
        return added

    def enqueue_one_in(self, conn: Connection, row: OutboxMessage, now: datetime
                       ) -> int | None:
        """:meth:`enqueue_in` of one row; returns its id, or ``None`` when its key existed
        already (nothing added)."""
        if not self.enqueue_in(conn, [row], now):
            return None
        return int(conn.execute(select(outbox_t.c.id).where(
            outbox_t.c.incident_id == row.incident_id, outbox_t.c.revision == row.revision,
            outbox_t.c.recipient == row.recipient, outbox_t.c.purpose == row.purpose)
        ).scalar_one())

    def supersede_earlier_in(self, conn: Connection, row_id: int, incident_id: str,
                             recipient: str, purposes: Sequence[str], now: datetime,
                             reason: str) -> int:
        """The messages of ``purposes`` to ``recipient`` about ``incident_id`` queued before
        message ``row_id`` and not sent yet (pending: never tried, waiting, or to be tried
        again; not one being sent, nor one the command centre holds) superseded by it: kept
        with ``reason``, never sent. Returns how many."""
        res = conn.execute(update(outbox_t).where(
            self.in_region(outbox_t), outbox_t.c.id < row_id, outbox_t.c.status == "pending",
            outbox_t.c.incident_id == incident_id, outbox_t.c.recipient == recipient,
            outbox_t.c.purpose.in_(list(purposes)),
        ).values(status="superseded", last_error=reason, dead_at=now))
        return int(res.rowcount or 0)

    def last_gone_in(self, conn: Connection, incident_id: str, recipient: str,
                     purposes: Sequence[str]) -> tuple[datetime, OutboxRow] | None:
        """When the last message of ``purposes`` to ``recipient`` about ``incident_id`` went
        (sent: its ``sent_at``; being sent: its claim, ``next_attempt_at``), with the latest
        of those messages (what the recipient last read of the incident); ``None``: none."""
        q = (select(outbox_t).where(
            self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
            outbox_t.c.recipient == recipient, outbox_t.c.purpose.in_(list(purposes)),
            outbox_t.c.status.in_(("sent", "inflight")))
             .order_by(outbox_t.c.id.desc()).limit(50))
        rows = [OutboxRow(**r._mapping) for r in conn.execute(q)]
        if not rows:
            return None
        at = max((r.sent_at if r.status == "sent" and r.sent_at is not None
                  else r.next_attempt_at) for r in rows)
        return at, rows[0]

    def wait_in(self, conn: Connection, row_id: int, until: datetime, note: str) -> None:
        """A pending message due no earlier than ``until`` on purpose (not a failure: its
        age limit counts from then), ``note`` saying why."""
        conn.execute(update(outbox_t)
                     .where(outbox_t.c.id == row_id, outbox_t.c.status == "pending")
                     .values(next_attempt_at=until, last_error=note, age_from=until))

    def keep_links_in(self, conn: Connection, links: Sequence[dict[str, str]],
                      now: datetime) -> None:
        """Store short field links (``issued`` = ``now``, so a link's age counts from the last
        message carrying it, to within :data:`LINK_REFRESH`: a link stored more recently is
        not written again, so the transactions of one incident's notices do not queue on its
        rows); links issued longer ago than the maximum age go."""
        if not links:
            return
        keys = [LINK_PREFIX + link["key"] for link in links]
        fresh = {str(k) for k, at in conn.execute(
            select(kv_t.c.key, kv_t.c.updated_at).where(kv_t.c.key.in_(keys)))
            if now - at < LINK_REFRESH}
        if len(fresh) == len(keys):
            return
        conn.execute(delete(kv_t).where(kv_t.c.key.like(LINK_PREFIX + "%"),
                                        kv_t.c.updated_at < now - MAX_AGE))
        for link in links:
            if LINK_PREFIX + link["key"] in fresh:
                continue
            value = {k: link[k] for k in ("incident", "village", "recipient")}
            value["issued"] = now.isoformat()
            stmt = self.insert_stmt(kv_t).values(key=LINK_PREFIX + link["key"], value=value,
                                                 updated_at=now)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                                    set_={"value": value, "updated_at": now}))

    def due_messages(self, now: datetime, limit: int = 100,
                     exclude: Collection[tuple[str, str]] = ()) -> list[OutboxRow]:
        """Pending messages due at ``now``, oldest first; ``exclude`` leaves out the
        ``(channel, target)`` pairs whose delivery is still under way, so that a hung target's
        backlog never fills the batch and keeps other targets' messages from being read."""
        q = select(outbox_t).where(self.in_region(outbox_t), outbox_t.c.status == "pending",
                                   outbox_t.c.next_attempt_at <= now)
        for channel, target in exclude:
            q = q.where(~and_(outbox_t.c.channel == channel, outbox_t.c.target == target))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(outbox_t.c.next_attempt_at, outbox_t.c.id)
                                .limit(limit))
            return [OutboxRow(**r._mapping) for r in rows]

    def chain_messages(self, chains: Collection[tuple[str, str]]) -> list[OutboxRow]:
        """Every message of the given ``(incident id, recipient)`` chains, oldest first (what
        the deliverer orders a run's due messages by, :mod:`outage_sentinel.ordering`)."""
        if not chains:
            return []
        wanted = set(chains)
        q = select(outbox_t).where(
            self.in_region(outbox_t),
            outbox_t.c.incident_id.in_(sorted({i for i, _ in wanted})),
            outbox_t.c.recipient.in_(sorted({r for _, r in wanted})),
            outbox_t.c.status.in_(("pending", "inflight", "sent"))).order_by(outbox_t.c.id)
        with self.engine.connect() as conn:
            rows = [OutboxRow(**r._mapping) for r in conn.execute(q)]
        return [r for r in rows if (r.incident_id, r.recipient) in wanted]

    def mark_superseded(self, row_id: int, now: datetime, reason: str) -> bool:
        """A pending message made moot by a later one to the same recipient about the same
        incident (an off-notice by a back-notice, a summary by a newer summary): kept and
        shown with ``reason``, never sent."""
        with self.transaction() as conn:
            res = conn.execute(update(outbox_t)
                               .where(outbox_t.c.id == row_id, outbox_t.c.status == "pending")
                               .values(status="superseded", last_error=reason, dead_at=now))
            return bool(res.rowcount)

    def messages(self, *, status: str | None = None, incident_id: str | None = None,
                 ids: Collection[int] | None = None) -> list[OutboxRow]:
        q = self._outbox_query(None if status is None else (status,), None, incident_id)
        if ids is not None:
            q = q.where(outbox_t.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [OutboxRow(**r._mapping) for r in conn.execute(q.order_by(outbox_t.c.id))]

    def outbox_page(self, *, statuses: Collection[str] | None = None,
                    purpose: str | None = None, incident_id: str | None = None,
                    before: int | None = None, limit: int = 200) -> list[OutboxRow]:
        """At most ``limit`` messages, newest first: those with an id below ``before`` (the
        previous page's last), of ``statuses``, ``purpose`` and ``incident_id`` if given."""
        q = self._outbox_query(statuses, purpose, incident_id)
        if before is not None:
            q = q.where(outbox_t.c.id < before)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(outbox_t.c.id.desc()).limit(limit))
            return [OutboxRow(**r._mapping) for r in rows]

    def _outbox_query(self, statuses: Collection[str] | None, purpose: str | None,
                      incident_id: str | None) -> Select[Any]:
        """The region's messages, of ``statuses``, ``purpose`` and ``incident_id`` if given."""
        q = select(outbox_t).where(self.in_region(outbox_t))
        if statuses is not None:
            q = q.where(outbox_t.c.status.in_(list(statuses)))
        if purpose is not None:
            q = q.where(outbox_t.c.purpose == purpose)
        if incident_id is not None:
            q = q.where(outbox_t.c.incident_id == incident_id)
        return q

    def last_liaison_notice(self, channel: str, target: str, purposes: Sequence[str]
                            ) -> OutboxRow | None:
        """The latest liaison notice of ``purposes`` sent to ``target`` on ``channel`` (what
        a reply by SMS or in a robot's group answers: one still queued was never read)."""
        q = (select(outbox_t).where(self.in_region(outbox_t), outbox_t.c.channel == channel,
                                    outbox_t.c.target == target,
                                    outbox_t.c.audience == "liaison",
                                    outbox_t.c.purpose.in_(list(purposes)),
                                    outbox_t.c.status == "sent")
             .order_by(outbox_t.c.sent_at.desc().nulls_last(), outbox_t.c.id.desc())
             .limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
            return OutboxRow(**row._mapping) if row else None

    def inflight_messages(self, claimed_before: datetime | None = None) -> list[OutboxRow]:
        """Messages in flight; with ``claimed_before``, those claimed before it (a claim's time
        is its ``next_attempt_at``, :meth:`mark_inflight`)."""
        q = self._outbox_query(("inflight",), None, None)
        if claimed_before is not None:
            q = q.where(outbox_t.c.next_attempt_at < claimed_before)
        with self.engine.connect() as conn:
            return [OutboxRow(**r._mapping) for r in conn.execute(q.order_by(outbox_t.c.id))]

    def withdraw_pending_in(self, conn: Connection, incident_id: str,
                            purposes: Sequence[str] | None, now: datetime, reason: str,
                            recipients: Sequence[str] | None = None, *,
                            but: Sequence[str] = (), actor: str = DAEMON) -> int:
        """Messages of ``incident_id`` with ``purposes`` (``None``: any purpose but those in
        ``but``; to ``recipients``, or anyone) not sent yet (pending: never tried, or waiting
        to be tried again; held by the command centre; not one being sent) taken back: status
        ``withdrawn``, kept and shown, never sent. Returns how many. A message tried before
        may have reached its recipient: the caller asks :meth:`told_in` (or
        :meth:`heard_in`, after this: a claim made meanwhile is then seen in flight).
        The record (:func:`taken_back_note`) names ``actor`` (who did what took them back)
        and keeps what a held one said: the command centre must still see who held it and
        why."""
        cond = [self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
                outbox_t.c.status.in_(("pending", "held"))]
        if purposes is not None:
            cond.append(outbox_t.c.purpose.in_(list(purposes)))
        if but:
            cond.append(outbox_t.c.purpose.not_in(list(but)))
        if recipients is not None:
            cond.append(outbox_t.c.recipient.in_(list(recipients)))
        res = conn.execute(update(outbox_t).where(*cond)
                           .values(status="withdrawn", last_error=taken_back_note(reason, actor),
                                   dead_at=now))
        return int(res.rowcount or 0)

    def queued_in(self, conn: Connection, incident_id: str, purposes: Sequence[str]
                  ) -> set[str]:
        """Recipients of a message of ``incident_id`` with ``purposes`` in the outbox, sent or
        not, withdrawn and superseded ones apart."""
        return self._recipients_in(conn, incident_id, purposes,
                                   outbox_t.c.status.not_in(("withdrawn", "superseded")))

    def pending_in(self, conn: Connection, incident_id: str, purposes: Sequence[str]
                   ) -> set[str]:
        """Recipients of a message of ``incident_id`` with ``purposes`` still to be sent
        (pending or in flight; not one the command centre holds)."""
        return self._recipients_in(conn, incident_id, purposes,
                                   outbox_t.c.status.in_(("pending", "inflight")))

    def taken_back_in(self, conn: Connection, incident_id: str, purposes: Sequence[str]
                      ) -> set[str]:
        """Recipients of a message of ``incident_id`` with ``purposes`` that was withdrawn or
        superseded (a new one to them needs a key of its own)."""
        return self._recipients_in(conn, incident_id, purposes,
                                   outbox_t.c.status.in_(("withdrawn", "superseded")))

    def withdrawn_by_command_in(self, conn: Connection, incident_id: str,
                                purposes: Sequence[str]) -> set[str]:
        """Recipients of a message of ``incident_id`` with ``purposes`` that the command
        centre withdrew before it was tried to the end (pending or held; not one the daemon
        took back, nor a dead letter tidied away): its word that they get none."""
        return self._recipients_in(conn, incident_id, purposes, and_(
            outbox_t.c.status == "withdrawn",
            outbox_t.c.last_error.like(WITHDRAWN_BY + "%"),
            or_(outbox_t.c.last_error.like("% (was pending%"),
                outbox_t.c.last_error.like("% (was held%"))))

    def _recipients_in(self, conn: Connection, incident_id: str, purposes: Sequence[str],
                       status: Any) -> set[str]:
        """Recipients of a message of ``incident_id`` with ``purposes`` whose status meets
        ``status`` (a condition on ``outbox.status``)."""
        q = select(outbox_t.c.recipient).where(
            self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
            outbox_t.c.purpose.in_(list(purposes)), status)
        return {str(r) for r in conn.execute(q).scalars()}

    def latest_waiting_in(self, conn: Connection, incident_id: str, purposes: Sequence[str],
                          recipients: Sequence[str]) -> dict[str, bool]:
        """For each of ``recipients`` with a message of ``incident_id`` with ``purposes``,
        whether the latest of them is still waiting, never tried (pending or held, no
        attempt): what it says has not reached them."""
        q = (select(outbox_t.c.recipient, outbox_t.c.status, outbox_t.c.attempts)
             .where(self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
                    outbox_t.c.purpose.in_(list(purposes)),
                    outbox_t.c.recipient.in_(list(recipients)))
             .order_by(outbox_t.c.id))
        return {str(r): status in ("pending", "held") and not attempts
                for r, status, attempts in conn.execute(q)}

    def care_crews_in(self, conn: Connection, incident_id: str) -> dict[str, str]:
        """Each recipient of ``incident_id``'s special-care messages (withdrawn and superseded
        ones apart) with the crew the latest of them names as holding the list (``""``: it
        carries the list itself, or names liaisons as its holders)."""
        q = (select(outbox_t.c.recipient, outbox_t.c.payload)
             .where(self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
                    outbox_t.c.purpose == "care",
                    outbox_t.c.status.not_in(("withdrawn", "superseded")))
             .order_by(outbox_t.c.id))
        return {str(r): str((p or {}).get("crew_named") or "") for r, p in conn.execute(q)}

    def last_payload_in(self, conn: Connection, incident_id: str, purpose: str,
                        recipient: str) -> dict[str, Any] | None:
        """The payload of the latest ``purpose`` message of ``incident_id`` to ``recipient``
        that stands (withdrawn and superseded ones apart); ``None``: there is none."""
        q = (select(outbox_t.c.payload)
             .where(self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
                    outbox_t.c.purpose == purpose, outbox_t.c.recipient == recipient,
                    outbox_t.c.status.not_in(("withdrawn", "superseded")))
             .order_by(outbox_t.c.id.desc()).limit(1))
        row = conn.execute(q).first()
        return None if row is None else dict(row[0] or {})

    def last_village_purpose_in(self, conn: Connection, village: str, now: datetime
                                ) -> str | None:
        """The purpose of the last liaison message queued for ``village`` (any incident) that
        was or will be sent, about its supply now: what its people heard last of it
        (``None``: nothing). What was said of work not started yet (its announcement, its
        reminders, its cancellation) says nothing of the supply now, and is passed over."""
        pattern = "village:" + village.replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + ":%"
        ahead = (incidents_t.c.id.is_not(None)
                 & incidents_t.c.kind.in_(("planned", "temporary"))
                 & (incidents_t.c.start > now))
        q = (select(outbox_t.c.purpose)
             .select_from(outbox_t.outerjoin(incidents_t,
                                             incidents_t.c.id == outbox_t.c.incident_id))
             .where(self.in_region(outbox_t), outbox_t.c.audience == "liaison",
                    outbox_t.c.recipient.like(pattern, escape="\\"),
                    outbox_t.c.status.in_(("pending", "inflight", "sent")),
                    ~outbox_t.c.purpose.like("reminder%"), ~ahead)
             .order_by(outbox_t.c.id.desc()).limit(1))
        found = conn.execute(q).scalar()
        return None if found is None else str(found)

    def told_in(self, conn: Connection, incident_id: str, purposes: Sequence[str]
                ) -> set[str]:
        """Recipients a message of ``incident_id`` with ``purposes`` reached or may have
        reached (sent, being sent, dead, or tried: a pending, held, superseded or withdrawn one
        only if it was tried; a silenced one never)."""
        status = outbox_t.c.status
        q = select(outbox_t.c.recipient).where(
            self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
            outbox_t.c.purpose.in_(list(purposes)), status != "silenced",
            status.not_in(("pending", "held", "superseded", "withdrawn"))
            | (outbox_t.c.attempts > 0))
        return {str(r) for r in conn.execute(q).scalars()}

    def heard_in(self, conn: Connection, incident_id: str, recipients: Sequence[str]
                 ) -> list[OutboxRow]:
        """The messages of ``incident_id`` to ``recipients`` that reached them (sent), may
        have (being sent; a send whose outcome never came back, counted in ``interruptions``;
        a long text sent in part), or are still to go (pending or held), oldest first: what
        each has heard of the incident, or will. One only refused (the service certainly did
        not take it: a retry, a dead letter), silenced, withdrawn or superseded before any of
        it went reached nobody — unlike :meth:`told_in`, which counts every one tried."""
        if not recipients:
            return []
        q = (select(outbox_t)
             .where(self.in_region(outbox_t), outbox_t.c.incident_id == incident_id,
                    outbox_t.c.recipient.in_(list(recipients)))
             .order_by(outbox_t.c.id))
        rows = [OutboxRow(**r._mapping) for r in conn.execute(q)]
        return [r for r in rows if r.status in ("sent", "inflight", "pending", "held")
                or r.interruptions or int((r.payload or {}).get("parts_sent") or 0)]

    def mark_sent_as(self, row_id: int, now: datetime, detail: str, body: str,
                     said: Mapping[str, Any]) -> None:
        """:meth:`mark_sent` for a message whose words were made true when it went
        (:func:`outage_sentinel.delivery.as_sent`): in the same statement its ``body`` and the
        payload keys in ``said`` (its params) become what was sent, so the board and
        ``/api/outbox``, which show the row, show what the recipient read — not the text
        queued. Like :meth:`mark_sent`, only from the statuses the deliverer left it in."""
        with self.transaction() as conn:
            payload = self.payload_for_update_in(conn, row_id)
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id,
                                                outbox_t.c.status.in_(DELIVERING))
                         .values(status="sent", sent_at=now, inflight_count=0,
                                 last_error=detail or None, body=body,
                                 payload={**payload, **said}))

    def mark_parts_sent_as(self, row_id: int, parts: int, of: int, body: str,
                           said: Mapping[str, Any]) -> None:
        """:meth:`mark_parts_sent` for a message whose words were made true when it went: its
        ``body`` and ``said`` kept with the count, in one write. Once a part went the text is
        frozen: a retry sends the rest of this text (read back from the row), never one
        rendered anew, whose lines a late line would shift across the cut."""
        with self.transaction() as conn:
            payload = self.payload_for_update_in(conn, row_id)
            conn.execute(update(outbox_t).where(outbox_t.c.id == row_id).values(
                body=body, payload={**payload, **said, "parts_sent": parts, "parts": of}))

    def payload_for_update_in(self, conn: Connection, row_id: int) -> dict[str, Any]:
        """A message's payload, its row locked until the transaction ends (PostgreSQL; SQLite
        writes one at a time anyway): the keys another write added meanwhile (a part's
        count) are kept, not overwritten by a copy read before it."""
        payload = conn.execute(select(outbox_t.c.payload).where(outbox_t.c.id == row_id)
                               .with_for_update()).scalar()
        return dict(payload or {})

    def mark_silenced(self, row_id: int, now: datetime, reason: str) -> bool:
        """A pending message muted by a silence: kept, never sent (unless retried)."""
        with self.transaction() as conn:
            res = conn.execute(update(outbox_t)
                               .where(outbox_t.c.id == row_id, outbox_t.c.status == "pending")
                               .values(status="silenced", last_error=reason, dead_at=now))
            return bool(res.rowcount)

    def outbox_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox_t.c.status, func.count())
                                .where(self.in_region(outbox_t)).group_by(outbox_t.c.status))
            return {str(s): int(n) for s, n in rows}


def taken_back_note(reason: str, actor: str = DAEMON) -> Any:
    """The record of a message :meth:`OutboxStore.withdraw_pending_in` takes back (an SQL
    expression, as the row's status and last word are read in the same statement):
    ``reason``, then who (``actor``) and what it was before, as the command centre's own
    withdrawal keeps it (``(was held: held by operator:wang: …)``) — a hold's who and why must
    not vanish with it. A pending message the daemon takes back of itself keeps the reason
    alone: nobody's word is lost, and its last word was only the deliverer's (a retry, quiet
    hours)."""
    was = (literal(f"{reason}{TAKEN_BACK_BY}{actor} (was ") + outbox_t.c.status
           + func.coalesce(": " + outbox_t.c.last_error, "") + ")")
    if actor != DAEMON:
        return was
    return case((outbox_t.c.status == "held", was), else_=literal(reason))
