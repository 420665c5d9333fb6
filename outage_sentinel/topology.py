"""The feeder topology: loading and validating a topology bundle, and the index the hot path uses.

A bundle is a directory of UTF-8 CSV files (DESIGN.md §3). :func:`load_bundle` reads it, checks
every rule and raises :class:`TopologyError` listing *all* problems (file, row, id) at once.

Everything is held column-wise so that a province-size bundle (a million nodes) loads in a few
seconds and a few hundred megabytes: the CSVs are parsed into columns, validated with set and
array operations, and node fields are kept in per-column lists; :attr:`Topology.nodes` is a
read-only mapping that builds :class:`Node` objects on access. The energised network (a forest
rooted at the sources, normally-open devices removed) is indexed with numpy, level by level from
the sources: parent pointers, an Euler-tour interval per node (so "is X downstream of Y" and
"which transformer areas are downstream of Y" are O(1) / O(log n)), and the nearest protective
device above every node. The same breadth-first pass checks the network (one source per
component, no cycles); networkx is only used to describe a cycle found, and for
:attr:`Topology.graph` on demand.
"""

from __future__ import annotations

import bisect
import csv
import gc
import io
import itertools
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

import networkx as nx
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

_KIND_CODE = {k: i for i, k in enumerate(NODE_KINDS)}
_SOURCE = _KIND_CODE["source"]
_TRANSFORMER = _KIND_CODE["transformer"]
_PROTECTIVE_CODES = [_KIND_CODE[k] for k in sorted(PROTECTIVE_KINDS)]
_NO_TEXTS = frozenset({"0", "1", "true", "false", "True", "False"})
_NO_TRUE = frozenset({"1", "true", "True"})
#: ASCII characters ``str.strip`` removes (a field can only need stripping if one occurs).
_ASCII_SPACE = " \t\x0b\x0c\x1c\x1d\x1e\x1f"
#: Node objects kept by :class:`NodeMap` (built on access; the cache is cleared when full).
_NODE_CACHE_SIZE = 1 << 17

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


# -- column storage -----------------------------------------------------------------------------

_new_object = object.__new__


class _NodeTable:
    """Node fields column by column (one tuple per field, index = node position).

    Tuples rather than lists: a tuple of strings and numbers is untracked by the cyclic garbage
    collector, so a million-node table costs nothing in the full collections that a long-running
    process keeps doing (lists would be traversed element by element every time).
    """

    __slots__ = ("ids", "pos", "kinds", "names", "feeders", "normally_open", "villages",
                 "customers", "lat", "lon", "extra")

    def __init__(self, ids: Sequence[str], pos: dict[str, int], kinds: Sequence[str],
                 names: Sequence[str], feeders: Sequence[str], normally_open: Sequence[bool],
                 villages: Sequence[str], customers: Sequence[int],
                 lat: Sequence[float | None], lon: Sequence[float | None],
                 extra: Mapping[str, Sequence[str | None]]) -> None:
        self.ids = tuple(ids)
        self.pos = pos
        self.kinds = tuple(kinds)
        self.names = tuple(names)
        self.feeders = tuple(feeders)
        self.normally_open = tuple(normally_open)
        self.villages = tuple(villages)
        self.customers = tuple(customers)
        self.lat = tuple(lat)
        self.lon = tuple(lon)
        #: extra columns; None where a record (``from_records``) did not have the key
        self.extra = {k: tuple(v) for k, v in extra.items()}

    def __len__(self) -> int:
        return len(self.ids)

    def node(self, i: int) -> Node:
        """The :class:`Node` at position ``i``: a view whose fields are read from the columns
        on access (cheap to make; equal to, and hashed like, the plain ``Node``)."""
        node: _ColumnNode = _new_object(_ColumnNode)
        _set_table(node, self)
        _set_index(node, i)
        return node

    @classmethod
    def from_nodes(cls, nodes: Iterable[Node]) -> _NodeTable:
        items = list(nodes)
        extra: dict[str, list[str | None]] = {}
        for k, n in enumerate(items):
            for key, value in n.extra.items():
                column = extra.get(key)
                if column is None:
                    column = extra[key] = [None] * len(items)
                column[k] = value
        ids = [n.id for n in items]
        return cls(ids, {nid: k for k, nid in enumerate(ids)}, [n.kind for n in items],
                   [n.name for n in items], [n.feeder for n in items],
                   [n.normally_open for n in items], [n.village for n in items],
                   [n.customers for n in items], [n.lat for n in items],
                   [n.lon for n in items], extra)


class _ColumnNode(Node):
    """A :class:`Node` backed by the node columns of a topology (made by :class:`NodeMap`)."""

    __slots__ = ("_table", "_index")
    _table: _NodeTable
    _index: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Node:  # type: ignore[misc]
        # ``dataclasses.replace`` and friends construct ``type(node)(...)``: give a plain Node.
        return Node(*args, **kwargs)

    @property
    def id(self) -> str:
        return self._table.ids[self._index]

    @property
    def kind(self) -> str:
        return self._table.kinds[self._index]

    @property
    def name(self) -> str:
        return self._table.names[self._index]

    @property
    def feeder(self) -> str:
        return self._table.feeders[self._index]

    @property
    def normally_open(self) -> bool:
        return self._table.normally_open[self._index]

    @property
    def village(self) -> str:
        return self._table.villages[self._index]

    @property
    def customers(self) -> int:
        return self._table.customers[self._index]

    @property
    def lat(self) -> float | None:
        return self._table.lat[self._index]

    @property
    def lon(self) -> float | None:
        return self._table.lon[self._index]

    @property
    def extra(self) -> dict[str, str]:
        cached: dict[str, str] | None = self.__dict__.get("extra")
        if cached is None:
            cached = {}
            for key, column in self._table.extra.items():
                value = column[self._index]
                if value is not None:
                    cached[key] = value
            self.__dict__["extra"] = cached
        return cached

    def _fields(self) -> tuple[Any, ...]:
        return (self.id, self.kind, self.name, self.feeder, self.normally_open, self.village,
                self.customers, self.lat, self.lon)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _ColumnNode):
            return self._fields() == other._fields()
        if isinstance(other, Node):
            return self._fields() == (other.id, other.kind, other.name, other.feeder,
                                      other.normally_open, other.village, other.customers,
                                      other.lat, other.lon)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Node(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in _NODE_FIELDS) + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        return Node, tuple(getattr(self, f) for f in _NODE_FIELDS)

    def __copy__(self) -> Node:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Node:
        return self


_NODE_FIELDS = ("id", "kind", "name", "feeder", "normally_open", "village", "customers", "lat",
                "lon", "extra")
_set_table = _ColumnNode._table.__set__  # type: ignore[attr-defined]
_set_index = _ColumnNode._index.__set__  # type: ignore[attr-defined]


class _NodeValues(ValuesView[Node]):
    def __init__(self, table: _NodeTable) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Node]:
        node = self._table.node
        return (node(i) for i in range(len(self._table)))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, Node):
            return False
        i = self._table.pos.get(value.id)
        return i is not None and self._table.node(i) == value


class _NodeItems(ItemsView[str, Node]):
    def __init__(self, table: _NodeTable) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        node, ids = self._table.node, self._table.ids
        return ((ids[i], node(i)) for i in range(len(self._table)))

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        i = self._table.pos.get(item[0])
        return i is not None and self._table.node(i) == item[1]


class NodeMap(Mapping[str, Node]):
    """Read-only mapping node id -> :class:`Node`, built on access from the node columns.

    Iteration is in bundle order. Recently used nodes are cached; iterating ``values()`` over a
    province builds a million objects, so hot paths should use the index lists of
    :class:`Topology` (``kinds``, ``pos``, ...) instead.
    """

    def __init__(self, table: _NodeTable) -> None:
        self._table = table
        self._cache: dict[str, Node] = {}

    def __getitem__(self, key: str) -> Node:
        node = self._cache.get(key)
        if node is None:
            node = self._table.node(self._table.pos[key])
            if len(self._cache) >= _NODE_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = node
        return node

    def __contains__(self, key: object) -> bool:
        return key in self._table.pos

    def __len__(self) -> int:
        return len(self._table.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.ids)

    def keys(self) -> Any:
        return self._table.pos.keys()

    def values(self) -> ValuesView[Node]:
        return _NodeValues(self._table)

    def items(self) -> ItemsView[str, Node]:
        return _NodeItems(self._table)

    def __repr__(self) -> str:
        return f"<NodeMap of {len(self)} nodes>"


class EdgeList(Sequence[tuple[str, str]]):
    """The bundle's edges (``from``, ``to`` ids) in file order, stored as two index arrays."""

    def __init__(self, ids: tuple[str, ...], a: IntArray, b: IntArray) -> None:
        self._ids = ids
        self._a = a
        self._b = b

    def __len__(self) -> int:
        return len(self._a)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        if isinstance(index, slice):
            ids = self._ids
            return [(ids[a], ids[b]) for a, b in zip(self._a[index].tolist(),
                                                     self._b[index].tolist(), strict=True)]
        return self._ids[int(self._a[index])], self._ids[int(self._b[index])]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        ids = self._ids
        return zip(map(ids.__getitem__, self._a.tolist()), map(ids.__getitem__, self._b.tolist()),
                   strict=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EdgeList | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<EdgeList of {len(self)} edges>"


class _Forest:
    """Breadth-first pass over the energised network from every source at once (numpy).

    ``levels[d]`` holds the nodes at depth ``d``, grouped by parent, siblings in adjacency
    (edge-file) order; ``adj[indptr[i]:indptr[i + 1]]`` are the energised neighbours of ``i``.
    """

    def __init__(self, n: int, kind_code: npt.NDArray[np.int8], open_: BoolArray,
                 ea: IntArray, eb: IntArray) -> None:
        self.n = n
        self.kind_code = kind_code
        live = ~(open_[ea] | open_[eb])
        a, b = ea[live], eb[live]
        self.ea, self.eb = a, b
        m = len(a)
        src = np.empty(2 * m, dtype=np.int64)
        dst = np.empty(2 * m, dtype=np.int64)
        src[0::2], src[1::2] = a, b
        dst[0::2], dst[1::2] = b, a
        order = np.argsort(src, kind="stable")
        self.adj: IntArray = dst[order]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        self.indptr: IntArray = indptr
        roots = np.flatnonzero((kind_code == _SOURCE) & ~open_).astype(np.int64)
        parent = np.full(n, -1, dtype=np.int64)
        root = np.full(n, -1, dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        reached = np.zeros(n, dtype=np.bool_)
        reached[roots] = True
        root[roots] = roots
        owner = np.full(n, -1, dtype=np.int64)
        levels: list[IntArray] = [roots]
        frontier = roots
        d = 0
        while frontier.size:
            starts = indptr[frontier]
            deg = indptr[frontier + 1] - starts
            total = int(deg.sum())
            if total == 0:
                break
            ends = np.cumsum(deg)
            flat = np.repeat(starts - (ends - deg), deg) + np.arange(total, dtype=np.int64)
            nb = self.adj[flat]
            up = np.repeat(frontier, deg)
            fresh = ~reached[nb]
            nb, up = nb[fresh], up[fresh]
            if not nb.size:
                break
            # a node offered twice (two sources, or a cycle) goes to its first offer
            k = np.arange(len(nb), dtype=np.int64)
            owner[nb[::-1]] = k[::-1]
            first = owner[nb] == k
            if not first.all():
                nb, up = nb[first], up[first]
            d += 1
            reached[nb] = True
            parent[nb] = up
            root[nb] = root[up]
            depth[nb] = d
            levels.append(nb)
            frontier = nb
        self.roots = roots
        self.parent = parent
        self.root = root
        self.depth = depth
        self.reached = reached
        self.levels = levels

    def nontree_edges(self) -> IntArray:
        """Positions (in ``ea``/``eb``) of energised edges that are not parent links."""
        a, b, parent = self.ea, self.eb, self.parent
        return np.flatnonzero((parent[b] != a) & (parent[a] != b))

    def check(self, table: _NodeTable, open_: BoolArray, row_of: Sequence[int]) -> list[Problem]:
        """Each energised component must have exactly one source and be a tree."""
        ids = table.ids
        found: list[tuple[int, int, Problem]] = []  # (component's first node, order, problem)
        nontree = self.nontree_edges()
        a_nt, b_nt = self.ea[nontree], self.eb[nontree]
        reached_nt = self.reached[a_nt]
        # components reached from a source: union the source trees joined by non-tree edges
        boss: dict[int, int] = {}

        def find(x: int) -> int:
            while boss.get(x, x) != x:
                x = boss[x]
            return x

        extra_edges: dict[int, int] = {}
        pairs = list(zip(self.root[a_nt[reached_nt]].tolist(),
                         self.root[b_nt[reached_nt]].tolist(), strict=True))
        for ra, rb in pairs:
            fa, fb = find(ra), find(rb)
            if fa != fb:
                boss[max(fa, fb)] = min(fa, fb)
        for ra, _ in pairs:
            c = find(ra)
            extra_edges[c] = extra_edges.get(c, 0) + 1
        members: dict[int, list[int]] = {}
        for r in set(boss) | set(boss.values()) | set(extra_edges):
            members.setdefault(find(r), []).append(r)
        bad = {c: sorted(rs) for c, rs in members.items()
               if len(rs) > 1 or extra_edges.get(c, 0) != len(rs) - 1}
        for c, rs in bad.items():
            in_comp = np.isin(self.root, np.array(rs, dtype=np.int64))
            first = int(np.flatnonzero(in_comp)[0])
            if len(rs) > 1:
                sources = sorted(ids[r] for r in rs)
                second = table.pos[sources[1]]
                found.append((first, 0, Problem(
                    "nodes.csv", row_of[second], sources[1],
                    f"energised component has {len(sources)} sources "
                    f"({', '.join(sources[:5])}); it must have exactly one")))
            if extra_edges.get(c, 0) != len(rs) - 1:
                found.append((first, 1, self._cycle_problem(ids, in_comp)))
        # components no source reaches
        lost = ~self.reached & ~open_
        if lost.any():
            g: nx.Graph = nx.Graph()
            g.add_nodes_from(np.flatnonzero(lost).tolist())
            keep = lost[self.ea]
            g.add_edges_from(zip(self.ea[keep].tolist(), self.eb[keep].tolist(), strict=True))
            for component in nx.connected_components(g):
                sample = min(component)
                found.append((sample, 0, Problem(
                    "nodes.csv", row_of[sample], ids[sample],
                    f"energised component of {len(component)} node(s) containing "
                    f"{ids[sample]!r} has no source")))
                sub = g.subgraph(component)
                if sub.number_of_edges() != sub.number_of_nodes() - 1:
                    mask = np.zeros(self.n, dtype=np.bool_)
                    mask[list(component)] = True
                    found.append((sample, 1, self._cycle_problem(ids, mask)))
        found.sort(key=lambda f: (f[0], f[1]))
        return [p for _, _, p in found]

    def _cycle_problem(self, ids: Sequence[str], in_comp: BoolArray) -> Problem:
        keep = in_comp[self.ea]
        g: nx.Graph = nx.Graph()
        g.add_nodes_from(ids[i] for i in np.flatnonzero(in_comp).tolist())
        g.add_edges_from((ids[a], ids[b]) for a, b in zip(self.ea[keep].tolist(),
                                                          self.eb[keep].tolist(), strict=True))
        cycle = nx.find_cycle(g)
        ring = " - ".join(clip_list([str(e[0]) for e in cycle] + [str(cycle[0][0])],
                                    CYCLE_SHOWN, "node"))
        return Problem("edges.csv", None, str(cycle[0][0]),
                       f"cycle in the energised network: {ring} "
                       "(open a tie switch with normally_open=1)")


def _kind_codes(kinds: Sequence[str]) -> npt.NDArray[np.int8]:
    return np.fromiter(map(_KIND_CODE.get, kinds, itertools.repeat(-1)), dtype=np.int8,
                       count=len(kinds))


class Topology:
    """A validated bundle plus the energised-network index.

    Construct with :func:`load_bundle` (from a directory) or :meth:`from_records`. The index is
    a set of tuples by node position (``ids[i]``, ``pos[id]``): ``parent``, ``root``, ``tin``,
    ``tout`` (Euler-tour interval, -1 when not energised), ``depth``, ``protective_above``,
    ``energised``, ``kinds``, and ``order`` (node at each Euler time). Hot paths should read
    these rather than ``nodes[id].kind``; iterating ``nodes.values()`` makes a view per node
    (use :attr:`sources` to visit only the feeder heads).
    """

    #: The bundle's ``aliases.csv`` rows (set by :func:`load_bundle` / :meth:`from_records`).
    aliases: tuple[Alias, ...] = ()

    def __init__(
        self,
        nodes: Mapping[str, Node],
        edges: Iterable[tuple[str, str]],
        villages: dict[str, Village],
        liaisons: list[Liaison],
        crews: list[Crew],
        customers: list[Customer],
        meters: list[Meter] | None = None,
        source: str = "<memory>",
    ) -> None:
        table = nodes._table if isinstance(nodes, NodeMap) else _NodeTable.from_nodes(nodes.values())
        if isinstance(edges, EdgeList) and edges._ids is table.ids:
            ea, eb = edges._a, edges._b
        else:
            pos = table.pos
            pairs = [(pos[a], pos[b]) for a, b in edges]
            ea = np.array([a for a, _ in pairs], dtype=np.int64)
            eb = np.array([b for _, b in pairs], dtype=np.int64)
        self._setup(table, ea, eb, None, villages, liaisons, crews, customers, meters, source)

    @classmethod
    def _create(cls, table: _NodeTable, ea: IntArray, eb: IntArray, forest: _Forest | None,
                villages: dict[str, Village], liaisons: list[Liaison], crews: list[Crew],
                customers: list[Customer], meters: list[Meter] | None, source: str) -> Topology:
        topo = cls.__new__(cls)
        topo._setup(table, ea, eb, forest, villages, liaisons, crews, customers, meters, source)
        return topo

    def _setup(self, table: _NodeTable, ea: IntArray, eb: IntArray, forest: _Forest | None,
               villages: dict[str, Village], liaisons: list[Liaison], crews: list[Crew],
               customers: list[Customer], meters: list[Meter] | None, source: str) -> None:
        self.source = source
        self._table = table
        self.nodes: NodeMap = NodeMap(table)
        self.edges: EdgeList = EdgeList(table.ids, ea, eb)
        self.villages = villages
        self.liaisons = liaisons
        self.crews = crews
        self.customers = customers
        self.meters = meters or []
        self._graph: nx.Graph | None = None
        self._build_index(forest)
        self.liaisons_by_village: dict[str, list[Liaison]] = {}
        for liaison in liaisons:
            self.liaisons_by_village.setdefault(liaison.village, []).append(liaison)
        self.customers_by_transformer: dict[str, list[Customer]] = {}
        for customer in customers:
            self.customers_by_transformer.setdefault(customer.transformer, []).append(customer)
        self.meter_transformer: dict[str, str] = {m.id: m.transformer for m in self.meters}
        self._customer_transformer: dict[str, str] | None = None
        self.feeder_ids: frozenset[str] = frozenset(dict.fromkeys(table.feeders)) - {""}
        #: Feeder name (``feeder_name`` column of the source node, else its name) -> feeder id.
        self.feeder_by_name: dict[str, str] = {}
        feeder_names = table.extra.get("feeder_name")
        for i in self._source_index:
            feeder = table.feeders[i]
            if feeder:
                label = feeder_names[i] if feeder_names is not None else None
                for name in (label or "", table.names[i]):
                    if name:
                        self.feeder_by_name.setdefault(name, feeder)
        self._by_name: dict[str, str] | None = None

    # -- construction -------------------------------------------------------------------------

    @property
    def graph(self) -> nx.Graph:
        """The full undirected networkx graph (node attributes = Node fields), built on demand."""
        if self._graph is None:
            t = self._table
            g: nx.Graph = nx.Graph()
            for i, nid in enumerate(t.ids):
                g.add_node(nid, kind=t.kinds[i], feeder=t.feeders[i], name=t.names[i],
                           normally_open=t.normally_open[i], customers=t.customers[i])
            g.add_edges_from(self.edges)
            self._graph = g
        return self._graph

    def _build_index(self, forest: _Forest | None) -> None:
        t = self._table
        ids = t.ids
        self.ids: tuple[str, ...] = ids
        self.pos: dict[str, int] = t.pos
        #: Node kind by position (interned strings): the fast way to ask ``nodes[id].kind``.
        self.kinds: tuple[str, ...] = t.kinds
        n = len(ids)
        if forest is None:
            open_ = np.fromiter(t.normally_open, dtype=np.bool_, count=n)
            forest = _Forest(n, _kind_codes(t.kinds), open_, self.edges._a, self.edges._b)
        kind_code = forest.kind_code
        self._indptr = forest.indptr
        self._adj = forest.adj
        parent, reached, levels = forest.parent, forest.reached, forest.levels
        # subtree sizes, deepest level first (siblings are contiguous within a level)
        size = reached.astype(np.int64)
        group_starts: list[IntArray] = []
        for level in levels[1:]:
            p = parent[level]
            group_starts.append(np.flatnonzero(np.concatenate(([True], p[1:] != p[:-1]))))
        for level, starts in zip(reversed(levels[1:]), reversed(group_starts), strict=True):
            sums = np.add.reduceat(size[level], starts)
            size[parent[level[starts]]] += sums
        # Euler-tour entry times: roots in bundle order, children in adjacency order
        tin = np.full(n, -1, dtype=np.int64)
        roots = levels[0]
        s = size[roots]
        tin[roots] = np.cumsum(s) - s
        for level, starts in zip(levels[1:], group_starts, strict=True):
            s = size[level]
            before = np.cumsum(s) - s
            flag = np.zeros(len(level), dtype=np.bool_)
            flag[starts] = True
            group = np.cumsum(flag) - 1
            tin[level] = tin[parent[level]] + 1 + before - before[starts][group]
        tout = np.where(reached, tin + size - 1, -1)
        protective = np.full(n, -1, dtype=np.int64)
        is_protective = np.isin(kind_code, _PROTECTIVE_CODES)
        protective[roots] = roots
        for level in levels[1:]:
            protective[level] = np.where(is_protective[level], level,
                                         protective[parent[level]])
        clock = int(reached.sum())
        order = np.empty(clock, dtype=np.int64)
        energised_idx = np.flatnonzero(reached)
        order[tin[energised_idx]] = energised_idx
        self.parent: tuple[int, ...] = tuple(parent.tolist())
        self.root: tuple[int, ...] = tuple(forest.root.tolist())
        self.tin: tuple[int, ...] = tuple(tin.tolist())
        self.tout: tuple[int, ...] = tuple(tout.tolist())
        self.depth: tuple[int, ...] = tuple(forest.depth.tolist())
        self.protective_above: tuple[int, ...] = tuple(protective.tolist())
        self.energised: tuple[bool, ...] = tuple(reached.tolist())
        #: Node index at each Euler-tour time (energised nodes only): a subtree is a slice.
        self.order: tuple[int, ...] = tuple(order.tolist())
        tx_all = np.flatnonzero(kind_code == _TRANSFORMER)
        self._tx_index: tuple[int, ...] = tuple(tx_all.tolist())
        tx = tx_all[reached[tx_all]]
        tx = tx[np.argsort(tin[tx], kind="stable")]
        self._tx_by_tin: tuple[int, ...] = tuple(tx.tolist())
        self._tx_tins: tuple[int, ...] = tuple(tin[tx].tolist())
        # Prefix sums of customers in Euler order, for O(log n) customer counts of any subtree.
        cust = t.customers
        tx_customers = np.fromiter((cust[i] for i in self._tx_by_tin), dtype=np.int64,
                                   count=len(self._tx_by_tin))
        prefix = np.zeros(len(tx) + 1, dtype=np.int64)
        np.cumsum(tx_customers, out=prefix[1:])
        self._tx_customer_prefix: tuple[int, ...] = tuple(prefix.tolist())
        self._source_index: tuple[int, ...] = tuple(np.flatnonzero(kind_code == _SOURCE).tolist())
        self._total_customers = sum(cust[i] for i in self._tx_index)

    @classmethod
    def from_records(
        cls,
        nodes: Iterable[dict[str, Any]],
        edges: Iterable[tuple[str, str]],
        villages: Iterable[dict[str, Any]] = (),
        liaisons: Iterable[dict[str, Any]] = (),
        crews: Iterable[dict[str, Any]] = (),
        customers: Iterable[dict[str, Any]] = (),
        aliases: Iterable[dict[str, Any]] = (),
    ) -> Topology:
        """Build and validate a topology from in-memory records (same fields as the CSVs)."""
        tables = {
            "nodes.csv": _Table.from_records(nodes),
            "edges.csv": _Table.from_records({"from": a, "to": b} for a, b in edges),
            "villages.csv": _Table.from_records(villages),
            "liaisons.csv": _Table.from_records(liaisons),
            "crews.csv": _Table.from_records(crews),
            "customers.csv": _Table.from_records(customers),
            "aliases.csv": _Table.from_records(aliases),
        }
        with _gc_paused():
            return _parse_tables(tables, {name: 2 for name in tables}, "<memory>")

    # -- queries ------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def resolve(self, ref: str) -> str | None:
        """Map an id, a node name, a meter id or a customer id to a node id (None if unknown)."""
        if ref in self.pos:
            return ref
        if self._by_name is None:
            names, ids = self._table.names, self._table.ids
            by_name = dict(zip(reversed(names), reversed(ids), strict=True))  # first occurrence wins
            by_name.pop("", None)
            self._by_name = by_name
        if ref in self._by_name:
            return self._by_name[ref]
        if ref in self.meter_transformer:
            return self.meter_transformer[ref]
        if self._customer_transformer is None:
            self._customer_transformer = {c.id: c.transformer for c in self.customers}
        return self._customer_transformer.get(ref)

    @property
    def transformers(self) -> list[str]:
        ids = self.ids
        return [ids[i] for i in self._tx_index]

    @property
    def sources(self) -> list[str]:
        """Ids of the source nodes (feeder heads), in bundle order."""
        ids = self.ids
        return [ids[i] for i in self._source_index]

    @property
    def feeder_names(self) -> dict[str, str]:
        """Feeder id -> display name: the ``feeder_name`` column of its source node, else the
        node's name, else the id. Built once (notices and reports ask for it constantly)."""
        cached: dict[str, str] | None = self.__dict__.get("_feeder_names")
        if cached is None:
            cached = {}
            for source_id in self.sources:
                node = self.nodes[source_id]
                if node.feeder:
                    cached.setdefault(node.feeder,
                                      node.extra.get("feeder_name") or node.name or node.feeder)
            self.__dict__["_feeder_names"] = cached
        return cached

    @property
    def feeders(self) -> list[str]:
        return sorted(self.feeder_ids)

    def feeder_of(self, node_id: str) -> str:
        """The feeder a node is energised from (its source's feeder), else its own column."""
        i = self.pos[node_id]
        r = self.root[i]
        feeders = self._table.feeders
        if r >= 0:
            return feeders[r] or self.ids[r]
        return feeders[i]

    def parent_of(self, node_id: str) -> str | None:
        p = self.parent[self.pos[node_id]]
        return self.ids[p] if p >= 0 else None

    def path_to_root(self, node_id: str) -> list[str]:
        """Node ids from ``node_id`` up to its source, inclusive."""
        out = []
        i = self.pos[node_id]
        while i >= 0:
            out.append(self.ids[i])
            i = self.parent[i]
        return out

    def is_downstream(self, node_id: str, ancestor_id: str) -> bool:
        """True when ``node_id`` is ``ancestor_id`` or energised through it."""
        a, d = self.pos[ancestor_id], self.pos[node_id]
        if self.tin[a] < 0 or self.tin[d] < 0:
            return False
        return self.tin[a] <= self.tin[d] <= self.tout[a]

    def protective_upstream(self, node_id: str, include_self: bool = True) -> str | None:
        """Nearest protective device at (or strictly above) the node."""
        i = self.pos[node_id]
        if not include_self:
            i = self.parent[i]
            if i < 0:
                return None
        p = self.protective_above[i]
        return self.ids[p] if p >= 0 else None

    def protective_path(self, node_id: str) -> list[str]:
        """Protective devices from the node (inclusive) up to the source."""
        out = []
        i = self.protective_above[self.pos[node_id]]
        while i >= 0:
            out.append(self.ids[i])
            p = self.parent[i]
            i = self.protective_above[p] if p >= 0 else -1
        return out

    def downstream_transformers(self, device_id: str) -> list[str]:
        """Transformer areas energised through the device (inclusive), in Euler order."""
        i = self.pos[device_id]
        if self.tin[i] < 0:
            return []
        lo = bisect.bisect_left(self._tx_tins, self.tin[i])
        hi = bisect.bisect_right(self._tx_tins, self.tout[i])
        return [self.ids[j] for j in self._tx_by_tin[lo:hi]]

    def downstream_customers(self, device_id: str) -> int:
        """Customers energised through the device, O(log n)."""
        i = self.pos[device_id]
        if self.tin[i] < 0:
            return 0
        lo = bisect.bisect_left(self._tx_tins, self.tin[i])
        hi = bisect.bisect_right(self._tx_tins, self.tout[i])
        return self._tx_customer_prefix[hi] - self._tx_customer_prefix[lo]

    def lowest_common_ancestor(self, node_ids: Iterable[str]) -> str | None:
        """The deepest node every given (energised) node is downstream of."""
        result: int | None = None
        for nid in node_ids:
            i = self.pos[nid]
            if self.tin[i] < 0:
                continue
            if result is None:
                result = i
                continue
            a, b = result, i
            if self.root[a] != self.root[b]:
                return None
            while not (self.tin[a] <= self.tin[b] <= self.tout[a]):
                a = self.parent[a]
            result = a
        return self.ids[result] if result is not None else None

    def common_protective_device(self, transformer_ids: Iterable[str]) -> str | None:
        """Nearest protective device upstream of all given transformer areas."""
        lca = self.lowest_common_ancestor(transformer_ids)
        if lca is None:
            return None
        return self.protective_upstream(lca)

    def suspected_section(self, device_id: str) -> list[str]:
        """Nodes a crew should patrol: from the device down to (not past) the next devices."""
        i = self.pos[device_id]
        if self.tin[i] < 0:
            return [device_id]
        out = [device_id]
        # Walk the subtree in Euler order, jumping over the subtree of every device met.
        order, tout, ids, kinds = self.order, self.tout, self.ids, self.kinds
        t, end = self.tin[i] + 1, self.tout[i]
        while t <= end:
            v = order[t]
            out.append(ids[v])
            t = tout[v] + 1 if kinds[v] in DEVICE_KINDS else t + 1
        return out

    def _children(self, i: int) -> list[int]:
        parent = self.parent
        return [v for v in self._adj[self._indptr[i]:self._indptr[i + 1]].tolist()
                if parent[v] == i]

    def children(self, node_id: str) -> list[str]:
        return [self.ids[v] for v in self._children(self.pos[node_id])]

    def villages_of(self, transformer_ids: Iterable[str]) -> list[str]:
        """Distinct village ids of the transformer areas, in first-seen order."""
        seen: dict[str, None] = {}
        villages, pos = self._table.villages, self.pos
        for t in transformer_ids:
            v = villages[pos[t]]
            if v:
                seen.setdefault(v, None)
        return list(seen)

    def customers_of(self, transformer_ids: Iterable[str]) -> int:
        customers, pos = self._table.customers, self.pos
        return sum(customers[pos[t]] for t in transformer_ids)

    @property
    def total_customers(self) -> int:
        return self._total_customers

    def stats(self) -> dict[str, Any]:
        """Counts for ``outage-sentinel topology stats``."""
        t = self._table
        kinds: dict[str, int] = {}
        for kind in t.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
        substations = t.extra.get("substation")
        return {
            "bundle": self.source,
            "nodes": len(self.ids),
            "edges": len(self.edges),
            "kinds": dict(sorted(kinds.items())),
            "normally_open": sum(t.normally_open),
            "feeders": len(self.feeder_ids),
            "substations": len({substations[i] or "" for i in self._source_index} - {""})
            if substations is not None else 0,
            "transformer_areas": kinds.get("transformer", 0),
            "customers": self.total_customers,
            "villages": len(self.villages),
            "liaisons": len(self.liaisons),
            "crews": len(self.crews),
            "registered_customers": len(self.customers),
            "important_customers": sum(1 for c in self.customers if c.importance),
            "meters": len(self.meters),
        }


# -- reading ------------------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
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


class _Table:
    """A table held column-wise: ``n`` rows, ``columns`` name -> values (None = key absent, only
    for records)."""

    __slots__ = ("header", "columns", "n", "absent")

    def __init__(self, header: list[str], columns: dict[str, list[str | None]], n: int,
                 absent: bool = False) -> None:
        self.header = header
        self.columns = columns
        self.n = n
        self.absent = absent  # some record lacked a key (only from records)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> _Table:
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


def _read_table(path: Path) -> _Table:
    """Read a UTF-8 CSV (BOM tolerated) column-wise, with ``csv.DictReader`` semantics: blank
    lines skipped, short rows padded with "", surplus fields dropped, values stripped."""
    text = path.read_bytes().decode("utf-8-sig")
    return _split_table(text) or _parse_table(text)


def _split_table(text: str) -> _Table | None:
    """The fast path for plain files (no quotes, every line the header's width): split the whole
    text at once. None when the file needs the csv module."""
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
        return _Table([], {}, 0)
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


def _plain(text: str) -> bool:
    """True when no unquoted field of ``text`` can need stripping (ASCII, no space at all)."""
    return text.isascii() and '"' not in text and not any(c in text for c in _ASCII_SPACE)


def _columns(header: list[str], flat: list[str], n: int, strip: bool) -> _Table:
    """Columns out of the row-major ``flat`` fields, stripped if ``strip``."""
    width = len(header)
    index = {name: k for k, name in enumerate(header)}  # a repeated name: the last one wins
    columns = cast(dict[str, list[str | None]],
                   {name: flat[k::width] for name, k in index.items()} if width else {})
    if strip:
        for name, column in columns.items():
            columns[name] = [v.strip() if v else "" for v in column]
    return _Table(header, columns, n)


def _parse_table(text: str) -> _Table:
    """The general path: the csv module (quoted fields, ragged rows, blank lines)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return _Table([], {}, 0)
    header = [h.strip() for h in rows[0]]
    del rows[0]
    width = len(header)
    if set(map(len, rows)) - {width}:
        rows = [r if len(r) == width else (r + [""] * (width - len(r)) if len(r) < width
                                           else r[:width])
                for r in rows if r]
    n = len(rows)
    flat = list(itertools.chain.from_iterable(rows))
    del rows
    return _columns(header, flat, n, not _plain(text))


def read_csv_file(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a UTF-8 CSV (BOM tolerated) into its header and row dicts."""
    table = _read_table(path)
    return table.header, list(table.dicts())


def load_bundle(directory: str | Path) -> Topology:
    """Load and validate a topology bundle directory; raise :class:`TopologyError` on any problem."""
    root = Path(directory)
    problems: list[Problem] = []
    if not root.is_dir():
        raise TopologyError([Problem(str(root), None, None, "not a directory")])
    tables: dict[str, _Table] = {}
    with _gc_paused():
        for name, required in [*REQUIRED_COLUMNS.items(), ("meters.csv", METER_COLUMNS),
                               ("aliases.csv", ALIAS_COLUMNS)]:
            path = root / name
            try:
                if not path.exists():
                    if name not in OPTIONAL_FILES:
                        problems.append(Problem(name, None, None, "file missing"))
                    continue
                table = _read_table(path)
            except (UnicodeDecodeError, csv.Error) as exc:
                problems.append(Problem(name, None, None, f"cannot read as UTF-8 CSV: {exc}"))
                continue
            except OSError as exc:  # a directory, no permission, an I/O error: a problem too
                problems.append(Problem(name, None, None,
                                        f"cannot read: {exc.strerror or type(exc).__name__}"))
                continue
            missing = [c for c in required if c not in table.header]
            if missing:
                problems.append(Problem(name, 1, None,
                                        f"header lacks column(s): {', '.join(missing)}"))
                continue
            tables[name] = table
        if problems:
            raise TopologyError(problems)
        return _parse_tables(tables, {name: 2 for name in tables}, str(root))


# -- validation ---------------------------------------------------------------------------------


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


def _parse_nodes(table: _Table, first: int, villages: dict[str, Village], problems: list[Problem]
                 ) -> tuple[_NodeTable, list[int], npt.NDArray[np.int8], BoolArray]:
    """Validate nodes.csv column-wise; returns the node table and each node's row number."""
    found: list[tuple[int, Problem]] = []  # (row, problem), sorted stably by row at the end

    def report(row: int, nid: str | None, message: str) -> None:
        found.append((row, Problem("nodes.csv", row, nid, message)))

    extra = table.extra(REQUIRED_COLUMNS["nodes.csv"])
    ids = table.col("id", take=True)
    n = table.n
    pos = dict(zip(ids, range(n), strict=True))
    keep: list[int] | None = None
    if len(pos) != n or "" in pos:
        keep = []
        seen: dict[str, int] = {}
        for k, nid in enumerate(ids):
            if not nid:
                report(first + k, None, "id is empty")
            elif nid in seen:
                report(first + k, nid, f"duplicate node id (first at row {first + seen[nid]})")
            else:
                seen[nid] = k
                keep.append(k)
        ids = _pick(ids, keep)
        pos = {nid: k for k, nid in enumerate(ids)}
        n = len(ids)
    row_of = [first + k for k in keep] if keep is not None else range(first, first + n)

    def column(name: str) -> list[str]:
        values = table.col(name, take=True)
        return _pick(values, keep) if keep is not None else values

    # kind
    raw_kinds = column("kind")
    kind_map = {v: NODE_KINDS[_KIND_CODE[v]] if v in _KIND_CODE else v
                for v in dict.fromkeys(raw_kinds)}
    kinds = list(map(kind_map.__getitem__, raw_kinds))
    code_map = {v: _KIND_CODE.get(v, -1) for v in kind_map}
    kind_code = np.fromiter(map(code_map.__getitem__, raw_kinds), dtype=np.int8, count=n)
    del raw_kinds
    if any(v not in _KIND_CODE for v in kind_map):
        for k, kind in enumerate(kinds):
            if kind not in _KIND_CODE:
                report(row_of[k], ids[k],
                       f"kind must be one of {'|'.join(NODE_KINDS)}, got {kind!r}")
    # normally_open
    raw_open = column("normally_open")
    open_map = {v: (v or "0") in _NO_TRUE for v in dict.fromkeys(raw_open)}
    if any((v or "0") not in _NO_TEXTS for v in open_map):
        for k, v in enumerate(raw_open):
            if (v or "0") not in _NO_TEXTS:
                report(row_of[k], ids[k], f"normally_open must be 0 or 1, got {v or '0'!r}")
    normally_open = list(map(open_map.__getitem__, raw_open))
    del raw_open
    open_ = np.fromiter(normally_open, dtype=np.bool_, count=n)
    for k in np.flatnonzero(open_).tolist():
        if kinds[k] not in DEVICE_KINDS:
            report(row_of[k], ids[k],
                   f"normally_open=1 is only for switching devices, not {kinds[k]!r}")
    # customers
    raw_customers = column("customers")
    customer_map: dict[str, int | None] = {}
    for v in dict.fromkeys(raw_customers):
        try:
            value = int(v or "0")
            customer_map[v] = value if value >= 0 else None
        except ValueError:
            customer_map[v] = None
    if None in customer_map.values():
        for k, v in enumerate(raw_customers):
            if customer_map[v] is None:
                report(row_of[k], ids[k],
                       f"customers must be a whole number >= 0, got {v or '0'!r}")
    if None in customer_map.values():
        customers = [c or 0 for c in map(customer_map.__getitem__, raw_customers)]
    else:
        customers = list(map(customer_map.__getitem__, raw_customers))  # type: ignore[arg-type]
    del raw_customers
    # transformer areas: customers and village
    node_villages = _interned(column("village"))
    for k in np.flatnonzero(kind_code == _TRANSFORMER).tolist():
        if customers[k] < 1:
            report(row_of[k], ids[k], "transformer needs customers >= 1")
        village = node_villages[k]
        if not village:
            report(row_of[k], ids[k], "transformer needs a village")
        elif villages and village not in villages:
            report(row_of[k], ids[k], f"village {village!r} is not in villages.csv")
    # coordinates
    coords: list[list[float | None]] = []
    for axis in ("lat", "lon"):
        raw = column(axis)
        number: dict[str, float | None] = {}
        bad: set[str] = set()
        distinct = dict.fromkeys(raw)
        if len(distinct) == 1 and "" in distinct:
            coords.append([None] * n)
            continue
        for v in distinct:
            if not v:
                number[v] = None
                continue
            try:
                number[v] = float(v)
            except ValueError:
                number[v] = None
                bad.add(v)
        if bad:
            for k, v in enumerate(raw):
                if v in bad:
                    report(row_of[k], ids[k], f"{axis} must be a number, got {v!r}")
        coords.append(list(map(number.__getitem__, raw)))
    if keep is not None:
        extra = {k: _pick(v, keep) for k, v in extra.items()}
    nodes = _NodeTable(ids, pos, kinds, column("name"), _interned(column("feeder")),
                       normally_open, node_villages, customers, coords[0], coords[1], extra)
    found.sort(key=lambda f: f[0])
    problems.extend(p for _, p in found)
    return nodes, list(row_of), kind_code, open_


def _parse_edges(table: _Table, first: int, pos: dict[str, int], problems: list[Problem]
                 ) -> tuple[IntArray, IntArray]:
    """Validate edges.csv column-wise; returns the kept edges as index arrays."""
    found: list[tuple[int, Problem]] = []
    fa, fb = table.col("from", take=True), table.col("to", take=True)
    m = table.n
    a = np.fromiter(map(pos.get, fa, itertools.repeat(-1)), dtype=np.int64, count=m)
    b = np.fromiter(map(pos.get, fb, itertools.repeat(-1)), dtype=np.int64, count=m)
    bad = (a < 0) | (b < 0)
    for k in np.flatnonzero(bad).tolist():
        ends = (fa[k], fb[k])
        for end, label in zip(ends, ("from", "to"), strict=True):
            if not end:
                found.append((first + k, Problem("edges.csv", first + k, None,
                                                 f"{label} is empty")))
            elif end not in pos:
                found.append((first + k, Problem(
                    "edges.csv", first + k, f"{ends[0]}-{ends[1]}",
                    f"dangling edge: {label} node {end!r} is not in nodes.csv")))
    loop = (a == b) & ~bad
    for k in np.flatnonzero(loop).tolist():
        found.append((first + k, Problem("edges.csv", first + k, f"{fa[k]}-{fb[k]}",
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
            found.append((first + k, Problem("edges.csv", first + k, f"{fa[k]}-{fb[k]}",
                                             f"duplicate edge (first at row {first + k0})")))
        dup = np.zeros(len(good), dtype=np.bool_)
        dup[order[repeat]] = True
        good = good[~dup]
    found.sort(key=lambda f: f[0])
    problems.extend(p for _, p in found)
    return a[good], b[good]


def _parse_tables(tables: dict[str, _Table], first_row: dict[str, int], source: str) -> Topology:
    problems: list[Problem] = []
    empty = _Table([], {}, 0)

    # villages
    villages: dict[str, Village] = {}
    for r, row in enumerate(tables.get("villages.csv", empty).dicts(),
                            start=first_row.get("villages.csv", 2)):
        vid = row.get("id", "")
        if not vid:
            problems.append(Problem("villages.csv", r, None, "id is empty"))
            continue
        if vid in villages:
            problems.append(Problem("villages.csv", r, vid, "duplicate village id"))
            continue
        area = row.get("area_type", "")
        if area not in AREA_TYPES:
            problems.append(Problem("villages.csv", r, vid,
                                    f"area_type must be one of {'|'.join(AREA_TYPES)}, got {area!r}"))
        villages[vid] = Village(vid, row.get("name", ""), row.get("township", ""),
                                row.get("grid", ""), area, _extra(row, "villages.csv"))

    # nodes and edges
    table, row_of, kind_code, open_ = _parse_nodes(
        tables.get("nodes.csv", empty), first_row.get("nodes.csv", 2), villages, problems)
    ea, eb = _parse_edges(tables.get("edges.csv", empty), first_row.get("edges.csv", 2),
                          table.pos, problems)

    # energised network: each component one source, a tree
    forest = _Forest(len(table), kind_code, open_, ea, eb)
    if len(table):
        problems.extend(forest.check(table, open_, row_of))

    # liaisons
    liaisons: list[Liaison] = []
    for r, row in enumerate(tables.get("liaisons.csv", empty).dicts(),
                            start=first_row.get("liaisons.csv", 2)):
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

    # crews
    feeders = set(dict.fromkeys(table.feeders)) - {""}
    crews: list[Crew] = []
    crew_ids: set[str] = set()
    for r, row in enumerate(tables.get("crews.csv", empty).dicts(),
                            start=first_row.get("crews.csv", 2)):
        cid = row.get("id", "")
        if not cid:
            problems.append(Problem("crews.csv", r, None, "id is empty"))
            continue
        if cid in crew_ids:
            problems.append(Problem("crews.csv", r, cid, "duplicate crew id"))
            continue
        crew_ids.add(cid)
        crew_feeders = tuple(f.strip() for f in row.get("feeders", "").split(";") if f.strip())
        for f in crew_feeders:
            if f not in feeders:
                problems.append(Problem("crews.csv", r, cid, f"unknown feeder {f!r}"))
        if not row.get("channel"):
            problems.append(Problem("crews.csv", r, cid, "channel is empty"))
        crews.append(Crew(cid, row.get("name", ""), row.get("phone", ""), row.get("channel", ""),
                          row.get("target", ""), crew_feeders, _extra(row, "crews.csv")))

    pos, kinds = table.pos, table.kinds

    def is_transformer(nid: str) -> bool:
        i = pos.get(nid)
        return i is not None and kinds[i] == "transformer"

    # customers (optional)
    customers: list[Customer] = []
    customer_ids: set[str] = set()
    for r, row in enumerate(tables.get("customers.csv", empty).dicts(),
                            start=first_row.get("customers.csv", 2)):
        cid = row.get("id", "")
        if not cid:
            problems.append(Problem("customers.csv", r, None, "id is empty"))
            continue
        if cid in customer_ids:
            problems.append(Problem("customers.csv", r, cid, "duplicate customer id"))
            continue
        customer_ids.add(cid)
        tx = row.get("transformer", "")
        if not is_transformer(tx):
            problems.append(Problem("customers.csv", r, cid, f"unknown transformer {tx!r}"))
        importance = row.get("importance", "")
        if importance not in IMPORTANCE:
            problems.append(Problem("customers.csv", r, cid,
                                    f"importance must be special|first|second or empty, got {importance!r}"))
        tags = tuple(t.strip() for t in row.get("tags", "").split(";") if t.strip())
        customers.append(Customer(cid, tx, row.get("name", ""), row.get("phone", ""), importance,
                                  tags, _extra(row, "customers.csv")))

    # meters (optional, AMI registry)
    meters: list[Meter] = []
    meter_ids: set[str] = set()
    for r, row in enumerate(tables.get("meters.csv", empty).dicts(), start=2):
        mid = row.get("id", "")
        if not mid:
            problems.append(Problem("meters.csv", r, None, "id is empty"))
            continue
        if mid in meter_ids:
            problems.append(Problem("meters.csv", r, mid, "duplicate meter id"))
            continue
        meter_ids.add(mid)
        tx = row.get("transformer", "")
        if not is_transformer(tx):
            problems.append(Problem("meters.csv", r, mid, f"unknown transformer {tx!r}"))
        kind = row.get("kind", "") or "meter"
        if kind not in ("meter", "terminal"):
            problems.append(Problem("meters.csv", r, mid, f"kind must be meter|terminal, got {kind!r}"))
        meters.append(Meter(mid, tx, kind))

    aliases = _parse_aliases(tables.get("aliases.csv", empty), villages, is_transformer,
                             feeders, problems)
    if problems:
        raise TopologyError(problems)
    topology = Topology._create(table, ea, eb, forest, villages, liaisons, crews, customers,
                                meters, source)
    topology.aliases = aliases
    return topology


def _parse_aliases(table: _Table, villages: Mapping[str, Village],
                   is_transformer: Callable[[str], bool], feeders: set[str],
                   problems: list[Problem]) -> tuple[Alias, ...]:
    """Validate aliases.csv: every alias names a known id of its kind, once."""
    known: dict[str, Callable[[str], bool]] = {
        "village": villages.__contains__, "transformer": is_transformer,
        "feeder": feeders.__contains__}
    out: list[Alias] = []
    first: dict[str, int] = {}
    for r, row in enumerate(table.dicts(), start=2):
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
