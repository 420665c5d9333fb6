"""The HA audit's findings, each reproduced on real stores (SQLite and the local PostgreSQL),
real files, a real broker port and real leases:

* a text longer than its column, or NaN / Infinity in a record, stalled its source on
  PostgreSQL (every poll failed at the store; files never moved, MQTT re-buffered forever);
* a source that could not start killed the daemon; one whose start waited for its broker kept
  a two-node leader from acting (the wait ran inside the lease's renewal, the lease lapsed,
  the next renewal started a new term and waited again);
* a standby's takeover in one region ended the database sessions of other regions' leaders.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import FileDropSourceConfig, MqttSourceConfig, load_config
from outage_sentinel.events import TEXT_LIMITS, EventError, OutageEvent, PollResult
from outage_sentinel.leadership import Lease
from outage_sentinel.metrics import Metrics
from outage_sentinel.poller import Poller
from outage_sentinel.sources.base import SourceError
from outage_sentinel.sources.file_drop import FileDropSource
from outage_sentinel.sources.mqtt import MqttSource
from outage_sentinel.sources.replay import ReplaySource
from outage_sentinel.store import Store
from outage_sentinel.store.schema import events_t, quarantine_t
from tests.e2e_helpers import ROOT, make_config

NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
REGISTRY = AmiRegistry.from_records([("TX1-M0", "TX1", "meter"), ("TX1-M1", "TX1", "meter")],
                                    {"TX1": "F1"})


def event(event_id: str, **kw: Any) -> OutageEvent:
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status="active",
                       start=NOW, feeder="F1", **kw)


def stored_ids(store: Store) -> list[str]:
    return sorted(s.event.event_id for s in store.events())


def reasons(store: Store) -> list[str]:
    return [str(q["reason"]) for q in store.quarantined()]


class Fixed:
    """A source that returns one given result, and remembers what it was acknowledged."""

    type = "fixed"

    def __init__(self, name: str, result: PollResult) -> None:
        self.name, self.result = name, result
        self.acked: list[PollResult] = []

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        pass

    def poll(self, now: datetime) -> PollResult:
        return self.result

    def acknowledge(self, result: PollResult) -> None:
        self.acked.append(result)

    def close(self) -> None:
        pass


# -- 1. a text longer than its column ------------------------------------------------------------


@pytest.mark.parametrize("name", ["source", "event_id", "revision", "feeder", "device"])
def test_a_text_longer_than_its_column_is_refused_naming_the_field_and_its_length(
        name: str) -> None:
    limit = TEXT_LIMITS[name]
    fields: dict[str, Any] = {"source": "feed", "event_id": "e1", "kind": "fault",
                              "status": "active", "start": NOW}
    OutageEvent(**{**fields, name: "x" * limit})  # exactly the column's width: kept
    with pytest.raises(EventError, match=rf"^{name}: {limit + 7} characters.*{limit}"):
        OutageEvent(**{**fields, name: "x" * (limit + 7)})


def test_the_events_columns_are_as_wide_as_the_event_allows() -> None:
    for name, limit in TEXT_LIMITS.items():
        assert events_t.c[name].type.length == limit
    assert quarantine_t.c.source.type.length == TEXT_LIMITS["source"]


def drop(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    old = NOW.timestamp() - 120
    import os
    os.utime(path, (old, old))
    return path


def test_an_overlong_order_number_costs_its_record_only_and_the_file_moves(
        store: Store, tmp_path: Path) -> None:
    hdr = "orderNo,address,acceptTime,custNo,faultType\n"
    drop(tmp_path / "a.csv", hdr + f"{'W' * 250},南谢庄村,2026-11-23 07:00,C00001,无电\n"
                                   "W-GOOD-1,南谢庄村,2026-11-23 07:01,C00002,无电\n")
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "calls", "directory": str(tmp_path),
         "content": "work_orders", "settle_seconds": 0})
    source = FileDropSource(cfg, default_tz="Asia/Shanghai")
    source.start(None)
    assert Poller(store, Metrics()).poll(source, NOW) is not None
    assert stored_ids(store) == ["W-GOOD-1"]
    (reason,) = reasons(store)
    assert "event_id: 250 characters" in reason
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.csv"]


def test_an_overlong_device_id_or_a_nan_costs_its_ami_report_only(
        store: Store, tmp_path: Path) -> None:
    t = "2026-11-23T07:00:00+08:00"
    lines = [json.dumps({"device_id": "M" * 250, "code": "3.26.0.85", "time": t}),
             json.dumps({"device_id": "TX1-M0", "code": "3.26.0.85", "time": t})[:-1]
             + ', "x": NaN}',
             json.dumps({"device_id": "TX1-M1", "code": "3.26.0.85", "time": t})]
    drop(tmp_path / "ami.jsonl", "\n".join(lines) + "\n")
    cfg = FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "ami-files", "directory": str(tmp_path),
         "settle_seconds": 0, "ami": {"unknown_devices": "keep"}})
    source = FileDropSource(cfg, registry=REGISTRY, default_tz="Asia/Shanghai")
    source.start(None)
    assert Poller(store, Metrics()).poll(source, NOW) is not None
    assert [i.split(":")[0] for i in stored_ids(store)] == ["TX1-M1"]
    got = sorted(reasons(store))
    assert len(got) == 2
    # the report's id is made of its device's: the longer of the two is named
    assert any(": 271 characters, more than the 200" in r for r in got), got
    assert any("x: NaN" in r for r in got), got
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["ami.jsonl"]


# -- 2. NaN / Infinity ---------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_nan_in_an_unmapped_field_costs_its_record_only(
        store: Store, tmp_path: Path, constant: str) -> None:
    rec = {"at": 0, "event_id": "R-BAD", "kind": "fault", "status": "active",
           "start_offset": -60, "feeder": "CG01", "transformers": ["T-CG01-010"]}
    good = dict(rec, event_id="R-GOOD")
    path = tmp_path / "scen.jsonl"
    path.write_text(json.dumps(rec)[:-1] + f', "extra": {{"x": [1, {constant}]}}}}\n'
                    + json.dumps(good) + "\n", encoding="utf-8")
    assert Poller(store, Metrics()).poll(ReplaySource("feed", path), NOW) is not None
    assert stored_ids(store) == ["R-GOOD"]
    (reason,) = reasons(store)
    assert f"extra.x[1]: {constant}" in reason


def test_nan_built_into_an_event_is_refused_when_it_is_made() -> None:
    with pytest.raises(EventError, match=r"^a\.b: NaN"):
        event("e1", raw={"a": {"b": float("nan")}})
    event("e1", raw={"a": {"b": 1.5}})


def test_a_cursor_holding_nan_is_quarantined_and_the_poll_stored(store: Store) -> None:
    counts = store.ingest("feed", PollResult(events=[event("good")],
                                             cursor={"page": float("inf")}), NOW)
    assert counts.inserted == 1 and counts.quarantined == 1
    assert stored_ids(store) == ["good"]
    (reason,) = reasons(store)
    assert "cursor" in reason and "page: Infinity" in reason
    assert store.kv_get("cursor:feed") is None


def test_nan_slipped_into_a_stored_events_raw_costs_its_record_only(store: Store) -> None:
    bad = event("bad", raw={"v": 1.0})
    bad.raw["v"] = float("nan")  # # after the event's own check: the store's is the backstop
    source = Fixed("feed", PollResult(events=[bad, event("good")], cursor={"n": 1}))
    assert Poller(store, Metrics()).poll(source, NOW) is not None
    assert stored_ids(store) == ["good"]
    (reason,) = reasons(store)
    assert reason.startswith("bad: the database refused it") and "v: NaN" in reason
    assert source.acked and store.kv_get("cursor:feed") == {"n": 1}


def test_a_value_the_database_refuses_costs_its_record_only(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()
    try:
        bad = event("bad")
        object.__setattr__(bad, "feeder", "F" * 150)  # past the event's checks somehow
        source = Fixed("feed", PollResult(events=[bad, event("good")], cursor={"n": 1}))
        with capture_logs() as logs:
            assert Poller(store, Metrics()).poll(source, NOW) is not None
        assert stored_ids(store) == ["good"]
        (reason,) = reasons(store)
        assert reason.startswith("bad: the database refused it") and "too long" in reason
        assert source.acked and store.kv_get("cursor:feed") == {"n": 1}
        assert not [r for r in logs if r["event"] == "store_failed"]
    finally:
        store.close()


# -- 3. a broker that is down, and the lease -----------------------------------------------------


def refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_a_broker_that_refuses_is_named_by_the_poll_after_start() -> None:
    cfg = MqttSourceConfig.model_validate({
        "type": "mqtt", "name": "ami-mqtt", "host": "127.0.0.1", "port": refused_port(),
        "topics": ["x"], "client_id": f"test-ami-{uuid.uuid4().hex[:8]}"})
    source = MqttSource(cfg, connect_timeout_seconds=30)  # returns once the attempt failed
    source.start(None)
    try:
        with pytest.raises(SourceError, match="not connected to mqtt://.*: cannot connect"):
            source.poll(NOW)
    finally:
        source.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    store.migrate()
    yield store
    store.close()


def test_a_slow_start_of_the_term_does_not_outlast_the_leaders_validity(
        pg_store: Store) -> None:
    clock = [1000.0]
    told: list[bool] = []

    def slow_start(leader: bool) -> None:
        told.append(leader)
        clock[0] += 60.0  # the term's start took longer than the lease

    lease = Lease(pg_store, "county", "a", 30, slow_start, monotonic=lambda: clock[0])
    assert lease.renew()
    assert told == [True]
    assert lease.is_leader()  # valid counted from after the start, not from before it


def test_a_lease_that_lapsed_and_was_taken_back_by_its_holder_keeps_the_term(
        pg_store: Store) -> None:
    told: list[bool] = []
    lease = Lease(pg_store, "county", "a", 30, told.append)
    assert lease.renew() and lease.epoch == 1
    pg_store.release_lease("county", "a", 1)  # lapsed; nobody else took it meanwhile
    assert lease.renew() and lease.epoch == 2
    assert told == [True]  # no other node led in between: the term goes on


def test_a_takeover_by_another_node_in_between_still_ends_the_term(
        pg_store: Store, pg_url: str) -> None:
    told: list[bool] = []
    lease = Lease(pg_store, "county", "a", 30, told.append)
    assert lease.renew() and lease.epoch == 1
    pg_store.release_lease("county", "a", 1)
    other = Store(pg_url)
    try:
        assert other.take_lease("county", "b", 0.01) == 2  # b led, briefly
        time.sleep(0.05)
    finally:
        other.close()
    assert lease.renew() and lease.epoch == 3
    assert told == [True, False, True]


def test_a_start_that_raised_is_tried_again_at_the_next_renewal(pg_store: Store) -> None:
    told: list[bool] = []

    def flaky(leader: bool) -> None:
        told.append(leader)
        if len(told) == 1:
            raise RuntimeError("the term could not begin")

    lease = Lease(pg_store, "county", "a", 30, flaky)
    with contextlib.suppress(RuntimeError):
        lease.renew()
    lease.renew()
    assert told == [True, True]


def ha_config(tmp_path: Path, pg_url: str, sources: list[dict[str, Any]]) -> Any:
    return load_config(make_config(
        tmp_path, sources=sources, database={"url": pg_url}, board={"enabled": False},
        ha={"enabled": True, "node": "a", "lease_seconds": 2.0}))


def test_a_broker_that_is_down_does_not_hold_up_the_leaders_term(
        tmp_path: Path, pg_url: str) -> None:
    from outage_sentinel.daemon import Daemon

    config = ha_config(tmp_path, pg_url, [
        {"name": "ami-mqtt", "type": "mqtt", "topics": ["audit/x"], "host": "127.0.0.1",
         "port": refused_port(), "client_id": f"audit-{uuid.uuid4().hex[:8]}",
         "interval_seconds": 1.0},
        {"name": "feed", "type": "replay", "interval_seconds": 1.0,
         "scenario": str(ROOT / "fixtures" / "scenarios" / "demo.jsonl")}])
    daemon = Daemon(config)
    try:
        with capture_logs() as logs:
            daemon.start()
            assert daemon.leadership.renew()
            assert daemon.leadership.renew()
        assert daemon.leadership.epoch == 1  # the lease never lapsed under the start
        assert not [r for r in logs if r["event"] == "deposed"]
        feed, mqtt_source = daemon.sources[1], daemon.sources[0]
        assert daemon.poll(feed) is not None
        assert daemon.poll(mqtt_source) is None  # started now; not connected: a failed poll
        health = daemon.store.kv_get("health:ami-mqtt")
        assert health["ok"] is False and "not connected" in health["error"]
    finally:
        daemon.close()


# -- 4. a source that cannot start ---------------------------------------------------------------


def test_a_source_that_cannot_start_is_reported_and_started_at_a_later_poll(
        tmp_path: Path) -> None:
    from outage_sentinel.daemon import Daemon

    drop_dir = tmp_path / "drop"
    drop_dir.mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where done/ should go\n")
    config = load_config(make_config(tmp_path, board={"enabled": False}, sources=[
        {"name": "ami-files", "type": "file_drop", "directory": str(drop_dir),
         "done_dir": str(blocker / "done"), "interval_seconds": 1.0},
        {"name": "feed", "type": "replay", "interval_seconds": 1.0,
         "scenario": str(ROOT / "fixtures" / "scenarios" / "demo.jsonl")}]))
    daemon = Daemon(config)
    try:
        with capture_logs() as logs:
            daemon.start()  # does not raise
        (failed,) = [r for r in logs if r["event"] == "source_start_failed"]
        assert failed["source"] == "ami-files" and "done" in failed["reason"]
        health = daemon.store.kv_get("health:ami-files")
        assert health["ok"] is False and "done" in health["error"]
        files, feed = daemon.sources
        assert daemon.term.active and daemon.poll(feed) is not None
        with capture_logs() as logs:
            assert daemon.poll(files) is None  # tried again, still failing
        assert [r["event"] for r in logs if r["log_level"] == "error"] == [
            "source_start_failed"]
        blocker.unlink()
        assert daemon.poll(files) is not None  # started at this poll
        assert (blocker / "done").is_dir()
        assert daemon.store.kv_get("health:ami-files")["ok"] is True
    finally:
        daemon.close()


def test_a_screen_that_cannot_load_holds_its_sources_back_not_the_daemon(
        tmp_path: Path) -> None:
    from outage_sentinel.daemon import Daemon
    from outage_sentinel.screening import SCREEN_KEY

    drop_dir = tmp_path / "drop"
    drop_dir.mkdir()
    config = load_config(make_config(tmp_path, board={"enabled": False}, sources=[
        {"name": "ami-files", "type": "file_drop", "directory": str(drop_dir),
         "interval_seconds": 1.0}]))
    daemon = Daemon(config)
    try:
        daemon.store.kv_set(SCREEN_KEY, ["not", "a", "screen"], NOW)  # unreadable
        with capture_logs() as logs:
            daemon.start()  # does not raise
        (failed,) = [r for r in logs if r["event"] == "term_step_failed"]
        assert failed["step"] == "ami_screen"
        (source,) = daemon.sources
        assert daemon.poll(source) is None  # its reports cannot be screened yet
        daemon.store.kv_set(SCREEN_KEY, {}, NOW)
        assert daemon.poll(source) is not None
    finally:
        daemon.close()


# -- 5. a takeover ends only the sessions holding its own region's lease --------------------------


def test_a_takeover_ends_only_the_sessions_holding_its_own_regions_lease(pg_url: str) -> None:
    north, standby, south = Store(pg_url), Store(pg_url), Store(pg_url)
    north.migrate()
    outcome: dict[str, str] = {}
    try:
        assert north.take_lease("north", "north-a", 0.5) == 1
        assert south.take_lease("south", "south-a", 30) == 1

        def frozen_north() -> None:  # a fenced transaction stuck in a statement
            try:
                with north.transaction(fenced=False) as conn:
                    north.check_lease_in(conn, "north", "north-a", 1)
                    conn.execute(sa.text("SELECT pg_sleep(20)"))
                outcome["north"] = "committed"
            except Exception as exc:
                outcome["north"] = type(exc).__name__

        def healthy_south() -> None:  # a fenced write of the other region, 3 s long
            try:
                with south.transaction(fenced=False) as conn:
                    south.check_lease_in(conn, "south", "south-a", 1)
                    conn.execute(sa.text("SELECT pg_sleep(3)"))
                    south.kv_set_in(conn, "work", {"done": True}, NOW)
                outcome["south"] = "committed"
            except Exception as exc:
                outcome["south"] = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=frozen_north), threading.Thread(target=healthy_south)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # north's lease (0.5 s) has lapsed; its row is still held
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            standby.take_lease("north", "north-b", 0.5)
        for t in threads:
            t.join(30)
        assert outcome == {"north": "OperationalError", "south": "committed"}
        assert south.kv_get("work") == {"done": True}
        assert standby.take_lease("north", "north-b", 0.5) == 2
    finally:
        for s in (north, standby, south):
            s.close()


def test_nan_and_overlong_texts_are_checked_once_not_for_what_the_store_gave_back(
        sqlite_store: Store) -> None:
    """A SQLite database written before these checks may hold such an event: it is read back
    and processed as it was kept, never refused at every round."""
    ok = event("e1")
    sqlite_store.ingest("feed", PollResult(events=[ok]), NOW)
    with sqlite_store.transaction() as conn:
        conn.execute(events_t.update().values(event_id="E" * 300, raw={"x": 1}))
        conn.execute(sa.text("UPDATE events SET raw = '{\"x\": NaN}'"))
    (back,) = sqlite_store.unprocessed_events()
    assert back.event.event_id == "E" * 300 and math.isnan(back.event.raw["x"])
