"""The daemon's stages on their own (issue 12): each built without a daemon, over a real SQLite
store and the demo bundle, driven through ``run_once(now)``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.ami import compact_time, device_ref
from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config, parse_config
from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.liaison import TemplateFailure
from outage_sentinel.lifecycle_clock import LifecycleClock
from outage_sentinel.metrics import Metrics
from outage_sentinel.poller import Poller
from outage_sentinel.report_job import ReportJob
from outage_sentinel.screening import AMI_SOURCE, AmiScreener
from outage_sentinel.sources.base import SourceError
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from outage_sentinel.triage import STORM_KEY

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
AREA = "T-CG01-001"


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


def config(tmp: Path, **extra: Any) -> Config:
    return parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "ami-mqtt", "type": "mqtt", "topics": ["ami/#"],
                     "client_id": "stages-test"}],
        "channels": {"cc": {"type": "file", "path": str(tmp / "sink.jsonl")}},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        "ami_screen": {"min_meters": 3, "min_duration_seconds": 60},
        **extra})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.migrate()
    return s


def core(tmp: Path, store: Store, topology: Topology, **kw: Any) -> Core:
    return build_core(config(tmp), store, topology, metrics=Metrics(), clock=lambda: NOW, **kw)


def fault(event_id: str, *areas: str, status: str = "active") -> OutageEvent:
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       start=NOW, end=NOW if status == "restored" else None, transformers=areas,
                       signal="notice" if status == "active" else "alive")


class ListSource:
    """A source collaborator: returns the queued results (or raises the queued errors)."""

    type = "http_json"

    def __init__(self, name: str, *results: PollResult | Exception) -> None:
        self.name, self.results, self.acknowledged = name, list(results), 0
        self.buffered = 0

    def start(self, cursor: Any) -> None:
        pass

    def poll(self, now: datetime) -> PollResult:
        item = self.results.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def acknowledge(self, result: PollResult) -> None:
        self.acknowledged += 1

    def close(self) -> None:
        pass


# -- Poller -------------------------------------------------------------------------------------


def test_poller_stores_then_acknowledges_and_a_failed_poll_keeps_its_body(store: Store) -> None:
    bad = SourceError("page 1: not JSON")
    bad.raw = "<html>busy</html>"
    source = ListSource("feed", PollResult(events=[fault("A", AREA)], quarantined=[
        Quarantined("feed", "record 2: startTime: expected a time", {"id": 2})]), bad,
        RuntimeError("bug in a parser"))
    poller = Poller(store, Metrics())
    first = poller.run_once(source, lambda: NOW)
    assert (first.polls, first.events, first.quarantined, source.acknowledged) == (1, 1, 1, 1)
    assert [s.event.event_id for s in store.unprocessed_events()] == ["A"]
    assert poller.run_once(source, lambda: NOW).failed == 1
    assert poller.poll(source, NOW) is None  # a crashing source never raises out of a poll
    reasons = [q["reason"] for q in store.quarantined()]
    assert "page 1: not JSON" in reasons and source.acknowledged == 1


def test_poller_drains_a_buffering_source_in_one_run(store: Store) -> None:
    class Backlog(ListSource):
        def poll(self, now: datetime) -> PollResult:
            self.buffered = len(self.results) - 1
            return super().poll(now)

    source = Backlog("ami", *(PollResult(events=[fault(f"E{i}", AREA)]) for i in range(5)))
    report = Poller(store, Metrics()).run_once(source, lambda: NOW)
    assert (report.polls, report.events, source.acknowledged) == (5, 5, 5)
    stop = Backlog("ami", *(PollResult(events=[fault(f"F{i}", AREA)]) for i in range(5)))
    assert Poller(store, Metrics()).run_once(stop, lambda: NOW, lambda: False).polls == 1


# -- AmiScreener --------------------------------------------------------------------------------


def meter_off(meter: str, at: datetime) -> OutageEvent:
    return OutageEvent(source="ami-mqtt", event_id=f"{meter}:off:{compact_time(at)}",
                       kind="fault", status="active", signal="dead", start=at,
                       transformers=(AREA,), area_text=device_ref("meter", meter))


def test_screener_holds_an_area_outage_until_it_lasted_then_releases_it(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    screener = AmiScreener(store, demo, config(tmp_path), Metrics(), {"ami-mqtt"},
                           threading.Lock())
    screener.load(NOW)
    reports = [meter_off(f"M-{AREA}-00{i}", NOW + timedelta(seconds=i)) for i in range(1, 6)]
    assert all(screener.is_observation(r) for r in reports)
    assert not screener.is_observation(fault("X", AREA))
    counts = screener.ingest("ami-mqtt", PollResult(events=reports), NOW)
    assert counts.inserted == 5 and store.unprocessed_events() == []  # screened, not queued
    assert screener.run_once(NOW + timedelta(seconds=10)) == 0  # not yet lasted a minute
    assert screener.run_once(NOW + timedelta(minutes=3)) == 1
    released = store.unprocessed_events()
    assert [(s.event.source, s.event.transformers) for s in released] == [(AMI_SOURCE, (AREA,))]


def test_screener_catches_up_with_reports_stored_after_its_saved_state(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    cfg = config(tmp_path)
    first = AmiScreener(store, demo, cfg, Metrics(), {"ami-mqtt"}, threading.Lock())
    first.load(NOW)
    first.save(NOW)
    reports = [meter_off(f"M-{AREA}-00{i}", NOW + timedelta(seconds=i)) for i in range(1, 6)]
    first.ingest("ami-mqtt", PollResult(events=reports), NOW)  # state not saved after this
    again = AmiScreener(store, demo, cfg, Metrics(), {"ami-mqtt"}, threading.Lock())
    again.load(NOW + timedelta(seconds=30))
    assert again.run_once(NOW + timedelta(minutes=3)) == 1


# -- IncidentProcessor (as the operator CLI builds it) ------------------------------------------


def test_processor_folds_events_and_takes_an_operator_step(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    c = core(tmp_path, store, demo)
    store.ingest("feed", PollResult(events=[fault("A", AREA)]), NOW)
    assert c.processor.run_once(NOW).processed == 1
    [row] = store.load_incidents(open_only=True)
    later = NOW + timedelta(hours=1)
    inc = c.processor.operator_restore(row["id"], "operator:王工", None, None, now=later)
    assert inc.status == "restored"
    assert [e["stage"] for e in store.incident_log(row["id"])][-1] == "restored"
    assert store.unprocessed_events() == []


def test_processor_quarantines_an_event_that_keeps_failing_and_goes_on(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    def broken(topology: Topology, evidence: Any) -> Any:
        raise RuntimeError("estimator bug")

    c = core(tmp_path, store, demo, estimator=broken)
    store.ingest("feed", PollResult(events=[fault("A", AREA)]), NOW)
    for _ in range(3):
        c.processor.run_once(NOW)
    assert store.unprocessed_events() == []
    assert "processing failed 3 times" in store.quarantined()[0]["reason"]
    assert c.processor.run_once(NOW).processed == 0


# -- LifecycleClock and ReportJob ---------------------------------------------------------------


def test_clock_alerts_each_failed_template_once_and_sets_the_storm_gauge(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    c = core(tmp_path, store, demo)
    metrics = Metrics()
    clock = LifecycleClock(c.lifecycle, store, metrics)
    failure = TemplateFailure("liaison_outage", "/etc/t/liaison_outage.zh.j2:1", "'x' is undefined",
                              "INC-1")
    clock.template_failed(failure)
    clock.template_failed(failure)
    store.kv_set(STORM_KEY, {"declared": True}, NOW)
    report = clock.run_once(NOW)
    assert (report.storm, report.template_alerts) == (True, 1)
    assert metrics.registry.get_sample_value("outage_sentinel_storm_declared") == 1
    assert clock.run_once(NOW).template_alerts == 0
    command = [m for m in store.messages() if m.audience == "command"]
    assert len(command) == 1 and "liaison_outage" in command[0].body


def test_report_job_queues_the_daily_report_once(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    job = ReportJob(core(tmp_path, store, demo).lifecycle)
    assert job.run_once(NOW) >= 1
    assert job.run_once(NOW) == 0
