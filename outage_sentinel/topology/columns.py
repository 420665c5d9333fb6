"""Column storage: nodes kept per column, read through light views."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from typing import Any, overload

from outage_sentinel.topology.model import NODE_CACHE_SIZE, IntArray, Node

_new_object = object.__new__


class NodeTable:
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
    def from_nodes(cls, nodes: Iterable[Node]) -> NodeTable:
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
    _table: NodeTable
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
    def __init__(self, table: NodeTable) -> None:
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
    def __init__(self, table: NodeTable) -> None:
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

    def __init__(self, table: NodeTable) -> None:
        self._table = table
        self._cache: dict[str, Node] = {}

    def __getitem__(self, key: str) -> Node:
        node = self._cache.get(key)
        if node is None:
            node = self._table.node(self._table.pos[key])
            if len(self._cache) >= NODE_CACHE_SIZE:
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

    @property
    def table(self) -> NodeTable:
        """The columns the nodes are read from."""
        return self._table


class EdgeList(Sequence[tuple[str, str]]):
    """The bundle's edges (``from``, ``to`` ids) in file order, stored as two index arrays."""

    def __init__(self, ids: tuple[str, ...], a: IntArray, b: IntArray) -> None:
        self._ids = ids
        self._a = a
        self._b = b

    def __len__(self) -> int:
        return len(self._a)

    def positions(self, ids: tuple[str, ...]) -> tuple[IntArray, IntArray] | None:
        """The edges as two arrays of node positions in ``ids``, when they were stored
        against that very id tuple (else None: the caller maps them itself)."""
        return (self._a, self._b) if self._ids is ids else None

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

