"""Secrets by construction: every value read from ``${ENV}`` is masked wherever it lands.

Reproducer of issue 11: a webhook key in a URL (``url: "http://host/hook/{target}?key=${HOOK_KEY}"``)
reached 48 log lines, 11 ``outbox.last_error`` rows, ``outbox list`` and ``repr(config)``. Here
the daemon runs as a subprocess against a local webhook that fails every request and echoes the
URL it was called with, as a misconfigured proxy would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from outage_sentinel import logs
from outage_sentinel.channels.common import Redactor
from outage_sentinel.config import parse_config
from tests.e2e_helpers import ROOT, log_text, make_config

HOOK_KEY = "hk-5b0e7c1d9a3f4e21"


class EchoingFailure(BaseHTTPRequestHandler):
    """Fails every request with a 500 whose body repeats the request line (key included)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"upstream rejected POST {self.path} (key {HOOK_KEY})".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def failing_hook() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingFailure)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=120, env={**os.environ, **env})


def test_a_webhook_key_in_a_url_reaches_no_log_no_stored_error_no_cli_output(
        tmp_path: Path, failing_hook: int) -> None:
    cfg = make_config(tmp_path, speed=1000.0)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    for name in ("wecom", "dingtalk", "feishu"):
        data["channels"][name] = {
            "type": "webhook", "timeout_seconds": 5,
            "url": f"http://127.0.0.1:{failing_hook}/hook/{{target}}?key=${{HOOK_KEY}}"}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = {"HOOK_KEY": HOOK_KEY}
    outputs = []
    for _ in range(2):
        r = cli("--config", str(cfg), "run", "--once", env=env)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    listed = cli("--config", str(cfg), "outbox", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    outputs += [listed.stdout, listed.stderr]

    with sqlite3.connect(tmp_path / "state" / "sentinel.db") as db:
        errors = [e for (e,) in db.execute("SELECT last_error FROM outbox WHERE last_error "
                                           "IS NOT NULL")]
    logged = log_text(tmp_path / "daemon.log")
    # The failure happened and was recorded and shown: the test saw the paths the key took.
    assert any("HTTP 500" in e for e in errors)
    assert "HTTP 500" in listed.stdout
    assert "channel_send" in logged
    for text in [logged, *errors, *outputs]:
        assert HOOK_KEY not in text
    assert any("***" in e for e in errors)


def test_one_registry_serves_logs_and_channels() -> None:
    logs.reset_secrets()
    try:
        redactor = Redactor(["chan-secret-1"])
        # A channel's secret is masked in logs; a config value is masked by the channel.
        parse_config(yaml.safe_load("""\
sources: [{name: s, type: replay, scenario: x.jsonl}]
channels: {sink: {type: file, path: "${OUT}"}}
"""), env={"OUT": "/very/private/out.jsonl"})
        assert logs.redact("chan-secret-1 at /very/private/out.jsonl") == "*** at ***"
        assert redactor("wrote /very/private/out.jsonl") == "wrote ***"
        logs.reset_secrets()
        assert logs.redact("chan-secret-1") == "chan-secret-1"
    finally:
        logs.reset_secrets()


def test_structured_log_lines_mask_env_values(tmp_path: Path) -> None:
    import io

    logs.reset_secrets()
    stream = io.StringIO()
    try:
        parse_config(yaml.safe_load("""\
sources: [{name: s, type: replay, scenario: x.jsonl}]
channels:
  hook: {type: webhook, url: "http://h/hook?token=${TOKEN}"}
"""), env={"TOKEN": "tok/with space"})
        logs.configure("INFO", "json", stream=stream)
        logs.get_logger().warning("send_failed", url="http://h/hook?token=tok%2Fwith%20space",
                                  detail="token tok/with space refused")
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["url"] == "http://h/hook?token=***"
        assert line["detail"] == "token *** refused"
    finally:
        logs.reset_secrets()
        import structlog

        structlog.reset_defaults()
