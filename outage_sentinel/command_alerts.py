"""Alerts for the command centre that belong to no incident step: the daily report, a notice
that could not be delivered, a notice template that failed. Each goes once (its outbox key)."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

from outage_sentinel import reports
from outage_sentinel.lifecycle import Lifecycle
from outage_sentinel.logs import mask_phones
from outage_sentinel.region import id_part, region_feeders


class CommandAlerts:
    """Queues the command centre's alerts through the lifecycle's command-centre rows."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    def _queue(self, incident_id: str, revision: int, purpose: str, body: str,
               now: datetime) -> int:
        life = self.lifecycle
        with life.store.transaction() as conn:
            return life.store.enqueue_in(
                conn, life.command_rows_for(incident_id, revision, purpose, body), now)

    @property
    def _zh(self) -> bool:
        return self.lifecycle.planner.renderer.language == "zh"

    def daily_report(self, now: datetime) -> int:
        """Queue yesterday's report summary for the command centre (once per day)."""
        life = self.lifecycle
        if life.config.command_centre.channel is None:
            return 0
        tz = life.planner.tz
        day = reports.yesterday(now, tz)
        start, end = reports.day_period(day, tz)
        report = reports.build_report(life.store, life.topology, start, end, tz, now,
                                      region_feeders(life.config.region, life.topology))
        return self._queue(f"REPORT-{id_part(life.store.region)}{day:%Y%m%d}", 0,
                           "daily_report", reports.daily_report_message(report), now)

    def dead_letter_notice(self, row: Any, reason: str, now: datetime) -> None:
        """The deliverer's dead-letter hook: every dead letter is shown to the command centre,
        but not one about itself."""
        if row.audience != "command":
            self.dead_letter(row, reason, now)

    def dead_letter(self, row: Any, reason: str, now: datetime) -> int:
        """Tell the command centre a notice could not be delivered (who, why)."""
        if self.lifecycle.config.command_centre.channel is None:
            return 0
        target, why = mask_phones(row.target), mask_phones(reason)
        body = (f"【投递失败】{row.incident_id} 的{row.purpose}通知未能送达"
                f"（{row.channel}：{target}）。原因：{why}。请人工联系。"
                if self._zh else
                f"[Undelivered] {row.purpose} notice of {row.incident_id} to {row.channel}:"
                f"{target} failed: {why}. Please follow up by hand.")
        # Revision = the dead row's id: one notice per dead letter.
        return self._queue(row.incident_id, int(row.id), "dead_letter", body, now)

    def template_alert(self, incident_id: str | None, template: str, where: str, error: str,
                       now: datetime) -> int:
        """Tell the command centre an override template failed and the built-in one was used
        (once per incident and template: the outbox key holds a hash of the template name)."""
        body = (f"【模板错误】通知模板 {where} 渲染失败：{error}。通知已改用内置模板发出；"
                "请修正该模板并运行 outage-sentinel check。"
                if self._zh else
                f"[Template error] notice template {where} failed: {error}. The notice went "
                "out with the built-in template; fix the template and run outage-sentinel check.")
        revision = zlib.crc32(template.encode("utf-8")) & 0x7FFFFFFF
        return self._queue(incident_id or f"TEMPLATE-{now:%Y%m%d}", revision,
                           "template_failed", body, now)
