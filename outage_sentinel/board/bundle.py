"""The board's incident core on the topology bundle in use, localising as the daemon does.

The board reads the topology per request (``outage-sentinel board`` reloads it on SIGHUP; inside
``outage-sentinel run`` it is the daemon's, swapped by :meth:`Daemon.reload_topology`). Its
actions must run on that same bundle: :class:`BundleCore` gives the core built on it, and
builds it afresh — planner, lifecycle and processor, with the region's feeders in the new
bundle, as the daemon's reload switches its own — the first time it is asked after a reload,
or after the daemon's refit kept new localiser parameters in the store (its re-estimates,
``device --clear``, are then the daemon's). An action under way finishes on the core it
began with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config
from outage_sentinel.metrics import Metrics
from outage_sentinel.refit_job import REFIT_KEY
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


def refit_stamp(store: Store) -> Callable[[], object]:
    """When the daemon's last refit was kept in ``store`` (``None``: none yet)."""
    def stamp() -> object:
        kept = store.kv_get(REFIT_KEY)
        return kept.get("at") if isinstance(kept, dict) else None
    return stamp


class BundleCore:
    """Call it for the core on the bundle ``topology()`` gives now, with the refit
    ``stamp()`` says is the last (None: not followed)."""

    def __init__(self, build: Callable[[Topology], Core],
                 topology: Callable[[], Topology],
                 stamp: Callable[[], object] = lambda: None) -> None:
        self.build, self.topology, self.stamp = build, topology, stamp
        self._lock = threading.Lock()  # requests run on several worker threads
        first = (topology(), stamp())
        #: What the core was built on (the bundle, the refit), and the core.
        self._current: tuple[tuple[Topology, object], Core] = (first, build(first[0]))

    def __call__(self) -> Core:
        now_on = (self.topology(), self.stamp())
        on, core = self._current
        if now_on[0] is on[0] and now_on[1] == on[1]:
            return core
        with self._lock:  # one build per reload or refit, whoever asks first
            on, core = self._current
            if not (now_on[0] is on[0] and now_on[1] == on[1]):
                core = self.build(now_on[0])
                self._current = (now_on, core)
            return core
