"""Times as Chinese back ends and Excel write them, and optional times a feed cannot give.

1. ``2026/12/7 8:30``, ``2026年12月7日 8时30分`` and the like are read (in the source's zone),
   not quarantined; impossible dates and out-of-range years still are, saying why.
2. An ETR of ``待定`` / ``--`` / ``未知`` / ``暂无`` (or any text that is no time) is no ETR:
   the outage is kept, a warning names the field and the value.
3. An ETR not after the start (a stop typed a day early) is no ETR either: the record is
   kept, a warning names the field and both values, and no village is promised a
   restoration before its outage begins.
"""

from __future__ import annotations

import tempfile
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from outage_sentinel.events import EventError, parse_optional_time, parse_time
from outage_sentinel.sources.mapping import PRESETS, RecordMapper
from outage_sentinel.sources.work_orders import WorkOrderParser
from tests.test_http_json import Scripted, json_reply, make_source, server  # noqa: F401

CN = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


def cn(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=CN)


def list_mapper() -> RecordMapper:
    return RecordMapper("feed", PRESETS["95598_list"].fields, CN)


def powercut_mapper() -> RecordMapper:
    return RecordMapper("feed", PRESETS["95598_powercut"].fields, CN)


def list_record(**kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"powerOffId": "P1", "typeCode": "1",
                              "startTime": "2026-12-08 08:00:00",
                              "stopTime": "2026-12-08 18:00:00", "lineName": "CG01",
                              "pubTranName": "建设路社区1号台区", "scope": "建设路社区",
                              "poweroffReason": "线路检修"}
    record.update(kw)
    return record


def fault_record(stop: Any) -> dict[str, Any]:
    return {"poweroffId": "G1", "powerType": "故障停电", "startTime": "2026-12-07 08:30:00",
            "stopTime": stop, "powerCircuit": "CG01", "powerArea": "建设路社区"}


def ignored(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e.get("event") == "feed_time_ignored"]


# -- 1. the time shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "local"), [
    ("2026/12/7 8:30", cn(2026, 12, 7, 8, 30)),
    ("2026-12-7 8:30:00", cn(2026, 12, 7, 8, 30)),
    ("2026-12-07 8:30", cn(2026, 12, 7, 8, 30)),
    ("2026-12-07 8:30:00", cn(2026, 12, 7, 8, 30)),
    ("2026/12/7 8:30:00", cn(2026, 12, 7, 8, 30)),
    ("2026-12-7T8:30", cn(2026, 12, 7, 8, 30)),
    ("2026-12-7 8:30:05.5", cn(2026, 12, 7, 8, 30, 5, 500000)),
    ("2026-12-7", cn(2026, 12, 7)),
    ("2026年12月7日 8时30分", cn(2026, 12, 7, 8, 30)),
    ("2026年12月07日 08:30", cn(2026, 12, 7, 8, 30)),
    ("2026年12月7日 8:30:05", cn(2026, 12, 7, 8, 30, 5)),
    ("2026年12月7日8时30分5秒", cn(2026, 12, 7, 8, 30, 5)),
    ("2026年12月7日 8点30分", cn(2026, 12, 7, 8, 30)),
    ("2026年12月7日 8时", cn(2026, 12, 7, 8, 0)),
    ("2026年12月7号 8点30", cn(2026, 12, 7, 8, 30)),
    ("2026 年 12 月 7 日\u30008 时 5 分", cn(2026, 12, 7, 8, 5)),
    ("2026年12月7日", cn(2026, 12, 7)),
])
def test_chinese_and_excel_shapes_are_read_in_the_sources_zone(text: str,
                                                                local: datetime) -> None:
    event = list_mapper().map(list_record(startTime=text, stopTime=None))
    assert event is not None and event.start == local
    # naive: the zone the caller passes, not UTC
    assert parse_time(text, "t", ZoneInfo("UTC")) == local.replace(tzinfo=UTC)


@pytest.mark.parametrize(("text", "utc"), [
    ("2026-12-07 08:30:00", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026-12-07 08:30", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026/12/07 08:30:00", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026-12-07T08:30:00+08:00", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026-12-07T00:30:00Z", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026-12-07 08:30:00.000+0800", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("20261207083000", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    (20261207083000, datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("202612070830", datetime(2026, 12, 7, 0, 30, tzinfo=UTC)),
    ("2026-12-07", datetime(2026, 12, 6, 16, 0, tzinfo=UTC)),
    (1796517000, datetime(2026, 12, 6, 0, 30, tzinfo=UTC)),
    ("1796517000000", datetime(2026, 12, 6, 0, 30, tzinfo=UTC)),
])
def test_the_shapes_read_before_still_are(text: Any, utc: datetime) -> None:
    assert parse_time(text, "t", CN) == utc


@pytest.mark.parametrize(("text", "why"), [
    ("2026-02-30 08:00", r"got '2026-02-30 08:00' \(not a real date and time: day is out of "
                         r"range for month\)"),
    ("2026/2/30 8:00", r"day is out of range for month"),
    ("2026年2月30日 8时", r"day is out of range for month"),
    ("2026-12-07 25:00", r"hour must be in 0\.\.23"),
    ("2026年12月7日 25时", r"hour must be in 0\.\.23"),
    ("2026-12-7 8:60", r"minute must be in 0\.\.59"),
    ("2026年13月1日", r"month must be in 1\.\.12"),
    ("1969-12-31 8:00", r"1969-12-31 is out of range \(1970–2200\)"),
    ("2300年1月1日 8时", r"2300-01-01 is out of range \(1970–2200\)"),
    # never guessed: day- or month-first, a 2-digit year, a.m./p.m., a 1-digit minute
    ("12/07/2026 08:30", r"expected a time like 2026-11-23 08:00:00, got '12/07/2026 08:30'$"),
    ("7/12/2026 8:30", r"expected a time like"),
    ("26-12-7 8:30", r"expected a time like"),
    ("2026年12月7日 下午3点", r"expected a time like"),
    ("2026-12-7 8:3", r"expected a time like"),
    ("2026-12-123", r"expected a time like"),
    ("2026-12-7abc", r"expected a time like"),
])
def test_impossible_and_ambiguous_times_are_still_refused_saying_why(text: str,
                                                                      why: str) -> None:
    with pytest.raises(EventError, match=r"^start \(startTime\): .*" + why):
        list_mapper().map(list_record(startTime=text))


def test_an_excel_csv_of_work_orders_is_read_whole() -> None:
    csv = ("orderNo,acceptTime,tgNo,faultType\n"
           "W1,2026/12/7 8:30,建设路社区1号台区,停电\n"
           "W2,2026/12/07 08:31,建设路社区1号台区,停电\n"
           "W3,2026年12月7日 8时32分,建设路社区1号台区,停电\n")
    out = WorkOrderParser("calls", None, CN).csv_text(csv, "calls.csv")
    assert out.quarantined == []
    assert [(e.event_id, e.start) for e in out.events] == [
        ("W1", cn(2026, 12, 7, 8, 30)), ("W2", cn(2026, 12, 7, 8, 31)),
        ("W3", cn(2026, 12, 7, 8, 32))]


# -- 2. an ETR that is no time ------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["待定", "--", "未知", "暂无", "soon", "2026-02-30 18:00",
                                  "2300-01-01 00:00"])
def test_an_etr_that_is_no_time_is_unknown_and_the_outage_is_kept(stop: str) -> None:
    with capture_logs() as logs:
        event = powercut_mapper().map(fault_record(stop))
    assert event is not None and event.event_id == "G1" and event.kind == "fault"
    assert event.start == cn(2026, 12, 7, 8, 30)
    assert event.expected_restoration is None
    [warning] = ignored(logs)
    assert warning["log_level"] == "warning"
    assert warning["field"] == "expected_restoration (stopTime)"
    assert warning["value"] == stop and warning["event_id"] == "G1"
    assert warning["source"] == "feed"


@pytest.mark.parametrize("stop", ["", None, "0000-00-00 00:00:00", "1970-01-01 08:00:00"])
def test_an_empty_or_placeholder_etr_is_unknown_without_a_warning(stop: Any) -> None:
    with capture_logs() as logs:
        event = powercut_mapper().map(fault_record(stop))
    assert event is not None and event.expected_restoration is None
    assert ignored(logs) == []


def test_the_warning_is_given_once_per_record_field_and_value() -> None:
    mapper = powercut_mapper()
    with capture_logs() as logs:
        for _ in range(3):  # three polls
            mapper.map(fault_record("待定"))
        mapper.map(fault_record("--"))
        mapper.map(dict(fault_record("待定"), poweroffId="G2"))
    assert [(w["event_id"], w["value"]) for w in ignored(logs)] == [
        ("G1", "待定"), ("G1", "--"), ("G2", "待定")]


def test_a_start_that_is_no_time_still_quarantines() -> None:
    record = dict(fault_record("2026-12-07 12:00"), startTime="待定")
    with pytest.raises(EventError, match=r"start \(startTime\): expected a time like "
                                         r"2026-11-23 08:00:00, got '待定'"):
        powercut_mapper().map(record)


def test_parse_optional_time_itself_still_refuses_text() -> None:
    """Only the mapper sets a feed's bad ETR aside; an operator typing one is told."""
    with pytest.raises(EventError, match="etr: expected a time like"):
        parse_optional_time("待定", "etr", CN)
    assert parse_optional_time("2026年12月7日 18时", "etr", CN) == cn(2026, 12, 7, 18)


def test_a_feed_polled_over_http_keeps_the_fault_with_no_etr(
        server: tuple[str, Scripted]) -> None:  # noqa: F811
    url, script = server
    records = [fault_record("待定"), dict(fault_record("2026/12/7 12:00"), poweroffId="G2"),
               dict(fault_record("2026-12-07 12:00"), poweroffId="G3", startTime="明天")]
    script.replies = [json_reply({"data": {"powerCutList": records, "total": 3}})]
    source = make_source(url, preset="95598_powercut")
    with capture_logs() as logs:
        result = source.poll(NOW)
    assert [(e.event_id, e.expected_restoration) for e in result.events] == [
        ("G1", None), ("G2", cn(2026, 12, 7, 12))]
    [bad] = result.quarantined
    assert bad.reason.startswith("record 2: start (startTime): expected a time")
    assert [(w["event_id"], w["field"], w["value"]) for w in ignored(logs)] == [
        ("G1", "expected_restoration (stopTime)", "待定")]


# -- 3. an ETR not after the start --------------------------------------------------------------


@pytest.mark.parametrize("stop", ["2026-12-07 09:00:00", "2026-12-07 18:00:00",
                                  "2026-12-08 08:00:00", "2026/12/8 8:00"])
def test_an_etr_not_after_the_start_is_unknown_and_the_record_kept(stop: str) -> None:
    with capture_logs() as logs:
        event = list_mapper().map(list_record(stopTime=stop))
    assert event is not None and event.event_id == "P1" and event.kind == "planned"
    assert event.start == cn(2026, 12, 8, 8, 0)
    assert event.expected_restoration is None
    [warning] = ignored(logs)
    assert warning["log_level"] == "warning" and warning["event_id"] == "P1"
    assert warning["field"] == "expected_restoration (stopTime)"
    assert warning["value"] == stop and warning["start"] == "2026-12-08 08:00:00"
    assert stop in warning["reason"] and "2026-12-08 08:00:00" in warning["reason"]


def test_an_etr_after_the_start_is_kept_without_a_warning() -> None:
    with capture_logs() as logs:
        event = list_mapper().map(list_record(stopTime="2026-12-08 08:01:00"))
    assert event is not None and event.expected_restoration == cn(2026, 12, 8, 8, 1)
    assert ignored(logs) == []


def _liaison_notices(stop: str) -> list[str]:
    """The liaison notices the processor queues for planned work at 建设路社区 starting
    2026-12-08 08:00 whose stopTime is ``stop``, seen at 2026-12-07 10:00."""
    from outage_sentinel.assembly import build_core
    from outage_sentinel.config import parse_config
    from outage_sentinel.events import PollResult
    from outage_sentinel.metrics import Metrics
    from outage_sentinel.store import Store
    from outage_sentinel.topology import load_bundle

    tmp = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
    store.migrate()
    cfg = parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "feed", "type": "http_json", "url": "http://x/",
                     "preset": "95598_list"}],
        "channels": {"wecom": {"type": "file", "path": str(tmp / "sink.jsonl")},
                     "cc": {"type": "file", "path": str(tmp / "cc.jsonl")}},
        "command_centre": {"channel": "cc", "target": "指挥中心"}})
    core = build_core(cfg, store, load_bundle(ROOT / "topology"), metrics=Metrics(),
                      clock=lambda: NOW)
    event = list_mapper().map(list_record(stopTime=stop))
    assert event is not None
    store.ingest("feed", PollResult(events=[event]), NOW)
    core.processor.run_once(NOW)
    bodies = [m.body for m in store.messages() if m.audience == "liaison"]
    store.close()
    return bodies


@pytest.mark.parametrize("stop", ["2026-12-07 09:00:00", "2026-12-07 18:00:00"])
def test_work_whose_stop_was_typed_a_day_early_is_announced_with_no_false_etr(
        stop: str) -> None:
    bodies = _liaison_notices(stop)
    assert bodies, "the work was never announced"
    outage = next(b for b in bodies if "停电时间：2026-12-08 08:00" in b)
    assert "预计恢复" not in outage and "恢复时间待定" in outage
    assert not any("预计恢复：2026-12-07" in b for b in bodies)


@pytest.mark.parametrize("value", ["202611230", "17954784000", "86400", 86400, "20261331",
                                   "202611232500", 20261123.5])
def test_a_digit_time_of_no_plausible_shape_quarantines_as_start_and_is_no_etr(
        value: Any) -> None:
    """The digit shapes tests/test_mapping.py refuses in ``stopTime``: refused as the start,
    naming the field; as the ETR, no ETR, the record kept and the value logged."""
    shape = r"(neither epoch seconds|yyyyMMdd\[HHmm\[ss\]\])"
    with pytest.raises(EventError, match=r"^start \(startTime\): .*" + shape):
        list_mapper().map(list_record(startTime=value))
    with capture_logs() as logs:
        event = list_mapper().map(list_record(stopTime=value))
    assert event is not None and event.expected_restoration is None
    [warning] = ignored(logs)
    assert warning["field"] == "expected_restoration (stopTime)"
    assert warning["reason"].startswith("not a time, read as unknown: expected_restoration")
