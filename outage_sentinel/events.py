"""The normalised outage event: what every source turns its payloads into.

Pure: no I/O. A source maps its own payload into :class:`OutageEvent`; anything that cannot
be mapped becomes a :class:`Quarantined` record carrying the raw payload and the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

Kind = Literal["planned", "temporary", "fault"]
Status = Literal["active", "restored", "cancelled"]
#: What an event says about the network. ``notice`` is an outage-system record (a scope of
#: transformer areas, maybe a named device); the others are single pieces of evidence that the
#: AMI / trouble-call / SCADA sources produce.
Signal = Literal["notice", "dead", "alive", "call", "device_open", "device_closed"]

KINDS: tuple[Kind, ...] = ("planned", "temporary", "fault")
#: Key of an event's ``raw`` under which a source keeps the outage-type value its mapping
#: could not classify (the event's ``kind`` is then the field map's ``default_kind``, which
#: decides how it is handled, never what villages are told: :func:`kind_unclassified`).
UNCLASSIFIED_KIND = "sentinel_unclassified_kind"
#: Key of an event's ``raw`` under which a snapshot source lists the ids of the records that
#: left its list in the complete poll in which this record first appeared: the outage system
#: may have re-issued one of them under this new id (:func:`outage_sentinel.triage.reissued_work`).
LEFT_LIST = "sentinel_left_list"
STATUSES: tuple[Status, ...] = ("active", "restored", "cancelled")
SIGNALS: tuple[Signal, ...] = ("notice", "dead", "alive", "call", "device_open", "device_closed")


class EventError(ValueError):
    """A payload could not be turned into an event; the message says which field and why."""


class Unstorable(ValueError):
    """A value the database cannot keep (NaN or Infinity in JSON); the message names where."""


#: The most characters each text field of an event may hold: the widths of the ``events``
#: table's columns (``store/schema.py`` makes them from these). An event with a longer one is
#: refused when it is made, naming the field, so that its record alone is quarantined.
TEXT_LIMITS: Mapping[str, int] = MappingProxyType(
    {"source": 100, "event_id": 200, "revision": 100, "feeder": 100, "device": 200})


@dataclass(frozen=True)
class OutageEvent:
    """One normalised observation from a source.

    ``(source, event_id, revision)`` identifies it: the same record seen again with the same
    content is a duplicate; changed content (a new ETR, a restoration) is a new revision.
    Times are timezone-aware UTC.
    """

    source: str
    event_id: str
    kind: Kind
    status: Status
    start: datetime
    expected_restoration: datetime | None = None
    end: datetime | None = None
    feeder: str | None = None
    device: str | None = None
    transformers: tuple[str, ...] = ()
    area_text: str = ""
    cause: str = ""
    signal: Signal = "notice"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    revision: str = ""
    #: Read back from the store: not checked against :data:`TEXT_LIMITS` and for NaN again
    #: (a SQLite database written before those checks may hold one; it is processed as kept).
    stored: InitVar[bool] = False

    def __post_init__(self, stored: bool = False) -> None:
        if not self.source:
            raise EventError("source: must not be empty")
        if not self.event_id:
            raise EventError("event_id: must not be empty")
        if self.kind not in KINDS:
            raise EventError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.status not in STATUSES:
            raise EventError(f"status: expected one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.signal not in SIGNALS:
            raise EventError(f"signal: expected one of {', '.join(SIGNALS)}, got {self.signal!r}")
        for name in ("start", "expected_restoration", "end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise EventError(f"{name}: expected a timezone-aware datetime, got {value!r}")
        if not isinstance(self.transformers, tuple):
            object.__setattr__(self, "transformers", tuple(self.transformers))
        for name in ("source", "event_id", "feeder", "device", "area_text", "cause", "revision"):
            check_storable(name, getattr(self, name))
        for i, ref in enumerate(self.transformers):
            check_storable(f"transformers[{i}]", ref)
        if not stored:
            self._check_fits()
        if not self.revision:
            object.__setattr__(self, "revision", self.fingerprint())

    def _check_fits(self) -> None:
        """Raise :class:`EventError` for a text longer than its column or a NaN / Infinity in
        the raw payload (PostgreSQL refuses both, and with them the whole poll's batch)."""
        for name, limit in TEXT_LIMITS.items():
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                raise EventError(f"{name}: {len(value)} characters, more than the {limit} "
                                 f"the database keeps")
        found = nonfinite_key(self.raw)
        if found is not None:
            raise EventError(nonfinite_reason(*found))

    def fingerprint(self) -> str:
        """A short stable hash of the normalised content (not the raw payload)."""
        content = {
            "kind": self.kind,
            "status": self.status,
            "start": _iso(self.start),
            "etr": _iso(self.expected_restoration),
            "end": _iso(self.end),
            "feeder": self.feeder,
            "device": self.device,
            "transformers": sorted(self.transformers),
            "area": self.area_text,
            "cause": self.cause,
            "signal": self.signal,
        }
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8"))
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the normalised fields (raw payload excluded)."""
        return {
            "source": self.source,
            "event_id": self.event_id,
            "revision": self.revision,
            "kind": self.kind,
            "status": self.status,
            "signal": self.signal,
            "start": _iso(self.start),
            "expected_restoration": _iso(self.expected_restoration),
            "end": _iso(self.end),
            "feeder": self.feeder,
            "device": self.device,
            "transformers": list(self.transformers),
            "area_text": self.area_text,
            "cause": self.cause,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> OutageEvent:
        """Inverse of :meth:`to_json`."""
        return cls(
            source=str(data["source"]),
            event_id=str(data["event_id"]),
            revision=str(data.get("revision") or ""),
            kind=data["kind"],
            status=data["status"],
            signal=data.get("signal", "notice"),
            start=parse_time(data["start"], "start"),
            expected_restoration=parse_optional_time(data.get("expected_restoration"), "etr"),
            end=parse_optional_time(data.get("end"), "end"),
            feeder=data.get("feeder"),
            device=data.get("device"),
            transformers=tuple(data.get("transformers") or ()),
            area_text=str(data.get("area_text") or ""),
            cause=str(data.get("cause") or ""),
            raw=raw or {},
        )


def kind_unclassified(event: OutageEvent) -> bool:
    """Whether the source could not classify ``event``'s outage type (:data:`UNCLASSIFIED_KIND`):
    it is handled as its ``kind`` says, and announced with no claim about the kind."""
    return UNCLASSIFIED_KIND in event.raw


@dataclass(frozen=True)
class Quarantined:
    """A payload (or one record of it) that failed validation, kept for inspection."""

    source: str
    reason: str
    raw: Any


@dataclass
class PollResult:
    """What one poll of one source produced."""

    events: list[OutageEvent] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    #: Source cursor to persist together with the events (ETag, file offsets, ...).
    cursor: dict[str, Any] | None = None
    #: True when the source had nothing new (HTTP 304, no files).
    not_modified: bool = False


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def load_json(text: str | bytes, *, mark_long_numbers: bool = False) -> Any:
    """``json.loads``, bounded: a document nested deeper than the parser can follow (a hostile
    ``[[[[...``) is a :class:`json.JSONDecodeError` like any other bad JSON, never a
    RecursionError escaping a parser.

    An integer longer than Python converts (``sys.get_int_max_str_digits()``, 4300 digits) is
    a :class:`json.JSONDecodeError` naming it and its key too — unless ``mark_long_numbers``:
    then it is read as a :class:`LongNumber`, which no field accepts, so that a document of
    many records loses only the record carrying it (:func:`refuse_long_numbers`, which every
    record parser reading such documents calls). A document without one is parsed at full
    speed either way: only a document that failed on one is read again, marking it."""
    try:
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise
        except ValueError as exc:  # int() refused a number's digits (sys.get_int_max_str_digits)
            if not mark_long_numbers:
                raise long_number_error(text, exc) from None
        return json.loads(text, parse_int=_int_or_long)
    except RecursionError:
        doc = text if isinstance(text, str) else ""
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


@dataclass(frozen=True, slots=True)
class LongNumber:
    """A JSON integer of more digits than Python converts, as :func:`load_json` reads it with
    ``mark_long_numbers``: its text kept as written (``str()`` gives it back, so a quarantined
    record keeps the digits), never a number or a text any field takes for one. ``repr()``
    says what it is without the digits: ``a number of 5000 digits``."""

    text: str

    @property
    def digits(self) -> int:
        """How many digits it has (its sign not counted)."""
        return len(self.text) - self.text.startswith("-")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"a number of {self.digits} digits"


def _int_or_long(text: str) -> int | LongNumber:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return LongNumber(text)


#: Types of the JSON values that hold nothing inside.
_LEAVES = frozenset((str, int, float, bool, type(None)))


def long_number_key(value: Any) -> tuple[str, LongNumber] | None:
    """The first :class:`LongNumber` in ``value`` (a record as :func:`load_json` read it with
    ``mark_long_numbers``) and its key path (``a.b``, ``a[2]``; ``""`` when ``value`` is
    one), or None. Iterative (a record may nest as deep as JSON can) and cheap when there is
    none: every record a parser reads goes through it."""
    todo: list[Any] = [value]
    while todo:  # is there one? (no paths built: the common answer is no)
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(v for v in item.values() if type(v) not in _LEAVES)
        elif isinstance(item, list):
            todo.extend(v for v in item if type(v) not in _LEAVES)
        elif isinstance(item, LongNumber):
            return _first_long_number(value)
    return None


def _first_long_number(value: Any) -> tuple[str, LongNumber] | None:
    """:func:`long_number_key`'s answer, breadth first: the shallowest one is named."""
    paths: deque[tuple[str, Any]] = deque([("", value)])
    while paths:
        where, item = paths.popleft()
        if isinstance(item, LongNumber):
            return where, item
        if isinstance(item, dict):
            paths.extend((f"{where}.{key}" if where else str(key), inner)
                         for key, inner in item.items())
        elif isinstance(item, list):
            paths.extend((f"{where}[{k}]", inner) for k, inner in enumerate(item))
    return None


def nonfinite_key(value: Any) -> tuple[str, float] | None:
    """The first NaN / Infinity in ``value`` (a payload; ``json.loads`` reads them from
    ``NaN``, ``Infinity``, ``-Infinity``) and its key path (``a.b``, ``a[2]``; ``""`` when
    ``value`` is one), or None. Iterative and cheap when there is none: every event's raw
    payload goes through it. (No JSON number is either: PostgreSQL's ``json`` refuses them.)"""
    todo: list[Any] = [value]
    while todo:  # is there one? (no paths built: the common answer is no)
        item = todo.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return _first_nonfinite(value)
        elif isinstance(item, Mapping):
            todo.extend(v for v in item.values() if type(v) not in _TEXTS)
        elif isinstance(item, list | tuple):
            todo.extend(v for v in item if type(v) not in _TEXTS)
    return None


#: Leaves that cannot be a NaN.
_TEXTS = frozenset((str, int, bool, type(None)))


def _first_nonfinite(value: Any) -> tuple[str, float] | None:
    """:func:`nonfinite_key`'s answer, breadth first: the shallowest one is named."""
    paths: deque[tuple[str, Any]] = deque([("", value)])
    while paths:
        where, item = paths.popleft()
        if isinstance(item, float) and not math.isfinite(item):
            return where, item
        if isinstance(item, Mapping):
            paths.extend((f"{where}.{key}" if where else str(key), inner)
                         for key, inner in item.items())
        elif isinstance(item, list | tuple):
            paths.extend((f"{where}[{k}]", inner) for k, inner in enumerate(item))
    return None


def nonfinite_reason(where: str, number: float) -> str:
    """Why a value holding a NaN / Infinity is refused, naming where: ``x: NaN is not a
    number the database can store (not JSON)``."""
    text = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return f"{where or 'the value'}: {text} is not a number the database can store (not JSON)"


def json_for_store(value: Any) -> str:
    """``value`` as JSON text the database accepts; :class:`Unstorable` naming the key of a
    NaN / Infinity in it (what JSON cannot take otherwise, a datetime, is kept as its string;
    a lone surrogate is written as an escape by JSON itself)."""
    try:
        return json.dumps(value, default=str, allow_nan=False)
    except ValueError as exc:
        found = nonfinite_key(value)
        raise Unstorable(nonfinite_reason(*found) if found else str(exc)) from None


def refuse_long_numbers(record: Any) -> None:
    """Raise :class:`EventError` naming the key of a :class:`LongNumber` in ``record``: the
    record cannot be read, the others of its document can (``a number of 5000 digits under
    key 'id' (more than 4300)``)."""
    found = long_number_key(record)
    if found is not None:
        where, number = found
        under = f" under key {where!r}" if where else ""
        raise EventError(f"{number!r}{under} (more than {sys.get_int_max_str_digits()})")


def long_number_error(text: str | bytes, exc: ValueError) -> json.JSONDecodeError:
    """The :class:`json.JSONDecodeError` for a document whose integer has more digits than
    Python converts, pointing at the first such number."""
    doc = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
    limit = sys.get_int_max_str_digits()
    found = re.search(f"[0-9]{{{limit + 1},}}", doc) if limit else None
    if found is None:
        return json.JSONDecodeError(str(exc), doc, 0)
    digits = found.end() - found.start()
    key = re.search(r'"([^"\\]{1,64})"\s*:\s*-?$', doc[max(0, found.start() - 100):found.start()])
    under = f" under key {key.group(1)!r}" if key else ""
    return json.JSONDecodeError(f"a number of {digits} digits{under} (more than {limit})", doc,
                                found.start())


def decode_text(data: bytes) -> str:
    """A payload's text: UTF-8 (a byte-order mark allowed), else GB18030, which Chinese
    utility back ends and terminals still send without saying so; :class:`UnicodeDecodeError`
    if it is neither."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


#: Characters no database column can hold: NUL (PostgreSQL refuses it in text) and lone
#: UTF-16 surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


#: Why a text is refused before anything is written (PostgreSQL refuses NUL in text, and a
#: lone surrogate cannot be encoded for any database).
UNSTORABLE = "contains a character the database cannot store (NUL or a lone surrogate)"


def check_storable(name: str, value: Any) -> None:
    """Raise :class:`EventError` when a text field holds a character the store cannot keep
    (check text before it is hashed or encoded: a lone surrogate cannot be encoded)."""
    if isinstance(value, str) and not storable(value):
        raise EventError(f"{name}: {UNSTORABLE}")
    if value is not None and not isinstance(value, str):
        raise EventError(f"{name}: expected text, got {type(value).__name__}")


def storable(text: str) -> bool:
    """Whether a database column can hold ``text`` (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def unstorable_key(value: Any) -> str | None:
    """Where in ``value`` (a request body, a form, a step's texts) a text, or a key, holds a
    character the database cannot store: its key path (``a.b``, ``a[2]``), or None. An
    unstorable key is named by its escaped form."""
    todo: deque[tuple[str, Any]] = deque([("", value)])
    while todo:
        where, item = todo.popleft()
        if isinstance(item, str):
            if not storable(item):
                return where or "the body"
        elif isinstance(item, dict):
            for key, inner in item.items():
                name = str(key)
                if not storable(name):
                    return f"{where + ': ' if where else ''}the key {ascii(name)}"
                todo.append((f"{where}.{name}" if where else name, inner))
        elif isinstance(item, list | tuple):
            todo.extend((f"{where}[{k}]", inner) for k, inner in enumerate(item))
    return None


#: Times a record may carry: a feed's clock is wrong, not the calendar, outside these.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: Any, name: str, default_tz: Any = UTC) -> datetime:
    """Parse a time into aware UTC: an ISO-8601 / ``YYYY-MM-DD HH:MM[:SS]`` string (``/`` for
    ``-`` too), the same unpadded (``2026/12/7 8:30``, ``2026-12-7 8:30:00``), a Chinese one
    (``2026年12月7日 8时30分[5秒]``, ``8点30分``, ``2026年12月07日 08:30``, ``2026年12月7日``
    alone: midnight), a compact ``yyyyMMdd`` / ``yyyyMMddHHmm`` / ``yyyyMMddHHmmss`` one (8, 12
    or 14 digits, as a string or a number), or an epoch number: 10 digits are seconds, 13
    digits milliseconds. The year always comes first: no day- or month-first order is guessed.

    Naive and compact times are taken in ``default_tz`` (feeds in China publish local time
    without offset). Anything else — any other count of digits, which no live feed's epoch
    has and which would silently read as a date in the 1970s, and any time outside
    :data:`EARLIEST`..:data:`LATEST` — raises :class:`EventError` naming ``name`` (a record
    error: that record is quarantined, never the poll). So does a placeholder
    (:func:`is_placeholder_time`): a zero date or the epoch.
    """
    if is_placeholder_time(value):
        raise EventError(f"{name}: {_clip(value)} is a placeholder, not a time")
    try:
        dt = _to_datetime(value, name, default_tz)
    except (ValueError, OverflowError, OSError) as exc:
        if isinstance(exc, EventError):
            raise
        raise EventError(f"{name}: not a time this system can hold: {_clip(value)}") from None
    if not EARLIEST <= dt < LATEST:
        raise EventError(f"{name}: {dt:%Y-%m-%d} is out of range "
                         f"({EARLIEST:%Y}–{LATEST:%Y}): {_clip(value)}")
    return dt


#: Digit counts of compact local date-times: yyyyMMdd, yyyyMMddHHmm, yyyyMMddHHmmss.
COMPACT_DIGITS = (8, 12, 14)
#: Digit counts of epoch seconds and of epoch milliseconds: both 2001-09-09 to 2286. Fewer
#: digits would be a live record from the 1970s-90s; 11 digits are neither plausibly.
EPOCH_SECONDS_DIGITS = 10
EPOCH_MILLIS_DIGITS = 13


def _to_datetime(value: Any, name: str, default_tz: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        raise EventError(f"{name}: expected a time, got {_clip(value)}")
    elif isinstance(value, int | float):
        return _from_number(value, name, default_tz)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("/", "-")
        if text.isascii() and text.isdigit():
            if len(text) > 15:  # beyond any epoch in milliseconds this system can hold
                raise EventError(f"{name}: not a time this system can hold: {_clip(value)}")
            return _from_number(int(text), name, default_tz, len(text))
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            dt = _loose_local(text, value, name)
    else:
        raise EventError(f"{name}: expected a time, got {_clip(value)}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=default_tz)
    return dt.astimezone(UTC)


#: The date of a local time as Chinese back ends and Excel write it besides ISO 8601: a year of
#: four digits first, then month and day, padded or not — ``2026-12-7`` (``/`` is read as
#: ``-`` before this) or ``2026年12月7日`` (日 or 号). Never day-first or month-first.
_LOOSE_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{1,2})-([0-9]{1,2})(?![0-9])"
                         r"|\s*年\s*([0-9]{1,2})\s*月\s*([0-9]{1,2})\s*[日号])")
#: Its time of day, if any: ``8:30``, ``08:30:05``, ``8:30:05.5`` (the hour padded or not;
#: minutes and seconds two digits) ...
_LOOSE_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?")
#: ... or ``8时30分``, ``8点30分5秒``, ``8时``, ``8点30`` (no 上午/下午: not guessed).
_LOOSE_HAN = re.compile(r"([0-9]{1,2})\s*[时点](?:\s*([0-9]{1,2})\s*(?:分(?:\s*([0-9]{1,2})"
                        r"\s*秒)?)?)?")


def _loose_local(text: str, value: Any, name: str) -> datetime:
    """A naive local time of the shapes :func:`datetime.fromisoformat` refuses but Chinese back
    ends and Excel write (:data:`_LOOSE_DATE` then :data:`_LOOSE_CLOCK` or
    :data:`_LOOSE_HAN`; a date alone is midnight). Raise :class:`EventError` naming ``name``
    for any other text, and saying why for a shape read but no real time (2026-02-30,
    hour 25)."""
    expected = f"{name}: expected a time like 2026-11-23 08:00:00, got {_clip(value)}"
    date = _LOOSE_DATE.match(text)
    if date is None:
        raise EventError(expected)
    rest = text[date.end():]
    if date.group(2) is not None and rest and not (rest[0] == "T" or rest[0].isspace()):
        raise EventError(expected)
    rest = rest[1:].strip() if rest.startswith("T") else rest.strip()
    year = int(date.group(1))
    month, day = (int(date.group(2)), int(date.group(3))) if date.group(2) is not None else (
        int(date.group(4)), int(date.group(5)))
    hour = minute = second = micro = 0
    if rest:
        clock = _LOOSE_CLOCK.fullmatch(rest) or _LOOSE_HAN.fullmatch(rest)
        if clock is None:
            raise EventError(expected)
        hour, minute, second = (int(g) if g else 0 for g in clock.groups()[:3])
        fraction = clock.group(4) if clock.re is _LOOSE_CLOCK else None
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro)
    except ValueError as exc:
        raise EventError(f"{expected} (not a real date and time: {exc})") from None


def _from_number(value: float, name: str, default_tz: Any, digits: int = 0) -> datetime:
    """A compact local date-time or an epoch number, told apart by the count of digits
    (``digits``: as written, leading zeros included; else those of the number)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise EventError(f"{name}: expected a time, got {_clip(value)}")
    if value < 0:
        raise EventError(f"{name}: {_clip(value)} is before 1970")
    whole = int(value)
    digits = digits or len(str(whole))
    if digits in COMPACT_DIGITS and whole == value:
        return _compact(str(whole).zfill(digits), name, default_tz)
    if digits == EPOCH_SECONDS_DIGITS:
        return datetime.fromtimestamp(float(value), UTC)
    if digits == EPOCH_MILLIS_DIGITS:
        return datetime.fromtimestamp(float(value) / 1000.0, UTC)
    raise EventError(f"{name}: {_clip(value)} is not a time: {digits} digits are neither epoch "
                     "seconds (10 digits), epoch milliseconds (13) nor a compact "
                     "yyyyMMdd[HHmm[ss]] date-time")


def _compact(text: str, name: str, default_tz: Any) -> datetime:
    """``yyyyMMdd[HHmm[ss]]`` in ``default_tz``, as aware UTC."""
    month, day, hour, minute, second = (int(text[i:i + 2] or 0) for i in range(4, 14, 2))
    try:
        local = datetime(int(text[:4]), month, day, hour, minute, second)
    except ValueError:
        raise EventError(f"{name}: {text!r} is not a valid yyyyMMdd[HHmm[ss]] "
                         "date-time") from None
    return local.replace(tzinfo=default_tz).astimezone(UTC)


def _clip(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a record error never echoes a whole blob)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def parse_optional_time(value: Any, name: str, default_tz: Any = UTC) -> datetime | None:
    """Like :func:`parse_time` but ``None``, empty or a placeholder gives ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if is_placeholder_time(value):
        return None
    return parse_time(value, name, default_tz)


#: How back ends fill a time they do not have yet (an ETR not set, a terminal's on time before
#: power is back): zero dates, the epoch, Excel's and Java's day zero.
PLACEHOLDER_DATES = ("0000-00-00", "1900-01-01", "1899-12-30", "1970-01-01")
#: The same dates written compact (``19700101``, ``19000101000000``).
_COMPACT_PLACEHOLDERS = tuple(d.replace("-", "") for d in PLACEHOLDER_DATES)


def is_placeholder_time(value: Any) -> bool:
    """Whether ``value`` stands for "no time": 0, "0", "000…" or a placeholder date (also
    written compact: ``19700101``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0 or (isinstance(value, int) and _compact_placeholder(str(value)))
    if isinstance(value, str):
        text = value.strip().replace("/", "-")
        return ((bool(text) and not text.strip("0")) or text.startswith(PLACEHOLDER_DATES)
                or _compact_placeholder(text))
    return False


def _compact_placeholder(text: str) -> bool:
    return (text.isascii() and text.isdigit() and len(text) in COMPACT_DIGITS
            and text.startswith(_COMPACT_PLACEHOLDERS))


def split_list(value: Any) -> tuple[str, ...]:
    """Split a list field: a JSON list, or a string separated by , ， 、 ; ； or whitespace-free."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value
        for sep in ("，", "、", ";", "；", "\n"):
            text = text.replace(sep, ",")
        return tuple(p.strip() for p in text.split(",") if p.strip())
    if isinstance(value, Sequence):
        return tuple(str(v).strip() for v in value if str(v).strip())
    raise EventError(f"expected a list or a separated string, got {type(value).__name__}")
