"""AMI clock offsets: a source whose report times are read in the wrong zone. Pure: no I/O,
no clock reads (``now`` is passed in).

A meter/terminal stream that stamps its times without an offset in a zone other than the one
the daemon reads it in (a concentrator or head-end on UTC, the county read in Asia/Shanghai)
is off by a whole number of hours (a half hour for some zones), report after report: a live
outage at 10:00 is read as 02:00 and told to villages so. The screen cannot tell that from a
backlog by any one report; a stream can. :class:`ClockOffsets` watches, per source, how far
each report's time is from when it arrived (``offset = report time - arrival``) and flags the
source when most of a recent window sits at a steady offset close to a whole or half hour:

* **The window** (:class:`OffsetRule`): the reports that arrived in the last
  ``window_seconds`` (6 h), at most ``per_minute`` (10) of each arrival minute — a backlog
  uploaded in one burst weighs no more than a minute of a live stream — and at most
  ``max_samples`` (600, the newest) in all.
* **Judged** only when the window holds at least ``min_reports`` (20) reports whose arrivals
  span at least ``min_span_seconds`` (10 min): one burst, however large, is never a stream.
* **Flagged** when at least ``steady_share`` (80 %) of those lie within ``steady_seconds``
  (10 min) of their median, and the median is within ``near_seconds`` (10 min) of a whole or
  half hour between ``min_hours`` (1 h) and ``max_hours`` (14 h) either way: the offset (in
  hours) is that whole or half hour. Never within ±30 min of zero.
* **Cleared** when a judged window has fewer than ``clear_share`` (half) of its reports within
  30 min of the flagged offset (the times read right again, after the zone was set and the
  daemon restarted); a window at another zone offset moves the flag there. A source gone
  quiet keeps its flag: nothing says the times are right.

The board shows a flagged source with its offset and the key to set: the screen keeps one
record per flagged source in the store's kv, ``clock_offset:<source>``
(:data:`CLOCK_OFFSET_PREFIX`, :func:`offset_records`), removed when the flag clears.

Nothing is shifted: the command centre decides (the source's ``ami.timezone``). A stream
batched over more than ~20 minutes (hourly exports) is not steady by this measure and is not
flagged; neither is one concentrator of many on UTC (its share of the source is too small).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

HALF_HOUR = 1800.0
#: The kv key prefix of a flagged source's record for the board (``clock_offset:<source>``):
#: :func:`offset_record`, written with the screen state that raised the flag and removed in
#: the one that clears it (:func:`offset_records`).
CLOCK_OFFSET_PREFIX = "clock_offset:"
#: Reports within this of a flagged offset still count for it when deciding to clear it.
KEEP_SECONDS = 1800.0


@dataclass(frozen=True)
class OffsetRule:
    """How much of a stream, and how steady, before a source is flagged (module docstring)."""

    min_reports: int = 20
    min_span_seconds: float = 600.0
    window_seconds: float = 6 * 3600.0
    per_minute: int = 10
    max_samples: int = 600
    steady_share: float = 0.8
    steady_seconds: float = 600.0
    near_seconds: float = 600.0
    min_hours: float = 1.0
    max_hours: float = 14.0
    clear_share: float = 0.5


@dataclass(frozen=True)
class OffsetChange:
    """A source flagged (``hours``: the offset, report time minus arrival) or cleared
    (``hours`` ``None``; ``previous``: the offset it had)."""

    source: str
    hours: float | None
    previous: float | None
    #: Reports in the window judged, and their median offset (seconds).
    reports: int
    median_seconds: float


@dataclass
class SourceWindow:
    """One source's recent ``(arrival, offset)`` samples (epoch seconds, seconds)."""

    samples: deque[tuple[float, float]] = field(default_factory=deque)
    #: The arrival minute of the newest sample and how many were kept from it.
    minute: float = -1.0
    in_minute: int = 0


def zone_offset(offsets: list[float], rule: OffsetRule) -> float | None:
    """The whole or half hour (hours) ``offsets`` sit steadily at, or ``None``."""
    median = statistics.median(offsets)
    steady = sum(1 for o in offsets if abs(o - median) <= rule.steady_seconds)
    if steady < rule.steady_share * len(offsets):
        return None
    nearest = round(median / HALF_HOUR) * HALF_HOUR
    if abs(median - nearest) > rule.near_seconds:
        return None
    hours = nearest / 3600.0
    if not rule.min_hours <= abs(hours) <= rule.max_hours:
        return None
    return hours


def share_near(offsets: list[float], hours: float) -> float:
    """The share of ``offsets`` within :data:`KEEP_SECONDS` of ``hours``."""
    if not offsets:
        return 0.0
    return sum(1 for o in offsets if abs(o - hours * 3600.0) <= KEEP_SECONDS) / len(offsets)


class ClockOffsets:
    """Per-source clock-offset flags of AMI report streams (module docstring)."""

    def __init__(self, rule: OffsetRule | None = None) -> None:
        self.rule = rule or OffsetRule()
        self._windows: dict[str, SourceWindow] = {}
        self._flags: dict[str, float] = {}

    def observe(self, source: str, report: datetime, arrival: datetime) -> None:
        """Note one report of ``source`` timed ``report`` that arrived at ``arrival``."""
        a = arrival.timestamp()
        w = self._windows.get(source)
        if w is None:
            w = self._windows[source] = SourceWindow(deque(maxlen=self.rule.max_samples))
        minute = a // 60.0
        if minute != w.minute:
            w.minute, w.in_minute = minute, 0
        if w.in_minute >= self.rule.per_minute:
            return
        w.in_minute += 1
        w.samples.append((a, report.timestamp() - a))

    def review(self, now: datetime) -> list[OffsetChange]:
        """Judge every source's window as of ``now``: the flags raised, moved or cleared."""
        changes = []
        for source in list(self._windows):
            change = self._review_source(source, now.timestamp())
            if change is not None:
                changes.append(change)
        return changes

    def _review_source(self, source: str, t_now: float) -> OffsetChange | None:
        w = self._windows[source]
        horizon = t_now - self.rule.window_seconds
        while w.samples and w.samples[0][0] < horizon:
            w.samples.popleft()
        current = self._flags.get(source)
        if not w.samples and current is None:
            del self._windows[source]
            return None
        arrivals = [a for a, _ in w.samples]
        offsets = [o for _, o in w.samples]
        if len(offsets) < self.rule.min_reports or \
                max(arrivals) - min(arrivals) < self.rule.min_span_seconds:
            return None  # not enough of a stream to judge: the flag stands as it is
        hours = zone_offset(offsets, self.rule)
        if hours is None and current is not None \
                and share_near(offsets, current) >= self.rule.clear_share:
            hours = current  # not steady enough to raise, too much of it left to clear
        if hours == current:
            return None
        if hours is None:
            del self._flags[source]
        else:
            self._flags[source] = hours
        return OffsetChange(source, hours, current, len(offsets), statistics.median(offsets))

    def flags(self) -> dict[str, float]:
        """Sources flagged now -> their offset (hours, report time minus arrival)."""
        return dict(self._flags)

    def standing(self) -> list[OffsetChange]:
        """Every flag as it stands, as the change that would raise it now (its window's
        reports and median): what a restart writes again for the board."""
        out = []
        for source, hours in sorted(self._flags.items()):
            w = self._windows.get(source)
            offsets = [o for _, o in w.samples] if w is not None else []
            median = statistics.median(offsets) if offsets else hours * 3600.0
            out.append(OffsetChange(source, hours, None, len(offsets), median))
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready snapshot (the windows and the flags)."""
        return {"flags": dict(self._flags),
                "windows": {s: [[a, o] for a, o in w.samples] for s, w in self._windows.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None,
                   rule: OffsetRule | None = None) -> ClockOffsets:
        """Rebuild from :meth:`to_state` output (``None`` or ``{}``: nothing seen yet)."""
        offsets = cls(rule)
        state = state or {}
        offsets._flags = {str(s): float(h) for s, h in state.get("flags", {}).items()}
        for source, samples in state.get("windows", {}).items():
            offsets._windows[str(source)] = SourceWindow(deque(
                ((float(a), float(o)) for a, o in samples), maxlen=offsets.rule.max_samples))
        for source in offsets._flags:
            offsets._windows.setdefault(source, SourceWindow(deque(
                maxlen=offsets.rule.max_samples)))
        return offsets


def stamped_zone(read_in: str, hours: float, now: datetime) -> str:
    """The UTC offset the devices of a source read in zone ``read_in`` appear to stamp in, when
    their reports are ``hours`` off: ``UTC`` or ``UTC+05:30``."""
    local = now.astimezone(ZoneInfo(read_in)).utcoffset() or timedelta(0)
    minutes = round(local.total_seconds() / 60.0 + hours * 60.0)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def timezone_key(sources: Iterable[Any], default_zone: str, source: str) -> tuple[str, str]:
    """The config key that sets ``source``'s zone of times without an offset, and the zone
    its times are read in now (its ``ami.timezone``, else the daemon's ``timezone``)."""
    for s in sources:
        ami = getattr(s, "ami", None)
        if getattr(s, "name", None) == source and ami is not None:
            return f"sources ({source}).ami.timezone", ami.timezone or default_zone
    return "timezone", default_zone


def offset_fields(change: OffsetChange, sources: Iterable[Any], default_zone: str,
                  now: datetime) -> dict[str, Any]:
    """What the ``ami_clock_offset`` warning says of a flagged source: the offset, the zone
    its times are read in and the one they appear to be stamped in, and the key to set."""
    assert change.hours is not None
    key, zone = timezone_key(sources, default_zone, change.source)
    stamped = stamped_zone(zone, change.hours, now)
    behind = "behind" if change.hours < 0 else "ahead of"
    return {
        "source": change.source, "offset_hours": change.hours, "reports": change.reports,
        "median_offset_minutes": round(change.median_seconds / 60.0, 1),
        "read_in": zone, "stamped_in": stamped, "config_key": key,
        "hint": (f"{change.reports} recent reports of {change.source} are timed "
                 f"{abs(change.hours):g} h {behind} their arrival, steadily: its times "
                 f"without an offset are probably stamped in {stamped}, not {zone}. Outage "
                 f"times from it are then {abs(change.hours):g} h wrong: meanwhile villages, "
                 f"crews and the command centre are told starts and restored times only it "
                 f"gives as 待核实 (to be confirmed). Nothing is shifted: if so, set {key} "
                 f"and restart"),
    }


def offset_record(change: OffsetChange, sources: Iterable[Any], default_zone: str,
                  now: datetime) -> dict[str, Any]:
    """What the board shows of a flagged source: the warning's fields (the offset, the zones,
    the key to set: the board has no config to look the key up in) and when it was raised."""
    return {**offset_fields(change, sources, default_zone, now), "flagged_at": now.isoformat()}


def stale_records(kept: Iterable[str], flags: Mapping[str, float]) -> list[str]:
    """The board's records (kv keys) of ``kept`` sources (keys without the prefix) that no
    flag stands for: a flag cleared in a screen state never saved, or a source gone."""
    return [CLOCK_OFFSET_PREFIX + s for s in kept if s not in flags]


def offset_records(changes: Iterable[OffsetChange], sources: Iterable[Any], default_zone: str,
                   now: datetime) -> dict[str, dict[str, Any] | None]:
    """The kv writes that keep the board's records as ``changes`` leave the flags: key ->
    the record (a flag raised or moved) or ``None`` (cleared: delete the key)."""
    sources = list(sources)
    return {CLOCK_OFFSET_PREFIX + c.source: None if c.hours is None
            else offset_record(c, sources, default_zone, now) for c in changes}
