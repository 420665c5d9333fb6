"""A village is not told as fact a start that may be hours wrong: while an AMI source is flagged
as read in the wrong zone (:mod:`outage_sentinel.clock_offset`, ``ami_clock_offset``), a start
that only the AMI screen's records give is stated as 待核实 (the notice, its SMS ``start``, the
care list); a start another source gives (an outage-system record) is stated, and once the
flag clears the meters' start is stated again.

Through the daemon (in process: demo topology, a ``file_drop`` AMI source, SQLite), its core
built by :func:`outage_sentinel.assembly.build_core`: a concentrator stamps its meters' events
in UTC without an offset while the county is read in Asia/Shanghai, so a real outage at 10:30
is read as 02:30.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel import crew
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident, Notice
from outage_sentinel.liaison import LiaisonPlanner, Renderer
from tests.test_ami_clock_offset import OFF, Stream, stamp, trickle
from tests.test_daemon_ami_truth import AREA, METERS, NOW

#: The real outage: 10:30 Beijing (02:30 UTC), half an hour into the stream.
OUTAGE = NOW + timedelta(minutes=30)
REAL_LOCAL = "2026-11-23 10:30"
#: What the source's times say of it, read in Asia/Shanghai: eight hours early.
AS_READ_LOCAL = "2026-11-23 02:30"


def village_rows(run: Stream, purpose: str) -> dict[str, Any]:
    """Incident -> its notice of ``purpose`` to village V001 (its three groups are told the
    same)."""
    rows = [m for m in run.daemon.store.messages()
            if m.audience == "liaison" and ":V001:" in m.key and m.purpose == purpose]
    out = {m.incident_id: m for m in rows}
    assert len({(m.incident_id, m.body, repr(m.payload["params"])) for m in rows}) == len(out)
    return out


def village_row(run: Stream, purpose: str) -> Any:
    """The one incident's notice of ``purpose`` to village V001."""
    (row,) = village_rows(run, purpose).values()
    return row


def meters_off(run: Stream, zone_hours: float, at: datetime = OUTAGE,
               oms: list[OutageEvent] | None = None) -> None:
    """The area's ten meters off at ``at``, stamped on UTC+``zone_hours`` (and the outage
    system's ``oms`` records stored with them); the outage told three minutes on."""
    if oms:
        run.daemon.store.ingest("oms", PollResult(events=oms), at)
    run.step(at + timedelta(seconds=12), [
        {"device_id": m, "code": OFF, "time": stamp(at + timedelta(seconds=i), zone_hours)}
        for i, m in enumerate(METERS)])
    run.step(at + timedelta(minutes=3))


def flag_the_source(run: Stream) -> None:
    """Twenty-five minutes of the stream stamped in UTC: the source is flagged at -8 h."""
    trickle(run, NOW, 25, zone_hours=0)
    assert run.gauge() == -8.0


def incidents(run: Stream) -> list[Incident]:
    return [Incident.from_json(r["state"])
            for r in run.daemon.store.load_incidents(open_only=True)]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stream]:
    r = Stream(tmp_path)
    yield r
    r.daemon.close()


def test_a_flagged_sources_start_is_told_as_to_be_confirmed(run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    row = village_row(run, "outage")
    assert "停电时间：待核实" in row.body
    assert AS_READ_LOCAL not in row.body and "02:30" not in row.body
    params = row.payload["params"]
    assert params["start"] == "" and params["start_unverified"] is True
    assert params["sms"]["start"] == "待核实"


def test_a_start_an_outage_system_record_gives_is_stated(run: Stream) -> None:
    """The outage system's record of the outage and the meters' (read eight hours early) make
    two incidents: the record's states its start, the meters' alone 待核实."""
    flag_the_source(run)
    record = OutageEvent(source="oms", event_id="F1", kind="fault", status="active",
                         start=OUTAGE, feeder="CG01", transformers=(AREA,))
    meters_off(run, zone_hours=0, oms=[record])
    rows = village_rows(run, "outage")
    by_source = {next(iter(inc.members)).split("|")[0]: rows[inc.id] for inc in incidents(run)}
    assert set(by_source) == {"oms", "ami"}
    assert f"停电时间：{REAL_LOCAL}" in by_source["oms"].body
    assert by_source["oms"].payload["params"]["sms"]["start"] == REAL_LOCAL
    assert "start_unverified" not in by_source["oms"].payload["params"]
    assert "停电时间：待核实" in by_source["ami"].body
    assert all(AS_READ_LOCAL not in r.body for r in rows.values())


def test_in_one_incident_the_start_another_source_gives_is_stated(run: Stream) -> None:
    """The meters' incident, with an outage-system record of the village's outage in it too:
    its start is stated (not the meters' earlier one); the meters' alone are 待核实."""
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    (inc,) = incidents(run)
    (ami,) = inc.members.values()
    oms = replace(ami, key="oms|F1", start=OUTAGE, seen_at=OUTAGE)
    joint = replace(inc, members={**inc.members, oms.key: oms})
    now = OUTAGE + timedelta(minutes=5)
    (row, *_) = run.daemon.planner.rows(joint, [Notice("outage", ("V001",))], now)
    assert f"停电时间：{REAL_LOCAL}" in row.body
    assert row.payload["params"]["sms"]["start"] == REAL_LOCAL
    (row, *_) = run.daemon.planner.rows(inc, [Notice("outage", ("V001",))], now)
    assert "停电时间：待核实" in row.body


def test_once_the_flag_clears_the_meters_start_is_stated_again(tmp_path: Path) -> None:
    run = Stream(tmp_path)
    flag_the_source(run)
    run.daemon.close()
    # The command centre sets the source's zone and restarts; the stream reads right.
    run = Stream(tmp_path, zone="UTC")
    try:
        trickle(run, NOW + timedelta(minutes=25), 30, zone_hours=0)
        assert run.gauge() == 0.0
        meters_off(run, zone_hours=0, at=NOW + timedelta(minutes=60))
        row = village_row(run, "outage")
        assert "停电时间：2026-11-23 11:00" in row.body
        assert row.payload["params"]["sms"]["start"] == "2026-11-23 11:00"
    finally:
        run.daemon.close()


def test_the_planner_states_no_start_while_flagged(run: Stream) -> None:
    """The built-in templates and SMS parameters of every liaison notice, the care list
    included, read 待核实 / "to be confirmed" for a start only the meters give."""
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    planner: LiaisonPlanner = run.daemon.planner
    assert planner.clock_flags is not None and planner.clock_flags() == {"ami-files": -8.0}
    (inc,) = incidents(run)
    now, tz = OUTAGE + timedelta(minutes=5), ZoneInfo("Asia/Shanghai")
    english = LiaisonPlanner(planner.topology, Renderer("en"), tz, planner.roles,
                             clock_flags=planner.clock_flags)
    for p, unsure in ((planner, "待核实"), (english, "to be confirmed")):
        for kind, purposes in (("fault", ("outage", "update", "restored", "cancelled")),
                               ("planned", ("outage", "reminder", "cancelled"))):
            told = replace(inc, kind=kind)
            for purpose in purposes:
                (row, *_) = p.rows(told, [Notice(purpose, ("V001",))], now, previous=told)
                assert "02:30" not in row.body and "None" not in row.body, row.body
                assert row.payload["params"]["sms"]["start"] == unsure, (kind, purpose)


def test_the_care_list_states_no_start_while_flagged(run: Stream) -> None:
    """文化路社区 (V002): a life-support household behind T-CG01-008, whose meters go dark."""
    flag_the_source(run)
    area = "T-CG01-008"
    run.step(OUTAGE + timedelta(seconds=12), [
        {"device_id": f"M-{area}-{i:03d}", "code": OFF,
         "time": stamp(OUTAGE + timedelta(seconds=i), 0)} for i in range(1, 11)])
    run.step(OUTAGE + timedelta(minutes=3))
    (inc,) = incidents(run)
    now, tz = OUTAGE + timedelta(minutes=5), ZoneInfo("Asia/Shanghai")
    planner: LiaisonPlanner = run.daemon.planner
    english = LiaisonPlanner(planner.topology, Renderer("en"), tz, planner.roles,
                             clock_flags=planner.clock_flags)
    for p, unsure in ((planner, "待核实"), (english, "to be confirmed")):
        care = crew.care_list_context(p.topology, inc, "V002", now, tz, p.renderer.language)
        assert care["households"]
        (row, *_) = p.care_rows(inc, "V002", care, {"wecom": "wecom"}, "抢修班")
        assert "02:30" not in row.body and unsure in row.body, row.body
        assert row.payload["params"]["sms"]["start"] == unsure
