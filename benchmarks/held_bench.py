"""Held "power back" notices at storm size: the clock check's cost (``HeldNotices.release``)
with hundreds of open incidents and tens to hundreds of incidents holding their villages back.

    .venv/bin/python benchmarks/held_bench.py            # 300 feeders x 1000 nodes
    .venv/bin/python benchmarks/held_bench.py --quick    # 100 x 1000

The open incidents are of mixed shapes (single areas, laterals, 5 % whole feeders: the board
benchmark's). A held incident is a restored one whose villages are still dark in another open
incident, so every check finds them held again (the steady state of a storm). Printed: the
check's median time per held count, and its ratio to the floor measured in the same run, one
read and parse of every open incident and the villages they darken (what the check must do at
least once). Before the check read them once per held incident, so its cost grew as held x
floor; it should now stay near one floor whatever the held count.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from board_bench import incidents  # noqa: E402
from synth import write_province  # noqa: E402

from outage_sentinel.config import load_config  # noqa: E402
from outage_sentinel.held_notices import HELD_PREFIX, HeldNotices  # noqa: E402
from outage_sentinel.incidents import Incident, dark_villages  # noqa: E402
from outage_sentinel.lifecycle import incident_columns  # noqa: E402
from outage_sentinel.store import Store  # noqa: E402
from outage_sentinel.topology import load_bundle  # noqa: E402

CONFIG = """
state_dir: {state}
topology: {topology}
sources: [{{name: feed, type: replay, scenario: {scenario}}}]
channels: {{sms: {{type: file, path: {state}/sink.jsonl}}}}
metrics: {{enabled: false}}
"""


def floor_ms(store: Store, topology: object, now: datetime) -> float:
    """One read and parse of the open incidents, and the villages they darken."""
    t0 = time.perf_counter()
    open_incidents = [Incident.from_json(r["state"]) for r in store.load_incidents(open_only=True)]
    dark_villages(open_incidents, now, topology)  # type: ignore[arg-type]
    return (time.perf_counter() - t0) * 1000


def hold(store: Store, ids: list[str], dark: list[str], now: datetime) -> None:
    """Restore ``ids`` and have each hold back a village dark in another open incident."""
    for k, iid in enumerate(ids):
        row = store.get_incident(iid)
        assert row is not None
        inc = replace(Incident.from_json(row["state"]), status="restored", end=now)
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, now))
            store.kv_set_in(conn, HELD_PREFIX + iid, {"villages": [dark[k % len(dark)]]}, now)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    feeders = 100 if args.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        topo_dir = base / "topology"
        write_province(topo_dir, seed=7, feeders=feeders, nodes_per_feeder=1000)
        (base / "feed.jsonl").write_text("", encoding="utf-8")
        (base / "state").mkdir()
        cfg = base / "config.yaml"
        cfg.write_text(CONFIG.format(state=base / "state", topology=topo_dir,
                                     scenario=base / "feed.jsonl"), encoding="utf-8")
        config = load_config(cfg)
        topology = load_bundle(topo_dir)
        store = Store(config.database_url())
        store.migrate()
        ids, core = incidents(topology, store, config, feeders, seed=3)
        now = datetime.now(UTC)
        rng = random.Random(5)
        rng.shuffle(ids)
        held_ids, open_ids = ids[:feeders // 2], ids[feeders // 2:]
        dark = sorted(v for iid in open_ids
                      if (row := store.get_incident(iid)) is not None
                      for v in Incident.from_json(row["state"]).estimate.villages)
        checker = HeldNotices(core.lifecycle)
        print(f"held-notice check: {feeders} feeders x 1000 nodes, {len(open_ids)} open "
              f"incidents darkening {len(set(dark))} villages")
        done = 0
        for count in (1, 10, len(held_ids)):
            hold(store, held_ids[done:count], dark, now)
            done = count
            floors = [floor_ms(store, topology, now) for _ in range(5)]
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                told = checker.release(now)
                runs.append((time.perf_counter() - t0) * 1000)
                assert told == 0, "a held village was released though still dark"
            f, r = statistics.median(floors), statistics.median(runs)
            print(f"  {count:4d} held: check {r:8.1f} ms median; floor {f:7.1f} ms; "
                  f"ratio {r / f:5.2f} (one read per held incident would be ~{count}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
