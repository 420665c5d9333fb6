"""The ``file_drop`` source: a directory where AMI head-ends (or operators) drop exports.

With ``content: work_orders`` the files hold trouble-call work orders instead
(:mod:`outage_sentinel.sources.work_orders`); everything below holds for both.

Files are CSV (``.csv``) or JSON lines (``.json``, ``.jsonl``, ``.ndjson``; a line may hold one
record, an array or an envelope — see :mod:`outage_sentinel.sources.ami_payload`). UTF-8 (with
or without BOM) is expected; GB18030 (which covers GBK exports from Windows tools) is accepted.

Each file is processed once:

* **Ready files only.** Names starting with ``.`` or ending ``.tmp``/``.part``/``.partial``/
  ``.crdownload``/``.swp`` are never read (write to ``x.csv.tmp`` then rename is the safe way
  to drop a file), and a file is read only when its mtime is ``settle_seconds`` old, i.e. no
  one has written to it for that long.
* :meth:`FileDropSource.poll` parses up to ``max_files_per_poll`` ready files, oldest first.
  A bad row is quarantined (``export.csv row 7: time: ...``) and the rest of the file goes on;
  a file unusable as a whole (not text, no id/code/time column, every record bad, too big)
  yields one quarantined entry naming the file and why.
* :meth:`FileDropSource.acknowledge` — called after the daemon committed the poll — moves each
  file with :func:`os.replace` (atomic on one filesystem) into ``done/`` or, when unusable as a
  whole, ``failed/``. A name already there gets a ``.1``, ``.2``, ... suffix.
* A crash before the move, or a poll whose result is not acknowledged (the commit failed),
  means the file is read again; its events carry deterministic ids (device + off/on + time) so
  the store ignores the repeats. A file changed after it was read is not moved; it is read
  again next poll.
* Work orders (records, not AMI reports): the rows of one record id in one file are one
  event (:func:`~outage_sentinel.sources.mapping.merge_rows_by_id`): an export lists a work
  order once per transformer area, and rows read as replacing each other flipped the record
  between its villages. Rows of one file that disagree are quarantined together (``record id
  'P1' is listed on 2 rows that disagree on start (startTime) (a.csv row 2: ...; a.csv row
  5: ...)``). Another file is another export, read in order of modification: a later state
  of its records (the work cancelled, the power back), its own event even when both are read
  in one poll. AMI reports are events of their own: never merged.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import FileDropSourceConfig
from outage_sentinel.events import PollResult, Quarantined, decode_text
from outage_sentinel.sources.ami_payload import AmiPayloadParser, Parsed, PayloadError
from outage_sentinel.sources.base import SourceError
from outage_sentinel.sources.mapping import Row, merge_rows_by_id
from outage_sentinel.sources.work_orders import WorkOrderParser
from outage_sentinel.topology import Topology

log = structlog.get_logger(__name__)

#: Suffixes of files still being written.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".filepart")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
#: Characters of a failed file kept in its quarantine entry.
HEAD_LIMIT = 4096


@dataclass(frozen=True)
class _Taken:
    path: Path
    size: int
    mtime_ns: int
    outcome: Literal["done", "failed"]


class _LocatedOrders(WorkOrderParser):
    """A :class:`WorkOrderParser` that keeps where each event was read (``a.csv row 3``), so
    that the rows of one id are merged over the files of a poll and a conflict names them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.located: list[Row] = []

    def records(self, records: Iterable[tuple[str, Any]], out: Parsed) -> None:
        for where, record in records:
            before = len(out.events)
            super().records(((where, record),), out)
            self.located.extend((where, e) for e in out.events[before:])

    def take(self) -> list[Row]:
        """The rows read since the last call, forgotten here."""
        rows, self.located = self.located, []
        return rows


class FileDropSource:
    """Reads AMI export files from a directory; see the module docstring."""

    type = "file_drop"

    def __init__(self, config: FileDropSourceConfig, *, registry: AmiRegistry | None = None,
                 topology: Topology | None = None,
                 default_tz: tzinfo | str = "Asia/Shanghai") -> None:
        """``registry`` (or one built from ``topology``'s ``meters.csv``) places devices in
        transformer areas; ``default_tz`` is for times without an offset."""
        self.config = config
        self.name: str = config.name
        if registry is None and topology is not None:
            registry = AmiRegistry.from_topology(topology)
        tz = ZoneInfo(default_tz) if isinstance(default_tz, str) else default_tz
        self.parser: AmiPayloadParser | WorkOrderParser = (
            _LocatedOrders(config.name, config.fields, ZoneInfo(config.timezone)
                           if config.timezone else tz)
            if config.content == "work_orders"
            else AmiPayloadParser(config.name, config.ami, registry, default_tz))
        self.directory = Path(config.directory)
        self.done_dir = Path(config.done_dir) if config.done_dir else self.directory / "done"
        self.failed_dir = (Path(config.failed_dir) if config.failed_dir
                           else self.directory / "failed")
        self._pending: list[tuple[PollResult, list[_Taken]]] = []
        #: Counters for metrics.
        self.stats: dict[str, int] = {"files_done": 0, "files_failed": 0, "records": 0,
                                      "ignored": 0, "quarantined": 0}

    # -- Source protocol ----------------------------------------------------------------------

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        """Create ``done/`` and ``failed/``. The cursor is unused: the directory is the state.
        Raises :class:`SourceError` naming the key and the directory when one cannot be made
        (a file in the way, a permission, a full disk): the daemon logs it and tries again at
        the next poll."""
        for key, d in (("done_dir", self.done_dir), ("failed_dir", self.failed_dir)):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"{self.name}: {key} {d} cannot be created: "
                                  f"{exc.strerror or exc}") from None

    def poll(self, now: datetime) -> PollResult:
        """Parse the ready files. Raises :class:`SourceError` if the directory is unreadable."""
        # An unacknowledged earlier result was not committed: its files are simply read again.
        self._pending.clear()
        ready = self._ready_files(now.timestamp())
        if not ready:
            return PollResult(not_modified=True)
        result = PollResult()
        taken: list[_Taken] = []
        for path, st in ready:
            outcome = self._take_file(path, st.st_size, result)
            taken.append(_Taken(path, st.st_size, st.st_mtime_ns, outcome))
        self._pending.append((result, taken))
        return result

    def acknowledge(self, result: PollResult) -> None:
        """Move the committed poll's files to ``done/`` / ``failed/``."""
        for i, (pending, files) in enumerate(self._pending):
            if pending is result:
                taken = files
                del self._pending[i]
                break
        else:
            return
        for t in taken:
            try:
                st = t.path.stat()
            except FileNotFoundError:
                continue  # moved away by someone else; nothing to do
            if st.st_size != t.size or st.st_mtime_ns != t.mtime_ns:
                log.warning("file_drop.changed_after_read", source=self.name, file=t.path.name)
                continue
            target_dir = self.done_dir if t.outcome == "done" else self.failed_dir
            target = _free_name(target_dir, t.path.name)
            try:
                os.replace(t.path, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # done/ on another filesystem: copy instead
                    log.error("file_drop.move_failed", source=self.name, file=t.path.name,
                              error=str(exc))
                    continue
                shutil.move(str(t.path), str(target))
            self.stats["files_done" if t.outcome == "done" else "files_failed"] += 1

    def update_topology(self, topology: Topology) -> None:
        """Use a reloaded bundle's ``meters.csv`` from the next poll on (AMI files; work
        orders are placed by the daemon's resolver)."""
        if isinstance(self.parser, AmiPayloadParser):
            self.parser.registry = AmiRegistry.from_topology(topology)

    def close(self) -> None:
        """Nothing to release."""

    # -- internals ----------------------------------------------------------------------------

    def _take_file(self, path: Path, size: int, result: PollResult) -> Literal["done", "failed"]:
        """Read one file into ``result`` (work orders merged per id within the file: one
        export; a later file is a later state of its records, its own event); what becomes of
        the file once the poll is committed."""
        parsed, failure = self._read_safely(path, size)
        located = self.parser.take() if isinstance(self.parser, _LocatedOrders) else None
        self.stats["records"] += parsed.records
        self.stats["ignored"] += parsed.ignored
        if failure is not None:
            self.stats["quarantined"] += 1
            result.quarantined.append(Quarantined(self.name, f"{path.name}: {failure[0]}",
                                                  {"file": path.name, "head": failure[1]}))
            return "failed"
        self.stats["quarantined"] += len(parsed.quarantined)
        result.quarantined.extend(parsed.quarantined)
        if located is None:
            result.events.extend(parsed.events)
            return "done"
        events, conflicts = merge_rows_by_id(self.parser.mapper, located)  # type: ignore[union-attr]
        result.events.extend(events)
        result.quarantined.extend(conflicts)
        self.stats["quarantined"] += len(conflicts)
        return "done"

    def _ready_files(self, now_ts: float) -> list[tuple[Path, os.stat_result]]:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot list {self.directory}: "
                              f"{exc.strerror or exc}") from None
        pattern = self.config.pattern
        settle = self.config.settle_seconds
        ready: list[tuple[Path, os.stat_result]] = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES):
                continue
            if not fnmatch.fnmatch(name, pattern):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if now_ts - st.st_mtime < settle:
                continue  # still being written (or just dropped): wait for it to settle
            ready.append((Path(entry.path), st))
        ready.sort(key=lambda item: (item[1].st_mtime_ns, item[0].name))
        return ready[: self.config.max_files_per_poll]

    def _format(self, path: Path) -> Literal["csv", "jsonl"] | None:
        if self.config.format != "auto":
            return self.config.format
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in JSON_SUFFIXES:
            return "jsonl"
        return None

    def _read_safely(self, path: Path, size: int) -> tuple[Parsed, tuple[str, str] | None]:
        """:meth:`_read`, with any failure of one file that file's reason (it goes to
        ``failed/``): a bad file never keeps the next ones waiting in the directory."""
        try:
            return self._read(path, size)
        except Exception as exc:  # a parser bug or an input nobody foresaw
            log.error("file_drop.unreadable", source=self.name, file=path.name,
                      error=f"{type(exc).__name__}: {exc}"[:500])
            return Parsed(), (f"could not be parsed: {type(exc).__name__}: {exc}"[:500], "")

    def _read(self, path: Path, size: int) -> tuple[Parsed, tuple[str, str] | None]:
        """Parse one file; the second item is ``(reason, head)`` when it failed as a whole."""
        fmt = self._format(path)
        if fmt is None:
            return Parsed(), ("unknown file type (expected .csv, .json, .jsonl or .ndjson)", "")
        if size > self.config.max_file_bytes:
            return Parsed(), (f"file is {size} bytes, over max_file_bytes "
                              f"{self.config.max_file_bytes}", "")
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Parsed(), (f"cannot read: {exc.strerror or exc}", "")
        try:
            text = decode_text(data)
        except UnicodeDecodeError as exc:
            return Parsed(), (f"not UTF-8 or GB18030 text: {exc}",
                              data[:HEAD_LIMIT].decode("utf-8", errors="replace"))
        try:
            if fmt == "csv":
                parsed = self.parser.csv_text(text, path.name)
            else:
                parsed = self.parser.json_lines(text, path.name)
        except PayloadError as exc:
            return Parsed(), (str(exc), text[:HEAD_LIMIT])
        if parsed.records and not parsed.events and not parsed.ignored:
            return Parsed(), (f"no usable record: all {parsed.records} records are bad, e.g. "
                              f"{parsed.quarantined[0].reason}", text[:HEAD_LIMIT])
        return parsed, None


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name`` with ``.1``, ``.2``, ... before the suffix if taken."""
    target = directory / name
    if not target.exists():
        return target
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    n = 1
    while True:
        candidate = directory / (f"{stem}.{n}.{suffix}" if suffix else f"{stem}.{n}")
        if not candidate.exists():
            return candidate
        n += 1
