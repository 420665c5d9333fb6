"""The lifecycle clock: deadline, reminder and storm checks, and template alerts (a daemon stage).

The clock-driven half of :class:`outage_sentinel.lifecycle.Lifecycle` run on a schedule:
planned-outage reminders, crew arrival deadlines at risk escalated to the command centre, a
village's expected restoration time gone by while it is still off followed up once per time
told (:mod:`outage_sentinel.overruns`: the village told the time has passed, the command
centre alerted), the "power back" notices held back while another incident kept the village
dark, once they are true (:mod:`outage_sentinel.held_notices`), the storm gauge. It also
collects the override templates that failed while rendering (the built-in one was used) and
tells the command centre, once per incident and template — outside the transaction that
rendered the notice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from outage_sentinel.command_alerts import CommandAlerts
from outage_sentinel.held_notices import HeldNotices
from outage_sentinel.liaison import TemplateFailure
from outage_sentinel.lifecycle import Lifecycle
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import Store
from outage_sentinel.triage import STORM_KEY, storm_declared


@dataclass
class ClockReport:
    """What one :meth:`LifecycleClock.run_once` did."""

    storm: bool = False
    template_alerts: int = 0


class LifecycleClock:
    """Runs the lifecycle's clock checks; collects template failures for alerting."""

    def __init__(self, lifecycle: Lifecycle, store: Store, metrics: Metrics,
                 lock: threading.Lock | None = None) -> None:
        self.lifecycle = lifecycle
        self.store = store
        self.metrics = metrics
        self.log = get_logger(component="lifecycle_clock")
        self.pending: list[TemplateFailure] = []
        self.held = HeldNotices(lifecycle, lock)
        self.alerts = CommandAlerts(lifecycle)

    def template_failed(self, failure: TemplateFailure) -> None:
        """The renderer's failure callback: count now, alert at the next run."""
        self.metrics.template_failures.labels(failure.name).inc()
        self.pending.append(failure)

    def run_once(self, now: datetime) -> ClockReport:
        """Deadline, reminder and overrun checks, held "power back" notices now true, the
        storm gauge, then the template alerts."""
        self.lifecycle.check(now)
        self.held.release(now)
        self.metrics.deadline_at_risk.set(self.lifecycle.at_risk)
        storm = storm_declared(self.store.kv_get(STORM_KEY), now)
        self.metrics.storm_declared.set(int(storm))
        return ClockReport(storm=storm, template_alerts=self.alert_templates(now))

    def alert_templates(self, now: datetime) -> int:
        """Tell the command centre of each failed template, once per incident and template."""
        pending, self.pending = self.pending, []
        seen: set[tuple[str | None, str]] = set()
        for f in pending:
            if (f.incident_id, f.name) in seen:
                continue
            seen.add((f.incident_id, f.name))
            try:
                self.alerts.template_alert(f.incident_id, f.name, f.where, f.error, now)
            except Exception as exc:  # the notice itself went out; the alert is extra
                self.log.error("template_alert_failed", error=redact(repr(exc)))
        return len(seen)
