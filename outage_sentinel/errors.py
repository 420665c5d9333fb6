"""Reading what the libraries raise and answer: exception chains and Retry-After (pure).

One walker for exception chains (``requests`` wraps ``urllib3`` wraps ``OSError``, in
``args``, ``__cause__``, ``__context__`` and urllib3's ``reason``), one Retry-After parser
(delta-seconds or an HTTP-date, RFC 9110 §10.2.3), both bounded: a hostile server or a
pathological chain costs a fixed amount of work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime

#: Exceptions looked at in one chain at most.
CHAIN_LIMIT = 32
#: The longest wait a Retry-After may ask for (seconds); longer asks are capped.
RETRY_AFTER_CAP = 3600.0


def exception_chain(exc: BaseException, limit: int = CHAIN_LIMIT) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, breadth first, each once, at most ``limit``."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue and len(seen) < limit:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)  # urllib3 keeps the cause here
        for nxt in (*wrapped, current.__cause__, current.__context__, reason):
            if isinstance(nxt, BaseException):
                queue.append(nxt)


def parse_retry_after(value: str | None, now: datetime,
                      cap: float = RETRY_AFTER_CAP) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value at ``now`` (aware), capped at
    ``cap``; ``None`` when absent or unreadable. A date in the past means 0."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is GMT
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)
