"""What /metrics says is true (the operations audit), on real stores, real leases on the local
PostgreSQL and a real HTTP feed:

* a source that has not succeeded since the start has a last-success series (the stored
  ``last_ok``, else the start of the term), so the stale-source alert sees it;
* only the region's leader exports the region's state (last successful polls, open incidents,
  the outbox's backlog and dead letters, deadlines at risk, the storm, source health): a
  standby exports none of it, a deposed leader drops it, and a send finishing after the
  deposition does not bring it back;
* one bad record of a snapshot feed is quarantined, and counted, once a day however often the
  feed lists it;
* a poll job whose processing fails (the database gone) logs and never raises.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.config import load_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import Quarantined
from outage_sentinel.leadership import Lease
from outage_sentinel.metrics import PER_LEADER_METRICS, Metrics
from outage_sentinel.store import MIGRATIONS, Store, schema_version_t
from tests.e2e_helpers import ROOT, free_port, make_config

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
LAST_SUCCESS = "outage_sentinel_last_successful_poll_timestamp_seconds"
#: What only the region's leader knows (README "Metrics", the ``per`` column: leader).
PER_LEADER = {"outage_sentinel_" + n for n in (
    "last_successful_poll_timestamp_seconds", "incidents_active", "outbox_backlog_messages",
    "outbox_dead_letters_messages", "arrival_deadline_at_risk_incidents", "storm_declared",
    "source_connected", "snapshot_held_polls", "ami_clock_offset_hours")}

GOOD = {"powerOffId": "GOOD-1", "subsName": "马集变", "typeCode": "3",
        "startTime": "2026-11-23 14:00:00", "stopTime": "", "scope": "马集镇南谢庄村部分区域",
        "lineName": "10kV马集线", "pubTranName": "南谢庄村2#公变,南谢庄村3#公变",
        "poweroffReason": "线路故障"}
BAD = GOOD | {"powerOffId": "BAD-1", "startTime": "not a time"}


class Feed:
    """A 95598 list feed on loopback: ``status`` 200 with ``records``, or an error."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records, self.status = records, 200
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = json.dumps({"seleList": feed.records, "pageModel": {
                    "pageNow": 1, "totalPage": 1, "totalCount": len(feed.records)}}).encode()
                self.send_response(feed.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/list"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed() -> Iterator[Feed]:
    f = Feed([GOOD])
    yield f
    f.close()


def feed_config(tmp: Path, url: str, **over: Any) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    return load_config(make_config(tmp, board={"enabled": False}, sources=[
        {"name": "county-95598", "type": "http_json", "url": url, "preset": "95598_list",
         "interval_seconds": 60, "timeout_seconds": 5, "retry": {"max_attempts": 1}}],
        **over))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def leader_samples(metrics: Metrics) -> list[str]:
    """Every sample of a per-leader metric this registry exports."""
    return [f"{s.name}{s.labels}" for family in metrics.registry.collect()
            for s in family.samples if family.name in PER_LEADER]


# -- 2. a source that has not succeeded since the start -----------------------------------------


def test_a_source_down_since_the_start_is_stale_from_the_start(tmp_path: Path,
                                                               feed: Feed) -> None:
    feed.status = 500
    daemon = Daemon(feed_config(tmp_path, feed.url), clock=Clock(T0))
    try:
        daemon.start()
        (source,) = daemon.sources
        assert daemon.poll(source) is None
        # ``time() - this`` grows from the start: the stale alert fires after 3 intervals
        assert sample(daemon.metrics, LAST_SUCCESS, source="county-95598") == T0.timestamp()
    finally:
        daemon.close()


def test_after_a_restart_the_last_success_the_store_knows_counts(tmp_path: Path,
                                                                 feed: Feed) -> None:
    config = feed_config(tmp_path, feed.url)
    first = Daemon(config, clock=Clock(T0))
    try:
        first.start()
        assert first.poll(first.sources[0]) is not None  # the last success: T0
    finally:
        first.close()
    feed.status = 500  # the feed goes down; the daemon restarts an hour later
    later = T0 + timedelta(hours=1)
    second = Daemon(config, clock=Clock(later))
    try:
        second.start()
        assert second.poll(second.sources[0]) is None
        assert sample(second.metrics, LAST_SUCCESS, source="county-95598") == T0.timestamp()
    finally:
        second.close()


# -- 3. only the leader exports the region's state -----------------------------------------------


def test_the_per_leader_metrics_are_the_documented_ones() -> None:
    assert {g.name for g in Metrics().per_leader()} == set(PER_LEADER_METRICS) == PER_LEADER
    rows = [line for line in (ROOT / "README.md").read_text("utf-8").splitlines()
            if line.startswith("| `outage_sentinel_")]
    leaders = {row.split("`")[1] for row in rows if " | leader | " in row}
    assert leaders == PER_LEADER and all(" | process | " in row for row in rows
                                         if row.split("`")[1] not in PER_LEADER)


def ha_node(tmp: Path, name: str, pg_url: str) -> Daemon:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return Daemon(load_config(make_config(
        tmp / name, database={"url": pg_url}, board={"enabled": False},
        metrics={"enabled": True, "host": "127.0.0.1", "port": free_port()},
        ha={"enabled": True, "region": "county", "node": name, "lease_seconds": 30.0},
        sources=[{"name": "feed", "type": "replay", "interval_seconds": 1.0, "speed": 1000.0,
                  "scenario": str(ROOT / "fixtures" / "scenarios" / "demo.jsonl")}])))


def test_only_the_leader_exports_the_regions_state(tmp_path: Path, pg_url: str) -> None:
    a, b = ha_node(tmp_path, "a", pg_url), ha_node(tmp_path, "b", pg_url)
    try:
        a.run_once()  # leads: polls, processes, checks deadlines, delivers
        assert sample(a.metrics, "outage_sentinel_leader", region="county") == 1
        for name in (LAST_SUCCESS, "outage_sentinel_outbox_backlog_messages",
                     "outage_sentinel_outbox_dead_letters_messages",
                     "outage_sentinel_arrival_deadline_at_risk_incidents"):
            assert any(s.startswith(name) for s in leader_samples(a.metrics)), name
        polled = sample(a.metrics, LAST_SUCCESS, source="feed")

        b.start()  # a standby: no backlog 0, no dead letters 0, nothing of the region's
        assert sample(b.metrics, "outage_sentinel_leader", region="county") == 0
        assert leader_samples(b.metrics) == []

        # a is deposed: its lease lapses, b takes it over, a's next renewal finds it gone
        assert isinstance(a.leadership, Lease) and a.leadership.epoch is not None
        a.store.release_lease("county", "a", a.leadership.epoch)
        assert b.leadership.renew() and b.term.active
        assert not a.leadership.renew() and not a.term.active
        assert sample(a.metrics, "outage_sentinel_leader", region="county") == 0
        assert leader_samples(a.metrics) == []
        a.deliverer.update_gauges()  # a send of its term finishing after the deposition
        assert leader_samples(a.metrics) == []
        # the new leader's series continues from the last success the store knows
        assert sample(b.metrics, LAST_SUCCESS, source="feed") == polled
    finally:
        b.close()
        a.close()


# -- 5. one bad record is quarantined once -------------------------------------------------------


def test_one_bad_record_is_quarantined_and_counted_once_a_day(tmp_path: Path, feed: Feed,
                                                              store: Store) -> None:
    feed.records = [GOOD, BAD]
    clock = Clock(T0)
    daemon = Daemon(feed_config(tmp_path, feed.url), store=store, clock=clock)
    try:
        daemon.start()
        (source,) = daemon.sources
        with capture_logs() as logs:
            for _ in range(13):
                clock.now += timedelta(seconds=1)
                assert daemon.poll(source) is not None
        (row,) = store.quarantined()
        assert "not a time" in row["reason"] and row["received_at"] == T0 + timedelta(seconds=1)
        assert (row["repeats"], row["last_seen"]) == (12, clock.now)
        counted = {"source": "county-95598"}
        assert sample(daemon.metrics, "outage_sentinel_events_quarantined_total", **counted) == 1
        assert [r["event"] for r in logs].count("quarantined") == 1

        feed.records = [GOOD, BAD, BAD | {"powerOffId": "BAD-2"}]  # another bad record
        assert daemon.poll(source) is not None
        assert len(store.quarantined()) == 2
        clock.now += timedelta(hours=25)  # a day on, still listed: kept (and counted) again
        assert daemon.poll(source) is not None
        assert len(store.quarantined()) == 4
        assert sample(daemon.metrics, "outage_sentinel_events_quarantined_total", **counted) == 4
    finally:
        daemon.close()


def test_a_failed_polls_body_is_quarantined_once(store: Store) -> None:
    body = Quarantined("feed", "page 1: not JSON", "<html>busy</html>")
    assert store.quarantine(body, T0)
    assert not store.quarantine(body, T0 + timedelta(minutes=1))
    assert store.quarantine(Quarantined("other", body.reason, body.raw), T0)
    assert store.quarantine(Quarantined("feed", "page 2: not JSON", body.raw), T0)
    assert len(store.quarantined()) == 3


def test_quarantine_rows_of_an_older_schema_read_back(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        with store.engine.begin() as conn:
            schema_version_t.create(conn)
            for version, step in enumerate(MIGRATIONS[:13], start=1):
                step(conn)
                conn.execute(schema_version_t.insert().values(version=version, applied_at=T0))
            for column in ("digest", "last_seen", "repeats"):  # the table as version 13 made it
                conn.exec_driver_sql(f"ALTER TABLE quarantine DROP COLUMN {column}")
            conn.exec_driver_sql("INSERT INTO quarantine (source, reason, raw, received_at, "
                                 "region) VALUES ('feed', 'bad', '{}', '2026-11-23', 'default')")
        assert store.migrate() == len(MIGRATIONS)
        (row,) = store.quarantined()
        assert row["reason"] == "bad" and row["repeats"] == 0 and row["digest"] is None
        assert store.quarantine(Quarantined("feed", "bad", "{}"), T0)  # kept anew, once
        assert not store.quarantine(Quarantined("feed", "bad", "{}"), T0)
        assert len(store.quarantined()) == 2
    finally:
        store.close()


# -- the poll job never raises --------------------------------------------------------------------


def test_a_poll_job_whose_processing_fails_logs_and_does_not_raise(tmp_path: Path,
                                                                   feed: Feed) -> None:
    daemon = Daemon(feed_config(tmp_path, feed.url))
    try:
        daemon.start()
        path = daemon.store.sqlite_path
        assert path is not None
        with sqlite3.connect(path) as conn:  # the database loses its tables under the daemon
            conn.execute("DROP TABLE events")
        job = daemon._scheduler().get_job("poll:county-95598")
        with capture_logs() as logs:
            job.func(*job.args)  # APScheduler would log a traceback and job_failed
        (failed,) = [r for r in logs if r["event"] == "poll_job_failed"]
        assert failed["source"] == "county-95598" and "events" in failed["error"]
    finally:
        daemon.close()
