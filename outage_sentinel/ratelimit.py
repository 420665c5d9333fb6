"""Per-target sliding-window rate limits whose state survives restarts.

Pure: no clock reads, no I/O. The caller passes ``now`` (epoch seconds or an aware datetime)
and persists :meth:`RateLimiter.to_json` wherever it keeps channel state, so a daemon that
restarts in the middle of a storm does not send a fresh burst of 20 to a robot that already
got 20 this minute — which for DingTalk would mean a ten-minute block (errcode 130101).

A *key* is whatever the service counts by: a robot (``wecom-main/village-group-12``) or, for
SMS, a phone number plus template (``sms/13812341234/SMS_1234``). Limits are passed with each
call rather than stored, so changing the config takes effect on the next decision; the state
only holds the timestamps of recent requests.

Sliding windows, not fixed minutes: "20 per minute" means no 60-second interval anywhere on
the timeline holds more than 20 requests, which is the strongest reading of the services'
rules and the one the acceptance test checks.

A key can also be *blocked* until a time (:meth:`RateLimiter.block`): the service itself said
it refuses the target for a while (DingTalk 130101 blocks a robot for ten minutes, and a request
sooner extends the block; WeCom 45009, Aliyun flow control). While blocked, the key allows
nothing and has no budget, whatever its window says, so every message to it waits or is merged.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Instant = float | datetime


def _seconds(t: Instant) -> float:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime or epoch seconds")
        return t.timestamp()
    return float(t)


#: The shortest wait a refusal asks for (1 ms: above float resolution at epoch seconds).
MIN_WAIT_SECONDS = 1e-3

@dataclass(frozen=True)
class RateLimit:
    """At most ``max_requests`` in any window of ``window_seconds``."""

    max_requests: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")

    def __str__(self) -> str:
        return f"{self.max_requests}/{self.window_seconds:g}s"


#: A little longer than the documented minute: our clock and the service's differ, and a
#: request's network latency varies, so two requests 60.0 s apart on our side can land 59.8 s
#: apart on theirs. One second of margin costs ~2 % of throughput; a DingTalk block costs ten
#: minutes.
MINUTE = 61.0
SECOND = 1.1
DAY = 86400.0

#: The services' documented limits (DESIGN §4), per robot / per number+template.
DEFAULT_LIMITS: Mapping[str, tuple[RateLimit, ...]] = {
    "wecom": (RateLimit(20, MINUTE),),
    "dingtalk": (RateLimit(20, MINUTE),),
    "feishu": (RateLimit(100, MINUTE), RateLimit(5, SECOND)),
    # Aliyun counts per calendar day (China time); a sliding 24 h window is stricter, so it
    # can never exceed the daily quota, and it needs no timezone.
    "sms": (RateLimit(50, DAY),),
}


@dataclass(frozen=True)
class Decision:
    """Result of :meth:`RateLimiter.allow`; unpacks as ``ok, wait_seconds``."""

    ok: bool
    #: Seconds until a request would be allowed (0 when ``ok``).
    wait_seconds: float
    #: The limit that blocked, for the log (``None`` when ``ok`` or the key is blocked).
    limit: RateLimit | None = None
    #: Refused because the service blocked the key (:meth:`RateLimiter.block`).
    blocked: bool = False

    @property
    def why(self) -> str:
        """The refusal in words, for a deferred message's record."""
        return "blocked by the service" if self.blocked else f"{self.limit} per target"

    def __iter__(self) -> Any:
        return iter((self.ok, self.wait_seconds))

    def __bool__(self) -> bool:
        return self.ok


class RateLimiter:
    """Sliding-window limiter over many keys. Mutable, but pure (no clock, no I/O)."""

    #: Format version of :meth:`to_state`, so a future change can migrate persisted state.
    STATE_VERSION = 1

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        # key -> ascending timestamps of requests still inside the longest window used.
        self._times: dict[str, list[float]] = {}
        # key -> longest window seen for the key; timestamps older than this are forgotten.
        self._horizon: dict[str, float] = {}
        # key -> until when (epoch seconds) the service refuses it.
        self._blocked: dict[str, float] = {}
        if state:
            self._load(state)

    # -- decisions ---------------------------------------------------------------------------

    def check(self, key: str, now: Instant, limits: Sequence[RateLimit]) -> Decision:
        """Would a request for ``key`` be allowed at ``now``? Records nothing."""
        t = _seconds(now)
        blocked = self.blocked_for(key, t)
        if blocked:
            return Decision(False, blocked, blocked=True)
        times = self._times.get(key, [])
        worst: Decision = Decision(True, 0.0)
        for limit in limits:
            # Requests inside the half-open window (t - w, t]. Timestamps after ``t`` (clock
            # stepped back after a restart) count too: better late than blocked by a service.
            start = bisect.bisect_right(times, t - limit.window_seconds)
            in_window = len(times) - start
            if in_window < limit.max_requests:
                continue
            # The request that must leave the window before one more fits.
            oldest_needed = times[len(times) - limit.max_requests]
            wait = min(oldest_needed + limit.window_seconds - t, limit.window_seconds)
            # Never 0 while refused: in floating point ``oldest + w - t`` can round to 0 although
            # ``oldest`` is still inside the window (hypothesis found it); a caller retrying at
            # ``t + 0`` would be refused again.
            wait = max(wait, MIN_WAIT_SECONDS)
            if not worst.ok and wait <= worst.wait_seconds:
                continue
            worst = Decision(False, wait, limit)
        return worst

    def allow(self, key: str | Iterable[str], now: Instant,
              limits: Sequence[RateLimit]) -> Decision:
        """Check and, if allowed, record one request for ``key`` at ``now``.

        ``key`` may be several keys (an SMS to several numbers): the request is allowed only if
        every key allows it, and then it is recorded against all of them, so a refusal never
        leaves a partial record.
        """
        keys = [key] if isinstance(key, str) else list(key)
        worst = Decision(True, 0.0)
        for k in keys:
            d = self.check(k, now, limits)
            if not d.ok and (worst.ok or d.wait_seconds > worst.wait_seconds):
                worst = d
        if worst.ok:
            for k in keys:
                self.record(k, now, limits)
        return worst

    def record(self, key: str, now: Instant, limits: Sequence[RateLimit] = ()) -> None:
        """Count a request that was made regardless of :meth:`allow` (e.g. a forced resend)."""
        t = _seconds(now)
        times = self._times.setdefault(key, [])
        bisect.insort(times, t)
        horizon = max([lim.window_seconds for lim in limits] + [self._horizon.get(key, 0.0)])
        self._horizon[key] = horizon
        self._prune_key(key, t)

    def budget(self, key: str, now: Instant, limits: Sequence[RateLimit]) -> int:
        """How many requests ``key`` could make at ``now`` without waiting.

        The delivery loop compares this with the number of pending messages for a group to
        decide whether to merge them into a digest.
        """
        t = _seconds(now)
        if self.blocked_for(key, t):
            return 0
        times = self._times.get(key, [])
        room: int | None = None
        for limit in limits:
            start = bisect.bisect_right(times, t - limit.window_seconds)
            free = max(limit.max_requests - (len(times) - start), 0)
            room = free if room is None else min(room, free)
        return room if room is not None else 2**31 - 1

    def block(self, key: str, until: Instant) -> None:
        """The service refuses ``key`` until ``until`` (a later block is never shortened)."""
        self._blocked[key] = max(self._blocked.get(key, 0.0), _seconds(until))

    def blocked_for(self, key: str, now: Instant) -> float:
        """Seconds ``key`` stays blocked after ``now`` (0: not blocked)."""
        left = self._blocked.get(key, 0.0) - _seconds(now)
        return max(left, MIN_WAIT_SECONDS) if left > 0 else 0.0

    def history(self, key: str) -> tuple[float, ...]:
        """Timestamps of the recorded requests for ``key`` still remembered (for tests/metrics)."""
        return tuple(self._times.get(key, ()))

    # -- housekeeping ------------------------------------------------------------------------

    def _prune_key(self, key: str, t: float) -> None:
        if self._blocked.get(key, t + 1) <= t:  # a block that ended: the window decides again
            del self._blocked[key]
        horizon = self._horizon.get(key, 0.0)
        times = self._times.get(key)
        if times is None:
            return
        cut = bisect.bisect_right(times, t - horizon)
        if cut:
            del times[:cut]
        if not times:
            self._times.pop(key, None)
            self._horizon.pop(key, None)

    def prune(self, now: Instant) -> None:
        """Forget requests that no window can see any more, and blocks that ended (keeps the
        persisted state small)."""
        t = _seconds(now)
        for key in list(self._times):
            self._prune_key(key, t)
        for key, until in list(self._blocked.items()):
            if until <= t:
                del self._blocked[key]

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot; timestamps rounded to milliseconds."""
        keys = sorted({*self._times, *self._blocked})
        return {"version": self.STATE_VERSION, "keys": {k: self.key_state(k) for k in keys}}

    def key_state(self, key: str) -> dict[str, Any]:
        """One key's entry of :meth:`to_state` (what a store keeps per key); ``blocked_until``
        only while the key has a block (a reader from before blocks ignores it)."""
        times = self._times.get(key, [])
        entry = {"horizon": self._horizon.get(key, 0.0), "times": [round(x, 3) for x in times]}
        if key in self._blocked:
            entry["blocked_until"] = round(self._blocked[key], 3)
        return entry

    @classmethod
    def of_keys(cls, entries: Mapping[str, Any]) -> RateLimiter:
        """A limiter from per-key entries as :meth:`key_state` gives them."""
        return cls({"version": cls.STATE_VERSION, "keys": dict(entries)})

    def to_json(self) -> str:
        return json.dumps(self.to_state(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RateLimiter:
        """Restore from :meth:`to_json`; empty/``None`` gives a fresh limiter.

        A corrupt snapshot raises ``ValueError``: silently starting empty would allow exactly
        the burst after restart that persistence exists to prevent, so the caller must decide.
        """
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"rate-limit state is not valid JSON: {exc.msg}") from None
        return cls(data)

    def _load(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != self.STATE_VERSION or not isinstance(state.get("keys"), dict):
            raise ValueError(f"rate-limit state: expected version {self.STATE_VERSION} with 'keys'")
        for key, entry in state["keys"].items():
            try:
                times = sorted(float(x) for x in entry["times"])
                horizon = float(entry["horizon"])
                blocked = entry.get("blocked_until")
                until = None if blocked is None else float(blocked)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ValueError(f"rate-limit state: bad entry for key {key!r}") from None
            if times:
                self._times[str(key)] = times
                self._horizon[str(key)] = horizon
            if until is not None:
                self._blocked[str(key)] = until
