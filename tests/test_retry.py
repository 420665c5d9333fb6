"""The retry policy is a pure value: pinned randomness and clock give exact delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outage_sentinel.config import RetryConfig
from outage_sentinel.retry import RetryPolicy


def test_exponential_with_cap() -> None:
    p = RetryPolicy(initial_seconds=2, multiplier=2, max_seconds=30, jitter=0)
    assert [p.backoff(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_jitter_bounds() -> None:
    p = RetryPolicy(initial_seconds=10, multiplier=1, jitter=0.2)
    assert p.backoff(1, 0.0) == pytest.approx(8.0)
    assert p.backoff(1, 0.5) == pytest.approx(10.0)
    assert p.backoff(1, 1.0) == pytest.approx(12.0)


def test_huge_attempt_counts_do_not_overflow() -> None:
    p = RetryPolicy(initial_seconds=1, multiplier=10, max_seconds=60, jitter=0)
    assert p.backoff(10_000) == 60


def test_immutable() -> None:
    p = RetryPolicy()
    with pytest.raises(AttributeError):
        p.initial_seconds = 5  # type: ignore[misc]


def test_invalid_values_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)


def test_service_hint_wins_when_longer() -> None:
    p = RetryPolicy(initial_seconds=2, jitter=0)
    d = p.next_attempt(first_queued=0, failures=1, now=10, retry_after=600)
    assert d.action == "retry" and d.at == 610 and d.delay == 600
    assert "600" in d.reason


def test_dead_letter_after_max_age() -> None:
    p = RetryPolicy(max_age_seconds=3600, jitter=0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    d = p.next_attempt(first_queued=t0, failures=3, now=t0 + timedelta(minutes=59))
    assert d.action == "retry"
    d = p.next_attempt(first_queued=t0, failures=30, now=t0 + timedelta(hours=1))
    assert d.action == "dead_letter" and "max age" in d.reason


def test_last_attempt_lands_on_the_deadline() -> None:
    p = RetryPolicy(initial_seconds=100, max_age_seconds=1000, jitter=0)
    d = p.next_attempt(first_queued=0, failures=1, now=950, retry_after=600)
    assert d.action == "retry" and d.at == 1000


def test_max_attempts_for_polls() -> None:
    p = RetryPolicy.from_config(RetryConfig(max_attempts=3), count_attempts=True)
    assert p.next_attempt(first_queued=0, failures=2, now=1).action == "retry"
    assert p.next_attempt(first_queued=0, failures=3, now=1).action == "dead_letter"
    assert RetryPolicy.from_config(RetryConfig()).max_attempts is None


def test_only_sleep_blocks() -> None:
    slept: list[float] = []
    p = RetryPolicy(initial_seconds=3, jitter=0)
    assert p.sleep(1, 0.3, slept.append) == 3
    assert slept == [3]


@given(st.integers(1, 200), st.floats(0, 1))
def test_backoff_within_bounds(failures: int, u: float) -> None:
    p = RetryPolicy(initial_seconds=2, multiplier=2, max_seconds=300, jitter=0.2)
    d = p.backoff(failures, u)
    assert 0 < d <= 300 * 1.2 + 1e-9
    assert p.backoff(failures + 1, u) >= d - 1e-9  # non-decreasing for a fixed u


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().next_attempt(first_queued=datetime(2026, 1, 1), failures=1, now=0)
