"""An outage over before any village could be told of it: an AMI terminal's power-off and
power-on reach the daemon together (an ERC14 record, or a backlog uploaded after it
reconnects), or a record and its end are folded at the same instant. The outage notice is not
sent, and the village must not then read 恢复送电 of an outage it never heard of: no "power
back" goes to it, what was queued for it of the incident is taken back, and the incident's
log says so (``back_untold``); the command centre still sees the incident and its summary.
A village whose outage notice merely waits since before (quiet hours, a channel down) still
hears the end (``tests/test_daemon_ami_truth.py``).

Through the daemon (demo bundle, a ``file_drop`` AMI source, SQLite), notices delivered after
every step. Audit item H10."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.events import OutageEvent, Status
from outage_sentinel.incidents import Incident
from tests.test_daemon_ami_truth import AREA, NOW, TERMINAL, Run


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def step(run: Run, at: datetime, records: list[dict[str, Any]] | None = None,
         oms: list[OutageEvent] | None = None) -> None:
    run.step(at, records, oms)
    while run.daemon.deliverer.run_once(at):
        pass


def sent_to_village(run: Run) -> set[str]:
    return {m.purpose for m in run.daemon.store.messages()
            if m.audience == "liaison" and ":V001:" in m.key and m.status == "sent"}


def the_incident(run: Run) -> Incident:
    (row,) = run.daemon.store.load_incidents(open_only=False)
    return Incident.from_json(row["state"])


def untold_steps(run: Run, inc: Incident) -> list[dict[str, Any]]:
    return [e for e in run.daemon.store.incident_log(inc.id) if e["stage"] == "back_untold"]


def record(status: Status, at: datetime) -> OutageEvent:
    """The outage system's record R1 of village V001's area (ended at ``at`` if restored)."""
    return OutageEvent(source="oms", event_id="R1", kind="fault", status=status,
                       start=NOW - timedelta(minutes=40), transformers=(AREA,),
                       end=at if status == "restored" else None)


def test_a_terminals_outage_over_before_it_was_told_gives_no_power_back(run: Run) -> None:
    off = NOW - timedelta(minutes=40)
    step(run, NOW, [{"terminal_id": TERMINAL, "erc": "ERC14", "off_time": off.isoformat(),
                     "on_time": (off + timedelta(minutes=30)).isoformat()}])
    step(run, NOW + timedelta(minutes=2))
    inc = the_incident(run)
    assert inc.status == "restored"  # the command centre sees it
    assert "outage" not in sent_to_village(run)
    assert "restored" not in sent_to_village(run)
    # the round owed the outage notice when the end came: never queued, nor anything after
    assert not [m for m in run.daemon.store.messages()
                if m.audience == "liaison" and ":V001:" in m.key]
    assert "V001" not in inc.restored_villages  # not counted told
    (logged,) = untold_steps(run, inc)
    assert logged["details"]["villages"] == ["V001"]


def test_a_record_and_its_end_folded_at_one_instant_give_no_power_back(run: Run) -> None:
    """Each folded in a transaction of its own (the outage notice already in the outbox,
    queued at this same instant and never tried): the same rule."""
    run.step(NOW, oms=[record("active", NOW)])
    queued = [m for m in run.daemon.store.messages()
              if ":V001:" in m.key and m.purpose == "outage" and m.status == "pending"]
    assert queued, "the outage notice waits in the outbox"
    step(run, NOW, oms=[record("restored", NOW)])
    inc = the_incident(run)
    assert inc.status == "restored"
    assert sent_to_village(run) == set()
    mine = [m for m in run.daemon.store.messages() if ":V001:" in m.key]
    assert {m.status for m in mine if m.purpose == "outage"} == {"withdrawn"}
    assert not [m for m in mine if m.purpose == "restored"]
    assert len(untold_steps(run, inc)) == 1


def test_an_outage_told_and_then_over_still_hears_its_end(run: Run) -> None:
    step(run, NOW, oms=[record("active", NOW)])
    assert "outage" in sent_to_village(run)
    step(run, NOW + timedelta(minutes=5), oms=[record("restored", NOW + timedelta(minutes=5))])
    inc = the_incident(run)
    assert inc.status == "restored" and "restored" in sent_to_village(run)
    assert untold_steps(run, inc) == []
