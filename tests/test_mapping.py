"""Declarative field mapping and the 95598 presets (pure: no HTTP here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.config import FieldMap, HttpJsonSourceConfig, PaginationConfig
from outage_sentinel.events import EventError
from outage_sentinel.sources.mapping import (
    KIND_VALUES_95598,
    MISSING,
    PRESETS,
    RecordMapper,
    extract_records,
    get_path,
    resolve_mapping,
)

FEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def load(name: str) -> Any:
    return json.loads((FEEDS / name).read_text(encoding="utf-8"))


def mapper(fields: FieldMap | None = None, preset: str = "95598_list") -> RecordMapper:
    return RecordMapper("feed", fields or PRESETS[preset].fields, SHANGHAI)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- paths --------------------------------------------------------------------------------------


def test_get_path_follows_dicts_and_list_indices() -> None:
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert get_path(data, "a.b.1.c") == 2
    assert get_path(data, "a.b.-1.c") == 2
    assert get_path(data, "n") is None
    assert get_path(data, "") is data
    assert get_path(data, "a.x") is MISSING
    assert get_path(data, "a.b.5.c") is MISSING
    assert get_path(data, "a.b.c") is MISSING  # a list is not indexed by a name
    assert get_path(data, "n.x") is MISSING


def test_extract_records_null_is_empty_missing_is_an_error_naming_the_keys() -> None:
    assert extract_records({"data": {"powerCutList": None}}, "data.powerCutList") == []
    with pytest.raises(EventError, match=r"key 'data' not found at top level \(keys there: code, "
                                         r"message\)"):
        extract_records({"code": "500", "message": "系统繁忙"}, "data.powerCutList")
    with pytest.raises(EventError, match="expected an array, got object"):
        extract_records({"seleList": {"x": 1}}, "seleList")
    assert extract_records([{"a": 1}], "") == [{"a": 1}]


# -- presets ------------------------------------------------------------------------------------


def config(**kw: Any) -> HttpJsonSourceConfig:
    return HttpJsonSourceConfig.model_validate(
        {"type": "http_json", "name": "feed", "url": "http://127.0.0.1/x", **kw})


def test_preset_supplies_path_fields_and_pagination() -> None:
    m = resolve_mapping(config(preset="95598_list"))
    assert m.records_path == "seleList"
    assert m.fields.event_id == "powerOffId"
    assert m.pagination.mode == "page"
    assert m.pagination.total_pages_path == "pageModel.totalPage"
    assert m.total_count_path == "pageModel.totalCount"
    assert resolve_mapping(config(preset="95598_powercut")).total_count_path == "data.total"
    assert resolve_mapping(config(preset="95598_list", total_count_path=None)
                           ).total_count_path is None
    assert resolve_mapping(config(preset="95598_list", total_count_path="data.n")
                           ).total_count_path == "data.n"
    m = resolve_mapping(config(preset="95598_powercut"))
    assert m.records_path == "data.powerCutList"
    assert m.pagination.mode == "none"


def test_explicit_keys_replace_the_presets() -> None:
    m = resolve_mapping(config(preset="95598_list", pagination={"mode": "none"},
                               fields={"event_id": "id", "start": "begin"}))
    assert m.records_path == "seleList"
    assert m.fields.event_id == "id" and m.fields.kind is None
    assert m.pagination == PaginationConfig(mode="none")


def test_list_fixture_maps_every_record() -> None:
    records = extract_records(load("95598_list.json"), "seleList")
    events = [mapper().map(r) for r in records]
    assert [e.kind for e in events] == ["planned", "temporary", "fault", "planned"]
    first = events[0]
    assert first.event_id == "3720231125000101"
    assert first.status == "active"
    assert first.start == utc(2026, 11, 25, 0, 0)  # 08:00 Beijing time
    assert first.expected_restoration == utc(2026, 11, 25, 10, 0)
    assert first.end is None  # stopTime is a promise, not an observation
    assert first.feeder == "10kV城东线"
    assert first.transformers == ("建设路社区1号台区", "建设路社区2号台区", "建设路社区3号台区")
    assert first.area_text == "城东街道建设路社区、文化路社区部分区域"
    assert first.cause.startswith("10kV城东线#8杆")
    assert first.raw["subsName"] == "城关变"
    assert first.revision == first.fingerprint()
    # separators: 、 ， ; and slashes in dates
    assert events[1].transformers == ("人民路社区1号台区", "人民路社区2号台区")
    assert len(events[2].transformers) == 3
    assert events[3].transformers == ("西山村1号台区", "西山村2号台区")
    assert events[3].start == utc(2026, 11, 25, 23, 30)


def test_powercut_fixture_maps_every_record() -> None:
    records = extract_records(load("95598_powercut.json"), "data.powerCutList")
    events = [mapper(preset="95598_powercut").map(r) for r in records]
    assert [e.kind for e in events] == ["planned", "fault", "temporary", "temporary"]
    first = events[0]
    assert first.event_id == "PC2026112500017"
    assert first.feeder == "10kV城东线"
    assert first.area_text == "清河县城东街道；建设路社区1号台区、建设路社区2号台区供电的全部用户"
    assert first.transformers == ()
    assert first.cause == "线路改造"
    assert events[3].start == utc(2026, 11, 26, 1, 0)


# -- kinds, statuses, types ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "kind"), [
    ("1", "planned"), ("01", "planned"), (1, "planned"), ("计划停电", "planned"),
    ("2", "temporary"), ("02", "temporary"), ("临时停电", "temporary"),
    ("3", "fault"), (3, "fault"), ("故障停电", "fault"),
    ("10kV线路计划检修（第二批）", "planned"),  # not listed: classified by the word
    ("设备故障临时处理", "fault"),  # 故障 wins over 临时
    ("fault", "fault"), ("planned", "planned"),
    ("9", "fault"), ("", "fault"), (None, "fault"),  # unknown/empty: default_kind
])
def test_kind_values(raw: Any, kind: str) -> None:
    record = {"powerOffId": "x", "startTime": "2026-11-23 08:00", "typeCode": raw}
    assert mapper().map(record).kind == kind


def test_default_kind_is_configurable() -> None:
    fields = PRESETS["95598_list"].fields.model_copy(update={"default_kind": "planned"})
    record = {"powerOffId": "x", "startTime": "2026-11-23 08:00", "typeCode": "9"}
    assert mapper(fields).map(record).kind == "planned"


def test_every_preset_kind_value_is_valid() -> None:
    assert set(KIND_VALUES_95598.values()) == {"planned", "temporary", "fault"}


def test_status_values_map_and_unknown_status_is_refused() -> None:
    fields = FieldMap(event_id="id", start="t", status="st",
                      status_values={"已送电": "restored", "取消": "cancelled"})
    m = mapper(fields)
    assert m.map({"id": 1, "t": "2026-11-23 08:00", "st": "已送电"}).status == "restored"
    assert m.map({"id": 1, "t": "2026-11-23 08:00"}).status == "active"
    with pytest.raises(EventError, match=r"status \(st\): unknown value '停电中'"):
        m.map({"id": 1, "t": "2026-11-23 08:00", "st": "停电中"})


@pytest.mark.parametrize(("patch", "message"), [
    ({"powerOffId": None}, r"event_id \(powerOffId\): required, but empty \(null\)"),
    ({"powerOffId": {"id": 1}},
     r"event_id \(powerOffId\): expected a string or number, got object"),
    ({"powerOffId": True}, r"event_id \(powerOffId\): expected a string or number, got boolean"),
    ({"startTime": "明天上午"}, r"start \(startTime\): expected a time"),
    ({"startTime": ["2026-11-23"]}, r"start \(startTime\): expected a time"),
    ({"typeCode": ["1"]}, r"kind \(typeCode\): expected a string or number, got array"),
    ({"lineName": {"name": "x"}}, r"feeder \(lineName\): expected a string or number, got object"),
    ({"pubTranName": 5}, r"transformers \(pubTranName\): expected a list or a separated string"),
    ({"pubTranName": ["a", {"b": 1}]}, r"transformers \(pubTranName\)\[1\]: expected a string"),
    ({"scope": ["a"]}, r"area_text \(scope\): expected a string or number, got array"),
])
def test_wrongly_typed_fields_name_the_field(patch: dict[str, Any], message: str) -> None:
    record = dict(load("95598_list.json")["seleList"][0], **patch)
    with pytest.raises(EventError, match=message):
        mapper().map(record)


def test_an_etr_that_is_no_time_leaves_the_outage_without_one() -> None:
    """A feed's ETR of words (待定, "soon") is no ETR: the outage is kept and announced
    without one (the warning is tests/test_time_fixes_b.py's)."""
    for word in ("soon", "待定"):
        record = dict(load("95598_list.json")["seleList"][0], stopTime=word)
        event = mapper().map(record)
        assert event is not None and event.expected_restoration is None


def test_missing_required_field() -> None:
    record = dict(load("95598_list.json")["seleList"][0])
    del record["startTime"]
    with pytest.raises(EventError, match=r"start \(startTime\): required, but missing"):
        mapper().map(record)


def test_record_must_be_an_object() -> None:
    with pytest.raises(EventError, match="expected a JSON object, got array"):
        mapper().map([1, 2])


def test_numbers_are_accepted_for_text_fields_and_ids() -> None:
    record = {"powerOffId": 12345.0, "startTime": 1795478400000, "lineName": 911,
              "pubTranName": ["T1", "T1", " T2 "]}
    event = mapper().map(record)
    assert event.event_id == "12345"
    assert event.feeder == "911"
    assert event.start == utc(2026, 11, 24, 0, 0)  # epoch milliseconds
    assert event.transformers == ("T1", "T2")


@pytest.mark.parametrize(("value", "expected"), [
    ("202611230800", utc(2026, 11, 23, 0, 0)),           # yyyyMMddHHmm, local time
    ("20261123083015", utc(2026, 11, 23, 0, 30, 15)),    # yyyyMMddHHmmss
    ("20261123", utc(2026, 11, 22, 16, 0)),              # yyyyMMdd: local midnight
    (202611230800, utc(2026, 11, 23, 0, 0)),             # the same as a JSON number
    ("1795478400", utc(2026, 11, 24, 0, 0)),             # epoch seconds
    ("1795478400000", utc(2026, 11, 24, 0, 0)),          # epoch milliseconds
])
def test_compact_local_times_are_not_read_as_epochs(value: Any, expected: datetime) -> None:
    """``202611230800`` was read as epoch milliseconds (1976-06-03), ``20261123`` as epoch
    seconds (1970-08-23): accepted without a word."""
    record = {"powerOffId": "P1", "typeCode": "1", "startTime": value, "pubTranName": "T1"}
    event = mapper().map(record)
    assert event is not None and event.start == expected


@pytest.mark.parametrize("value", ["202611230", "17954784000", "86400", 86400, "20261331",
                                   "202611232500", 20261123.5])
def test_a_digit_time_of_no_plausible_shape_is_refused_naming_the_field(value: Any) -> None:
    record = {"powerOffId": "P1", "typeCode": "1", "startTime": value, "pubTranName": "T1"}
    with pytest.raises(EventError, match=r"^start \(startTime\): .*"
                                         r"(neither epoch seconds|yyyyMMdd\[HHmm\[ss\]\])"):
        mapper().map(record)


@pytest.mark.parametrize("placeholder", ["19700101080000", "19000101", "00000000000000"])
def test_a_compact_placeholder_date_is_no_time(placeholder: str) -> None:
    record = {"powerOffId": "P1", "typeCode": "1", "startTime": "20261123080000",
              "stopTime": placeholder, "pubTranName": "T1"}
    event = mapper().map(record)
    assert event is not None and event.expected_restoration is None


@pytest.mark.parametrize("placeholder", ["0000-00-00 00:00:00", "1900-01-01 00:00:00",
                                         "1970-01-01 08:00:00", 0, "0", "0000/00/00"])
def test_a_placeholder_in_an_optional_time_is_no_time(placeholder: Any) -> None:
    """Back ends fill an ETR not set yet with a zero date or the epoch: the outage is kept,
    without an ETR (before, the whole notice was quarantined, or its ETR read as 1970)."""
    record = dict(load("95598_list.json")["seleList"][0], stopTime=placeholder)
    event = mapper().map(record)
    assert event is not None and event.expected_restoration is None
    with pytest.raises(EventError, match=r"start \(startTime\)"):  # a required time is required
        mapper().map(dict(record, startTime=placeholder))


def test_times_with_an_offset_are_not_shifted_again() -> None:
    record = {"powerOffId": "x", "startTime": "2026-11-23T08:00:00+08:00",
              "stopTime": "2026-11-23T02:00:00Z"}
    event = mapper().map(record)
    assert event.start == utc(2026, 11, 23, 0, 0)
    assert event.expected_restoration == utc(2026, 11, 23, 2, 0)


def test_revision_from_a_field_else_content_fingerprint() -> None:
    base = load("95598_list.json")["seleList"][0]
    a = mapper().map(base)
    b = mapper().map(dict(base, stopTime="2026-11-25 20:00:00"))  # new ETR
    c = mapper().map(dict(base, subsName="另一个变电站"))  # unmapped field only
    assert a.revision != b.revision
    assert a.revision == c.revision
    fields = PRESETS["95598_list"].fields.model_copy(update={"revision": "version"})
    assert mapper(fields).map(dict(base, version=7)).revision == "7"


def test_area_text_joins_several_paths_skipping_empty_and_repeats() -> None:
    fields = FieldMap(event_id="id", start="t", area_text=["a", "b", "c", "d"])
    event = mapper(fields).map({"id": 1, "t": "2026-11-23 08:00", "a": "城东", "b": "",
                                "c": "城东", "d": "建设路"})
    assert event.area_text == "城东；建设路"
