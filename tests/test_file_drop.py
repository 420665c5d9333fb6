"""The file-drop source on a real temporary directory."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import FileDropSourceConfig
from outage_sentinel.sources.base import Source
from outage_sentinel.sources.file_drop import FileDropSource

NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
REGISTRY = AmiRegistry.from_records(
    [("TX1-T", "TX1", "terminal")] + [(f"TX1-M{m}", "TX1", "meter") for m in range(6)],
    {"TX1": "F1"})


def make(tmp_path: Path, **extra: Any) -> FileDropSource:
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "ami-files", "directory": str(tmp_path),
         "settle_seconds": 2, **extra})
    source = FileDropSource(cfg, registry=REGISTRY, default_tz="Asia/Shanghai")
    source.start(None)
    return source


def drop(path: Path, text: str | bytes, age: float = 60.0) -> Path:
    """Write a file whose mtime is ``age`` seconds before NOW (settled)."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    t = NOW.timestamp() - age
    os.utime(path, (t, t))
    return path


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_is_a_source(tmp_path: Path) -> None:
    source = make(tmp_path)
    assert isinstance(source, Source)
    assert source.poll(NOW).not_modified


def test_file_is_processed_once_and_moved_to_done(tmp_path: Path) -> None:
    drop(tmp_path / "a.csv", "meter_id,code,time\n"
                             "TX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
                             "TX1-M1,3.26.0.85,2026-07-01 16:00:01\n")
    source = make(tmp_path)
    result = source.poll(NOW)
    assert [e.event_id for e in result.events] == [
        "TX1-M0:off:20260701T080000Z", "TX1-M1:off:20260701T080001Z"]
    assert all(e.transformers == ("TX1",) for e in result.events)
    assert names(tmp_path / "done") == []  # nothing moves before the commit
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["a.csv"]
    assert "a.csv" not in names(tmp_path)
    assert source.poll(NOW).not_modified


def test_crash_before_acknowledge_reads_the_file_again_with_the_same_ids(tmp_path: Path) -> None:
    drop(tmp_path / "a.jsonl", json.dumps(
        {"meter_id": "TX1-M0", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"}) + "\n")
    first = make(tmp_path).poll(NOW)  # the daemon dies before committing
    again = make(tmp_path).poll(NOW)
    assert [(e.event_id, e.revision) for e in again.events] == [
        (e.event_id, e.revision) for e in first.events]


def test_unacknowledged_poll_is_offered_again(tmp_path: Path) -> None:
    drop(tmp_path / "a.csv", "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n")
    source = make(tmp_path)
    failed_commit = source.poll(NOW)
    retry = source.poll(NOW)
    assert len(retry.events) == 1
    source.acknowledge(failed_commit)  # stale: does nothing
    assert names(tmp_path / "done") == []
    source.acknowledge(retry)
    assert names(tmp_path / "done") == ["a.csv"]


def test_bad_rows_are_quarantined_and_the_file_still_goes_to_done(tmp_path: Path) -> None:
    drop(tmp_path / "b.csv", "meter_id,code,time\n"
                             "TX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
                             "TX1-M1,3.26.0.85,sometime\n"
                             "UNKNOWN,3.26.0.85,2026-07-01 16:00:00\n"
                             "TX1-M2,3.26.0.216,2026-07-01 16:05:00\n")
    drop(tmp_path / "c.jsonl", '{"meter_id": "TX1-M3", "code": "3.26.0.85", '
                               '"time": "2026-07-01 16:00:00"}\n{broken\n')
    source = make(tmp_path)
    result = source.poll(NOW)
    assert sorted(e.area_text for e in result.events) == [
        "meter:TX1-M0", "meter:TX1-M2", "meter:TX1-M3"]
    reasons = sorted(q.reason for q in result.quarantined)
    assert reasons[0].startswith("b.csv row 3: time: expected a time")
    assert reasons[1].startswith("b.csv row 4: device id: meter or terminal 'UNKNOWN'")
    assert reasons[2].startswith("c.jsonl line 2: not valid JSON")
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["b.csv", "c.jsonl"]
    assert names(tmp_path / "failed") == []


def test_unparseable_files_go_to_failed_with_a_reason(tmp_path: Path) -> None:
    drop(tmp_path / "noheader.csv", "TX1-M0;3.26.0.85;2026-07-01\n")
    drop(tmp_path / "allbad.jsonl", "{bad\n[1, 2\n")
    drop(tmp_path / "binary.csv", b"\x00\xff\xfe\x81\x00" * 50)
    drop(tmp_path / "good.csv", "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n")
    source = make(tmp_path)
    result = source.poll(NOW)
    assert len(result.events) == 1
    reasons = {q.reason.split(":")[0]: q.reason for q in result.quarantined}
    assert set(reasons) == {"noheader.csv", "allbad.jsonl", "binary.csv"}
    assert "header has no" in reasons["noheader.csv"]
    assert "no usable record" in reasons["allbad.jsonl"]
    source.acknowledge(result)
    assert names(tmp_path / "failed") == ["allbad.jsonl", "binary.csv", "noheader.csv"]
    assert names(tmp_path / "done") == ["good.csv"]


def test_files_being_written_are_left_alone(tmp_path: Path) -> None:
    text = "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    drop(tmp_path / "fresh.csv", text, age=0.5)  # written half a second ago
    drop(tmp_path / "upload.csv.part", text)
    drop(tmp_path / ".hidden.csv", text)
    source = make(tmp_path)
    assert source.poll(NOW).not_modified
    later = datetime.fromtimestamp(NOW.timestamp() + 5, UTC)
    result = source.poll(later)
    assert len(result.events) == 1
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["fresh.csv"]


def test_file_changed_after_read_is_not_moved(tmp_path: Path) -> None:
    path = drop(tmp_path / "a.csv", "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n")
    source = make(tmp_path)
    result = source.poll(NOW)
    drop(path, "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
               "TX1-M1,3.26.0.85,2026-07-01 16:00:00\n", age=30)
    source.acknowledge(result)
    assert names(tmp_path / "done") == []
    assert len(source.poll(NOW).events) == 2


def test_same_name_again_does_not_overwrite_done(tmp_path: Path) -> None:
    text = "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    source = make(tmp_path)
    for _ in range(2):
        drop(tmp_path / "export.csv", text)
        source.acknowledge(source.poll(NOW))
    assert names(tmp_path / "done") == ["export.1.csv", "export.csv"]


def test_gbk_export_with_terminal_records(tmp_path: Path) -> None:
    text = ("终端地址,事件,停电时间,上电时间\n"
            "TX1-T,ERC14,2026-07-01 16:00:00,2026-07-01 16:10:00\n")
    drop(tmp_path / "erc.csv", text.encode("gbk"))
    cfg = {"ami": {"id_fields": ["终端地址"], "code_fields": ["事件"],
                   "off_time_fields": ["停电时间"], "on_time_fields": ["上电时间"],
                   "time_fields": ["停电时间"]}}
    result = make(tmp_path, **cfg).poll(NOW)
    assert [(e.signal, e.area_text) for e in result.events] == [
        ("dead", "terminal:TX1-T"), ("alive", "terminal:TX1-T")]


def test_a_stray_carriage_return_costs_its_row_only_and_every_row_is_accounted_for(
        tmp_path: Path) -> None:
    """A bare CR in one unquoted field made the csv module raise mid-file: that row was
    quarantined, the valid rows after it silently dropped, and the file still went to done/."""
    rows = ["meter_id,code,time,note"]
    notes = ["ok", "ok", "site\rB", "ok", "ok", "ok"]
    rows += [f"TX1-M{m},3.26.0.85,2026-07-01 16:00:0{m},{note}" for m, note in enumerate(notes)]
    rows.insert(5, '"TX1-T",ERC14,2026-07-01 16:00:09,"two\nlines"')  # quoted: lines 6-7
    drop(tmp_path / "cr.csv", ("\n".join(rows) + "\n").encode("utf-8"))
    source = make(tmp_path)
    result = source.poll(NOW)
    assert sorted(e.area_text for e in result.events if e.signal == "dead") == [
        "meter:TX1-M0", "meter:TX1-M1", "meter:TX1-M3", "meter:TX1-M4", "meter:TX1-M5",
        "terminal:TX1-T"]
    [bad] = result.quarantined
    assert bad.reason.startswith("cr.csv row 4: bad CSV: a line break (a carriage return)")
    assert bad.raw == {"line": "TX1-M2,3.26.0.85,2026-07-01 16:00:02,site\rB\n"}
    assert source.stats["records"] == 7  # every row counted: six meters (one bad), the terminal
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["cr.csv"]


def test_rows_after_a_bad_row_keep_their_own_line_numbers(tmp_path: Path) -> None:
    text = ("meter_id,code,time,note\n"
            "TX1-M0,3.26.0.85,2026-07-01 16:00:00,\"quoted\nover two lines\"\n"  # lines 2-3
            "TX1-M1,3.26.0.85,2026-07-01 16:00:01,a\rb\n"                        # line 4
            "TX1-M2,3.26.0.85,sometime,x\n")                                     # line 5
    drop(tmp_path / "n.csv", text)
    result = make(tmp_path).poll(NOW)
    assert [e.area_text for e in result.events] == ["meter:TX1-M0"]
    assert [q.reason.split(":")[0] for q in result.quarantined] == ["n.csv row 4", "n.csv row 5"]


def test_a_device_id_with_a_lone_surrogate_costs_its_line_not_the_file(tmp_path: Path) -> None:
    """With unknown devices kept, the id went into the revision hash before any check: the
    UnicodeEncodeError failed the whole file (to failed/, naming no line)."""
    lines = [json.dumps({"meter_id": f"M{i}", "code": "power_off",
                         "time": "2026-07-01 09:00:00"}) for i in range(5)]
    lines.insert(2, '{"meter_id": "X\\ud800", "code": "power_off", "time": "2026-07-01 09:00:00"}')
    lines.insert(4, '{"meter_id": "Y\\u0000", "code": "power_off", "time": "2026-07-01 09:00:00"}')
    drop(tmp_path / "export.jsonl", "\n".join(lines) + "\n")
    source = make(tmp_path, ami={"unknown_devices": "keep"})
    result = source.poll(NOW)
    assert sorted(e.area_text for e in result.events) == [f"meter:M{i}" for i in range(5)]
    assert [q.reason for q in result.quarantined] == [
        f"export.jsonl line {n} record 1: device id (meter_id): contains a character the "
        "database cannot store (NUL or a lone surrogate)" for n in (3, 5)]
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["export.jsonl"] and names(tmp_path / "failed") == []
