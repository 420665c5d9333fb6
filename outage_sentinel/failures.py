"""Events whose processing failed: retried, then quarantined (:class:`ProcessingFailures`).

A failure is a bug in our code, not in the payload (one the sources sent wrong is refused as
it comes): the event is retried at the next runs, and after :data:`MAX_PROCESSING_FAILURES`
it is quarantined — its event row stays stored, nothing accepted is lost — until the operator
puts it back (``quarantine retry``) once the bug is fixed. Nothing retries it by itself, so a
bug still there cannot fail it at every restart unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from outage_sentinel.events import Quarantined
from outage_sentinel.logs import redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import Store, StoredEvent
from outage_sentinel.store.events import PROCESSING_FAILED

#: Give up processing an event after this many failures (it is quarantined, not lost).
MAX_PROCESSING_FAILURES = 3


class ProcessingFailures:
    """The processor's count of failures per stored event (in memory: a restart starts it
    afresh for the events not quarantined yet)."""

    def __init__(self, store: Store, metrics: Metrics, log: Any) -> None:
        self.store, self.metrics, self.log = store, metrics, log
        #: events row id -> failures so far
        self.counts: dict[int, int] = {}

    def due(self, fetched: Sequence[StoredEvent]) -> list[StoredEvent]:
        """Those of ``fetched`` still to be tried (one quarantined since is processed)."""
        return [s for s in fetched if self.counts.get(s.row_id, 0) < MAX_PROCESSING_FAILURES]

    def clear(self, stored: StoredEvent) -> None:
        """``stored`` was processed: its count is gone."""
        self.counts.pop(stored.row_id, None)

    def failed(self, stored: StoredEvent, exc: Exception, now: datetime) -> None:
        """Count a processing failure; after a few, quarantine the event and stop retrying.
        Its quarantine row names the event (``event_row``): once the bug is fixed the
        operator puts it back (``quarantine retry``, :meth:`~outage_sentinel.store.events.
        EventStore.requeue_quarantined`), and the count starts afresh."""
        event = stored.event
        n = self.counts.get(stored.row_id, 0) + 1
        self.counts[stored.row_id] = n
        self.metrics.processing_errors.inc()
        if n < MAX_PROCESSING_FAILURES:
            return
        try:
            with self.store.transaction() as conn:
                self.store.quarantine_in(conn, Quarantined(
                    event.source, f"{PROCESSING_FAILED} {n} times: "
                    f"{redact(type(exc).__name__ + ': ' + str(exc))}",
                    {"event_row": stored.row_id, **event.to_json()}), now)
                self.store.mark_processed_in(conn, stored.row_id, None)
        except Exception:
            self.log.exception("quarantine_failed", source=event.source, event_id=event.event_id)
            return
        self.clear(stored)  # processed now; put back, it tries afresh
        self.log.error("event_quarantined", source=event.source, event_id=event.event_id,
                       event_row=stored.row_id, failures=n,
                       retry="outage-sentinel quarantine list; quarantine retry ID")
