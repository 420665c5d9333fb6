"""The daemon (as a subprocess) against a real local HTTP feed that misbehaves in every way the
issue lists: it stays up, logs each failure with source and reason, counts it in the metrics,
and still processes the good records of a partly bad response."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import (
    free_port,
    json_lines,
    log_text,
    make_config,
    scrape,
    sink_lines,
    start_daemon,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow

GOOD = {
    "powerOffId": "GOOD-1",
    "subsName": "马集变",
    "typeCode": "3",
    "startTime": "2026-11-23 06:42:00",
    "stopTime": "2026-11-23 11:00:00",
    "scope": "马集镇南谢庄村",
    "lineName": "10kV马集线",
    "pubTranName": "南谢庄村2#公变,南谢庄村3#公变",
    "poweroffReason": "线路故障，正在抢修",
}
MISSING_START = {k: v for k, v in GOOD.items() if k != "startTime"} | {"powerOffId": "BAD-1"}
WRONG_TYPE = GOOD | {"powerOffId": {"nested": "object"}, "startTime": [1, 2]}
#: Issue 11's poison records: a time no system can hold, a NUL PostgreSQL refuses.
YEAR_9999 = GOOD | {"powerOffId": "BAD-2", "startTime": "9999-12-31T23:59:59-05:00"}
NUL_CAUSE = GOOD | {"powerOffId": "BAD-3", "poweroffReason": "线路\u0000故障"}


class Feed:
    """Serves a scripted sequence of behaviours, then the last one forever."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.i = 0
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            step = self.script[min(self.i, len(self.script) - 1)]
            self.i += 1
            return step


def _handler(feed: Feed) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            step = feed.next()
            if step == "500":
                self._send(500, b"internal error")
            elif step == "timeout":
                time.sleep(2.5)
                self._send(200, json.dumps({"seleList": []}).encode())
            elif step == "invalid":
                self._send(200, b"<html>not json</html>")
            elif step == "truncated":
                body = json.dumps({"seleList": [GOOD]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif step == "huge":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
                chunk = b" " * 65536
                try:
                    self.wfile.write(b'{"seleList": [')
                    for _ in range(50 * 16):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
            elif step == "deep":
                self._send(200, b"[" * 100_000 + b"]" * 100_000)
            elif step == "mixed":
                body = {"seleList": [MISSING_START, YEAR_9999, GOOD, NUL_CAUSE, WRONG_TYPE],
                        "pageModel": {"pageNow": 1, "totalPage": 1, "totalCount": 5}}
                self._send(200, json.dumps(body, ensure_ascii=False).encode("utf-8"))

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return H


@pytest.fixture
def feed_server() -> Iterator[tuple[Feed, str]]:
    feed = Feed(["500", "timeout", "invalid", "truncated", "huge", "deep", "mixed"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(feed))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield feed, f"http://127.0.0.1:{server.server_address[1]}/api/poweroff/list"
    server.shutdown()
    server.server_close()


def test_daemon_survives_every_kind_of_bad_feed(tmp_path: Path, feed_server: tuple[Feed, str]) -> None:
    feed, url = feed_server
    port = free_port()
    cfg = make_config(tmp_path, metrics_port=port, sources=[{
        "name": "county-95598", "type": "http_json", "url": url, "preset": "95598_list",
        "interval_seconds": 0.5, "timeout_seconds": 1.0, "connect_timeout_seconds": 1.0,
        "max_response_bytes": 1024 * 1024,
        "retry": {"max_attempts": 1, "initial_seconds": 0.1},
    }])
    proc = start_daemon(cfg)
    log_path = tmp_path / "daemon.log"
    try:
        # The good record of the mixed response becomes an incident and liaison notices.
        assert wait_for(lambda: any(m["purpose"] == "outage" for m in sink_lines(tmp_path)), 60), \
            log_text(log_path) if log_path.exists() else "no log"
        assert proc.poll() is None, "daemon died"
        notices = sink_lines(tmp_path)
        assert all("南谢庄村" in m["text"] for m in notices)

        log = json_lines(log_path)
        failures = [e for e in log if e.get("event") == "poll_failed"]
        assert all(e["source"] == "county-95598" for e in failures)
        reasons = " | ".join(e["reason"] for e in failures)
        assert len(failures) >= 6, reasons
        assert "nested too deeply" in reasons, reasons
        assert "500" in reasons
        assert re.search(r"time(d )?out", reasons, re.I), reasons
        assert re.search(r"json", reasons, re.I), reasons
        assert re.search(r"truncat|incomplete|content-length|ended early", reasons, re.I), reasons
        assert re.search(r"size|bytes|too large|exceed", reasons, re.I), reasons
        quarantined = [e for e in log if e.get("event") == "quarantined"]
        assert len(quarantined) >= 4  # the four bad records of the mixed response
        assert any("startTime" in e["reason"] or "start" in e["reason"] for e in quarantined)
        assert any("cannot store" in e["reason"] for e in quarantined)
        assert not any(e.get("event") in ("poll_crashed", "store_failed") for e in log)

        metrics = scrape(port)
        errors = re.search(r'outage_sentinel_polls_total\{result="error",source="county-95598"\} (\S+)',
                           metrics)
        assert errors and float(errors.group(1)) >= 5
        q = re.search(r'outage_sentinel_events_quarantined_total\{source="county-95598"\} (\S+)',
                      metrics)
        assert q and float(q.group(1)) >= 4
        ok = re.search(r'outage_sentinel_polls_total\{result="ok",source="county-95598"\} (\S+)',
                       metrics)
        assert ok and float(ok.group(1)) >= 1
    finally:
        assert stop(proc) == 0
