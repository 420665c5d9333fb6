"""Declarative field mapping: JSON records → :class:`~outage_sentinel.events.OutageEvent`.

No I/O but a warning log line (an optional time set aside, below), no clock. A
:class:`~outage_sentinel.config.FieldMap` names, for each normalised field, a dotted path
into one record (``data.powerCutList`` / ``a.b.0.c``; a numeric segment indexes a list).
:class:`RecordMapper` applies it and raises :class:`EventError` naming the normalised field
*and* the feed's own path, so a quarantine reason reads
``record 3: start (startTime): expected a time like 2026-11-23 08:00:00, got 'tomorrow'``.

Two presets cover the 95598 outage-notice formats (docs/design.md §4):

``95598_list`` (older list format)::

    {"seleList": [{"powerOffId", "subsName", "typeCode", "startTime", "stopTime", "scope",
                   "lineName", "pubTranName", "poweroffReason"}],
     "pageModel": {"pageNow", "totalPage", "totalCount"}}

(``totalCount`` is the feed's count of its records: a snapshot poll that saw fewer ends none.)

``95598_powercut`` (newer format)::

    {"data": {"powerCutList": [{"poweroffId", "powerType", "takeType", "startTime", "stopTime",
                                "powerRange", "powerArea", "powerCircuit", "powerCause"}],
              "total"}}

(success code ``"code": "1"``, 查询成功: a reply whose ``code`` is none of its success values
fails the poll, an empty list in it is no "no outages").

``95598_workorder`` (trouble calls: work orders of customer service)::

    {"data": {"records": [{"orderNo", "acceptTime", "custNo", "meterNo", "tgNo", "lineName",
                           "address", "faultType", "content"}], "pages"}}

Each becomes a ``call`` event placed by customer number, meter number, area number or address:
the first of them that resolves, in that order of precision (the topology resolves them; one
caller is in one area). A record whose ``faultType`` names no outage (电压低, 电费…), or one
household's own fault (单户无电, 表后…: ``not_outage_categories``), is skipped, not evidence.
Its cause is ``faultType``; the agent's free text (``content``: names, numbers) stays in the
raw payload.

Outage-type values (``typeCode`` / ``powerType``) are mapped by :data:`KIND_VALUES_95598`:
``1``/``01``/计划停电 → planned, ``2``/``02``/临时停电 → temporary, ``3``/``03``/故障停电 → fault
(plus the usual label variants). A label not listed but containing 计划/临时/故障 is classified by
that word; anything else (or an empty value) is *unclassified*: handled as the field map's
``default_kind`` (``fault``: it still reaches the liaisons and a crew decision), marked in the
event's raw payload (:data:`~outage_sentinel.events.UNCLASSIFIED_KIND`) so that no notice
claims a kind for it (a neutral 停电通知). ``stopTime`` is the
*expected* restoration (a notice's end is a promise, not an observation).

Only a bad *required* field quarantines a record. An optional time (the ETR, ``end``) that
cannot be read — ``待定``, ``--``, ``未知``, ``暂无``, 2026-02-30 — is no time: the outage is kept
without it, and the mapper logs ``feed_time_ignored`` naming the record, the field and the
value. So is an ETR not after the record's start (a stop typed a day early): villages are
never promised a restoration before the outage begins. Each (record, field, value) is logged
once per mapper, not at every poll.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any, Final

import structlog

from outage_sentinel.config import SUCCESS_VALUES, FieldMap, HttpJsonSourceConfig, PaginationConfig
from outage_sentinel.events import (
    KINDS,
    STATUSES,
    UNCLASSIFIED_KIND,
    EventError,
    Kind,
    LongNumber,
    OutageEvent,
    Quarantined,
    Status,
    parse_optional_time,
    parse_time,
    refuse_long_numbers,
    split_list,
)

log = structlog.get_logger(__name__)

#: How many ignored (record, field, value) times a mapper remembers so as to log each once; past
#: that it forgets them all and starts again (a feed of many bad ETRs logs them again, rarely).
MAX_TIME_WARNINGS_REMEMBERED: Final = 4096
#: Key of a merged event's raw payload that keeps the other rows of its record (the first
#: row's own keys stay at the top level, as for a record of one row): nothing served is lost.
MERGED_ROWS: Final = "sentinel_merged_rows"
#: A row of a poll: where it was served (``page 2: record 1``) and the event it maps to.
Row = tuple[str, OutageEvent]


class _Missing:
    """Sentinel type for "the path does not exist in the record"."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by :func:`get_path` when a path does not resolve.
MISSING: Final = _Missing()


def get_path(data: Any, path: str) -> Any:
    """Follow a dotted ``path`` into nested dicts/lists; :data:`MISSING` if any step is absent.

    An empty path (``""``) returns ``data`` itself, so ``records_path: ""`` means "the body
    is the list of records".
    """
    current = data
    if not path:
        return current
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def describe_path_failure(data: Any, path: str) -> str:
    """Explain where ``path`` stops resolving in ``data`` (for error messages about bodies)."""
    current = data
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                keys = ", ".join(sorted(str(k) for k in current)[:12]) or "none"
                where = ".".join(walked) or "top level"
                return f"key {part!r} not found at {where} (keys there: {keys})"
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            if not -len(current) <= int(part) < len(current):
                return f"index {part} out of range at {'.'.join(walked) or 'top level'}"
            current = current[int(part)]
        else:
            where = ".".join(walked) or "top level"
            return f"cannot descend into {_type_name(current)} at {where} with {part!r}"
        walked.append(part)
    return "resolved"


# -- presets ------------------------------------------------------------------------------------

#: Outage-type values of both 95598 formats. Codes are given with and without a leading zero
#: because provinces differ; labels cover the wordings seen on notices.
KIND_VALUES_95598: Final[dict[str, Kind]] = {
    "1": "planned",
    "01": "planned",
    "计划停电": "planned",
    "计划检修": "planned",
    "计划检修停电": "planned",
    "计划施工停电": "planned",
    "2": "temporary",
    "02": "temporary",
    "临时停电": "temporary",
    "临时检修": "temporary",
    "临时检修停电": "temporary",
    "临时施工停电": "temporary",
    "有序用电": "temporary",
    "超电网供电能力停电": "temporary",
    "3": "fault",
    "03": "fault",
    "故障停电": "fault",
    "故障抢修": "fault",
    "事故停电": "fault",
}

#: Words that classify an unlisted label (``"10kV线路计划停电（检修）"`` → planned), in order.
_KIND_WORDS: Final[tuple[tuple[str, Kind], ...]] = (
    ("故障", "fault"),
    ("事故", "fault"),
    ("抢修", "fault"),
    ("临时", "temporary"),
    ("计划", "planned"),
)


#: Trouble calls (95598 / customer-service work orders): one record per call, placed by the
#: customer or meter number it came from, else the area named, else the address. The cause is
#: the category alone: ``content`` is what the agent typed of the call (a caller's name, a
#: number to ring back), for the command centre (kept in the raw payload), never for a notice.
WORK_ORDER_FIELDS: Final = FieldMap(
    event_id="orderNo",
    start="acceptTime",
    signal="call",
    customer="custNo",
    meter="meterNo",
    transformers="tgNo",
    feeder="lineName",
    area_text="address",
    category="faultType",
    cause="faultType",
)


@dataclass(frozen=True)
class Preset:
    """Where the records are, how to map them, and how the feed pages."""

    records_path: str
    fields: FieldMap
    pagination: PaginationConfig
    #: Where the feed gives the count of all its records (None: it gives none).
    total_count_path: str | None = None
    #: Where the reply says whether it succeeded (None: only ``"success": false`` fails it),
    #: and what it says then: an error reply may still carry an empty list.
    success_path: str | None = None
    success_values: tuple[str | int | bool, ...] = SUCCESS_VALUES
    #: A reply without anything at ``success_path`` passes (a gateway may strip the code);
    #: one that has it must say success. A configured ``success_path`` is always required.
    success_optional: bool = False


#: The newer 95598 format answers ``"code": "1"`` (查询成功) on success, where most gateways
#: say 0 / 200; "1" is a success for this format only (elsewhere it may be an error code).
POWERCUT_SUCCESS_VALUES: Final = (*SUCCESS_VALUES, "1")

PRESETS: Final[dict[str, Preset]] = {
    "95598_list": Preset(
        records_path="seleList",
        fields=FieldMap(
            event_id="powerOffId",
            kind="typeCode",
            start="startTime",
            expected_restoration="stopTime",
            feeder="lineName",
            transformers="pubTranName",
            area_text="scope",
            cause="poweroffReason",
            kind_values=KIND_VALUES_95598,
        ),
        pagination=PaginationConfig(
            mode="page", page_param="pageNow", total_pages_path="pageModel.totalPage"
        ),
        total_count_path="pageModel.totalCount",
    ),
    "95598_powercut": Preset(
        records_path="data.powerCutList",
        fields=FieldMap(
            event_id="poweroffId",
            kind="powerType",
            start="startTime",
            expected_restoration="stopTime",
            feeder="powerCircuit",
            area_text=["powerArea", "powerRange"],
            cause="powerCause",
            kind_values=KIND_VALUES_95598,
        ),
        pagination=PaginationConfig(mode="none"),
        total_count_path="data.total",
        success_path="code",
        success_values=POWERCUT_SUCCESS_VALUES,
        success_optional=True,
    ),
    "95598_workorder": Preset(
        records_path="data.records",
        fields=WORK_ORDER_FIELDS,
        pagination=PaginationConfig(
            mode="page", page_param="pageNum", total_pages_path="data.pages"
        ),
    ),
}


def resolve_mapping(config: HttpJsonSourceConfig) -> Preset:
    """The effective records path, field map, pagination, total-count path and success check
    of a source.

    A preset supplies them; each one given explicitly in the config replaces the preset's
    (whole, not merged: a ``fields`` block is a complete field map; ``total_count_path: null``
    reads no count, ``success_path: null`` checks no code).
    """
    preset = PRESETS[config.preset] if config.preset is not None else None
    records_path = config.records_path if config.records_path is not None else (
        preset.records_path if preset else None)
    fields = config.fields if config.fields is not None else (preset.fields if preset else None)
    pagination = config.pagination if config.pagination is not None else (
        preset.pagination if preset else PaginationConfig())
    if records_path is None or fields is None:  # the config validator already forbids this
        raise ValueError(f"source {config.name}: give a preset or records_path and fields")
    given = config.model_fields_set
    total_count_path = config.total_count_path if "total_count_path" in given \
        else (preset.total_count_path if preset else None)
    # A success check given in the config is the config's, required (as documented).
    path, optional = (preset.success_path, preset.success_optional) if preset is not None \
        and "success_path" not in given else (config.success_path, False)
    success_values = tuple(config.success_values) if "success_values" in given \
        or preset is None else preset.success_values
    return Preset(records_path=records_path, fields=fields, pagination=pagination,
                  total_count_path=total_count_path, success_path=path,
                  success_values=success_values, success_optional=optional)


# -- mapping ------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, LongNumber):
        return repr(value)  # a number of 5000 digits
    return type(value).__name__


def _clip_value(value: Any, limit: int = 60) -> str:
    """A feed value as a log line shows it: its text (a string as is), cut to ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _is_empty(value: Any) -> bool:
    return value is MISSING or value is None or (isinstance(value, str) and not value.strip())


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def _joined(texts: Iterable[str]) -> str:
    """Texts of several rows as one, each part once (a part is what ``；`` separates)."""
    return "；".join(_unique(p.strip() for t in texts for p in t.split("；")))


def _distinct_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows in a fixed order (by their content), a row served twice taken once (it moved
    across a page boundary between two requests of the poll)."""
    keyed: dict[str, Row] = {}
    for row in rows:
        key = json.dumps(row[1].raw, sort_keys=True, ensure_ascii=False, default=str)
        keyed.setdefault(key, row)
    return [keyed[k] for k in sorted(keyed)]


class RecordMapper:
    """Turns one feed record into an :class:`OutageEvent` according to a :class:`FieldMap`.

    Naive times are read in ``tz`` (95598 feeds publish Beijing time without an offset).
    Transformer-area names are kept as given; the daemon resolves them through the topology.
    """

    def __init__(self, source: str, fields: FieldMap, tz: tzinfo) -> None:
        self.source = source
        self.fields = fields
        self.tz = tz
        #: (record id, field, value) of the optional times ignored and already logged.
        self._time_warned: set[tuple[str, str, str]] = set()

    def _label(self, name: str, path: str) -> str:
        return f"{name} ({path})" if path != name else name

    def _scalar_text(self, record: Mapping[str, Any], name: str, path: str | None,
                     *, required: bool = False) -> str | None:
        """A string-ish field: strings and numbers are accepted, objects/arrays/booleans not."""
        if path is None:
            return None
        value = get_path(record, path)
        if _is_empty(value):
            if required:
                what = "missing" if value is MISSING else f"empty ({_type_name(value)})"
                raise EventError(f"{self._label(name, path)}: required, but {what}")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise EventError(
                f"{self._label(name, path)}: expected a string or number, got {_type_name(value)}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip()

    def _text(self, record: Mapping[str, Any], name: str, paths: str | list[str] | None) -> str:
        if paths is None:
            return ""
        parts = [self._scalar_text(record, name, p) for p in ([paths] if isinstance(paths, str)
                                                               else paths)]
        seen: list[str] = []
        for part in parts:
            if part and part not in seen:
                seen.append(part)
        return "；".join(seen)

    def _kind(self, record: Mapping[str, Any]) -> tuple[Kind, str | None]:
        """The record's kind, and the type value that could not be classified (``""`` when
        the type field is empty) or None. Without a ``kind`` field in the map,
        ``default_kind`` is what the feed's records are (the config says so): classified."""
        raw = self._scalar_text(record, "kind", self.fields.kind)
        if raw is None:
            return self.fields.default_kind, None if self.fields.kind is None else ""
        if raw in self.fields.kind_values:
            return self.fields.kind_values[raw], None
        if raw in KINDS:
            return raw, None
        for word, kind in _KIND_WORDS:
            if word in raw:
                return kind, None
        return self.fields.default_kind, raw

    def _status(self, record: Mapping[str, Any]) -> Status:
        raw = self._scalar_text(record, "status", self.fields.status)
        if raw is None:
            return self.fields.default_status
        if raw in self.fields.status_values:
            return self.fields.status_values[raw]
        if raw in STATUSES:
            return raw
        known = ", ".join(sorted(self.fields.status_values)) or "none configured"
        # Unlike the kind, a wrong status would close or reopen incidents: refuse to guess.
        raise EventError(f"{self._label('status', self.fields.status or '')}: unknown value "
                         f"{raw!r} (known: {known}; add it to fields.status_values)")

    def _time(self, record: Mapping[str, Any], name: str, path: str | None,
              *, required: bool = False) -> Any:
        if path is None:
            return None
        value = get_path(record, path)
        label = self._label(name, path)
        if _is_empty(value):
            if required:
                what = "missing" if value is MISSING else f"empty ({_type_name(value)})"
                raise EventError(f"{label}: required, but {what}")
            return None
        if required:
            return parse_time(value, label, self.tz)
        return parse_optional_time(value, label, self.tz)

    def _optional_time(self, record: Mapping[str, Any], event_id: str, name: str,
                       path: str | None) -> Any:
        """An optional time, or None when it is absent, a placeholder, or cannot be read: the
        record is kept without it and :meth:`_ignore_time` logs why."""
        try:
            return self._time(record, name, path)
        except EventError as exc:
            assert path is not None  # no path, no value, no error
            self._ignore_time(event_id, self._label(name, path), get_path(record, path),
                              f"not a time, read as unknown: {exc}")
            return None

    def _ignore_time(self, event_id: str, label: str, value: Any, reason: str,
                     **more: Any) -> None:
        """Log once per (record, field, value) that an optional time of a kept record was
        set aside as unknown."""
        shown = _clip_value(value)
        key = (event_id, label, shown)
        if key in self._time_warned:
            return
        if len(self._time_warned) >= MAX_TIME_WARNINGS_REMEMBERED:
            self._time_warned.clear()
        self._time_warned.add(key)
        log.warning("feed_time_ignored", source=self.source, event_id=event_id, field=label,
                    value=shown, reason=reason[:300], **more)

    def _transformers(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        path = self.fields.transformers
        if path is None:
            return ()
        value = get_path(record, path)
        if _is_empty(value):
            return ()
        label = self._label("transformers", path)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, bool) or not isinstance(item, str | int):
                    raise EventError(f"{label}[{i}]: expected a string, got {_type_name(item)}")
            names = [str(v).strip() for v in value]
        elif isinstance(value, str):
            names = list(split_list(value))
        else:
            raise EventError(f"{label}: expected a list or a separated string, "
                             f"got {_type_name(value)}")
        unique: list[str] = []
        for n in names:
            if n and n not in unique:
                unique.append(n)
        return tuple(unique)

    def is_outage(self, record: Mapping[str, Any]) -> bool:
        """False for a work order whose category names no outage (电压低, 电费…), or names one
        household's own fault (单户无电, 表后开关跳闸: ``not_outage_categories``, checked
        first, as they contain 无电 / 停电 too) and nothing wider (``area_outage_categories``:
        配变内部故障-全部停电, 多户无电（表后开关正常）): no evidence that its area is off."""
        f = self.fields
        category = self._scalar_text(record, "category", f.category)
        if category is None:
            return True
        if any(word in category for word in f.not_outage_categories) and \
                not any(word in category for word in f.area_outage_categories):
            return False
        return any(word in category for word in f.outage_categories)

    def _references(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        """The customer and meter numbers, then the areas named: most precise first, as
        :func:`~outage_sentinel.incidents.resolve_event` places a call by the first that
        resolves (a work order's area is the agent's pick; the customer is the caller)."""
        refs: list[str] = []
        for name, path in (("customer", self.fields.customer), ("meter", self.fields.meter)):
            value = self._scalar_text(record, name, path)
            if value and value not in refs:
                refs.append(value)
        refs.extend(r for r in self._transformers(record) if r not in refs)
        return tuple(refs)

    def merge(self, rows: Sequence[Row]) -> OutageEvent:
        """One event of the rows a poll served under one id. Outage systems list a work order
        once per transformer area; read as rows replacing each other, such a record flipped
        between its areas at every poll and no village of it heard the right thing.

        The areas, area text and causes of the rows are joined; every other field must agree
        (an ETR: the latest is kept and the others logged), or :class:`EventError` names the
        id, the field and each row's value: no row is picked silently. Rows are taken in a
        fixed order (their content), so the order a feed lists them in changes nothing."""
        distinct = _distinct_rows(rows)
        if len(distinct) == 1:
            return distinct[0][1]
        events = [e for _, e in distinct]
        f = self.fields
        kind, unclassified = self._merged_kind(distinct)
        for name, path in (("status", f.status), ("start", f.start), ("end", f.end)):
            self._agreed(distinct, name, path, optional=False)
        raw = {k: v for k, v in events[0].raw.items() if k != UNCLASSIFIED_KIND}
        raw[MERGED_ROWS] = [dict(e.raw) for e in events[1:]]
        if unclassified is not None:
            raw[UNCLASSIFIED_KIND] = unclassified
        return replace(
            events[0], kind=kind, raw=raw, revision=self._merged_revision(events),
            feeder=self._agreed(distinct, "feeder", f.feeder, optional=True),
            device=self._agreed(distinct, "device", f.device, optional=True),
            expected_restoration=self._merged_etr(distinct),
            transformers=tuple(_unique(r for e in events for r in e.transformers)),
            area_text=_joined(e.area_text for e in events),
            cause=_joined(e.cause for e in events))

    def _agreed(self, rows: Sequence[Row], name: str, path: str | None, *,
                optional: bool) -> Any:
        """The value every row gives for ``name`` (``optional``: rows that give none agree
        with any); :class:`EventError` naming the rows' values if they differ."""
        values = {getattr(e, name) for _, e in rows}
        if optional:
            values.discard(None)
        if len(values) > 1:
            raise self._conflict(rows, name, path, lambda e: getattr(e, name))
        return next(iter(values), None)

    def _merged_kind(self, rows: Sequence[Row]) -> tuple[Kind, str | None]:
        """The kind the classified rows agree on (an unclassified row names none), and the
        unclassified value when no row is classified."""
        classified = [(w, e) for w, e in rows if UNCLASSIFIED_KIND not in e.raw]
        if not classified:
            return rows[0][1].kind, rows[0][1].raw[UNCLASSIFIED_KIND]
        if len({e.kind for _, e in classified}) > 1:
            raise self._conflict(classified, "kind", self.fields.kind, lambda e: e.kind)
        return classified[0][1].kind, None

    def _merged_etr(self, rows: Sequence[Row]) -> datetime | None:
        """The latest ETR of the rows: no village is promised its power back before the
        record says any of its areas is. The earlier ones are logged (once) as set aside."""
        given = [(w, e, e.expected_restoration) for w, e in rows
                 if e.expected_restoration is not None]
        if not given:
            return None
        latest = max(etr for _, _, etr in given)
        path = self.fields.expected_restoration or "expected_restoration"
        label = self._label("expected_restoration", path)
        for where, e, etr in given:
            if etr != latest:
                self._ignore_time(e.event_id, label, get_path(e.raw, path),
                                  f"{where}: another row of the record gives a later "
                                  f"{label}: the latest is kept")
        return latest

    def _merged_revision(self, events: Sequence[OutageEvent]) -> str:
        """The feed's revision when every row gives the same one, one of all of them when
        they differ; without a revision field, none (the merged content's fingerprint)."""
        if self.fields.revision is None:
            return ""
        revisions = sorted({e.revision for e in events})
        if len(revisions) == 1:
            return revisions[0]
        return hashlib.sha256("\n".join(revisions).encode("utf-8")).hexdigest()[:16]

    def _conflict(self, rows: Sequence[Row], name: str, path: str | None,
                  value: Callable[[OutageEvent], Any]) -> EventError:
        """The error for rows of one id that disagree on ``name``: each row's value as the
        feed gave it."""
        label = self._label(name, path) if path else name
        shown = "; ".join(
            f"{where}: " + ("missing" if path and get_path(e.raw, path) is MISSING else
                            _clip_value(get_path(e.raw, path) if path else value(e)))
            for where, e in rows)
        return EventError(f"record id {rows[0][1].event_id!r} is listed on {len(rows)} rows "
                          f"that disagree on {label} ({shown}): which row is right cannot be "
                          "told, so none is used")

    def record_id(self, record: Any) -> str | None:
        """The id of a record, when it can be read (a record quarantined for another field is
        still listed by the feed); None otherwise."""
        if not isinstance(record, Mapping):
            return None
        try:
            return self._scalar_text(record, "event_id", self.fields.event_id, required=True)
        except EventError:
            return None

    def map(self, record: Any) -> OutageEvent | None:
        """Map one record; raise :class:`EventError` naming the field on any problem (a
        number of more digits than Python converts anywhere in it, too: see
        :func:`~outage_sentinel.events.load_json`). None for a record that is no outage
        evidence (see :meth:`is_outage`)."""
        if not isinstance(record, Mapping):
            raise EventError(f"expected a JSON object, got {_type_name(record)}")
        refuse_long_numbers(record)
        f = self.fields
        if not self.is_outage(record):
            return None
        event_id = self._scalar_text(record, "event_id", f.event_id, required=True)
        assert event_id is not None
        start = self._time(record, "start", f.start, required=True)
        kind, unclassified = self._kind(record)
        status = self._status(record)  # a record refused for it logs nothing below
        etr = self._optional_time(record, event_id, "expected_restoration",
                                  f.expected_restoration)
        if etr is not None and etr <= start:  # a stop typed a day early: promise nothing
            assert f.expected_restoration is not None
            label = self._label("expected_restoration", f.expected_restoration)
            said, began = (_clip_value(get_path(record, path))
                           for path in (f.expected_restoration, f.start))
            self._ignore_time(event_id, label, said,
                              f"{label} {said} is not after {self._label('start', f.start)} "
                              f"{began}: read as unknown", start=began)
            etr = None
        raw = dict(record)
        if unclassified is not None:
            raw[UNCLASSIFIED_KIND] = unclassified
        return OutageEvent(
            source=self.source,
            event_id=event_id,
            kind=kind,
            status=status,
            start=start,
            expected_restoration=etr,
            end=self._optional_time(record, event_id, "end", f.end),
            feeder=self._scalar_text(record, "feeder", f.feeder) or None,
            device=self._scalar_text(record, "device", f.device) or None,
            transformers=self._references(record),
            area_text=self._text(record, "area_text", f.area_text),
            cause=self._text(record, "cause", f.cause),
            signal=f.signal,
            revision=self._scalar_text(record, "revision", f.revision) or "",
            raw=raw,
        )


def merge_rows_by_id(mapper: RecordMapper, rows: Iterable[Row]
                     ) -> tuple[list[OutageEvent], list[Quarantined]]:
    """One event per record id of the rows one poll read (:meth:`RecordMapper.merge`), in the
    order the ids first came; the rows of an id that disagree are one quarantined entry (its
    reason names the id, the field and each row by where it was read; its raw, every row).

    For sources whose rows are records (a feed's list, a dropped export): an AMI report is an
    event of its own, never merged."""
    groups: dict[str, list[Row]] = {}
    for where, event in rows:
        groups.setdefault(event.event_id, []).append((where, event))
    events: list[OutageEvent] = []
    quarantined: list[Quarantined] = []
    for group in groups.values():
        try:
            events.append(mapper.merge(group))
        except EventError as exc:
            quarantined.append(Quarantined(mapper.source, str(exc),
                                           [dict(e.raw) for _, e in group]))
    return events, quarantined


#: Keys an error envelope's message is found under, first found wins.
_MESSAGE_KEYS: Final = ("msg", "message", "errmsg", "errMsg", "error", "resultMsg")


def envelope_failure(payload: Any, success_path: str | None,
                     success_values: Sequence[str | int | bool], *,
                     optional: bool = False) -> str | None:
    """Why the reply is an error envelope (``None``: it is not). With ``success_path``, the
    value there must be one of ``success_values`` (compared as lower-case text; ``optional``:
    unless there is none); without it, only a top-level ``"success": false`` marks one. An
    error envelope may still hold an empty list, which read as "no outages" would end every
    open outage."""
    said = next((str(payload[k])[:200] for k in _MESSAGE_KEYS
                 if isinstance(payload, Mapping) and payload.get(k)), "")
    tail = f" ({said})" if said else ""
    if optional and success_path is not None and get_path(payload, success_path) is MISSING:
        success_path = None
    if success_path is None:
        if isinstance(payload, Mapping) and payload.get("success") is False:
            return f"the reply says success: false{tail}"
        return None
    value = get_path(payload, success_path)
    if value is MISSING:
        return (f"success_path {success_path!r}: "
                f"{describe_path_failure(payload, success_path)}{tail}")
    wanted = {str(v).strip().lower() for v in success_values}
    if str(value).strip().lower() not in wanted:
        return f"success_path {success_path!r} is {str(value)[:50]!r}, not a success{tail}"
    return None


#: Top-level keys a reply's own result code is found under (the 95598 formats use ``code``).
CODE_KEYS: Final = ("code", "resultCode", "retCode")


def envelope_doubt(payload: Any, success_values: Sequence[str | int | bool]) -> str | None:
    """Why a reply checked by no ``success_path`` may still be an error (``None``: nothing
    says so): a top-level result code (:data:`CODE_KEYS`) that is none of ``success_values``.

    The poll is not failed for it — the format documents no code, so an unknown one may be a
    success the config does not know — but a list it came with is not taken as the whole
    list: a snapshot ends no record from it (``系统繁忙`` with an empty list is no "all over").
    """
    if not isinstance(payload, Mapping):
        return None
    wanted = {str(v).strip().lower() for v in success_values}
    for key in CODE_KEYS:
        value = payload.get(key, MISSING)
        if value is MISSING or str(value).strip().lower() in wanted:
            continue
        said = next((str(payload[k])[:200] for k in _MESSAGE_KEYS if payload.get(k)), "")
        tail = f" ({said})" if said else ""
        return (f"the reply's {key} {str(value)[:50]!r} is not a known success{tail}; "
                "set success_path and success_values if it is one")
    return None


def extract_records(payload: Any, records_path: str) -> list[Any]:
    """The list of records at ``records_path``.

    ``null`` there means "no records" (Java back ends serialise an empty result that way);
    a missing path or a non-list is a format error (likely an error envelope such as
    ``{"code": 500, "message": ...}``) and raises :class:`EventError` saying where it broke.
    """
    value = get_path(payload, records_path)
    if value is MISSING:
        raise EventError(f"records_path {records_path!r}: "
                         f"{describe_path_failure(payload, records_path)}")
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventError(f"records_path {records_path!r}: expected an array, "
                         f"got {_type_name(value)}")
    return value

