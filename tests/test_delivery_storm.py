"""The storm acceptance criterion, end to end through the outbox, the limiter and real HTTP.

200 village notices for 5 WeCom groups arrive within one minute. The real WeCom sender posts to
a local server that answers like WeCom; the delivery loop runs every 2 s on a fake clock.
Checked: no group receives more than 20 requests in any 60 s window, every village is named in
a message or a digest within 3 minutes of its notice, and every outbox row ends ``sent``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from outage_sentinel.channels.common import robot_rate_key
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DEFAULT_LIMITS
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import Store
from tests.channels.conftest import FakeService
from tests.conftest import T0

GROUPS = [f"g{i}" for i in range(5)]
KEYS = {g: f"key-{g}-0123456789abcdef" for g in GROUPS}
POLICY = RetryPolicy(initial_seconds=10, max_seconds=300, jitter=0.2, max_age_seconds=3600)


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


@pytest.fixture
def wecom() -> Iterator[FakeService]:
    s = FakeService()
    yield s
    s.close()


def notice(i: int) -> OutboxMessage:
    group = GROUPS[i % 5]
    village = f"第{i:03d}村"
    incident = f"INC-{i // 10:02d}"  # 20 faults, 10 villages each
    body = f"【故障停电通知】{village}\n10kV 线路故障，{village} 停电，抢修中。"
    return OutboxMessage(
        incident_id=incident, revision=1, recipient=f"village:V{i}:wecom:{group}",
        purpose="outage", channel="wecom", target=group, audience="liaison",
        subject=body.splitlines()[0], body=body,
        payload={"mentions": [f"138{i:08d}"],
                 "params": {"village": village, "feeder": f"10kV F{i // 10:02d}",
                            "households": 20 + i % 50, "incident": incident}},
    )


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """Most requests inside any closed interval of ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_storm_200_notices_5_groups(store: Store, wecom: FakeService) -> None:
    channel = WeComChannel("wecom", robots=KEYS, base_url=wecom.url, timeout=5,
                           rate_limits=DEFAULT_LIMITS["wecom"])
    deliverer = Deliverer(store, {"wecom": channel}, POLICY, batch_size=100,
                          rand=random.Random(1).random)
    rng = random.Random(42)
    arrivals = sorted(rng.uniform(0, 58) for _ in range(200))  # all within one minute
    queued_at: dict[str, float] = {}
    sent: list[tuple[float, str, str]] = []  # (t, group, text)
    group_of_key = {v: k for k, v in KEYS.items()}
    seen = 0
    next_notice = 0
    for step in range(0, 121):  # 2 s ticks for 4 minutes
        t = step * 2.0
        now = T0 + timedelta(seconds=t)
        batch = []
        while next_notice < 200 and arrivals[next_notice] <= t:
            row = notice(next_notice)
            batch.append(row)
            queued_at[row.payload["params"]["village"]] = t
            next_notice += 1
        if batch:
            with store.transaction() as conn:
                store.enqueue_in(conn, batch, now)
        deliverer.run_once(now)
        for req in wecom.requests[seen:]:
            group = group_of_key[req.query["key"][0]]
            sent.append((t, group, req.json()["text"]["content"]))
        seen = len(wecom.requests)

    per_group = Counter(g for _, g, _ in sent)
    digests = sum(1 for _, _, text in sent if text.startswith("停电汇总"))
    print(f"\nstorm: {len(sent)} requests for 200 notices ({digests} digests); per group: "
          + ", ".join(f"{g}={per_group[g]}" for g in GROUPS)
          + "; max in any 60 s: "
          + ", ".join(f"{g}={max_in_window([t for t, gg, _ in sent if gg == g])}"
                      for g in GROUPS))
    for g in GROUPS:
        assert max_in_window([t for t, gg, _ in sent if gg == g]) <= 20, g
    # Every village named within 3 minutes of its notice.
    for village, t_queued in queued_at.items():
        first = min((t for t, _, text in sent if village in text), default=None)
        assert first is not None, f"{village} never covered"
        assert first - t_queued <= 180, (village, first - t_queued)
    # Nothing dropped: every outbox row confirmed sent, and every digest kept as its own row.
    statuses = Counter((r.purpose, r.status) for r in store.messages())
    assert statuses == {("outage", "sent"): 200, ("digest", "sent"): digests}, statuses
    assert len(sent) < 200  # digests did their job


def test_limiter_state_survives_a_restart(store: Store, wecom: FakeService) -> None:
    channel = WeComChannel("wecom", robots=KEYS, base_url=wecom.url, timeout=5,
                           rate_limits=DEFAULT_LIMITS["wecom"])
    first = Deliverer(store, {"wecom": channel}, POLICY)
    rows = [notice(i * 5) for i in range(20)]  # 20 notices, all for g0
    with store.transaction() as conn:
        store.enqueue_in(conn, rows, T0)
    first.run_once(T0)  # 20 due, budget 20: each sent on its own
    assert len(wecom.requests) == 20
    # "Restart": a new deliverer on the same store, more notices for the same group.
    with store.transaction() as conn:
        store.enqueue_in(conn, [notice(i * 5) for i in range(20, 25)],
                         T0 + timedelta(seconds=15))
    second = Deliverer(store, {"wecom": channel}, POLICY)
    second.run_once(T0 + timedelta(seconds=20))
    assert len(wecom.requests) == 20  # nothing sent: the budget is still used up
    pending = store.messages(status="pending")
    assert len(pending) == 5
    assert all(r.attempts == 0 for r in pending)  # waiting is not a failed attempt
    assert min(r.next_attempt_at for r in pending) >= T0 + timedelta(seconds=60)
    second.run_once(T0 + timedelta(seconds=62))
    assert len(wecom.requests) == 25  # the window has passed: five individual notices
    assert Counter(r.status for r in store.messages()) == {"sent": 25}


def test_rate_limited_past_max_age_is_dead_lettered(store: Store, wecom: FakeService) -> None:
    short = RetryPolicy(initial_seconds=1, max_age_seconds=30)
    channel = WeComChannel("wecom", robots=KEYS, base_url=wecom.url, timeout=5,
                           rate_limits=DEFAULT_LIMITS["wecom"])
    d = Deliverer(store, {"wecom": channel}, short)
    for _ in range(20):
        d.limits.allow([f"wecom/{robot_rate_key(KEYS['g0'])}"], T0, DEFAULT_LIMITS["wecom"])
    with store.transaction() as conn:
        store.enqueue_in(conn, [notice(0)], T0)
    d.run_once(T0 + timedelta(seconds=1))
    (row,) = store.messages()
    assert row.status == "pending" and row.next_attempt_at <= T0 + timedelta(seconds=30)
    d.run_once(T0 + timedelta(seconds=31))
    (row,) = store.messages()
    assert row.status == "dead" and "max age" in (row.last_error or "")
    assert wecom.requests == []


