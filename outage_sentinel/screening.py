"""The AMI screener: meter and terminal reports in, per-area outage events out (a daemon stage).

The pure screen (:class:`outage_sentinel.ami.AmiScreen`) turns raw reports into area outputs;
this stage keeps its state with the database: reports are screened in the transaction that
stores them, the outputs are stored as events of the ``ami`` source, and the screen's state is
saved at most every :data:`SCREEN_SAVE_SECONDS` with the id of the last report it includes
(reports after that id are fed again on start; outputs are deterministic, so the re-produced
ones are duplicates the store ignores).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from outage_sentinel.ami import AmiRegistry, AmiScreen, ScreenPolicy, parse_device_ref
from outage_sentinel.config import Config
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.logs import get_logger
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import IngestCounts, Store, StoredEvent
from outage_sentinel.topology import Topology

#: Source name of the screened AMI outputs (per transformer area), and the kv key of its state.
AMI_SOURCE = "ami"
SCREEN_KEY = "ami_screen"
#: How often the AMI screen state is saved (reports after it are re-screened on start).
SCREEN_SAVE_SECONDS = 30.0


class AmiScreener:
    """Screens the reports of the AMI sources named ``sources`` (none: it screens nothing)."""

    def __init__(self, store: Store, topology: Topology, config: Config, metrics: Metrics,
                 sources: Collection[str], lock: threading.Lock) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.sources = frozenset(sources)
        self.lock = lock
        self.log = get_logger(component="ami_screen")
        self.registry = AmiRegistry.from_topology(topology)
        self.screen = AmiScreen(self.registry, ScreenPolicy.from_config(config.ami_screen),
                                AMI_SOURCE)
        self.row = 0
        self.saved_at = time.monotonic()

    def use_topology(self, topology: Topology) -> None:
        """Switch to a reloaded bundle (the caller holds :attr:`lock`)."""
        self.registry = AmiRegistry.from_topology(topology)
        self.screen.registry = self.registry

    def is_observation(self, event: OutageEvent) -> bool:
        """A raw report of one of our AMI sources (the screen's input, not an incident event)."""
        return (event.source in self.sources and event.signal in ("dead", "alive")
                and parse_device_ref(event.area_text) is not None)

    def load(self, now: datetime) -> AmiScreen:
        """The screen as of its last saved state, caught up with the reports stored since."""
        saved = self.store.kv_get(SCREEN_KEY) or {}
        policy = ScreenPolicy.from_config(self.config.ami_screen)
        screen = None
        if saved.get("state"):
            try:
                screen = AmiScreen.from_state(saved["state"], self.registry, policy, AMI_SOURCE)
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning("ami_screen_state_unusable", error=repr(exc))
        self.screen = screen or AmiScreen(self.registry, policy, AMI_SOURCE)
        self.row = int(saved.get("row", 0)) if screen is not None else 0
        self.saved_at = time.monotonic()
        if self.sources:
            replay = [s for s in self.store.events_after(self.row, self.sources)
                      if s.event is not None and self.is_observation(s.event)]
            if replay:
                with self.store.transaction() as conn:
                    result = self.screen.feed([s.event for s in replay], now)
                    self.row = max(s.row_id for s in replay)
                    self._store_screened(conn, result, now, force_save=True)
                self.log.info("ami_screen_caught_up", reports=len(replay))
        return self.screen

    def ingest(self, source: str, result: PollResult, now: datetime) -> IngestCounts:
        """Store an AMI poll and screen its new reports in the same transaction: a storm's
        reports never make a round trip through the unprocessed queue."""
        with self.lock:
            try:
                with self.store.transaction() as conn:
                    counts = self.store.ingest_in(conn, source, result, now,
                                                  processed=self.is_observation)
                    fresh = [e for e in counts.new_events if self.is_observation(e)]
                    screened = self.screen.feed(fresh, now)
                    if counts.new_events:
                        self.row = max(self.row, self.store.last_event_row_in(conn, source))
                    self._store_screened(conn, screened, now)
            except Exception:
                self.load(now)  # back to the committed state
                raise
        self.metrics.ami_observations.inc(len(fresh))
        return counts

    def screen_stored(self, observations: list[StoredEvent], now: datetime) -> None:
        """Screen stored AMI reports; store the area outputs with the reports' processed marks
        in one transaction (a crash replays the reports, to the same outputs). The caller
        holds :attr:`lock`."""
        try:
            with self.store.transaction() as conn:
                result = self.screen.feed([s.event for s in observations], now)
                self.row = max(self.row, *(s.row_id for s in observations))
                self._store_screened(conn, result, now)
                self.store.mark_many_processed_in(conn, [s.row_id for s in observations])
        except Exception:
            self.load(now)  # back to the committed state
            raise
        self.metrics.ami_observations.inc(len(observations))

    def run_once(self, now: datetime) -> int:
        """Release held AMI outages that have now lasted the minimum duration; returns how many
        area events were released (the processor folds them in)."""
        due = self.screen.next_due()
        if due is None or due > now:
            return 0
        with self.lock:
            try:
                with self.store.transaction() as conn:
                    result = self.screen.tick(now)
                    self._store_screened(conn, result, now)
            except Exception:
                self.load(now)
                raise
        return len(result.events)

    def save(self, now: datetime) -> None:
        """Persist the screen state now (on shutdown)."""
        if self.sources:
            with self.lock, self.store.transaction() as conn:
                self._store_screened(conn, None, now, force_save=True)

    def _store_screened(self, conn: Connection, result: Any, now: datetime,
                        force_save: bool = False) -> None:
        if result is not None:
            if result.events:
                self.store.ingest_in(conn, AMI_SOURCE, PollResult(events=list(result.events)),
                                     now)
            self.metrics.ami_momentary.inc(result.momentary)
            self.metrics.ami_customer_faults.inc(len(result.customer_faults))
            for fault in result.customer_faults:
                self.log.info("customer_side_fault",
                              **{k: str(v) for k, v in vars(fault).items()})
        if force_save or time.monotonic() - self.saved_at >= SCREEN_SAVE_SECONDS:
            self.store.kv_set_in(conn, SCREEN_KEY, {"state": self.screen.to_state(),
                                                    "row": self.row}, now)
            self.saved_at = time.monotonic()
