"""Region sharding: what a region keeps of a province-wide feed, what its store sees of a
shared database, incident ids that never collide, and channel rate limits that count every
region's requests. The daemons of two regions on one PostgreSQL run in
``test_regions_daemons.py``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from outage_sentinel.channels.common import robot_rate_key
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.cli import main as cli_main
from outage_sentinel.config import Config, ConfigError, load_config
from outage_sentinel.delivery import Deliverer
from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.ratelimit import RateLimit, RateLimiter
from outage_sentinel.region import (
    Region,
    RegionError,
    RegionScope,
    resolve_region,
    substation_feeders,
)
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.shared_limits import WHOLE_STATE_KEY
from outage_sentinel.store import MIGRATIONS, Store, events_t, schema_version_t
from outage_sentinel.topology import Topology, load_bundle
from tests.conftest import T0
from tests.e2e_helpers import ROOT, make_config
from tests.test_delivery_isolation import Sink, notice
from tests.test_store import event, outbox_row

DEMO = ROOT / "topology"


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(DEMO)


def fault(event_id: str, transformers: tuple[str, ...], feeder: str | None = None,
          **kw: Any) -> OutageEvent:
    return event(event_id, feeder=feeder, transformers=transformers, area_text="", **kw)


# -- which feeders a region serves ---------------------------------------------------------


def test_a_region_is_its_substations_feeders_plus_the_feeders_named(demo: Topology) -> None:
    stations = substation_feeders(demo)
    assert set(stations) == {"马集变", "城关变", "柳河变"}
    region = resolve_region("north", ["马集变"], ["LH01"], demo)
    assert region.feeders == frozenset(stations["马集变"] | {"LH01"})
    assert resolve_region("default", [], [], demo) == Region("default", None)


def test_names_the_bundle_lacks_are_refused_naming_the_key(demo: Topology) -> None:
    with pytest.raises(RegionError) as info:
        resolve_region("north", ["马集变", "北山变"], ["MJ01", "XX99"], demo)
    text = str(info.value)
    assert "region.substations[1]: no substation '北山变'" in text
    assert "region.feeders[1]: no feeder 'XX99'" in text
    assert "'马集变'" in text  # what the bundle has, to pick from


def test_check_and_run_report_a_region_the_bundle_lacks(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    config = make_config(tmp_path, region={"name": "north", "substations": ["北山变"]})
    assert cli_main(["--config", str(config), "check"]) != 0
    assert "region.substations[0]: no substation '北山变'" in capsys.readouterr().err
    assert cli_main(["--config", str(config), "run", "--once"]) == 3  # a config problem
    assert "region.substations[0]" in capsys.readouterr().err


def test_region_names_are_plain_and_agree_with_the_old_lease_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="region.name"):
        load_config(make_config(tmp_path, region={"name": "north east"}))
    with pytest.raises(ConfigError, match="ha.region 'a' and region.name 'b' differ"):
        load_config(make_config(tmp_path, region={"name": "b"}, ha={"region": "a"}))
    old = load_config(make_config(tmp_path, ha={"region": "county"}))
    assert old.lease_region == "county" and old.region.name == "default"


# -- what a region keeps of a poll -----------------------------------------------------------


def test_a_region_keeps_its_feeders_events_and_leaves_the_others(demo: Topology) -> None:
    north = RegionScope(resolve_region("north", ["马集变"], [], demo), demo)
    mine = fault("N", ("T-MJ01-020", "T-MJ01-021"), "MJ01")
    theirs = fault("S", ("T-CG05-011",), "CG05")
    by_name = fault("F", (), "10kV马集线")  # a feeder by its name only
    kept, left = north.keep(PollResult(events=[mine, theirs, by_name], cursor={"at": 1}))
    assert [e.event_id for e in kept.events] == ["N", "F"] and left == 1
    assert kept.cursor == {"at": 1}  # the whole poll is acknowledged and its cursor kept
    whole = RegionScope(Region(), demo)
    result = PollResult(events=[mine, theirs])
    assert whole.keep(result) == (result, 0)


def test_an_event_on_two_regions_is_split_between_them(demo: Topology) -> None:
    both = fault("P", ("T-MJ02-001", "T-MJ02-002", "T-CG01-001"), None, kind="planned")
    north = RegionScope(resolve_region("north", ["马集变"], [], demo), demo)
    south = RegionScope(resolve_region("south", ["城关变", "柳河变"], [], demo), demo)
    n, s = north.event(both), south.event(both)
    assert n is not None and n.transformers == ("T-MJ02-001", "T-MJ02-002")
    assert s is not None and s.transformers == ("T-CG01-001",)
    assert n.event_id == s.event_id == "P"  # one record, each region's part of it


def test_an_event_no_feeder_of_the_bundle_holds_is_kept_by_every_region(demo: Topology
                                                                        ) -> None:
    stray = fault("X", ("T-XX-999",), "XX99")
    for stations in (["马集变"], ["城关变"]):
        scope = RegionScope(resolve_region("r", stations, [], demo), demo)
        assert scope.event(stray) is stray  # nothing accepted is lost


# -- one database, two regions ----------------------------------------------------------------


def two_stores(url: str) -> Iterator[tuple[Store, Store]]:
    east, west = Store(url, region="east"), Store(url, region="west")
    east.migrate()
    west.migrate()
    yield east, west
    east.close()
    west.close()


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Store, Store]]:
    yield from two_stores(db_url)


@pytest.fixture
def two_pg(pg_url: str) -> Iterator[tuple[Store, Store]]:
    """Regions share a database on PostgreSQL (SQLite is one node, so one region a file)."""
    yield from two_stores(pg_url)


def test_each_region_sees_only_its_own_events_incidents_outbox_and_state(
        two_pg: tuple[Store, Store]) -> None:
    east, west = two_pg
    poll = PollResult(events=[event("E1")], cursor={"n": 1},
                      quarantined=[Quarantined("feed", "bad date", "{}")])
    assert east.ingest("feed", poll, T0).inserted == 1
    assert [q["reason"] for q in east.quarantined()] == ["bad date"]
    assert west.quarantined() == []
    assert west.ingest("feed", PollResult(events=[event("E1")], cursor={"n": 2}), T0).inserted == 1
    assert east.ingest("feed", poll, T0).inserted == 0  # a duplicate within a region
    assert [e.event.event_id for e in east.unprocessed_events()] == ["E1"]
    assert east.kv_get("cursor:feed") == {"n": 1} and west.kv_get("cursor:feed") == {"n": 2}
    with east.transaction() as conn:
        east.save_incident_in(conn, incident_row("INC-east-20260101-0001"))
        east.enqueue_in(conn, [outbox_row(incident_id="INC-east-20260101-0001")], T0)
    assert [r["id"] for r in east.load_incidents()] == ["INC-east-20260101-0001"]
    assert west.load_incidents() == [] and west.incident_counts() == {}
    assert len(east.due_messages(T0)) == 1 and west.due_messages(T0) == []
    assert west.outbox_counts() == {} and east.outbox_counts() == {"pending": 1}
    east.kv_set("storm", {"declared": True}, T0)
    assert west.kv_get("storm") is None
    east.kv_set("rate:wecom/g1", {"times": [1.0]}, T0)  # shared by every region
    assert west.kv_get("rate:wecom/g1") == {"times": [1.0]}


def incident_row(incident_id: str) -> dict[str, Any]:
    return {"id": incident_id, "feeder": "F1", "kind": "fault", "status": "active",
            "revision": 1, "start": T0, "state": {}, "created_at": T0, "updated_at": T0}


def test_a_database_of_an_earlier_version_keeps_its_data_in_the_default_region(
        db_url: str) -> None:
    """Version 8 -> 9: rows made before regions belong to ``default``; on PostgreSQL the
    event's uniqueness becomes per region."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        schema_version_t.create(conn)
        for version, step in enumerate(MIGRATIONS[:8], start=1):
            step(conn)
            conn.execute(schema_version_t.insert().values(version=version, applied_at=T0))
        conn.execute(sa.text(
            "INSERT INTO events (source, event_id, revision, kind, status, signal, start, "
            "transformers, area_text, cause, received_at, processed) VALUES ('feed', 'E1', "
            "'r1', 'fault', 'active', 'notice', :t, '[]', '', '', :t, false)"),
            {"t": T0.replace(tzinfo=None)})
    engine.dispose()
    store = Store(db_url)
    assert store.migrate() == len(MIGRATIONS) == 14
    assert [e.event.event_id for e in store.unprocessed_events()] == ["E1"]
    if store.dialect == "postgresql":
        other = Store(db_url, region="west")
        assert other.ingest("feed", PollResult(events=[event("E1", revision="r1")]),
                            T0).inserted == 1
        other.close()
    with store.engine.connect() as conn:
        regions = conn.execute(sa.select(events_t.c.region)).scalars().all()
    assert sorted(regions)[0] == "default"
    store.close()


def test_incident_ids_carry_the_region(two: tuple[Store, Store], grid: Topology) -> None:
    from outage_sentinel.assembly import build_core
    from outage_sentinel.metrics import Metrics

    east, _west = two
    config = Config.model_validate(minimal_config())
    core = build_core(config, east, grid, metrics=Metrics(), clock=lambda: T0)
    east.ingest("feed", PollResult(events=[event("E1", transformers=("T1",))]), T0)
    assert core.processor.process(T0) == 1
    (row,) = east.load_incidents()
    assert row["id"].startswith("INC-east-") and row["region"] == "east"


def minimal_config() -> dict[str, Any]:
    return {"sources": [{"name": "feed", "type": "file_drop", "directory": "in"}],
            "channels": {"wecom": {"type": "file", "path": "sink.jsonl"}}}


# -- rate limits are the service's, so every region counts -------------------------------------


def test_two_regions_sending_to_one_robot_never_exceed_its_limit_together(pg_url: str) -> None:
    """Two regions' leaders (each its own store and deliverer) send two notices each to one
    robot group at once; the robot allows 3 a minute, and together they send 3, not 4."""
    sink = Sink()
    stores = [Store(pg_url, region=r) for r in ("east", "west")]
    for s in stores:
        s.migrate()
    try:
        limit = (RateLimit(3, 60.0),)
        delivers = []
        for i, store in enumerate(stores):
            channel = WeComChannel("wecom", robots={"g1": "tok-g1"}, base_url=sink.url,
                                   timeout=5, rate_limits=limit)
            delivers.append(Deliverer(store, {"wecom": channel}, RetryPolicy(),
                                      workers_per_channel=2))
            with store.transaction() as conn:
                store.enqueue_in(conn, [notice("wecom", "g1", 10 * i + n) for n in range(2)],
                                 datetime.now(UTC))
        barrier = threading.Barrier(2)

        def run(d: Deliverer) -> None:
            barrier.wait()
            d.run_once(datetime.now(UTC))

        threads = [threading.Thread(target=run, args=(d,)) for d in delivers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for d in delivers:
            d.close()
        assert len(sink.received) == 3
        robot = f"wecom/{robot_rate_key('tok-g1')}"
        saved = delivers[0].limits.saved([robot])
        assert len(saved.history(robot)) == 3
        statuses = sorted(r.status for s in stores for r in s.messages())
        assert statuses == ["pending", "sent", "sent", "sent"]  # the fourth waits its turn
    finally:
        sink.close()
        for s in stores:
            s.close()


def test_a_limiter_saved_whole_by_an_earlier_version_is_imported(store: Store) -> None:
    old = RateLimiter()
    now = datetime.now(UTC)
    for _ in range(3):
        old.record("wecom/g1", now, (RateLimit(3, 60.0),))
    store.kv_set(WHOLE_STATE_KEY, old.to_state(), now)
    d = Deliverer(store, {}, RetryPolicy(), clock=lambda: now)
    assert len(d.limits.saved(["wecom/g1"]).history("wecom/g1")) == 3
    assert store.kv_get(WHOLE_STATE_KEY) is None
    assert not d.limits.allow(["wecom/g1"], now + timedelta(seconds=1),
                              (RateLimit(3, 60.0),)).ok
