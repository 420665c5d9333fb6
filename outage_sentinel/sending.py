"""One delivery group's messages through their channel: what a ``(channel, target)`` job does
on its channel's lane (:mod:`outage_sentinel.delivery` says why groups, lanes and the guarantees
below). A message is claimed in its own committed transaction before it is sent, and ``sent``
only once the channel confirmed it; a failure is retried on the
:class:`~outage_sentinel.retry.RetryPolicy` or dead-lettered; a rate-limited channel's messages
are weighed per limiter key against the window (:mod:`outage_sentinel.shared_limits`), the
surplus merged into digests (:mod:`outage_sentinel.digest`) or deferred.

A send whose outcome is unknown — the service may hold the message: a timeout waiting for its
reply, a reply without its verdict (``SendResult.uncertain``), or a crash or database error
before the outcome was recorded — is resent once at most (:meth:`GroupSender.settle_interrupted`,
counted in the row's ``interruptions``, which only an operator's retry resets); at the next such
send the message is dead-lettered as "delivery uncertain". A service that refuses the target for
a while (``SendResult.rate_limited``: DingTalk 130101, WeCom 45009, Aliyun flow control, HTTP
429, a Tencent number's daily limit) blocks that target — for a message sent in parts, the
target of the part refused: a Tencent SMS's one number — in the shared rate-limit state until
its hint runs out, so the group's other messages wait (and are merged into a digest) instead of
each trying once. A message in parts goes as far as its first part whose target is blocked and
takes its limiter slot for the parts before it that it still owes (:meth:`GroupSender._slot`):
a Tencent SMS resumed after some numbers got it counts only the others, and one whose second
number is held reaches the first at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from outage_sentinel.channels.base import (
    Channel,
    Digestible,
    Message,
    Outcome,
    SendResult,
    Splitting,
)
from outage_sentinel.channels.registry import rate_keys_of, rate_limits_of
from outage_sentinel.digest import DigestPart, build_digest
from outage_sentinel.logs import redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.ordering import ChainGate, chain_of
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import Decision, RateLimit
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.shared_limits import SharedLimits
from outage_sentinel.store import OutboxRow, Store

T = TypeVar("T")

#: Sends with the outcome unknown a message may have had and still be sent again: "a crash
#: between send and mark may resend once, never more" (crashes and unconfirmed replies alike).
UNCERTAIN_SENDS = 1
#: How long an outcome is tried again while the database is briefly away (a failover, a
#: dropped connection) before it is left in flight for the deliverer's sweep.
RECORD_PATIENCE_SECONDS = 10.0
#: How long a target is held back when the service refused it without saying for how long.
BLOCK_WITHOUT_HINT_SECONDS = 60.0
#: The payload key of a message whose words were made true when it went (its value: when;
#: :func:`outage_sentinel.delivery.as_sent`): its body and params are kept as sent, so the
#: board shows what was said, and once a part of it went they are what a retry sends.
AS_SENT = "as_sent"


def age_from(row: OutboxRow) -> datetime:
    """When ``row``'s age limit (``max_age_seconds``) starts counting: when it was queued, or
    when quiet hours last let it go (``row.age_from``), whichever is later — time held by
    quiet hours is not time spent failing."""
    return row.created_at if row.age_from is None else max(row.created_at, row.age_from)


def message_of(row: OutboxRow) -> Message:
    """The channel message for an outbox row."""
    payload: Mapping[str, Any] = row.payload or {}
    return Message(
        key=row.key,
        channel=row.channel,
        target=row.target,
        text=row.body,
        subject=row.subject,
        markdown=payload.get("markdown"),
        mentions=tuple(payload.get("mentions") or ()),
        audience=row.audience,
        purpose=row.purpose,
        incident_id=row.incident_id,
        params=payload.get("params") or {},
    )


def parts_sent(row: OutboxRow) -> int:
    """How many parts of a message sent in parts were confirmed (0: none, or not in parts)."""
    return int((row.payload or {}).get("parts_sent") or 0)


#: The payload keys that hold a message's words as a channel sends them, kept as sent: an
#: SMS template's ``params`` and the ``markdown`` a group robot sends instead of the body
#: (the body itself is the row's own column).
SAID_KEYS = ("params", "markdown")


def said_of(row: OutboxRow) -> dict[str, Any] | None:
    """The payload keys to keep on ``row``'s stored message when it goes — its words as each
    channel got them (:data:`SAID_KEYS`: an escalation counted again at send says 已超N分钟 in
    its robot's markdown too, and the record must not show the 剩N分钟 it was queued with)
    and :data:`AS_SENT` — or ``None`` when its words are as queued (nothing to keep)."""
    payload: Mapping[str, Any] = row.payload or {}
    if AS_SENT not in payload:
        return None
    said = {key: payload[key] for key in SAID_KEYS if payload.get(key) is not None}
    return {**said, "params": payload.get("params") or {}, AS_SENT: payload[AS_SENT]}


class Outcomes:
    """What becomes of a send: its outcome recorded on the message — sent; retried on the
    policy; sent once more or dead-lettered when the outcome is unknown; dead-lettered with its
    notice — each write tried again while the database is briefly away (:meth:`durably`).
    Records nothing once ``abandoned`` is set (the deliverer's close gave up waiting)."""

    def __init__(self, store: Store, channels: Mapping[str, Channel], policy: RetryPolicy,
                 metrics: Metrics, log: Any, *, rand: Callable[[], float],
                 on_dead: Callable[[OutboxRow, str, datetime], None] | None,
                 abandoned: threading.Event) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics
        self.log = log
        self.rand = rand
        self.on_dead = on_dead
        #: Set when the deliverer gave up waiting: late outcomes are then not recorded.
        self.abandoned = abandoned

    def mark_sent(self, row: OutboxRow, now: datetime, detail: str) -> None:
        """``row`` confirmed sent; its body and params as sent kept with it when they are not
        as queued (:func:`said_of`)."""
        said = said_of(row)
        if said is None:
            self.durably(lambda: self.store.mark_sent(row.id, now, detail))
        else:
            self.durably(lambda: self.store.mark_sent_as(row.id, now, detail, row.body, said))

    def mark_parts_sent(self, row: OutboxRow, parts: int, of: int) -> None:
        """The first ``parts`` of ``of`` confirmed; from the first on, the body and params they
        were cut from are kept with the count when they are not as queued — the text a retry sends the rest
        of (:func:`outage_sentinel.delivery.as_sent` leaves a message part sent as it is)."""
        said = said_of(row)
        if said is None:
            self.durably(lambda: self.store.mark_parts_sent(row.id, parts, of))
        else:
            self.durably(lambda: self.store.mark_parts_sent_as(row.id, parts, of, row.body,
                                                               said))

    def dead_letter(self, row: OutboxRow, now: datetime, reason: str) -> None:
        """Dead-letter a message and tell whoever wants to know (the command centre)."""
        self.durably(lambda: self.store.mark_dead(row.id, now, reason))
        self._tell_dead(row, reason, now)

    def _tell_dead(self, row: OutboxRow, reason: str, now: datetime) -> None:
        if self.on_dead is not None:
            try:
                self.on_dead(row, reason, now)
            except Exception as exc:  # the dead letter itself is recorded; the notice is extra
                self.log.error("dead_letter_notice_failed", key=row.key, error=redact(repr(exc)))

    def settle_interrupted(self, row: OutboxRow, now: datetime, why: str,
                           next_at: datetime | None = None) -> bool:
        """A send of ``row`` (in flight) whose outcome is unknown, ``why``: the channel is
        asked whether it holds the message (the file sink can tell) and, when it cannot tell,
        the message is sent once more from ``next_at`` (default ``now``) — or dead-lettered as
        "delivery uncertain" when it already had :data:`UNCERTAIN_SENDS` such sends. For a
        restart's recovery, the sweep of sends never recorded and an unconfirmed reply alike.
        Returns whether it is known delivered."""
        channel = self.channels.get(row.channel)
        held = channel.already_delivered(row.key) if channel is not None else None
        log = self.log.bind(key=row.key, channel=row.channel, why=why)
        if held:
            self.durably(lambda: self.store.mark_sent(row.id, now, f"{why}; the channel has it"))
            self.metrics.notifications.labels(row.channel, "delivered").inc()
            log.info("settled_sent_by_channel")
            return True
        if held is False:
            self.durably(lambda: self.store.mark_retry(
                row.id, next_at or now, f"{why}; the channel does not have it"))
            log.info("settled_not_sent")
            return False
        dead = (f"delivery uncertain: {why}, after {UNCERTAIN_SENDS} earlier send with the "
                "outcome unknown; not sent again to avoid a second duplicate (retry it if it "
                "did not arrive)")
        outcome = self.durably(lambda: self.store.settle_interrupted(
            row.id, next_at or now, now, allowed=UNCERTAIN_SENDS,
            resend_note=f"{why}; sending once more", dead_note=dead))
        if outcome is not None:
            self.metrics.notifications.labels(row.channel, "uncertain").inc()
        if outcome == "dead":
            self.metrics.notifications.labels(row.channel, "dead").inc()
            self._tell_dead(row, dead, now)
            log.error("dead_letter", reason="delivery uncertain")
        elif outcome == "resend":
            log.warning("resend_once")
        return False

    def durably(self, write: Callable[[], T]) -> T:
        """Run ``write`` (a send's outcome), again while the database is briefly away, for up
        to :data:`RECORD_PATIENCE_SECONDS`: every write retried is one a repeat leaves as it is.
        What still fails stays in flight, for the deliverer's sweep."""
        delay, deadline = 0.1, time.monotonic() + RECORD_PATIENCE_SECONDS
        while True:
            try:
                return write()
            except Exception as exc:
                if not self.store.is_transient(exc) or self.abandoned.is_set() \
                        or time.monotonic() + delay > deadline:
                    raise
                self.log.warning("outcome_not_recorded_yet", error=redact(repr(exc)),
                                 again_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def settle(self, row: OutboxRow, result: SendResult, now: datetime, log: Any,
               sent_note: str = "") -> bool:
        """Record the outcome of an attempt for ``row`` (already marked in flight); returns
        whether it was confirmed sent."""
        if self.abandoned.is_set():
            # The deliverer's close() left this send in flight for the next start's recovery,
            # which may already be running in a new process: an outcome recorded now could
            # undo what it settles.
            log.warning("late_outcome_not_recorded", outcome=result.outcome.value)
            return False
        detail = redact(result.detail)
        if result.outcome is Outcome.DELIVERED:
            if sent_note:
                detail = f"{sent_note}: {detail}"
            self.mark_sent(row, now, detail)
            self.metrics.notifications.labels(row.channel, "delivered").inc()
            log.info("delivered", target=row.target, purpose=row.purpose, at=now.isoformat())
            return True
        if result.outcome is Outcome.PERMANENT:
            self.dead_letter(row, now, f"refused: {detail}")
            self.metrics.notifications.labels(row.channel, "permanent").inc()
            log.error("dead_letter", reason=detail)
            return False
        # ``row`` was read before mark_inflight counted this attempt: it is failure number
        # attempts + 1 (the policy's backoff is 1-based and refuses 0).
        # Its age counts from its queueing, or from the end of a quiet-hours hold (age_from).
        decision = self.policy.next_attempt(first_queued=age_from(row),
                                            failures=row.attempts + 1, now=now, u=self.rand(),
                                            retry_after=result.retry_after)
        if decision.action == "dead_letter":
            self.dead_letter(row, now, f"{detail}; {decision.reason}")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            log.error("dead_letter", reason=detail, why=decision.reason)
            return False
        next_at = datetime.fromtimestamp(decision.at, UTC)
        if result.uncertain:  # it may have arrived: once more at most, as after a crash
            return self.settle_interrupted(row, now, detail, next_at)
        self.durably(lambda: self.store.mark_retry(row.id, next_at, detail))
        self.metrics.notifications.labels(row.channel, "retry").inc()
        log.warning("retry_later", reason=detail, delay_s=round(decision.delay, 1))
        return False


class GroupSender:
    """Sends a delivery group's messages, and owns each one's trip through its channel: the
    claim (committed before the send, and noted as unsettled until its outcome is recorded),
    the send (in parts when the channel splits it, each confirmed part recorded), the outcome
    (sent, retried on the policy, or dead-lettered with its notice), and for a rate-limited
    channel each limiter key's budget (spent one by one, merged into digests beyond it, a
    message deferred while the window is full). It claims nothing once ``stopping`` is set,
    and records no late outcome once :meth:`abandon` was called.

    Called from the lanes' threads, several groups at once: they share only the store and the
    limiter, which lock, and the note of the claims under way, under its own lock.
    """

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: Metrics,
        limits: SharedLimits,
        log: Any,
        stopping: threading.Event,
        *,
        dry_run: bool,
        rand: Callable[[], float],
        language: Literal["zh", "en"],
        on_dead: Callable[[OutboxRow, str, datetime], None] | None,
        may_send: Callable[[], bool],
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics
        #: The channels' rate-limit windows, shared by every node and region.
        self.limits = limits
        self.log = log
        #: Set by the deliverer at shutdown: nothing is claimed from then on.
        self.stopping = stopping
        self.dry_run = dry_run
        self.language = language
        #: Checked before each claim and each send: a deposed leader sends nothing more.
        self.may_send = may_send
        #: Guards ``_claimed``.
        self._lock = threading.Lock()
        #: Rows claimed and not yet settled (id -> key), for the shutdown report.
        self._claimed: dict[int, str] = {}
        #: Set when the deliverer gave up waiting: late outcomes are then not recorded.
        self._abandoned = threading.Event()
        #: Records each send's outcome.
        self.outcomes = Outcomes(store, channels, policy, metrics, log, rand=rand,
                                 on_dead=on_dead, abandoned=self._abandoned)

    def send_group(self, channel: Channel, rows: Sequence[OutboxRow],
                   clock: Callable[[], datetime]) -> int:
        """One group's messages on ``channel``, in order: one by one, or per limiter key when
        the channel has rate limits; a chain stops at its first message not confirmed. Each
        step is stamped by ``clock``. Returns how many rows the group had."""
        gate = ChainGate()
        if not rate_limits_of(channel):
            self._deliver_plain(channel, rows, clock, gate)
            return len(rows)
        for keys, part in by_rate_keys(channel, rows).items():
            self._deliver_group(channel, keys, part, clock, gate)
        return len(rows)

    def unsettled(self) -> list[str]:
        """The keys of the messages claimed whose outcome is not recorded yet, sorted."""
        with self._lock:
            return sorted(self._claimed.values())

    def abandon(self) -> None:
        """The sends under way are left in flight for the next start's recovery: an outcome
        that arrives after this is not recorded (see :meth:`Outcomes.settle`)."""
        self._abandoned.set()

    @contextmanager
    def _claim(self, rows: Sequence[OutboxRow]) -> Iterator[None]:
        """Note ``rows`` as claimed and unsettled while the block runs (for the deliverer's
        :meth:`~outage_sentinel.delivery.Deliverer.close`, through :meth:`unsettled`)."""
        with self._lock:
            self._claimed.update((r.id, r.key) for r in rows)
        try:
            yield
        finally:
            with self._lock:
                for r in rows:
                    self._claimed.pop(r.id, None)

    def claimed_ids(self) -> set[int]:
        """The ids of the messages this process's sends are under way for (claimed, or being
        claimed, and not settled yet): the deliverer's sweep leaves them alone."""
        with self._lock:
            return set(self._claimed)

    def deliver(self, row: OutboxRow, now: datetime,
                clock: Callable[[], datetime] | None = None) -> bool:
        """One message: claim, send, record. The outcome is stamped by ``clock`` when it
        arrives (a retry backs off from the end of a 30 s timeout, not from its start).
        Returns whether it was confirmed sent."""
        log = self.log.bind(key=row.key, channel=row.channel, incident_id=row.incident_id)
        channel = self.channels.get(row.channel)
        if channel is None:
            self.outcomes.dead_letter(row, now, f"channel {row.channel!r} is not configured")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            log.error("dead_letter", reason="channel not configured")
            return False
        message = message_of(row)
        if self.dry_run:
            self.outcomes.mark_sent(row, now, "dry run: not sent")
            self.metrics.notifications.labels(row.channel, "dry_run").inc()
            log.info("dry_run", target=row.target, text=row.body)
            return True
        if self.stopping.is_set() or not self.may_send():
            return False
        with self._claim([row]):  # noted before the claim: the sweep never takes it meanwhile
            if not self.store.mark_inflight(row.id, now, row.target):
                return False  # claimed by someone else or re-addressed meanwhile
            if not self.may_send():  # deposed since the claim: the next leader resends it
                return False
            result, refused = self._send_parts(channel, row, message, clock or (lambda: now))
            done = clock() if clock else now
            # the block first: every other worker, node and region sees it at once, not after
            # the outcome's write (which may wait for the database)
            self._note_block(channel, refused, result, done)
            return self.outcomes.settle(row, result, done, log)

    def _send_parts(self, channel: Channel, row: OutboxRow, message: Message,
                    clock: Callable[[], datetime]) -> tuple[SendResult, Message]:
        """Send ``message``, in parts when its channel splits it: in order, each confirmed part
        recorded at once, starting after those an earlier attempt confirmed; the first part not
        confirmed is the attempt's outcome, returned with that part (a service's refusal holds
        back its target: a Tencent part's one number). A part after the first waits (the
        message retries then) while its target is blocked, and needs the limiter's slot for
        the keys it counts against that the message's slot (:meth:`_slot`) did not cover: a
        robot's every part is one more request to the robot, while a Tencent SMS part per
        number was counted with the message (:func:`uncounted_keys`)."""
        parts = channel.parts(message) if isinstance(channel, Splitting) else (message,)
        done = parts_sent(row) if len(parts) > 1 else 0
        result = SendResult(Outcome.DELIVERED, "ok")
        counted = list(self._slot(channel, row, clock())[0]) if len(parts) > 1 else []
        for i in range(done, len(parts)):
            keys = uncounted_keys(counted, rate_keys_of(channel, parts[i]))
            waits = self._part_waits(channel, parts[i], keys, clock()) if i > done else None
            if waits is not None:
                return SendResult(Outcome.RETRY, f"part {i + 1}/{len(parts)}: rate limited: "
                                  f"{waits.why}", retry_after=waits.wait_seconds), parts[i]
            result = safe_send(channel, parts[i])
            if result.outcome is not Outcome.DELIVERED:
                return (result, message) if len(parts) == 1 else (replace(
                    result, detail=f"part {i + 1}/{len(parts)}: {result.detail}"), parts[i])
            if len(parts) > 1:
                self.outcomes.mark_parts_sent(row, i + 1, len(parts))
        if len(parts) > 1:
            return SendResult(Outcome.DELIVERED, f"{result.detail}; in {len(parts)} parts"), \
                message
        return result, message

    def _part_waits(self, channel: Channel, part: Message, keys: Sequence[str],
                    now: datetime) -> Decision | None:
        """Why a part after an attempt's first must wait (``None``: it goes): the limiter's
        slot for its ``keys`` not covered yet, refused (a blocked target is refused too);
        covered, or without limits, its target blocked by the service."""
        limits = rate_limits_of(channel)
        if limits and keys:
            decision = self._allow(keys, now, limits)
            return None if decision.ok else decision
        wait = self.limits.blocked_for(rate_keys_of(channel, part), now)
        return Decision(False, wait, blocked=True) if wait else None

    def _slot(self, channel: Channel, row: OutboxRow, now: datetime
              ) -> tuple[tuple[str, ...], float]:
        """The limiter keys ``row``'s next attempt takes its slot for — those of the parts it
        still owes (:func:`owed_parts`) before the first whose target the service blocks, where
        the attempt will stop — and how long the very first owed part is blocked (0: it is
        not; the message then waits without a request)."""
        parts = owed_parts(channel, row)
        every = keys_of_parts(channel, parts)
        saved = self.limits.saved(every)
        for i, part in enumerate(parts):
            wait = max((saved.blocked_for(k, now) for k in rate_keys_of(channel, part)),
                       default=0.0)
            if wait:
                return keys_of_parts(channel, parts[:i]), wait if i == 0 else 0.0
        return every, 0.0

    # -- rate limits and digests ---------------------------------------------------------------

    def _note_block(self, channel: Channel, message: Message, result: SendResult,
                    now: datetime) -> None:
        """A service that refused the target for a while (``result.rate_limited``): the block
        goes into the target's shared rate-limit state until its hint runs out, so every
        message to it waits (every worker, node and region) and no request extends it."""
        if result.outcome is not Outcome.RETRY or not result.rate_limited:
            return
        keys = rate_keys_of(channel, message)
        if len(keys) != 1:
            # an Aliyun SMS to several numbers: the quota refused is one number's, and which
            # one the reply does not say; blocking them all would hold back every other notice
            # to the others (until the next day for a daily quota). Only this message waits.
            # (A Tencent SMS goes as a part per number: ``message`` is the number refused.)
            return
        seconds = BLOCK_WITHOUT_HINT_SECONDS if result.retry_after is None \
            else result.retry_after
        try:
            self.limits.block(keys, now, seconds)
        except Exception as exc:  # the message itself waits anyway; the next refusal blocks
            self.log.error("target_block_not_saved", channel=channel.name,
                           error=redact(repr(exc)))

    def _record_digest(self, part: DigestPart, rows: Sequence[OutboxRow], now: datetime,
                       detail: str) -> None:
        """A confirmed digest: kept as its own row, its messages sent by it (one transaction)."""
        said = {r.id: (r.body, s) for r in rows if (s := said_of(r)) is not None}
        digest_id = self.outcomes.durably(lambda: self.store.record_digest(
            digest_row(part, rows), [r.id for r in rows], now, detail, said))
        for row in rows:
            self.metrics.notifications.labels(row.channel, "delivered").inc()
        self.log.info("digest_delivered", key=part.message.key, digest=digest_id,
                      covers=[r.key for r in rows], at=now.isoformat())

    def _allow(self, keys: Sequence[str], now: datetime, limits: Sequence[RateLimit]
               ) -> Decision:
        """One request for ``keys``, checked and recorded across every node and region."""
        return self.limits.allow(keys, now, limits)

    def _deliver_plain(self, channel: Channel, rows: Sequence[OutboxRow],
                       clock: Callable[[], datetime], gate: ChainGate) -> None:
        """``rows`` of a channel without limits of its own, one by one, while the service takes
        the target (it may still have refused it for a while: HTTP 429)."""
        def held(row: OutboxRow, now: datetime) -> tuple[float, str] | None:
            wait = self._slot(channel, row, now)[1]
            return (wait, "blocked by the service") if wait else None

        self._deliver_in_turn(rows, clock, gate, held)

    def _deliver_in_turn(self, rows: Sequence[OutboxRow], clock: Callable[[], datetime],
                         gate: ChainGate,
                         held: Callable[[OutboxRow, datetime], tuple[float, str] | None]
                         ) -> None:
        """Deliver ``rows`` one by one, in their chains' order; one ``held`` says must wait
        (how long, and why) is put back without a request."""
        for row in rows:
            if self.stopping.is_set():
                return
            if not gate.open(row):
                continue
            now = clock()
            wait = held(row, now)
            if wait is not None:
                self._defer(row, now, *wait)
                gate.settled(row, False)
                continue
            gate.settled(row, self.deliver(row, now, clock))

    def _defer(self, row: OutboxRow, now: datetime, wait: float, why: str) -> None:
        """Put ``row`` back until the limiter allows it; not an attempt, but age still counts
        (from its queueing, or from the end of a quiet-hours hold: :func:`age_from`)."""
        deadline = age_from(row) + timedelta(seconds=self.policy.max_age_seconds)
        if now >= deadline:
            self.outcomes.dead_letter(row, now, f"rate limited past max age: {why}")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            self.log.error("dead_letter", key=row.key, channel=row.channel,
                           reason="rate limited past max age")
            return
        next_at = min(now + timedelta(seconds=max(wait, 0.001)), deadline)
        # clear_inflight=False: a message recovered after a crash keeps its marker.
        self.store.mark_retry(row.id, next_at, f"rate limited: {why}",
                              clear_inflight=False)
        self.metrics.notifications.labels(row.channel, "rate_limited").inc()

    def _deliver_group(self, channel: Channel, keys: tuple[str, ...], rows: Sequence[OutboxRow],
                       clock: Callable[[], datetime], gate: ChainGate) -> None:
        """Deliver the due messages of one limiter key: one by one within the budget, as a
        digest when more are waiting than the budget allows. A crew's messages are never
        merged (:data:`WHOLE_AUDIENCES`): they go first, one by one, and wait beyond the
        budget. Each request is stamped by ``clock`` when it goes out, so the limiter
        records when it really happened."""
        limits = rate_limits_of(channel)
        whole = [r for r in rows if r.audience in WHOLE_AUDIENCES]
        rest = [r for r in rows if r.audience not in WHOLE_AUDIENCES]
        self._deliver_each(channel, whole, clock, gate, limits)
        if not rest or self.stopping.is_set():
            return
        now = clock()
        saved = self.limits.saved(keys)
        budget = min(saved.budget(k, now, limits) for k in keys)
        digest_limit = channel.digest_limit_bytes if isinstance(channel, Digestible) else None
        if len(rest) <= budget or len(rest) == 1 or not digest_limit:
            self._deliver_each(channel, rest, clock, gate, limits)
            return
        self._deliver_digests(channel, keys, rest, clock, limits, int(digest_limit))

    def _deliver_each(self, channel: Channel, rows: Sequence[OutboxRow],
                      clock: Callable[[], datetime], gate: ChainGate,
                      limits: Sequence[RateLimit]) -> None:
        """Deliver ``rows`` one by one while the limiter allows each its slot (:meth:`_slot`);
        the rest wait."""
        def held(row: OutboxRow, now: datetime) -> tuple[float, str] | None:
            keys, blocked = self._slot(channel, row, now)
            if blocked:
                return blocked, "blocked by the service"
            decision = self._allow(keys, now, limits)
            return None if decision.ok else (decision.wait_seconds, decision.why)

        self._deliver_in_turn(rows, clock, gate, held)

    def _deliver_digests(self, channel: Channel, keys: tuple[str, ...],
                         rows: Sequence[OutboxRow], clock: Callable[[], datetime],
                         limits: Sequence[RateLimit], limit_bytes: int) -> None:
        """Deliver ``rows`` merged into digests of at most ``limit_bytes``, each within the
        limiter's budget; those beyond it wait for the next digest."""
        parts = build_digest([message_of(r) for r in rows], limit_bytes=limit_bytes,
                             language=self.language, channel=channel.name,
                             target=rows[0].target)
        by_key = {r.key: r for r in rows}
        for part in parts:
            if self.stopping.is_set():
                return
            now = clock()
            covered = [by_key[k] for k in part.covers]
            decision = self._allow(keys, now, limits)
            if not decision.ok:
                for row in covered:
                    self._defer(row, now, decision.wait_seconds,
                                f"{decision.why}; waiting for a digest")
                continue
            self._deliver_digest(channel, part, covered, now, clock)

    def _deliver_digest(self, channel: Channel, part: DigestPart, rows: Sequence[OutboxRow],
                        now: datetime, clock: Callable[[], datetime]) -> None:
        log = self.log.bind(key=part.message.key, channel=channel.name)
        # Claim every covered row first: after a crash, recovery finds them in flight and
        # resends each once on its own (the digest key is not in the outbox).
        if not self.may_send():
            return
        with self._claim(rows):  # noted before the claims: the sweep never takes them meanwhile
            claimed = [r for r in rows if self.store.mark_inflight(r.id, now, r.target)]
            if len(claimed) < len(rows):
                # One was withdrawn, held or re-addressed since it was read: the digest would
                # still carry it. The rest go back as they were; the next run builds it anew.
                for row in claimed:
                    self.store.unclaim(row.id)
                return
            if not self.may_send():  # deposed since the claim: the next leader resends them
                return
            try:
                result = channel.send(part.message)
            except Exception as exc:  # a channel bug must not stop the loop or lose them
                result = SendResult(Outcome.RETRY,
                                    redact(f"channel raised {type(exc).__name__}: {exc}"))
            log.info("digest_attempt", covers=len(claimed), outcome=result.outcome.value,
                     bytes=len(part.message.text.encode("utf-8")))
            done = clock()
            self._note_block(channel, part.message, result, done)
            if result.outcome is Outcome.DELIVERED and not self._abandoned.is_set():
                self._record_digest(part, claimed, done, redact(result.detail))
                return
            for row in claimed:
                self.outcomes.settle(row, result, done, self.log.bind(key=row.key, channel=row.channel,
                                                             incident_id=row.incident_id),
                             sent_note=f"in digest {part.message.key}")


#: Audiences whose messages are never merged into a digest: a crew's orders (the deadline,
#: the section to patrol, the care list with its phone numbers, an incident to pause) are
#: read whole or not yet.
WHOLE_AUDIENCES = frozenset({"crew"})


def owed_parts(channel: Channel, row: OutboxRow) -> tuple[Message, ...]:
    """The requests ``row``'s message still takes: its parts (:class:`Splitting`) after those
    an earlier attempt confirmed, or the message itself."""
    message = message_of(row)
    parts = channel.parts(message) if isinstance(channel, Splitting) else (message,)
    return parts[parts_sent(row):] if len(parts) > 1 else parts


def keys_of_parts(channel: Channel, parts: Sequence[Message]) -> tuple[str, ...]:
    """The limiter keys ``parts`` count against, each once (a robot's parts: its robot; a
    Tencent SMS's parts: their numbers)."""
    return tuple(dict.fromkeys(k for p in parts for k in rate_keys_of(channel, p)))


def uncounted_keys(counted: list[str], keys: Sequence[str]) -> tuple[str, ...]:
    """The limiter ``keys`` of one part of a message that ``counted`` — the message's keys,
    each counted once with it before its first request — no longer covers; the covered ones
    are taken from ``counted`` (a robot's second part counts its robot again; a Tencent SMS
    part, one number, is already counted)."""
    out = []
    for key in keys:
        if key in counted:
            counted.remove(key)
        else:
            out.append(key)
    return tuple(out)


def safe_send(channel: Channel, message: Message) -> SendResult:
    """One attempt; a channel that raises (a bug) is a RETRY, never a lost message."""
    try:
        return channel.send(message)
    except Exception as exc:  # a channel bug must not stop the loop or lose the message
        return SendResult(Outcome.RETRY, redact(f"channel raised {type(exc).__name__}: {exc}"))


def by_rate_keys(channel: Channel, rows: Sequence[OutboxRow]
                 ) -> dict[tuple[str, ...], list[OutboxRow]]:
    """Rows per limiter key (robot group; for an SMS to several numbers, those numbers, per
    template): everything due for one key is weighed against its budget together. A chain
    stays under the key of its first message; its messages under another key wait for the
    next run, so a chain is never sent out of order across keys."""
    by_keys: dict[tuple[str, ...], list[OutboxRow]] = {}
    chain_keys: dict[tuple[str, str], tuple[str, ...]] = {}
    cut: set[tuple[str, str]] = set()
    for row in rows:
        keys, chain = rate_keys_of(channel, message_of(row)), chain_of(row)
        if chain not in cut and chain_keys.setdefault(chain, keys) == keys:
            by_keys.setdefault(keys, []).append(row)
        else:
            cut.add(chain)
    return by_keys


def digest_row(part: DigestPart, rows: Sequence[OutboxRow]) -> OutboxMessage:
    """The outbox row keeping what a digest said (purpose ``digest``, no incident of its own:
    the messages it covers name theirs)."""
    m = part.message
    return OutboxMessage(
        incident_id="", revision=0, recipient="digest:" + m.key.rsplit("/", 1)[-1],
        purpose="digest", channel=m.channel, target=m.target, audience=rows[0].audience,
        subject=m.subject, body=m.text,
        payload={"mentions": list(m.mentions), "part": m.params.get("part"),
                 "parts": m.params.get("parts"),
                 "incidents": sorted({r.incident_id for r in rows})})
