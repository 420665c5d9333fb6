"""A storm night on the demo county's 10kV 北关线 (CG04), driven through the daemon's real
objects: the demo bundle, a real SQLite store, the AMI screen and the processor as
``assembly.build_core`` wires them.

The feeder breaker BRK-CG04 (北关线914断路器) feeds 28 areas. Its own section — the areas
whose nearest protective device above them is the breaker — is T-CG04-001 (北关村) and
T-CG04-009 (东吴营村); the rest sit below fuses, a sectionalizer and a recloser. The tie
switch TIE-07 (城西线-北关线联络开关) can feed the far end of the line (everything below
SW-CG04-1: 大邓店村, 薛店村) from 城西线.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

from outage_sentinel.assembly import Core, build_core
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AmiScreener
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology
from tests.shared_setup import terminal_reports
from tests.test_incident_truth_folding import NOW, config

BREAKER = "BRK-CG04"
#: The breaker's own section (nearest protective device above them: the breaker).
OWN = ("T-CG04-001", "T-CG04-009")
#: 北关支线跌落式熔断器 and 前魏家坊支线跌落式熔断器: the two fuses left open.
FUSES = ("FU-CG04-01", "FU-CG04-04")
FUSE_NAMES = ("北关支线跌落式熔断器", "前魏家坊支线跌落式熔断器")
BREAKER_NAME = "北关线914断路器"
#: What the tie switch TIE-07 can feed from 城西线: the line below SW-CG04-1.
FAR_END = "SW-CG04-1"
SETTLE = timedelta(seconds=400)  # past ami_screen.restore_settle_seconds (300 s)


class Rig:
    """The AMI screen and the processor over one store, as the daemon wires them."""

    def __init__(self, tmp: Path, store: Store, topology: Topology) -> None:
        cfg = config(tmp)
        self.store, self.topology = store, topology
        self.screen = AmiScreener(store, topology, cfg, Metrics(), {"ami-mqtt"},
                                  threading.Lock())
        self.screen.load(NOW)
        self.core: Core = build_core(cfg, store, topology, metrics=Metrics(),
                                     clock=lambda: NOW, screen=self.screen)

    def areas(self, device: str = BREAKER) -> tuple[str, ...]:
        return tuple(self.topology.downstream_transformers(device))

    def terminals(self, now: datetime, areas: tuple[str, ...], on: bool) -> None:
        """The terminals of ``areas`` report power off (on) at ``now``, received then."""
        self.screen.ingest("ami-mqtt", PollResult(events=terminal_reports(areas, on, now)), now)
        self.process(now)

    def trip_record(self, now: datetime) -> None:
        """The outage system's record of the breaker's trip, naming every area it feeds; it
        stays open all night (the fault is not repaired yet)."""
        event = OutageEvent(source="feed", event_id="TRIP-1", kind="fault", status="active",
                            signal="notice", start=now, device=BREAKER,
                            transformers=self.areas(), cause="北关线914断路器跳闸")
        self.store.ingest("feed", PollResult(events=[event]), now)
        self.process(now)

    def process(self, now: datetime) -> None:
        self.screen.run_once(now)
        self.core.processor.run_once(now)

    def incident(self) -> Incident:
        (row,) = self.store.load_incidents(open_only=False)
        return Incident.from_json(row["state"])

    def last(self, audience: str, purpose: str) -> OutboxRow:
        """The latest message queued for ``audience`` with ``purpose``."""
        rows = [m for m in self.store.messages()
                if m.audience == audience and m.purpose == purpose]
        assert rows, f"no {audience} {purpose} message"
        return rows[-1]

    def count(self, audience: str, purpose: str) -> int:
        return sum(1 for m in self.store.messages()
                   if m.audience == audience and m.purpose == purpose)


def trip(rig: Rig) -> datetime:
    """The breaker trips at NOW: its record, every terminal below it dark. Returns when the
    screen has let the outage through."""
    rig.trip_record(NOW)
    rig.terminals(NOW, rig.areas(), on=False)
    later = NOW + timedelta(seconds=90)
    rig.process(later)
    return later
