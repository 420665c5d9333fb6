"""Board benchmark: the command-centre board served by uvicorn over a real SQLite store, with
500 active incidents on the 1,000,000-node synthetic province (no coordinates: the schematic
layout), and the demo county (coordinates).

    .venv/bin/python benchmarks/board_bench.py            # 1000 feeders x 1000 nodes
    .venv/bin/python benchmarks/board_bench.py --quick    # 100 x 1000 (100,000 nodes)

It prints, for each scenario:

* server time of the overview, an incident page and the page shell (median, p99 over HTTP on
  loopback), each also as a ratio to ``/healthz`` measured in the same run (the floor of one
  request through the stack);
* map payload bytes: the county view, one feeder's detail, and the demo county whole;
* the time from a commit (by another connection, as the daemon or the CLI would) to the change
  reaching each of 50 connected pages (Server-Sent Events), median and max over 5 commits.

The incidents are of mixed shapes the board does not assume: single transformer areas, whole
laterals, and 5 % whole-feeder outages (a thousand areas and more), with reopened links, on
feeders spread over the province. Targets (issue 15): pages <= 200 ms p99; map <= 1 MB for the
demo county and <= 5 MB at a million nodes; a change reaches all 50 pages <= 2 s after commit.
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synth import write_province  # noqa: E402

from outage_sentinel.assembly import build_core  # noqa: E402
from outage_sentinel.board import access  # noqa: E402
from outage_sentinel.board.geo import map_payload  # noqa: E402
from outage_sentinel.board.serve import BoardServer, build  # noqa: E402
from outage_sentinel.config import load_config  # noqa: E402
from outage_sentinel.events import OutageEvent, PollResult  # noqa: E402
from outage_sentinel.metrics import Metrics  # noqa: E402
from outage_sentinel.store import Store  # noqa: E402
from outage_sentinel.topology import Topology, load_bundle  # noqa: E402

PASSWORD = "benchmark password"
CONFIG = """
state_dir: {state}
topology: {topology}
sources: [{{name: feed, type: replay, scenario: {scenario}}}]
channels: {{sms: {{type: file, path: {state}/sink.jsonl}}}}
board: {{enabled: true, port: {port}}}
metrics: {{enabled: false}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def incidents(topology: Topology, store: Store, config: object, count: int, seed: int
              ) -> tuple[list[str], Any]:
    """Up to ``count`` fault incidents of mixed sizes, one per feeder (events on one feeder
    within the correlation window are one incident), folded by the processor."""
    rng = random.Random(seed)
    core = build_core(config, store, topology, metrics=Metrics(),  # type: ignore[arg-type]
                      clock=lambda: datetime.now(UTC))
    feeders = rng.sample(topology.feeders, min(count, len(topology.feeders)))
    by_feeder: dict[str, list[str]] = {}
    for t in topology.transformers:
        by_feeder.setdefault(topology.feeder_of(t), []).append(t)
    now = datetime.now(UTC)
    events = []
    for k, feeder in enumerate(feeders):
        areas = by_feeder.get(feeder, [])
        shape = rng.random()
        if shape < 0.05:
            chosen = areas  # the whole feeder
        elif shape < 0.5:
            start = rng.randrange(max(1, len(areas) - 20))
            chosen = areas[start:start + rng.randint(5, 20)]
        else:
            chosen = [rng.choice(areas)] if areas else []
        events.append(OutageEvent(
            source="bench", event_id=f"B{k}", kind="fault", status="active", signal="notice",
            start=now - timedelta(minutes=rng.randint(1, 200)), feeder=feeder,
            transformers=tuple(chosen), area_text="bench"))
    for i in range(0, len(events), 50):
        store.ingest("bench", PollResult(events=events[i:i + 50]), now)
        core.processor.process(datetime.now(UTC))
    return [r["id"] for r in store.load_incidents(open_only=True)], core


def timed(session: requests.Session, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, timeout=60)
        r.raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(name: str, ms: list[float], floor: float) -> None:
    med, p99 = statistics.median(ms), pct(ms, 0.99)
    print(f"  {name:28} median {med:7.1f} ms  p99 {p99:7.1f} ms  "
          f"(x{med / floor:5.1f} of /healthz)")


def fanout(url: str, cookies: dict[str, str], store: Store, clients: int = 50,
           rounds: int = 5) -> list[float]:
    """Seconds from a commit to each of ``clients`` streams receiving its change event."""
    got: list[list[float]] = [[] for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    stop = threading.Event()

    def listen(k: int) -> None:
        try:
            with requests.get(f"{url}/api/events", cookies=cookies, stream=True,
                              timeout=60) as r:
                first = True
                for line in r.iter_lines(decode_unicode=True):
                    if first and line.startswith("event: hello"):
                        first = False
                        ready.wait()
                    elif line.startswith("event: change"):
                        got[k].append(time.perf_counter())
                    if stop.is_set():
                        return
        except requests.RequestException:
            if not stop.is_set():
                raise  # the server closes open streams when it stops: only then expected

    threads = [threading.Thread(target=listen, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    delays: list[float] = []
    for i in range(rounds):
        time.sleep(1.0)  # earlier commits (the benchmark's own steps) have been announced
        t0 = time.perf_counter()
        store.kv_set("bench:tick", {"i": i}, datetime.now(UTC))  # another writer commits

        def after(g: list[float], t0: float = t0) -> float | None:
            return next((t for t in g if t >= t0), None)

        deadline = time.time() + 10
        while any(after(g) is None for g in got) and time.time() < deadline:
            time.sleep(0.01)
        seen = [after(g) for g in got]
        delays += [t - t0 for t in seen if t is not None]
        missing = sum(1 for t in seen if t is None)
        if missing:
            print(f"  !! {missing} of {clients} pages did not get commit {i} within 10 s")
    stop.set()
    return delays


def scenario(title: str, topology_dir: Path, n_incidents: int, seed: int) -> None:
    print(f"\n== {title}")
    t0 = time.perf_counter()
    topology = load_bundle(topology_dir)
    print(f"  nodes {len(topology.parent):,}, transformer areas {len(topology.transformers):,}, "
          f"feeders {len(topology.feeders):,} (loaded in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        state, port = Path(tmp), free_port()
        path = state / "config.yaml"
        path.write_text(CONFIG.format(state=state, topology=topology_dir, port=port,
                                      scenario=ROOT / "fixtures/scenarios/demo.jsonl"))
        config = load_config(path)
        store = Store(config.database_url())
        store.migrate()
        t0 = time.perf_counter()
        ids, core = incidents(topology, store, config, n_incidents, seed)
        print(f"  {len(ids)} active incidents folded in {time.perf_counter() - t0:.1f} s")
        store.add_user("bench", "operator", access.hash_password(PASSWORD), datetime.now(UTC))
        server = BoardServer(build(config, store, lambda: topology))
        server.start()
        url = f"http://127.0.0.1:{port}"
        session = requests.Session()
        for _ in range(100):
            try:
                session.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        page = session.get(f"{url}/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token, "no sign-in token on /login"
        session.post(f"{url}/login", data={"user": "bench", "password": PASSWORD,
                                           "csrf": token.group(1)},
                     allow_redirects=False).raise_for_status()
        try:
            measure(session, url, ids, store, seed, core)
        finally:
            server.stop()
            store.close()


def measure(session: requests.Session, url: str, ids: list[str], store: Store,
            seed: int, core: Any) -> None:
    rng = random.Random(seed)
    floor = statistics.median(timed(session, f"{url}/healthz", 50))
    print(f"  /healthz (the floor)         median {floor:7.1f} ms")
    cold = timed(session, f"{url}/api/overview", 1)[0]
    print(f"  overview, first after start  {cold:7.1f} ms (every incident's state decoded)")
    report("overview (/api/overview)", timed(session, f"{url}/api/overview", 30), floor)
    changed = []
    for _ in range(10):  # a storm: 20 incidents change between two refreshes
        for iid in rng.sample(ids, min(20, len(ids))):
            core.lifecycle.ack(iid, "operator:bench", "bench")
        changed += timed(session, f"{url}/api/overview", 1)
    report("overview, 20 changed", changed, floor)
    pages = []
    for _ in range(100):
        pages += timed(session, f"{url}/api/incidents/{rng.choice(ids)}", 1)
    report("incident page (/api/incidents)", pages, floor)
    report("page shell (/)", timed(session, f"{url}/", 30), floor)
    t0 = time.perf_counter()
    county = session.get(f"{url}/api/map", timeout=300).content
    first = time.perf_counter() - t0
    feeder = session.get(f"{url}/api/overview").json()["incidents"][0]["feeder"]
    detail = session.get(f"{url}/api/map?feeders={feeder}", timeout=120).content
    print(f"  map: view {len(county) / 1e6:.2f} MB (first request {first:.1f} s, then cached), "
          f"one feeder's detail {len(detail) / 1e3:.0f} kB")
    delays = fanout(url, dict(session.cookies), store)
    if delays:
        print(f"  commit -> 50 pages: median {statistics.median(delays):.2f} s, "
              f"max {max(delays):.2f} s over {len(delays)} deliveries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 nodes instead of 1M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="/tmp/outage-sentinel-bench",
                        help="where generated bundles are cached")
    args = parser.parse_args()
    feeders = 100 if args.quick else 1000
    bundle = Path(args.out) / f"province-{feeders}x1000"
    if not (bundle / "crews.csv").exists():
        write_province(bundle, feeders=feeders, nodes_per_feeder=1000)
    demo = load_bundle(ROOT / "topology")
    whole = len(__import__("json").dumps(map_payload(demo), ensure_ascii=False,
                                         separators=(",", ":")).encode())
    print(f"demo county map (coordinates, whole): {whole / 1e3:.0f} kB")
    scenario("demo county (coordinates), an incident on every feeder", ROOT / "topology", 500,
             args.seed)
    scenario(f"synthetic province {feeders} x 1000 nodes (no coordinates), up to 500 "
             "incidents (one per feeder)", bundle, 500, args.seed)


if __name__ == "__main__":
    main()
