"""While an AMI source's clock is flagged, a crew's orders and the command centre's warnings
state no duration only the meters' start gives (已停电N分钟 counted from a start read hours
off), nor does delivery count one again; the score may still use it. A start another record
gives is stated, and the duration counted from it. The daemon's real processing, store and
lifecycle under the tests' fake clock (tests/test_lifecycle.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.test_lifecycle import T0, Harness, ev


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url)
    harness.daemon.planner.clock_flags = lambda: {"ami-files": -8.0}
    yield harness
    harness.daemon.close()


def priority_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("优先原因"))


def test_no_duration_is_stated_from_a_flagged_meters_start(h: Harness) -> None:
    h.at(76)
    h.feed(ev("m1", "T1", "T2", "T3", signal="dead", source="ami", start=T0))
    inc = h.only_incident()
    h.daemon.lifecycle.dispatch(inc, "operator:test")
    h.deliver()
    h.at(155)  # due at 166 (found at 76, rural 90): at risk within 15 minutes of it
    h.deliver()
    texts = [m for m in h.channel.sent if m.purpose in ("dispatch", "escalation_at_risk")]
    assert {m.purpose for m in texts} == {"dispatch", "escalation_at_risk"}
    for m in texts:
        assert "已停电" not in m.text, m.text
        assert "停电230户" in priority_line(m.text)  # the reasons still say who is off
    (queued,) = [m for m in h.daemon.store.messages() if m.purpose == "dispatch"]
    params = queued.payload["params"]
    assert "outage_since" not in params and "outage_for" not in params
    # the score still counts the time the meters give (76 minutes: 25 points)
    assert h.incident(inc)["priority"] >= 25


def test_the_duration_counts_from_the_start_another_record_gives(h: Harness) -> None:
    h.feed(ev("m1", "T1", "T2", "T3", signal="dead", source="ami", start=T0))
    h.at(60)
    h.feed(ev("R1", "T1", "T2", "T3", device="B1", start=T0 + timedelta(minutes=50)))
    (orders,) = h.sent("dispatch")  # confirmed by the record: a crew is sent at once
    assert "停电：2026-11-23 10:50起" in orders.text
    assert "已停电10分钟" in priority_line(orders.text), orders.text
    assert "1小时" not in orders.text
