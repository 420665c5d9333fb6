"""The board's reports page: the daily / weekly / any-range report the ``report`` verb writes,
viewed in the browser (the same self-contained HTML with its charts) or downloaded as XLSX or
as a ZIP of the CSV tables."""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from outage_sentinel import report_view, reports
from outage_sentinel.events import EARLIEST, LATEST
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology

PERIODS = ("daily", "weekly", "range")
MEDIA = {"html": "text/html; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "csv": "application/zip"}


#: The days a report may cover: those of the times the store holds (the local midnights
#: around them, and a week after, are times this system can hold and compare).
FIRST_DAY = EARLIEST.date()
LAST_DAY = LATEST.date() - timedelta(days=1)


class ReportRequestError(ValueError):
    """A period or format the page cannot use (the message names the parameter)."""


@dataclass(frozen=True)
class ReportRequest:
    period: str
    first: date | None
    last: date | None
    fmt: str

    def span(self, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
        """``[start, end)``: a day (default yesterday), a Monday–Sunday week (default the last
        full one), or a range of days (both included; the last defaults to today)."""
        if self.period == "daily":
            return reports.day_period(self.first or reports.yesterday(now, tz), tz)
        if self.period == "weekly":
            return reports.week_period(self.first or reports.last_full_week(now, tz), tz)
        if self.first is None:
            raise ReportRequestError("from: required for a range")
        return reports.range_period(self.first, self.last or now.astimezone(tz).date(), tz)


def parse(params: dict[str, str]) -> ReportRequest:
    period = params.get("period") or "daily"
    if period not in PERIODS:
        raise ReportRequestError(f"period: one of {', '.join(PERIODS)}")
    fmt = params.get("format") or "html"
    if fmt not in report_view.FORMATS:
        raise ReportRequestError(f"format: one of {', '.join(report_view.FORMATS)}")
    return ReportRequest(period, _day(params, "from"), _day(params, "to"), fmt)


def _day(params: dict[str, str], key: str) -> date | None:
    text = params.get(key) or ""
    return report_day(text, key) if text else None


def report_day(text: str, name: str = "") -> date:
    """A report's day, ``YYYY-MM-DD`` from :data:`FIRST_DAY` to :data:`LAST_DAY`; else a
    :class:`ReportRequestError` naming ``name`` (the parameter or option) and what it takes."""
    where = f"{name}: " if name else ""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ReportRequestError(f"{where}a date YYYY-MM-DD, not {text!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ReportRequestError(f"{where}{day.isoformat()} is out of range: a day from "
                                 f"{FIRST_DAY} to {LAST_DAY}")
    return day


def render(request: ReportRequest, store: Store, topology: Topology, now: datetime,
           tz: tzinfo, language: str, feeders: frozenset[str] | None = None
           ) -> tuple[bytes, str, str]:
    """The report as (body, media type, file name), of the region's ``feeders`` (``None``:
    the whole bundle)."""
    start, end = request.span(now, tz)
    report = reports.build_report(store, topology, start, end, tz, now, feeders)
    last = (end.astimezone(tz) - timedelta(microseconds=1)).date()
    first = start.astimezone(tz).date()
    name = f"report-{request.period}-{first}" + (f"_{last}" if last != first else "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.{request.fmt}"
        written = report_view.write_report(report, request.fmt, out, language)
        if request.fmt != "csv":
            return out.read_bytes(), MEDIA[request.fmt], out.name
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, path.name)
        return buffer.getvalue(), MEDIA["csv"], f"{name}.zip"
