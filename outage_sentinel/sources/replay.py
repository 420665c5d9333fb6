"""The ``replay`` source: plays a recorded scenario on a timeline relative to its start.

This is the embedded default's source, and the way to rehearse a storm. A scenario is a
JSON-lines file; each line is one feed record::

    {"at": 20, "event_id": "F001", "kind": "fault", "status": "active",
     "start_offset": -180, "etr_offset": 7200, "feeder": "MJ01", "device": null,
     "transformers": ["T-MJ01-020"], "area_text": "...", "cause": "..."}

``at`` is seconds after the replay started (divided by ``speed``); ``start_offset`` and
``etr_offset`` (and optional ``end_offset``) are seconds relative to the replay start, so
the outage times look current. A later line with the same ``event_id`` is a new revision.
``start``/``expected_restoration`` may be given as absolute times instead of offsets; one
without an offset is in ``tz`` (the config's ``timezone``).

The timeline anchor and the number of lines already emitted are the cursor; the daemon
persists it with the events, so a restarted daemon continues the same timeline instead of
starting over. A line that is not valid is quarantined with its line number; the rest plays.
So is a line whose ``at`` or offset is not a finite number of seconds within a century
(:data:`MAX_SECONDS`): ``"at": Infinity`` would hold every later line back for ever.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from outage_sentinel.events import (
    EventError,
    OutageEvent,
    PollResult,
    Quarantined,
    load_json,
    parse_optional_time,
    refuse_long_numbers,
    split_list,
)
from outage_sentinel.sources.base import SourceError

#: How far from the replay's start a line's ``at`` and offsets may lie, in seconds (a
#: century): a time past it is quarantined, not waited for.
MAX_SECONDS = 100 * 365.25 * 86400


class ReplaySource:
    """Replays ``scenario`` (see module docstring)."""

    type = "replay"

    def __init__(self, name: str, scenario: Path, speed: float = 1.0, loop: bool = False,
                 tz: tzinfo = UTC) -> None:
        self.name = name
        #: The zone of absolute times written without an offset.
        self.tz = tz
        self.scenario = Path(scenario)
        self.speed = speed
        self.loop = loop
        self._anchor: datetime | None = None
        self._emitted = 0
        self._round = 0
        self._lines: list[tuple[int, str]] | None = None

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        if cursor:
            anchor = parse_optional_time(cursor.get("anchor"), "anchor")
            self._anchor = anchor
            self._emitted = int(cursor.get("emitted", 0))
            self._round = int(cursor.get("round", 0))

    def _load(self) -> list[tuple[int, str]]:
        if self._lines is None:
            try:
                text = self.scenario.read_text(encoding="utf-8")
            except OSError as exc:
                raise SourceError(f"{self.name}: cannot read scenario {self.scenario}: "
                                  f"{exc.strerror or exc}") from None
            self._lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1)
                           if line.strip() and not line.lstrip().startswith("#")]
        return self._lines

    def poll(self, now: datetime) -> PollResult:
        lines = self._load()
        if self._anchor is None:
            self._anchor = now
        anchor = self._anchor
        elapsed = (now - anchor).total_seconds() * self.speed
        result = PollResult()
        emitted = self._emitted
        round_ = self._round
        while True:
            while emitted < len(lines):
                lineno, line = lines[emitted]
                at = _at(line)
                if at is not None and at > elapsed:
                    break
                emitted += 1
                try:
                    result.events.append(self._event(line, lineno, anchor, round_))
                except (EventError, ValueError, TypeError, KeyError, OverflowError) as exc:
                    result.quarantined.append(
                        Quarantined(self.name, f"{self.scenario.name}:{lineno}: {exc}", line))
            if not (self.loop and emitted >= len(lines) and lines):
                break
            # Loop: start the timeline again after the last line.
            last = max((_at(line) or 0.0) for _, line in lines)
            if elapsed < last + 1:
                break
            anchor = anchor + timedelta(seconds=(last + 1) / self.speed)
            elapsed = (now - anchor).total_seconds() * self.speed
            emitted = 0
            round_ += 1
        result.cursor = {"anchor": anchor.isoformat(), "emitted": emitted, "round": round_}
        result.not_modified = not result.events and not result.quarantined
        return result

    def acknowledge(self, result: PollResult) -> None:
        if result.cursor is not None:
            self._anchor = parse_optional_time(result.cursor["anchor"], "anchor")
            self._emitted = int(result.cursor["emitted"])
            self._round = int(result.cursor["round"])

    def close(self) -> None:
        pass

    def _event(self, line: str, lineno: int, anchor: datetime, round_: int) -> OutageEvent:
        try:
            rec = load_json(line, mark_long_numbers=True)
        except json.JSONDecodeError as exc:
            raise EventError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(rec, dict):
            raise EventError("expected a JSON object")
        refuse_long_numbers(rec)  # a number of more digits than Python converts, named
        seconds(rec.get("at"), "at")

        def when(offset_key: str, abs_key: str) -> datetime | None:
            if rec.get(abs_key) is not None:
                return parse_optional_time(rec[abs_key], abs_key, self.tz)
            off = seconds(rec.get(offset_key), offset_key)
            return None if off is None else anchor + timedelta(seconds=off)

        for key in ("event_id", "kind", "status"):
            if key not in rec:
                raise EventError(f"{key}: required")
        start = when("start_offset", "start") or anchor
        suffix = f"#r{round_}" if round_ else ""
        return OutageEvent(
            source=self.name,
            event_id=f"{rec['event_id']}{suffix}",
            kind=rec["kind"],
            status=rec["status"],
            signal=rec.get("signal", "notice"),
            start=start,
            expected_restoration=when("etr_offset", "expected_restoration"),
            end=when("end_offset", "end"),
            feeder=rec.get("feeder"),
            device=rec.get("device"),
            transformers=split_list(rec.get("transformers")),
            area_text=str(rec.get("area_text") or ""),
            cause=str(rec.get("cause") or ""),
            raw=rec,
        )


def seconds(value: Any, key: str) -> float | None:
    """A line's number of seconds (None where absent or null); an :class:`EventError` naming
    ``key`` for anything but a finite number within :data:`MAX_SECONDS`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            -MAX_SECONDS <= value <= MAX_SECONDS):  # NaN is never within
        raise EventError(f"{key}: expected seconds (a finite number within "
                         f"±{MAX_SECONDS:.0f}), got {value!r}")
    return float(value)


def _at(line: str) -> float | None:
    """When a line is due (None: at once; a line whose ``at`` is not valid is due at once,
    to be quarantined)."""
    try:
        rec = load_json(line, mark_long_numbers=True)
        return seconds(rec.get("at"), "at") if isinstance(rec, dict) else None
    except (json.JSONDecodeError, ValueError):  # EventError is a ValueError
        return None
