"""The daily report job: the command centre's report at ``command_centre.daily_report_at``.

The scheduled job only fires inside a running process, so a daemon that was down (or a standby
that took over) at that time would never send the day's report: :meth:`ReportJob.catch_up`,
run when a node starts leading, and again after the day's job failed (the database busy past
its timeout, ...) until it succeeds, queues the most recent report that was due and is missing
(never a backlog). Both go through the report's outbox key (``REPORT-…YYYYMMDD``), so a report
already queued or sent, by this node or another, is never queued again."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

from outage_sentinel.command_alerts import CommandAlerts
from outage_sentinel.lifecycle import Lifecycle


def due_report_day(now: datetime, at: str, tz: tzinfo) -> date | None:
    """The day whose daily report (sent at local ``HH:MM`` ``at`` the day after) is due by
    ``now``: yesterday once today's ``at`` has passed, else None (today's job is still to
    come; the day before yesterday is never caught up)."""
    hh, mm = at.split(":")
    local = now.astimezone(tz)
    due = datetime.combine(local.date(), time(int(hh), int(mm)), tzinfo=tz)
    return local.date() - timedelta(days=1) if local >= due else None


class ReportJob:
    """Queues the daily report for the command centre (a daemon stage)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.alerts = CommandAlerts(lifecycle)

    def run_once(self, now: datetime) -> int:
        """Queue yesterday's report (once per day); returns the messages queued."""
        return self.alerts.daily_report(now)

    def catch_up(self, now: datetime, at: str) -> int:
        """On start (or takeover): queue yesterday's report if today's ``at`` (local time) has
        passed and it is not queued yet; returns the messages queued (0 when already queued
        or sent, or when ``at`` is still to come today)."""
        if due_report_day(now, at, self.alerts.lifecycle.planner.tz) is None:
            return 0
        return self.alerts.daily_report(now)
