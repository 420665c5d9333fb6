"""Reading a bundle: CSV files parsed into columns and every rule checked."""

from __future__ import annotations

import csv
import gc
import io
import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from outage_sentinel.topology.columns import NodeTable
from outage_sentinel.topology.index import Forest, Topology
from outage_sentinel.topology.model import (
    ALIAS_COLUMNS,
    ALIAS_KINDS,
    AREA_TYPES,
    ASCII_SPACE,
    DEVICE_KINDS,
    IMPORTANCE,
    KIND_CODE,
    LIAISON_ROLES,
    METER_COLUMNS,
    NO_TEXTS,
    NO_TRUE,
    NODE_KINDS,
    OPTIONAL_FILES,
    REQUIRED_COLUMNS,
    TRANSFORMER_CODE,
    Alias,
    BoolArray,
    Crew,
    Customer,
    IntArray,
    Liaison,
    Meter,
    Problem,
    TopologyError,
    Village,
    split_tags,
)
from outage_sentinel.topology.rules import (
    COORDINATE_LIMITS,
    PhoneCheck,
    TagCheck,
    coordinate_problems,
    encoding_problem,
    feeder_problems,
    header_problems,
    source_feeders,
    within,
)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are created."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class RawTable:
    """A table held column-wise: ``n`` rows, ``columns`` name -> values (None = key absent, only
    for records); ``lines``: the file line each row starts on, where blank lines or quoted
    line breaks make them other than one after another from the line after the header."""

    __slots__ = ("header", "columns", "n", "absent", "lines")

    def __init__(self, header: list[str], columns: dict[str, list[str | None]], n: int,
                 absent: bool = False, lines: list[int] | None = None) -> None:
        self.header = header
        self.columns = columns
        self.n = n
        self.absent = absent  # some record lacked a key (only from records)
        self.lines = lines

    def line_numbers(self, first: int = 2) -> Sequence[int]:
        """The line of the file each row starts on (rows numbered from ``first`` where the
        table has no file, or its rows follow one another)."""
        return self.lines if self.lines is not None else range(first, first + self.n)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> RawTable:
        rows = list(records)
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        columns: dict[str, list[str | None]] = {
            k: [_text(r[k]) if k in r else None for r in rows] for k in names}
        return cls(list(names), columns, len(rows), any(None in c for c in columns.values()))

    def col(self, name: str, take: bool = False) -> list[str]:
        """A column as strings ("" where absent); ``take`` removes it from the table (so that
        its strings can be freed as soon as they are converted)."""
        column = self.columns.pop(name, None) if take else self.columns.get(name)
        if column is None:
            return [""] * self.n
        if self.absent and None in column:
            return ["" if v is None else v for v in column]
        return column  # type: ignore[return-value]  # no None in it

    def extra(self, known: Iterable[str]) -> dict[str, list[str | None]]:
        skip = set(known)
        return {k: v for k, v in self.columns.items() if k not in skip}

    def dicts(self) -> Iterator[dict[str, str]]:
        """Row dicts (absent keys left out), like ``csv.DictReader`` after stripping."""
        names = list(self.columns)
        for values in zip(*(self.columns[k] for k in names), strict=True):
            yield {k: v for k, v in zip(names, values, strict=True) if v is not None}


def read_table(path: Path) -> RawTable:
    """Read a UTF-8 CSV (BOM tolerated) column-wise, with ``csv.DictReader`` semantics: blank
    lines skipped, short rows padded with "", surplus fields dropped, values stripped."""
    text = path.read_bytes().decode("utf-8-sig")
    return _split_table(text) or _pandas_table(text) or _parse_table(text)


def _split_table(text: str) -> RawTable | None:
    """The fast path for plain files (no quotes, every line the header's width): split the whole
    text at once (twice as fast as pandas here, whose values must become lists and be stripped).
    None when the file needs a real CSV parser."""
    if '"' in text or "\x00" in text:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        return RawTable([], {}, 0)
    header = [h.strip() for h in lines[0].split(",")]
    width = len(header)
    if width < 2 or set(map(str.count, lines, itertools.repeat(","))) != {width - 1}:
        return None
    n = len(lines) - 1
    del lines
    flat = text.replace("\n", ",").split(",")
    del flat[:width]
    if text.endswith("\n"):
        flat.pop()
    return _columns(header, flat, n, not _plain(text))


#: A line holding only spaces or tabs: the csv module reads it as a row, pandas skips it.
_SPACE_LINE = re.compile(r"(?:^|\n)[ \t]+\r?(?:\n|$)")


def _pandas_table(text: str) -> RawTable | None:
    """Quoted files: pandas' C parser (about 4x the csv module), for files it reads exactly as
    the csv module would. None (use :func:`_parse_table`) for what it reads differently: NUL bytes, lone CRs,
    space-only lines, a header with a repeated or empty name, rows wider than the header."""
    if not text or "\x00" in text or _SPACE_LINE.search(text):
        return None
    if "\r" in text and "\r" in text.replace("\r\n", ""):
        return None
    header = [h.strip() for h in next(csv.reader(io.StringIO(text, newline="")), [])]
    if len(header) < 2 or "" in header or len(set(header)) != len(header):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, na_filter=False, engine="c",
                                index_col=False, header=0, names=header)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
            return None
    if caught or frame.shape[1] != len(header) or len(frame) + 1 != _line_count(text):
        return None  # a blank line or a quoted line break: the csv module numbers the rows
    columns = cast(dict[str, list[str | None]], {name: frame[name].tolist() for name in header})
    del frame
    if not _plain(text):
        for name, column in columns.items():
            columns[name] = [v.strip() for v in column]  # type: ignore[union-attr]
    return RawTable(header, columns, len(next(iter(columns.values()))))


def _line_count(text: str) -> int:
    """The number of lines of ``text`` (a last line without its line break counts)."""
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def _plain(text: str) -> bool:
    """True when no unquoted field of ``text`` can need stripping (ASCII, no space at all)."""
    return text.isascii() and '"' not in text and not any(c in text for c in ASCII_SPACE)


def _columns(header: list[str], flat: list[str], n: int, strip: bool) -> RawTable:
    """Columns out of the row-major ``flat`` fields, stripped if ``strip``."""
    width = len(header)
    index = {name: k for k, name in enumerate(header)}  # a repeated name: the last one wins
    columns = cast(dict[str, list[str | None]],
                   {name: flat[k::width] for name, k in index.items()} if width else {})
    if strip:
        for name, column in columns.items():
            columns[name] = [v.strip() if v else "" for v in column]
    return RawTable(header, columns, n)


def _parse_table(text: str) -> RawTable:
    """The general path: the csv module (quoted fields, ragged rows, blank lines), each row
    with the line of the file it starts on."""
    rows, lines = _records(text)
    if not rows:
        return RawTable([], {}, 0)
    header = [h.strip() for h in rows[0]]
    del rows[0], lines[0]
    width = len(header)
    if set(map(len, rows)) - {width}:
        kept = [(r, line) for r, line in zip(rows, lines, strict=True) if r]
        rows = [r if len(r) == width else (r + [""] * (width - len(r)) if len(r) < width
                                           else r[:width]) for r, _ in kept]
        lines = [line for _, line in kept]
    n = len(rows)
    flat = list(itertools.chain.from_iterable(rows))
    del rows
    table = _columns(header, flat, n, not _plain(text))
    if lines != list(range(2, n + 2)):
        table.lines = lines
    return table


def _records(text: str) -> tuple[list[list[str]], list[int]]:
    """The csv module's records of ``text`` (a blank line is an empty one) and the line each
    starts on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    end = 0
    for row in reader:
        rows.append(row)
        lines.append(end + 1)
        end = reader.line_num
    return rows, lines


def read_csv_file(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a UTF-8 CSV (BOM tolerated) into its header and row dicts."""
    table = read_table(path)
    return table.header, list(table.dicts())


def topology_from_records(
    nodes: Iterable[dict[str, Any]],
    edges: Iterable[tuple[str, str]],
    villages: Iterable[dict[str, Any]] = (),
    liaisons: Iterable[dict[str, Any]] = (),
    crews: Iterable[dict[str, Any]] = (),
    customers: Iterable[dict[str, Any]] = (),
    aliases: Iterable[dict[str, Any]] = (),
    tags: Iterable[str] = (),
) -> Topology:
    """Build and validate a topology from in-memory records (same fields as the CSVs), with
    the checks and errors of :func:`load_bundle` (rows are numbered as in a file)."""
    tables = {
        "nodes.csv": RawTable.from_records(nodes),
        "edges.csv": RawTable.from_records({"from": a, "to": b} for a, b in edges),
        "villages.csv": RawTable.from_records(villages),
        "liaisons.csv": RawTable.from_records(liaisons),
        "crews.csv": RawTable.from_records(crews),
        "customers.csv": RawTable.from_records(customers),
        "aliases.csv": RawTable.from_records(aliases),
    }
    with gc_paused():
        return parse_tables(tables, {name: 2 for name in tables}, "<memory>", tags)


#: Every file of a bundle and the columns its header must have.
BUNDLE_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    *REQUIRED_COLUMNS.items(), ("meters.csv", METER_COLUMNS), ("aliases.csv", ALIAS_COLUMNS))


#: The files each file's rows refer to: when one of those cannot be read, the file's problems
#: would be mostly about the missing rows, and are left out.
REFERS_TO: dict[str, frozenset[str]] = {
    "edges.csv": frozenset({"nodes.csv"}),
    "liaisons.csv": frozenset({"villages.csv"}),
    "crews.csv": frozenset({"nodes.csv"}),
    "customers.csv": frozenset({"nodes.csv"}),
    "meters.csv": frozenset({"nodes.csv"}),
    "aliases.csv": frozenset({"nodes.csv", "villages.csv"}),
}


def load_bundle(directory: str | Path, tags: Iterable[str] = ()) -> Topology:
    """Load and validate a topology bundle directory; raise :class:`TopologyError` on any
    problem. ``tags``: further ``customers.csv`` tags the operator weighs (the keys of
    ``priority.extra_tags``), not warned about as unknown.

    A file that cannot be read (not UTF-8, a header lacking a column) is a problem, and the
    other files are still checked, but for what refers to the unreadable one."""
    root = Path(directory)
    if not root.is_dir():
        raise TopologyError([Problem(str(root), None, None, "not a directory")])
    problems: list[Problem] = []
    tables: dict[str, RawTable] = {}
    with gc_paused():
        for name, required in BUNDLE_FILES:
            table = _read_bundle_file(root / name, name, required, problems)
            if table is not None:
                tables[name] = table
        first = {name: 2 for name in tables}
        if not problems:
            return parse_tables(tables, first, str(root), tags)
        unread = frozenset(p.file for p in problems)
        checked = check_tables(tables, first, tags, unread)
        problems += [p for p in checked.problems if not REFERS_TO.get(p.file, frozenset()) & unread]
        raise TopologyError(problems)


def _read_bundle_file(path: Path, name: str, required: Sequence[str],
                      problems: list[Problem]) -> RawTable | None:
    """The table of one bundle file, or None with the reason in ``problems`` (None and no
    problem for an optional file that is absent)."""
    try:
        if not path.exists():
            if name not in OPTIONAL_FILES:
                problems.append(Problem(name, None, None, "file missing"))
            return None
        table = read_table(path)
    except UnicodeDecodeError as exc:
        problems.append(encoding_problem(name, path.read_bytes(), exc))
        return None
    except csv.Error as exc:
        problems.append(Problem(name, None, None, f"cannot read as CSV: {exc}"))
        return None
    except OSError as exc:  # a directory, no permission, an I/O error: a problem too
        problems.append(Problem(name, None, None,
                                f"cannot read: {exc.strerror or type(exc).__name__}"))
        return None
    found = header_problems(name, table.header)
    missing = [c for c in required if c not in table.header]
    if missing:
        found.append(Problem(name, 1, None, f"header lacks column(s): {', '.join(missing)}"))
    problems.extend(found)
    return None if found else table


_KNOWN = {name: frozenset(columns) for name, columns in REQUIRED_COLUMNS.items()}


def _extra(row: dict[str, str], name: str) -> dict[str, str]:
    known = _KNOWN[name]
    return {k: v for k, v in row.items() if k not in known}


def _pick(column: list[Any], keep: list[int]) -> list[Any]:
    return [column[k] for k in keep]


def _interned(column: list[str]) -> list[str]:
    """The column with equal strings sharing one object."""
    canon = {v: v for v in dict.fromkeys(column)}
    return list(map(canon.__getitem__, column))


def _parse_nodes(table: RawTable, first: int, villages: dict[str, Village], problems: list[Problem]
                 ) -> tuple[NodeTable, list[int], npt.NDArray[np.int8], BoolArray]:
    """Validate nodes.csv column-wise, one check per rule; returns the node table, each node's
    row number, the kind codes and the normally-open flags."""
    rows = _NodeRows(table, first)
    kinds, kind_code = rows.kinds()
    normally_open, open_ = rows.normally_open(kinds)
    customers = rows.customers()
    node_villages = _interned(rows.column("village"))
    rows.transformer_areas(kind_code, customers, node_villages, villages)
    lat, lon = rows.coordinate("lat"), rows.coordinate("lon")
    extra = table.extra(REQUIRED_COLUMNS["nodes.csv"])
    if rows.keep is not None:
        extra = {k: _pick(v, rows.keep) for k, v in extra.items()}
    nodes = NodeTable(rows.ids, rows.pos, kinds, rows.column("name"),
                      _interned(rows.column("feeder")), normally_open, node_villages, customers,
                      lat, lon, extra)
    rows.found.sort(key=lambda f: f[0])
    problems.extend(p for _, p in rows.found)
    return nodes, list(rows.row_of), kind_code, open_


class _NodeRows:
    """nodes.csv's columns, rows with an empty or duplicate id left out (and reported)."""

    def __init__(self, table: RawTable, first: int) -> None:
        self.table = table
        #: (row, problem), sorted stably by row at the end.
        self.found: list[tuple[int, Problem]] = []
        self.ids = table.col("id", take=True)
        self.n = table.n
        self.pos = dict(zip(self.ids, range(self.n), strict=True))
        self.keep: list[int] | None = None
        lines = table.line_numbers(first)
        if len(self.pos) != self.n or "" in self.pos:
            self._drop_bad_ids(lines)
        self.row_of: Sequence[int] = ([lines[k] for k in self.keep] if self.keep is not None
                                      else lines)

    def report(self, row: int, nid: str | None, message: str) -> None:
        self.found.append((row, Problem("nodes.csv", row, nid, message)))

    def _drop_bad_ids(self, lines: Sequence[int]) -> None:
        keep: list[int] = []
        seen: dict[str, int] = {}
        for k, nid in enumerate(self.ids):
            if not nid:
                self.report(lines[k], None, "id is empty")
            elif nid in seen:
                self.report(lines[k], nid, f"duplicate node id (first at row {lines[seen[nid]]})")
            else:
                seen[nid] = k
                keep.append(k)
        self.keep = keep
        self.ids = _pick(self.ids, keep)
        self.pos = {nid: k for k, nid in enumerate(self.ids)}
        self.n = len(self.ids)

    def column(self, name: str) -> list[str]:
        values = self.table.col(name, take=True)
        return _pick(values, self.keep) if self.keep is not None else values

    def kinds(self) -> tuple[list[str], npt.NDArray[np.int8]]:
        """Rule: kind is one of NODE_KINDS."""
        raw_kinds = self.column("kind")
        kind_map = {v: NODE_KINDS[KIND_CODE[v]] if v in KIND_CODE else v
                    for v in dict.fromkeys(raw_kinds)}
        kinds = list(map(kind_map.__getitem__, raw_kinds))
        code_map = {v: KIND_CODE.get(v, -1) for v in kind_map}
        kind_code = np.fromiter(map(code_map.__getitem__, raw_kinds), dtype=np.int8,
                                count=self.n)
        if any(v not in KIND_CODE for v in kind_map):
            for k, kind in enumerate(kinds):
                if kind not in KIND_CODE:
                    self.report(self.row_of[k], self.ids[k],
                                f"kind must be one of {'|'.join(NODE_KINDS)}, got {kind!r}")
        return kinds, kind_code

    def normally_open(self, kinds: list[str]) -> tuple[list[bool], BoolArray]:
        """Rules: normally_open is 0 or 1, and 1 only on a switching device."""
        raw_open = self.column("normally_open")
        open_map = {v: (v or "0") in NO_TRUE for v in dict.fromkeys(raw_open)}
        if any((v or "0") not in NO_TEXTS for v in open_map):
            for k, v in enumerate(raw_open):
                if (v or "0") not in NO_TEXTS:
                    self.report(self.row_of[k], self.ids[k],
                                f"normally_open must be 0 or 1, got {v or '0'!r}")
        normally_open = list(map(open_map.__getitem__, raw_open))
        open_ = np.fromiter(normally_open, dtype=np.bool_, count=self.n)
        for k in np.flatnonzero(open_).tolist():
            if kinds[k] not in DEVICE_KINDS:
                self.report(self.row_of[k], self.ids[k],
                            f"normally_open=1 is only for switching devices, not {kinds[k]!r}")
        return normally_open, open_

    def customers(self) -> list[int]:
        """Rule: customers is a whole number >= 0 (0 where empty)."""
        raw_customers = self.column("customers")
        customer_map: dict[str, int | None] = {}
        for v in dict.fromkeys(raw_customers):
            try:
                value = int(v or "0")
                # int() also reads "1_2" and full-width "１２": not what a count is written as
                plain = v.isascii() and "_" not in v
                customer_map[v] = value if value >= 0 and plain else None
            except ValueError:
                customer_map[v] = None
        if None not in customer_map.values():
            return list(map(customer_map.__getitem__, raw_customers))  # type: ignore[arg-type]
        for k, v in enumerate(raw_customers):
            if customer_map[v] is None:
                self.report(self.row_of[k], self.ids[k],
                            f"customers must be a whole number >= 0, got {v or '0'!r}")
        return [c or 0 for c in map(customer_map.__getitem__, raw_customers)]

    def transformer_areas(self, kind_code: npt.NDArray[np.int8], customers: list[int],
                          node_villages: list[str], villages: dict[str, Village]) -> None:
        """Rules: a transformer area has customers and a village of villages.csv."""
        for k in np.flatnonzero(kind_code == TRANSFORMER_CODE).tolist():
            if customers[k] < 1:
                self.report(self.row_of[k], self.ids[k], "transformer needs customers >= 1")
            village = node_villages[k]
            if not village:
                self.report(self.row_of[k], self.ids[k], "transformer needs a village")
            elif villages and village not in villages:
                self.report(self.row_of[k], self.ids[k],
                            f"village {village!r} is not in villages.csv")

    def coordinate(self, axis: str) -> list[float | None]:
        """Rule: lat / lon is empty or a finite number on Earth (lat -90..90, lon
        -180..180): ``inf`` or ``999`` would put the map's bounds nowhere."""
        raw = self.column(axis)
        distinct = dict.fromkeys(raw)
        if len(distinct) == 1 and "" in distinct:
            return [None] * self.n
        limit = COORDINATE_LIMITS[axis]
        number: dict[str, float | None] = {}
        bad: set[str] = set()
        for v in distinct:
            number[v] = within(v, limit) if v else None
            if v and number[v] is None:
                bad.add(v)
        if bad:
            for k, v in enumerate(raw):
                if v in bad:
                    self.report(self.row_of[k], self.ids[k],
                                f"{axis} must be a number from {-limit:g} to {limit:g}, "
                                f"got {v!r}")
        return list(map(number.__getitem__, raw))


def _parse_edges(table: RawTable, first: int, pos: dict[str, int], problems: list[Problem]
                 ) -> tuple[IntArray, IntArray]:
    """Validate edges.csv column-wise; returns the kept edges as index arrays."""
    found: list[tuple[int, Problem]] = []
    fa, fb = table.col("from", take=True), table.col("to", take=True)
    m = table.n
    line = table.line_numbers(first)
    a = np.fromiter(map(pos.get, fa, itertools.repeat(-1)), dtype=np.int64, count=m)
    b = np.fromiter(map(pos.get, fb, itertools.repeat(-1)), dtype=np.int64, count=m)
    bad = (a < 0) | (b < 0)
    for k in np.flatnonzero(bad).tolist():
        ends = (fa[k], fb[k])
        for end, label in zip(ends, ("from", "to"), strict=True):
            if not end:
                found.append((line[k], Problem("edges.csv", line[k], None,
                                               f"{label} is empty")))
            elif end not in pos:
                found.append((line[k], Problem(
                    "edges.csv", line[k], f"{ends[0]}-{ends[1]}",
                    f"dangling edge: {label} node {end!r} is not in nodes.csv")))
    loop = (a == b) & ~bad
    for k in np.flatnonzero(loop).tolist():
        found.append((line[k], Problem("edges.csv", line[k], f"{fa[k]}-{fb[k]}",
                                       "edge connects a node to itself")))
    good = np.flatnonzero(~bad & ~loop)
    lo, hi = np.minimum(a[good], b[good]), np.maximum(a[good], b[good])
    key = lo * max(len(pos), 1) + hi
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    repeat = np.concatenate(([False], ordered[1:] == ordered[:-1]))
    if repeat.any():
        starts = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(ordered))))
        for p in np.flatnonzero(repeat).tolist():
            k, k0 = int(good[order[p]]), int(good[order[starts[p]]])
            found.append((line[k], Problem("edges.csv", line[k], f"{fa[k]}-{fb[k]}",
                                           f"duplicate edge (first at row {line[k0]})")))
        dup = np.zeros(len(good), dtype=np.bool_)
        dup[order[repeat]] = True
        good = good[~dup]
    found.sort(key=lambda f: f[0])
    problems.extend(p for _, p in found)
    return a[good], b[good]


def parse_tables(tables: dict[str, RawTable], first_row: dict[str, int], source: str,
                 tags: Iterable[str] = ()) -> Topology:
    """Check every table of a bundle against every rule; the topology, or a
    :class:`TopologyError` listing all problems at once. What breaks no rule but may mislead
    (a name several areas share, an unknown tag) is a :class:`TopologyWarning` each."""
    checked = check_tables(tables, first_row, tags)
    if checked.problems:
        raise TopologyError(checked.problems)
    topology = Topology.assemble(checked.table, checked.ea, checked.eb, checked.forest,
                                 checked.villages, checked.liaisons, checked.crews,
                                 checked.customers, checked.meters, source)
    topology.aliases = checked.aliases
    notes = shared_names(topology, checked.row_of, checked.kind_code) + checked.notes
    for note in notes:
        warnings.warn(str(note), TopologyWarning, stacklevel=2)
    return topology


class Checked:
    """A bundle's tables checked: the parts a :class:`Topology` is assembled from, every
    problem found and the notes (what breaks no rule but is warned about)."""

    table: NodeTable
    row_of: Sequence[int]
    kind_code: npt.NDArray[np.int8]
    ea: IntArray
    eb: IntArray
    forest: Forest
    villages: dict[str, Village]
    liaisons: list[Liaison]
    crews: list[Crew]
    customers: list[Customer]
    meters: list[Meter]
    aliases: tuple[Alias, ...]

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []


def check_tables(tables: dict[str, RawTable], first_row: dict[str, int],
                 tags: Iterable[str] = (), unread: frozenset[str] = frozenset()) -> Checked:
    """Every rule checked on ``tables``; ``unread``: bundle files that could not be read (the
    energised network is not checked without nodes.csv and edges.csv)."""
    c = Checked()
    problems = c.problems
    empty = RawTable([], {}, 0)

    def rows(name: str) -> Iterator[tuple[int, dict[str, str]]]:
        table = tables.get(name, empty)
        return zip(table.line_numbers(first_row.get(name, 2)), table.dicts(), strict=True)

    c.villages = _parse_villages(rows("villages.csv"), problems)
    c.table, c.row_of, c.kind_code, open_ = _parse_nodes(
        tables.get("nodes.csv", empty), first_row.get("nodes.csv", 2), c.villages, problems)
    c.ea, c.eb = _parse_edges(tables.get("edges.csv", empty), first_row.get("edges.csv", 2),
                              c.table.pos, problems)
    # energised network: each component one source, a tree; then each node its source's feeder
    c.forest = Forest(len(c.table), c.kind_code, open_, c.ea, c.eb)
    feeders = source_feeders(c.table, c.kind_code, c.row_of, problems)
    if len(c.table) and not {"nodes.csv", "edges.csv"} & unread:
        network = c.forest.check(c.table, open_, c.row_of)
        problems.extend(network or feeder_problems(c.table, c.forest.root, c.row_of, feeders))
    c.liaisons = _parse_liaisons(rows("liaisons.csv"), c.villages, problems)
    c.crews = _parse_crews(rows("crews.csv"), feeders, problems)
    pos, kinds = c.table.pos, c.table.kinds

    def is_transformer(nid: str) -> bool:
        i = pos.get(nid)
        return i is not None and kinds[i] == "transformer"

    tag_check, phone_check = TagCheck(tags), PhoneCheck()
    c.customers = _parse_customers(rows("customers.csv"), is_transformer,
                                   (tag_check, phone_check), problems)
    c.meters = _parse_meters(rows("meters.csv"), is_transformer, problems)
    c.aliases = _parse_aliases(tables.get("aliases.csv", empty), villages=c.villages,
                               is_transformer=is_transformer, feeders=feeders,
                               problems=problems)
    c.notes = tag_check.notes() + phone_check.notes()
    return c


class TopologyWarning(UserWarning):
    """Something in a bundle that breaks no rule but leaves the daemon unsure (names several
    transformer areas or feeders share): the bundle loads, and each is warned about with its
    file, row and id, so that ``outage-sentinel check`` shows it before a notice depends on it."""


def shared_names(topology: Topology, row_of: Sequence[int], kind_code: npt.NDArray[np.int8]
                 ) -> list[Problem]:
    """The transformer-area names and feeder names that several areas or feeders share. A
    record naming one is placed by its line (or its areas), else only as possibly off: never
    on the first in the bundle, which would tell the wrong village and send the crew to the
    wrong line. Each problem names the name and every node sharing it with its row."""
    ids, names, pos = topology.ids, topology.columns.names, topology.pos
    areas: dict[str, list[int]] = {}
    for i in np.flatnonzero(kind_code == TRANSFORMER_CODE).tolist():
        if names[i]:
            areas.setdefault(names[i], []).append(i)
    out: list[Problem] = []
    for name, at in areas.items():
        if len(at) > 1:
            shared = ", ".join(f"{ids[i]} (row {row_of[i]})" for i in at)
            out.append(Problem("nodes.csv", row_of[at[0]], name, (
                f"transformer-area name shared by {shared}: a record naming it is placed by "
                "its line, else as possibly affected (可能受影响); give each a distinct name")))
    heads = {topology.columns.feeders[pos[s]]: pos[s] for s in reversed(topology.sources)}
    for name, feeders in topology.feeders_by_name.items():
        if len(feeders) > 1:
            shared = ", ".join(f"{f} (row {row_of[heads[f]]})" for f in feeders)
            out.append(Problem("nodes.csv", row_of[heads[feeders[0]]], name, (
                f"feeder name shared by {shared}: a record naming only this line is placed "
                "by its areas, else on no line; give each a distinct feeder_name")))
    return out


Rows = Iterator[tuple[int, dict[str, str]]]


def _unique(rows: Rows, file: str, what: str, problems: list[Problem]
            ) -> Iterator[tuple[int, str, dict[str, str]]]:
    """The rows of ``file`` with a non-empty id not seen before; the others are reported."""
    seen: set[str] = set()
    for r, row in rows:
        rid = row.get("id", "")
        if not rid:
            problems.append(Problem(file, r, None, "id is empty"))
        elif rid in seen:
            problems.append(Problem(file, r, rid, f"duplicate {what} id"))
        else:
            seen.add(rid)
            yield r, rid, row


def _parse_villages(rows: Rows, problems: list[Problem]) -> dict[str, Village]:
    """Rules: a unique id, an area type of AREA_TYPES, a place on Earth (``lat`` / ``lon``,
    when given)."""
    villages: dict[str, Village] = {}
    for r, vid, row in _unique(rows, "villages.csv", "village", problems):
        area = row.get("area_type", "")
        if area not in AREA_TYPES:
            problems.append(Problem("villages.csv", r, vid,
                                    f"area_type must be one of {'|'.join(AREA_TYPES)}, got {area!r}"))
        problems.extend(coordinate_problems("villages.csv", r, vid, row))
        villages[vid] = Village(vid, row.get("name", ""), row.get("township", ""),
                                row.get("grid", ""), area, _extra(row, "villages.csv"))
    return villages


def _parse_liaisons(rows: Rows, villages: Mapping[str, Village],
                    problems: list[Problem]) -> list[Liaison]:
    """Rules: a known village, a role of LIAISON_ROLES, a channel, a target or a phone."""
    liaisons: list[Liaison] = []
    for r, row in rows:
        village = row.get("village", "")
        who = row.get("name", "") or None
        if village not in villages:
            problems.append(Problem("liaisons.csv", r, who, f"unknown village {village!r}"))
        role = row.get("role", "")
        if role not in LIAISON_ROLES:
            problems.append(Problem("liaisons.csv", r, who,
                                    f"role must be one of {'|'.join(LIAISON_ROLES)}, got {role!r}"))
        if not row.get("channel"):
            problems.append(Problem("liaisons.csv", r, who, "channel is empty"))
        if not row.get("target") and not row.get("phone"):
            problems.append(Problem("liaisons.csv", r, who, "needs a target or a phone"))
        liaisons.append(Liaison(village, row.get("name", ""), role, row.get("phone", ""),
                                row.get("channel", ""), row.get("target", ""),
                                _extra(row, "liaisons.csv")))
    return liaisons


def _parse_crews(rows: Rows, feeders: set[str], problems: list[Problem]) -> list[Crew]:
    """Rules: a unique id, feeders some source has, a channel, a base on Earth (``lat`` /
    ``lon``, when given)."""
    crews: list[Crew] = []
    for r, cid, row in _unique(rows, "crews.csv", "crew", problems):
        crew_feeders = tuple(f.strip() for f in row.get("feeders", "").split(";") if f.strip())
        for f in crew_feeders:
            if f not in feeders:
                problems.append(Problem("crews.csv", r, cid, f"unknown feeder {f!r}"))
        if not row.get("channel"):
            problems.append(Problem("crews.csv", r, cid, "channel is empty"))
        problems.extend(coordinate_problems("crews.csv", r, cid, row))
        crews.append(Crew(cid, row.get("name", ""), row.get("phone", ""), row.get("channel", ""),
                          row.get("target", ""), crew_feeders, _extra(row, "crews.csv")))
    return crews


def _parse_customers(rows: Rows, is_transformer: Callable[[str], bool],
                     checks: tuple[TagCheck, PhoneCheck],
                     problems: list[Problem]) -> list[Customer]:
    """Rules (optional file): a unique id, a known transformer area, an importance grade.
    Tags are split at ``;`` (or ``；``, ``、``, ``,``, ``，``) and normalised (``Life-Support``
    is ``life_support``); unknown tags and phones nobody can call go to ``checks`` (warned
    about: the household loads)."""
    tag_check, phone_check = checks
    customers: list[Customer] = []
    split: dict[str, tuple[str, ...]] = {}  # a few cells recur on every row: split each once
    for r, cid, row in _unique(rows, "customers.csv", "customer", problems):
        tx = row.get("transformer", "")
        if not is_transformer(tx):
            problems.append(Problem("customers.csv", r, cid, f"unknown transformer {tx!r}"))
        importance = row.get("importance", "")
        if importance not in IMPORTANCE:
            problems.append(Problem("customers.csv", r, cid,
                                    f"importance must be special|first|second or empty, got {importance!r}"))
        phone = row.get("phone", "")
        phone_check.see(r, cid, phone)
        cell = row.get("tags", "")
        if (tags := split.get(cell)) is None:
            tags = split[cell] = split_tags(cell)
        tag_check.see(r, cid, tags)
        customers.append(Customer(cid, tx, row.get("name", ""), phone, importance,
                                  tags, _extra(row, "customers.csv")))
    return customers


def _parse_meters(rows: Rows, is_transformer: Callable[[str], bool],
                  problems: list[Problem]) -> list[Meter]:
    """Rules (optional file, the AMI registry): a unique id, a known transformer area, a kind
    of meter|terminal."""
    meters: list[Meter] = []
    for r, mid, row in _unique(rows, "meters.csv", "meter", problems):
        tx = row.get("transformer", "")
        if not is_transformer(tx):
            problems.append(Problem("meters.csv", r, mid, f"unknown transformer {tx!r}"))
        kind = row.get("kind", "") or "meter"
        if kind not in ("meter", "terminal"):
            problems.append(Problem("meters.csv", r, mid, f"kind must be meter|terminal, got {kind!r}"))
        meters.append(Meter(mid, tx, kind))
    return meters


def _parse_aliases(table: RawTable, villages: Mapping[str, Village],
                   is_transformer: Callable[[str], bool], feeders: set[str],
                   problems: list[Problem]) -> tuple[Alias, ...]:
    """Validate aliases.csv: every alias names a known id of its kind, once."""
    known: dict[str, Callable[[str], bool]] = {
        "village": villages.__contains__, "transformer": is_transformer,
        "feeder": feeders.__contains__}
    out: list[Alias] = []
    first: dict[str, int] = {}
    for r, row in zip(table.line_numbers(), table.dicts(), strict=True):
        alias, kind, target = row.get("alias", ""), row.get("kind", ""), row.get("id", "")
        if not alias:
            problems.append(Problem("aliases.csv", r, target or None, "alias is empty"))
            continue
        if alias in first:
            problems.append(Problem("aliases.csv", r, alias,
                                    f"duplicate alias (first at row {first[alias]})"))
            continue
        first[alias] = r
        if kind not in known:
            problems.append(Problem("aliases.csv", r, alias,
                                    f"kind must be one of {'|'.join(ALIAS_KINDS)}, got {kind!r}"))
        elif not known[kind](target):
            problems.append(Problem("aliases.csv", r, alias, f"unknown {kind} id {target!r}"))
        else:
            out.append(Alias(alias, kind, target))
    return tuple(out)

