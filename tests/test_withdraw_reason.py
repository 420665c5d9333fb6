"""A message the command centre held and that something done to its incident then took back (a
cancel, a crew pulled off for other work) keeps who held it and why, and says who took it
back: the command centre must still see its own word on the message, as an explicit withdraw
keeps it (``withdrawn by …: … (was held: …)``). Taken back so, it is not the command centre's
own withdrawal of that message: a care list taken back by a cancel is no word that its
recipient gets none (``withdrawn_by_command_in``).

Through the daemon's real processing, command steps and outbox controls, on SQLite and the
local PostgreSQL (conftest ``db_url``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import tests.test_lifecycle as lifecycle_tests
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import PollResult
from outage_sentinel.outbox_control import OutboxControl
from outage_sentinel.store import OutboxRow
from tests.test_crew_truth import county
from tests.test_lifecycle import T0, Harness, ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import feed


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[Harness]:
    monkeypatch.setattr(lifecycle_tests, "county", county)
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def hold(d: Daemon, row: OutboxRow, reason: str) -> None:
    OutboxControl(d.store, lambda: d.topology).take("hold", [row.id], "board:wang", d.clock(),
                                                   reason=reason)


def one(d: Daemon, incident_id: str, purpose: str) -> OutboxRow:
    (row,) = [m for m in d.store.messages(incident_id=incident_id) if m.purpose == purpose]
    return row


def test_a_held_notice_taken_back_by_a_cancel_keeps_the_hold_and_names_the_canceller(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    outage = next(m for m in daemon.store.messages(incident_id=iid)
                  if m.purpose == "outage" and m.status == "pending")
    hold(daemon, outage, "村名不对，核实中")
    care = one(daemon, iid, "care")
    CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(
        iid, "误报，用户 13912345678 内部故障", "li")
    got = {m.id: m for m in daemon.store.messages(incident_id=iid)}
    assert got[outage.id].status == "withdrawn"
    assert got[outage.id].last_error == (
        "incident cancelled: 误报，用户 139****5678 内部故障; taken back by li "
        "(was held: held by board:wang: 村名不对，核实中 (was pending))")
    # A pending one says who called the incident off, too.
    assert got[care.id].status == "withdrawn"
    assert got[care.id].last_error == (
        "incident cancelled: 误报，用户 139****5678 内部故障; taken back by li (was pending)")
    # Neither is the command centre's own word about that one message.
    with daemon.store.transaction() as conn:
        assert daemon.store.withdrawn_by_command_in(conn, iid, ("care", "outage")) == set()


def test_a_held_dispatch_of_a_crew_pulled_off_for_higher_priority_work_keeps_the_hold(
        h: Harness) -> None:
    # A low-priority outage takes the only crew; the command centre holds its orders.
    h.daemon.store.ingest("feed", PollResult(events=[ev("L", "T1", "T2")]),
                          h.now)
    h.daemon.process()
    low = h.only_incident()
    orders = one(h.daemon, low, "dispatch")
    OutboxControl(h.daemon.store, lambda: h.topology).take(
        "hold", [orders.id], "board:wang", h.now, reason="核对班组")
    # The hospital's outage: the daemon pulls the crew off the low one for it.
    h.at(2)
    h.feed(ev("H", "T4", "T5", start=T0 + timedelta(minutes=2)))
    hospital = next(str(r["id"]) for r in h.daemon.store.load_incidents(open_only=False)
                    if r["id"] != low)
    assert h.incident(hospital)["crew_id"] == "C1" and h.incident(low)["crew_id"] is None
    got = one(h.daemon, low, "dispatch")
    assert got.status == "withdrawn"
    assert got.last_error == (
        f"crew pulled off for higher-priority {hospital}; taken back by daemon "
        "(was held: held by board:wang: 核对班组 (was pending))")
