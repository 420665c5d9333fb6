"""A leader's term: what a node does when it takes the lead (restore the source cursors, the AMI
screen and the messages a previous process or leader left in flight) and when it loses it
(stop consuming; the next term starts from the database again)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AmiScreener
from outage_sentinel.sources.base import Source
from outage_sentinel.store import Store
from outage_sentinel.supervisor import close_all


class Term:
    def __init__(self, store: Store, sources: Sequence[Source], screener: AmiScreener,
                 deliverer: Deliverer, metrics: Metrics, region: str,
                 clock: Callable[[], datetime], log: Any) -> None:
        self.store, self.sources, self.screener = store, sources, screener
        self.deliverer, self.metrics, self.region = deliverer, metrics, region
        self.clock, self.log = clock, log
        #: Whether this node is in a term (polling and sending).
        self.active = False

    def begin(self, **facts: Any) -> None:
        """From here on this node polls and sends (idempotent)."""
        if self.active:
            return
        self.screener.load(self.clock())
        for source in self.sources:
            source.start(self.store.kv_get(f"cursor:{source.name}"))
        self.deliverer.recover(self.clock())
        self.metrics.leader.labels(self.region).set(1)
        self.active = True
        self.log.info("started", sources=[s.name for s in self.sources], region=self.region,
                      **facts)

    def end(self) -> None:
        """Deposed (or a standby from the start): nothing is consumed any more."""
        self.metrics.leader.labels(self.region).set(0)
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
