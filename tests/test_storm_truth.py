"""Issue 10, acceptance for item 1: no false "power restored" in a storm.

The daemon runs as a subprocess against a local 95598 power-cut feed (``http_json``, snapshot
semantics: a record gone from the list is over) and a local WeCom-like robot service that
records every request and answers ``errcode 0``. Every liaison of the demo county is routed to
its own robot, so each request tells whose notice it is.

1. Storm: 220 fault items are added in bursts over ~40 s, several per feeder, each naming 1-4
   transformer areas of that feeder. Nothing is removed, so nobody may be told "恢复送电".
2. Items leave the feed a few at a time; after each step the test waits until the daemon has
   stored and processed what the feed says and delivered every notice. A village may be told
   "restored" only once none of its areas is named by an item still listed, and then exactly
   once. No liaison is told "outage" twice; every liaison of a named village is told once.

All failures are collected and reported together with a summary (items, notices by purpose,
villages), so a failing run says how many notices were false, not only the first one.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.sources.mapping import PRESETS
from tests.channels.conftest import FakeService
from tests.e2e_helpers import ROOT, make_config, start_daemon, stop, wait_for

pytestmark = pytest.mark.slow

SOURCE = "county-powercut"
ITEMS = 220
BURSTS = 20
BURST_GAP_S = 2.0  # the feed's pace (the daemon polls every second); not an assertion
REMOVE_STEPS = 22
SHANGHAI = ZoneInfo("Asia/Shanghai")


# -- the county ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    id: str
    name: str
    feeder: str
    village: str


@dataclass
class County:
    """The demo bundle, read from its CSV files (the contract of docs/design.md §3)."""

    areas: dict[str, Area]
    feeder_names: dict[str, str]
    village_names: dict[str, str]
    #: robot key -> (village, role) of the liaison routed to it
    liaison_of_key: dict[str, tuple[str, str]] = field(default_factory=dict)
    robots: dict[str, dict[str, str]] = field(default_factory=dict)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def county_bundle(tmp: Path) -> tuple[Path, County]:
    """A copy of the demo bundle with every liaison and crew on its own WeCom robot."""
    bundle = tmp / "topology"
    shutil.copytree(ROOT / "topology", bundle)
    _, nodes = read_csv(bundle / "nodes.csv")
    _, villages = read_csv(bundle / "villages.csv")
    county = County(
        areas={n["id"]: Area(n["id"], n["name"], n["feeder"], n["village"])
               for n in nodes if n["kind"] == "transformer"},
        feeder_names={n["feeder"]: n["feeder_name"] for n in nodes if n["kind"] == "source"},
        village_names={v["id"]: v["name"] for v in villages})
    header, liaisons = read_csv(bundle / "liaisons.csv")
    for i, row in enumerate(liaisons):
        target = f"liaison-{i:03d}-{row['village']}-{row['role']}"
        key = f"key-liaison-{i:03d}"
        row["channel"], row["target"] = "wecom", target
        county.robots[target] = {"key": key}
        county.liaison_of_key[key] = (row["village"], row["role"])
    write_csv(bundle / "liaisons.csv", header, liaisons)
    header, crews = read_csv(bundle / "crews.csv")
    for row in crews:
        row["channel"], row["target"] = "wecom", f"crew-{row['id']}"
        county.robots[row["target"]] = {"key": f"key-crew-{row['id']}"}
    write_csv(bundle / "crews.csv", header, crews)
    return bundle, county


def storm(county: County, rng: random.Random) -> list[tuple[dict[str, str], tuple[str, ...]]]:
    """ITEMS fault records over every feeder of the county (~16 each), each naming 1-4
    neighbouring areas of its feeder (numbered along the feeder: a fault on one lateral)."""
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    by_feeder: dict[str, list[Area]] = defaultdict(list)
    for area in sorted(county.areas.values(), key=lambda a: a.id):
        by_feeder[area.feeder].append(area)
    feeders = sorted(by_feeder)
    items = []
    for i in range(ITEMS):
        areas = by_feeder[feeders[i % len(feeders)]]
        first = rng.randrange(len(areas))
        named = areas[first:first + rng.randint(1, 4)]
        feeder = named[0].feeder
        start = now - timedelta(minutes=10) + timedelta(seconds=i)
        items.append(({
            "poweroffId": f"PC-STORM-{i:04d}",
            "powerType": "故障停电",
            "takeType": "部分停电",
            "startTime": start.strftime("%Y-%m-%d %H:%M:%S"),
            "stopTime": (start + timedelta(hours=4)).strftime("%Y-%m-%d %H:%M:%S"),
            "powerRange": "、".join(a.name for a in named),
            "powerArea": "清河县",
            "powerCircuit": county.feeder_names[feeder],
            "powerCause": "大风导致线路故障，抢修中",
        }, tuple(a.id for a in named)))
    return items


# -- the feed ------------------------------------------------------------------------------------


class PowerCutFeed:
    """Serves the current list in the ``95598_powercut`` format; the test adds and removes."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    def add(self, records: list[dict[str, str]]) -> None:
        with self.lock:
            for r in records:
                self.records[r["poweroffId"]] = r

    def remove(self, ids: list[str]) -> None:
        with self.lock:
            for i in ids:
                del self.records[i]

    def body(self) -> bytes:
        import json

        with self.lock:
            listed = list(self.records.values())
        return json.dumps({"code": "1", "message": "查询成功",
                           "data": {"powerCutList": listed, "total": len(listed)}},
                          ensure_ascii=False).encode("utf-8")


@pytest.fixture
def feed() -> Iterator[tuple[PowerCutFeed, str]]:
    state = PowerCutFeed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            body = state.body()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/api/powercut/list"
    server.shutdown()
    server.server_close()


@pytest.fixture
def wecom() -> Iterator[FakeService]:
    service = FakeService()  # answers {"errcode": 0, "errmsg": "ok"} to every request
    yield service
    service.close()


# -- what the robots received --------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    village: str
    role: str
    purpose: str
    text: str


PURPOSES = (("恢复送电", "restored"), ("取消", "cancelled"), ("更新", "update"),
            ("关怀", "care"), ("提醒", "reminder"), ("通知", "outage"))


def purpose_of(text: str) -> str:
    """The purpose from the headline (【故障停电通知】 → outage, 【恢复送电】 → restored)."""
    m = re.match(r"\s*【([^】]+)】", text)
    head = m.group(1) if m else ""
    return next((p for word, p in PURPOSES if word in head), f"other:{head or text[:20]}")


def liaison_notices(wecom: FakeService, county: County, start: int = 0) -> list[Notice]:
    out = []
    for req in wecom.requests[start:]:
        key = req.query.get("key", [""])[0]
        if key not in county.liaison_of_key:
            continue  # a crew's dispatch
        body = req.json()
        text = (body.get("text") or body.get("markdown") or {}).get("content", "")
        village, role = county.liaison_of_key[key]
        out.append(Notice(village, role, purpose_of(text), text))
    return out


def settled(db: Path, events: int) -> bool:
    """The daemon stored ``events`` feed events, processed them all and delivered everything."""
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            stored, waiting_events = conn.execute(
                "SELECT count(*), coalesce(sum(processed = 0), 0) FROM events WHERE source = ?",
                (SOURCE,)).fetchone()
            waiting_messages = conn.execute(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'inflight')").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy
        return False
    return bool(stored >= events and waiting_events == 0 and waiting_messages == 0)


# -- the test ------------------------------------------------------------------------------------


def per_village(notices: list[Notice], purpose: str) -> Counter[str]:
    """How many liaisons of each village got a notice of ``purpose``."""
    return Counter(n.village for n in notices if n.purpose == purpose)


def test_storm_tells_no_false_restoration_and_each_village_restored_once(
        tmp_path: Path, feed: tuple[PowerCutFeed, str], wecom: FakeService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    feed_state, url = feed
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    bundle, county = county_bundle(tmp_path)
    # The preset reads no area list from powerRange today (issue 10 item 5 is about scope
    # from words); mapping powerRange as the transformer-area list lets every item be placed
    # by name, so what this test measures is the incident core, not text parsing.
    fields = PRESETS["95598_powercut"].fields.model_copy(update={"transformers": "powerRange"})
    config = make_config(
        tmp_path, topology=str(bundle), interval=1.0,
        sources=[{"name": SOURCE, "type": "http_json", "url": url, "preset": "95598_powercut",
                  "fields": fields.model_dump(), "snapshot": True, "interval_seconds": 1.0,
                  "timeout_seconds": 5.0}],
        channels={"wecom": {"type": "wecom", "base_url": wecom.url, "robots": county.robots,
                            "per_minute": 100000}})
    items = storm(county, random.Random(20261203))
    proc = start_daemon(config)
    db = tmp_path / "state" / "sentinel.db"
    #: category -> village -> liaison notices (a village has three liaisons in the demo)
    found: dict[str, Counter[str]] = defaultdict(Counter)
    clock = time.monotonic()
    try:
        # 1. the storm: bursts of items, nothing removed
        per_burst = -(-ITEMS // BURSTS)
        for b in range(BURSTS):
            feed_state.add([record for record, _ in items[b * per_burst:(b + 1) * per_burst]])
            threading.Event().wait(BURST_GAP_S)
            assert proc.poll() is None, "daemon died during the storm"
        assert wait_for(lambda: settled(db, ITEMS), 180), "storm not processed in 180 s"
        storm_seconds = time.monotonic() - clock
        found["恢复送电 during the storm (nothing removed)"] = per_village(
            liaison_notices(wecom, county), "restored")

        # 2. items leave the feed a few at a time
        listed = {record["poweroffId"]: areas for record, areas in items}
        order = sorted(listed)
        random.Random(7).shuffle(order)
        per_step = -(-len(order) // REMOVE_STEPS)
        seen = len(wecom.requests)
        for s in range(REMOVE_STEPS):
            step = order[s * per_step:(s + 1) * per_step]
            feed_state.remove(step)
            for i in step:
                del listed[i]
            assert wait_for(lambda: settled(db, 2 * ITEMS - len(listed)), 120), \
                f"removal step {s} not processed in 120 s"
            still_out = {county.areas[a].village for areas in listed.values() for a in areas}
            for village, n in per_village(liaison_notices(wecom, county, seen),
                                          "restored").items():
                if village in still_out:
                    found["恢复送电 while an item still names one of the village's areas"][
                        village] += n
            seen = len(wecom.requests)
        assert not listed
        assert proc.poll() is None, "daemon died"
    finally:
        assert stop(proc) == 0

    notices = liaison_notices(wecom, county)
    named = {county.areas[a].village for _, areas in items for a in areas}
    per = Counter((n.village, n.role, n.purpose) for n in notices)
    for v, r in sorted(county.liaison_of_key.values()):
        outage, restored = per[(v, r, "outage")], per[(v, r, "restored")]
        if v in named and outage == 0:
            found["named village, liaison never told outage"][v] += 1
        if outage > 1:
            found["outage to a liaison told it before"][v] += outage - 1
        if v in named and restored == 0:
            found["named village, liaison never told restored"][v] += 1
        if restored > 1:
            found["恢复送电 to a liaison told it before"][v] += restored - 1
        # Every record's ETR is start + 4 h, the starts a second apart: a village's expected
        # restoration moves by seconds, which is no news (notify.etr_update_minutes).
        if per[(v, r, "care")] > 1:  # once per incident, not with every re-dispatch
            found["care list to a liaison told it before"][v] += per[(v, r, "care")] - 1
        if per[(v, r, "update")] > 1:
            found["update flood: more than one update to a liaison"][v] += per[(v, r, "update")]
    problems = {k: c for k, c in found.items() if c}
    by_purpose = Counter(n.purpose for n in notices)
    lines = [
        f"{ITEMS} items on {len({county.areas[a].feeder for _, x in items for a in x})} feeders "
        f"naming {len({a for _, x in items for a in x})} areas in {len(named)} villages; "
        f"storm settled after {storm_seconds:.0f} s, whole run {time.monotonic() - clock:.0f} s",
        f"{len(wecom.requests)} robot requests; liaison notices by purpose {dict(by_purpose)}",
        f"villages told outage {len(per_village(notices, 'outage'))}, "
        f"restored {len(per_village(notices, 'restored'))}",
    ] + [f"{what}: {sum(c.values())} (liaison notices or liaisons) in {len(c)} villages "
         f"({', '.join(sorted(c))})"
         for what, c in problems.items()]
    print("\n".join(lines))
    assert not problems, "\n".join(lines)
