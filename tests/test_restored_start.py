"""An area's meters coming back end its outage, they do not erase it: the AMI screen's
restoration replaces the area's record with an ``alive`` one (restored, start < end), and
that record still says when the area went off. The incident's start, each village's start and
its restored notice keep the time the outage notice said (audit H1: V001, off at 10:00, was
told 「停电（10:20起）已于10:30恢复送电」 once area 002 came back while area 022 of another
village, off since 10:20, stayed off).

The pure-core tests use the two-feeder grid from tests/conftest.py::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
                  │          └─ T3 (V2, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.events import OutageEvent, Signal, Status
from outage_sentinel.incidents import (
    Estimate,
    Evidence,
    Incident,
    Member,
    reports_outage,
    village_records,
    village_start,
)
from outage_sentinel.topology import Topology
from tests.conftest import T0
from tests.test_daemon_ami_truth import NOW, Run, report
from tests.test_incidents import Core, ev

OFF, ON = "3.26.0.85", "3.26.0.216"


# -- the pure core ------------------------------------------------------------------------------


def meters_off(area: str, at: datetime) -> OutageEvent:
    """The AMI screen's record of ``area``'s meters dark since ``at``."""
    return ev(f"{area}@{at:%H%M}", area, source="ami", signal="dead", start=at)


def meters_on(area: str, off: datetime, on: datetime) -> OutageEvent:
    """The same record once the meters came back: ``alive``, restored, its start kept."""
    return ev(f"{area}@{off:%H%M}", area, source="ami", signal="alive", status="restored",
              start=off, end=on)


def reported_only(topo: Topology, evidence: Evidence) -> Estimate:
    """An estimator placing the outage on the areas reported dark alone (no inference)."""
    areas = tuple(sorted(evidence.dead))
    return Estimate(devices=(), probability=None, transformers=areas,
                    customers=topo.customers_of(areas), villages=tuple(topo.villages_of(areas)))


def test_an_area_back_keeps_the_incident_and_its_villages_start(grid: Topology) -> None:
    core = Core(grid, estimator=reported_only)
    later, back = T0 + timedelta(minutes=20), T0 + timedelta(minutes=30)
    core.feed(meters_off("T1", T0), T0)
    core.feed(meters_off("T3", later), later)
    inc, notices = core.feed(meters_on("T1", T0, back), back)
    assert inc.status == "active" and "T1" in inc.restored
    assert ("restored", ("V1",)) in [(n.purpose, n.villages) for n in notices]
    assert inc.start == T0  # was 10:20: the start of the only record still open
    assert village_start(inc, "V1", grid) == T0
    assert village_start(inc, "V2", grid) == later
    assert [m.key for m in village_records(inc, "V1", grid)] == [f"ami|T1@{T0:%H%M}"]


def test_a_village_partly_back_keeps_the_start_of_its_first_area(grid: Topology) -> None:
    """V1's T1 off at 10:00, T2 at 10:20, T1 back at 10:30: V1 has been off since 10:00."""
    core = Core(grid, estimator=reported_only)
    later, back = T0 + timedelta(minutes=20), T0 + timedelta(minutes=30)
    core.feed(meters_off("T1", T0), T0)
    core.feed(meters_off("T2", later), later)
    inc, _ = core.feed(meters_on("T1", T0, back), back)
    assert inc.off == ("T2",)
    assert village_start(inc, "V1", grid) == T0


def test_which_records_report_an_outage() -> None:
    """:func:`reports_outage`: every outage report, and an ``alive`` record that ended a span
    off (the meters came back); not a restoration step given as a moment, nor a reading."""
    def member(signal: Signal, status: Status, end: datetime | None) -> Member:
        return Member(key="k", kind="fault", status=status, signal=signal,
                      start=T0, etr=None, end=end, device=None, transformers=("T1",),
                      unknown=(), area_text="", cause="", seen_at=T0)
    later = T0 + timedelta(minutes=30)
    assert all(reports_outage(member(s, "active", None)) for s in ("notice", "dead", "device_open"))
    assert reports_outage(member("alive", "restored", later))
    assert not reports_outage(member("alive", "restored", T0))  # a step at one moment
    assert not reports_outage(member("alive", "restored", None))
    assert not reports_outage(member("alive", "active", None))  # a reading: supply is on
    assert not reports_outage(member("call", "active", None))


# -- through the daemon (demo topology, AMI files) ----------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def meters(run: Run, area: str, code: str, at: datetime, seen: timedelta) -> None:
    run.step(at + seen, [report(f"M-{area}-{i + 1:03d}", code, at + timedelta(seconds=i))
                         for i in range(10)])


def two_areas_first_back(run: Run) -> None:
    """Area 002 (V001) off at 10:00, area 022 (V005, same line) at 10:20, 002 back at 10:30."""
    meters(run, "T-CG01-002", OFF, NOW, timedelta(seconds=12))
    run.step(NOW + timedelta(minutes=3))
    meters(run, "T-CG01-022", OFF, NOW + timedelta(minutes=20), timedelta(seconds=12))
    run.step(NOW + timedelta(minutes=23))
    meters(run, "T-CG01-002", ON, NOW + timedelta(minutes=30), timedelta(seconds=5))
    run.step(NOW + timedelta(minutes=36))  # the area stayed on (restore_settle_seconds)


def v001(run: Run, purpose: str) -> list[tuple[str, dict[str, str]]]:
    return [(m.body, dict(m.payload.get("params", {}).get("sms") or {}))
            for m in run.daemon.store.messages()
            if m.audience == "liaison" and ":V001:" in m.key and m.purpose == purpose]


def test_the_restored_notice_states_the_start_the_outage_notice_said(run: Run) -> None:
    two_areas_first_back(run)
    (outage, _), *_ = v001(run, "outage")
    assert "停电时间：2026-11-23 10:00" in outage
    back = v001(run, "restored")
    assert back, "V001 told nothing"
    for body, sms in back:
        assert "10:00起" in body and "10:20" not in body, body
        assert sms["start"] == "2026-11-23 10:00", sms  # the SMS template's ${start}
    (row,) = run.daemon.store.load_incidents(open_only=False)
    inc = Incident.from_json(row["state"])
    assert inc.start == NOW and inc.status == "active"
