"""Issue 11: one bad record never costs the good ones. Out-of-range times and characters the
database refuses are that record's quarantine reason; the rest of the poll is stored, on SQLite
and on the real PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from outage_sentinel.events import EventError, OutageEvent, PollResult, Quarantined, parse_time
from outage_sentinel.store import Store
from tests.test_http_json import Scripted, feed, json_reply, make_source, server  # noqa: F401

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [
    "253402300800000", "99999999999999999999", "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+14:00", float("inf"), float("nan"), -1e30, 1e300, 10**30,
    "1900-01-01 00:00:00", "2300-01-01 00:00:00", True, "", "half past eight",
])
def test_a_time_no_system_can_hold_is_a_record_error_naming_the_field(value: Any) -> None:
    with pytest.raises(EventError, match="^startTime: "):
        parse_time(value, "startTime")


@pytest.mark.parametrize("text", ["线路\x00故障", "bad \ud800 half", "\udfff"])
def test_text_the_database_cannot_store_is_a_record_error(text: str) -> None:
    with pytest.raises(EventError, match="^cause: contains a character the database cannot"):
        OutageEvent(source="s", event_id="e", kind="fault", status="active", start=NOW,
                    cause=text)
    with pytest.raises(EventError, match=r"^transformers\[1\]: "):
        OutageEvent(source="s", event_id="e", kind="fault", status="active", start=NOW,
                    transformers=("T1", text))


def five_good_two_bad() -> dict[str, Any]:
    """The 95598 list feed with five valid records and two poison ones between them."""
    base = json.loads(feed("95598_list.json"))
    good = [dict(r) for r in base["seleList"]]
    extra = dict(good[0], powerOffId="3720231125000199", remark="东风\u0000社区\ud800")
    records = good + [extra]  # a NUL outside the mapped fields is kept in the raw payload
    bad_time = dict(good[1], powerOffId="BAD-TIME", startTime="253402300800000")
    bad_cause = dict(good[2], powerOffId="BAD-NUL", poweroffReason="线路\u0000故障")
    records[2:2] = [bad_time]
    records.append(bad_cause)
    out = copy.deepcopy(base)
    out["seleList"] = records
    return out


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


def test_a_poll_with_poison_records_stores_the_good_ones_on_both_databases(
        server: tuple[str, Scripted], store: Store) -> None:  # noqa: F811
    url, script = server
    script.replies = [json_reply(json.dumps(five_good_two_bad()).encode())]  # \\u escapes
    source = make_source(url + "/notices")
    source.start(None)
    result = source.poll(NOW)
    assert len(result.events) == 5 and len(result.quarantined) == 2
    reasons = " | ".join(q.reason for q in result.quarantined)
    assert "startTime" in reasons and "cannot store" in reasons
    counts = store.ingest(source.name, result, NOW)
    assert (counts.inserted, counts.quarantined) == (5, 2)
    stored = {s.event.event_id for s in store.events()}
    assert "3720231125000199" in stored and not stored & {"BAD-TIME", "BAD-NUL"}
    assert len(store.quarantined()) == 2


def test_a_quarantined_payload_keeps_whatever_it_holds_on_both_databases(store: Store) -> None:
    store.quarantine(Quarantined("feed", "cause: bad \x00 and \ud800", {"cause": "a\x00b",
                                                                      "x": "\udc00"}), NOW)
    store.quarantine(Quarantined("feed", "raw text", "line\x00with NUL \ud801"), NOW)
    rows = store.quarantined()
    assert len(rows) == 2
    assert all("\x00" not in r["raw"] and "\x00" not in r["reason"] for r in rows)


def test_a_stored_event_s_raw_payload_may_hold_nul_and_surrogates(store: Store) -> None:
    event = OutageEvent(source="feed", event_id="E1", kind="fault", status="active", start=NOW,
                        cause="线路故障", raw={"note": "a\x00b", "odd": "\ud800"})
    counts = store.ingest("feed", PollResult(events=[event]), NOW)
    assert counts.inserted == 1
    [back] = store.events()
    assert back.event.event_id == "E1" and back.event.cause == "线路故障"


# -- AMI payloads, dropped files, locate evidence -----------------------------------------------


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_json_document_nested_too_deeply_is_bad_json_not_a_crash() -> None:
    from outage_sentinel.events import load_json

    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        load_json(DEEP)
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        load_json(DEEP.encode())


def test_a_number_too_long_to_convert_is_bad_json_naming_where_not_a_crash() -> None:
    """int() refuses more than 4300 digits with a plain ValueError, which no parser caught."""
    from outage_sentinel.events import load_json

    doc = '{"seleList": [\n  {"id": "P1",\n   "meterCount": -' + "9" * 5000 + "}]}"
    for text in (doc, doc.encode()):
        with pytest.raises(json.JSONDecodeError) as info:
            load_json(text)
        assert info.value.msg == "a number of 5000 digits under key 'meterCount' (more than 4300)"
        assert (info.value.lineno, info.value.colno) == (3, 19)


@pytest.mark.parametrize(("value", "expected"), [
    ("20261123", datetime(2026, 11, 23, tzinfo=UTC)),
    ("202611230800", datetime(2026, 11, 23, 8, tzinfo=UTC)),
    ("20261123080030", datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)),
    (1795478400, datetime(2026, 11, 24, tzinfo=UTC)),
    (1795478400000, datetime(2026, 11, 24, tzinfo=UTC)),
])
def test_compact_times_and_plausible_epochs(value: Any, expected: datetime) -> None:
    assert parse_time(value, "startTime") == expected


@pytest.mark.parametrize("value", ["202611230", "17954784000", 86400, "2026112", 1.5e10])
def test_an_epoch_of_implausible_digits_is_refused_not_read_as_the_1970s(value: Any) -> None:
    with pytest.raises(EventError, match="^startTime: .* digits are neither epoch seconds"):
        parse_time(value, "startTime")


def test_dropped_files_a_bad_one_goes_to_failed_and_the_next_is_read(tmp_path: Any) -> None:
    from tests.test_file_drop import drop, make, names

    good = "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    drop(tmp_path / "1-cr-only.csv", good.replace("\n", "\r"), age=300)
    drop(tmp_path / "2-deep.jsonl", DEEP + "\n", age=200)
    drop(tmp_path / "3-good.csv", good, age=100)
    source = make(tmp_path)
    result = source.poll(datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    assert [e.event_id for e in result.events] == ["TX1-M0:off:20260701T080000Z"]
    reasons = sorted(q.reason for q in result.quarantined)
    assert reasons[0].startswith("1-cr-only.csv: bad CSV header")
    assert reasons[1].startswith("2-deep.jsonl: ") and "nested too deeply" in reasons[1]
    source.acknowledge(result)
    assert names(tmp_path / "failed") == ["1-cr-only.csv", "2-deep.jsonl"]
    assert names(tmp_path / "done") == ["3-good.csv"]


def test_locate_answers_a_deeply_nested_case_with_an_error_line(tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.test_locate_cli import REPO

    evidence = tmp_path / "e.jsonl"
    evidence.write_text(DEEP + "\n" + json.dumps({"id": "ok", "dead": ["T-CG01-001"]}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "outage_sentinel", "locate", "--topology",
                           str(REPO / "topology"), "--evidence", str(evidence)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    first, second = (json.loads(x) for x in proc.stdout.splitlines())
    assert "nested too deeply" in first["error"] and second["id"] == "ok"
