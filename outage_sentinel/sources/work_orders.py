"""Trouble-call work orders in dropped files (``file_drop`` with ``content: work_orders``).

One work order per CSV row (a header row names the columns) or per JSON line (an object, or an
array of objects), mapped to ``call`` events by a :class:`~outage_sentinel.config.FieldMap`
— by default the ``95598_workorder`` preset's (:data:`~outage_sentinel.sources.mapping.
WORK_ORDER_FIELDS`). Pure: text in, events and quarantined records out. A bad row names the
file, the row and the field; work orders of categories that report no outage are counted as
ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

from outage_sentinel.config import FieldMap
from outage_sentinel.events import EventError, Quarantined
from outage_sentinel.sources.ami_payload import (
    CsvRow,
    Parsed,
    PayloadError,
    csv_records,
    csv_rows,
    json_line_values,
)
from outage_sentinel.sources.mapping import WORK_ORDER_FIELDS, RecordMapper


class WorkOrderParser:
    """Maps the work orders of one file."""

    def __init__(self, source: str, fields: FieldMap | None, tz: tzinfo) -> None:
        self.source = source
        self.mapper = RecordMapper(source, fields or WORK_ORDER_FIELDS, tz)

    def records(self, records: Iterable[tuple[str, Any]], out: Parsed) -> None:
        """Map ``(where, record)`` pairs into ``out``."""
        for where, record in records:
            out.records += 1
            try:
                event = self.mapper.map(record)
            except EventError as exc:
                # kept as read (a number too long to convert keeps its digits: its str())
                raw = dict(record) if isinstance(record, Mapping) else {"record": record}
                out.quarantined.append(Quarantined(self.source, f"{where}: {exc}", raw))
                continue
            if event is None:
                out.ignored += 1
            else:
                out.events.append(event)

    def csv_text(self, text: str, where: str) -> Parsed:
        """A CSV with a header row; raises :class:`PayloadError` when it has none usable. A bad
        row is quarantined as ``<where> row <n>`` (the line it starts on); the rest are read."""
        rows = csv_rows(text)
        header = self._header(next(rows, None))
        if header is None:
            return Parsed()
        out = Parsed()
        good = []
        for rec in csv_records(rows, header):
            if rec.error is None:
                good.append((f"{where} row {rec.line}", rec.fields))
                continue
            out.records += 1
            out.quarantined.append(Quarantined(self.source, f"{where} row {rec.line}: "
                                               f"{rec.error}", rec.raw))
        self.records(good, out)
        return out

    def _header(self, first: CsvRow | None) -> list[str] | None:
        """The header row's columns (``None``: an empty text); :class:`PayloadError` when it
        is unreadable or has no order id or time column."""
        if first is None:
            return None
        if first.error is not None:
            raise PayloadError(f"bad CSV header: {first.error.removeprefix('bad CSV: ')}")
        header = [h.strip() for h in first.cells]
        f = self.mapper.fields
        if f.event_id not in header or f.start not in header:
            raise PayloadError(f"CSV header has no {f.event_id!r} (order id) or {f.start!r} "
                               f"(time) column; it has: {', '.join(header)[:300]}")
        return header

    def json_lines(self, text: str, where: str) -> Parsed:
        """JSON lines: an object or an array of objects per line."""
        out = Parsed()
        for lineno, line, data, error in json_line_values(text):
            if error is not None:
                out.records += 1
                out.quarantined.append(Quarantined(self.source, f"{where} line {lineno}: {error}",
                                                   {"line": line[:4096]}))
                continue
            items = data if isinstance(data, list) else [data]
            label = f"{where} line {lineno}"
            self.records(((label if len(items) == 1 else f"{label} item {i}", item)
                          for i, item in enumerate(items)), out)
        return out
