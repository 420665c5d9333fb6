"""Trouble-call work orders in dropped files (``file_drop`` with ``content: work_orders``).

One work order per CSV row (a header row names the columns) or per JSON line (an object, or an
array of objects), mapped to ``call`` events by a :class:`~outage_sentinel.config.FieldMap`
— by default the ``95598_workorder`` preset's (:data:`~outage_sentinel.sources.mapping.
WORK_ORDER_FIELDS`). Pure: text in, events and quarantined records out. A bad row names the
file, the row and the field; work orders of categories that report no outage are counted as
ignored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

from outage_sentinel.config import FieldMap
from outage_sentinel.events import EventError, Quarantined
from outage_sentinel.sources.ami_payload import Parsed, PayloadError, json_line_values
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
                raw = dict(record) if isinstance(record, Mapping) else {"record": repr(record)}
                out.quarantined.append(Quarantined(self.source, f"{where}: {exc}", raw))
                continue
            if event is None:
                out.ignored += 1
            else:
                out.events.append(event)

    def csv_text(self, text: str, where: str) -> Parsed:
        """A CSV with a header row; raises :class:`PayloadError` when it has none usable."""
        reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return Parsed()
        except csv.Error as exc:
            raise PayloadError(f"bad CSV header: {exc}") from None
        f = self.mapper.fields
        if f.event_id not in header or f.start not in header:
            raise PayloadError(f"CSV header has no {f.event_id!r} (order id) or {f.start!r} "
                               f"(time) column; it has: {', '.join(header)[:300]}")
        out = Parsed()
        n = 1
        try:
            rows = []
            for n, row in enumerate(reader, start=2):
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):  # an unquoted comma shifts every column after it
                    out.records += 1
                    out.quarantined.append(Quarantined(
                        self.source, f"{where} row {n}: expected {len(header)} columns, got "
                        f"{len(row)} (an unquoted comma or a missing field?)",
                        {"row": row[:64]}))
                    continue
                rows.append((f"{where} row {n}", dict(zip(header, (c.strip() for c in row),
                                                          strict=True))))
        except csv.Error as exc:
            out.quarantined.append(Quarantined(self.source, f"{where} row {n + 1}: bad CSV: {exc}",
                                               {}))
        self.records(rows, out)
        return out

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
