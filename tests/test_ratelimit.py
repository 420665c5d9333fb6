"""Sliding-window limits: exact waits, no window ever over budget, state survives a restart."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from outage_sentinel.ratelimit import DEFAULT_LIMITS, RateLimit, RateLimiter

PER_MIN = (RateLimit(20, 60),)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_allows_up_to_limit_then_waits_exactly() -> None:
    rl = RateLimiter()
    for i in range(20):
        assert rl.allow("g", 100 + i, PER_MIN).ok
    ok, wait = rl.allow("g", 125, PER_MIN)
    assert not ok and wait == pytest.approx(35.0)  # first request (t=100) leaves at 160
    assert rl.allow("g", 160, PER_MIN).ok
    assert rl.budget("g", 160, PER_MIN) == 0


def test_keys_are_independent() -> None:
    rl = RateLimiter()
    for _ in range(20):
        rl.allow("a", 0, PER_MIN)
    assert not rl.allow("a", 1, PER_MIN).ok
    assert rl.allow("b", 1, PER_MIN).ok


def test_two_limits_wait_for_the_longer() -> None:
    limits = (RateLimit(100, 60), RateLimit(5, 1))
    rl = RateLimiter()
    for _ in range(5):
        assert rl.allow("f", 10.0, limits)
    d = rl.allow("f", 10.2, limits)
    assert not d.ok and d.wait_seconds == pytest.approx(0.8) and d.limit == RateLimit(5, 1)


def test_multi_key_is_all_or_nothing() -> None:
    rl = RateLimiter()
    one = (RateLimit(1, 60),)
    assert rl.allow("n1", 0, one).ok
    assert not rl.allow(["n2", "n1"], 1, one).ok
    assert rl.history("n2") == ()  # nothing recorded for the refused request


def test_state_round_trip_prevents_burst_after_restart() -> None:
    rl = RateLimiter()
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    for i in range(20):
        rl.allow("wecom/g1", t0 + timedelta(seconds=i), PER_MIN)
    restored = RateLimiter.from_json(rl.to_json())
    ok, wait = restored.allow("wecom/g1", t0 + timedelta(seconds=30), PER_MIN)
    assert not ok and wait == pytest.approx(30.0)


def test_state_is_pruned() -> None:
    rl = RateLimiter()
    for i in range(50):
        rl.allow("k", i * 10.0, PER_MIN)
    assert len(rl.history("k")) <= 7
    rl.prune(10_000)
    assert rl.to_state()["keys"] == {}


def test_corrupt_state_is_an_error_not_a_reset() -> None:
    with pytest.raises(ValueError):
        RateLimiter.from_json("{not json")
    with pytest.raises(ValueError):
        RateLimiter.from_json('{"version": 99, "keys": {}}')
    assert RateLimiter.from_json(None).to_state()["keys"] == {}


def test_clock_stepping_back_never_waits_longer_than_window() -> None:
    rl = RateLimiter()
    for _ in range(20):
        rl.allow("k", 1000, PER_MIN)
    ok, wait = rl.allow("k", 500, PER_MIN)
    assert not ok and wait <= 60


def test_defaults_have_a_safety_margin() -> None:
    assert DEFAULT_LIMITS["wecom"][0].max_requests == 20
    assert DEFAULT_LIMITS["wecom"][0].window_seconds >= 60
    assert {lim.max_requests for lim in DEFAULT_LIMITS["feishu"]} == {100, 5}


@given(st.lists(st.floats(0, 600, allow_nan=False), max_size=300),
       st.sampled_from([(RateLimit(20, 60),), (RateLimit(100, 60), RateLimit(5, 1))]))
# Found by hypothesis: ``oldest + window - now`` rounded to a zero wait while still refused.
@example([1.0] * 5 + [2.7375975518333972e-120], (RateLimit(100, 60), RateLimit(5, 1)))
def test_no_window_ever_exceeds_the_limit(arrivals: list[float],
                                          limits: tuple[RateLimit, ...]) -> None:
    rl = RateLimiter()
    sent: list[float] = []
    for t in sorted(arrivals):
        # A client that retries exactly when told to.
        while True:
            ok, wait = rl.allow("k", t, limits)
            if ok:
                sent.append(t)
                break
            assert wait > 0
            t += wait
    for lim in limits:
        assert max_in_window(sent, lim.window_seconds) <= lim.max_requests


def test_round_trip_mid_stream_is_equivalent() -> None:
    rng = random.Random(7)
    a, b = RateLimiter(), RateLimiter()
    t = 0.0
    for i in range(500):
        t += rng.expovariate(1.0)
        if i % 50 == 0:
            b = RateLimiter.from_json(b.to_json())
        da, db = a.allow("k", t, PER_MIN), b.allow("k", t, PER_MIN)
        assert da.ok == db.ok and da.wait_seconds == pytest.approx(db.wait_seconds, abs=1e-2)
