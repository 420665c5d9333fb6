"""Events and the quarantine: what the sources brought, stored once, processed once."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, StatementError

from outage_sentinel.events import (
    EventError,
    OutageEvent,
    PollResult,
    Quarantined,
    Unstorable,
    nonfinite_key,
    nonfinite_reason,
    parse_time,
)
from outage_sentinel.store.kv import KvStore
from outage_sentinel.store.schema import events_t, quarantine_t


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the store (with its row id)."""

    row_id: int
    event: OutageEvent
    received_at: datetime
    incident_id: str | None


@dataclass(frozen=True)
class IngestCounts:
    inserted: int
    duplicates: int
    quarantined: int
    #: The events that were new (not already stored), in poll order.
    new_events: tuple[OutageEvent, ...] = ()
    #: What the store quarantined itself (counted in ``quarantined``): a stale copy of a
    #: record (a version of its source's older than one stored, :func:`judge_revision`), a
    #: cursor it cannot keep.
    refused: tuple[Quarantined, ...] = ()
    #: Quarantined payloads already kept within :data:`QUARANTINE_REPEAT_WINDOW` (not counted
    #: in ``quarantined``: the row's ``repeats`` and ``last_seen`` changed instead).
    repeated: tuple[Quarantined, ...] = ()


#: The same payload of a source with the same reason is kept (and counted) once in this long,
#: counted from the row's first sighting: a bad record a snapshot feed lists at every poll
#: makes one row a day, not one a poll.
QUARANTINE_REPEAT_WINDOW = timedelta(hours=24)


#: How the processor's quarantine reason of an event it failed to fold begins
#: (:meth:`EventStore.requeue_quarantined` puts such an event back for processing).
PROCESSING_FAILED = "processing failed"
#: What the reason of a quarantine row put back says after it (when, and by whom).
REQUEUED = "; re-queued "


class RequeueRefused(ValueError):
    """A quarantine row :meth:`EventStore.requeue_quarantined` does not put back, and why."""


def failed_event(reason: str, raw: str | None) -> tuple[int, str, str] | None:
    """The stored event a processing failure's quarantine row names — its events row, source
    and id, as the processor kept them in the payload — or ``None`` for any other row (a
    payload refused by validation was never stored: there is nothing to fold)."""
    if not reason.startswith(PROCESSING_FAILED):
        return None
    try:
        data = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    row, source, event_id = data.get("event_row"), data.get("source"), data.get("event_id")
    if type(row) is int and isinstance(source, str) and isinstance(event_id, str):
        return row, source, event_id
    return None


#: Where in its batch a source found a bad record (``page 2: record 3``, ``orders.csv row 5``,
#: ``line 7 item 1``): a reordered feed lists the same record at another place. A page alone
#: (``page 2: not JSON``) is not a record's place but what failed: it stays.
QUARANTINE_POSITION = re.compile(r"\b(?:page \d+: )?(record|row|line|item) \d+\b")


def quarantine_problem(reason: str) -> str:
    """``reason`` with the places of records in their batch left out (``record #``)."""
    return QUARANTINE_POSITION.sub(r"\1 #", reason)


def quarantine_digest(source: str, reason: str, raw: str) -> str:
    """What makes two quarantined payloads the same: sha256 of source, problem (the reason
    but for where in its batch the record was, :func:`quarantine_problem`) and raw text."""
    h = hashlib.sha256()
    for part in (source, quarantine_problem(reason), raw):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def refused_value(exc: BaseException) -> bool:
    """Whether a write failed for a value the database refuses (too long for its column, NaN
    in JSON, ...), not for the database being away: storing the rest without it succeeds."""
    if isinstance(exc, DataError | Unstorable):
        return True
    # a value refused before it reached the database (a bind processor raising ValueError)
    return type(exc) is StatementError and isinstance(exc.orig, ValueError | TypeError)


def refusal_reason(exc: BaseException) -> str:
    """The database's reason for refusing a value, in a line (``value too long for type
    character varying(100)``), without the statement SQLAlchemy adds."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


MARK_PROCESSED = (update(events_t).where(events_t.c.id == bindparam("row_id"))
                   .values(processed=True, incident_id=bindparam("incident")))


def event_row(e: OutageEvent, now: datetime, region: str) -> dict[str, Any]:
    return {
        "source": e.source, "event_id": e.event_id, "revision": e.revision, "kind": e.kind,
        "status": e.status, "signal": e.signal, "start": e.start, "etr": e.expected_restoration,
        "end_time": e.end, "feeder": e.feeder, "device": e.device,
        "transformers": list(e.transformers), "area_text": e.area_text, "cause": e.cause,
        "raw": jsonable(e.raw), "received_at": now, "processed": False, "region": region,
    }


def jsonable(value: Any) -> Any:
    """``value`` as the JSON column takes it; :class:`Unstorable` for a NaN / Infinity."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return json.loads(raw_json(value, strict=True))


def raw_json(value: Any, strict: bool = False) -> str:
    """A raw payload as JSON text; what JSON cannot take (a datetime) is kept as its string,
    a lone surrogate (not UTF-8) as U+FFFD. NUL is escaped by JSON itself (``\\u0000``).
    ``strict`` (for a JSON column): :class:`Unstorable` naming the key of a NaN / Infinity,
    which PostgreSQL refuses (a quarantined payload is kept as text, NaN and all)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=not strict)
    except ValueError as exc:
        found = nonfinite_key(value)
        raise Unstorable(nonfinite_reason(*found) if found else str(exc)) from None
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` any database column can hold: NUL written as ``\\x00``, lone surrogates as
    U+FFFD (only for text kept for people to read: quarantined payloads and reasons)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


#: Columns of an event row written by :class:`EventInsert` (all but ``id`` and ``incident_id``).
EVENT_COLUMNS = ("source", "event_id", "revision", "kind", "status", "signal", "start", "etr",
                  "end_time", "feeder", "device", "transformers", "area_text", "cause", "raw",
                  "received_at", "processed", "region")


def state_of(revision: str) -> str:
    """The content revision of a stored revision (``abc~r3`` is state ``abc`` seen again)."""
    head, sep, tail = revision.rpartition("~r")
    return head if sep and tail.isdigit() else revision


# -- a record's versions: the revisions its source gives ---------------------------------------

#: A version that is a counter ("7", "12"; the mapping writes a JSON number 9.0 as "9"). A
#: dotted one ("1.9", "1.10") may be a decimal or a release number: only the same or not.
_COUNTER = re.compile(r"\d+")
#: Digits this long may be a time (20260301, an epoch, 20260301090000): two of different
#: lengths are compared as times, if they are (a counter is rarely this long).
_TIME_DIGITS = 8
#: Reads a time twice: one without an offset of its own reads differently in another zone.
_OTHER_ZONE = timezone(timedelta(hours=1))

#: What :func:`judge_revision` says of a version: news, a copy of one stored, older than one.
NEW, DUPLICATE, STALE = "new", "duplicate", "stale"


def given_revision(event: OutageEvent) -> bool:
    """Whether ``event``'s revision is its source's own version of the record (a feed's
    ``revision`` field, a field answer's count), not the fingerprint of its content that an
    event without one gets (:meth:`OutageEvent.fingerprint`)."""
    return state_of(event.revision) != event.fingerprint()


def _revision_time(revision: str) -> tuple[datetime, bool] | None:
    """A version that is a time, as a feed writes times (:func:`parse_time`), and whether it
    gives its zone (an offset, an epoch); None when it is no time."""
    try:
        at = parse_time(revision, "revision", UTC)
        return at, at == parse_time(revision, "revision", _OTHER_ZONE)
    except (EventError, ValueError, OverflowError):
        return None


def revision_order(a: str, b: str) -> int | None:
    """-1, 0 or 1 as a source's version ``a`` of a record is older than, the same as or newer
    than ``b``: counters compare as numbers ("9" is older than "10"; digits of a time's
    length only with as many digits, else as times), times as times ("2026/3/1 8:45" is
    older than "2026-03-01 09:00:00"; a time with its zone is compared only with one with a
    zone too, one without only with one without). None when they are not both counters or
    both times (a dotted "1.9" and "1.10" among them): such versions are only the same or not."""
    if a == b:
        return 0
    if _COUNTER.fullmatch(a) and _COUNTER.fullmatch(b) and (
            len(a) == len(b) or max(len(a), len(b)) < _TIME_DIGITS):
        x, y = int(a), int(b)
        return (x > y) - (x < y)
    ta, tb = _revision_time(a), _revision_time(b)
    if ta is None or tb is None or ta[1] != tb[1]:
        return None
    return (ta[0] > tb[0]) - (ta[0] < tb[0])


def judge_revision(revision: str, history: Sequence[tuple[str, bool]]) -> tuple[str, str]:
    """What a source's own version ``revision`` of a record is, given the record's stored
    revisions (oldest first, each with whether its source gave it, :func:`given_revision`):
    ``(NEW, "")``; ``(DUPLICATE, "")``, a copy of a version stored (a lagging replica, a
    cache or a retried page serving it again); or ``(STALE, newer)``, older than the stored
    version ``newer`` (:func:`revision_order`). The source's newest version listed again
    after a revision of the daemon's own making (a snapshot record that left the list, ended
    by its fingerprint) is news: the record is back."""
    versions = [state_of(r) for r, given in history if given]
    if not versions:
        return NEW, ""
    if revision_order(revision, versions[-1]) == 0:
        return (DUPLICATE, "") if history[-1][1] else (NEW, "")
    if any(revision_order(revision, v) == 0 for v in versions):
        return DUPLICATE, ""
    newer = [v for v in versions if revision_order(revision, v) == -1]
    return (STALE, newer[-1]) if newer else (NEW, "")


def stale_copy(event: OutageEvent, newer: str) -> Quarantined:
    """The quarantine entry of a stale copy of a record (:data:`STALE`): not used, kept for
    the operator (``quarantine list``, the ``quarantined`` log line)."""
    return Quarantined(
        event.source,
        f"{event.event_id[:80]}: revision {event.revision!r} is older than revision "
        f"{newer!r} of the record, stored already: a stale copy (a lagging replica or cache, "
        "a page served again), not used",
        {"event": event.to_json(), "raw": event.raw})


class EventInsert:
    """The SQLite executemany of new event rows, encoded column by column.

    A storm brings thousands of AMI reports per poll. Through Core, every row of an executemany
    goes through SQLAlchemy's generic per-parameter type processing, which cost more than SQLite
    itself. Here each column's processor (the very ones Core uses, so rows read back the same;
    raw payloads as :func:`_jsonable` writes them) is applied directly, and values shared by the
    whole batch (``received_at``, the ``processed`` flags, common ``transformers`` lists) are
    encoded once.
    """

    def __init__(self, dialect: Any) -> None:
        stmt = sqlite.insert(events_t).values(
            {name: bindparam(name) for name in EVENT_COLUMNS}).on_conflict_do_nothing(
            index_elements=["region", "source", "event_id", "revision"])
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        order = tuple(compiled.positiontup or ())
        if order != EVENT_COLUMNS:  # rows below are built in this order
            raise RuntimeError(f"unexpected parameters in the event insert: {order}")

        def processor(name: str) -> Callable[[Any], Any]:
            proc = events_t.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            return proc if proc is not None else (lambda v: v)

        self.encode = {name: processor(name) for name in EVENT_COLUMNS}

    def run(self, conn: Connection, events: Iterable[OutageEvent], now: datetime,
            processed: Callable[[OutageEvent], bool] | None, region: str) -> None:
        enc = self.encode
        when = enc["start"]

        def raw(value: Any) -> str:  # one encoding, no test-encoding first
            return raw_json(value, strict=True)

        received = enc["received_at"](now)
        flags = {True: enc["processed"](True), False: enc["processed"](False)}
        tx_cache: dict[tuple[str, ...], Any] = {}
        rows = []
        for e in events:
            txs = tx_cache.get(e.transformers)
            if txs is None:
                txs = tx_cache[e.transformers] = enc["transformers"](list(e.transformers))
            rows.append((
                e.source, e.event_id, e.revision, e.kind, e.status, e.signal, when(e.start),
                None if e.expected_restoration is None else when(e.expected_restoration),
                None if e.end is None else when(e.end), e.feeder, e.device, txs, e.area_text,
                e.cause, raw(e.raw), received,
                flags[bool(processed(e)) if processed is not None else False], region))
        conn.exec_driver_sql(self.sql, rows)


def stored_event(m: Any) -> StoredEvent:
    event = OutageEvent(
        source=m["source"], event_id=m["event_id"], revision=m["revision"], kind=m["kind"],
        status=m["status"], signal=m["signal"], start=m["start"], expected_restoration=m["etr"],
        end=m["end_time"], feeder=m["feeder"], device=m["device"],
        transformers=tuple(m["transformers"] or ()), area_text=m["area_text"] or "",
        cause=m["cause"] or "", raw=m["raw"] or {}, stored=True,
    )
    return StoredEvent(int(m["id"]), event, m["received_at"], m["incident_id"])



def _requeue_refusal(m: Any) -> str | None:
    """Why a quarantined event's row ``m`` is not put back (``None``: it may be)."""
    if not m["processed"]:
        return "its event waits to be processed already"
    if m["incident_id"] is not None:
        return f"its event was folded into {m['incident_id']} since"
    return None


class EventStore(KvStore):
    """The ``events`` and ``quarantine`` tables."""

    def ingest(self, source: str, result: PollResult, now: datetime) -> IngestCounts:
        """Persist a poll's events, quarantined payloads and cursor in one transaction.

        Duplicates (same source, event id and revision) are skipped by the unique constraint;
        a stale copy of a record (its source's version older than one stored) is quarantined
        (:meth:`_fresh_events`).
        """
        with self.transaction() as conn:
            counts = self.ingest_in(conn, source, result, now)
        return counts

    def ingest_in(self, conn: Connection, source: str, result: PollResult,
                  now: datetime, *,
                  processed: Callable[[OutageEvent], bool] | None = None) -> IngestCounts:
        """:meth:`ingest` inside the caller's transaction. Events for which ``processed`` says
        so are stored as already handled (the caller handles them in this same transaction)."""
        fresh: dict[tuple[str, str, str], OutageEvent] = {}
        stale: list[Quarantined] = []
        if result.events:
            # Find what is already stored with one query per chunk, then insert the rest in one
            # executemany (a storm brings thousands of AMI reports per poll). The unique
            # constraint still guards against a concurrent writer (ON CONFLICT DO NOTHING).
            fresh, stale = self._fresh_events(conn, result.events)
            if fresh and self.dialect == "sqlite":
                insert = self.statements.get(EventInsert)
                if insert is None:
                    insert = self.statements[EventInsert] = EventInsert(self.engine.dialect)
                insert.run(conn, fresh.values(), now, processed, self.region)
            elif fresh:
                # PostgreSQL: SQLAlchemy batches an executemany into multi-row INSERTs.
                stmt = self.insert_stmt(events_t).on_conflict_do_nothing(
                    index_elements=["region", "source", "event_id", "revision"])
                values = [event_row(e, now, self.region) for e in fresh.values()]
                if processed is not None:
                    for value, e in zip(values, fresh.values(), strict=True):
                        value["processed"] = processed(e)
                conn.execute(stmt, values)
        refused = (*stale, *self._cursor_in(conn, source, result.cursor, now))
        kept: list[Quarantined] = []
        again: list[Quarantined] = []
        for q in (*result.quarantined, *refused):
            (kept if self.quarantine_in(conn, q, now) else again).append(q)
        return IngestCounts(len(fresh), len(result.events) - len(fresh) - len(stale),
                            len(kept), tuple(fresh.values()), refused, tuple(again))

    def _cursor_in(self, conn: Connection, source: str, cursor: dict[str, Any] | None,
                   now: datetime) -> tuple[Quarantined, ...]:
        """Keep the source's cursor; one the database cannot keep (a NaN in it) is
        quarantined instead, and the poll stored without it (the source reads it again)."""
        if cursor is None:
            return ()
        try:
            self.kv_set_in(conn, f"cursor:{source}", cursor, now)
        except Unstorable as exc:
            return (Quarantined(source, f"cursor not stored: {exc}", cursor),)
        return ()

    def _fresh_events(self, conn: Connection, events: Sequence[OutageEvent]
                      ) -> tuple[dict[tuple[str, str, str], OutageEvent], list[Quarantined]]:
        """The events not stored yet, by (source, event id, revision), and the stale copies
        among the rest (quarantined, :func:`stale_copy`).

        A repeat of the record's latest state is a duplicate. A record whose content returns
        to an earlier state (停电 → 已复电 → 停电, or a record inferred restored that the feed
        lists again) hashes to a revision already stored; it is a new state all the same, and
        is stored under that revision with ``~r<n>`` added. But a revision its source gave
        (:func:`given_revision`: the feed's version of the record) says which version it is:
        one stored already is a copy, one older than a stored one is stale
        (:func:`judge_revision`) — a lagging replica serving v1 after v2 must not reopen the
        outage nor flip its villages at every poll."""
        stored = self._stored_revisions(conn, events)
        changed = {(e.source, e.event_id) for e in events if (e.source, e.event_id) in stored
                   and state_of(stored[(e.source, e.event_id)][-1][1]) != e.revision}
        given = self._given_rows(conn, {(e.source, e.event_id) for e in events
                                        if (e.source, e.event_id) in changed
                                        and given_revision(e)})
        history = {key: [(r, row in given) for row, r in rows] for key, rows in stored.items()}
        repeated = {k for k, n in Counter((e.source, e.event_id) for e in events).items() if n > 1}
        fresh: dict[tuple[str, str, str], OutageEvent] = {}
        stale: list[Quarantined] = []
        for e in events:
            key = (e.source, e.event_id)
            past = history.setdefault(key, [])
            if past and state_of(past[-1][0]) == e.revision:
                continue  # the record's current state, seen again
            own = (bool(past) or key in repeated) and given_revision(e)
            verdict, newer = judge_revision(e.revision, past) if own else (NEW, "")
            if verdict == STALE:
                stale.append(stale_copy(e, newer))
            if verdict != NEW:
                continue
            if any(state_of(r) == e.revision for r, _ in past):
                e = replace(e, revision=f"{e.revision[:90]}~r{len(past) + 1}")
            fresh.setdefault((e.source, e.event_id, e.revision), e)
            past.append((e.revision, own))
        return fresh, stale

    def _stored_revisions(self, conn: Connection, events: Sequence[OutageEvent]
                          ) -> dict[tuple[str, str], list[tuple[int, str]]]:
        """(row id, revision) of every stored row of the events' records, in the order stored."""
        stored: dict[tuple[str, str], list[tuple[int, str]]] = {}
        by_source: dict[str, list[str]] = {}
        for e in events:
            by_source.setdefault(e.source, []).append(e.event_id)
        for src, ids in by_source.items():
            ids = list(dict.fromkeys(ids))
            for i in range(0, len(ids), 500):
                for row in conn.execute(
                        select(events_t.c.id, events_t.c.event_id, events_t.c.revision)
                        .where(self.in_region(events_t), events_t.c.source == src,
                               events_t.c.event_id.in_(ids[i:i + 500]))):
                    stored.setdefault((src, row[1]), []).append((row[0], row[2]))
        return {key: sorted(rows) for key, rows in stored.items()}

    def _given_rows(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> set[int]:
        """The stored rows of the records ``keys`` whose revision their source gave
        (:func:`given_revision`), by row id. Read only for records a source's version changed:
        a snapshot feed listing its records again at every poll costs no more than before."""
        by_source: dict[str, list[str]] = {}
        for source, event_id in keys:
            by_source.setdefault(source, []).append(event_id)
        out: set[int] = set()
        for src, ids in by_source.items():
            ids = sorted(ids)
            for i in range(0, len(ids), 500):
                for row in conn.execute(select(events_t).where(
                        self.in_region(events_t), events_t.c.source == src,
                        events_t.c.event_id.in_(ids[i:i + 500]))):
                    s = stored_event(row._mapping)
                    if given_revision(s.event):
                        out.add(s.row_id)
        return out

    def quarantine_in(self, conn: Connection, q: Quarantined, now: datetime) -> bool:
        """Keep a payload that failed, whatever it holds: a quarantined payload is exactly the
        one that may carry NUL or a lone surrogate, so both are made storable here. One kept
        already (same source, problem and raw: :func:`quarantine_digest`) within
        :data:`QUARANTINE_REPEAT_WINDOW` is not kept again: its row's ``last_seen`` and
        ``repeats`` change, and its reason is this one (the same record found elsewhere in a
        reordered batch: the row says where it was last). Whether a row was added."""
        raw = storable_text(q.raw if isinstance(q.raw, str) else raw_json(q.raw))
        source, reason = storable_text(q.source), storable_text(q.reason)
        digest = quarantine_digest(source, reason, raw)
        t = quarantine_t
        row = conn.execute(select(t.c.id).where(
            self.in_region(t), t.c.digest == digest,
            t.c.received_at > now - QUARANTINE_REPEAT_WINDOW).order_by(t.c.id.desc())
            .limit(1)).scalar()
        if row is not None:
            conn.execute(update(t).where(t.c.id == row).values(
                reason=reason, last_seen=now, repeats=t.c.repeats + 1))
            return False
        conn.execute(t.insert().values(source=source, reason=reason, raw=raw, received_at=now,
                                       region=self.region, digest=digest, last_seen=now,
                                       repeats=0))
        return True

    def quarantine(self, q: Quarantined, now: datetime) -> bool:
        """:meth:`quarantine_in` in a transaction of its own; whether a row was added."""
        with self.transaction() as conn:
            return self.quarantine_in(conn, q, now)

    def requeue_quarantined(self, quarantine_id: int, now: datetime, actor: str
                            ) -> StoredEvent:
        """Put the stored event of a processing failure's quarantine row back for processing
        (``quarantine retry``): a bug fixed since, the daemon folds it at its next run. The
        row's reason then says when and by whom (:data:`REQUEUED`); failing again, the event
        is quarantined again into the same row (``repeats``), its reason the failure's.
        Refused (:class:`RequeueRefused`, naming why) for a row of another region or none, a
        payload refused by validation, an event gone, waiting already, folded into an
        incident, or put back already from this row. Returns the event put back."""
        with self.transaction() as conn:
            q = conn.execute(select(quarantine_t.c.reason, quarantine_t.c.raw).where(
                self.in_region(quarantine_t), quarantine_t.c.id == quarantine_id)).mappings().first()
            if q is None:
                raise RequeueRefused(f"#{quarantine_id}: no quarantined payload of this id")
            named = failed_event(q["reason"], q["raw"])
            if named is None:
                raise RequeueRefused(f"#{quarantine_id}: not a processing failure (the payload "
                                     "was refused as it came: fix the source, it sends it again)")
            if REQUEUED in q["reason"]:
                raise RequeueRefused(f"#{quarantine_id}: re-queued already "
                                     f"({q['reason'].split(REQUEUED, 1)[1]})")
            m = conn.execute(select(events_t).where(
                self.in_region(events_t), events_t.c.id == named[0],
                events_t.c.source == named[1], events_t.c.event_id == named[2])).first()
            refusal = None if m is None else _requeue_refusal(m._mapping)
            if m is None or refusal is not None:
                raise RequeueRefused(f"#{quarantine_id}: {refusal or 'its event is gone'}")
            conn.execute(update(events_t).where(events_t.c.id == named[0])
                         .values(processed=False))
            stamp = now.astimezone(UTC).isoformat(timespec="seconds")
            conn.execute(update(quarantine_t).where(quarantine_t.c.id == quarantine_id).values(
                reason=storable_text(f"{q['reason']}{REQUEUED}{stamp} by {actor}")))
            return stored_event(m._mapping)

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(quarantine_t).where(self.in_region(quarantine_t))
                                .order_by(quarantine_t.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def unprocessed_events(self, limit: int = 1000) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(events_t).where(self.in_region(events_t),
                                                       events_t.c.processed.is_(False))
                                .order_by(events_t.c.id).limit(limit))
            return [stored_event(r._mapping) for r in rows]

    def events(self, *, incident_id: str | None = None, limit: int = 10000) -> list[StoredEvent]:
        q = select(events_t).where(self.in_region(events_t)).order_by(events_t.c.id).limit(limit)
        if incident_id is not None:
            q = q.where(events_t.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [stored_event(r._mapping) for r in conn.execute(q)]

    def events_by_signal(self, signal: str, limit: int = 1000) -> list[StoredEvent]:
        """The newest ``limit`` events of one signal (e.g. every trouble call), newest first."""
        q = select(events_t).where(self.in_region(events_t), events_t.c.signal == signal) \
            .order_by(events_t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [stored_event(r._mapping) for r in conn.execute(q)]

    def calls_between(self, start: datetime, end: datetime) -> dict[tuple[str, str], str | None]:
        """Trouble calls received in ``[start, end)``: ``(source, order id)`` -> the incident
        it joined (None: none), its latest revision counting."""
        q = (select(events_t.c.source, events_t.c.event_id, events_t.c.incident_id)
             .where(self.in_region(events_t), events_t.c.signal == "call",
                    events_t.c.received_at >= start,
                    events_t.c.received_at < end).order_by(events_t.c.id))
        with self.engine.connect() as conn:
            return {(r.source, r.event_id): r.incident_id for r in conn.execute(q)}

    def unattached_calls_in(self, conn: Connection, since: datetime, until: datetime
                            ) -> list[StoredEvent]:
        """Trouble calls already processed that joined no incident, their outage starting in
        ``[since, until]``: the latest row of each call, and only of a call no row of which
        belongs to an incident (a later revision of it goes where the call went)."""
        q = (select(events_t).where(self.in_region(events_t), events_t.c.signal == "call",
                                    events_t.c.start >= since, events_t.c.start <= until)
             .order_by(events_t.c.id))
        latest: dict[tuple[str, str], tuple[StoredEvent, bool]] = {}
        for r in conn.execute(q):
            s = stored_event(r._mapping)
            latest[(s.event.source, s.event.event_id)] = (s, bool(r._mapping["processed"]))
        if not latest:
            return []
        attached = self.member_incidents_in(conn, list(latest))
        return [s for key, (s, processed) in latest.items()
                if processed and s.incident_id is None and key not in attached]

    def mark_processed_in(self, conn: Connection, row_id: int, incident_id: str | None) -> None:
        conn.execute(MARK_PROCESSED, {"row_id": row_id, "incident": incident_id})

    def mark_many_processed_in(self, conn: Connection, row_ids: Sequence[int]) -> None:
        """Mark events processed (no incident) in bulk."""
        for i in range(0, len(row_ids), 500):
            conn.execute(update(events_t).where(events_t.c.id.in_(row_ids[i:i + 500]))
                         .values(processed=True))

    def processed_flags_in(self, conn: Connection, row_ids: Sequence[int]) -> dict[int, bool]:
        """``processed`` of each given event row (locked for update on PostgreSQL)."""
        out: dict[int, bool] = {}
        for i in range(0, len(row_ids), 500):
            q = select(events_t.c.id, events_t.c.processed).where(
                events_t.c.id.in_(list(row_ids[i:i + 500])))
            if self.dialect == "postgresql":
                q = q.with_for_update()
            out.update((int(r), bool(p)) for r, p in conn.execute(q))
        return out

    def member_incidents_in(self, conn: Connection, keys: Sequence[tuple[str, str]]
                            ) -> dict[tuple[str, str], tuple[int, str]]:
        """For each (source, event_id): (row id, incident id) of its newest row that belongs to
        an incident; keys with none are absent."""
        by_source: dict[str, list[str]] = {}
        for source, event_id in keys:
            by_source.setdefault(source, []).append(event_id)
        out: dict[tuple[str, str], tuple[int, str]] = {}
        for source, ids in by_source.items():
            uniq = sorted(set(ids))
            for i in range(0, len(uniq), 500):
                rows = conn.execute(select(events_t.c.id, events_t.c.event_id,
                                           events_t.c.incident_id)
                                    .where(self.in_region(events_t),
                                           events_t.c.source == source,
                                           events_t.c.event_id.in_(uniq[i:i + 500]),
                                           events_t.c.incident_id.is_not(None)))
                for row_id, event_id, incident_id in rows:
                    key = (source, str(event_id))
                    prev = out.get(key)
                    if prev is None or int(row_id) > prev[0]:
                        out[key] = (int(row_id), str(incident_id))
        return out

    def member_incident_in(self, conn: Connection, source: str, event_id: str) -> str | None:
        """The incident the newest row of (source, event_id) belongs to, if any."""
        row = conn.execute(select(events_t.c.incident_id)
                           .where(self.in_region(events_t), events_t.c.source == source,
                                  events_t.c.event_id == event_id,
                                  events_t.c.incident_id.is_not(None))
                           .order_by(events_t.c.id.desc()).limit(1)).first()
        return str(row[0]) if row else None

    def event_row_in(self, conn: Connection, event: OutageEvent) -> int | None:
        """The row id ``event`` (as stored: its source, id and revision) has, or None."""
        return conn.execute(select(events_t.c.id).where(
            self.in_region(events_t), events_t.c.source == event.source,
            events_t.c.event_id == event.event_id,
            events_t.c.revision == event.revision)).scalar()

    def last_event_row_in(self, conn: Connection, source: str) -> int:
        """The highest event row id stored for ``source`` (0: none)."""
        return int(conn.execute(select(func.max(events_t.c.id))
                                .where(self.in_region(events_t),
                                       events_t.c.source == source)).scalar() or 0)

    def events_after(self, row_id: int, sources: set[str] | frozenset[str],
                     chunk: int = 5000) -> Iterator[StoredEvent]:
        """Stored events of ``sources`` with a row id above ``row_id``, in id order."""
        last = row_id
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(events_t).where(
                    events_t.c.id > last, self.in_region(events_t),
                    events_t.c.source.in_(sorted(sources)))
                                    .order_by(events_t.c.id).limit(chunk)).all()
            if not rows:
                return
            for r in rows:
                yield stored_event(r._mapping)
            last = int(rows[-1]._mapping["id"])
