"""A crew hears only of work it was told of: pulled off an outage whose orders never reached
it (held, then withdrawn by the command centre), its orders for the outage it goes to say
nothing of pausing the first; pulled off one it was told of, they do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.events import PollResult
from outage_sentinel.outbox_control import OutboxControl
from tests.test_crew_truth import county, harness
from tests.test_lifecycle import T0, Harness, ev


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness_ = harness(monkeypatch, tmp_path, db_url, county())
    yield harness_
    harness_.daemon.close()


def low_outage(h: Harness, deliver: bool) -> str:
    """A fault on F1 (no hospital) the only crew is sent to; its orders delivered or not."""
    if deliver:
        h.feed(ev("L", "T1", "T2", "T3"))
    else:
        h.daemon.store.ingest("feed", PollResult(events=[ev("L", "T1", "T2", "T3")]), h.now)
        h.daemon.process()
    low = h.only_incident()
    assert h.incident(low)["crew_id"] == "C1"
    return low


def hospital_orders(h: Harness, low: str) -> str:
    """The hospital's outage on F2 (higher priority) takes the crew off ``low``: its orders."""
    h.at(5)
    h.feed(ev("H", "T4", "T5", start=T0 + timedelta(minutes=5)))
    hospital = next(str(r["id"]) for r in h.daemon.store.load_incidents(open_only=False)
                    if r["id"] != low)
    assert h.incident(hospital)["crew_id"] == "C1" and h.incident(low)["crew_id"] is None
    (orders,) = [m for m in h.sent("dispatch") if m.incident_id == hospital]
    return orders.text


def test_a_crew_never_told_of_an_outage_is_not_told_to_pause_it(h: Harness) -> None:
    low = low_outage(h, deliver=False)
    (row,) = [m for m in h.daemon.store.messages(incident_id=low) if m.purpose == "dispatch"]
    control = OutboxControl(h.daemon.store, lambda: h.topology)
    control.take("hold", [row.id], "board:wang", h.now)
    h.at(2)
    control.take("withdraw", [row.id], "board:wang", h.now, reason="wrong crew")
    h.deliver()
    assert not [m for m in h.sent("dispatch") if m.incident_id == low]  # never reached it
    text = hospital_orders(h, low)
    assert "请暂停" not in text and low not in text
    # The log still says what the dispatch did: the crew was taken off the first outage.
    (entry,) = [e for e in h.daemon.store.incident_log(low)
                if (e["details"] or {}).get("reassigned_to")]
    assert entry["details"]["crew"] == "C1"


def test_a_crew_told_of_an_outage_is_told_to_pause_it(h: Harness) -> None:
    low = low_outage(h, deliver=True)
    assert [m for m in h.sent("dispatch") if m.incident_id == low]
    assert f"请暂停{low}（优先级" in hospital_orders(h, low)
