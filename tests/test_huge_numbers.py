"""One integer longer than Python converts (``sys.get_int_max_str_digits()``, 4300 digits) costs
the record carrying it, never the body, file line or message holding other records.

``json.loads`` refuses such a number with a plain ValueError; ``load_json`` used to turn it into
a JSONDecodeError for the whole document, so one digit string in one record of a feed page
quarantined the page and its good records waited until the feed was fixed. With
``mark_long_numbers`` it is read as a :class:`LongNumber`, which every record parser refuses
with an :class:`EventError` naming the key. Sources: the HTTP feed (a real local server), the
MQTT source (the real broker at 127.0.0.1:1883), dropped files (AMI and work orders), replay.
"""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outage_sentinel.config import FileDropSourceConfig
from outage_sentinel.events import EventError, LongNumber, load_json, refuse_long_numbers
from outage_sentinel.locate import read_cases
from outage_sentinel.metrics import Metrics
from outage_sentinel.poller import Poller
from outage_sentinel.sources.file_drop import FileDropSource
from outage_sentinel.sources.http_json import FeedError
from outage_sentinel.sources.mapping import RecordMapper
from outage_sentinel.sources.replay import ReplaySource
from outage_sentinel.store import Store
from tests.test_file_drop import REGISTRY, drop
from tests.test_fuzz_parsers import FUZZ, GOOD_RECORDS, MAPPINGS, TZ, put
from tests.test_http_json import NOW, feed, json_reply, make_source
from tests.test_http_json import server as server  # noqa: F401  (the fixture)
from tests.test_mqtt_source import HOST, PORT, poll_until
from tests.test_mqtt_source import ids as ids  # noqa: F401  (the fixture)
from tests.test_mqtt_source import make_source as mqtt_source
from tests.test_mqtt_source import publish as publish  # noqa: F401  (the fixture)

LIMIT = sys.get_int_max_str_digits()
BIG = "9" * 5000


def with_number(text: str, key: str, digits: str = BIG) -> str:
    """``text`` (one JSON object) with ``digits`` under ``key`` (replacing its value)."""
    marked = json.dumps({**json.loads(text), key: "@"}, ensure_ascii=False)
    return marked.replace('"@"', digits, 1)


def list_body(record: int, key: str, digits: str = BIG) -> str:
    """The 95598 list fixture with the number put in the given record (0-based)."""
    doc = json.loads(feed("95598_list.json"))
    texts = [json.dumps(r, ensure_ascii=False) for r in doc["seleList"]]
    texts[record] = with_number(texts[record], key, digits)
    doc["seleList"] = "@"
    return json.dumps(doc, ensure_ascii=False).replace('"@"', "[" + ", ".join(texts) + "]")


FEED_IDS = ["3720231125000101", "3720231124000212", "3720231123000318", "3720231126000405"]


# -- load_json ----------------------------------------------------------------------------------


def test_a_long_number_is_marked_only_when_asked_and_keeps_its_digits() -> None:
    doc = '{"a": [1, {"id": -' + BIG + '}], "b": 2, "c": 1e999, "d": Infinity}'
    for text in (doc, doc.encode()):
        data = load_json(text, mark_long_numbers=True)
        number = data["a"][1]["id"]
        assert isinstance(number, LongNumber)
        assert str(number) == "-" + BIG and repr(number) == "a number of 5000 digits"
        assert data["a"][0] == 1 and data["b"] == 2
        assert data["c"] == float("inf") and data["d"] == float("inf")  # floats as before
        with pytest.raises(json.JSONDecodeError, match="a number of 5000 digits under key 'id'"):
            load_json(text)  # whole-document callers keep the named error
    assert load_json('{"n": ' + "9" * LIMIT + "}", mark_long_numbers=True)["n"] == int(
        "9" * LIMIT)  # at the limit: still a number
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        load_json("[" * 100_000 + BIG + "]" * 100_000, mark_long_numbers=True)
    with pytest.raises(json.JSONDecodeError):
        load_json('{"a": ' + BIG + ", }", mark_long_numbers=True)  # bad JSON after it


def test_refusal_names_the_shallowest_key_path() -> None:
    data = load_json('{"x": {"y": [0, ' + BIG + ']}, "meta": {"id": ' + BIG + "}}",
                     mark_long_numbers=True)
    with pytest.raises(EventError) as info:
        refuse_long_numbers(data)
    assert str(info.value) == f"a number of 5000 digits under key 'meta.id' (more than {LIMIT})"
    with pytest.raises(EventError, match=r"under key 'y\[1\]'"):
        refuse_long_numbers(data["x"])
    with pytest.raises(EventError, match=r"digits \(more than"):
        refuse_long_numbers(data["meta"]["id"])  # the record is the number: no key
    refuse_long_numbers({"a": [1, "2", None, {"b": 3.5}]})  # nothing to refuse


# -- the HTTP feed ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "record"), [("meterCount", 0), ("powerOffId", 2)])
def test_one_long_number_in_a_feed_costs_its_record_only(
        server: tuple[str, Any], tmp_path: Path, key: str, record: int) -> None:
    url, script = server
    body = list_body(record, key)
    script.replies = [json_reply(body.encode())]
    source = make_source(url, retry={"max_attempts": 1})
    result = source.poll(NOW)
    assert [e.event_id for e in result.events] == [
        i for n, i in enumerate(FEED_IDS) if n != record]
    [bad] = result.quarantined
    assert bad.reason == (f"page 1: record {record}: a number of 5000 digits under key "
                          f"{key!r} (more than {LIMIT})")
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.migrate()
    try:
        script.replies = [json_reply(body.encode())]
        assert Poller(store, Metrics()).poll(source, NOW) is not None
        assert sorted(s.event.event_id for s in store.events()) == sorted(
            i for n, i in enumerate(FEED_IDS) if n != record)
        [row] = store.quarantined()
        assert row["reason"] == bad.reason
        kept = json.loads(row["raw"])  # the record, digits and all (as text)
        original = json.loads(feed("95598_list.json"))["seleList"][record]
        assert kept[key] == BIG and kept["lineName"] == original["lineName"]
    finally:
        store.close()


def test_floats_out_of_range_beside_a_long_number_are_still_record_errors(
        server: tuple[str, Any]) -> None:
    """The body is read again to mark the long number: floats read there as in any body."""
    url, script = server
    doc = json.loads(feed("95598_list.json"))
    texts = [json.dumps(r, ensure_ascii=False) for r in doc["seleList"]]
    texts[0] = texts[0].replace('"2026-11-25 08:00:00"', "1e999", 1)
    texts[1] = texts[1].replace('"2026-11-24 13:30"', "Infinity", 1)
    texts[2] = with_number(texts[2], "meterCount")
    body = json.dumps({**doc, "seleList": "@"}, ensure_ascii=False).replace(
        '"@"', "[" + ", ".join(texts) + "]")
    script.replies = [json_reply(body.encode())]
    result = make_source(url).poll(NOW)
    assert [e.event_id for e in result.events] == [FEED_IDS[3]]
    assert [q.reason for q in result.quarantined] == [
        "page 1: record 0: start (startTime): expected a time, got inf",
        "page 1: record 1: start (startTime): expected a time, got inf",
        f"page 1: record 2: a number of 5000 digits under key 'meterCount' (more than {LIMIT})"]


def test_a_long_number_outside_the_records(server: tuple[str, Any]) -> None:
    """The feed's count of its records: unreadable, the poll delivers its records and ends
    none (incomplete); its page count: the poll fails, naming it, as any bad page count."""
    url, script = server
    doc = json.loads(feed("95598_list.json"))
    counted = json.dumps(doc, ensure_ascii=False).replace(
        f'"totalCount": {doc["pageModel"]["totalCount"]}', '"totalCount": ' + BIG)
    assert BIG in counted
    script.replies = [json_reply(counted.encode())]
    source = make_source(url, snapshot=True)
    result = source.poll(NOW)
    assert [e.event_id for e in result.events] == FEED_IDS and not result.quarantined
    assert source.incomplete_polls == 1
    paged = json.dumps(doc, ensure_ascii=False).replace(
        f'"totalPage": {doc["pageModel"]["totalPage"]}', '"totalPage": ' + BIG)
    script.replies = [json_reply(paged.encode())]
    with pytest.raises(FeedError, match="pagination.total_pages_path 'pageModel.totalPage': "
                                        "expected a non-negative integer, got a number of "
                                        "5000 digits") as info:
        make_source(url).poll(NOW)
    assert BIG in (info.value.raw or "")


# -- every record mapping -----------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)), st.data())
def test_every_mapping_refuses_a_long_number_anywhere_in_a_record(
        mapping: str, data: st.DataObject) -> None:
    records_path, fields = MAPPINGS[mapping]
    good = GOOD_RECORDS[mapping]
    key = data.draw(st.sampled_from(sorted(good)))
    nest = data.draw(st.sampled_from(["", "[]", "{}"]))
    value = {"[]": f"[1, {BIG}]", "{}": '{"v": ' + BIG + "}"}.get(nest, BIG)
    bad = json.dumps({**good, key: "@"}, ensure_ascii=False).replace('"@"', value)
    body = json.dumps(put(records_path, ["@"]), ensure_ascii=False).replace(
        '"@"', ", ".join([json.dumps(good, ensure_ascii=False), bad,
                          json.dumps(good, ensure_ascii=False)]))
    mapper = RecordMapper("feed", fields, TZ)
    records = load_json(body, mark_long_numbers=True)
    for part in records_path.split("."):
        records = records[part]
    first, middle, last = records
    assert mapper.map(first) is not None and mapper.map(last) is not None
    with pytest.raises(EventError) as info:
        mapper.map(middle)
    where = {"[]": f"{key}[1]", "{}": f"{key}.v"}.get(nest, key)
    assert str(info.value) == f"a number of 5000 digits under key {where!r} (more than {LIMIT})"
    assert mapper.record_id(middle) is None or key != fields.event_id


# -- dropped files ------------------------------------------------------------------------------


def make_drop(tmp_path: Path, **extra: Any) -> FileDropSource:
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "drop", "directory": str(tmp_path), "settle_seconds": 2,
         **extra})
    source = FileDropSource(cfg, registry=REGISTRY, default_tz="Asia/Shanghai")
    source.start(None)
    return source


AMI_NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def meter(m: int, **extra: Any) -> str:
    return json.dumps({"meter_id": f"TX1-M{m}", "code": "3.26.0.85",
                       "time": f"2026-07-01 16:00:0{m}", **extra})


def test_an_ami_file_line_of_many_records_loses_only_the_one(tmp_path: Path) -> None:
    envelope = ('{"count": ' + BIG + ', "events": [' + meter(0) + ", "
                + with_number(meter(1), "seq") + ", " + meter(2) + "]}")
    drop(tmp_path / "a.jsonl", envelope + "\n" + meter(3) + "\n")
    source = make_drop(tmp_path)
    result = source.poll(AMI_NOW)
    assert [e.area_text for e in result.events] == [
        "meter:TX1-M0", "meter:TX1-M2", "meter:TX1-M3"]
    [bad] = result.quarantined
    assert bad.reason == (f"a.jsonl line 1 record 2: a number of 5000 digits under key 'seq' "
                          f"(more than {LIMIT})")
    assert str(bad.raw["seq"]) == BIG and bad.raw["meter_id"] == "TX1-M1"
    source.acknowledge(result)
    assert [p.name for p in (tmp_path / "done").iterdir()] == ["a.jsonl"]


def test_a_work_order_line_of_many_orders_loses_only_the_one(tmp_path: Path) -> None:
    orders = [{"orderNo": f"W{i}", "acceptTime": "2026-12-04 08:00:00", "custNo": "C00213",
               "faultType": "无电"} for i in range(3)]
    texts = [json.dumps(o, ensure_ascii=False) for o in orders]
    texts[1] = with_number(texts[1], "meterNo")
    drop(tmp_path / "orders.jsonl", "[" + ", ".join(texts) + "]\n" + BIG + "\n")
    result = make_drop(tmp_path, content="work_orders").poll(AMI_NOW)
    assert [e.event_id for e in result.events] == ["W0", "W2"]
    assert [q.reason for q in result.quarantined] == [
        f"orders.jsonl line 1 item 1: a number of 5000 digits under key 'meterNo' "
        f"(more than {LIMIT})",
        "orders.jsonl line 2: expected a JSON object, got a number of 5000 digits"]
    assert str(result.quarantined[0].raw["meterNo"]) == BIG
    assert str(result.quarantined[1].raw["record"]) == BIG


# -- replay and locate --------------------------------------------------------------------------


def test_a_replay_line_with_a_long_number_is_quarantined_naming_the_key(
        tmp_path: Path) -> None:
    lines = [json.dumps({"at": 0, "event_id": e, "kind": "fault", "status": "active",
                         "transformers": ["T1"]}) for e in ("A", "B", "C")]
    lines[1] = with_number(lines[1], "etr_offset")
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = ReplaySource("r", path)
    src.start(None)
    result = src.poll(AMI_NOW)
    assert [e.event_id for e in result.events] == ["A", "C"]
    [bad] = result.quarantined
    assert bad.reason == (f"s.jsonl:2: a number of 5000 digits under key 'etr_offset' "
                          f"(more than {LIMIT})")
    assert BIG in bad.raw


def test_locate_keeps_a_case_line_with_a_long_number_as_that_line_s_error() -> None:
    """locate reads whole documents: JSON lines lose the one line, named, not the others."""
    text = '{"id": "a", "dead": ["T1"]}\n{"id": "b", "dead": [' + BIG + ']}\n{"id": "c"}\n'
    cases = list(read_cases(text))
    assert [(n, err is None) for n, _, err in cases] == [(1, True), (2, False), (3, True)]
    assert str(cases[1][2]).startswith(f"invalid JSON on line 2: a number of 5000 digits "
                                       f"(more than {LIMIT})")


# -- MQTT ---------------------------------------------------------------------------------------


def broker_up() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not broker_up(), reason="no MQTT broker at 127.0.0.1:1883")
def test_an_mqtt_message_of_many_records_loses_only_the_one(
        ids: dict[str, str], publish: Any) -> None:
    source = mqtt_source(ids)
    try:
        message = ("[" + meter_mqtt(0) + ", " + with_number(meter_mqtt(1), "reading")
                   + ", " + meter_mqtt(2) + "]")
        publish(ids["topic"], message.encode())
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M0", "meter:T1-M2"]
        [bad] = [q for r in results for q in r.quarantined]
        assert bad.reason == (f"topic {ids['topic']} record 2: a number of 5000 digits under "
                              f"key 'reading' (more than {LIMIT})")
        assert str(bad.raw["reading"]) == BIG
    finally:
        source.close()


def meter_mqtt(m: int) -> str:
    return json.dumps({"meter_id": f"T1-M{m}", "code": "3.26.0.85",
                       "time": f"2026-07-01T08:00:0{m}Z"})
