"""Optional capabilities of a source, as Protocols (checked with ``isinstance``).

A source implements :class:`~outage_sentinel.sources.base.Source`; some also:

* :class:`TopologyAware` — resolves references itself (AMI sources map meters to areas) and
  must be told when the bundle is reloaded;
* :class:`Buffering` — receives in the background (MQTT) and reports how much is waiting, so
  the poller drains a storm's backlog at once instead of one batch per interval;
* :class:`Connected` — a streaming source reports whether it is connected;
* :class:`Snapshotting` — a snapshot feed (``http_json``) reports the polls it could not
  infer restorations from, for the metrics.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from outage_sentinel.topology import Topology


@runtime_checkable
class TopologyAware(Protocol):
    def update_topology(self, topology: Topology) -> None:
        """Use a reloaded bundle from the next poll on."""


@runtime_checkable
class Buffering(Protocol):
    @property
    def buffered(self) -> int:
        """Messages received and not yet polled."""


@runtime_checkable
class Connected(Protocol):
    @property
    def connected(self) -> bool:
        """Whether the source is connected to its broker now (streaming sources)."""


@runtime_checkable
class Snapshotting(Protocol):
    @property
    def incomplete_polls(self) -> int:
        """Polls so far that saw less than the whole list (no record was ended from them)."""

    @property
    def held_polls(self) -> int:
        """Polls in a row, now, that held back a record gone from the list."""
