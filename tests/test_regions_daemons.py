"""Two regions of the demo county on one PostgreSQL, as subprocesses: north (马集变, two
nodes: a leader and a standby) and south (城关变 and 柳河变, one node). Every node polls the same
province-wide feed; each region keeps and notifies what happens on its own feeders, an outage
spanning both is split between them, a record no feeder of the bundle holds is kept by both,
and every notice reaches the shared webhook exactly once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from outage_sentinel.region import resolve_region
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT, make_config, start_daemon, stop, wait_for
from tests.test_ha import WebhookSink

pytestmark = pytest.mark.slow

REGIONS = {"north": ["马集变"], "south": ["城关变", "柳河变"]}
NODES = {"north-a": "north", "north-b": "north", "south-a": "south"}


def record(at: int, event_id: str, feeder: str | None, transformers: list[str], *,
           status: str = "active", kind: str = "fault") -> dict[str, Any]:
    return {"at": at, "event_id": event_id, "kind": kind, "status": status,
            "start_offset": -120, "etr_offset": 3600, "feeder": feeder, "device": None,
            "transformers": transformers, "area_text": "", "cause": "线路故障"}


def province_feed(path: Path) -> Path:
    north = [f"T-MJ01-0{n}" for n in range(20, 26)]
    south = [f"T-LH01-0{n}" for n in range(14, 20)]
    span = ["T-MJ02-001", "T-MJ02-002", "T-CG01-001", "T-CG01-002"]
    rows = [record(0, "N1", "MJ01", north), record(0, "S1", "LH01", south),
            record(5, "SPAN", None, span, kind="planned"),
            record(5, "STRAY", "XX99", ["T-XX-999"]),
            record(10, "N1", "MJ01", north, status="restored"),
            record(15, "S1", "LH01", south, status="restored")]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def node_config(tmp: Path, node: str, pg_url: str, feed: Path, hook: str) -> Path:
    region = NODES[node]
    (tmp / node).mkdir()
    sources = [{"name": "feed", "type": "replay", "interval_seconds": 0.5,
                "scenario": str(feed), "speed": 10.0}]
    path = make_config(tmp / node, sources=sources, database={"url": pg_url},
                       ha={"enabled": True, "node": node, "lease_seconds": 3},
                       region={"name": region, "substations": REGIONS[region]},
                       board={"enabled": False})
    data = yaml.safe_load(path.read_text("utf-8"))
    data["channels"] = {n: {"type": "webhook", "url": hook, "timeout_seconds": 5}
                        for n in data["channels"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def province(tmp_path: Path, pg_url: str) -> Iterator[tuple[sa.Engine, WebhookSink]]:
    sink = WebhookSink()
    feed = province_feed(tmp_path / "feed.jsonl")
    procs = [start_daemon(node_config(tmp_path, n, pg_url, feed, sink.url)) for n in NODES]
    engine = sa.create_engine(pg_url)
    try:
        yield engine, sink
    finally:
        for node, proc in zip(NODES, procs, strict=True):
            if proc.poll() is not None:  # it should have run until stopped: say why it did not
                print(node, proc.returncode, proc.stderr.read().decode()[-2000:] if proc.stderr
                      else "")
            stop(proc)
        engine.dispose()
        sink.server.shutdown()


def rows(engine: sa.Engine, sql: str) -> list[dict[str, Any]]:
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql))]
    except sa.exc.SQLAlchemyError:
        return []  # not migrated yet


def settled(engine: sa.Engine, sink: WebhookSink) -> bool:
    events = rows(engine, "SELECT region, processed FROM events")
    outbox = rows(engine, "SELECT status FROM outbox")
    restored = rows(engine, "SELECT id FROM incidents WHERE status <> 'active' "
                            "AND kind = 'fault'")
    return (len(events) >= 8 and all(e["processed"] for e in events) and len(restored) >= 2
            and bool(outbox) and all(o["status"] == "sent" for o in outbox)
            and len(sink.keys) >= len(outbox))


def test_two_regions_share_one_database_and_one_feed(province: tuple[sa.Engine, WebhookSink]
                                                     ) -> None:
    engine, sink = province
    assert wait_for(lambda: settled(engine, sink), timeout=90, step=0.5), \
        (rows(engine, "SELECT region, event_id, processed FROM events"),
         rows(engine, "SELECT region, status, count(*) FROM outbox GROUP BY region, status"))
    demo = load_bundle(ROOT / "topology")
    feeders = {r: resolve_region(r, s, [], demo).feeders for r, s in REGIONS.items()}

    kept: dict[str, set[str]] = {}
    for e in rows(engine, "SELECT region, event_id, transformers FROM events"):
        kept.setdefault(e["region"], set()).add(e["event_id"])
        if e["event_id"] == "SPAN":
            region_feeders = feeders[e["region"]]
            assert region_feeders is not None
            assert all(demo.feeder_of(t) in region_feeders for t in e["transformers"])
    assert kept == {"north": {"N1", "SPAN", "STRAY"}, "south": {"S1", "SPAN", "STRAY"}}

    incidents = rows(engine, "SELECT id, region, feeder FROM incidents")
    for inc in incidents:
        assert inc["id"].startswith(f"INC-{inc['region']}-")
        assert inc["feeder"] in (feeders[inc["region"]] or ()) or inc["feeder"] == "?"
    # The stray record: an unplaced incident in each region, for each command centre to see.
    assert sorted(i["region"] for i in incidents if i["feeder"] == "?") == ["north", "south"]

    outbox = rows(engine, "SELECT incident_id, revision, recipient, purpose, region FROM outbox")
    keys = Counter(f"{o['incident_id']}/{o['revision']}/{o['recipient']}/{o['purpose']}"
                   for o in outbox)
    assert max(keys.values()) == 1
    delivered = Counter(sink.keys)
    assert set(delivered) == set(keys) and max(delivered.values()) == 1  # once each

    # The villages told of the spanning outage: each by one region only.
    span = rows(engine, "SELECT o.region, o.recipient FROM outbox o JOIN incidents i "
                        "ON i.id = o.incident_id WHERE i.kind = 'planned' "
                        "AND o.audience = 'liaison'")
    by_recipient: dict[str, set[str]] = {}
    for o in span:
        by_recipient.setdefault(o["recipient"], set()).add(o["region"])
    assert by_recipient and all(len(r) == 1 for r in by_recipient.values())
    assert {r for rs in by_recipient.values() for r in rs} == {"north", "south"}

    leases = {r["region"]: r["holder"] for r in rows(engine, "SELECT region, holder FROM leases")}
    assert set(leases) == {"north", "south"}
    assert leases["north"] in ("north-a", "north-b") and leases["south"] == "south-a"
    cursors = {r["key"] for r in rows(engine, "SELECT key FROM kv WHERE key LIKE '%cursor:%'")}
    assert cursors == {"north/cursor:feed", "south/cursor:feed"}
