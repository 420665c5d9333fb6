"""Region sharding on the local PostgreSQL: one province, one feed, split between 1, 2 and 4
regions, each region's leader a process of its own (as on separate hosts).

    .venv/bin/python benchmarks/region_bench.py              # 40 feeders, 3,000 events
    .venv/bin/python benchmarks/region_bench.py --quick      # 20 feeders, 800 events

Each region's process does what its daemon's leader does with a poll: keeps its part of the
whole feed (``RegionScope``), stores it, and folds it into incidents and notices
(``IncidentProcessor``), in polls of ``--batch`` events. Channels are left out (their latency
is the services'). Every configuration runs on a fresh schema of the same database, and one
region serving the whole province is the baseline measured in the same run.

Scenarios, all reported (the last three are ones the sharding does not help or assume):

* ``uniform``  — faults spread evenly over every feeder;
* ``hot``      — 80 % of the faults on the first region's feeders (a storm hits one county);
* ``spanning`` — every fifth record names transformers on two feeders of different regions;
* ``stray``    — every fifth record names a feeder and areas the bundle does not hold (every
  region keeps it: it is processed once per region).

Printed per scenario and region count: wall time from the first poll to the last region done,
events per second over the whole province, the ratio to one region, each region's events, and
the p50/p99 of one poll's store + process time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synth import write_province  # noqa: E402
from outage_sentinel.assembly import build_core  # noqa: E402
from outage_sentinel.config import Config  # noqa: E402
from outage_sentinel.events import OutageEvent, PollResult  # noqa: E402
from outage_sentinel.logs import configure  # noqa: E402
from outage_sentinel.metrics import Metrics  # noqa: E402
from outage_sentinel.region import RegionScope, resolve_region  # noqa: E402
from outage_sentinel.store import Store  # noqa: E402
from outage_sentinel.topology import Topology, load_bundle  # noqa: E402

PG = os.environ.get("OUTAGE_SENTINEL_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 7, 14, 8, 0, tzinfo=UTC)
SCENARIOS = ("uniform", "hot", "spanning", "stray")


def regions_of(feeders: list[str], n: int) -> list[list[str]]:
    """``feeders`` in ``n`` contiguous groups."""
    size = -(-len(feeders) // n)
    return [feeders[i:i + size] for i in range(0, len(feeders), size)]


def feed(topology: Topology, scenario: str, count: int, n_regions: int, seed: int
         ) -> list[OutageEvent]:
    """``count`` fault records of ``scenario`` (deterministic)."""
    rng = random.Random(seed)
    by_feeder: dict[str, list[str]] = {}
    for t in topology.transformers:
        by_feeder.setdefault(topology.feeder_of(t), []).append(t)
    feeders = sorted(by_feeder)
    first = regions_of(feeders, max(n_regions, 4))[0]
    out: list[OutageEvent] = []
    for i in range(count):
        pool = first if scenario == "hot" and rng.random() < 0.8 else feeders
        feeder = rng.choice(pool)
        areas = rng.sample(by_feeder[feeder], min(3, len(by_feeder[feeder])))
        if scenario == "spanning" and i % 5 == 0:
            other = feeders[(feeders.index(feeder) + len(feeders) // 2) % len(feeders)]
            areas += rng.sample(by_feeder[other], 2)
            feeder_ref: str | None = None
        elif scenario == "stray" and i % 5 == 0:
            feeder_ref, areas = f"XX{i}", [f"T-XX-{i}"]
        else:
            feeder_ref = feeder
        out.append(OutageEvent(source="feed", event_id=f"E{i}", kind="fault", status="active",
                               start=T0 + timedelta(seconds=i), feeder=feeder_ref,
                               transformers=tuple(areas)))
    return out


def config() -> Config:
    return Config.model_validate({
        "sources": [{"name": "feed", "type": "file_drop", "directory": "in"}],
        "channels": {"sms": {"type": "file", "path": "sink.jsonl"}},
        "localisation": {"county_context": True}})


def run_region(args: tuple[str, str, list[str], list[OutageEvent], int, Any, Any]
               ) -> dict[str, Any]:
    """One region's leader: keep, store and process the feed in polls; its timings."""
    url, name, feeders, events, batch, bundle, start = args
    configure(level="ERROR", fmt="console")
    topology = load_bundle(bundle)
    region = resolve_region(name, [], feeders, topology)
    store = Store(url, region=name)
    store.migrate()
    core = build_core(config(), store, topology, metrics=Metrics(), clock=lambda: T0)
    core.processor.use_topology(topology, core.planner, region.feeders)
    scope = RegionScope(region, topology)
    start.wait()  # every region loaded: they start together
    began = time.perf_counter()
    polls: list[float] = []
    kept_total = 0
    for i in range(0, len(events), batch):
        t = time.perf_counter()
        kept, _left = scope.keep(PollResult(events=events[i:i + batch]))
        store.ingest("feed", kept, T0)
        core.processor.process(T0 + timedelta(seconds=i))
        polls.append(time.perf_counter() - t)
        kept_total += len(kept.events)
    ended = time.perf_counter()
    notices = store.outbox_counts().get("pending", 0)
    store.close()
    return {"region": name, "began": began, "ended": ended, "events": kept_total,
            "notices": notices, "polls": polls}


def one_config(bundle: Path, topology: Topology, scenario: str, n: int, count: int,
               batch: int, seed: int) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"})
    events = feed(topology, scenario, count, n, seed)
    groups = regions_of(sorted(topology.feeder_ids), n)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(len(groups))
        with ctx.Pool(len(groups)) as pool:
            results = pool.map(run_region, [
                (url.render_as_string(hide_password=False), f"r{k}" if n > 1 else "default",
                 g, events, batch, bundle, start) for k, g in enumerate(groups)])
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    polls = sorted(p for r in results for p in r["polls"])
    return {"wall": wall, "results": results, "p50": statistics.median(polls),
            "p99": polls[min(len(polls) - 1, int(0.99 * len(polls)))]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100, help="events per poll")
    ap.add_argument("--regions", default="1,2,4")
    args = ap.parse_args()
    feeders, count = (20, 800) if args.quick else (40, 3000)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_province(Path(tmp) / "province", seed=args.seed, feeders=feeders,
                                nodes_per_feeder=400)
        topology = load_bundle(bundle)
        print(f"== province: {feeders} feeders, {len(topology.transformers)} transformer areas, "
              f"{count} records per scenario, polls of {args.batch}; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start; PostgreSQL "
              f"{sa.engine.make_url(PG).host}")
        counts = [int(x) for x in args.regions.split(",")]
        for scenario in SCENARIOS:
            base: float | None = None
            for n in counts:
                r = one_config(bundle, topology, scenario, n, count, args.batch, args.seed)
                rate = sum(x["events"] for x in r["results"]) / r["wall"]
                base = base or rate
                per = " ".join(f"{x['region']}:{x['events']}/{x['notices']}"
                               for x in r["results"])
                print(f"  {scenario:9} regions {n}  wall {r['wall']:6.2f} s  "
                      f"{rate:7.0f} events/s  x{rate / base:4.2f}  poll p50 "
                      f"{r['p50'] * 1000:6.1f} ms p99 {r['p99'] * 1000:6.1f} ms  "
                      f"(events/notices per region: {per})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
