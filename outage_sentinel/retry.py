"""The retry policy: an immutable value, pure arithmetic, only :meth:`RetryPolicy.sleep` blocks.

Modelled on urllib3's ``Retry``: the policy never reads the clock and never draws random
numbers itself. The caller passes ``now`` and a uniform random number ``u`` in ``[0, 1)``, so a
test can pin both and the delivery loop stays deterministic under a fake clock.

Backoff for the n-th failure (n = 1, 2, ...)::

    base  = min(max_seconds, initial_seconds * multiplier ** (n - 1))
    delay = base * (1 - jitter + 2 * jitter * u)        # +/- jitter around base, "equal jitter"
    delay = max(delay, retry_after)                      # the service's own hint wins if longer

Jitter exists so that 200 messages that failed together (a 5xx storm) don't all come back in
the same second. A message that has been failing for ``max_age_seconds`` since it was first
queued is dead-lettered: a notice hours late is worse than useless, and the command centre must
see it instead. (The deliverer passes, as "first queued", the end of a quiet-hours hold when
that is later: a notice held overnight on purpose was not failing meanwhile.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from outage_sentinel.config import RetryConfig

Instant = float | datetime


def _seconds(t: Instant) -> float:
    """Accept epoch seconds or an aware datetime (the delivery loop's ``now``)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime or epoch seconds")
        return t.timestamp()
    return float(t)


@dataclass(frozen=True)
class RetryDecision:
    """What to do with a message after a failed attempt."""

    action: Literal["retry", "dead_letter"]
    #: Epoch seconds of the next attempt (``retry``), or of the decision (``dead_letter``).
    at: float
    #: Seconds from ``now`` to ``at``.
    delay: float
    #: Why (for the log and the dead-letter record).
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, and a maximum age."""

    initial_seconds: float = 2.0
    multiplier: float = 2.0
    max_seconds: float = 300.0
    jitter: float = 0.2
    max_age_seconds: float = 6 * 3600.0
    #: Attempts before giving up, for callers that count attempts (source polls); ``None`` =
    #: only the age limit applies (message delivery).
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0:
            raise ValueError("initial_seconds must be > 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_seconds <= 0:
            raise ValueError("max_seconds must be > 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be > 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    @classmethod
    def from_config(cls, config: RetryConfig, *, count_attempts: bool = False) -> RetryPolicy:
        """Build from :class:`outage_sentinel.config.RetryConfig`.

        ``count_attempts`` keeps ``max_attempts`` (source polls); message delivery is bounded
        by age only, because a rate-limited robot may legitimately need many attempts.
        """
        return cls(
            initial_seconds=config.initial_seconds,
            multiplier=config.multiplier,
            max_seconds=config.max_seconds,
            jitter=config.jitter,
            max_age_seconds=config.max_age_seconds,
            max_attempts=config.max_attempts if count_attempts else None,
        )

    def backoff(self, failures: int, u: float = 0.5) -> float:
        """Delay after the ``failures``-th consecutive failure (1-based); ``u`` in ``[0, 1)``."""
        if failures < 1:
            raise ValueError("failures must be >= 1")
        if not 0.0 <= u <= 1.0:
            raise ValueError("u must be within [0, 1]")
        # Cap the exponent first: multiplier ** 1000 would overflow a float.
        exponent = min(failures - 1, 1024)
        try:
            base = self.initial_seconds * self.multiplier**exponent
        except OverflowError:
            base = self.max_seconds
        base = min(self.max_seconds, base)
        return base * (1.0 - self.jitter + 2.0 * self.jitter * u)

    def delay(self, failures: int, u: float = 0.5, retry_after: float | None = None) -> float:
        """The in-line wait after ``failures`` failures (a source poll retrying at once): the
        backoff, or a server's ``Retry-After`` when longer — but never beyond ``max_seconds``,
        so one poll cannot hang on a hostile hint."""
        delay = self.backoff(failures, min(max(u, 0.0), 1.0))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_seconds))
        return max(0.0, delay)

    def next_attempt(
        self,
        *,
        first_queued: Instant,
        failures: int,
        now: Instant,
        u: float = 0.5,
        retry_after: float | None = None,
    ) -> RetryDecision:
        """Decide after a failed attempt: retry at some time, or dead-letter.

        ``first_queued`` is when the message entered the outbox (its age counts from there,
        not from the first attempt, because a message stuck behind a rate limit is just as
        stale) — or, for a message quiet hours held, when the hold let it go (the deliverer's
        :func:`~outage_sentinel.sending.age_from`): time held on purpose is not time spent
        failing, and a night's hold is longer than the default age limit. The next attempt
        is never scheduled past the age limit: if the backoff would overshoot it, one last
        attempt is made right at the limit, and a failure then dead-letters.
        """
        t_now = _seconds(now)
        deadline = _seconds(first_queued) + self.max_age_seconds
        if t_now >= deadline:
            age = t_now - _seconds(first_queued)
            return RetryDecision("dead_letter", t_now, 0.0,
                                 f"still failing after {age:.0f} s (max age "
                                 f"{self.max_age_seconds:.0f} s)")
        if self.max_attempts is not None and failures >= self.max_attempts:
            return RetryDecision("dead_letter", t_now, 0.0,
                                 f"{failures} attempts failed (max {self.max_attempts})")
        delay = self.backoff(failures, u)
        reason = f"backoff after {failures} failure(s)"
        if retry_after is not None and retry_after > delay:
            delay = float(retry_after)
            reason = f"service asked to wait {retry_after:.0f} s"
        at = min(t_now + delay, deadline)
        return RetryDecision("retry", at, at - t_now, reason)

    def sleep(self, failures: int, u: float,
              sleeper: Callable[[float], None] = time.sleep) -> float:
        """Block for the backoff after ``failures`` failures (for simple in-line retry loops).

        Returns the seconds slept. The only blocking call in this module.
        """
        delay = self.backoff(failures, u)
        sleeper(delay)
        return delay
