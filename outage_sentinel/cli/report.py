"""``outage-sentinel report daily|weekly|range``: reliability reports from the daemon's database.

::

    outage-sentinel report daily  [--date DATE]                     default: yesterday
    outage-sentinel report weekly [--week-of DATE]                  default: last full Mon–Sun
    outage-sentinel report range  --from DATE [--to DATE]           both days included;
                                                                    --to defaults to today
    common: [--format csv|xlsx|html] (default html) [--out PATH]

Dates are local calendar days in the config's ``timezone``. Without ``--out`` the file is
``report-<verb>-<first day>[_<last day>].<format>`` in the current directory. The paths written
are printed, one per line. Reads only; safe while the daemon runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel import report_view, reports
from outage_sentinel.region import RegionError, region_feeders


def _date(text: str) -> date:
    """A report's day (argparse names the option): see
    :func:`~outage_sentinel.board.report_pages.report_day`."""
    from outage_sentinel.board.report_pages import ReportRequestError, report_day

    try:
        return report_day(text)
    except ReportRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_verbs(sub: Any) -> None:
    """Add ``report daily|weekly|range`` to the CLI's subparsers."""
    rep = sub.add_parser("report", help="reliability reports (customer-hours, AIHC-1, RS-1)")
    rsub = rep.add_subparsers(dest="report_verb", metavar="PERIOD")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=list(report_view.FORMATS), default="html",
                       help="output format (default: html)")
        p.add_argument("--out", help="output file (csv: also <stem>_<table>.csv next to it)")
        p.add_argument("--lang", choices=["zh", "en"], default=None,
                       help="language of the html/xlsx report (default: notify.language)")

    daily = rsub.add_parser("daily", help="one local day (default: yesterday)")
    daily.add_argument("--date", type=_date, help="the day, YYYY-MM-DD")
    common(daily)
    weekly = rsub.add_parser("weekly", help="a Monday–Sunday week (default: the last full one)")
    weekly.add_argument("--week-of", dest="week_of", type=_date,
                        help="any day of the week, YYYY-MM-DD")
    common(weekly)
    rng = rsub.add_parser("range", help="from one day to another, both included")
    rng.add_argument("--from", dest="date_from", type=_date, required=True, help="first day")
    rng.add_argument("--to", dest="date_to", type=_date, help="last day (default: today)")
    common(rng)


def period_of(args: argparse.Namespace, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The ``[start, end)`` the parsed arguments ask for (raises ValueError if inverted)."""
    verb = args.report_verb
    if verb == "daily":
        return reports.day_period(args.date or reports.yesterday(now, tz), tz)
    if verb == "weekly":
        return reports.week_period(args.week_of or reports.last_full_week(now, tz), tz)
    if verb == "range":
        return reports.range_period(args.date_from, args.date_to or now.astimezone(tz).date(), tz)
    raise ValueError(f"unknown report period {verb!r}")


def default_path(verb: str, start: datetime, end: datetime, tz: tzinfo, fmt: str) -> Path:
    """``report-<verb>-<first>[_<last>].<fmt>``."""
    first = start.astimezone(tz).date()
    last = (end.astimezone(tz) - timedelta(microseconds=1)).date()
    span = first.isoformat() if first == last else f"{first.isoformat()}_{last.isoformat()}"
    return Path(f"report-{verb}-{span}.{fmt}")


def dispatch(args: argparse.Namespace, now: datetime | None = None) -> int:
    """Run ``report ...``; returns the CLI exit code (see :mod:`outage_sentinel.cli`)."""
    from outage_sentinel.cli import (
        EXIT_CONFIG,
        EXIT_TOPOLOGY,
        EXIT_USAGE,
        config_from_args,
        topology_from_config,
    )

    if getattr(args, "report_verb", None) is None:
        print("usage: outage-sentinel report daily|weekly|range [options] (see --help)",
              file=sys.stderr)
        return EXIT_USAGE
    config = config_from_args(args)
    if config is None:
        return EXIT_CONFIG
    tz = ZoneInfo(config.timezone)
    now = now or datetime.now(UTC)
    try:
        start, end = period_of(args, now, tz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    topology = topology_from_config(config)
    if topology is None:
        return EXIT_TOPOLOGY
    try:
        region_feeders(config.region, topology)
    except RegionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    report = _read_report(config, topology, start, end, tz, now)
    if isinstance(report, int):
        return report
    return _write_report(args, config, report, start, end, tz)


def _read_report(config: Any, topology: Any, start: datetime, end: datetime, tz: tzinfo,
                 now: datetime) -> reports.Report | int:
    """The report read from the migrated store, or the exit code of a database error (its
    message printed, secrets redacted)."""
    from outage_sentinel.cli import EXIT_DATABASE
    from outage_sentinel.store import Store

    try:
        store = Store(config.database_url(), region=config.region.name)
        try:
            store.migrate()
            return reports.build_report(store, topology, start, end, tz, now,
                                        region_feeders(config.region, topology))
        finally:
            store.close()
    except Exception as exc:
        if "sqlalchemy" not in type(exc).__module__:
            raise
        from outage_sentinel.logs import redact

        print(f"error: database: {redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return EXIT_DATABASE


def _write_report(args: argparse.Namespace, config: Any, report: reports.Report,
                  start: datetime, end: datetime, tz: tzinfo) -> int:
    """Write the report where ``--out`` (or the default path) says and print the paths
    written; the exit code."""
    from outage_sentinel.cli import EXIT_OK, EXIT_PROBLEMS

    out = Path(args.out) if args.out else default_path(args.report_verb, start, end, tz,
                                                        args.format)
    try:
        written = report_view.write_report(report, args.format, out,
                                       args.lang or config.notify.language)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    for path in written:
        print(path)
    return EXIT_OK
