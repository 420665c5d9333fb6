"""Issue 11: every parser at its entry point, fed generated hostile input. Only the documented
errors escape (a record's EventError, a payload's PayloadError, a case's CaseError, bad JSON for
a whole body), and good records beside a bad one are kept.

The ``run_*_case`` functions and the strategies are shared with ``benchmarks/fuzz.py``, which runs
the same targets at 100,000 inputs each.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import AmiPayloadConfig, FieldMap, FileDropSourceConfig
from outage_sentinel.events import EventError, load_json
from outage_sentinel.locate import CaseError, evidence_of, read_cases
from outage_sentinel.sources.ami_payload import AmiPayloadParser, PayloadError
from outage_sentinel.sources.file_drop import FileDropSource
from outage_sentinel.sources.mapping import PRESETS, WORK_ORDER_FIELDS, RecordMapper, extract_records
from outage_sentinel.sources.work_orders import WorkOrderParser

NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")
REGISTRY = AmiRegistry.from_records(
    [("TX1-T", "TX1", "terminal")] + [(f"TX1-M{m}", "TX1", "meter") for m in range(6)],
    {"TX1": "F1"})
FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- strategies ---------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\ud800", "线路\udfff故障", "253402300800000", "99999999999999999999",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00", "2026-11-23 08:00:00", "inf",
    "nan", "-1", "1e400", "2026/11/23 08:00", "2026-02-30 08:00:00", "3.26.0.85", "TX1-M0",
    "meter:TX1-M0", "\u202e", "🙂" * 50, "x" * 5000, "1", "2", "3", "[", "{", "\r", "\r\n",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def records_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Records using the parser's own field names (so the fuzzing reaches the mapping)."""
    names = st.sampled_from([*keys, "other", ""])
    return st.dictionaries(names, VALUES, max_size=len(keys) + 2)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- HTTP feed mapping (each preset, and a custom mapping) --------------------------------------

CUSTOM = FieldMap(event_id="id", kind="type", start="begin", expected_restoration="eta",
                  feeder="line.name", transformers="areas", area_text="where", cause="why",
                  status="state")
MAPPINGS: dict[str, tuple[str, FieldMap]] = {
    **{name: (p.records_path, p.fields) for name, p in PRESETS.items()},
    "custom": ("result.items", CUSTOM)}
GOOD_RECORDS = {
    "95598_list": {"powerOffId": "G1", "typeCode": "3", "startTime": "2026-11-23 06:42:00",
                   "lineName": "10kV马集线", "pubTranName": "南谢庄村2#公变",
                   "scope": "马集镇南谢庄村", "poweroffReason": "线路故障"},
    "95598_powercut": {"poweroffId": "G1", "powerType": "3", "startTime": "2026-11-23 06:42",
                       "powerCircuit": "10kV马集线", "powerArea": "南谢庄村", "powerCause": "故障"},
    "95598_workorder": {"orderNo": "G1", "acceptTime": "2026-11-23 06:42:00", "custNo": "C1",
                        "address": "马集镇南谢庄村", "faultType": "无电", "content": "全家无电"},
    "custom": {"id": "G1", "type": "fault", "begin": "2026-11-23T06:42:00+08:00",
               "line": {"name": "L1"}, "areas": ["T1"], "where": "村", "why": "故障",
               "state": "active"},
}


def field_names(fields: FieldMap) -> list[str]:
    out: list[str] = []
    for value in fields.model_dump().values():
        for path in value if isinstance(value, list) else [value]:
            if isinstance(path, str):
                out.append(path.split(".")[0])
    return out


def put(path: str, value: Any) -> Any:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def run_feed_case(mapping: str, records: list[Any], body: bytes | None = None) -> None:
    """A feed body of ``records`` between two good ones (or ``body`` as it is): the good ones
    are mapped, every bad one is an EventError, the body may only be bad JSON."""
    records_path, fields = MAPPINGS[mapping]
    mapper = RecordMapper("feed", fields, TZ)
    good = GOOD_RECORDS[mapping]
    text = body if body is not None else json.dumps(
        put(records_path, [good, *records, good]), default=str).encode()
    try:
        payload = load_json(text)
    except (ValueError, UnicodeDecodeError):
        assert body is not None, "a body json.dumps wrote must load"
        return
    try:
        found = extract_records(payload, records_path)
    except EventError:
        assert body is not None, "the records path of a generated body must resolve"
        return
    mapped = []
    for record in found:
        try:
            event = mapper.map(record)
        except EventError as exc:
            assert str(exc), "a record error must say why"
            continue
        if event is not None:  # None: a work order of no outage category
            mapped.append(event.event_id)
    if body is None:
        assert mapped[:1] == ["G1"] and mapped[-1:] == ["G1"], mapped


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)), st.data())
def test_feed_records_give_only_record_errors(mapping: str, data: st.DataObject) -> None:
    fields = MAPPINGS[mapping][1]
    records = data.draw(st.lists(st.one_of(records_with(field_names(fields)), VALUES),
                                 max_size=4))
    run_feed_case(mapping, records)


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)), st.one_of(
    st.binary(max_size=200), st.sampled_from([nested(100_000).encode(), b"\xff\xfe",
                                              b'{"seleList": null}', b"[]", b'"x"'])))
def test_feed_bodies_give_only_bad_json_or_record_errors(mapping: str, body: bytes) -> None:
    run_feed_case(mapping, [], body)


# -- AMI payloads (JSON message, JSON lines, CSV) and dropped files -----------------------------

AMI_KEYS = ["meter_id", "meterId", "terminal_id", "code", "eventType", "time", "timestamp",
            "off_time", "on_time", "EndDeviceEvent"]
GOOD_AMI = {"meter_id": "TX1-M0", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"}


def ami_parser() -> AmiPayloadParser:
    return AmiPayloadParser("ami", AmiPayloadConfig(), REGISTRY, default_tz="Asia/Shanghai")


def run_ami_case(records: list[Any], csv_text: str) -> None:
    """JSON message, JSON lines and CSV with the bad records between good ones: only
    PayloadError escapes (and only for a whole payload), the good ones are kept."""
    parser = ami_parser()
    message = json.dumps([GOOD_AMI, *records, GOOD_AMI], default=str)
    out = parser.json_payload(message, "topic t")
    assert sum(e.area_text == "meter:TX1-M0" for e in out.events) >= 1
    lines = "\n".join(json.dumps(r, default=str) for r in [GOOD_AMI, *records, GOOD_AMI])
    out = parser.json_lines(lines + "\n" + nested(50_000), "f.jsonl")
    assert sum(e.area_text == "meter:TX1-M0" for e in out.events) >= 1
    try:
        parser.csv_text(csv_text, "f.csv")
    except PayloadError as exc:
        assert str(exc)


CSV_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.lists(HOSTILE_TEXT | st.text(max_size=10), max_size=5), max_size=5).map(
        lambda rows: "meter_id,code,time\n" + "\n".join(",".join(r) for r in rows)),
    st.sampled_from(["meter_id,code,time\rTX1-M0,3.26.0.85,2026-07-01 16:00:00\r",
                     'meter_id,code,time\n"unterminated,x,y\n', "\ufeffmeter_id\x00,code\n"]))


@FUZZ
@given(st.lists(st.one_of(records_with(AMI_KEYS), VALUES), max_size=4), CSV_TEXT)
def test_ami_payloads_give_only_payload_errors_and_keep_the_good_ones(
        records: list[Any], csv_text: str) -> None:
    run_ami_case(records, csv_text)


def run_file_case(directory: Path, name: str, data: bytes) -> None:
    """A dropped file beside a good one: the source never raises, the bad file goes to
    ``failed/`` or ``done/``, the good one is read."""
    good = "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    for path in list(directory.rglob("*")):  # done/ and failed/ too: a fresh drop each time
        if path.is_file():
            path.unlink()
    (directory / name).write_bytes(data)
    (directory / "zz-good.csv").write_text(good, encoding="utf-8")
    cfg = FileDropSourceConfig.model_validate({"type": "file_drop", "name": "files",
                                               "directory": str(directory),
                                               "settle_seconds": 0})
    source = FileDropSource(cfg, registry=REGISTRY, default_tz="Asia/Shanghai")
    source.start(None)
    result = source.poll(datetime.now(UTC))
    assert any(e.area_text == "meter:TX1-M0" for e in result.events)
    source.acknowledge(result)
    assert not (directory / "zz-good.csv").exists()


@FUZZ
@given(st.sampled_from(["a.csv", "a.jsonl", "a.json", "a.txt"]),
       st.one_of(st.binary(max_size=300), CSV_TEXT.map(lambda t: t.encode("utf-8", "replace")),
                 st.just(nested(100_000).encode())))
def test_dropped_files_never_block_the_directory(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_file_case(Path(tmp), name, data)


def run_work_order_case(records: list[Any], csv_text: str) -> None:
    """Dropped work orders, JSON lines and CSV: only PayloadError escapes (for a whole CSV),
    the good orders around the bad ones are kept."""
    parser = WorkOrderParser("orders", None, TZ)
    good = GOOD_RECORDS["95598_workorder"]
    lines = "\n".join(json.dumps(r, default=str) for r in [good, *records, good])
    out = parser.json_lines(lines + "\n" + nested(50_000), "o.jsonl")
    assert sum(e.event_id == "G1" for e in out.events) >= 2  # mutants may keep its id
    try:
        parser.csv_text(csv_text, "o.csv")
    except PayloadError as exc:
        assert str(exc)


ORDER_CSV = st.one_of(
    CSV_TEXT,
    st.lists(st.lists(HOSTILE_TEXT | st.text(max_size=10), max_size=6), max_size=5).map(
        lambda rows: "orderNo,acceptTime,custNo,faultType\n" + "\n".join(",".join(r)
                                                                        for r in rows)))


@FUZZ
@given(st.lists(st.one_of(records_with(field_names(WORK_ORDER_FIELDS)), VALUES), max_size=4),
       ORDER_CSV)
def test_dropped_work_orders_give_only_payload_errors(records: list[Any], csv_text: str) -> None:
    run_work_order_case(records, csv_text)


# -- locate evidence ----------------------------------------------------------------------------

CASE_KEYS = ["id", "dead", "alive", "calls", "open_devices", "planned", "storm", "context"]


def run_locate_case(text: str) -> None:
    """Every case of an evidence file is read or refused with a CaseError naming its line."""
    for line, case, error in read_cases(text):
        assert line >= 1
        if error is not None:
            assert error
            continue
        try:
            evidence_of(case, line)
        except CaseError as exc:
            assert f"line {line}" in str(exc)


@FUZZ
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(records_with(CASE_KEYS), VALUES), max_size=4).map(
        lambda cs: "\n".join(json.dumps(c, default=str) for c in cs)),
    st.just(nested(100_000))))
def test_locate_evidence_gives_only_case_errors(text: str) -> None:
    run_locate_case(text)


#: The targets benchmarks/fuzz.py runs: name -> (strategy, runner).
TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {}


def _register() -> None:
    for mapping in sorted(MAPPINGS):
        keys = field_names(MAPPINGS[mapping][1])
        TARGETS[f"feed:{mapping}"] = (
            st.lists(st.one_of(records_with(keys), VALUES), max_size=4),
            lambda records, m=mapping: run_feed_case(m, records))
        TARGETS[f"feed-body:{mapping}"] = (
            st.binary(max_size=200), lambda body, m=mapping: run_feed_case(m, [], body))
    TARGETS["ami"] = (st.tuples(st.lists(st.one_of(records_with(AMI_KEYS), VALUES), max_size=4),
                                CSV_TEXT), lambda args: run_ami_case(*args))
    TARGETS["work-orders"] = (st.tuples(st.lists(st.one_of(records_with(field_names(
        WORK_ORDER_FIELDS)), VALUES), max_size=4), ORDER_CSV), lambda a: run_work_order_case(*a))
    TARGETS["locate"] = (st.one_of(st.text(max_size=300), st.lists(
        st.one_of(records_with(CASE_KEYS), VALUES), max_size=4).map(
        lambda cs: "\n".join(json.dumps(c, default=str) for c in cs))), run_locate_case)


_register()


def test_the_good_inputs_pass_the_runners() -> None:
    for mapping in MAPPINGS:
        run_feed_case(mapping, [])
    run_ami_case([], "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n")
    run_work_order_case([], "orderNo,acceptTime\nW1,2026-11-23 06:42:00\n")
    run_locate_case(json.dumps({"id": "a", "dead": ["T1"]}))
    assert isinstance(TARGETS, Mapping) and len(TARGETS) >= 8
