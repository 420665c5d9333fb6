"""The board's incident core on the topology bundle in use.

The board reads the topology per request (``outage-sentinel board`` reloads it on SIGHUP; inside
``outage-sentinel run`` it is the daemon's, swapped by :meth:`Daemon.reload_topology`). Its
actions must run on that same bundle: :class:`BundleCore` gives the core built on it, and
builds it afresh — planner, lifecycle and processor, with the region's feeders in the new
bundle, as the daemon's reload switches its own — the first time it is asked after a reload.
An action under way finishes on the core it began with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config
from outage_sentinel.metrics import Metrics
from outage_sentinel.region import RegionError, region_feeders
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology


def core_builder(config: Config, store: Store, clock: Callable[[], datetime]
                 ) -> Callable[[Topology], Core]:
    """Builds the board's core on a bundle: :func:`build_core`, its processor counting the
    region's feeders in that bundle (:meth:`IncidentProcessor.use_topology`, as the daemon's
    does; every feeder when the bundle lacks the region, which a reload refuses)."""
    metrics = Metrics()  # one registry for every core the board builds

    def build(topology: Topology) -> Core:
        core = build_core(config, store, topology, metrics=metrics, clock=clock)
        try:
            feeders = region_feeders(config.region, topology)
        except RegionError:
            feeders = None
        with core.processor.lock:
            core.processor.use_topology(topology, core.planner, feeders)
        return core
    return build


class BundleCore:
    """Call it for the core on the bundle ``topology()`` gives now."""

    def __init__(self, build: Callable[[Topology], Core],
                 topology: Callable[[], Topology]) -> None:
        self.build, self.topology = build, topology
        self._lock = threading.Lock()  # requests run on several worker threads
        first = topology()
        #: The bundle and the core built on it, replaced together.
        self._current: tuple[Topology, Core] = (first, build(first))

    def __call__(self) -> Core:
        topology = self.topology()
        on, core = self._current
        if topology is on:
            return core
        with self._lock:  # one build per reload, whoever asks first
            on, core = self._current
            if topology is not on:
                core = self.build(topology)
                self._current = (topology, core)
            return core
