"""What the operations audit found, each kept fixed: the dead-letter and stuck-backlog alerts see
what really happens (``promtool`` unit tests in ``ops/prometheus/*.tests.yml``, all run here), a
channel's notification series exist at 0 from the start, no metric label is renamed at scrape,
a lone surrogate never makes a log call raise, slow sources never starve the heartbeat, the
lease or the delivery, and the unit file does not crash-loop on a bad config."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from outage_sentinel import metrics as metrics_module
from outage_sentinel import supervisor
from outage_sentinel.config import load_config
from outage_sentinel.logs import configure, get_logger
from outage_sentinel.metrics import Metrics
from outage_sentinel.supervisor import Schedule, serve_metrics
from tests.e2e_helpers import free_port, make_config

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "ops" / "prometheus"
PROMTOOL = shutil.which("promtool")
UNIT = ROOT / "systemd" / "outage-sentinel.service"
BOARD_UNIT = ROOT / "systemd" / "outage-sentinel-board.service"
#: A generous bound for a thread to get going; the tests never assert on time taken.
PATIENCE = 20.0


# -- alert rules ---------------------------------------------------------------------------------

@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (.ci/run installs "
                    "Debian's prometheus package)")
@pytest.mark.parametrize("tests", sorted(p.name for p in PROM.glob("*.tests.yml")))
def test_every_promtool_test_file_of_the_alert_rules_passes(tests: str) -> None:
    """Dead letters from permanent refusals and from a series born above 0, a stuck backlog,
    a region whose every daemon is gone: ``outage-sentinel.audit.tests.yml``."""
    r = subprocess.run([str(PROMTOOL), "test", "rules", tests], capture_output=True, text=True,
                       cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_audit_rule_tests_exist() -> None:
    assert (PROM / "outage-sentinel.audit.tests.yml").is_file()


# -- metrics ----------------------------------------------------------------------------------

def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def test_every_channel_and_result_is_exported_at_zero_once_the_endpoint_listens(
        tmp_path: Path) -> None:
    """A series' first sample is invisible to ``increase()``: the first dead letter of a
    channel after a start would never alert if its series were born at 1."""
    config = load_config(make_config(tmp_path, metrics_port=free_port()))
    metrics = Metrics()
    server = serve_metrics(config, metrics, get_logger(component="test"))
    assert server is not None
    try:
        text = scrape(config.metrics.port)
    finally:
        server.shutdown()
        server.server_close()
    assert config.channels
    for channel in config.channels:
        for result in metrics_module.NOTIFICATION_RESULTS:
            line = f'outage_sentinel_notifications_total{{channel="{channel}",result="{result}"}}'
            assert f"{line} 0.0" in text, line


def test_the_results_created_at_zero_are_the_ones_the_readme_lists() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    row = next(line for line in readme.splitlines()
               if line.startswith("| `outage_sentinel_notifications_total`"))
    listed = re.search(r"`result` \(([^)]*)\)", row)
    assert listed is not None
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(metrics_module.NOTIFICATION_RESULTS)


def test_no_metric_has_a_label_prometheus_renames_at_scrape() -> None:
    """A metric's own ``job`` or ``instance`` label arrives as ``exported_job`` /
    ``exported_instance``: the skipped-jobs counter names its job ``job_name``."""
    metrics = Metrics()
    metrics.job_missed.labels("poll:feed").inc()
    labels = {name for family in metrics.registry.collect() for sample in family.samples
              for name in sample.labels}
    assert "job_name" in labels
    assert not labels & {"job", "instance"}
    dashboard = (ROOT / "ops" / "grafana" / "outage-sentinel.json").read_text("utf-8")
    assert "exported_job" not in dashboard and "job_name" in dashboard


# -- logs ---------------------------------------------------------------------------------------

@pytest.fixture
def clean_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_outage_sentinel", False)]:
        root.removeHandler(handler)
        handler.close()


#: A GBK file name read on a UTF-8 host (``os.fsdecode``): lone surrogates.
GBK_NAME = "电表停电导出.csv".encode("gbk").decode("utf-8", "surrogateescape")


def test_a_lone_surrogate_in_a_value_never_makes_logging_to_a_file_raise(
        tmp_path: Path, clean_logging: None) -> None:
    path = tmp_path / "daemon.log"
    configure(level="INFO", fmt="json", file=path)
    get_logger().info("file_drop.file_read", file=GBK_NAME, phone="13812345678")
    logging.getLogger("apscheduler.executors.default").error("Job %s failed", GBK_NAME)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert len(lines) == 2
    assert lines[0]["file"] == GBK_NAME.encode("utf-8", "backslashreplace").decode()
    assert lines[0]["file"].startswith("\\udc") and lines[0]["phone"] == "138****5678"
    assert "\\udc" in lines[1]["event"]


def test_a_lone_surrogate_is_scrubbed_on_a_strict_stderr_alike(clean_logging: None) -> None:
    """``PYTHONIOENCODING=utf-8:strict`` (or a collector's pipe opened strict): the same
    scrubbed line, no exception."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    configure(level="INFO", fmt="json", stream=stream)
    get_logger().warning("poll_failed", source=GBK_NAME, error=ValueError(GBK_NAME))
    record = json.loads(raw.getvalue().decode("utf-8"))
    assert record["source"] == GBK_NAME.encode("utf-8", "backslashreplace").decode()
    assert "\\udc" in record["error"]


def test_a_line_that_cannot_be_written_is_dropped_not_raised(clean_logging: None) -> None:
    stream = io.StringIO()
    configure(level="INFO", fmt="json", stream=stream)
    stream.close()  # a closed pipe, a full disk: the poll logging it must go on
    get_logger().error("store_failed", source="feed")
    logging.getLogger("apscheduler.executors.default").error("Job failed")


# -- the scheduler ------------------------------------------------------------------------------

class Blocked:
    """Jobs that block until released, counting how many are running."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.changed = threading.Condition()

    def job(self) -> None:
        with self.changed:
            self.running += 1
            self.changed.notify_all()
        self.release.wait(PATIENCE * 3)

    def wait_running(self, n: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.running >= n, PATIENCE)


def ran_again(job_id: str, ran: dict[str, threading.Event]) -> Callable[[], None]:
    def job() -> None:
        ran[job_id].set()
    return job


def test_slow_sources_never_starve_the_heartbeat_lease_and_delivery() -> None:
    """Twelve feeds hang (more than APScheduler's default ten threads): every one of them
    runs, and the heartbeat (the watchdog's keep-alive), the lease and the delivery still run
    while they all hang."""
    feeds = 12
    blocked = Blocked()
    jobs = Schedule(Metrics(), get_logger(component="test"), datetime.now(UTC))
    for i in range(feeds):
        jobs.every(blocked.job, 3600, f"poll:feed{i}")
    ran = {job_id: threading.Event() for job_id in ("heartbeat", "lease", "deliver")}
    for job_id in ran:
        jobs.every(ran_again(job_id, ran), 0.05, job_id)
    jobs.every(lambda: None, 3600, "lifecycle")
    jobs.scheduler.start()
    try:
        assert blocked.wait_running(feeds), blocked.running
        for event in ran.values():
            event.clear()  # from now on every feed hangs
        assert all(event.wait(PATIENCE) for event in ran.values()), \
            {k: e.is_set() for k, e in ran.items()}
    finally:
        blocked.release.set()
        jobs.scheduler.shutdown(wait=True)
    assert set(supervisor.OWN_POOL_JOBS) == {"heartbeat", "lease", "deliver"}


# -- the unit file ------------------------------------------------------------------------------

def unit_values(unit: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.read_text("utf-8").splitlines()
            if line.startswith(f"{key}=")]


@pytest.mark.parametrize(("unit", "codes"), [(UNIT, {"3", "4", "6"}),
                                             (BOARD_UNIT, {"3", "4"})])
def test_the_units_do_not_restart_on_a_bad_config_topology_or_replaced_database(
        unit: Path, codes: set[str]) -> None:
    """Exit codes 3 (configuration, a port taken), 4 (topology) and 6 (the SQLite file
    replaced) need an operator: restarting every 5 s would only fill the journal."""
    prevented = {code for value in unit_values(unit, "RestartPreventExitStatus")
                 for code in value.split()}
    assert prevented == codes
    assert unit_values(unit, "Restart") == ["on-failure"]  # 5, the database away, restarts


def test_the_unit_says_where_file_drop_directories_and_the_log_file_must_be_writable() -> None:
    text = UNIT.read_text("utf-8")
    comments = " ".join(line for line in text.splitlines() if line.startswith("#"))
    assert "file_drop" in comments and "log.file" in comments
    assert "ReadWritePaths=" in comments
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Running under systemd", 1)[1].split("\n## ", 1)[0]
    assert "ReadWritePaths=" in section and "file_drop" in section and "log.file" in section
    assert "RestartPreventExitStatus=3 4 6" in section
