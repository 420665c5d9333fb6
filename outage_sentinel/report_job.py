"""The daily report job: the command centre's report at ``command_centre.daily_report_at``."""

from __future__ import annotations

from datetime import datetime

from outage_sentinel.command_alerts import CommandAlerts
from outage_sentinel.lifecycle import Lifecycle


class ReportJob:
    """Queues the daily report for the command centre (a daemon stage)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.alerts = CommandAlerts(lifecycle)

    def run_once(self, now: datetime) -> int:
        """Queue yesterday's report (once per day); returns the messages queued."""
        return self.alerts.daily_report(now)
