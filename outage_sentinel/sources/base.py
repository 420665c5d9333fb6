"""The source interface: every outage source (HTTP feed, replay, MQTT, file drop) implements it.

The daemon calls :meth:`Source.poll` on the source's interval, persists the returned events,
quarantined payloads and cursor in one transaction, and only then calls
:meth:`Source.acknowledge` — so a source that must confirm receipt upstream (an MQTT QoS 1
message, a file to move to ``done/``) does it only once nothing can be lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from outage_sentinel.events import PollResult


class SourceError(Exception):
    """A poll failed as a whole (HTTP 500, timeout, unreadable body). The message names why."""

    #: The payload that failed, kept for the quarantine (``None``: nothing worth keeping).
    raw: Any = None


class SourceConfigError(ValueError):
    """A source cannot be built from its config (a TLS file that does not load, ...); the
    message names the source and the key (``sources (ami).ca_file: ...``)."""


@runtime_checkable
class Source(Protocol):
    """An outage source. Implementations must not raise for one bad record: quarantine it."""

    name: str
    #: The config ``type`` of this source (``http_json``, ``replay``, ``mqtt``, ...), used as a
    #: low-cardinality metrics label.
    type: str

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        """Called once before the first poll with the cursor persisted by the last run."""

    def poll(self, now: datetime) -> PollResult:
        """Fetch what is new. Raise :class:`SourceError` when the whole poll failed."""

    def acknowledge(self, result: PollResult) -> None:
        """Called after ``result`` has been committed to the store."""

    def close(self) -> None:
        """Release connections; called on shutdown."""
