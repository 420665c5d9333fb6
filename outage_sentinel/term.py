"""A leader's term: what a node does when it takes the lead (restore the source cursors, the AMI
screen and the messages a previous process or leader left in flight) and when it loses it
(stop consuming; the next term starts from the database again).

Only a term exports the region's state in the metrics (``metrics.py``, per leader): it begins
with each source's last success as the store knows it (``health:<source>``'s ``last_ok``, else
the term's start), so the stale-source alert counts from there for a source that does not
succeed in this term; it ends with none of it exported.

A term's beginning runs inside the lease's renewal, so nothing in it may wait long nor stop
it: a source that connects to a broker is started at its first poll (its start may wait for
the broker), and a step that fails (a source whose ``done/`` cannot be made, a screen that
cannot be read) is logged and made again at the next poll, the rest of the term going on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from outage_sentinel.delivery import Deliverer
from outage_sentinel.logs import redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.poller import PendingStarts, start_failure, write_health
from outage_sentinel.screening import AmiScreener
from outage_sentinel.sources.base import Source
from outage_sentinel.sources.capabilities import Connected
from outage_sentinel.store import Store
from outage_sentinel.supervisor import close_all


class Term:
    def __init__(self, store: Store, sources: Sequence[Source], screener: AmiScreener,
                 deliverer: Deliverer, metrics: Metrics, region: str,
                 clock: Callable[[], datetime], log: Any,
                 starts: PendingStarts | None = None) -> None:
        self.store, self.sources, self.screener = store, sources, screener
        #: Starts left to the sources' first polls (the daemon's poller makes them).
        self.starts = starts or PendingStarts()
        self.deliverer, self.metrics, self.region = deliverer, metrics, region
        self.clock, self.log = clock, log
        #: Whether this node is in a term (polling and sending).
        self.active = False
        #: Counts the terms begun and ended: a start made for an earlier one is undone.
        self.number = 0
        #: Whether the AMI screen was loaded for this term (its sources wait for it).
        self.screen_loaded = False
        self._lock = threading.Lock()

    def begin(self, **facts: Any) -> None:
        """From here on this node polls and sends (idempotent)."""
        if self.active:
            return
        with self._lock:
            self.number += 1
            number = self.number
        self.metrics.begin_term()
        self._step("last_success", self._last_success)
        self.screen_loaded = self._step("ami_screen", self.screener.load)
        failed = [s.name for s in self.sources if not self._start(s, number)]
        self._step("outbox_recovery", self.deliverer.recover)
        self.metrics.leader.labels(self.region).set(1)
        self.active = True
        self.log.info("started", sources=[s.name for s in self.sources], region=self.region,
                      **({"not_started": failed} if failed else {}), **facts)

    def end(self) -> None:
        """Deposed (or a standby from the start): nothing is consumed any more, and none of
        the region's state is exported (a standby's frozen values would alert and add up)."""
        self.metrics.leader.labels(self.region).set(0)
        self.metrics.end_term()
        with self._lock:
            self.number += 1
        for source in self.sources:
            self.starts.drop(source.name)
        if self.active:
            self.active = False
            close_all(self.sources, "source", self.log)
            self.log.warning("deposed", region=self.region)

    def changed(self, leader: bool, **facts: Any) -> None:
        """The leadership's callback."""
        if leader:
            self.begin(**facts)
        else:
            self.end()

    def _step(self, name: str, step: Callable[[datetime], Any]) -> bool:
        """One step of the beginning; a failure is logged (``term_step_failed``), not raised:
        the term goes on without it (the screen is loaded again before its sources' first
        poll; messages left in flight are settled by the deliverer's sweep)."""
        try:
            step(self.clock())
            return True
        except Exception as exc:
            self.log.error("term_step_failed", step=name, region=self.region,
                           error=redact(repr(exc)))
            return False

    def _last_success(self, now: datetime) -> None:
        """Each source's last successful poll as the store knows it (whichever node made it),
        else ``now``: a source that does not succeed in this term is stale from here (also
        when the store cannot be read: the failure is raised after, for the step's log)."""
        failed: Exception | None = None
        for source in self.sources:
            try:
                health = self.store.kv_get(f"health:{source.name}")
            except Exception as exc:
                health, failed = None, exc
            self.metrics.last_success.labels(source.name).set(last_ok(health, now).timestamp())
        if failed is not None:
            raise failed

    def _start(self, source: Source, number: int) -> bool:
        """Start ``source`` now, or leave its start to its first poll: one that connects to a
        broker (it may wait for it), one whose screen is not loaded, and one whose start
        failed (logged ``source_start_failed``, its health recorded). False for the last."""
        def start() -> None:
            self._start_now(source, number)

        if isinstance(source, Connected) or not self._screen_ready(source):
            self.starts.defer(source.name, start)
            return True
        try:
            start()
            return True
        except Exception as exc:
            reason = redact(f"start failed: {start_failure(exc)}")
            self.log.error("source_start_failed", source=source.name, reason=reason)
            write_health(self.store, source.name, self.clock(), reason)
            self.starts.defer(source.name, start)
            return False

    def _screen_ready(self, source: Source) -> bool:
        return self.screen_loaded or source.name not in self.screener.sources

    def _start_now(self, source: Source, number: int) -> None:
        """Start ``source`` with its stored cursor (loading the screen first if its reports
        are screened and the screen could not be loaded); a start made after its term ended
        is undone."""
        if not self._screen_ready(source):
            self.screener.load(self.clock())
            self.screen_loaded = True
        source.start(self.store.kv_get(f"cursor:{source.name}"))
        with self._lock:
            current = self.number == number
        if not current:
            close_all([source], "source", self.log)


def last_ok(health: Any, default: datetime) -> datetime:
    """When a health record (``poller.write_health``) says its source last succeeded;
    ``default`` when it says nothing readable."""
    value = health.get("last_ok") if isinstance(health, dict) else None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return default
    return when if when is not None and when.tzinfo is not None else default
