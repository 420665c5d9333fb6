"""``outage-sentinel users …`` and ``outage-sentinel board`` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from outage_sentinel.board import access
from outage_sentinel.store import Store
from tests.e2e_helpers import free_port, make_config, wait_for


def cli(config: Path, *args: str, stdin: str | None = None,
        password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OUTAGE_SENTINEL_PASSWORD"}
    if password is not None:
        env["OUTAGE_SENTINEL_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                           *args], capture_output=True, text=True, env=env, input=stdin,
                          timeout=120)


def up(port: int) -> bool:
    """Whether the board on ``port`` answers its health check."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def db(config: Path) -> Store:
    state = yaml.safe_load(config.read_text("utf-8"))["state_dir"]
    return Store(f"sqlite:///{state}/sentinel.db")


def test_users_are_managed_from_the_command_line(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    r = cli(config, "users", "add", "wang", "--role", "operator", "--password-stdin",
            stdin="a long password\n")
    assert r.returncode == 0 and "added (operator)" in r.stdout
    r = cli(config, "users", "add", "wang", password="another long one")
    assert r.returncode == 1 and "exists" in r.stderr
    r = cli(config, "users", "add", "li", "--role", "root", password="a long password")
    assert r.returncode == 1 and "unknown role 'root'" in r.stderr
    r = cli(config, "users", "add", "li", password="short")
    assert r.returncode == 1 and "10 characters" in r.stderr
    assert cli(config, "users", "role", "wang", "admin").returncode == 0
    assert cli(config, "users", "disable", "wang").returncode == 0
    r = cli(config, "users", "disable", "nobody")
    assert r.returncode == 1 and "no user 'nobody'" in r.stderr
    listed = cli(config, "users", "list").stdout
    assert "wang" in listed and "admin" in listed and "disabled" in listed
    assert cli(config, "users", "passwd", "wang", "--password-stdin",
               stdin="the new password\n").returncode == 0
    store = db(config)
    user = store.user("wang")
    assert user is not None and access.password_matches(user["password_hash"],
                                                         "the new password")
    assert "the new password" not in user["password_hash"]
    store.close()
    assert cli(config, "users").returncode == 2


def test_the_board_serves_on_its_own_and_prints_the_first_admin_once(tmp_path: Path) -> None:
    port = free_port()
    config = make_config(tmp_path, board={"enabled": False, "port": port,
                                          "first_admin": True})
    proc = subprocess.Popen([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                             "board"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert wait_for(lambda: up(port), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"board: http://127.0.0.1:{port}/" in out
    assert out.count("one-time password") == 1
    password = out.split("one-time password ")[1].split(" ")[0]
    assert password not in err  # printed, never logged
    store = db(config)
    admin = store.user("admin")
    assert admin is not None and admin["must_change"] and admin["role"] == "admin"
    store.close()
    again = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                            "users", "list"], capture_output=True, text=True, timeout=60)
    assert "must change password" in again.stdout


def test_a_taken_board_port_stops_run_with_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = make_config(tmp_path, board={"enabled": True, "port": port})
        r = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                            "run"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert f"board cannot listen on 127.0.0.1:{port}" in r.stderr and "board.port" in r.stderr


def test_the_standalone_board_keeps_serving_a_bundle_that_cannot_be_reloaded(
        tmp_path: Path) -> None:
    """SIGHUP with a broken bundle: the board keeps the one in use and its log names what is
    wrong (it used to give a count of problems and nothing else); mended, the next one takes."""
    import shutil

    from tests.e2e_helpers import ROOT, log_text

    bundle = tmp_path / "topology"
    shutil.copytree(ROOT / "topology", bundle)
    port = free_port()
    config = make_config(tmp_path, board={"enabled": False, "port": port})
    data = yaml.safe_load(config.read_text("utf-8"))
    data["topology"] = str(bundle)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                             "board"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = tmp_path / "daemon.log"
    try:
        assert wait_for(lambda: up(port), 30)
        (bundle / "edges.csv").rename(tmp_path / "edges.csv")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: log.exists() and "topology_reload_failed" in log_text(log), 20)
        line = next(x for x in log_text(log).splitlines() if "topology_reload_failed" in x)
        assert "edges.csv" in line and str(bundle) in line
        assert up(port)
        (tmp_path / "edges.csv").rename(bundle / "edges.csv")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "topology_reloaded" in log_text(log), 20)
        assert up(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
