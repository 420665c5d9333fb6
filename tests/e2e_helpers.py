"""Helpers for tests that run the daemon as a subprocess on a copy of the default config."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_config(tmp: Path, *, speed: float = 10.0, interval: float = 0.5,
                delivery_interval: float = 0.2, metrics_port: int | None = None,
                sources: list[dict[str, Any]] | None = None, **overrides: Any) -> Path:
    """A copy of the repo's config.yaml pointing its state into ``tmp``, sped up."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["state_dir"] = str(tmp / "state")
    data["topology"] = str(ROOT / "topology")
    if sources is None:
        src = data["sources"][0]
        src["scenario"] = str(ROOT / src["scenario"])
        src["speed"] = speed
        src["interval_seconds"] = interval
    else:
        data["sources"] = sources
    for ch in data["channels"].values():
        if ch.get("type") == "file":
            ch["path"] = str(tmp / "state" / "notifications.jsonl")
    data["delivery"]["interval_seconds"] = delivery_interval
    data["delivery"]["retry"]["initial_seconds"] = 0.2
    data["metrics"]["port"] = metrics_port or free_port()
    # The embedded default serves the board too: on a port of its own per test.
    data["board"]["port"] = free_port()
    data["field"]["base_url"] = f"http://127.0.0.1:{data['board']['port']}"
    data["log"]["file"] = str(tmp / "daemon.log")
    data.update(overrides)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def start_daemon(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                             "run", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(config.parent))


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("daemon did not stop in time") from None


def json_lines(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The JSON records of the complete lines of ``path`` from byte ``start`` (every one must
    parse): a file a running daemon appends to may end in a line it is still writing, which a
    reader leaves for later."""
    if not path.exists():
        return []
    whole = path.read_bytes()
    data = whole[start:]
    if start and whole[start - 1:start] != b"\n":  # ``start`` fell inside a line: from the next
        data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
    done = data[:data.rfind(b"\n") + 1].decode("utf-8")
    return [json.loads(line) for line in done.splitlines() if line.strip()]


def log_text(path: Path) -> str:
    """The complete lines of ``path`` so far ("" if there is none yet): a line a running daemon
    is still writing may end inside a character, so it is left for the next read."""
    if not path.exists():
        return ""
    data = path.read_bytes()
    return data[:data.rfind(b"\n") + 1].decode("utf-8")


def sink_lines(tmp: Path) -> list[dict[str, Any]]:
    return json_lines(tmp / "state" / "notifications.jsonl")


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode("utf-8")


def sign_in_form(client: Any, user: str, password: str) -> dict[str, str]:
    """The sign-in form's fields as the board's own page fills them (GET /login first: the
    form's token must match the cookie that page sets)."""
    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return {"user": user, "password": password, "csrf": found.group(1)}
