"""The board's live page is woken by an attempt that failed: the message is pending again with
one more attempt and a new error, which the page shows, though no status's count moved."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from outage_sentinel.events import PollResult
from tests.conftest import T0
from tests.test_probability_statements import ev, make, only_incident


def test_a_failed_attempt_moves_the_marker(tmp_path: Path) -> None:
    d = make(tmp_path)
    try:
        d.clock.now = T0 + timedelta(minutes=1)  # type: ignore[attr-defined]
        d.store.ingest("feed", PollResult(events=[ev("N1", "T1")]), d.clock())
        d.process()  # queued, nothing delivered yet
        iid = only_incident(d)
        (first, *_) = [m for m in d.store.messages(incident_id=iid) if m.status == "pending"]
        now = d.clock()
        before = d.store.change_marker()
        assert d.store.mark_inflight(first.id, now, first.target)
        d.store.mark_retry(first.id, now + timedelta(minutes=1), "HTTP 500 from the robot")
        (row,) = d.store.messages(ids=[first.id])
        assert row.status == "pending" and row.attempts == first.attempts + 1
        assert d.store.change_marker() != before
    finally:
        d.close()
