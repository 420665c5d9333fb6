"""A feed's rows as the villages must hear them: one record id listed on several rows (one
row per transformer area, as outage systems list a work order) is one record, and an error
reply that still carries an empty list is no "every outage is over".

Through the source against a local HTTP server, the store, and the daemon itself
(``run --once`` as a subprocess, cycle after cycle, against a local feed)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from outage_sentinel.events import PollResult
from outage_sentinel.sources.http_json import FeedError, HttpJsonSource
from outage_sentinel.store import Store
from tests.e2e_helpers import make_config, sink_lines
from tests.test_http_json import (
    NOW,
    Scripted,
    Seen,
    json_reply,
    listing,
    make_source,
    restored_in,
)
from tests.test_http_json import server as server  # noqa: F401  (the fixture)

#: Planned work for tomorrow (NOW is 16:00 Beijing time on 2026-11-23), one row per area.
WORK = {"powerOffId": "P1", "typeCode": "1", "startTime": "2026-11-24 08:00:00",
        "stopTime": "2026-11-24 16:00:00", "lineName": "10kV王庄线", "scope": ""}
ROW_A = dict(WORK, pubTranName="王庄村1号台区", scope="王庄村")
ROW_B = dict(WORK, pubTranName="前罗堤村1号台区", scope="前罗堤村")


def polls(source: HttpJsonSource, times: int) -> list[PollResult]:
    out = []
    for _ in range(times):
        out.append(source.poll(NOW))
        source.acknowledge(out[-1])
    return out


def started(url: str, **kw: Any) -> HttpJsonSource:
    source = make_source(url + "/notices", **kw)
    source.start(None)
    return source


# -- one id on several rows ---------------------------------------------------------------------


def test_one_id_on_two_rows_is_one_record_with_both_areas_at_every_poll(
        server: tuple[str, Scripted], tmp_path: Path) -> None:
    """The record used to become two events that the store kept re-storing as ``~rN`` at
    every poll, flipping the work between its villages; and the poll, counting ids against
    a count of rows, was never complete, so the work could never be found ended."""
    url, script = server
    script.replies = [listing(ROW_A, ROW_B, totalCount=2), listing(ROW_B, ROW_A, totalCount=2)]
    source = started(url)
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    with capture_logs() as logs:
        results = []
        for _ in range(3):
            results.append(source.poll(NOW))
            store.ingest(source.name, results[-1], NOW)
            source.acknowledge(results[-1])
    for result in results:  # the rows in either order: the same one record
        (event,) = result.events
        assert event.event_id == "P1" and event.kind == "planned"
        assert set(event.transformers) == {"王庄村1号台区", "前罗堤村1号台区"}
        assert set(event.area_text.split("；")) == {"王庄村", "前罗堤村"}
        assert event.revision == results[0].events[0].revision
    assert [s.event.event_id for s in store.events()] == ["P1"]  # stored once, not per poll
    assert not [e for e in logs if e["event"] == "http_json.poll_incomplete"]
    # The work order leaves the list before its start: complete polls call it off.
    script.replies = [listing(totalCount=0)]
    ended = [e for r in polls(source, 2) for e in r.events]
    assert [(e.event_id, e.status) for e in ended] == [("P1", "cancelled")]


def test_rows_of_one_id_on_different_pages_are_merged(server: tuple[str, Scripted]) -> None:
    url, script = server
    other = dict(WORK, powerOffId="P2", pubTranName="王楼村1号台区")

    def route(seen: Seen) -> Any:
        n = int(seen.query.get("pageNow", ["1"])[0])
        rows = [ROW_A, other] if n == 1 else [ROW_B]
        return json_reply({"seleList": rows, "pageModel": {"pageNow": n, "totalPage": 2,
                                                           "totalCount": 3}})

    script.route = route
    with capture_logs() as logs:
        (result,) = polls(started(url), 1)
    assert {e.event_id: set(e.transformers) for e in result.events} == {
        "P1": {"王庄村1号台区", "前罗堤村1号台区"}, "P2": {"王楼村1号台区"}}
    assert not [e for e in logs if e["event"] == "http_json.poll_incomplete"]


@pytest.mark.parametrize("field, value, label", [
    ("startTime", "2026-11-24 09:00:00", "start (startTime)"),
    ("typeCode", "3", "kind (typeCode)"),
])
def test_rows_of_one_id_that_disagree_are_quarantined_naming_id_and_field(
        server: tuple[str, Scripted], field: str, value: str, label: str) -> None:
    """Which row's start (or kind) is right cannot be told: none is picked. The record is
    still listed, so nothing ends it; once it leaves the list it is ended as any other."""
    url, script = server
    clash = dict(ROW_B, **{field: value})
    script.replies = [listing(ROW_A, ROW_B, totalCount=2), listing(ROW_A, clash, totalCount=2),
                      listing(ROW_A, clash, totalCount=2), listing(totalCount=0)]
    source = started(url)
    first, second, third = polls(source, 3)
    assert [e.event_id for e in first.events] == ["P1"]
    for result in (second, third):
        assert result.events == []  # not ended: it is still listed
        (bad,) = result.quarantined
        assert "'P1'" in bad.reason and label in bad.reason and value in bad.reason
        assert sorted(r["pubTranName"] for r in bad.raw) == ["前罗堤村1号台区", "王庄村1号台区"]
    assert [(e.event_id, e.status) for e in
            [e for r in polls(source, 2) for e in r.events]] == [("P1", "cancelled")]


def test_rows_that_differ_only_in_their_etr_keep_the_latest(
        server: tuple[str, Scripted]) -> None:
    url, script = server
    later = dict(ROW_B, stopTime="2026-11-24 18:00:00")
    script.replies = [listing(ROW_A, later, totalCount=2)]
    (result,) = polls(started(url), 1)
    (event,) = result.events
    assert event.expected_restoration == datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("UTC"))


def test_a_poll_that_misses_some_rows_of_a_record_holds_it_back(
        server: tuple[str, Scripted]) -> None:
    """A poll that saw fewer rows than the feed counts may have missed the other rows of a
    record: the record is not told it lost those areas (their villages would hear 停电取消)."""
    url, script = server
    script.replies = [listing(ROW_A, ROW_B, totalCount=2), listing(ROW_A, totalCount=2),
                      listing(ROW_A, totalCount=1)]
    first, partial, edited = polls(started(url), 3)
    assert len(first.events[0].transformers) == 2
    assert partial.events == []
    # A complete poll that lists one row: the work was edited, and says so.
    assert [e.transformers for e in edited.events] == [("王庄村1号台区",)]


def test_the_powercut_preset_merges_rows_too(server: tuple[str, Scripted]) -> None:
    url, script = server
    row = {"poweroffId": "PC1", "powerType": "计划停电", "startTime": "2026-11-24 08:00:00",
           "stopTime": "2026-11-24 16:00:00", "powerCircuit": "10kV王庄线",
           "powerArea": "王庄乡", "powerCause": "线路改造"}
    rows = [dict(row, powerRange="王庄村1号台区"), dict(row, powerRange="前罗堤村1号台区")]
    script.replies = [json_reply({"code": "1", "message": "查询成功",
                                  "data": {"powerCutList": rows, "total": 2}})]
    with capture_logs() as logs:
        (result,) = polls(started(url, preset="95598_powercut"), 1)
    (event,) = result.events
    assert set(event.area_text.split("；")) == {"王庄乡", "王庄村1号台区", "前罗堤村1号台区"}
    assert not [e for e in logs if e["event"] == "http_json.poll_incomplete"]


# -- an error reply with an empty list ----------------------------------------------------------

FAULT = {"poweroffId": "PC1", "powerType": "故障停电", "startTime": "2026-11-23 15:00:00",
         "stopTime": "2026-11-23 20:00:00", "powerRange": "王庄村全村", "powerArea": "王庄乡",
         "powerCircuit": "10kV王庄线", "powerCause": "线路故障"}
BUSY = {"code": "500", "message": "系统繁忙，请稍后再试", "data": {"powerCutList": [], "total": 0}}


def powercut(code: str | None, rows: list[Any]) -> Any:
    body: dict[str, Any] = {"data": {"powerCutList": rows, "total": len(rows)}}
    if code is not None:
        body = {"code": code, "message": "查询成功", **body}
    return json_reply(body)


def test_a_powercut_error_reply_with_an_empty_list_fails_the_poll_and_ends_nothing(
        server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [powercut("1", [FAULT]), json_reply(BUSY), json_reply(BUSY)]
    source = started(url, preset="95598_powercut")
    assert [e.event_id for e in polls(source, 1)[0].events] == ["PC1"]
    for _ in range(2):
        with pytest.raises(FeedError, match=r"'500', not a success \(系统繁忙"):
            source.poll(NOW)
    # Its own success code "1" with an empty list is a list: two of them end the fault.
    script.replies = [powercut("1", [])]
    assert restored_in(polls(source, 2)) == ["PC1"]
    # A reply without any code (a gateway stripped it) is read as before.
    script.replies = [powercut(None, [FAULT])]
    assert [e.event_id for e in polls(started(url, preset="95598_powercut"), 1)[0].events] \
        == ["PC1"]


def test_a_list_preset_reply_with_an_error_code_ends_nothing(
        server: tuple[str, Scripted]) -> None:
    """The 95598_list format documents no code: a reply carrying one that is no success is
    not failed (its records are kept) but is no whole list, so it ends no record."""
    url, script = server
    fault = dict(WORK, powerOffId="F1", typeCode="3", startTime="2026-11-23 15:00:00",
                 pubTranName="王庄村1号台区")
    error = {"code": 500, "msg": "数据库连接超时", "seleList": [],
             "pageModel": {"pageNow": 1, "totalPage": 0, "totalCount": 0}}
    script.replies = [listing(fault), *[json_reply(error)] * 3]
    source = started(url)
    with capture_logs() as logs:
        assert not restored_in(polls(source, 4))
    reasons = {e["reason"] for e in logs if e["event"] == "http_json.poll_incomplete"}
    assert len(reasons) == 1 and "500" in reasons.pop()
    script.replies = [listing(totalCount=0)]
    assert restored_in(polls(source, 2)) == ["F1"]


def test_a_configured_source_keeps_its_documented_success_check(
        server: tuple[str, Scripted]) -> None:
    """Without a preset nor success_path, only "success": false fails a reply (as documented):
    a code the config says nothing of is not judged."""
    url, script = server
    fields = {"event_id": "id", "start": "start", "transformers": "area"}
    row = {"id": "X1", "start": "2026-11-23 15:00:00", "area": "王庄村1号台区"}
    script.replies = [json_reply({"code": "1", "list": [row]}),
                      json_reply({"code": "1", "list": []})]
    source = started(url, preset=None, records_path="list", fields=fields, pagination=None)
    assert restored_in(polls(source, 3)) == ["X1"]


# -- through the daemon -------------------------------------------------------------------------


class Feed:
    """A local feed serving ``body`` (whatever was set last) for any request."""

    def __init__(self) -> None:
        self.body: Any = {}
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = json.dumps(feed.body, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def local_feed() -> Iterator[Feed]:
    feed = Feed()
    try:
        yield feed
    finally:
        feed.httpd.shutdown()
        feed.httpd.server_close()


def run_once(cfg: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), "run",
                           "--once"], capture_output=True, text=True, cwd=str(cfg.parent),
                          timeout=300)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]  # exit 1 when a poll failed: the report says which
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def texts(tmp: Path) -> list[str]:
    return [str(m.get("text") or "") for m in sink_lines(tmp)]


def daemon_config(tmp: Path, feed: Feed, preset: str) -> Path:
    source = {"name": "feed95598", "type": "http_json", "url": feed.url, "preset": preset,
              "interval_seconds": 60, "retry": {"max_attempts": 1}}
    return make_config(tmp, sources=[source], board={"enabled": False})


def local(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.slow
def test_daemon_announces_work_listed_per_area_once_to_each_village(
        tmp_path: Path, local_feed: Feed) -> None:
    """Planned work two days ahead on rows for 王庄村1号台区 and 前罗堤村1号台区: each
    village hears of it once; no poll calls it off (停电取消) or announces it again."""
    ahead = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=2)
    rows = [dict(WORK, startTime=local(ahead), stopTime=local(ahead + timedelta(hours=8)),
                 pubTranName=area) for area in ("王庄村1号台区", "前罗堤村1号台区")]
    local_feed.body = {"seleList": rows, "pageModel": {"pageNow": 1, "totalPage": 1,
                                                        "totalCount": 2}}
    cfg = daemon_config(tmp_path, local_feed, "95598_list")
    first = run_once(cfg)
    assert first["events"] == 1 and first["failed_polls"] == 0
    told = texts(tmp_path)
    for village in ("王庄村", "前罗堤村"):
        assert [t for t in told if t.startswith("【计划停电通知】" + village)], told
    for _ in range(2):
        run_once(cfg)
    again = texts(tmp_path)
    assert again == told  # nothing more: no 停电取消, no second notice
    assert not [t for t in again if "停电取消" in t]


@pytest.mark.slow
def test_daemon_hears_no_power_back_from_an_error_reply(
        tmp_path: Path, local_feed: Feed) -> None:
    """A fault on 王庄村, then two replies {"code": "500", 系统繁忙, powerCutList []}: the
    village still dark hears no 恢复送电, the crew no crew_power_back."""
    began = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(minutes=10)
    local_feed.body = {"code": "1", "message": "查询成功", "data": {"powerCutList": [
        dict(FAULT, startTime=local(began), stopTime=local(began + timedelta(hours=6)))],
        "total": 1}}
    cfg = daemon_config(tmp_path, local_feed, "95598_powercut")
    assert run_once(cfg)["events"] == 1
    assert [t for t in texts(tmp_path) if t.startswith("【故障停电通知】王庄村")]
    local_feed.body = BUSY
    for _ in range(2):
        assert run_once(cfg)["failed_polls"] == 1
    sent = sink_lines(tmp_path)
    assert not [m for m in sent if str(m.get("text") or "").startswith("【恢复送电】")]
    assert not [m for m in sent if m.get("purpose") == "restored"]
    assert not [m for m in sent if m.get("purpose") == "crew_power_back"]
