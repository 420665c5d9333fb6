"""Outbox delivery: take due messages, send each through its channel, record the outcome.

The guarantees (DESIGN.md §3) and how they are kept:

* A message is marked ``sent`` only when the channel confirms it (``Outcome.DELIVERED``).
* Before a send the row is claimed as ``inflight`` in its own committed transaction, so a crash
  mid-send leaves a trace. :meth:`Deliverer.recover` (at start) asks the channel whether it
  holds the message (the file sink can tell); if it can't tell, the message is sent once more,
  and a message interrupted a second time is dead-lettered as "delivery uncertain" rather than
  risk a second duplicate.
* Failures are retried on the immutable :class:`~outage_sentinel.retry.RetryPolicy`; a message
  older than its max age, or permanently refused, is dead-lettered (counted, logged, kept).
* Messages are independent: a target that keeps failing only delays itself.
* Per-target rate limits (:mod:`outage_sentinel.ratelimit`) are checked before every request
  and the limiter state is saved to the store *before* the request goes out, so a restart never
  bursts past a robot's limit. A message over the limit waits (without counting an attempt);
  when more messages wait for one robot group than its budget allows, they are merged into a
  digest (:mod:`outage_sentinel.digest`) instead of trickling out minutes late. Every merged
  message is marked sent only when the digest that covers it is confirmed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from outage_sentinel.channels.base import Channel, Message, Outcome, SendResult
from outage_sentinel.channels.registry import rate_keys_of, rate_limits_of
from outage_sentinel.digest import DigestPart, build_digest
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.ratelimit import RateLimiter
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import OutboxRow, Store


def message_of(row: OutboxRow) -> Message:
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


class Deliverer:
    """Sends due outbox messages. Not thread-safe: run it from one scheduler job."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: Metrics | None = None,
        *,
        batch_size: int = 100,
        dry_run: bool = False,
        rand: Callable[[], float] = random.random,
        language: Literal["zh", "en"] = "zh",
        quiet_hours: Mapping[str, tuple[time, time]] | None = None,
        tz: tzinfo = UTC,
        on_dead: Callable[[OutboxRow, str, datetime], None] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics or Metrics()
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.rand = rand
        self.language = language
        self.quiet_hours = dict(quiet_hours or {})
        self.tz = tz
        self.on_dead = on_dead
        self.log = get_logger(component="delivery")
        self.limiter = self._load_limiter()

    def recover(self, now: datetime) -> int:
        """Settle messages a previous process left in flight. Returns how many were found."""
        rows = self.store.inflight_messages()
        for row in rows:
            channel = self.channels.get(row.channel)
            held = channel.already_delivered(row.key) if channel is not None else None
            if held:
                self.store.mark_sent(row.id, now, "confirmed by channel after restart")
                self.log.info("recovered_sent", key=row.key, channel=row.channel)
            elif held is False:
                self.store.mark_retry(row.id, now, "interrupted before the channel got it")
                self.log.info("recovered_resend", key=row.key, channel=row.channel)
            elif row.inflight_count >= 2:
                self._dead(row, now, "delivery uncertain: interrupted twice mid-send; "
                                     "not sent again to avoid a second duplicate")
                self.metrics.notifications.labels(row.channel, "dead").inc()
                self.log.warning("recovered_dead_letter", key=row.key, channel=row.channel)
            else:
                # One resend allowed; keep inflight_count so a second crash is recognised.
                self.store.mark_retry(row.id, now, "interrupted mid-send; sending once more",
                                      clear_inflight=False)
                self.log.info("recovered_resend_once", key=row.key, channel=row.channel)
        return len(rows)

    def run_once(self, now: datetime | None = None) -> int:
        """Send one batch of due messages; return how many were attempted."""
        now = now or datetime.now(UTC)
        rows = self.store.due_messages(now, self.batch_size)
        rows = self._defer_quiet(rows, now)
        self.limiter.prune(now)
        # Rate-limited channels are handled per limiter key (robot group, SMS number), so that
        # everything due for one group can be weighed against its budget together.
        groups: dict[tuple[str, tuple[str, ...]], list[OutboxRow]] = {}
        for row in rows:
            channel = self.channels.get(row.channel)
            if channel is None or self.dry_run or not rate_limits_of(channel):
                self._deliver(row, now)
                continue
            keys = rate_keys_of(channel, message_of(row))
            groups.setdefault((row.channel, keys), []).append(row)
        for (name, keys), group in groups.items():
            self._deliver_group(self.channels[name], keys, group, now)
        self.update_gauges()
        return len(rows)

    def _defer_quiet(self, rows: Sequence[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Hold non-fault messages for an audience in its quiet hours until they end."""
        if not self.quiet_hours:
            return list(rows)
        out = []
        for row in rows:
            window = self.quiet_hours.get(row.audience)
            kind = ((row.payload or {}).get("params") or {}).get("kind", "fault")
            until = quiet_until(now, window, self.tz) if window and kind != "fault" else None
            if until is None:
                out.append(row)
            else:
                self.store.mark_retry(row.id, until, "quiet hours")
        return out

    def _dead(self, row: OutboxRow, now: datetime, reason: str) -> None:
        """Dead-letter a message and tell whoever wants to know (the command centre)."""
        self.store.mark_dead(row.id, now, reason)
        if self.on_dead is not None:
            try:
                self.on_dead(row, reason, now)
            except Exception as exc:  # the dead letter itself is recorded; the notice is extra
                self.log.error("dead_letter_notice_failed", key=row.key, error=redact(repr(exc)))

    def update_gauges(self) -> None:
        counts = self.store.outbox_counts()
        self.metrics.outbox_backlog.set(counts.get("pending", 0) + counts.get("inflight", 0))
        self.metrics.dead_letters.set(counts.get("dead", 0))

    def _deliver(self, row: OutboxRow, now: datetime) -> None:
        log = self.log.bind(key=row.key, channel=row.channel, incident_id=row.incident_id)
        channel = self.channels.get(row.channel)
        if channel is None:
            self._dead(row, now, f"channel {row.channel!r} is not configured")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            log.error("dead_letter", reason="channel not configured")
            return
        message = message_of(row)
        if self.dry_run:
            self.store.mark_sent(row.id, now, "dry run: not sent")
            self.metrics.notifications.labels(row.channel, "dry_run").inc()
            log.info("dry_run", target=row.target, text=row.body)
            return
        if not self.store.mark_inflight(row.id, now):
            return  # claimed by someone else meanwhile
        try:
            result = channel.send(message)
        except Exception as exc:  # a channel bug must not stop the loop or lose the message
            result = SendResult(Outcome.RETRY, redact(f"channel raised {type(exc).__name__}: {exc}"))
        self._settle(row, result, now, log)

    def _settle(self, row: OutboxRow, result: SendResult, now: datetime, log: Any,
                sent_note: str = "") -> None:
        """Record the outcome of an attempt for ``row`` (already marked in flight)."""
        detail = redact(result.detail)
        if result.outcome is Outcome.DELIVERED:
            if sent_note:
                detail = f"{sent_note}: {detail}"
            self.store.mark_sent(row.id, now, detail)
            self.metrics.notifications.labels(row.channel, "delivered").inc()
            log.info("delivered", target=row.target, purpose=row.purpose)
            return
        if result.outcome is Outcome.PERMANENT:
            self._dead(row, now, f"refused: {detail}")
            self.metrics.notifications.labels(row.channel, "permanent").inc()
            log.error("dead_letter", reason=detail)
            return
        # ``row`` was read before mark_inflight counted this attempt: it is failure number
        # attempts + 1 (the policy's backoff is 1-based and refuses 0).
        decision = self.policy.next_attempt(first_queued=row.created_at,
                                            failures=row.attempts + 1, now=now, u=self.rand(),
                                            retry_after=result.retry_after)
        if decision.action == "dead_letter":
            self._dead(row, now, f"{detail}; {decision.reason}")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            log.error("dead_letter", reason=detail, why=decision.reason)
            return
        self.store.mark_retry(row.id, datetime.fromtimestamp(decision.at, UTC), detail)
        self.metrics.notifications.labels(row.channel, "retry").inc()
        log.warning("retry_later", reason=detail, delay_s=round(decision.delay, 1))

    # -- rate limits and digests ---------------------------------------------------------------

    #: Key of the limiter state in the store's key/value table.
    RATE_STATE_KEY = "channel_state:ratelimit"

    def _load_limiter(self) -> RateLimiter:
        try:
            state = self.store.kv_get(self.RATE_STATE_KEY)
            return RateLimiter(state) if state else RateLimiter()
        except ValueError as exc:
            # Unreadable state: start empty but say so loudly; the services' own limits
            # (45009/130101 → retry later) are the backstop for the one burst this allows.
            self.log.error("rate_limit_state_unreadable", error=str(exc))
            return RateLimiter()

    def _save_limiter(self, now: datetime) -> None:
        self.store.kv_set(self.RATE_STATE_KEY, self.limiter.to_state(), now)

    def _defer(self, row: OutboxRow, now: datetime, wait: float, why: str) -> None:
        """Put ``row`` back until the limiter allows it; not an attempt, but age still counts."""
        deadline = row.created_at + timedelta(seconds=self.policy.max_age_seconds)
        if now >= deadline:
            self._dead(row, now, f"rate limited past max age: {why}")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            self.log.error("dead_letter", key=row.key, channel=row.channel,
                           reason="rate limited past max age")
            return
        next_at = min(now + timedelta(seconds=max(wait, 0.001)), deadline)
        # clear_inflight=False: a message recovered after a crash keeps its marker.
        self.store.mark_retry(row.id, next_at, f"rate limited: {why}", clear_inflight=False)
        self.metrics.notifications.labels(row.channel, "rate_limited").inc()

    def _deliver_group(self, channel: Channel, keys: tuple[str, ...], rows: Sequence[OutboxRow],
                       now: datetime) -> None:
        """Deliver the due messages of one limiter key: one by one within the budget, as a
        digest when more are waiting than the budget allows."""
        limits = rate_limits_of(channel)
        budget = min(self.limiter.budget(k, now, limits) for k in keys)
        digest_limit = getattr(channel, "digest_limit_bytes", None)
        if len(rows) <= budget or len(rows) == 1 or not digest_limit:
            for row in rows:
                decision = self.limiter.allow(keys, now, limits)
                if not decision.ok:
                    self._defer(row, now, decision.wait_seconds, f"{decision.limit} per target")
                    continue
                self._save_limiter(now)  # before the request: a crash must not forget it
                self._deliver(row, now)
            return
        parts = build_digest([message_of(r) for r in rows], limit_bytes=int(digest_limit),
                             language=self.language, channel=channel.name,
                             target=rows[0].target)
        by_key = {r.key: r for r in rows}
        for part in parts:
            covered = [by_key[k] for k in part.covers]
            decision = self.limiter.allow(keys, now, limits)
            if not decision.ok:
                for row in covered:
                    self._defer(row, now, decision.wait_seconds,
                                f"{decision.limit} per target; waiting for a digest")
                continue
            self._save_limiter(now)
            self._deliver_digest(channel, part, covered, now)

    def _deliver_digest(self, channel: Channel, part: DigestPart, rows: Sequence[OutboxRow],
                        now: datetime) -> None:
        log = self.log.bind(key=part.message.key, channel=channel.name)
        # Claim every covered row first: after a crash, recovery finds them in flight and
        # resends each once on its own (the digest key is not in the outbox).
        claimed = [r for r in rows if self.store.mark_inflight(r.id, now)]
        if not claimed:
            return
        try:
            result = channel.send(part.message)
        except Exception as exc:  # a channel bug must not stop the loop or lose the messages
            result = SendResult(Outcome.RETRY,
                                redact(f"channel raised {type(exc).__name__}: {exc}"))
        log.info("digest_attempt", covers=len(claimed), outcome=result.outcome.value,
                 bytes=len(part.message.text.encode("utf-8")))
        for row in claimed:
            self._settle(row, result, now, self.log.bind(key=row.key, channel=row.channel,
                                                         incident_id=row.incident_id),
                         sent_note=f"in digest {part.message.key}")


def quiet_until(now: datetime, window: tuple[time, time], tz: tzinfo) -> datetime | None:
    """The end of the quiet window ``now`` falls in (local times ``(start, end)``, which may
    cross midnight), or ``None`` when ``now`` is outside it."""
    start, end = window
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)
