"""The AMI screener: meter and terminal reports in, per-area outage events out (a daemon stage).

The pure screen (:class:`outage_sentinel.ami.AmiScreen`) turns raw reports into area outputs;
this stage keeps its state with the database: reports are screened in the transaction that
stores them, the outputs are stored as events of the ``ami`` source, and the screen's state is
saved at most every :data:`SCREEN_SAVE_SECONDS` with the id of the last report it includes
(reports after that id are fed again on start; outputs are deterministic, so the re-produced
ones are duplicates the store ignores).

Nothing the screen passes over goes unsaid: a report it does not believe (a device clock reset
to years ago) is quarantined with the screen's reason, in the same transaction, and counted in
the poll's ``quarantined`` (its log line and metric); each device in
no transformer area (``ami.unknown_devices: keep``) is named in the log once per source (up to
:data:`MAX_UNKNOWN_DEVICES_LOGGED`) and all their reports are counted
(``outage_sentinel_ami_unknown_device_reports_total``). A source whose report times sit steadily
a whole number of hours from their arrival (read in the wrong zone,
:mod:`outage_sentinel.clock_offset`) is logged once (``ami_clock_offset``, naming the config
key to set) and exported (``outage_sentinel_ami_clock_offset_hours``) until it clears. An
area whose restoration was taken back because it went off again before it settled (a flapping
area, one outage) is logged (``ami_area_flapped``).

What the screen holds dark (a power-off not released yet, :meth:`AmiScreener.held_dark`) is
kept in the store too (kv :data:`HELD_KEY`), written in the transaction that stores the
outputs which change it: a process that runs no screen (the board, the CLI) folds a liaison's
answer or a step knowing it (:class:`KeptHeld`), as the daemon does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Literal

from sqlalchemy.engine import Connection

from outage_sentinel.ami import (
    AmiRegistry,
    AmiScreen,
    ScreenPolicy,
    ScreenResult,
    SetAside,
    parse_device_ref,
)
from outage_sentinel.clock_offset import (
    CLOCK_OFFSET_PREFIX,
    OffsetChange,
    offset_fields,
    offset_records,
    stale_records,
)
from outage_sentinel.config import Config
from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.logs import get_logger
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import FencedError, IngestCounts, Store, StoredEvent
from outage_sentinel.topology import Topology

#: Source name of the screened AMI outputs (per transformer area), and the kv key of its state.
AMI_SOURCE = "ami"
SCREEN_KEY = "ami_screen"
#: The kv key of the areas the screen holds dark (``{"areas": [...]}``), as its last committed
#: outputs left them (:class:`KeptHeld`).
HELD_KEY = "ami_screen:held"
#: How often the AMI screen state is saved (reports after it are re-screened on start).
SCREEN_SAVE_SECONDS = 30.0
#: Devices not in meters.csv named in the log per source, at most: a batch of swapped meters
#: is named one by one; a registry missing a whole district is counted, not remembered.
MAX_UNKNOWN_DEVICES_LOGGED = 1000
#: Characters of a device reference kept and logged (ids come from the feed).
DEVICE_SHOWN_CHARS = 64


class UnknownDevices:
    """Which devices in no transformer area were named in the log already, per source. Memory
    is bounded: past :attr:`limit` devices of a source, the rest are only counted."""

    def __init__(self, limit: int = MAX_UNKNOWN_DEVICES_LOGGED) -> None:
        self.limit = limit
        self.named: dict[str, set[str]] = {}
        #: Sources whose limit was reached (said once).
        self.full: set[str] = set()

    def note(self, source: str, device: str) -> Literal["name", "limit"] | None:
        """``"name"``: log this device (first time); ``"limit"``: the source's limit was just
        reached, say so once; ``None``: nothing to log."""
        named = self.named.setdefault(source, set())
        if device in named or source in self.full:
            return None
        if len(named) >= self.limit:
            self.full.add(source)
            return "limit"
        named.add(device)
        return "name"


class KeptHeld:
    """What the AMI screen holds dark as the node running it last wrote it (kv
    :data:`HELD_KEY`, in the transaction of the screen's outputs that changed it): the
    :class:`~outage_sentinel.held_areas.HeldDark` of a process that runs no screen (the
    board, the CLI), so that a liaison's 已来电 or a record's end folded there does not count
    back an area whose meters' power-off the screen has not released yet. Empty when no
    screen ever wrote it (no AMI source)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def held_dark(self, areas: Collection[str] | None = None) -> set[str]:
        """The areas (of ``areas``; ``None``: all) the screen holds dark, as it wrote them."""
        kept = self.store.kv_get(HELD_KEY)
        held = {str(a) for a in kept.get("areas") or ()} if isinstance(kept, dict) else set()
        return held if areas is None else held & set(areas)


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
        self.unknown = UnknownDevices()
        #: The held areas as last written to the store (None: not known to be written).
        self.held_written: frozenset[str] | None = None

    def use_topology(self, topology: Topology) -> None:
        """Switch to a reloaded bundle (the caller holds :attr:`lock`)."""
        self.registry = AmiRegistry.from_topology(topology)
        self.screen.registry = self.registry

    def is_observation(self, event: OutageEvent) -> bool:
        """A raw report of one of our AMI sources (the screen's input, not an incident event)."""
        return (event.source in self.sources and event.signal in ("dead", "alive")
                and parse_device_ref(event.area_text) is not None)

    def held_dark(self, areas: Collection[str] | None = None) -> set[str]:
        """The areas (of ``areas``; ``None``: all) whose power-off the screen holds, not yet
        released and not closed by a power-on (:meth:`AmiScreen.held_dark`): the processor
        keeps them off when an incident's records end (:class:`~outage_sentinel.held_areas.
        HeldDark`). Empty for a node that screens no AMI source: only the node that runs
        them (the leader, which loads the screen as its term begins) knows what it holds;
        it keeps it in the store for the others (:class:`KeptHeld`)."""
        if not self.sources:
            return set()
        return self.screen.held_dark(areas)

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
        self.held_written = None
        if self.sources:
            replay = [s for s in self.store.events_after(self.row, self.sources)
                      if s.event is not None and self.is_observation(s.event)]
            if replay:
                with self.store.transaction() as conn:
                    result = self.screen.feed([s.event for s in replay], now,
                                              [s.received_at for s in replay])
                    self.row = max(s.row_id for s in replay)
                    self._store_screened(conn, result, now, force_save=True, replay=True)
                self.log.info("ami_screen_caught_up", reports=len(replay))
        self._sync_held(now)
        self._sync_offset_records(now)
        self._export_clock_offsets()
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
                    set_aside = self._store_screened(conn, screened, now)
            except Exception:
                self.load(now)  # back to the committed state
                raise
        self.metrics.ami_observations.inc(len(fresh))
        # The poller logs ("polled") and counts (the quarantine metric) what was quarantined:
        # the reports the screen set aside were, as much as the source's bad records.
        return replace(counts, quarantined=counts.quarantined + set_aside)

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
        for item in result.set_aside:  # no poll counts these: count them here
            self.metrics.quarantined.labels(item.event.source).inc()

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

    def _store_screened(self, conn: Connection, result: ScreenResult | None, now: datetime,
                        force_save: bool = False, replay: bool = False) -> int:
        """Store ``result`` in ``conn``'s transaction, and the screen state when due; returns
        how many reports were quarantined (the caller counts them). A ``replay`` (reports
        screened before a restart) quarantines nothing: it is judged by when each report was
        received, so it sets aside exactly what was quarantined when first screened (in that
        transaction), or what will be when its unprocessed report is."""
        quarantined = 0
        if result is not None:
            if result.events:
                self.store.ingest_in(conn, AMI_SOURCE, PollResult(events=list(result.events)),
                                     now)
            self.metrics.ami_momentary.inc(result.momentary)
            self.metrics.ami_flapped.inc(len(result.flapped))
            for area, dropped in result.flapped:
                self.log.info("ami_area_flapped", area=area, dropped_close=dropped.isoformat(),
                              hint="off again before its restoration settled "
                                   "(ami_screen.restore_settle_seconds): the same outage")
            self.metrics.ami_customer_faults.inc(len(result.customer_faults))
            for fault in result.customer_faults:
                self.log.info("customer_side_fault",
                              **{k: str(v) for k, v in vars(fault).items()})
            self._name_unknown(result.unknown_devices)
            self._clock_offsets(conn, result.clock_offsets, now)
            if not replay:
                self._quarantine(conn, result.set_aside, now)
                quarantined = len(result.set_aside)
        self._write_held(conn, now)
        if force_save or time.monotonic() - self.saved_at >= SCREEN_SAVE_SECONDS:
            self.store.kv_set_in(conn, SCREEN_KEY, {"state": self.screen.to_state(),
                                                    "row": self.row}, now)
            self.saved_at = time.monotonic()
        return quarantined

    def _write_held(self, conn: Connection, now: datetime) -> None:
        """Keep the areas the screen holds dark in the store (:data:`HELD_KEY`) when they
        changed, in ``conn``'s transaction: the outputs that changed them commit with them."""
        if not self.sources:
            return
        held = frozenset(self.screen.held_dark())
        if held != self.held_written:
            self.store.kv_set_in(conn, HELD_KEY, {"areas": sorted(held)}, now)
            self.held_written = held

    def _sync_held(self, now: datetime) -> None:
        """The store's held areas as the loaded screen holds them (a release the screen's
        saved state had not caught up with, a restart after a long stop); none kept once the
        config has no AMI source left (the areas held then would stay held for the board).
        Not by a standby (fenced: the term it begins loads it again)."""
        if self.held_written is not None:
            return
        if not self.sources and self.store.kv_get(HELD_KEY) is None:
            return
        try:
            with self.store.transaction() as conn:
                if self.sources:
                    self._write_held(conn, now)
                else:
                    self.store.kv_delete_in(conn, HELD_KEY)
        except FencedError:
            self.held_written = None
            self.log.info("ami_held_record_left", reason="not leading")

    def _clock_offsets(self, conn: Connection, changes: list[OffsetChange], now: datetime
                       ) -> None:
        """Say once when a source is flagged as read in the wrong zone (and when it clears);
        keep the board's record of each flag (kv ``clock_offset:<source>``, in the screen's
        transaction); export every AMI source's offset (0: none)."""
        self._write_offset_records(conn, changes, now)
        for change in changes:
            if change.hours is not None:
                self.log.warning("ami_clock_offset", **offset_fields(
                    change, self.config.sources, self.config.timezone, now))
            else:
                self.log.info("ami_clock_offset_cleared", source=change.source,
                              offset_hours=change.previous, reports=change.reports,
                              median_offset_minutes=round(change.median_seconds / 60.0, 1))
        if changes:
            self._export_clock_offsets()

    def _write_offset_records(self, conn: Connection, changes: list[OffsetChange],
                              now: datetime) -> None:
        records = offset_records(changes, self.config.sources, self.config.timezone, now)
        for key, record in records.items():
            if record is None:
                self.store.kv_delete_in(conn, key)
            else:
                self.store.kv_set_in(conn, key, record, now)

    def _sync_offset_records(self, now: datetime) -> None:
        """The board's records as the loaded screen's flags stand (its saved state may lag
        the records by up to :data:`SCREEN_SAVE_SECONDS`: a flag raised or cleared since).
        Only by a node that screens AMI sources, and only when something is to be put right:
        a standby loads the screen before it leads, and may write nothing then (the term it
        begins loads it again)."""
        if not self.sources:
            return
        flags = self.screen.clock_offsets()
        kept = self.store.kv_prefixed(CLOCK_OFFSET_PREFIX)
        stale = stale_records(kept, flags)
        missing = [c for c in self.screen.clock.standing() if c.source not in kept]
        if not stale and not missing:
            return
        try:
            with self.store.transaction() as conn:
                for key in stale:
                    self.store.kv_delete_in(conn, key)
                self._write_offset_records(conn, missing, now)
        except FencedError:
            self.log.info("ami_clock_records_left", reason="not leading", stale=len(stale),
                          missing=len(missing))

    def _export_clock_offsets(self) -> None:
        flags = self.screen.clock_offsets()
        for source in sorted(self.sources):
            self.metrics.ami_clock_offset.labels(source).set(flags.get(source, 0.0))

    def _name_unknown(self, devices: list[tuple[str, str]]) -> None:
        """Count reports of devices in no transformer area and name each device once: with
        ``unknown_devices: keep`` their reports are stored but count toward no outage, so a
        batch of swapped meters would otherwise darken a village without a trace."""
        per_source: dict[str, int] = {}
        for source, ref in devices:
            per_source[source] = per_source.get(source, 0) + 1
            shown = ref[:DEVICE_SHOWN_CHARS]
            said = self.unknown.note(source, shown)
            if said == "name":
                self.log.warning("ami_unknown_device", source=source, device=shown,
                                 hint="not in meters.csv: its reports are kept but count "
                                      "toward no transformer area's outage; add it there")
            elif said == "limit":
                self.log.warning("ami_unknown_devices_not_named", source=source,
                                 named=self.unknown.limit,
                                 hint="more devices of this source are not in meters.csv; "
                                      "they are counted "
                                      "(outage_sentinel_ami_unknown_device_reports_total), "
                                      "not named")
        for source, n in per_source.items():
            self.metrics.ami_unknown_devices.labels(source).inc(n)

    def _quarantine(self, conn: Connection, set_aside: list[SetAside], now: datetime) -> None:
        """Quarantine the reports the screen did not believe, with its reason: the report stays
        stored, and a person can see why it made no outage. The caller counts them."""
        for item in set_aside:
            event = item.event
            self.store.quarantine_in(conn, Quarantined(
                event.source, item.reason, {"event_id": event.event_id, "record": event.raw}),
                now)
            self.log.warning("ami_report_set_aside", source=event.source,
                             event_id=event.event_id[:200], reason=item.reason)
