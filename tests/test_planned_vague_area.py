"""Planned work whose text names its areas vaguely does not take in a fault beside it.

The demo county's 10kV王庄线 (MJ02): 王庄村's areas 2–5 hang below fuse FU-MJ02-01, 6–9 below
FU-MJ02-02. Work under way since 19:00 lists 6–9 and says "王庄乡王庄村部分区域", so 1–5 are
可能受影响 in it. At 20:00 the outage system files a FAULT record: FU-MJ02-01 blown, 2–5 off.
Taken in by the work because its vague text covers the whole village, the fault told the
village 故障停电 from the work's 19:00, told the command centre the work's own areas were
误报 (已报停电、不在故障点下游), called the work 推断故障点 once the fuse was back, and the
crew heard the fuse's areas were back only when the work ended. The fault record names its
areas: it is a fault of its own. The meters are another matter: an area of the work gone dark
is the work's doing, the areas it names vaguely as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import load_bundle
from tests.conftest import T0
from tests.test_shared_areas import feed, make_daemon

ROOT = Path(__file__).resolve().parents[1]
H = timedelta(hours=1)
M = timedelta(minutes=1)
WORK_AREAS = ("T-MJ02-006", "T-MJ02-007", "T-MJ02-008", "T-MJ02-009")
FUSE_AREAS = ("T-MJ02-002", "T-MJ02-003", "T-MJ02-004", "T-MJ02-005")
#: The fault's start (T0 + 1 h), local time: the village is told the fault began then.
FAULT_START = T0 + H


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, load_bundle(ROOT / "topology"))
    yield d
    d.close()


def work(**kw: Any) -> OutageEvent:
    """The work's record: 6–9 listed, 王庄村 named vaguely, T0 to T0 + 2h10."""
    return OutageEvent(**{
        "source": "feed", "event_id": "C-P1", "kind": "planned", "status": "active",
        "start": T0, "expected_restoration": T0 + 2 * H + 10 * M, "feeder": "MJ02",
        "transformers": WORK_AREAS, "area_text": "王庄乡王庄村部分区域",
        "cause": "计划检修：王庄二支线更换导线", **kw})


def fault(**kw: Any) -> OutageEvent:
    """The outage system's fault record: FU-MJ02-01 blown at T0 + 1h, 2–5 off."""
    return OutageEvent(**{
        "source": "feed", "event_id": "C-F1", "kind": "fault", "status": "active",
        "start": FAULT_START, "expected_restoration": FAULT_START + 30 * M, "feeder": "MJ02",
        "device": "FU-MJ02-01", "transformers": FUSE_AREAS, "cause": "支线熔断器熔断", **kw})


def incidents(d: Daemon) -> list[Incident]:
    return [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]


def holding(d: Daemon, key: str) -> Incident:
    (inc,) = [i for i in incidents(d) if key in i.members]
    return inc


def texts(d: Daemon, incident_id: str, audience: str, purpose: str | None = None) -> list[str]:
    return [m.body for m in d.store.messages() if m.incident_id == incident_id
            and m.audience == audience and (purpose is None or m.purpose == purpose)]


def deliver(d: Daemon) -> None:
    d.lifecycle.check(d.clock())
    while d.deliverer.run_once(d.clock()):
        pass


def local(t: datetime) -> str:
    """``t`` as the notices write it (the county's time, China Standard Time)."""
    return t.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


def test_a_fault_record_beside_vague_planned_work_is_a_fault_of_its_own(
        daemon: Daemon) -> None:
    feed(daemon, 60, work())
    deliver(daemon)
    planned = holding(daemon, "feed|C-P1")
    assert planned.scope.get("T-MJ02-002") == "possible"  # the case: the text covers 2–5
    feed(daemon, 61, fault())
    deliver(daemon)

    faulted, planned = holding(daemon, "feed|C-F1"), holding(daemon, "feed|C-P1")
    assert faulted.id != planned.id
    assert (faulted.kind, planned.kind) == ("fault", "planned")
    assert list(planned.members) == ["feed|C-P1"]
    assert faulted.start == FAULT_START and set(faulted.off) == set(FUSE_AREAS)
    # The village hears of the fault from its own start, not the work's 19:00.
    told = texts(daemon, faulted.id, "liaison", "outage")
    assert told and all(f"停电时间：{local(FAULT_START)}" in t for t in told)
    assert not texts(daemon, planned.id, "liaison", "update")
    # The work's areas are never the fault's 误报, nor the work a fault.
    work_words = texts(daemon, planned.id, "command")
    assert work_words and not any("误报" in t or "故障" in t for t in work_words)
    assert not any("王庄村6号台区" in t for t in texts(daemon, faulted.id, "command"))
    assert texts(daemon, faulted.id, "crew", "dispatch")
    assert not texts(daemon, planned.id, "crew")

    # The fuse is back at 20:19: its crew hears so then, not when the work ends.
    feed(daemon, 80, fault(status="restored", end=FAULT_START + 19 * M))
    deliver(daemon)
    assert holding(daemon, "feed|C-F1").status == "restored"
    assert texts(daemon, faulted.id, "crew", "crew_power_back")
    planned = holding(daemon, "feed|C-P1")
    assert (planned.kind, planned.status) == ("planned", "active")
    assert not any("故障" in t for t in texts(daemon, planned.id, "command"))


def test_the_meters_inside_the_work_are_still_the_work(daemon: Daemon) -> None:
    """A meter area of the work's own list gone dark joins the work (no fault incident),
    as does one the work names only vaguely; so does the outage system's fault record of
    the work's listed areas: the system restating the work's outage."""
    feed(daemon, 60, work())
    feed(daemon, 61, OutageEvent(source="ami", event_id="M6", kind="fault", status="active",
                                 signal="dead", start=T0 + H, transformers=("T-MJ02-006",)),
         OutageEvent(source="ami", event_id="M2", kind="fault", status="active",
                     signal="dead", start=T0 + H, transformers=("T-MJ02-002",)))
    (only,) = incidents(daemon)
    assert only.kind == "planned" and {"ami|M6", "ami|M2", "feed|C-P1"} <= set(only.members)
    assert not texts(daemon, only.id, "crew")
    feed(daemon, 62, fault(event_id="C-F2", device=None, transformers=WORK_AREAS[:2]))
    (only,) = incidents(daemon)
    assert "feed|C-F2" in only.members
