"""The daemon's life cycle as a process (issue 11, "Life cycle"): signals during start-up, the
SQLite file deleted or replaced under it, a metrics port already taken.

Start-up is held at a known step without any timing: the config file is a named pipe, so the
daemon blocks reading it until the test writes the config. Whether the handlers are installed is
read from the kernel (``SigCgt`` in /proc/PID/status), not guessed from elapsed time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from outage_sentinel.config import load_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.store import Store
from outage_sentinel.supervisor import EXIT_DATABASE_FILE
from tests.e2e_helpers import free_port, json_lines, make_config, scrape, start_daemon, stop, wait_for

pytestmark = pytest.mark.slow

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads signal dispositions from /proc")


def log_records(tmp: Path) -> list[dict[str, Any]]:
    return json_lines(tmp / "daemon.log")


def events(tmp: Path, name: str) -> list[dict[str, Any]]:
    return [r for r in log_records(tmp) if r.get("event") == name]


def catches(pid: int, *signums: int) -> bool:
    """Whether the process has a handler for every one of ``signums`` (kernel's SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines()
                if line.startswith("SigCgt:"))
    return all(mask & (1 << (s - 1)) for s in signums)


@pytest.fixture
def piped_config(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A config path that is a named pipe (start-up blocks reading it) and the text to feed it."""
    text = make_config(tmp_path).read_text(encoding="utf-8")
    pipe_dir = tmp_path / "etc"
    pipe_dir.mkdir()
    pipe = pipe_dir / "config.yaml"
    os.mkfifo(pipe)
    yield pipe, text


def feed_pipe(pipe: Path, text: str) -> None:
    with open(pipe, "w", encoding="utf-8") as f:  # blocks until the daemon opened it: it has
        f.write(text)


def held_in_startup(proc: Any) -> None:
    """Wait until the daemon handles SIGHUP and SIGTERM while still blocked on its config."""
    assert wait_for(lambda: catches(proc.pid, signal.SIGHUP, signal.SIGTERM)
                    or proc.poll() is not None, 60), "handlers never installed"
    assert proc.poll() is None, proc.communicate()


@linux_only
def test_sighup_during_startup_is_remembered_and_becomes_one_reload(
        tmp_path: Path, piped_config: tuple[Path, str]) -> None:
    pipe, text = piped_config
    proc = start_daemon(pipe)
    try:
        held_in_startup(proc)
        for _ in range(20):  # `systemctl reload` pressed repeatedly while it starts
            proc.send_signal(signal.SIGHUP)
            threading.Event().wait(0.05)
        assert proc.poll() is None, "a SIGHUP during start-up killed the daemon"
        feed_pipe(pipe, text)

        assert wait_for(lambda: bool(events(tmp_path, "topology_reloaded"))
                        or proc.poll() is not None, 60), log_records(tmp_path)
        assert proc.poll() is None, proc.communicate()
        running = events(tmp_path, "running")
        assert running, "not running yet reloaded"
        port = int(yaml.safe_load(text)["metrics"]["port"])
        assert "outage_sentinel_start_time_seconds" in scrape(port)  # ready: metrics answer
        # every SIGHUP came before it ran: they are one reload, acted on once running
        (sig,) = [r for r in events(tmp_path, "signal") if r.get("action") == "reload topology"]
        assert sig["signals"] == ["SIGHUP"] and sig["count"] >= 1
        assert len(events(tmp_path, "topology_reloaded")) == 1
        names = [r.get("event") for r in log_records(tmp_path)]
        assert names.index("running") < names.index("topology_reloaded")
    finally:
        assert stop(proc) == 0


@linux_only
def test_sigterm_during_startup_exits_0_after_the_step_under_way(
        tmp_path: Path, piped_config: tuple[Path, str]) -> None:
    pipe, text = piped_config
    proc = start_daemon(pipe)
    try:
        held_in_startup(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.poll() is None  # the config read under way is finished first
        feed_pipe(pipe, text)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc, signal.SIGKILL)
    (stopped,) = events(tmp_path, "stopped")
    assert stopped["after"] == "config" and stopped["signals"] == ["SIGTERM"]
    assert not events(tmp_path, "running")
    assert not (tmp_path / "state" / "sentinel.db").exists()  # stopped before the database


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_database_file_deleted_or_replaced_stops_the_daemon(tmp_path: Path, how: str) -> None:
    proc = start_daemon(make_config(tmp_path))
    db = tmp_path / "state" / "sentinel.db"
    try:
        assert wait_for(lambda: bool(events(tmp_path, "running")) or proc.poll() is not None,
                        60), proc.communicate() if proc.poll() is not None else "not running"
        if how == "deleted":
            db.unlink()
        else:  # a restored backup copied over it: same path, another file
            shutil.copyfile(db, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", db)
        assert proc.wait(timeout=60) == EXIT_DATABASE_FILE
    finally:
        stop(proc, signal.SIGKILL)
    (lost,) = events(tmp_path, "database_file_replaced")
    # A deleted file can already be "replaced" when checked: a connection the pool opened
    # meanwhile (another job's thread) makes a new, empty file at the same path.
    assert lost["problem"] in (("missing", "replaced") if how == "deleted" else ("replaced",))
    assert lost["path"] == str(db.resolve()) and lost["exit_code"] == EXIT_DATABASE_FILE
    assert events(tmp_path, "stopped")[-1]["exit_code"] == EXIT_DATABASE_FILE


def test_database_file_loss_is_counted_in_the_metrics(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path, metrics={"enabled": False}))
    daemon = Daemon(config)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run(install_signals=False)))
    thread.start()
    try:
        assert wait_for(lambda: daemon.store.count("events") > 0, 60)
        Path(config.database_url().removeprefix("sqlite:///")).unlink()
        thread.join(timeout=60)
    finally:
        daemon.stop()
        thread.join(timeout=60)
    assert result == [EXIT_DATABASE_FILE]
    get = daemon.metrics.registry.get_sample_value
    assert get("outage_sentinel_database_file_replaced_total") == 1


def test_store_tells_a_missing_or_replaced_sqlite_file(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    try:
        assert store.database_file_problem() is None
        path.unlink()
        assert store.database_file_problem() == "missing"
        Store(f"sqlite:///{path}").migrate()  # a new, empty database at the same path
        assert store.database_file_problem() == "replaced"
    finally:
        store.close()
    assert Store("sqlite://").database_file_problem() is None  # in memory: no file
    pg = Store(pg_url)
    assert pg.database_file_problem() is None  # a server database has no file to lose
    pg.close()


def test_a_taken_metrics_port_is_one_clear_line_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_daemon(make_config(tmp_path, metrics_port=port))
        try:
            rc = proc.wait(timeout=60)
        finally:
            stop(proc, signal.SIGKILL)
        stderr = proc.stderr.read().decode("utf-8") if proc.stderr else ""
    assert rc == 3, stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert f"127.0.0.1:{port}" in lines[0] and "metrics.port" in lines[0]
    assert "Traceback" not in stderr
    assert not events(tmp_path, "running")


def test_a_free_metrics_port_still_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = start_daemon(make_config(tmp_path, metrics_port=port))
    try:
        assert wait_for(lambda: bool(events(tmp_path, "running")) or proc.poll() is not None, 60)
        assert "outage_sentinel_database_file_replaced_total 0.0" in scrape(port)
    finally:
        assert stop(proc) == 0
