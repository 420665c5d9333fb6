"""What operators run the daemon with: the alert rules (``promtool test rules``), the Grafana
dashboard (every query names metrics and labels the daemon exports), and the metrics endpoint's
probes and collectors on a live daemon (``promtool check metrics`` clean)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from outage_sentinel.metrics import Metrics
from tests.e2e_helpers import free_port, log_text, make_config, start_daemon, stop, wait_for

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "ops" / "prometheus" / "outage-sentinel.rules.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "outage-sentinel.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                    "(.ci/run installs Debian's prometheus package)")
#: Labels Prometheus adds at scrape; a metric's own ``job`` label is scraped as exported_job.
TARGET_LABELS = {"instance", "job", "le", "__name__"}


def exported() -> dict[str, set[str]]:
    """Metric name (every sample name: _total, _bucket, _count, …) -> its label names."""
    metrics = Metrics()
    # Touch the labelled metrics so their samples exist.
    metrics.polls.labels("s", "ok")
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels: set[str] = set()
        names = {family.name, family.name + "_total", family.name + "_bucket",
                 family.name + "_count", family.name + "_sum", family.name + "_created"}
        for sample in family.samples:
            names.add(sample.name)
            labels |= set(sample.labels)
        for name in names:
            out.setdefault(name, set()).update(labels)
    # A labelled metric without children has no samples: read its label names from it.
    registry = metrics.registry._collector_to_names  # noqa: SLF001 (no public accessor)
    for collector, names in registry.items():
        for name in names:
            out.setdefault(name, set()).update(getattr(collector, "_labelnames", ()))
    return out


def queries(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, labels it is filtered or grouped by) for each outage_sentinel_ metric."""
    out = []
    grouped = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        grouped |= {g.strip() for g in group.split(",") if g.strip()}
    for name, selector in re.findall(r"(outage_sentinel_[a-z_]+)(\{[^}]*\})?", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", selector or ""))
        out.append((name, labels | grouped))
    return out


def check(expr: str, where: str, known: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, labels in queries(expr):
        if name not in known:
            problems.append(f"{where}: {name} is not exported")
            continue
        allowed = known[name] | TARGET_LABELS | ({"exported_job"} if "job" in known[name]
                                                 else set())
        if labels - allowed:
            problems.append(f"{where}: {name} has no label(s) {sorted(labels - allowed)}")
    return problems


def test_every_dashboard_query_names_exported_metrics_and_labels() -> None:
    known = exported()
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    problems: list[str] = []
    exprs = 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            exprs += 1
            problems += check(target["expr"], f"panel {panel['title']!r}", known)
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
                names = {n for n, _ in queries(target["expr"])}
                ok = any(label in known.get(n, set()) | TARGET_LABELS | {"exported_job"}
                         for n in names)
                if not ok:
                    problems.append(f"panel {panel['title']!r}: legend label {label!r}")
    assert exprs >= 15 and problems == []
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for subject in ("successful poll", "incidents", "notices", "outbox", "dead letters",
                    "localisation", "ami", "leader"):
        assert subject in titles, subject


def test_every_alert_rule_names_exported_metrics_and_has_a_runbook() -> None:
    known = exported()
    rules = yaml.safe_load(RULES.read_text("utf-8"))["groups"][0]["rules"]
    docs = (ROOT / "docs" / "operations.md").read_text("utf-8")
    problems = []
    for rule in rules:
        problems += check(rule["expr"], rule["alert"], known)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {rule['alert']}" in docs and anchor == rule["alert"].lower()
    assert problems == []
    assert len(rules) >= 11


def test_the_dashboard_check_catches_a_wrong_metric_or_label() -> None:
    known = exported()
    assert check("rate(outage_sentinel_polls_totl[5m])", "x", known)
    assert check('sum by (channel) (outage_sentinel_polls_total)', "x", known)
    assert not check('sum by (source) (outage_sentinel_polls_total{result="ok"})', "x", known)


@needs_promtool
def test_promtool_unit_tests_of_the_alert_rules() -> None:
    tests = RULES.with_name("outage-sentinel.tests.yml")
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True,
                       cwd=tests.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.slow
def test_a_live_daemon_answers_probes_and_exports_clean_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = make_config(tmp_path, metrics_port=port)
    proc = start_daemon(config)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: get(f"{base}/readyz") == (200, "ready\n"), 30)
        assert get(f"{base}/healthz") == (200, "ok\n")
        status, text = get(f"{base}/metrics")
        assert status == 200
        for name in ("process_resident_memory_bytes", "process_open_fds", "python_info",
                     "python_gc_objects_collected_total",
                     'outage_sentinel_leader{region="default"} 1.0',
                     'outage_sentinel_poll_interval_seconds{source="demo-feed"}',
                     "outage_sentinel_arrival_deadline_at_risk_incidents"):
            assert name in text, name
        if PROMTOOL:
            r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True)
            assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
                r.stdout + r.stderr
    finally:
        assert stop(proc) == 0
    assert yaml.safe_load(config.read_text("utf-8"))["metrics"]["port"] == port


@pytest.mark.slow
def test_under_systemd_the_daemon_says_ready_once_running_and_feeds_the_watchdog(
        tmp_path: Path) -> None:
    import os
    import socket
    import sys
    import threading

    path = str(tmp_path / "notify.sock")
    got: list[str] = []
    done = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.settimeout(0.1)

        def read() -> None:
            while not done.is_set():
                try:
                    got.append(systemd.recv(4096).decode())
                except OSError:
                    continue

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        config = make_config(tmp_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1", NOTIFY_SOCKET=path,
                   WATCHDOG_USEC="2000000")
        proc = subprocess.Popen([sys.executable, "-m", "outage_sentinel", "--config",
                                 str(config), "run"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=str(tmp_path))
        try:
            assert wait_for(lambda: sum(m == "WATCHDOG=1" for m in got) >= 3, 30), got
            log = log_text(tmp_path / "daemon.log")
            assert '"running"' in log  # READY came after the stages run
        finally:
            assert stop(proc) == 0
            done.set()
            reader.join(2)
    ready = next(m for m in got if m.startswith("READY=1"))
    assert "STATUS=leader of region default" in ready
    assert got.index(ready) < got.index("WATCHDOG=1")
    assert got[-1] == "STOPPING=1"


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed "
                    "(.ci/run installs Debian's systemd package)")
@pytest.mark.parametrize("unit", ["outage-sentinel.service", "outage-sentinel-board.service"])
def test_the_units_are_hardened(unit: str) -> None:
    r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                        str(ROOT / "systemd" / unit)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert found, r.stdout[-2000:] + r.stderr
    assert float(found.group(1)) <= 2.0, r.stdout[-3000:]
