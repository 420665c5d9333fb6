"""A record's end never tells a village 恢复送电 while the AMI screen still holds its areas'
power-off (not yet released: the backlog hold, the momentary rule; no power-on since): the
areas stay off until the screen releases the outage (its ``dead`` is then the evidence) or
closes or drops it. Through the daemon's real objects: the demo bundle, SQLite, the AMI
screener and the processor as ``assembly.build_core`` wires them.

The audit's case (薛店村, fuse FU-CG04-05, areas T-CG04-023…028): the terminals' power-off
arrives 65 minutes late (a backlog, held ``backlog_hold_seconds``); the outage system ends its
record; the power-on comes for 023–026 only. The village was told 【恢复送电】 while the screen
held 027/028 dark, and 20 s later 更正：…仍停电.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

from outage_sentinel.assembly import build_core
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AmiScreener
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.shared_setup import terminal_reports
from tests.test_incident_truth_folding import NOW, config

VILLAGE = "V020"  # 薛店村
FUSE = "FU-CG04-05"
AREAS = tuple(f"T-CG04-{i:03d}" for i in range(23, 29))
BACK, DARK = AREAS[:4], AREAS[4:]


class Daemon:
    """The screener and the processor over one store, wired as the daemon wires them."""

    def __init__(self, tmp: Path, store: Store, topology: Topology) -> None:
        cfg = config(tmp)
        self.store = store
        self.screen = AmiScreener(store, topology, cfg, Metrics(), {"ami-mqtt"},
                                  threading.Lock())
        self.screen.load(NOW)
        self.core = build_core(cfg, store, topology, metrics=Metrics(), clock=lambda: NOW,
                               screen=self.screen)

    def terminals(self, now: datetime, areas: tuple[str, ...], on: bool, at: datetime) -> None:
        """The terminals of ``areas`` report power off (on) at ``at``, received at ``now``."""
        self.screen.ingest("ami-mqtt", PollResult(events=terminal_reports(areas, on, at)), now)
        self.process(now)

    def record(self, now: datetime, status: str, start: datetime,
               end: datetime | None = None) -> None:
        """The outage system's record C1 of the fuse, polled at ``now``."""
        event = OutageEvent(source="feed", event_id="C1", kind="fault", status=status,
                            signal="notice", start=start, end=end, device=FUSE,
                            transformers=AREAS, cause="薛店支线熔断器熔断")
        self.store.ingest("feed", PollResult(events=[event]), now)
        self.process(now)

    def process(self, now: datetime) -> None:
        self.screen.run_once(now)
        self.core.processor.run_once(now)

    def incident(self) -> Incident:
        (row,) = self.store.load_incidents(open_only=False)
        return Incident.from_json(row["state"])

    def told(self, purpose: str) -> int:
        return sum(1 for m in self.store.messages() if m.audience == "liaison"
                   and m.purpose == purpose and m.payload.get("village") == VILLAGE)


def test_a_record_ended_while_the_screen_holds_a_backlog_off_tells_no_restoration(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    d = Daemon(tmp_path, store, demo)
    off = NOW - timedelta(minutes=65)
    d.record(NOW, "active", off)
    d.terminals(NOW, AREAS, on=False, at=off)  # 65 min old: held as a backlog
    assert d.told("outage") > 0
    # The outage system ends its record; the screen still holds every area's power-off.
    d.record(NOW + timedelta(seconds=40), "restored", off, end=off + timedelta(minutes=30))
    assert d.told("restored") == 0, "told 恢复送电 while the meters' power-off was held"
    inc = d.incident()
    assert inc.status == "active" and set(inc.off) == set(AREAS)
    assert d.screen.held_dark(AREAS) == set(AREAS) == set(inc.held)
    # Power-on for 023–026 only: they are back on the meters' word; 027/028 still held.
    d.terminals(NOW + timedelta(seconds=60), BACK, on=True, at=off + timedelta(minutes=30))
    inc = d.incident()
    assert inc.status == "active" and set(inc.off) == set(DARK)
    assert d.told("restored") == 0
    # The screen releases 027/028: dark on the meters' evidence, nobody corrected.
    d.process(NOW + timedelta(seconds=200))
    assert d.screen.held_dark(AREAS) == set()
    inc = d.incident()
    assert inc.status == "active" and set(inc.off) == set(DARK) and not inc.held
    assert d.told("restored") == 0 and d.told("corrected") == 0
    assert len(store.load_incidents(open_only=False)) == 1
    # Their power-on, settled: now the village hears 恢复送电, once.
    back = NOW + timedelta(seconds=300)
    d.terminals(back, DARK, on=True, at=back)
    d.process(back + timedelta(seconds=400))
    assert d.incident().status == "restored"
    recipients = len(d.core.processor.planner.village_recipients(VILLAGE))
    assert d.told("restored") == recipients


def test_areas_the_screen_drops_as_a_blip_come_back_with_the_record(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """A power-off the screen held and then dropped (back within the momentary rule, no
    output of its own): the incident kept off on it is derived again, and its record's end
    stands."""
    d = Daemon(tmp_path, store, demo)
    start = NOW - timedelta(minutes=30)
    d.record(NOW, "active", start)
    d.terminals(NOW, AREAS, on=False, at=NOW)  # a live power-off: held by the momentary rule
    d.record(NOW + timedelta(seconds=10), "restored", start, end=NOW + timedelta(seconds=5))
    assert d.told("restored") == 0
    inc = d.incident()
    assert inc.status == "active" and set(inc.held) == set(AREAS)
    d.terminals(NOW + timedelta(seconds=25), AREAS, on=True, at=NOW + timedelta(seconds=20))
    assert d.screen.held_dark(AREAS) == set()
    inc = d.incident()
    assert inc.status == "restored" and not inc.held
    assert d.told("restored") == len(d.core.processor.planner.village_recipients(VILLAGE))


def test_a_processor_without_a_screen_holds_nothing(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The board, the CLI: no AMI source, nothing held (only the leader screens)."""
    core = build_core(config(tmp_path), store, demo, metrics=Metrics(), clock=lambda: NOW)
    assert core.processor.held.held is None and core.processor.held.now() == frozenset()


def test_outages_the_screen_releases_together_are_not_counted_back_between_folds(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The screen releases the held power-offs of two villages in one batch: folding the
    first, the record's end must not count the other back (its ``dead`` is next in the
    batch) — that village would hear 恢复送电, then 仍停电."""
    d = Daemon(tmp_path, store, demo)
    areas = ("T-CG04-019", "T-CG04-020", "T-CG04-021", *DARK)  # 大邓店村 (V019), 薛店村
    off = NOW - timedelta(minutes=65)
    event = OutageEvent(source="feed", event_id="C2", kind="fault", status="active",
                        signal="notice", start=off, transformers=areas)
    d.store.ingest("feed", PollResult(events=[event]), NOW)
    # A backlog, held; 薛店村's first (released first, folded first).
    d.terminals(NOW, DARK, on=False, at=off - timedelta(minutes=1))
    d.terminals(NOW, areas[:3], on=False, at=off)
    ended = OutageEvent(source="feed", event_id="C2", kind="fault", status="restored",
                        signal="notice", start=off, end=off + timedelta(minutes=30),
                        transformers=areas)
    d.store.ingest("feed", PollResult(events=[ended]), NOW + timedelta(seconds=40))
    d.process(NOW + timedelta(seconds=40))
    assert d.incident().status == "active"
    d.process(NOW + timedelta(seconds=200))  # every hold expires: released in one batch
    inc = d.incident()
    assert inc.status == "active" and set(areas) <= set(inc.off) and not inc.held
    told_back = [m for m in store.messages() if m.audience == "liaison"
                 and m.purpose in ("restored", "corrected")]
    assert told_back == []
