"""AMI storm benchmark: 100,000 meter/terminal events for 2,000 transformer areas through the
local Mosquitto, consumed by the MQTT source, stored (SQLite) and screened.

    .venv/bin/python benchmarks/ami_bench.py                     # one event per MQTT message
    .venv/bin/python benchmarks/ami_bench.py --per-message 50    # head-end batches
    .venv/bin/python benchmarks/ami_bench.py --no-store          # source + screening only
    .venv/bin/python benchmarks/ami_bench.py --daemon            # the daemon's own pipeline:
                                                  # poll, store, screen, incidents
    .venv/bin/python benchmarks/ami_bench.py --daemon --scheduled   # Daemon.run() itself

The storm (deterministic, ``--seed``), replayed in device-time order as fast as the publisher
can go, device times 30 minutes in the past so nothing waits for the momentary hold:

* 600 areas lose power for 10 minutes: terminal off, 50 meters off within 50 s, then terminal
  and meters on — expected 600 ``dead`` + 600 ``alive`` screened outputs;
* 300 areas have a reclosing blip: 50 meters off and back 10 s later — expected nothing;
* 8,800 single meters in the other 1,100 areas drop one by one (70 s apart within an area) —
  expected 8,800 customer-side faults, no area outage.

The consumer behaves like the daemon: poll (``max_batch`` 5,000), commit to the store,
acknowledge, feed the screen; it polls again at once after a full batch, else waits
``--interval`` (the MQTT source's default 1 s). It prints the publish rate, the end-to-end
ingest rate (first publish to last event committed and screened), the time from the last
event published to the screened outputs being final, and resident memory as the run goes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from outage_sentinel.ami import AmiRegistry, AmiScreen, ScreenResult  # noqa: E402
from outage_sentinel.config import MqttSourceConfig  # noqa: E402
from outage_sentinel.sources.mqtt import MqttSource  # noqa: E402
from outage_sentinel.topology import Meter, Topology, topology_from_records  # noqa: E402

AREAS = 2000
METERS_PER_AREA = 50
FEEDERS = 40
OUTAGES, BLIPS = 600, 300


def build_topology() -> Topology:
    """40 feeders x 50 transformer areas; each area a terminal and 50 meters."""
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[str, str]] = []
    per_feeder = AREAS // FEEDERS
    for f in range(FEEDERS):
        fid = f"F{f:02d}"
        nodes.append({"id": f"S{f:02d}", "kind": "source", "name": f"{fid} head", "feeder": fid})
        nodes.append({"id": f"B{f:02d}", "kind": "breaker", "name": f"{fid} CB", "feeder": fid})
        edges.append((f"S{f:02d}", f"B{f:02d}"))
        for s in range(per_feeder // 10):
            fuse = f"FU{f:02d}{s}"
            nodes.append({"id": fuse, "kind": "fuse", "name": fuse, "feeder": fid})
            edges.append((f"B{f:02d}", fuse))
            for k in range(10):
                tx = f"T{f * per_feeder + s * 10 + k:04d}"
                nodes.append({"id": tx, "kind": "transformer", "name": tx, "feeder": fid,
                              "village": "V1", "customers": METERS_PER_AREA})
                edges.append((fuse, tx))
    villages = [{"id": "V1", "name": "V1", "township": "X", "grid": "G", "area_type": "rural"}]
    base = topology_from_records(nodes, edges, villages=villages)
    meters = [Meter(f"{tx}-T", tx, "terminal") for tx in base.transformers]
    meters += [Meter(f"{tx}-M{m:02d}", tx, "meter")
               for tx in base.transformers for m in range(METERS_PER_AREA)]
    return Topology(base.nodes, base.edges, base.villages, base.liaisons, base.crews,
                    base.customers, meters)


def storm(seed: int, t0: datetime, shift: int = 0) -> list[dict[str, Any]]:
    """The 100,000 events, sorted by device time; single-meter faults use meters from
    ``8 * shift`` on (those of earlier rounds are still off)."""
    rng = random.Random(seed)
    areas = [f"T{i:04d}" for i in range(AREAS)]
    rng.shuffle(areas)
    out: list[tuple[float, dict[str, Any]]] = []

    def add(at: float, device: str, code: str, terminal: bool = False) -> None:
        t = (t0 + timedelta(seconds=at)).isoformat()
        key = "terminal_id" if terminal else "meter_id"
        out.append((at, {key: device, "code": code, "time": t}))

    for tx in areas[:OUTAGES]:
        start = rng.uniform(0, 120)
        add(start, f"{tx}-T", "3.26.0.85", terminal=True)
        for m in range(METERS_PER_AREA):
            add(start + rng.uniform(0, 50), f"{tx}-M{m:02d}", "3.26.0.85")
        back = start + 600
        add(back, f"{tx}-T", "3.26.0.216", terminal=True)
        for m in range(METERS_PER_AREA):
            add(back + rng.uniform(0, 30), f"{tx}-M{m:02d}", "3.26.0.216")
    for tx in areas[OUTAGES:OUTAGES + BLIPS]:
        start = rng.uniform(0, 120)
        for m in range(METERS_PER_AREA):
            add(start + rng.uniform(0, 2), f"{tx}-M{m:02d}", "3.26.0.85")
            add(start + 10 + rng.uniform(0, 2), f"{tx}-M{m:02d}", "3.26.0.216")
    singles = 100_000 - len(out)
    rest = areas[OUTAGES + BLIPS:]
    per_area = -(-singles // len(rest))
    n = 0
    for tx in rest:
        base = rng.uniform(0, 60)
        for m in range(per_area):
            if n == singles:
                break
            add(base + 70 * m, f"{tx}-M{(m + 8 * shift) % METERS_PER_AREA:02d}", "3.26.0.85")
            n += 1
    out.sort(key=lambda item: item[0])
    return [e for _, e in out]


def publisher(topic: str, seed: int, t0_iso: str, per_message: int, ready: Any,
              report: Any, tool: str, rate: float, rounds: int) -> None:
    """Child process: publish the storm at QoS 1 as fast as the broker takes it.

    ``tool="mosquitto_pub"`` pipes one JSON line per message into ``mosquitto_pub -l`` (a C
    client, like a head-end's), fed in chunks of 500 paced to ``rate`` events/s (0 = flat out);
    ``paho`` publishes from Python (``per_message`` per message), flat out.
    """
    t0 = datetime.fromisoformat(t0_iso)
    # Round k replays the storm (new seed) an hour of device time after round k-1.
    events = [e for k in range(rounds) for e in storm(seed + k, t0 + timedelta(hours=k), k)]
    if tool == "mosquitto_pub":
        lines = [(json.dumps(e) + "\n").encode() for e in events]
        chunk = 500
        proc = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-t", topic,
                                 "-q", "1", "-M", "1000", "-l"], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        ready.wait()
        started = time.time()
        for i in range(0, len(lines), chunk):
            if rate > 0:
                time.sleep(max(0.0, started + i / rate - time.time()))
            proc.stdin.write(b"".join(lines[i:i + chunk]))
            proc.stdin.flush()
        proc.stdin.close()
        proc.wait()
        report.put((started, time.time(), len(events)))
        return
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    ready.wait()
    started = time.time()
    infos = []
    for i in range(0, len(events), per_message):
        chunk = events[i:i + per_message]
        payload = json.dumps(chunk[0] if per_message == 1 else chunk).encode()
        if len(infos) >= 20000:
            # paho's message ids wrap at 65535: keep the outstanding ones well below that.
            infos[-20000].wait_for_publish(120)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    finished = time.time()
    client.disconnect()
    client.loop_stop()
    report.put((started, finished, len(infos)))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def forget_session(tag: str) -> None:
    """Connect once with a clean start so the broker drops the benchmark's persistent session."""
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{tag}",
                          protocol=mqtt.MQTTv5)
    cleaner.connect("127.0.0.1", 1883, clean_start=True)
    cleaner.disconnect()


def memory_line(rss_start: float, samples: list[tuple[int, float]], step: int) -> str:
    """RSS before the run, every ``step``-th 10k-event sample from 20k on, and the peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"memory: RSS {rss_start:.0f} MB before, "
            + ", ".join(f"{n // 1000}k: {mb:.0f}" for n, mb in samples[1::step])
            + f" MB; peak {peak:.0f} MB")


def host_speed() -> float:
    """µs per iteration of a fixed pure-Python loop (JSON-encode an AMI record and format its
    time), best of five: the speed of this shared host at the time of the run. The figures
    below scale with it (about 4.5 µs when this machine is at its usual speed)."""
    record = {"meterId": "M000123", "eventType": "3.26.0.85", "time": "2026-11-23T07:20:51Z"}
    t = datetime(2026, 11, 23, 7, 20, 51, tzinfo=UTC)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for i in range(20_000):
            json.dumps(record)
            (t + timedelta(microseconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
        best = min(best, (time.perf_counter() - start) / 20_000 * 1e6)
    return best


def daemon_screen_counts(daemon: Any) -> str:
    """The screening outcomes the daemon counted (its metrics), for the daemon modes."""
    def value(name: str) -> int:
        return int(daemon.metrics.registry.get_sample_value(f"outage_sentinel_{name}") or 0)

    return (f"daemon metrics: {value('ami_observations_total')} reports screened, "
            f"{value('ami_momentary_total')} momentary outages dropped (expected "
            f"{BLIPS}/storm), {value('ami_customer_faults_total')} customer-side fault notes "
            f"(single meters off: {100_000 - OUTAGES * 102 - BLIPS * 100} in one storm; later "
            f"rounds add the restorations of earlier ones)")


def watch_scheduled(daemon: Any, source: MqttSource, proc: Any, report: Any, expected: int,
                    t_first: float, rss_start: float, tag: str, tmp: Any) -> int:
    """The daemon as `outage-sentinel run` runs it (scheduler threads, 1 s MQTT poll interval,
    draining full batches), watched from this thread every 50 ms: reports stored from the
    daemon's own counter (bumped after each poll commits), completion by an indexed look for
    any unprocessed row (a COUNT over the events table would itself load the machine)."""
    import threading

    registry = daemon.metrics.registry

    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    runner.start()
    samples: list[tuple[int, float]] = []
    next_sample = 10_000
    t_last_ingest: float | None = None
    t_done = time.time()
    while True:
        time.sleep(0.05)
        stored = int(registry.get_sample_value("outage_sentinel_events_ingested_total",
                                               {"source": source.name}) or 0)
        pending = bool(daemon.store.unprocessed_events(1))
        while stored >= next_sample:
            samples.append((next_sample, rss_mb()))
            next_sample += 10_000
        if stored >= expected and t_last_ingest is None:
            t_last_ingest = time.time()
        if t_last_ingest is not None and not pending:
            t_done = time.time()
            break
        if time.time() - t_first > 600:
            print(f"TIMED OUT: {stored} of {expected} reports stored, unprocessed: {pending}")
            break
    pub = report.get(timeout=60)
    proc.join(10)
    statuses = [r["status"] for r in daemon.store.load_incidents(open_only=False)]
    areas = [(s.event.status,) for s in daemon.store.events_after(0, {"ami"})]
    daemon.stop()
    runner.join(30)
    p_start, p_end, messages = pub
    dead = sum(1 for (st,) in areas if st == "active")
    alive = len(areas) - dead
    outages = OUTAGES * (expected // 100_000)
    last = t_last_ingest or time.time()
    print(f"published: {expected} events in {messages} messages in {p_end - p_start:.2f} s = "
          f"{expected / (p_end - p_start):,.0f} events/s")
    print(f"stored + screened by the running daemon: {expected} events in "
          f"{last - p_start:.2f} s = {expected / (last - p_start):,.0f} events/s end to end")
    print(f"last event published -> incidents updated: {t_done - p_end:.2f} s")
    print(f"incidents: {len(statuses)} ({statuses.count('active')} active, "
          f"{statuses.count('restored')} restored) from {dead} area outages and {alive} "
          f"restorations screened (expected {outages}, {outages})")
    print(daemon_screen_counts(daemon))
    print(memory_line(rss_start, samples, 2))
    forget_session(tag)
    tmp.cleanup()
    return 0 if (dead, alive, t_last_ingest is not None) == (outages, outages, True) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-message", type=int, default=1, help="events per MQTT message")
    ap.add_argument("--publisher", choices=("mosquitto_pub", "paho"), default=None,
                    help="default: mosquitto_pub for 1 event/message when installed, else paho")
    ap.add_argument("--rate", type=float, default=8000.0,
                    help="mosquitto_pub publishing rate, events/s (0 = flat out; beyond what the "
                         "consumer keeps up with, Mosquitto's default max_queued_messages 1000 "
                         "drops messages)")
    ap.add_argument("--no-store", action="store_true", help="skip the SQLite store")
    ap.add_argument("--daemon", action="store_true",
                    help="consume through the daemon (Daemon.poll + Daemon.process: store, "
                         "screening and incident correlation) and time incidents updated")
    ap.add_argument("--scheduled", action="store_true",
                    help="with --daemon: run Daemon.run() itself (its APScheduler jobs poll, "
                         "screen and process) and watch the store from outside")
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval when idle (s)")
    ap.add_argument("--max-batch", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=1,
                    help="replay the storm this many times (memory flatness)")
    args = ap.parse_args()

    t_build = time.perf_counter()
    topology = build_topology()
    registry = AmiRegistry.from_topology(topology)
    rounds = args.rounds
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=rounds - 1, minutes=30)
    expected_events = 100_000 * rounds
    print(f"host speed: {host_speed():.2f} us per reference loop (lower is faster)")
    print(f"topology: {len(topology.transformers)} transformer areas, "
          f"{len(topology.meters)} meters/terminals, built in "
          f"{time.perf_counter() - t_build:.1f} s")

    store = None
    tmp = tempfile.TemporaryDirectory(prefix="ami-bench-")
    if not args.no_store:
        try:
            from outage_sentinel.store import Store
        except ImportError:
            print("store: outage_sentinel.store not available; running without it")
        else:
            store = Store(f"sqlite:///{tmp.name}/bench.db")
            store.migrate()
            print(f"store: SQLite {tmp.name}/bench.db")

    tag = uuid.uuid4().hex[:10]
    topic = f"bench/ami/{tag}"
    cfg = MqttSourceConfig.model_validate({
        "type": "mqtt", "name": "ami-mqtt", "topics": [topic], "client_id": f"bench-{tag}",
        "session_expiry_seconds": 600, "max_batch": args.max_batch})
    source = MqttSource(cfg, registry=registry, default_tz="UTC")
    screen = AmiScreen(registry)
    daemon = None
    if args.daemon:
        from outage_sentinel.config import parse_config
        from outage_sentinel.daemon import Daemon

        config = parse_config({
            "state_dir": tmp.name, "timezone": "UTC",
            "sources": [{"type": "mqtt", "name": "ami-mqtt", "topics": [topic],
                         "client_id": f"bench-{tag}", "max_batch": args.max_batch}],
            "channels": {"sink": {"type": "file", "path": f"{tmp.name}/sink.jsonl"}},
            "metrics": {"enabled": False},
            "log": {"level": "INFO", "file": f"{tmp.name}/daemon.log"}})
        # Logging as `outage-sentinel run` sets it up (JSON lines, INFO), into a file.
        from outage_sentinel.logs import configure

        configure(config.log.level, config.log.format, config.log.file)
        if store is not None:
            store.close()
        daemon = Daemon(config, topology=topology, sources=[source], channels={})
        store = daemon.store
        screen = daemon.screener.screen
        daemon.start()
    else:
        source.start(None)
    if not source.connected:
        print("cannot connect to the MQTT broker at 127.0.0.1:1883", file=sys.stderr)
        return 2

    tool = args.publisher or ("mosquitto_pub" if args.per_message == 1
                              and shutil.which("mosquitto_pub") else "paho")
    print(f"publisher: {tool}")
    ctx = mp.get_context("spawn")
    ready, report = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=publisher, args=(topic, args.seed, t0.isoformat(),
                                               args.per_message, ready, report, tool,
                                               args.rate, rounds))
    proc.start()
    time.sleep(1.0)  # let the child build its event list before the clock starts
    rss_start = rss_mb()
    ready.set()
    t_first = time.time()

    if args.scheduled and daemon is not None:
        return watch_scheduled(daemon, source, proc, report, expected_events, t_first,
                               rss_start, tag, tmp)

    totals = ScreenResult()
    ingested = quarantined = polls = 0
    samples: list[tuple[int, float]] = []
    next_sample = 10_000
    pub: tuple[float, float, int] | None = None
    t_last_ingest = t_first
    stalled_since: float | None = None
    spent = {"poll": 0.0, "store": 0.0, "ack": 0.0, "screen": 0.0}
    while True:
        c0 = time.perf_counter()
        if daemon is not None:
            # The daemon's own cycle: poll + store + acknowledge, then screen + incidents.
            polled = daemon.poll(source)
            c1 = time.perf_counter()
            daemon.process()
            spent["poll"] += c1 - c0
            spent["screen"] += time.perf_counter() - c1
            got = polled is not None and not polled.not_modified
            events = polled.events if polled is not None else []
            bad = polled.quarantined if polled is not None else []
        else:
            result = source.poll(datetime.now(UTC))
            c1 = time.perf_counter()
            spent["poll"] += c1 - c0
            got = not result.not_modified
            events, bad = result.events, result.quarantined
            if got:
                if store is not None:
                    store.ingest(source.name, result, datetime.now(UTC))
                c2 = time.perf_counter()
                source.acknowledge(result)
                c3 = time.perf_counter()
                totals.extend(screen.feed(result.events, datetime.now(UTC)))
                spent["store"] += c2 - c1
                spent["ack"] += c3 - c2
                spent["screen"] += time.perf_counter() - c3
        if got:
            polls += 1
            ingested += len(events)
            quarantined += len(bad)
            t_last_ingest = time.time()
            while ingested >= next_sample:
                samples.append((next_sample, rss_mb()))
                next_sample += 10_000
            stalled_since = None
        else:
            if daemon is not None:
                daemon.screen_tick(datetime.now(UTC))
            else:
                totals.extend(screen.tick(datetime.now(UTC)))
            if pub is not None:
                stalled_since = stalled_since or time.time()
                if time.time() - stalled_since > 10:
                    print(f"STALLED: {expected_events - ingested} events never arrived (the "
                          f"broker dropped them: raise Mosquitto's max_queued_messages)")
                    break
        if ingested + quarantined >= expected_events:
            break
        if pub is None and not report.empty():
            pub = report.get()
        if len(events) < args.max_batch:
            time.sleep(args.interval)
    if daemon is not None:
        # Incidents are updated once every stored report and screened output is processed.
        while daemon.store.unprocessed_events(1) or daemon.screen_tick(datetime.now(UTC)):
            daemon.process()
        t_done = time.time()
        areas = list(daemon.store.events_after(0, {"ami"}))
        totals.events.extend(e.event for e in areas)
        rows = daemon.store.load_incidents(open_only=False)
        print(f"incidents: {len(rows)} ({sum(r['status'] == 'active' for r in rows)} active, "
              f"{sum(r['status'] == 'restored' for r in rows)} restored) from "
              f"{len(areas)} screened area events")
        print(daemon_screen_counts(daemon))
    else:
        totals.extend(screen.tick(datetime.now(UTC)))
        t_done = time.time()
    if pub is None:
        pub = report.get(timeout=60)
    proc.join(10)
    source.close()
    forget_session(tag)

    p_start, p_end, messages = pub
    dead = sum(1 for e in totals.events if e.status == "active")
    alive = sum(1 for e in totals.events if e.status != "active")
    faults = sum(1 for f in totals.customer_faults if f.status == "active")
    print(f"published: {expected_events} events in {messages} messages "
          f"({args.per_message}/message) in {p_end - p_start:.2f} s = "
          f"{expected_events / (p_end - p_start):,.0f} events/s")
    print(f"ingested{' + stored' if store else ''} + screened: {ingested} events, "
          f"{quarantined} quarantined, {polls} polls, in {t_last_ingest - p_start:.2f} s = "
          f"{ingested / (t_last_ingest - p_start):,.0f} events/s end to end")
    print(f"last event published -> "
          f"{'incidents updated' if daemon else 'screened outputs final'}: {t_done - p_end:.2f} s")
    print("consumer time: " + ", ".join(
        f"{k} {v:.2f} s ({v / max(ingested, 1) * 1e6:.0f} us/event)" for k, v in spent.items()))
    if daemon is not None:  # the rest is in the daemon's metrics, printed above
        print(f"screened: {dead} area outages, {alive} restorations (expected "
              f"{OUTAGES * rounds}, {OUTAGES * rounds})")
    else:
        print(f"screened: {dead} area outages, {alive} restorations, {totals.momentary} "
              f"momentary dropped, {faults} customer-side faults, {totals.merged} merged "
              f"(expected {OUTAGES * rounds}, {OUTAGES * rounds}, {BLIPS * rounds}, "
              f"{(100_000 - OUTAGES * 102 - BLIPS * 100) * rounds})")
    print(memory_line(rss_start, samples, 2 * rounds)
          + f"; screen state {len(json.dumps(screen.to_state())) // 1024} KB")
    if daemon is not None:
        print(f"store: {store.count('events')} event rows")
        daemon.close()
    elif store is not None:
        print(f"store: {store.count('events')} event rows")
        store.close()
    tmp.cleanup()
    ok = (dead == OUTAGES * rounds and alive == OUTAGES * rounds
          and ingested == expected_events)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
