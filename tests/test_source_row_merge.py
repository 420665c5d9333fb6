"""Rows of one record id read in one poll of ``file_drop`` are one record, as for ``http_json``
(tests/test_feed_rows.py): an outage system exports a work order once per transformer area.

Read as rows replacing each other, the record's areas flipped: the store kept the last row's
areas, and the same file read again (a crash between the commit and the move) stored each row
anew, turning the work back to the first village, then to the second. AMI reports (``file_drop``
with ``content: ami``, and ``mqtt``, which carries AMI reports only) are events, not records:
they are never merged.

Real files in a temporary directory, a real SQLite store, the daemon as a subprocess, and the
real Mosquitto at 127.0.0.1:1883 for MQTT.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import FileDropSourceConfig
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.sources.file_drop import FileDropSource
from outage_sentinel.sources.mapping import MERGED_ROWS, PRESETS
from outage_sentinel.store import Store
from tests.e2e_helpers import make_config
from tests.test_feed_rows import run_once, texts
from tests.test_mqtt_source import ids as ids  # noqa: F401  (the fixture)
from tests.test_mqtt_source import make_source as make_mqtt_source
from tests.test_mqtt_source import poll_until
from tests.test_mqtt_source import publish as publish  # noqa: F401  (the fixture)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 16:00 in Beijing
#: Outage notices exported as files: the 95598 list format's columns.
NOTICE_FIELDS = PRESETS["95598_list"].fields.model_dump(exclude_defaults=True)
HEADER = "powerOffId,typeCode,startTime,stopTime,lineName,pubTranName,scope\n"
ROW_A = "P1,1,2026-11-24 08:00:00,2026-11-24 16:00:00,10kV王庄线,王庄村1号台区,王庄村\n"
ROW_B = "P1,1,2026-11-24 08:00:00,2026-11-24 16:00:00,10kV王庄线,前罗堤村1号台区,前罗堤村\n"
OTHER = "P2,1,2026-11-24 08:00:00,2026-11-24 12:00:00,10kV王庄线,王楼村1号台区,王楼村\n"
BOTH = {"王庄村1号台区", "前罗堤村1号台区"}


def drop(path: Path, text: str, age: float = 60.0, now: datetime = NOW) -> Path:
    """Write a file settled ``age`` seconds before ``now``."""
    path.write_text(text, encoding="utf-8")
    t = now.timestamp() - age
    os.utime(path, (t, t))
    return path


def notices_source(directory: Path, **extra: Any) -> FileDropSource:
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "notice-files", "directory": str(directory),
         "content": "work_orders", "fields": NOTICE_FIELDS, "timezone": "Asia/Shanghai",
         **extra})
    source = FileDropSource(cfg)
    source.start(None)
    return source


def by_id(result: PollResult) -> dict[str, OutageEvent]:
    ids_seen = [e.event_id for e in result.events]
    assert len(ids_seen) == len(set(ids_seen)), ids_seen  # one event per id and poll
    return {e.event_id: e for e in result.events}


def stored(store: Store, event_id: str) -> list[OutageEvent]:
    return [s.event for s in store.events() if s.event.event_id == event_id]


# -- file_drop: records ---------------------------------------------------------------------


def test_a_csv_listing_one_outage_on_two_rows_is_one_event_with_both_villages(
        tmp_path: Path) -> None:
    drop(tmp_path / "notices.csv", HEADER + ROW_A + OTHER + ROW_B)
    result = notices_source(tmp_path).poll(NOW)
    events = by_id(result)
    assert set(events) == {"P1", "P2"} and result.quarantined == []
    p1 = events["P1"]
    assert set(p1.transformers) == BOTH and p1.kind == "planned"
    assert set(p1.area_text.split("；")) == {"王庄村", "前罗堤村"}
    assert len(p1.raw[MERGED_ROWS]) == 1  # nothing read is lost
    assert events["P2"].transformers == ("王楼村1号台区",)


def test_the_same_rows_read_again_or_reordered_do_not_flip_the_areas(tmp_path: Path) -> None:
    """A crash after the commit and before the move reads the file again; an export may list
    the rows in another order. Neither is a new state of the record."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    drop_dir = tmp_path / "drop"
    drop_dir.mkdir()
    drop(drop_dir / "a.csv", HEADER + ROW_A + ROW_B)
    store.ingest("notice-files", notices_source(drop_dir).poll(NOW), NOW)  # not acknowledged
    again = notices_source(drop_dir)  # the daemon restarted
    result = again.poll(NOW)
    store.ingest("notice-files", result, NOW)
    again.acknowledge(result)
    drop(drop_dir / "b.csv", HEADER + ROW_B + ROW_A)
    store.ingest("notice-files", again.poll(NOW), NOW)
    (event,) = stored(store, "P1")  # stored once: no ~rN revision flipping the villages
    assert set(event.transformers) == BOTH


def test_two_files_are_two_exports_each_its_own_state_of_the_record(tmp_path: Path) -> None:
    """An export lists a work order on a row per area; another file is another export (the
    daemon was down, a standby took over, the export runs more often than the poll): its rows
    are the record's next state, not more rows of the first file's."""
    drop(tmp_path / "a.csv", HEADER + ROW_A + ROW_B + OTHER, age=120)
    drop(tmp_path / "b.csv", HEADER + ROW_B, age=60)  # the work moved off 王庄村
    source = notices_source(tmp_path)
    result = source.poll(NOW)
    p1 = [e for e in result.events if e.event_id == "P1"]
    assert [set(e.transformers) for e in p1] == [BOTH, {"前罗堤村1号台区"}]
    source.acknowledge(result)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.csv", "b.csv"]


def test_a_later_export_cancelling_the_work_in_the_same_poll_is_stored(tmp_path: Path) -> None:
    """Two exports of one order in one poll, the second calling the work off: the
    cancellation is the record's last word (a village must hear 停电取消), never a conflict
    quarantining both."""
    drop(tmp_path / "a.csv", HEADER + ROW_A + ROW_B, age=300)
    cancelled = HEADER.replace("scope\n", "scope,status\n")
    drop(tmp_path / "b.csv", cancelled + ROW_A.replace("\n", ",2\n")
         + ROW_B.replace("\n", ",2\n"), age=120)
    source = notices_source(tmp_path, fields={**NOTICE_FIELDS, "status": "status",
                                              "status_values": {"1": "active",
                                                                "2": "cancelled"}})
    result = source.poll(NOW)
    assert not result.quarantined, [q.reason for q in result.quarantined]
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    store.ingest("notice-files", result, NOW)
    source.acknowledge(result)
    assert [e.status for e in stored(store, "P1")][-1] == "cancelled"


def test_rows_of_one_file_that_disagree_are_quarantined_together_naming_rows(
        tmp_path: Path) -> None:
    """Which row's start is right cannot be told: neither is used, the other records of the
    file are, and the file is done (the quarantine keeps both rows)."""
    drop(tmp_path / "a.csv", HEADER + ROW_A + OTHER
         + ROW_B.replace("2026-11-24 08:00:00", "2026-11-24 09:00:00"))
    source = notices_source(tmp_path)
    result = source.poll(NOW)
    assert list(by_id(result)) == ["P2"]
    (bad,) = result.quarantined
    assert "'P1'" in bad.reason and "start (startTime)" in bad.reason
    assert "a.csv row 2: 2026-11-24 08:00:00" in bad.reason
    assert "a.csv row 4: 2026-11-24 09:00:00" in bad.reason
    assert sorted(r["pubTranName"] for r in bad.raw) == sorted(BOTH)
    assert source.stats["quarantined"] == 1
    source.acknowledge(result)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.csv"]


def test_trouble_call_rows_of_one_order_are_one_call(tmp_path: Path) -> None:
    """The default field map (95598 work orders): an order listed on two rows is one call."""
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "orders", "directory": str(tmp_path),
         "content": "work_orders", "timezone": "Asia/Shanghai"})
    source = FileDropSource(cfg)
    source.start(None)
    drop(tmp_path / "orders.csv", "orderNo,acceptTime,tgNo,faultType,content\n"
                                  "W1,2026-11-23 15:50:00,T-MJ02-001,无电,全村无电\n"
                                  "W1,2026-11-23 15:50:00,T-MJ02-010,无电,全村无电\n")
    (call,) = source.poll(NOW).events
    assert call.signal == "call" and set(call.transformers) == {"T-MJ02-001", "T-MJ02-010"}


# -- AMI reports are events, never merged -----------------------------------------------------


def test_ami_reports_in_dropped_files_are_not_merged(tmp_path: Path) -> None:
    registry = AmiRegistry.from_records([("TX1-M0", "TX1", "meter"), ("TX1-M1", "TX1", "meter")],
                                        {"TX1": "F1"})
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "ami-files", "directory": str(tmp_path)})
    source = FileDropSource(cfg, registry=registry, default_tz="UTC")
    source.start(None)
    report = "TX1-M0,3.26.0.85,2026-11-23T07:59:00Z\n"
    drop(tmp_path / "a.csv", "meter_id,code,time\n" + report + report
         + "TX1-M1,3.26.0.85,2026-11-23T07:59:01Z\n")
    drop(tmp_path / "b.csv", "meter_id,code,time\n" + report)
    events = source.poll(NOW).events
    assert [e.event_id for e in events] == ["TX1-M0:off:20261123T075900Z"] * 2 + [
        "TX1-M1:off:20261123T075901Z", "TX1-M0:off:20261123T075900Z"]
    assert not [e for e in events if MERGED_ROWS in e.raw]


def _broker_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _broker_up(), reason="no MQTT broker at 127.0.0.1:1883")
def test_mqtt_carries_ami_reports_only_and_they_are_not_merged(
        ids: dict[str, str],  # noqa: F811
        publish: Callable[[str, Any], None]) -> None:  # noqa: F811
    """Two messages of one poll reporting the same meter off (a re-send) stay two reports: a
    duplicate for the store (same id, same revision), no record to merge."""
    source = make_mqtt_source(ids)
    try:
        report = {"meter_id": "T1-M0", "code": "3.26.0.85", "time": "2026-11-23T07:59:00Z"}
        publish(ids["topic"], report)
        publish(ids["topic"], [report, dict(report, meter_id="T1-M1")])
        events = [e for r in poll_until(source, 3) for e in r.events]
        assert sorted(e.event_id for e in events) == [
            "T1-M0:off:20261123T075900Z", "T1-M0:off:20261123T075900Z",
            "T1-M1:off:20261123T075900Z"]
        assert len({e.revision for e in events if e.event_id.startswith("T1-M0")}) == 1
        assert not [e for e in events if MERGED_ROWS in e.raw]
    finally:
        source.close()


# -- through the daemon -----------------------------------------------------------------------


def local(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.slow
def test_daemon_announces_work_dropped_on_two_rows_to_both_villages(tmp_path: Path) -> None:
    """Planned work two days ahead, exported on a row for 王庄村1号台区 and one for
    前罗堤村1号台区: each village hears of it once, neither hears 停电取消."""
    drop_dir = tmp_path / "drop"
    drop_dir.mkdir()
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    ahead, until = local(now + timedelta(days=2)), local(now + timedelta(days=2, hours=8))
    rows = [ROW_A, ROW_B]
    drop(drop_dir / "notices.csv", HEADER + "".join(
        r.replace("2026-11-24 08:00:00", ahead).replace("2026-11-24 16:00:00", until)
        for r in rows), now=now)
    source = {"name": "notice-files", "type": "file_drop", "directory": str(drop_dir),
              "content": "work_orders", "fields": NOTICE_FIELDS, "interval_seconds": 60}
    cfg = make_config(tmp_path, sources=[source], board={"enabled": False})
    report = run_once(cfg)
    assert report["events"] == 1 and report["failed_polls"] == 0, report
    told = texts(tmp_path)
    for village in ("王庄村", "前罗堤村"):
        assert [t for t in told if t.startswith("【计划停电通知】" + village)], told
    assert not [t for t in told if "停电取消" in t], told
