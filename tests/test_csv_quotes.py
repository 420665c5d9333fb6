"""An unbalanced double quote in one CSV row costs that row, not the rows after it.

A row like ``T1,"Village A,2026-11-23 08:00`` opens a quoted field that never closes on its
line: the csv module reads on through the next lines (every later row, up to the end of the
file or the next quote) as one field, so the good rows after it were quarantined inside one bad
row instead of delivered. A record spanning lines must now hold together as one row (quotes
closing where a field ends, at most ``MAX_RECORD_LINES`` lines, the header's width); otherwise
its first line alone is quarantined, with its line number and text, and the next lines are read
as rows. Quoted fields holding line breaks, as exporters write them, still read as one field.
Sources: dropped AMI and work-order files, and CSV payloads over the real MQTT broker.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.config import FileDropSourceConfig
from outage_sentinel.sources.ami_payload import MAX_RECORD_LINES, CsvRow, csv_rows
from outage_sentinel.sources.file_drop import FileDropSource
from tests.test_file_drop import REGISTRY, drop
from tests.test_mqtt_source import HOST, PORT, poll_until
from tests.test_mqtt_source import ids as ids  # noqa: F401  (the fixture)
from tests.test_mqtt_source import make_source as mqtt_source
from tests.test_mqtt_source import publish as publish  # noqa: F401  (the fixture)

NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
UNBALANCED = "bad CSV: an unbalanced double quote"


def rows(text: str) -> list[tuple[int, list[str] | str]]:
    """``(line, cells)`` of each row, ``(line, raw text)`` of each refused one."""
    return [(r.line, r.raw if r.error else r.cells) for r in csv_rows(text)]


def refused(text: str) -> list[CsvRow]:
    return [r for r in csv_rows(text) if r.error is not None]


# -- reading rows -------------------------------------------------------------------------------


def test_an_unbalanced_quote_costs_its_line_only() -> None:
    text = ('id,name,time\n'
            'T0,Village Z,2026-11-23 07:00\n'
            'T1,"Village A,2026-11-23 08:00\n'
            'T2,Village B,2026-11-23 09:00\n'
            'T3,Village C,2026-11-23 10:00\n')
    assert rows(text) == [
        (1, ["id", "name", "time"]), (2, ["T0", "Village Z", "2026-11-23 07:00"]),
        (3, 'T1,"Village A,2026-11-23 08:00\n'),
        (4, ["T2", "Village B", "2026-11-23 09:00"]), (5, ["T3", "Village C", "2026-11-23 10:00"])]
    [bad] = refused(text)
    assert bad.error is not None and bad.error.startswith(UNBALANCED)


def test_quoted_fields_holding_line_breaks_still_read_as_one_field() -> None:
    text = ('id,address,time\r\n'
            'T1,"马集镇\r\n南谢庄村, 5组",2026-11-23 08:00\r\n'
            'T2,"a ""quoted"" word\nand a comma, too",2026-11-23 09:00\r\n'
            'T3,plain,"2026-11-23\n10:00"\n'
            'T4,"' + "\n".join(["line"] * MAX_RECORD_LINES) + '",x\n'
            'T5,last,2026-11-23 11:00')
    assert rows(text) == [
        (1, ["id", "address", "time"]),
        (2, ["T1", "马集镇\r\n南谢庄村, 5组", "2026-11-23 08:00"]),
        (4, ["T2", 'a "quoted" word\nand a comma, too', "2026-11-23 09:00"]),
        (6, ["T3", "plain", "2026-11-23\n10:00"]),
        (8, ["T4", "\n".join(["line"] * MAX_RECORD_LINES), "x"]),
        (8 + MAX_RECORD_LINES, ["T5", "last", "2026-11-23 11:00"])]


@pytest.mark.parametrize(("name", "text", "bad_lines"), [
    ("runs to the end of the text, the header's width",
     'id,name,time\nT1,Village A,"2026\nT2,B,2026\nT3,C,2026\n', [2]),
    ("closes inside a later row's field",
     'id,name,time\nT1,"Village A,2026\nT2,B,2026\nT3,"Village C",2026\nT4,D,2026\n', [2]),
    ("two of them",
     'id,name,time\nT1,"A,2026\nT2,B,2026\nT3,"C,2026\nT4,D,2026\n', [2, 4]),
    ("closes cleanly, past the line bound",
     'id,name,time\nT1,x,"2026\n' + "".join(f"T{i},B,2026\n" for i in range(2, 30))
     + 'T30,C,2026"\nT31,D,2026\n', [2]),
])
def test_a_record_that_does_not_hold_together_gives_its_lines_back(
        name: str, text: str, bad_lines: list[int]) -> None:
    read = rows(text)
    lines = text.splitlines(keepends=True)
    assert [n for n, cells in read if isinstance(cells, str)] == bad_lines, name
    # every line is read exactly once: as a row of its own, or kept as the refused line
    assert [n for n, _ in read] == list(range(1, len(lines) + 1)), name
    for n, cells in read:
        if isinstance(cells, str):
            assert cells == lines[n - 1], name


def test_a_record_that_holds_together_is_one_row_whatever_its_width() -> None:
    """Its quotes close as fields end, within the bound: the lines inside its quoted field
    are never read as rows (the caller's words below would be a trouble call nobody made);
    a width other than the header's is its error, every line of it kept in the row."""
    text = ('id,area,note,time\n'
            'W1,T1,"caller: no power\nW9,T9,x,2026-11-23 07:00\nplease come",x,2026-11-23 08:00\n'
            'W2,T2,ok,2026-11-23 09:00\n')
    assert rows(text) == [
        (1, ["id", "area", "note", "time"]),
        (2, ["W1", "T1", "caller: no power\nW9,T9,x,2026-11-23 07:00\nplease come", "x",
             "2026-11-23 08:00"]),
        (5, ["W2", "T2", "ok", "2026-11-23 09:00"])]
    # a stray quote opening a field and another closing one at a later line's end: one row,
    # one field short; kept whole rather than guessed apart
    assert rows('id,name,time\nT1,"Village A,2026\nT2,B,2026"\nT3,C,2026\n') == [
        (1, ["id", "name", "time"]), (2, ["T1", "Village A,2026\nT2,B,2026"]),
        (4, ["T3", "C", "2026"])]


def test_open_quotes_on_every_line_cost_the_file_s_length_not_its_square() -> None:
    # each line opens a quote the next lines keep open: every line is refused on its own,
    # and no record is read past the bound (it was read to the end of the file, each time:
    # 16,000 such lines took 20 s; benchmarks/fuzz.py times the reader)
    text = 'id,name,time\n' + 'x"y,"abc\n' * 3000
    read = list(csv_rows(text))
    assert len(read) == 3001 and all(r.error for r in read[1:-1])  # the last hides nothing


# -- dropped files ------------------------------------------------------------------------------


def make(tmp_path: Path, **extra: Any) -> FileDropSource:
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "drop", "directory": str(tmp_path), "settle_seconds": 2,
         **extra})
    source = FileDropSource(cfg, registry=REGISTRY, default_tz="Asia/Shanghai")
    source.start(None)
    return source


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_an_ami_file_with_an_unbalanced_quote_delivers_every_other_row(tmp_path: Path) -> None:
    lines = ["meter_id,code,time,note"]
    lines += [f"TX1-M{m},3.26.0.85,2026-07-01 16:00:0{m},ok" for m in range(6)]
    lines[3] = 'TX1-M2,3.26.0.85,2026-07-01 16:00:02,"site B'  # line 4: never closed
    lines.insert(6, 'TX1-T,ERC14,2026-07-01 16:00:09,"two\nlines"')  # quoted: lines 7-8
    drop(tmp_path / "q.csv", "\n".join(lines) + "\n")
    source = make(tmp_path)
    result = source.poll(NOW)
    assert sorted(e.area_text for e in result.events if e.signal == "dead") == [
        "meter:TX1-M0", "meter:TX1-M1", "meter:TX1-M3", "meter:TX1-M4", "meter:TX1-M5",
        "terminal:TX1-T"]
    [bad] = result.quarantined
    assert bad.reason.startswith(f"q.csv row 4: {UNBALANCED}")
    assert bad.raw == {"line": 'TX1-M2,3.26.0.85,2026-07-01 16:00:02,"site B\n'}
    assert source.stats["records"] == 7  # six meters (one bad) and the terminal
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["q.csv"]


def test_the_briefs_work_order_row_costs_itself_only(tmp_path: Path) -> None:
    text = ("orderNo,address,acceptTime,custNo,faultType\n"
            "W1,Village Z,2026-11-23 07:00,C00213,无电\n"
            'W2,"Village A,2026-11-23 08:00,C00213,无电\n'
            "W3,Village B,2026-11-23 09:00,C00213,无电\n"
            'W4,"Village C, east",2026-11-23 10:00,C00213,无电\n'
            "W5,Village D,2026-11-23 11:00,C00213,无电\n")
    drop(tmp_path / "orders.csv", text)
    source = make(tmp_path, content="work_orders")
    result = source.poll(NOW)
    assert [e.event_id for e in result.events] == ["W1", "W3", "W4", "W5"]
    [bad] = result.quarantined
    assert bad.reason.startswith(f"orders.csv row 3: {UNBALANCED}")
    assert bad.raw == {"line": 'W2,"Village A,2026-11-23 08:00,C00213,无电\n'}
    source.acknowledge(result)
    assert names(tmp_path / "done") == ["orders.csv"]


def test_an_unbalanced_quote_in_the_header_fails_the_file_naming_it(tmp_path: Path) -> None:
    drop(tmp_path / "h.csv", 'meter_id,"code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n')
    source = make(tmp_path)
    result = source.poll(NOW)
    [bad] = result.quarantined
    assert bad.reason.startswith("h.csv: bad CSV header: an unbalanced double quote")
    assert "TX1-M0" in bad.raw["head"]
    source.acknowledge(result)
    assert names(tmp_path / "failed") == ["h.csv"]


# -- MQTT ---------------------------------------------------------------------------------------


def broker_up() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not broker_up(), reason="no MQTT broker at 127.0.0.1:1883")
def test_a_csv_message_with_an_unbalanced_quote_loses_no_other_row(
        ids: dict[str, str], publish: Any) -> None:
    source = mqtt_source(ids, payload_format="csv")
    try:
        publish(ids["topic"], b'meter_id,code,time,note\n'
                              b'T1-M0,3.26.0.85,2026-07-01T08:00:00Z,"a\n'
                              b'T1-M1,3.26.0.85,2026-07-01T08:00:01Z,ok\n'
                              b'T1-M2,3.26.0.85,2026-07-01T08:00:02Z,ok\n')
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M1", "meter:T1-M2"]
        [bad] = [q for r in results for q in r.quarantined]
        assert bad.reason.startswith(f"topic {ids['topic']} row 2: {UNBALANCED}")
        assert bad.raw == {"line": 'T1-M0,3.26.0.85,2026-07-01T08:00:00Z,"a\n'}
    finally:
        source.close()
