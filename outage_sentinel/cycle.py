"""One cycle of every stage in turn, as ``run --once``, the tests and the benchmarks drive the
daemon: poll every source, fold the events into incidents, run the lifecycle checks, deliver
everything that is due."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from outage_sentinel.delivery import Deliverer
from outage_sentinel.lifecycle_clock import LifecycleClock
from outage_sentinel.poller import Poller
from outage_sentinel.processing import IncidentProcessor
from outage_sentinel.sources.base import Source

#: Delivery rounds in one cycle at most (retries scheduled in the future are not due now).
MAX_DELIVERY_ROUNDS = 1000


@dataclass
class CycleReport:
    """What one cycle did (``run --once`` prints it)."""

    polled: int = 0
    failed_polls: int = 0
    events: int = 0
    quarantined: int = 0
    processed: int = 0
    delivered: int = 0


def run_cycle(sources: Sequence[Source], poller: Poller, processor: IncidentProcessor,
              clock_stage: LifecycleClock, deliverer: Deliverer,
              clock: Callable[[], datetime]) -> CycleReport:
    report = CycleReport()
    for source in sources:
        result = poller.poll(source, clock())
        report.polled += 1
        if result is None:
            report.failed_polls += 1
        else:
            report.events += len(result.events)
            report.quarantined += len(result.quarantined)
    report.processed = processor.process(clock())
    clock_stage.run_once(clock())
    for _ in range(MAX_DELIVERY_ROUNDS):
        n = deliverer.run_once(clock())
        report.delivered += n
        if n == 0:
            break
    return report
