"""Trouble calls that reach the daemon before the outage they are about has an incident (the
AMI screen holds meters' reports for its minimum duration; customers call at once): in process,
demo topology, SQLite, the clock passed in. They are evidence as much as calls that came after,
and still never open an incident, join two, or join planned work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from tests.test_daemon_ami_truth import NOW, Run, report

CALLED = ("T-CG01-003", "T-CG01-003", "T-CG01-004")  # village V001, under FU-CG01-01
DARK = [f"M-T-CG01-002-{i:03d}" for i in range(1, 11)]


def call(n: int, at: datetime, area: str, feeder: str = "CG01") -> OutageEvent:
    return OutageEvent(source="calls", event_id=f"WO{n}", kind="fault", status="active",
                       signal="call", start=at, feeder=feeder, transformers=(area,),
                       cause="停电")


def take_calls(run: Run, at: datetime, calls: list[OutageEvent]) -> None:
    run.daemon.store.ingest("calls", PollResult(events=calls), at)
    run.step(at)


def meters_dark(run: Run, at: datetime) -> None:
    """Area 002's meters dark from ``at``; the screen releases the outage minutes later."""
    run.step(at + timedelta(seconds=12),
             [report(m, "3.26.0.85", at + timedelta(seconds=i)) for i, m in enumerate(DARK)])
    run.step(at + timedelta(minutes=3))


def incidents(run: Run) -> list[Incident]:
    return [Incident.from_json(r["state"])
            for r in run.daemon.store.load_incidents(open_only=False)]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Run]:
    (tmp_path / "control").mkdir()
    r = Run(tmp_path / "control")
    yield r
    r.daemon.close()


def test_calls_before_the_incident_count_as_calls_after_it(run: Run, control: Run) -> None:
    take_calls(run, NOW + timedelta(minutes=2),
               [call(i, NOW + timedelta(minutes=1, seconds=10 * i), t)
                for i, t in enumerate(CALLED)])
    assert incidents(run) == []  # calls alone open nothing
    meters_dark(run, NOW + timedelta(minutes=3))
    (inc,) = incidents(run)
    assert sorted(k for k in inc.members if k.startswith("calls|")) == [
        "calls|WO0", "calls|WO1", "calls|WO2"]
    assert {s.event.event_id: s.incident_id for s in run.daemon.store.events()
            if s.event.signal == "call"} == {"WO0": inc.id, "WO1": inc.id, "WO2": inc.id}

    meters_dark(control, NOW + timedelta(minutes=3))
    take_calls(control, NOW + timedelta(minutes=7),
               [call(i, NOW + timedelta(minutes=6, seconds=10 * i), t)
                for i, t in enumerate(CALLED)])
    (after,) = incidents(control)
    assert inc.estimate.devices == after.estimate.devices
    assert inc.estimate.probability == pytest.approx(after.estimate.probability, abs=1e-3)
    assert inc.estimate.transformers == after.estimate.transformers


def test_only_the_feeders_calls_within_the_window_before_join(run: Run) -> None:
    window = timedelta(minutes=run.daemon.config.correlation.window_minutes)
    start = NOW + window + timedelta(minutes=10)
    take_calls(run, NOW + timedelta(minutes=1), [
        call(0, NOW, "T-CG01-003"),  # more than the window before the outage
        call(1, start - timedelta(minutes=5), "T-MJ02-010", feeder="MJ02"),  # another line
        call(2, start - timedelta(minutes=5), "T-CG01-004"),
    ])
    meters_dark(run, start)
    (inc,) = incidents(run)
    assert [k for k in inc.members if k.startswith("calls|")] == ["calls|WO2"]


def test_a_call_joins_one_incident_and_never_planned_work(run: Run) -> None:
    take_calls(run, NOW + timedelta(minutes=2), [call(0, NOW + timedelta(minutes=1, seconds=30),
                                                      "T-CG01-001")])
    work = OutageEvent(source="oms", event_id="P1", kind="planned", status="active",
                       start=NOW + timedelta(minutes=1),
                       expected_restoration=NOW + timedelta(hours=4), feeder="CG01",
                       transformers=("T-CG01-001",))
    run.step(NOW + timedelta(minutes=2, seconds=30), oms=[work])
    (planned,) = incidents(run)
    assert "calls|WO0" not in planned.members
    meters_dark(run, NOW + timedelta(minutes=3))
    fault = next(i for i in incidents(run) if i.kind == "fault")
    assert "calls|WO0" in fault.members
    # That fault restored, a second outage on the line within the window takes none of them.
    run.step(NOW + timedelta(minutes=20),
             [report(m, "3.26.0.216", NOW + timedelta(minutes=19)) for m in DARK])
    run.step(NOW + timedelta(minutes=24, seconds=30))  # stayed on (restore_settle_seconds)
    assert fault.id not in {r["id"] for r in run.daemon.store.load_incidents(open_only=True)}
    meters_dark(run, NOW + timedelta(minutes=25))
    faults = [i for i in incidents(run) if i.kind == "fault"]
    assert len(faults) == 2
    assert [i.id for i in faults if "calls|WO0" in i.members] == [fault.id]
