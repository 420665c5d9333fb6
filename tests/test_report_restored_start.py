"""The reliability report counts each AMI area off from when its own meters went off, also
once the area is back: the screen's restored record (``alive``, restored, start < end) was
skipped as a reading, so an area off 10:20-10:30 beside one off since 10:00 was counted from
the incident's start, 10:00."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from outage_sentinel.reports import build_report
from tests.test_calls_after_restoration import OFF, ON, area
from tests.test_calls_after_restoration import run as run  # noqa: F401  (the fixture)
from tests.test_daemon_ami_truth import NOW, Run

TZ = ZoneInfo("Asia/Shanghai")


def off_from(run: Run, transformer: str) -> str:
    rep = build_report(run.daemon.store, run.daemon.topology, NOW - timedelta(hours=10),
                       NOW + timedelta(hours=14), TZ, NOW + timedelta(minutes=50))
    (row,) = rep.areas[rep.areas["transformer"] == transformer].to_dict("records")
    column = next(c for c in rep.areas.columns if "off" in c or "start" in c)
    return str(row[column].astimezone(TZ).strftime("%H:%M"))


def test_an_area_back_is_counted_from_its_own_start(run: Run) -> None:
    area(run, "T-CG01-002", OFF, NOW)                          # 10:00, stays off
    run.step(NOW + timedelta(minutes=3))
    area(run, "T-CG01-022", OFF, NOW + timedelta(minutes=20))  # 10:20, same line
    run.step(NOW + timedelta(minutes=23))
    area(run, "T-CG01-022", ON, NOW + timedelta(minutes=30))   # back 10:30
    run.step(NOW + timedelta(minutes=32))
    assert off_from(run, "T-CG01-022") == "10:20"
    assert off_from(run, "T-CG01-002") == "10:00"
