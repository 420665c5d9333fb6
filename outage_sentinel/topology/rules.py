"""Rules of a bundle that are checked apart from the parsing of one table: a file's encoding
and header, coordinates of crews and villages, customers' phones and tags, and the feeder
column against the source that energises each node. Each gives :class:`Problem` values naming
the file, the row and the id; :mod:`.bundle` collects them."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from outage_sentinel.logs import mask_phones
from outage_sentinel.topology.columns import NodeTable
from outage_sentinel.topology.model import (
    CARE_TAGS,
    DESCRIPTIVE_TAGS,
    KNOWN_TAGS,
    SOURCE_CODE,
    Problem,
    clip_list,
    normalise_tag,
)

#: How far from zero each coordinate column may go (NaN and infinities are never in range).
COORDINATE_LIMITS = {"lat": 90.0, "lon": 180.0}


#: Rows named in one problem about many rows; the rest are counted.
ROWS_SHOWN = 5


def within(text: str, limit: float) -> float | None:
    """``text`` as a number from ``-limit`` to ``limit`` (NaN and infinities never are), or
    None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if -limit <= value <= limit else None


def coordinate_problems(file: str, row: int, rid: str, fields: Mapping[str, str]
                        ) -> list[Problem]:
    """Rule (nodes.csv's, for crews.csv and villages.csv): ``lat`` / ``lon`` is empty or a
    number on Earth (lat -90..90, lon -180..180): a base with the two swapped would send the
    crew 7,000 km."""
    out: list[Problem] = []
    for axis, limit in COORDINATE_LIMITS.items():
        value = fields.get(axis, "")
        if value and within(value, limit) is None:
            out.append(Problem(file, row, rid, f"{axis} must be a number from {-limit:g} to "
                                               f"{limit:g}, got {value!r}"))
    return out


# -- a file's encoding and header ---------------------------------------------------------------


def encoding_problem(file: str, raw: bytes, exc: UnicodeDecodeError) -> Problem:
    """Where ``raw`` stops being UTF-8 (line, and column in characters), and which encoding
    the file looks like (Excel on a Chinese Windows saves a "CSV" as GBK)."""
    line = raw.count(b"\n", 0, exc.start) + 1
    start = raw.rfind(b"\n", 0, exc.start) + 1
    if start == 0 and raw.startswith(codecs.BOM_UTF8):
        start = len(codecs.BOM_UTF8)
    column = len(raw[start:exc.start].decode("utf-8", "replace")) + 1
    looks = _looks_like(raw)
    advice = f"save as UTF-8 (the file looks like {looks})" if looks else "save the file as UTF-8"
    return Problem(file, line, None,
                   f"column {column}: not UTF-8 (byte 0x{raw[exc.start]:02x}); {advice}")


def _looks_like(raw: bytes) -> str | None:
    """The encoding ``raw`` (not UTF-8) reads as: UTF-16 (a BOM, or NUL bytes), GBK, or None."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        return "UTF-16"
    for name, label in (("gbk", "GBK"), ("gb18030", "GB18030")):
        try:
            raw.decode(name)
        except UnicodeDecodeError:
            continue
        return label
    return None


def header_problems(file: str, header: Sequence[str]) -> list[Problem]:
    """Rule: no column name twice in a header (the reader would keep only the last)."""
    at: dict[str, list[int]] = {}
    for k, name in enumerate(header, 1):
        if name:
            at.setdefault(name, []).append(k)
    return [Problem(file, 1, None,
                    f"header repeats column {name!r} (columns {_and(list(map(str, ks)))})")
            for name, ks in at.items() if len(ks) > 1]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# -- customers: phones and tags -----------------------------------------------------------------

#: A phone a crew or a liaison can call: a mainland mobile (11 digits 1[3-9]…) or a landline
#: with its area code (0 and 2–3 digits, then 7–8), optionally after +86 / 86.
CUSTOMER_PHONE = re.compile(r"(?:\+?86[- ]?)?(?:1[3-9]\d{9}|0\d{2,3}[- ]?\d{7,8})")


def phone_problem(phone: str) -> str | None:
    """What is wrong with a customer's phone, or None: empty or a number one can call (not
    Excel's 1.38E+10, not a number a digit short)."""
    if not phone or CUSTOMER_PHONE.fullmatch(phone):
        return None
    hint = ("; Excel wrote the number in scientific notation: format the column as text "
            "and export again") if "e" in phone.lower() and "." in phone else ""
    return (f"phone {mask_phones(phone)!r} is not a phone number (a mobile of 11 digits "
            f"1[3-9]…, or a landline with its area code 0…; optional +86){hint}")


class PhoneCheck:
    """Customers' phones nobody can call: the household still loads (it is on the lists, its
    phone as written), and one warning names the first such row and counts the others (a
    column Excel mangled is every row)."""

    def __init__(self) -> None:
        self.wrong: list[tuple[int, str, str]] = []

    def see(self, row: int, cid: str, phone: str) -> None:
        if (what := phone_problem(phone)) is not None:
            self.wrong.append((row, cid, what))

    def notes(self) -> list[Problem]:
        if not self.wrong:
            return []
        (row, cid, what), rest = self.wrong[0], self.wrong[1:]
        if rest:
            rows = clip_list([str(r) for r, _, _ in rest], ROWS_SHOWN, "row")
            what += (f"; so are the phones of {len(rest):,} more customer(s) "
                     f"(rows {', '.join(rows)})")
        return [Problem("customers.csv", row, cid, what)]


class TagCheck:
    """Tags of ``customers.csv`` that are neither care tags, descriptive tags nor configured
    ones (``priority.extra_tags``): each is warned about once, at its first row."""

    def __init__(self, configured: Iterable[str] = ()) -> None:
        self.known = frozenset(KNOWN_TAGS) | {normalise_tag(t) for t in configured}
        #: tag -> (row, customer id) of each use
        self.unknown: dict[str, list[tuple[int, str]]] = {}

    def see(self, row: int, cid: str, tags: Iterable[str]) -> None:
        for tag in tags:
            if tag not in self.known:
                self.unknown.setdefault(tag, []).append((row, cid))

    def notes(self) -> list[Problem]:
        """One note per unknown tag, at its first row; the further rows counted."""
        out: list[Problem] = []
        for tag, uses in self.unknown.items():
            (row, cid), rest = uses[0], uses[1:]
            more = ""
            if rest:
                rows = clip_list([str(r) for r, _ in rest], ROWS_SHOWN, "row")
                more = f"; also on row{'s' if len(rest) > 1 else ''} {', '.join(rows)}"
            out.append(Problem("customers.csv", row, cid, (
                f"tag {tag!r} is not a known tag (care tags: {', '.join(CARE_TAGS)}; others: "
                f"{', '.join(DESCRIPTIVE_TAGS)}; or a key of priority.extra_tags): the household "
                f"is on no special-care list for it and it weighs nothing{more}")))
        return out


# -- the feeder column --------------------------------------------------------------------------


def source_feeders(table: NodeTable, kind_code: npt.NDArray[np.int8], row_of: Sequence[int],
                   problems: list[Problem]) -> set[str]:
    """Rule: every source has a feeder (the id crews.csv, aliases.csv and region.feeders name
    its line by). Returns the sources' feeders: the bundle's feeders (with a source lacking
    one, every feeder of the column, so that what names its line is not refused as well)."""
    feeders, ids = table.feeders, table.ids
    out: set[str] = set()
    lacking = False
    for i in np.flatnonzero(kind_code == SOURCE_CODE).tolist():
        if feeders[i]:
            out.add(feeders[i])
        else:
            lacking = True
            problems.append(Problem("nodes.csv", row_of[i], ids[i], (
                "a source needs a feeder (the id crews.csv, aliases.csv and region.feeders "
                "name its line by)")))
    return out | (set(feeders) - {""}) if lacking else out


def feeder_problems(table: NodeTable, root: npt.NDArray[np.int64], row_of: Sequence[int],
                    feeders: set[str]) -> list[Problem]:
    """Rules: a node's ``feeder``, when given, is the feeder of the source that energises it;
    a node no source energises (a tie switch) names a feeder some source has. One problem per
    wrong label and source, at its first row, the further rows counted."""
    column = table.feeders
    code = {f: k for k, f in enumerate(dict.fromkeys(column))}
    codes = np.fromiter(map(code.__getitem__, column), dtype=np.int64, count=len(column))
    empty = code.get("", -1)
    fed = root >= 0
    root_codes = np.where(fed, codes[np.maximum(root, 0)], empty)
    wrong = fed & (codes != empty) & (root_codes != empty) & (codes != root_codes)
    known = np.array([code[f] for f in feeders if f in code], dtype=np.int64)
    stray = ~fed & (codes != empty) & ~np.isin(codes, known)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(wrong | stray).tolist():
        groups.setdefault((int(root[i]), int(codes[i])), []).append(i)
    return [_feeder_problem(table, r, at, row_of) for (r, _), at in groups.items()]


def _feeder_problem(table: NodeTable, r: int, at: list[int], row_of: Sequence[int]) -> Problem:
    ids, column = table.ids, table.feeders
    first, rest = at[0], at[1:]
    label = column[first]
    if r >= 0:
        what = (f"feeder {label!r}, but it is energised from source {ids[r]} "
                f"(feeder {column[r]!r}): give it {column[r]!r} or leave it empty")
    else:
        what = f"feeder {label!r} is no source's feeder"
    if rest:
        rows = clip_list([str(row_of[i]) for i in rest], ROWS_SHOWN, "row")
        what += f"; so are {len(rest):,} more node(s) (rows {', '.join(rows)})"
    return Problem("nodes.csv", row_of[first], ids[first], what)
