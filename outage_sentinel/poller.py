"""The poller: one source polled, what it returned persisted, then acknowledged (a daemon stage).

``poll ─▶ store events + quarantine + cursor (one transaction) ─▶ acknowledge to the source``:
an event is either stored (and will be processed) or its cursor did not move (and it will be
fetched again). A poll never raises: a failed poll is logged, counted and, where the source
kept the bad body, quarantined. AMI sources are stored through the screener, which screens
their reports in the same transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from outage_sentinel.config import MqttSourceConfig, SourceConfig
from outage_sentinel.events import PollResult, Quarantined
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.sources.base import Source, SourceError
from outage_sentinel.sources.capabilities import Buffering, Connected, Snapshotting
from outage_sentinel.store import IngestCounts, Store
from outage_sentinel.store.events import refusal_reason, refused_value

#: Polls in a row while an AMI source still has a full batch waiting (a storm backlog).
MAX_DRAIN_POLLS = 50

#: The board reads each source's health from kv ``health:<source>``; written when it changes,
#: and at most this often (seconds) while it stays the same.
HEALTH_EVERY_SECONDS = 30.0

#: Stores one poll's result: ``(source name, result, now) -> counts``.
Ingest = Callable[[str, PollResult, datetime], IngestCounts]

#: What this daemon's region keeps of a poll, and how many events it leaves to other regions.
Scope = Callable[[PollResult], tuple[PollResult, int]]


class PendingStarts:
    """Starts still to be made before a source's next poll, by source name: the term
    (``term.py``) leaves here the start of a source that connects to a broker (it may wait for
    it, which the lease's renewal must not) and of one whose start failed (tried again at each
    poll until it succeeds); the poller makes them. One per daemon, shared by its term and its
    poller."""

    def __init__(self) -> None:
        self._starts: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def defer(self, name: str, start: Callable[[], None]) -> None:
        """Start source ``name`` with ``start`` before its next poll."""
        with self._lock:
            self._starts[name] = start

    def drop(self, name: str) -> None:
        """Forget the start left for source ``name`` (its term ended)."""
        with self._lock:
            self._starts.pop(name, None)

    def pending(self, name: str) -> Callable[[], None] | None:
        """The start left for source ``name``, if any."""
        with self._lock:
            return self._starts.get(name)

    def made(self, name: str, start: Callable[[], None]) -> None:
        """``start`` succeeded: forget it (unless a later term left another since)."""
        with self._lock:
            if self._starts.get(name) is start:
                del self._starts[name]


def write_health(store: Store, name: str, now: datetime, error: str) -> str | None:
    """Write the source's health record for the board (``health:<name>``): whether its last
    poll (or start) succeeded, when one last did, and the last error. Never raises: why it
    could not be written, or None."""
    try:
        value = dict(store.kv_get(f"health:{name}") or {})
        value.update(ok=not error, error=error[:300], checked_at=now.isoformat())
        if not error:
            value["last_ok"] = now.isoformat()
        store.kv_set(f"health:{name}", value, now)
        return None
    except Exception as exc:  # the board shows an older state; polling goes on
        return redact(repr(exc))


@dataclass
class PollReport:
    """What one :meth:`Poller.run_once` did for a source."""

    polls: int = 0
    failed: int = 0
    events: int = 0
    quarantined: int = 0


class Poller:
    """Polls sources into the store; ``ingest_by_source`` overrides how a source is stored."""

    def __init__(self, store: Store, metrics: Metrics,
                 configs: dict[str, SourceConfig] | None = None,
                 ingest_by_source: dict[str, Ingest] | None = None,
                 scope: Scope | None = None, starts: PendingStarts | None = None) -> None:
        self.store = store
        #: Starts the term left to the first poll (shared with the term).
        self.starts = starts or PendingStarts()
        #: The region's part of each poll (None: everything; see ``region.py``).
        self.scope = scope
        self.metrics = metrics
        self.configs = configs or {}
        self.ingest_by_source = ingest_by_source or {}
        self.log = get_logger(component="poller")
        #: When any source was last polled successfully (the daemon's systemd STATUS line).
        self.last_success: datetime | None = None
        #: Per source: (ok, error, when last written) of the health record.
        self._health: dict[str, tuple[bool, str, datetime]] = {}
        #: Per snapshot source: its incomplete polls already counted in the metrics.
        self._incomplete: dict[str, int] = {}

    def run_once(self, source: Source, now: Callable[[], datetime],
                 keep_going: Callable[[], bool] = lambda: True) -> PollReport:
        """Poll once; in a storm, go on while an AMI source still has a full batch waiting
        (rather than one batch per interval). ``now`` is read per poll."""
        report = PollReport()
        cfg = self.configs.get(source.name)
        batch = cfg.max_batch if isinstance(cfg, MqttSourceConfig) else None
        for _ in range(MAX_DRAIN_POLLS):
            result = self.poll(source, now())
            report.polls += 1
            if result is None:
                report.failed += 1
                break
            report.events += len(result.events)
            report.quarantined += len(result.quarantined)
            full = batch is not None and len(result.events) + len(result.quarantined) >= batch
            waiting = isinstance(source, Buffering) and source.buffered > 0
            if not keep_going() or not (full or waiting):
                break
        return report

    def poll(self, source: Source, now: datetime) -> PollResult | None:
        """Poll one source (starting it first if its start is still to be made) and persist
        what it returned. Never raises."""
        try:
            if not self._started(source, now):
                return None
            return self._poll(source, now)
        finally:
            if isinstance(source, Connected):
                self.metrics.source_connected.labels(source.name).set(int(source.connected))
            if isinstance(source, Snapshotting):
                self._snapshot_metrics(source.name, source)

    def _started(self, source: Source, now: datetime) -> bool:
        """Make the start left for ``source`` (:class:`PendingStarts`), if any; False (logged
        ``source_start_failed``, its health and a failed poll recorded) while it fails."""
        start = self.starts.pending(source.name)
        if start is None:
            return True
        try:
            start()
        except Exception as exc:
            reason = redact(f"start failed: {start_failure(exc)}")
            self.log.error("source_start_failed", source=source.name, reason=reason)
            self.health(source.name, now, reason)
            self.metrics.polls.labels(source.name, "error").inc()
            return False
        self.starts.made(source.name, start)
        self._health.pop(source.name, None)  # the next health record is written, whatever
        return True

    def _snapshot_metrics(self, name: str, source: Snapshotting) -> None:
        """Count the source's new incomplete polls; show its held-back polls in a row."""
        count = source.incomplete_polls
        new = count - self._incomplete.get(name, 0)
        if new > 0:
            self.metrics.snapshot_incomplete.labels(name).inc(new)
        self._incomplete[name] = count
        self.metrics.snapshot_held.labels(name).set(source.held_polls)

    def _poll(self, source: Source, now: datetime) -> PollResult | None:
        started = time.perf_counter()
        try:
            result = source.poll(now)
        except SourceError as exc:
            self._failed(source, now, str(exc), exc.raw)
            return None
        except Exception as exc:  # a source bug must not kill the daemon
            self.log.exception("poll_crashed", source=source.name)
            self._failed(source, now, f"{type(exc).__name__}: {exc}", None)
            return None
        ingest = self.ingest_by_source.get(source.name, self.store.ingest)
        try:
            kept = self._kept(source.name, result)
            try:
                counts = ingest(source.name, kept, now)
            except Exception as exc:
                if not (refused_value(exc) and kept.events):
                    raise
                counts, kept = self._ingest_each(source.name, kept, now, ingest)
        except Exception as exc:
            self.log.error("store_failed", source=source.name, error=redact(repr(exc)))
            self.metrics.polls.labels(source.name, "error").inc()
            return None
        try:
            source.acknowledge(result)
        except Exception as exc:
            self.log.warning("acknowledge_failed", source=source.name, error=redact(repr(exc)))
        self._count(source.name, kept, counts, now, time.perf_counter() - started)
        self.health(source.name, now, "")
        return kept

    def _ingest_each(self, name: str, result: PollResult, now: datetime, ingest: Ingest
                     ) -> tuple[IngestCounts, PollResult]:
        """The poll's batch held a value the database refuses: store its events one at a
        time, quarantine those refused with the database's reason, then the rest of the poll
        (its quarantined records and cursor), so that one record never stalls its source."""
        stored, refused, parts = [], [], []
        for e in result.events:
            try:
                parts.append(ingest(name, PollResult(events=[e]), now))
                stored.append(e)
            except Exception as exc:
                if not refused_value(exc):
                    raise
                reason = f"{e.event_id[:80]}: the database refused it: {refusal_reason(exc)}"
                refused.append(Quarantined(name, reason, {"event": e.to_json(), "raw": e.raw}))
        rest = replace(result, events=[], quarantined=[*result.quarantined, *refused])
        parts.append(ingest(name, rest, now))
        counts = IngestCounts(sum(c.inserted for c in parts), sum(c.duplicates for c in parts),
                              sum(c.quarantined for c in parts),
                              tuple(e for c in parts for e in c.new_events),
                              tuple(q for c in parts for q in c.refused),
                              tuple(q for c in parts for q in c.repeated))
        return counts, replace(rest, events=stored)

    def _kept(self, name: str, result: PollResult) -> PollResult:
        """The region's part of ``result`` (the source is acknowledged the whole of it)."""
        if self.scope is None:
            return result
        kept, left = self.scope(result)
        if left:
            self.metrics.events_other_region.labels(name).inc(left)
        return kept

    def health(self, name: str, now: datetime, error: str) -> None:
        """Record the source's health for the board (``health:<name>``): whether its last poll
        succeeded, when one last did, and the last error. Never raises."""
        ok = not error
        before = self._health.get(name)
        if before is not None and before[:2] == (ok, error) and \
                (now - before[2]).total_seconds() < HEALTH_EVERY_SECONDS:
            return
        problem = write_health(self.store, name, now, error)
        if problem is None:
            self._health[name] = (ok, error, now)
        else:  # the board shows an older state; polling goes on
            self.log.warning("health_write_failed", source=name, error=problem)

    def _count(self, name: str, result: PollResult, counts: IngestCounts, now: datetime,
               seconds: float) -> None:
        m = self.metrics
        m.events.labels(name).inc(counts.inserted)
        m.duplicates.labels(name).inc(counts.duplicates)
        m.quarantined.labels(name).inc(counts.quarantined)
        m.polls.labels(name, "not_modified" if result.not_modified else "ok").inc()
        m.last_success.labels(name).set(now.timestamp())
        self.last_success = now
        m.poll_duration.labels(name).observe(seconds)
        again = {id(q) for q in counts.repeated}  # kept already today: its row counts it
        for q in (*result.quarantined, *counts.refused):
            if id(q) not in again:
                self.log.warning("quarantined", source=name, reason=q.reason)
        if counts.inserted or counts.quarantined:
            self.log.info("polled", source=name, new=counts.inserted, at=now.isoformat(),
                          duplicates=counts.duplicates, quarantined=counts.quarantined)

    def _failed(self, source: Source, now: datetime, reason: str, raw: Any) -> None:
        reason = redact(reason)
        self.log.error("poll_failed", source=source.name, reason=reason)
        self.health(source.name, now, reason)
        self.metrics.polls.labels(source.name, "error").inc()
        if raw is not None:
            try:
                if self.store.quarantine(Quarantined(source.name, reason, raw), now):
                    self.metrics.quarantined.labels(source.name).inc()
            except Exception as exc:
                self.log.error("quarantine_failed", source=source.name, error=redact(repr(exc)))


def start_failure(exc: BaseException) -> str:
    """Why a source's start failed, in a line: a file system error names its path and its
    cause (``[Errno 20] Not a directory: '/srv/drop/done'``), anything else its type too."""
    if isinstance(exc, SourceError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
