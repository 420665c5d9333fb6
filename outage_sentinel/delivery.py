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
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from outage_sentinel.channels.base import Channel, Message, Outcome, SendResult
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
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
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics or Metrics()
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.rand = rand
        self.log = get_logger(component="delivery")

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
                self.store.mark_dead(row.id, now, "delivery uncertain: interrupted twice mid-send; "
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
        for row in rows:
            self._deliver(row, now)
        self.update_gauges()
        return len(rows)

    def update_gauges(self) -> None:
        counts = self.store.outbox_counts()
        self.metrics.outbox_backlog.set(counts.get("pending", 0) + counts.get("inflight", 0))
        self.metrics.dead_letters.set(counts.get("dead", 0))

    def _deliver(self, row: OutboxRow, now: datetime) -> None:
        log = self.log.bind(key=row.key, channel=row.channel, incident_id=row.incident_id)
        channel = self.channels.get(row.channel)
        if channel is None:
            self.store.mark_dead(row.id, now, f"channel {row.channel!r} is not configured")
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
        detail = redact(result.detail)
        if result.outcome is Outcome.DELIVERED:
            self.store.mark_sent(row.id, now, detail)
            self.metrics.notifications.labels(row.channel, "delivered").inc()
            log.info("delivered", target=row.target, purpose=row.purpose)
            return
        if result.outcome is Outcome.PERMANENT:
            self.store.mark_dead(row.id, now, f"refused: {detail}")
            self.metrics.notifications.labels(row.channel, "permanent").inc()
            log.error("dead_letter", reason=detail)
            return
        # ``row`` was read before mark_inflight counted this attempt: it is failure number
        # attempts + 1 (the policy's backoff is 1-based and refuses 0).
        decision = self.policy.next_attempt(first_queued=row.created_at,
                                            failures=row.attempts + 1, now=now, u=self.rand(),
                                            retry_after=result.retry_after)
        if decision.action == "dead_letter":
            self.store.mark_dead(row.id, now, f"{detail}; {decision.reason}")
            self.metrics.notifications.labels(row.channel, "dead").inc()
            log.error("dead_letter", reason=detail, why=decision.reason)
            return
        self.store.mark_retry(row.id, datetime.fromtimestamp(decision.at, UTC), detail)
        self.metrics.notifications.labels(row.channel, "retry").inc()
        log.warning("retry_later", reason=detail, delay_s=round(decision.delay, 1))
