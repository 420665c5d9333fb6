"""The channels' rate-limit windows, kept in the store and shared by every node and region.

A robot that allows 20 requests a minute, or an SMS account with a daily quota per number,
counts every request it receives, whichever region's leader made it. So each limiter key's
window is a row of the store (``rate:<key>``, a key every region shares) and a request is
checked, recorded and saved under that row's lock before it goes out: two regions never share
the last slot of a window, and a standby that takes over starts from the windows as they are,
not as they were when it started. The decisions are :class:`ratelimit.RateLimiter`'s.

When a service itself refuses a target for a while (DingTalk 130101: the robot is blocked for
ten minutes, and every request sooner extends it), the block is written into the same rows
(:meth:`SharedLimits.block`): every worker, node and region then holds back the target's
messages — merged into a digest when the block ends — instead of each message finding out
with a request of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from outage_sentinel.logs import get_logger, mask_phones
from outage_sentinel.ratelimit import Decision, RateLimit, RateLimiter
from outage_sentinel.store import Store

#: Before regions the whole limiter was one key of the store; imported once.
WHOLE_STATE_KEY = "channel_state:ratelimit"
#: Each limiter key's window is the store's key ``rate:<limiter key>``.
PREFIX = "rate:"
#: Windows are forgotten once idle this long (the longest service window is a day).
IDLE = timedelta(days=2)


class SharedLimits:
    """Check, record and read the windows of limiter keys in the store."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store = store
        self.log = get_logger(component="delivery")
        #: Orders this process's decisions (the rows' locks order every process's).
        self._lock = threading.Lock()
        self._forgotten_at: datetime | None = None
        self._import(now)

    def allow(self, keys: Sequence[str], now: datetime, limits: Sequence[RateLimit]
              ) -> Decision:
        """Check and, if allowed, record one request for ``keys`` as one step under the rows'
        locks. Saved *before* the request goes out: a crash must not forget it."""
        def decide(rows: dict[str, Any]) -> tuple[dict[str, Any] | None, Decision]:
            limiter = RateLimiter.of_keys({k[len(PREFIX):]: v for k, v in rows.items()})
            decision = limiter.allow(keys, now, limits)
            saved = {PREFIX + k: limiter.key_state(k) for k in keys}
            return (saved if decision.ok else None), decision
        with self._lock:
            return self.store.kv_update([PREFIX + k for k in keys], decide, now)

    def block(self, keys: Sequence[str], now: datetime, seconds: float) -> None:
        """The service refuses ``keys`` for ``seconds`` from ``now``: saved under the rows'
        locks (a longer block already saved stays)."""
        def decide(rows: dict[str, Any]) -> tuple[dict[str, Any], None]:
            limiter = RateLimiter.of_keys({k[len(PREFIX):]: v for k, v in rows.items()})
            for k in keys:
                limiter.block(k, now + timedelta(seconds=seconds))
            return {PREFIX + k: limiter.key_state(k) for k in keys}, None
        with self._lock:
            self.store.kv_update([PREFIX + k for k in keys], decide, now)
        self.log.warning("target_blocked", keys=[mask_phones(k) for k in keys],
                         seconds=round(seconds, 1))

    def blocked_for(self, keys: Sequence[str], now: datetime) -> float:
        """Seconds until the service takes requests for ``keys`` again (0: it does now)."""
        saved = self.saved(keys)
        return max((saved.blocked_for(k, now) for k in keys), default=0.0)

    def saved(self, keys: Sequence[str]) -> RateLimiter:
        """The windows of ``keys`` as the store holds them."""
        rows = self.store.kv_get_many([PREFIX + k for k in keys])
        return RateLimiter.of_keys({k[len(PREFIX):]: v for k, v in rows.items() if v})

    def forget_idle(self, now: datetime) -> None:
        """Drop windows idle for :data:`IDLE` (at most hourly)."""
        if self._forgotten_at is not None and now - self._forgotten_at < timedelta(hours=1):
            return
        self._forgotten_at = now
        self.store.kv_forget(PREFIX, now - IDLE)

    def _import(self, now: datetime) -> None:
        """Move a limiter saved whole by an earlier version into per-key rows (once)."""
        try:
            state = self.store.kv_get(WHOLE_STATE_KEY)
            old = RateLimiter(state) if state else None
        except ValueError as exc:
            # Unreadable state: start empty but say so loudly; the services' own limits
            # (45009/130101 → retry later) are the backstop for the one burst this allows.
            self.log.error("rate_limit_state_unreadable", error=str(exc))
            old = None
        if old is not None:
            for key in old.to_state()["keys"]:
                self.store.kv_setdefault(PREFIX + key, old.key_state(key), now)
            self.store.kv_forget(WHOLE_STATE_KEY, now + timedelta(seconds=1))
