"""The bundle's vocabulary: kinds, columns, problems and the record types."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

NODE_KINDS = (
    "source",
    "breaker",
    "recloser",
    "sectionalizer",
    "fuse",
    "switch",
    "junction",
    "transformer",
)


#: Devices that open by themselves on a fault.
PROTECTIVE_KINDS = frozenset({"source", "breaker", "recloser", "sectionalizer", "fuse"})


#: Anything that can be open (protective devices and manual switches).
DEVICE_KINDS = frozenset({"breaker", "recloser", "sectionalizer", "fuse", "switch"})


AREA_TYPES = ("urban", "rural", "remote")


LIAISON_ROLES = ("village_liaison", "grid_manager", "transformer_manager")


IMPORTANCE = ("special", "first", "second", "")


#: ``customers.csv`` tags that put a household on the special-care list (the crew visits it,
#: the village liaison checks on it), most urgent first: a life-support household without
#: power is in danger within hours. The one set every module uses.
CARE_TAGS: tuple[str, ...] = ("life_support", "elderly_alone")


#: Further tags with a label of their own in notices; like any tag they weigh only when
#: ``priority.extra_tags`` gives them a weight.
DESCRIPTIVE_TAGS: tuple[str, ...] = ("cold_storage", "greenhouse", "livestock")


#: Every tag a bundle may use without a warning (besides the ``priority.extra_tags`` keys).
KNOWN_TAGS: tuple[str, ...] = CARE_TAGS + DESCRIPTIVE_TAGS


#: What separates tags in one cell: ``;`` and what a Chinese input method or a spreadsheet
#: gives instead (``；``, ``、``, ``,``, ``，``).
TAG_SEPARATORS = re.compile(r"[;；、,，]")


def normalise_tag(text: str) -> str:
    """A tag as the daemon compares it: stripped, lower case, ``-`` read as ``_``
    (``Life-Support`` is ``life_support``)."""
    return text.strip().lower().replace("-", "_")


def split_tags(cell: str) -> tuple[str, ...]:
    """The tags of one ``tags`` cell, normalised, each once, empty ones dropped."""
    tags = (normalise_tag(t) for t in TAG_SEPARATORS.split(cell))
    return tuple(dict.fromkeys(t for t in tags if t))


REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "nodes.csv": ("id", "kind", "name", "feeder", "normally_open", "village", "customers", "lat", "lon"),
    "edges.csv": ("from", "to"),
    "villages.csv": ("id", "name", "township", "grid", "area_type"),
    "liaisons.csv": ("village", "name", "role", "phone", "channel", "target"),
    "crews.csv": ("id", "name", "phone", "channel", "target", "feeders"),
    "customers.csv": ("id", "transformer", "name", "phone", "importance", "tags"),
}


OPTIONAL_FILES = frozenset({"customers.csv", "meters.csv", "aliases.csv"})


METER_COLUMNS = ("id", "transformer", "kind")


#: ``aliases.csv`` (optional): other names feeds use for villages, transformer areas, feeders.
ALIAS_COLUMNS = ("alias", "kind", "id")


ALIAS_KINDS = ("village", "transformer", "feeder")


KIND_CODE = {k: i for i, k in enumerate(NODE_KINDS)}


SOURCE_CODE = KIND_CODE["source"]


TRANSFORMER_CODE = KIND_CODE["transformer"]


PROTECTIVE_CODES = [KIND_CODE[k] for k in sorted(PROTECTIVE_KINDS)]


NO_TEXTS = frozenset({"0", "1", "true", "false", "True", "False"})


NO_TRUE = frozenset({"1", "true", "True"})


#: ASCII characters ``str.strip`` removes (a field can only need stripping if one occurs).
ASCII_SPACE = " \t\x0b\x0c\x1c\x1d\x1e\x1f"


#: Node objects kept by :class:`NodeMap` (built on access; the cache is cleared when full).
NODE_CACHE_SIZE = 1 << 17


IntArray = npt.NDArray[np.int64]


BoolArray = npt.NDArray[np.bool_]


#: Nodes of a cycle named in its problem text; the rest are counted (a ring of a million
#: nodes must not become a 1 MB line in an operator's terminal or log).
CYCLE_SHOWN = 20


#: Longest problem text shown; longer ones are cut with the count of characters left out.
PROBLEM_CHARS = 2000


def clip_list(items: Sequence[str], shown: int, noun: str) -> list[str]:
    """The first ``shown`` items, then "… and 12,345 more <noun>s" if any were left out."""
    if len(items) <= shown:
        return list(items)
    more = len(items) - shown
    return [*items[:shown], f"… and {more:,} more {noun}{'s' if more != 1 else ''}"]


def clip_text(text: str, limit: int = PROBLEM_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle. ``row`` is the 1-based line number in the file."""

    file: str
    row: int | None
    id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        who = f" ({clip_text(self.id, 200)})" if self.id else ""
        return f"{where}{who}: {clip_text(self.message)}"


class TopologyError(Exception):
    """A bundle broke one or more rules; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"topology bundle has {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    name: str
    feeder: str
    normally_open: bool
    village: str
    customers: int
    lat: float | None
    lon: float | None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Village:
    id: str
    name: str
    township: str
    grid: str
    area_type: str
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Liaison:
    village: str
    name: str
    role: str
    phone: str
    channel: str
    target: str
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Stable recipient key (used in the outbox's unique key)."""
        return f"liaison:{self.village}:{self.role}:{self.phone or self.name}"


@dataclass(frozen=True)
class Crew:
    id: str
    name: str
    phone: str
    channel: str
    target: str
    feeders: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Customer:
    id: str
    transformer: str
    name: str
    phone: str
    importance: str
    tags: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Meter:
    id: str
    transformer: str
    kind: str


@dataclass(frozen=True)
class Alias:
    """Another name (``alias``) for a village, transformer area or feeder id (``aliases.csv``);
    area text in feeds resolves through it (:mod:`outage_sentinel.area_text`)."""

    alias: str
    kind: str
    id: str

