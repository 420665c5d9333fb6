"""The energised network indexed for the hot path (the pure index) and the Topology."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt

from outage_sentinel.topology.columns import EdgeList, NodeMap, NodeTable
from outage_sentinel.topology.directory import Directory
from outage_sentinel.topology.model import (
    CYCLE_SHOWN,
    DEVICE_KINDS,
    KIND_CODE,
    PROTECTIVE_CODES,
    SOURCE_CODE,
    TRANSFORMER_CODE,
    Alias,
    BoolArray,
    Crew,
    Customer,
    IntArray,
    Liaison,
    Meter,
    Node,
    Problem,
    Village,
    clip_list,
)


class Forest:
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
        adj, indptr = _adjacency(n, a, b)
        self.adj: IntArray = adj
        self.indptr: IntArray = indptr
        roots = np.flatnonzero((kind_code == SOURCE_CODE) & ~open_).astype(np.int64)
        self._search(roots)

    def _search(self, roots: IntArray) -> None:
        """Breadth-first from every root at once: ``parent``, ``root``, ``depth``, ``reached``
        and ``levels`` of every node."""
        n = self.n
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
            offered = self._next_level(frontier, reached, owner)
            if offered is None:
                break
            nb, up = offered
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

    def _next_level(self, frontier: IntArray, reached: BoolArray, owner: IntArray
                    ) -> tuple[IntArray, IntArray] | None:
        """The unreached neighbours of ``frontier`` (each once) and the frontier node each
        hangs from; None when there are none. ``owner`` is scratch space of ``n`` entries."""
        indptr = self.indptr
        starts = indptr[frontier]
        deg = indptr[frontier + 1] - starts
        total = int(deg.sum())
        if total == 0:
            return None
        ends = np.cumsum(deg)
        flat = np.repeat(starts - (ends - deg), deg) + np.arange(total, dtype=np.int64)
        nb = self.adj[flat]
        up = np.repeat(frontier, deg)
        fresh = ~reached[nb]
        nb, up = nb[fresh], up[fresh]
        if not nb.size:
            return None
        # a node offered twice (two sources, or a cycle) goes to its first offer
        k = np.arange(len(nb), dtype=np.int64)
        owner[nb[::-1]] = k[::-1]
        first = owner[nb] == k
        if not first.all():
            nb, up = nb[first], up[first]
        return nb, up

    def nontree_edges(self) -> IntArray:
        """Positions (in ``ea``/``eb``) of energised edges that are not parent links."""
        a, b, parent = self.ea, self.eb, self.parent
        return np.flatnonzero((parent[b] != a) & (parent[a] != b))

    def check(self, table: NodeTable, open_: BoolArray, row_of: Sequence[int]) -> list[Problem]:
        """Each energised component must have exactly one source and be a tree."""
        found = self._sourced_problems(table, row_of)  # (component's first node, order, problem)
        found += self._unsourced_problems(table.ids, open_, row_of)
        found.sort(key=lambda f: (f[0], f[1]))
        return [p for _, _, p in found]

    def _joined_sources(self) -> tuple[dict[int, list[int]], dict[int, int]]:
        """Components reached from a source: union the source trees joined by non-tree edges.

        Returns each component's roots and its count of non-tree edges, both by the
        component's representative root."""
        nontree = self.nontree_edges()
        a_nt, b_nt = self.ea[nontree], self.eb[nontree]
        reached_nt = self.reached[a_nt]
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
        return members, extra_edges

    def _sourced_problems(self, table: NodeTable, row_of: Sequence[int]
                          ) -> list[tuple[int, int, Problem]]:
        """Components reached from a source that hold more than one source, or a cycle."""
        ids = table.ids
        found: list[tuple[int, int, Problem]] = []
        members, extra_edges = self._joined_sources()
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
        return found

    def _unsourced_problems(self, ids: Sequence[str], open_: BoolArray, row_of: Sequence[int]
                            ) -> list[tuple[int, int, Problem]]:
        """Components no source reaches (and a cycle in one)."""
        found: list[tuple[int, int, Problem]] = []
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
        return found

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


def _adjacency(n: int, a: IntArray, b: IntArray) -> tuple[IntArray, IntArray]:
    """The energised edges ``a[i]``-``b[i]`` both ways as ``(adj, indptr)``: the neighbours of
    node ``i`` are ``adj[indptr[i]:indptr[i + 1]]``, in adjacency (edge-file) order."""
    m = len(a)
    src = np.empty(2 * m, dtype=np.int64)
    dst = np.empty(2 * m, dtype=np.int64)
    src[0::2], src[1::2] = a, b
    dst[0::2], dst[1::2] = b, a
    order = np.argsort(src, kind="stable")
    adj: IntArray = dst[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return adj, indptr


def _kind_codes(kinds: Sequence[str]) -> npt.NDArray[np.int8]:
    return np.fromiter(map(KIND_CODE.get, kinds, itertools.repeat(-1)), dtype=np.int8,
                       count=len(kinds))


def _subtree_sizes(parent: IntArray, reached: BoolArray, levels: list[IntArray]
                   ) -> tuple[IntArray, list[IntArray]]:
    """Each node's subtree size, and where each group of siblings starts in each level below
    the roots."""
    # subtree sizes, deepest level first (siblings are contiguous within a level)
    size = reached.astype(np.int64)
    group_starts: list[IntArray] = []
    for level in levels[1:]:
        p = parent[level]
        group_starts.append(np.flatnonzero(np.concatenate(([True], p[1:] != p[:-1]))))
    for level, starts in zip(reversed(levels[1:]), reversed(group_starts), strict=True):
        sums = np.add.reduceat(size[level], starts)
        size[parent[level[starts]]] += sums
    return size, group_starts


def _euler_entry_times(n: int, parent: IntArray, levels: list[IntArray],
                       group_starts: list[IntArray], size: IntArray) -> IntArray:
    """Euler-tour entry times: roots in bundle order, children in adjacency order; -1 when
    not energised."""
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
    return tin


def _protective_above(n: int, kind_code: npt.NDArray[np.int8], parent: IntArray,
                      levels: list[IntArray]) -> IntArray:
    """Each energised node's nearest protective device at or above it (its source if none)."""
    protective = np.full(n, -1, dtype=np.int64)
    is_protective = np.isin(kind_code, PROTECTIVE_CODES)
    roots = levels[0]
    protective[roots] = roots
    for level in levels[1:]:
        protective[level] = np.where(is_protective[level], level,
                                     protective[parent[level]])
    return protective


def _euler_order(reached: BoolArray, tin: IntArray) -> IntArray:
    """The node at each Euler-tour time (energised nodes only)."""
    clock = int(reached.sum())
    order = np.empty(clock, dtype=np.int64)
    energised_idx = np.flatnonzero(reached)
    order[tin[energised_idx]] = energised_idx
    return order


class Topology:
    """A validated bundle plus the energised-network index.

    Construct with :func:`load_bundle` (from a directory) or :func:`topology_from_records`.
    The index is a set of tuples by node position (``ids[i]``, ``pos[id]``): ``parent``, ``root``, ``tin``,
    ``tout`` (Euler-tour interval, -1 when not energised), ``depth``, ``protective_above``,
    ``energised``, ``kinds``, and ``order`` (node at each Euler time). Hot paths should read
    these rather than ``nodes[id].kind``; iterating ``nodes.values()`` makes a view per node
    (use :attr:`sources` to visit only the feeder heads).

    The lookups by name and by place (:meth:`resolve`, feeder names, a village's liaisons and
    areas, an area's customers) are a :class:`~outage_sentinel.topology.directory.Directory`'s,
    which the topology holds and delegates to.
    """

    #: The bundle's ``aliases.csv`` rows (set by :func:`load_bundle` or
    #: :func:`topology_from_records`).
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
        table = nodes.table if isinstance(nodes, NodeMap) else NodeTable.from_nodes(nodes.values())
        stored = edges.positions(table.ids) if isinstance(edges, EdgeList) else None
        if stored is not None:
            ea, eb = stored
        else:
            pos = table.pos
            pairs = [(pos[a], pos[b]) for a, b in edges]
            ea = np.array([a for a, _ in pairs], dtype=np.int64)
            eb = np.array([b for _, b in pairs], dtype=np.int64)
        self._setup(table, ea, eb, None, villages, liaisons, crews, customers, meters, source)

    @classmethod
    def assemble(cls, table: NodeTable, ea: IntArray, eb: IntArray, forest: Forest | None,
                villages: dict[str, Village], liaisons: list[Liaison], crews: list[Crew],
                customers: list[Customer], meters: list[Meter] | None, source: str) -> Topology:
        topo = cls.__new__(cls)
        topo._setup(table, ea, eb, forest, villages, liaisons, crews, customers, meters, source)
        return topo

    def _setup(self, table: NodeTable, ea: IntArray, eb: IntArray, forest: Forest | None,
               villages: dict[str, Village], liaisons: list[Liaison], crews: list[Crew],
               customers: list[Customer], meters: list[Meter] | None, source: str) -> None:
        self.source = source
        self._table = table
        self.nodes: NodeMap = NodeMap(table)
        self.edges: EdgeList = EdgeList(table.ids, ea, eb)
        self._edge_ends = (ea, eb)  # the edges as node positions, for the index
        self.villages = villages
        self.liaisons = liaisons
        self.crews = crews
        self.customers = customers
        self.meters = meters or []
        self._graph: nx.Graph | None = None
        self._build_index(forest)
        #: The lookups by name and by place (resolving references, villages, customers).
        self._directory = Directory(table, self.nodes, self._source_index, self._tx_index,
                                    liaisons, customers, self.meters)
        self.liaisons_by_village = self._directory.liaisons_by_village
        self.customers_by_transformer = self._directory.customers_by_transformer
        self.meter_transformer = self._directory.meter_transformer
        self.feeder_ids: frozenset[str] = frozenset(dict.fromkeys(table.feeders)) - {""}
        #: Feeder name (``feeder_name`` column of the source node, else its name) -> feeder id.
        self.feeder_by_name = self._directory.feeder_by_name
        #: Feeder name -> every feeder shown by it (a name two substations share has two).
        self.feeders_by_name = self._directory.feeders_by_name

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

    def _build_index(self, forest: Forest | None) -> None:
        t = self._table
        ids = t.ids
        self.ids: tuple[str, ...] = ids
        self.pos: dict[str, int] = t.pos
        #: Node kind by position (interned strings): the fast way to ask ``nodes[id].kind``.
        self.kinds: tuple[str, ...] = t.kinds
        n = len(ids)
        if forest is None:
            open_ = np.fromiter(t.normally_open, dtype=np.bool_, count=n)
            forest = Forest(n, _kind_codes(t.kinds), open_, *self._edge_ends)
        kind_code = forest.kind_code
        self._indptr = forest.indptr
        self._adj = forest.adj
        parent, reached, levels = forest.parent, forest.reached, forest.levels
        size, group_starts = _subtree_sizes(parent, reached, levels)
        tin = _euler_entry_times(n, parent, levels, group_starts, size)
        tout = np.where(reached, tin + size - 1, -1)
        protective = _protective_above(n, kind_code, parent, levels)
        order = _euler_order(reached, tin)
        self.parent: tuple[int, ...] = tuple(parent.tolist())
        self.root: tuple[int, ...] = tuple(forest.root.tolist())
        self.tin: tuple[int, ...] = tuple(tin.tolist())
        self.tout: tuple[int, ...] = tuple(tout.tolist())
        self.depth: tuple[int, ...] = tuple(forest.depth.tolist())
        self.protective_above: tuple[int, ...] = tuple(protective.tolist())
        self.energised: tuple[bool, ...] = tuple(reached.tolist())
        #: Node index at each Euler-tour time (energised nodes only): a subtree is a slice.
        self.order: tuple[int, ...] = tuple(order.tolist())
        self._index_transformers(kind_code, reached, tin)
        self._source_index: tuple[int, ...] = tuple(np.flatnonzero(kind_code == SOURCE_CODE).tolist())

    def _index_transformers(self, kind_code: npt.NDArray[np.int8], reached: BoolArray,
                            tin: IntArray) -> None:
        """The transformers by position and, energised, in Euler order with their customers'
        prefix sums; the total customers."""
        tx_all = np.flatnonzero(kind_code == TRANSFORMER_CODE)
        self._tx_index: tuple[int, ...] = tuple(tx_all.tolist())
        tx = tx_all[reached[tx_all]]
        tx = tx[np.argsort(tin[tx], kind="stable")]
        self._tx_by_tin: tuple[int, ...] = tuple(tx.tolist())
        self._tx_tins: tuple[int, ...] = tuple(tin[tx].tolist())
        # Prefix sums of customers in Euler order, for O(log n) customer counts of any subtree.
        cust = self._table.customers
        tx_customers = np.fromiter((cust[i] for i in self._tx_by_tin), dtype=np.int64,
                                   count=len(self._tx_by_tin))
        prefix = np.zeros(len(tx) + 1, dtype=np.int64)
        np.cumsum(tx_customers, out=prefix[1:])
        self._tx_customer_prefix: tuple[int, ...] = tuple(prefix.tolist())
        self._total_customers = sum(cust[i] for i in self._tx_index)

    # -- queries ------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def resolve(self, ref: str) -> str | None:
        """Map an id, a node name, a meter id or a customer id to a node id (None if unknown,
        or a name several nodes share: :meth:`named`)."""
        return self._directory.resolve(ref)

    def named(self, name: str) -> tuple[str, ...]:
        """Every node called ``name``, in bundle order (:meth:`resolve` takes none of several)."""
        return self._directory.named(name)

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
        return self._directory.feeder_names

    def feeder_area_count(self, feeder: str) -> int:
        """How many transformer areas the feeder energises (built once for all feeders)."""
        cached: dict[str, int] | None = self.__dict__.get("_feeder_area_counts")
        if cached is None:
            cached = {}
            for t in self.transformers:
                f = self.feeder_of(t)
                cached[f] = cached.get(f, 0) + 1
            self.__dict__["_feeder_area_counts"] = cached
        return cached.get(feeder, 0)

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

    def village_transformers(self, village_id: str) -> tuple[str, ...]:
        """The village's transformer areas, in bundle order (built once per topology)."""
        return self._directory.village_transformers(village_id)

    def villages_of(self, transformer_ids: Iterable[str]) -> list[str]:
        """Distinct village ids of the transformer areas, in first-seen order."""
        return self._directory.villages_of(transformer_ids)

    # -- the index as the localiser reads it (read-only) ---------------------------------------

    @property
    def transformer_tins(self) -> tuple[int, ...]:
        """Euler-tour entry times of the energised transformer areas, ascending: the areas
        below node ``i`` are those with ``tin[i] <= entry <= tout[i]`` (a bisect range)."""
        return self._tx_tins

    @property
    def transformer_by_tin(self) -> tuple[int, ...]:
        """Node indices of the energised transformer areas, in :attr:`transformer_tins` order."""
        return self._tx_by_tin

    @property
    def transformer_customer_prefix(self) -> tuple[int, ...]:
        """Prefix sums of customers over :attr:`transformer_by_tin` (one more entry): the
        customers of a bisect range ``lo:hi`` are ``prefix[hi] - prefix[lo]``."""
        return self._tx_customer_prefix

    def customers_of(self, transformer_ids: Iterable[str]) -> int:
        customers, pos = self._table.customers, self.pos
        return sum(customers[pos[t]] for t in transformer_ids)

    @property
    def total_customers(self) -> int:
        return self._total_customers

    @property
    def columns(self) -> NodeTable:
        """The node fields column by column (read-only; index = node position): for views that
        visit every node (the board's map) without making a view per node."""
        return self._table

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

