"""Parsing AMI payloads — JSON messages, JSON lines, CSV rows — into observation events.

Pure (no I/O). Used by the MQTT and file-drop sources; see :mod:`outage_sentinel.ami` for what
an observation is and how the screening turns observations into transformer-area evidence.

A payload holds one or more *records*; each record names a device (meter or terminal id), an
event type code and a time. The code decides what the record means (:data:`DEFAULT_CODES`,
extended or replaced by ``AmiPayloadConfig.codes``, since vendors differ):

============================ ========== ===================================================
code                         meaning    origin
============================ ========== ===================================================
``3.26.0.85``                off        IEC 61968-9 EndDeviceEventType: electric meter,
                                        power, -, failed (power outage)
``3.26.0.216``               on         IEC 61968-9: electric meter, power, -, restored
``3106`` ``0x3106``          off_on     DL/T 698.45 object 0x3106 终端停/上电事件 (terminal
``31060200``                            power-off/on event; the record carries the event
                                        start = off time and end = on time)
``ERC14``                    off_on     Q/GDW 1376.1 (DL/T 698 terminals) ERC14 终端停/上电
                                        事件: off time, on time once power is back
``3011`` ``0x3011``          off_on     DL/T 698.45 object 0x3011 电能表掉电事件 (meter
``30110200``                            power-down event: start / end)
``power_off`` ``停电``        off        generic head-end exports
``power_on`` ``上电``         on
``复电`` ``restore``
============================ ========== ===================================================

``off_on`` records give an ``off`` observation at the off time and, when the on time is there,
an ``on`` observation too — so a terminal that reports its outage only after power returns
(the usual ERC14 case) still feeds the momentary rule correctly. Codes are matched
case-insensitively; codes not in the map are skipped (counted) or quarantined, per config.

Each observation becomes an :class:`~outage_sentinel.events.OutageEvent` with
``event_id = "<device>:<off|on>:<UTC time>"`` — deterministic from content, so the same report
seen again (MQTT redelivery, a file processed twice after a crash, a second code for the same
event) is a duplicate in the store. Naive times are in the configured timezone.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.ami import AmiRegistry, DeviceKind, compact_time, device_ref
from outage_sentinel.config import AmiCodeConfig, AmiPayloadConfig
from outage_sentinel.events import (
    EventError,
    LongNumber,
    OutageEvent,
    Quarantined,
    check_storable,
    load_json,
    parse_optional_time,
    parse_time,
    refuse_long_numbers,
)
from outage_sentinel.logs import get_logger


class PayloadError(ValueError):
    """A payload or file is unusable as a whole (not JSON, no id column, ...)."""


#: Built-in code map (see the module docstring for where each comes from).
DEFAULT_CODES: dict[str, AmiCodeConfig] = {
    "3.26.0.85": AmiCodeConfig(action="off"),
    "3.26.0.216": AmiCodeConfig(action="on"),
    "3106": AmiCodeConfig(action="off_on", kind="terminal"),
    "0x3106": AmiCodeConfig(action="off_on", kind="terminal"),
    "31060200": AmiCodeConfig(action="off_on", kind="terminal"),
    "erc14": AmiCodeConfig(action="off_on", kind="terminal"),
    "3011": AmiCodeConfig(action="off_on", kind="meter"),
    "0x3011": AmiCodeConfig(action="off_on", kind="meter"),
    "30110200": AmiCodeConfig(action="off_on", kind="meter"),
    "power_off": AmiCodeConfig(action="off"),
    "poweroff": AmiCodeConfig(action="off"),
    "停电": AmiCodeConfig(action="off"),
    "power_on": AmiCodeConfig(action="on"),
    "poweron": AmiCodeConfig(action="on"),
    "restore": AmiCodeConfig(action="on"),
    "上电": AmiCodeConfig(action="on"),
    "复电": AmiCodeConfig(action="on"),
}

_KIND_VALUES: dict[str, DeviceKind] = {
    "meter": "meter", "electricmeter": "meter", "电表": "meter", "电能表": "meter",
    "terminal": "terminal", "concentrator": "terminal", "集中器": "terminal",
    "终端": "terminal", "专变终端": "terminal",
}

#: How far a terminal's on time may fall before its off time and be read as its clock being
#: off (the power came back at once) rather than as a broken record.
CLOCK_DRIFT = timedelta(minutes=10)

_RECORD_CONTAINERS = tuple(tuple(p.split(".")) for p in (
    "events", "records", "data", "Payload.EndDeviceEvents.EndDeviceEvent",
    "EndDeviceEvents.EndDeviceEvent", "EndDeviceEvent"))
_CONTAINER_KEYS = frozenset(parts[0] for parts in _RECORD_CONTAINERS)


def json_line_values(text: str) -> Iterator[tuple[int, str, Any, str | None]]:
    """``(line number, line, value, None)`` for each non-blank line of JSON-lines text, or
    ``(line number, line, None, reason)`` for a line that is not JSON (bounded: a hostile
    ``[[[[`` is bad JSON, not an escaping RecursionError). A line may hold many records: an
    integer of more digits than Python converts is a :class:`LongNumber`, which costs only
    the record holding it (the record parsers refuse it)."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            yield lineno, line, load_json(line, mark_long_numbers=True), None
        except ValueError as exc:
            yield lineno, line, None, f"not valid JSON: {exc}"


#: Characters of a row the csv module refused kept in its quarantine entry.
CSV_RAW_LIMIT = 4096
#: Lines one record may span. A quoted field may hold line breaks (exporters write addresses
#: and complaint texts so); a record running on longer is taken for an unbalanced quote.
MAX_RECORD_LINES = 20


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: its first line number and cells, or why it was refused (``error``)
    with the text of the lines it took (``raw``)."""

    line: int
    cells: list[str]
    error: str | None = None
    raw: str = ""


def csv_rows(text: str) -> Iterator[CsvRow]:
    """Every record of CSV ``text`` (a byte-order mark before it skipped) with the line it
    starts on. A bad row never hides the rows after it:

    * a record the csv module refuses (a stray carriage return in an unquoted field, a field
      over the size limit) is yielded as an error and reading goes on with the next line;
    * a record spanning lines (a quoted field holding line breaks) must hold together as one
      row: its quotes closing where a field ends (the csv module's strict reading, which also
      refuses a quote still open at the end of the text) within :data:`MAX_RECORD_LINES`
      lines. Otherwise the quote opened on its first line is an unbalanced one: that line
      alone is yielded as an error, and reading starts again on the line after it. No record
      is read past that many lines, so a file of open quotes costs its length, not its square.

    A record that holds together is one row whatever its width: the lines inside its quoted
    field are never read as rows of their own (a caller's words would become a record), and
    a width other than the header's is the row's error (:func:`csv_records`), all its lines
    kept in it.
    """
    lines = io.StringIO(text.lstrip("\ufeff")).readlines()  # split on "\n" only
    at = 0
    while at < len(lines):
        at = yield from _rows_from(lines, at)


def _rows_from(lines: list[str], start: int) -> Generator[CsvRow, None, int]:
    """:func:`csv_rows` from ``lines[start]`` on, until an unbalanced quote; returns the line
    to read again from (``len(lines)``: the end)."""
    pos = first = start

    def feed() -> Iterator[str]:  # one record gets MAX_RECORD_LINES + 1 lines at most
        nonlocal pos
        while pos < len(lines) and pos - first <= MAX_RECORD_LINES:
            pos += 1
            yield lines[pos - 1]

    reader = csv.reader(feed())
    while True:
        first = pos
        try:
            cells = next(reader)
        except StopIteration:
            if pos - first > MAX_RECORD_LINES:  # an open quote ran on past the bound
                yield _unbalanced(lines, first)
                return first + 1
            return len(lines)
        except csv.Error as exc:
            if pos - first > 1:  # e.g. a field over the size limit: an open quote ran on
                yield _unbalanced(lines, first)
                return first + 1
            yield CsvRow(first + 1, [], f"bad CSV: {_csv_reason(exc)}",
                         "".join(lines[first:pos])[:CSV_RAW_LIMIT])
            if pos == first:  # nothing consumed: stop rather than loop
                return len(lines)
            continue
        if pos - first > 1 and not _holds_together(lines[first:pos]):
            yield _unbalanced(lines, first)
            return first + 1
        yield CsvRow(first + 1, cells)


def _holds_together(taken: list[str]) -> bool:
    """Whether the lines of one record spanning lines read as one row (see :func:`csv_rows`)."""
    if len(taken) > MAX_RECORD_LINES:
        return False
    try:
        for _ in csv.reader(taken, strict=True):
            pass
    except csv.Error:  # a quote closing inside a field, or never
        return False
    return True


def _unbalanced(lines: list[str], index: int) -> CsvRow:
    """The line ``lines[index]`` refused alone for the quote it leaves open."""
    return CsvRow(index + 1, [], "bad CSV: an unbalanced double quote: the quoted field it "
                  "opens does not close as a field of this row (the next lines are read as "
                  "rows of their own)", lines[index][:CSV_RAW_LIMIT])


@dataclass(frozen=True)
class CsvRecord:
    """One row after the header: its ``fields`` by column, or why it is refused (``error``)
    with what its quarantine entry keeps (``raw``)."""

    line: int
    fields: dict[str, str]
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def csv_records(rows: Iterable[CsvRow], header: Sequence[str]) -> Iterator[CsvRecord]:
    """The rows after the header as records (cells stripped); blank rows skipped; a row the
    reading refused (:func:`csv_rows`, kept as its text) or of another width than the header
    (kept as its cells) as its reason."""
    width = len(header)
    for row in rows:
        if row.error is not None:
            yield CsvRecord(row.line, {}, row.error, {"line": row.raw})
        elif not any(c.strip() for c in row.cells):
            continue
        elif len(row.cells) != width:
            # an unquoted comma shifts every column after it
            yield CsvRecord(row.line, {}, f"expected {width} columns, got {len(row.cells)} "
                            "(an unquoted comma or a missing field?)", {"row": row.cells})
        else:
            yield CsvRecord(row.line, dict(zip(header, (c.strip() for c in row.cells),
                                               strict=True)))


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if text.startswith("new-line character seen in unquoted field"):
        return ("a line break (a carriage return) inside an unquoted field; quote the field or "
                "save the file with one kind of line ending")
    return text


@dataclass
class Parsed:
    """Observation events and quarantined records from one payload or file."""

    events: list[OutageEvent] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    #: Records skipped because their code is not a power-off / power-on code.
    ignored: int = 0
    #: Records seen (good, bad or ignored).
    records: int = 0

    def extend(self, other: Parsed) -> None:
        """Append ``other`` to this one."""
        self.events.extend(other.events)
        self.quarantined.extend(other.quarantined)
        self.ignored += other.ignored
        self.records += other.records


def _paths(fields: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(f, tuple(f.split("."))) for f in fields]


def _get(record: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    value: Any = record
    for part in parts:
        if isinstance(value, dict) or isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


def _first(record: Mapping[str, Any], paths: list[tuple[str, tuple[str, ...]]]) -> Any:
    return _first_named(record, paths)[1]


def _first_named(record: Mapping[str, Any], paths: list[tuple[str, tuple[str, ...]]]
                 ) -> tuple[str, Any]:
    """``(field, value)`` of the first of ``paths`` present in ``record``, else ``("", None)``."""
    for name, parts in paths:
        value = record.get(parts[0]) if len(parts) == 1 else _get(record, parts)
        if value is not None and value != "":
            return name, value
    return "", None


#: At most this many distinct unknown codes are logged per source (a vendor's whole event
#: catalogue must not flood the log).
MAX_UNKNOWN_LOGGED = 50


class AmiPayloadParser:
    """Turns AMI payloads into observation events for one source.

    ``registry`` maps device ids to transformer areas; with ``unknown_devices="quarantine"``
    (the default) a device missing from it is quarantined with the reason, so registry gaps are
    visible and counted. Without a registry, observations carry no transformer.
    """

    def __init__(self, source: str, config: AmiPayloadConfig | None = None,
                 registry: AmiRegistry | None = None,
                 default_tz: str | tzinfo = "Asia/Shanghai") -> None:
        self.source = source
        self.config = config or AmiPayloadConfig()
        self.registry = registry
        tz = self.config.timezone or default_tz
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        codes: dict[str, AmiCodeConfig] = {} if self.config.replace_default_codes else dict(
            DEFAULT_CODES)
        for code, meaning in self.config.codes.items():
            codes[code.strip().lower()] = (meaning if isinstance(meaning, AmiCodeConfig)
                                           else AmiCodeConfig(action=meaning))
        self.codes = codes
        c = self.config
        self._id = _paths(c.id_fields)
        self._code = _paths(c.code_fields)
        self._time = _paths(c.time_fields)
        self._off_time = _paths(c.off_time_fields)
        self._on_time = _paths(c.on_time_fields)
        self._kind = _paths(c.kind_fields)
        self._records_parts = tuple(c.records_path.split(".")) if c.records_path else None
        #: Codes skipped as unknown, each logged once (at most :data:`MAX_UNKNOWN_LOGGED`).
        self.unknown_seen: set[str] = set()
        self.log = get_logger(component="ami_payload", source=source)

    # -- one record ---------------------------------------------------------------------------

    def record(self, record: Mapping[str, Any]) -> list[OutageEvent] | None:
        """Events for one record; ``None`` when its code is not a power code (skipped).

        Raises :class:`EventError` naming the field when the record is unusable (or the key
        of a number of more digits than Python converts: :class:`LongNumber`).
        """
        refuse_long_numbers(record)
        if not isinstance(record, dict) and not isinstance(record, Mapping):
            raise EventError(f"record: expected an object, got {type(record).__name__}")
        meaning = self._meaning(record)
        if meaning is None or meaning.action == "ignore":
            return None
        device = self._device(record)
        kind, transformer, feeder = self._resolve(record, device, meaning)
        ref = device_ref(kind, device)
        if meaning.action == "off" or meaning.action == "off_on":
            return self._off_events(record, device, ref, transformer, feeder,
                                    meaning.action == "off_on")
        raw_on = _first(record, self._time) or _first(record, self._on_time)
        if raw_on is None:
            raise EventError(f"time: none of {', '.join(f for f, _ in self._time)} present")
        return [self._event(device, ref, transformer, feeder, "on",
                            parse_time(raw_on, "time", self.tz), record)]

    def _meaning(self, record: Mapping[str, Any]) -> AmiCodeConfig | None:
        """What the record's event code means; ``None`` for a code not mapped (skipped and
        logged, or :class:`EventError` when ``unknown_codes`` quarantines them)."""
        code_value = _first(record, self._code)
        if code_value is None:
            raise EventError(f"event code: none of {', '.join(f for f, _ in self._code)} present")
        if isinstance(code_value, Mapping):  # e.g. EndDeviceEventType given as an object
            code_value = code_value.get("ref") or code_value.get("code") or code_value.get("mRID")
        code = str(code_value).strip()
        meaning = self.codes.get(code.lower())
        if meaning is None:
            if self.config.unknown_codes == "quarantine":
                raise EventError(f"event code: {code!r} is not mapped to power off/on "
                                 f"(configure it under ami.codes)")
            self._skipped_unknown(code)
        return meaning

    def _off_events(self, record: Mapping[str, Any], device: str, ref: str, transformer: str,
                    feeder: str | None, off_on: bool) -> list[OutageEvent]:
        """The off event of a record and, for one that carries both times (``off_on``), its
        on event if the power came back."""
        raw_off = _first(record, self._off_time if off_on else self._time)
        if raw_off is None:
            raw_off = _first(record, self._time if off_on else self._off_time)
        if raw_off is None:
            raise EventError(f"time: none of {', '.join(f for f, _ in self._time)} present")
        t_off = parse_time(raw_off, "off time" if off_on else "time", self.tz)
        out = [self._event(device, ref, transformer, feeder, "off", t_off, record)]
        if off_on:
            t_on = parse_optional_time(_first(record, self._on_time), "on time", self.tz)
            if t_on is not None:  # none yet (or a placeholder): power is still off
                if t_on < t_off - CLOCK_DRIFT:
                    raise EventError(f"on time: {_first(record, self._on_time)!r} is before "
                                     f"the off time {raw_off!r}")
                # a terminal clock a little off: back at once (a blip, screened as one)
                out.append(self._event(device, ref, transformer, feeder, "on", max(t_on, t_off),
                                       record))
        return out

    def _device(self, record: Mapping[str, Any]) -> str:
        """The record's device id, checked storable before it goes into an id or a hash."""
        key, value = _first_named(record, self._id)
        if value is None or isinstance(value, Mapping | list):
            raise EventError(f"device id: none of {', '.join(f for f, _ in self._id)} present")
        device = str(value).strip()
        check_storable(f"device id ({key})", device)
        return device

    def _resolve(self, record: Mapping[str, Any], device: str,
                 meaning: AmiCodeConfig) -> tuple[DeviceKind, str, str | None]:
        registry = self.registry
        if registry is not None:
            known = registry.lookup(device)
            if known is not None:
                tx, kind = known
                return kind, tx, registry.feeder_of.get(tx)
            if self.config.unknown_devices == "quarantine":
                raise EventError(f"device id: meter or terminal {device!r} is not in meters.csv")
        if meaning.kind is not None:
            return meaning.kind, "", None
        kind_value = _first(record, self._kind)
        if kind_value is not None:
            parsed = _KIND_VALUES.get(str(kind_value).strip().lower())
            if parsed is None:
                raise EventError(f"kind: expected meter or terminal, got {kind_value!r}")
            return parsed, "", None
        return "meter", "", None

    def _event(self, device: str, ref: str, transformer: str, feeder: str | None,
               action: str, t: datetime, record: Mapping[str, Any]) -> OutageEvent:
        off = action == "off"
        event_id = f"{device}:{action}:{compact_time(t)}"
        # The revision hashes all the normalised content: the id already holds device, action
        # and time; add where the registry placed the device. (Much cheaper than
        # OutageEvent.fingerprint(), which matters at storm rates.)
        revision = hashlib.blake2b(f"{ref}|{event_id}|{transformer}|{feeder or ''}".encode(),
                                   digest_size=8).hexdigest()
        return OutageEvent(
            source=self.source,
            event_id=event_id,
            revision=revision,
            kind="fault",
            status="active" if off else "restored",
            signal="dead" if off else "alive",
            start=t,
            end=None if off else t,
            feeder=feeder,
            transformers=(transformer,) if transformer else (),
            area_text=ref,
            cause="AMI power off" if off else "AMI power on",
            raw=record,
        )

    def _skipped_unknown(self, code: str) -> None:
        """Log a code the mapping does not know, the first time: a vendor's power-on code
        left unmapped is an outage that never ends, and the skipped count alone hides which
        code it was."""
        key = code.lower()
        if key in self.unknown_seen or len(self.unknown_seen) >= MAX_UNKNOWN_LOGGED:
            return
        self.unknown_seen.add(key)
        shown = code[:64].encode("utf-8", "backslashreplace").decode("utf-8")
        self.log.warning("ami_unknown_code", code=shown,
                         hint="skipped; map it under ami.codes if it reports power off or on")

    def records(self, records: Iterable[Any], where: str, out: Parsed | None = None,
                first: int = 1, label: str = "record") -> Parsed:
        """Parse many records; a bad one is quarantined as ``<where> <label> <n>: <reason>``."""
        out = out if out is not None else Parsed()
        for n, rec in enumerate(records, start=first):
            out.records += 1
            try:
                events = self.record(rec)
            except EventError as exc:
                out.quarantined.append(Quarantined(self.source, f"{where} {label} {n}: {exc}",
                                                   rec))
                continue
            if events is None:
                out.ignored += 1
            else:
                out.events.extend(events)
        return out

    # -- whole payloads -----------------------------------------------------------------------

    def json_records(self, data: Any) -> list[Any]:
        """The record list inside a decoded JSON payload."""
        if self._records_parts is not None:
            found = _get(data, self._records_parts) if isinstance(data, Mapping) else None
            if found is None:
                raise PayloadError(f"records_path {self.config.records_path!r} not found")
            return found if isinstance(found, list) else [found]
        if isinstance(data, list):
            return data
        if isinstance(data, dict):
            if _CONTAINER_KEYS.isdisjoint(data):
                return [data]  # the common case: one plain record per message
            for parts in _RECORD_CONTAINERS:
                found = _get(data, parts)
                if isinstance(found, list):
                    return found
                if isinstance(found, dict) and parts[-1] == "EndDeviceEvent":
                    return [found]
            return [data]
        got = repr(data) if isinstance(data, LongNumber) else type(data).__name__
        raise PayloadError(f"expected a JSON object or array, got {got}")

    def json_payload(self, payload: bytes | str, where: str) -> Parsed:
        """One JSON document: an object, an array of objects, or an envelope with a list.

        Raises :class:`PayloadError` when it is not JSON / has no records. An integer of more
        digits than Python converts costs only the record holding it (:class:`LongNumber`).
        """
        try:
            data = load_json(payload, mark_long_numbers=True)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"not valid JSON: {exc}") from None
        return self.records(self.json_records(data), where)

    def json_lines(self, text: str, where: str) -> Parsed:
        """JSON lines (one record, array or envelope per line); a bad line is quarantined."""
        out = Parsed()
        for lineno, line, data, error in json_line_values(text):
            try:
                if error is not None:
                    raise PayloadError(error)
                recs = self.json_records(data)
            except PayloadError as exc:
                out.records += 1
                out.quarantined.append(Quarantined(self.source, f"{where} line {lineno}: {exc}",
                                                   {"line": line[:4096]}))
                continue
            self.records(recs, f"{where} line {lineno}", out)
        return out

    def csv_text(self, text: str, where: str) -> Parsed:
        """CSV with a header row (or ``csv_columns``); a bad row is quarantined as
        ``<where> row <n>: <reason>`` (``n`` is the 1-based line the row starts on) and the
        rows after it are read.

        Raises :class:`PayloadError` when the header names no id, code or time column.
        """
        rows = csv_rows(text)
        header = self._csv_header(rows)
        if header is None:
            return Parsed()
        out = Parsed()
        for rec in csv_records(rows, header):
            if rec.error is None:
                self.records((rec.fields,), where, out, first=rec.line, label="row")
                continue
            out.records += 1
            out.quarantined.append(Quarantined(self.source, f"{where} row {rec.line}: "
                                               f"{rec.error}", rec.raw))
        return out

    def _csv_header(self, rows: Iterator[CsvRow]) -> list[str] | None:
        """The configured ``csv_columns``, else the first row (``None``: an empty text);
        :class:`PayloadError` when it names no id, code or time column."""
        columns = self.config.csv_columns
        if columns is not None:
            header = list(columns)
        else:
            first = next(rows, None)
            if first is None:
                return None
            if first.error is not None:  # e.g. CR-only line endings
                raise PayloadError(f"bad CSV header: {first.error.removeprefix('bad CSV: ')}")
            header = [h.strip() for h in first.cells]
        for what, paths in (("device id", self._id), ("event code", self._code)):
            if not any(p[0] in header for _, p in paths):
                raise PayloadError(f"CSV header has no {what} column (one of "
                                   f"{', '.join(f for f, _ in paths if '.' not in f)})")
        if not any(p[0] in header for _, p in self._time + self._off_time + self._on_time):
            raise PayloadError(f"CSV header has no time column (one of "
                               f"{', '.join(f for f, _ in self._time)})")
        return header
