"""The feeder topology: loading and validating a topology bundle, and the index the hot path uses.

A bundle is a directory of UTF-8 CSV files (DESIGN.md §3). :func:`load_bundle` reads it, checks
every rule and raises :class:`TopologyError` listing *all* problems (file, row, id) at once.

The loaded :class:`Topology` keeps the networkx graph for analysis and builds a compact array
index of the energised network (a forest rooted at the sources, normally-open devices removed):
parent pointers, an Euler-tour interval per node (so "is X downstream of Y" and "which
transformer areas are downstream of Y" are O(1) / O(log n)), and the nearest protective device
above every node.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

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
OPTIONAL_FILES = frozenset({"customers.csv", "meters.csv"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle. ``row`` is the 1-based line number in the file."""

    file: str
    row: int | None
    id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        who = f" ({self.id})" if self.id else ""
        return f"{where}{who}: {self.message}"


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


class Topology:
    """A validated bundle plus the energised-network index.

    Construct with :func:`load_bundle` (from a directory) or :meth:`from_records`.
    """

    def __init__(
        self,
        nodes: dict[str, Node],
        edges: list[tuple[str, str]],
        villages: dict[str, Village],
        liaisons: list[Liaison],
        crews: list[Crew],
        customers: list[Customer],
        meters: list[Meter] | None = None,
        source: str = "<memory>",
    ) -> None:
        self.source = source
        self.nodes = nodes
        self.edges = edges
        self.villages = villages
        self.liaisons = liaisons
        self.crews = crews
        self.customers = customers
        self.meters = meters or []
        self._graph: nx.Graph | None = None
        self._build_index()
        self.liaisons_by_village: dict[str, list[Liaison]] = {}
        for liaison in liaisons:
            self.liaisons_by_village.setdefault(liaison.village, []).append(liaison)
        self.customers_by_transformer: dict[str, list[Customer]] = {}
        for customer in customers:
            self.customers_by_transformer.setdefault(customer.transformer, []).append(customer)
        self.meter_transformer: dict[str, str] = {m.id: m.transformer for m in self.meters}
        self._customer_transformer: dict[str, str] | None = None
        self.feeder_ids: frozenset[str] = frozenset(n.feeder for n in nodes.values() if n.feeder)
        #: Feeder name (``feeder_name`` column of the source node, else its name) -> feeder id.
        self.feeder_by_name: dict[str, str] = {}
        for node in nodes.values():
            if node.kind == "source" and node.feeder:
                for label in (node.extra.get("feeder_name", ""), node.name):
                    if label:
                        self.feeder_by_name.setdefault(label, node.feeder)
        self._by_name: dict[str, str] = {}
        for node in nodes.values():
            if node.name and node.name not in self._by_name:
                self._by_name[node.name] = node.id

    # -- construction -------------------------------------------------------------------------

    @property
    def graph(self) -> nx.Graph:
        """The full undirected networkx graph (node attributes = Node fields), built on demand."""
        if self._graph is None:
            g: nx.Graph = nx.Graph()
            for node in self.nodes.values():
                g.add_node(node.id, kind=node.kind, feeder=node.feeder, name=node.name,
                           normally_open=node.normally_open, customers=node.customers)
            g.add_edges_from(self.edges)
            self._graph = g
        return self._graph

    def _build_index(self) -> None:
        ids = list(self.nodes)
        self.ids: list[str] = ids
        self.pos: dict[str, int] = {nid: i for i, nid in enumerate(ids)}
        n = len(ids)
        adjacency: list[list[int]] = [[] for _ in range(n)]
        pos = self.pos
        for a, b in self.edges:
            ia, ib = pos[a], pos[b]
            adjacency[ia].append(ib)
            adjacency[ib].append(ia)
        self._adjacency = adjacency
        open_mask = [self.nodes[i].normally_open for i in ids]
        parent = [-1] * n
        root = [-1] * n
        tin = [-1] * n
        tout = [-1] * n
        depth = [0] * n
        protective = [-1] * n  # nearest protective device at or above the node
        clock = 0
        for r, nid in enumerate(ids):
            if self.nodes[nid].kind != "source" or open_mask[r]:
                continue
            if tin[r] != -1:
                continue
            # Iterative DFS assigning Euler-tour intervals.
            root[r] = r
            protective[r] = r
            tin[r] = clock
            clock += 1
            stack: list[tuple[int, int]] = [(r, 0)]
            while stack:
                u, k = stack[-1]
                neighbours = adjacency[u]
                if k < len(neighbours):
                    stack[-1] = (u, k + 1)
                    v = neighbours[k]
                    if v == parent[u] or open_mask[v] or tin[v] != -1:
                        continue
                    parent[v] = u
                    root[v] = r
                    depth[v] = depth[u] + 1
                    protective[v] = v if self.nodes[ids[v]].kind in PROTECTIVE_KINDS else protective[u]
                    tin[v] = clock
                    clock += 1
                    stack.append((v, 0))
                else:
                    tout[u] = clock - 1
                    stack.pop()
        self.parent = parent
        self.root = root
        self.tin = tin
        self.tout = tout
        self.depth = depth
        self.protective_above = protective
        self.energised = [t != -1 for t in tin]
        #: Node index at each Euler-tour time (energised nodes only): a subtree is a slice.
        order = [0] * clock
        for i, t in enumerate(tin):
            if t >= 0:
                order[t] = i
        self.order = order
        transformers = [i for i in range(n) if self.nodes[ids[i]].kind == "transformer" and tin[i] != -1]
        transformers.sort(key=lambda i: tin[i])
        self._tx_by_tin = transformers
        self._tx_tins = [tin[i] for i in transformers]
        # Prefix sums of customers in Euler order, for O(log n) customer counts of any subtree.
        prefix = [0]
        for i in transformers:
            prefix.append(prefix[-1] + self.nodes[ids[i]].customers)
        self._tx_customer_prefix = prefix

    @classmethod
    def from_records(
        cls,
        nodes: Iterable[dict[str, Any]],
        edges: Iterable[tuple[str, str]],
        villages: Iterable[dict[str, Any]] = (),
        liaisons: Iterable[dict[str, Any]] = (),
        crews: Iterable[dict[str, Any]] = (),
        customers: Iterable[dict[str, Any]] = (),
    ) -> Topology:
        """Build and validate a topology from in-memory records (same fields as the CSVs)."""
        tables = {
            "nodes.csv": [{k: _text(v) for k, v in r.items()} for r in nodes],
            "edges.csv": [{"from": a, "to": b} for a, b in edges],
            "villages.csv": [{k: _text(v) for k, v in r.items()} for r in villages],
            "liaisons.csv": [{k: _text(v) for k, v in r.items()} for r in liaisons],
            "crews.csv": [{k: _text(v) for k, v in r.items()} for r in crews],
            "customers.csv": [{k: _text(v) for k, v in r.items()} for r in customers],
        }
        return _parse_tables(tables, {name: 2 for name in tables}, "<memory>")

    # -- queries ------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def resolve(self, ref: str) -> str | None:
        """Map an id, a node name, a meter id or a customer id to a node id (None if unknown)."""
        if ref in self.nodes:
            return ref
        if ref in self._by_name:
            return self._by_name[ref]
        if ref in self.meter_transformer:
            return self.meter_transformer[ref]
        if self._customer_transformer is None:
            self._customer_transformer = {c.id: c.transformer for c in self.customers}
        return self._customer_transformer.get(ref)

    @property
    def transformers(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.kind == "transformer"]

    @property
    def feeders(self) -> list[str]:
        return sorted({n.feeder for n in self.nodes.values() if n.feeder})

    def feeder_of(self, node_id: str) -> str:
        """The feeder a node is energised from (its source's feeder), else its own column."""
        i = self.pos[node_id]
        r = self.root[i]
        if r >= 0:
            return self.nodes[self.ids[r]].feeder or self.ids[r]
        return self.nodes[node_id].feeder

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
        order, tout, ids, nodes = self.order, self.tout, self.ids, self.nodes
        t, end = self.tin[i] + 1, self.tout[i]
        while t <= end:
            v = order[t]
            nid = ids[v]
            out.append(nid)
            t = tout[v] + 1 if nodes[nid].kind in DEVICE_KINDS else t + 1
        return out

    def _children(self, i: int) -> list[int]:
        return [v for v in self._adjacency[i] if self.parent[v] == i]

    def children(self, node_id: str) -> list[str]:
        return [self.ids[v] for v in self._children(self.pos[node_id])]

    def villages_of(self, transformer_ids: Iterable[str]) -> list[str]:
        """Distinct village ids of the transformer areas, in first-seen order."""
        seen: dict[str, None] = {}
        for t in transformer_ids:
            v = self.nodes[t].village
            if v:
                seen.setdefault(v, None)
        return list(seen)

    def customers_of(self, transformer_ids: Iterable[str]) -> int:
        return sum(self.nodes[t].customers for t in transformer_ids)

    @property
    def total_customers(self) -> int:
        return sum(n.customers for n in self.nodes.values() if n.kind == "transformer")

    def stats(self) -> dict[str, Any]:
        """Counts for ``outage-sentinel topology stats``."""
        kinds: dict[str, int] = {}
        for n in self.nodes.values():
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        return {
            "bundle": self.source,
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "kinds": dict(sorted(kinds.items())),
            "normally_open": sum(1 for n in self.nodes.values() if n.normally_open),
            "feeders": len(self.feeders),
            "substations": len({n.extra.get("substation", "") for n in self.nodes.values()
                                if n.kind == "source"} - {""}),
            "transformer_areas": kinds.get("transformer", 0),
            "customers": self.total_customers,
            "villages": len(self.villages),
            "liaisons": len(self.liaisons),
            "crews": len(self.crews),
            "registered_customers": len(self.customers),
            "important_customers": sum(1 for c in self.customers if c.importance),
            "meters": len(self.meters),
        }


# -- loading and validation ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def read_csv_file(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a UTF-8 CSV (BOM tolerated) into its header and row dicts."""
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    rows = [{k: (v or "").strip() if isinstance(v, str) else "" for k, v in r.items() if k is not None}
            for r in reader]
    return header, rows


def load_bundle(directory: str | Path) -> Topology:
    """Load and validate a topology bundle directory; raise :class:`TopologyError` on any problem."""
    root = Path(directory)
    problems: list[Problem] = []
    if not root.is_dir():
        raise TopologyError([Problem(str(root), None, None, "not a directory")])
    tables: dict[str, list[dict[str, str]]] = {}
    for name, required in REQUIRED_COLUMNS.items():
        path = root / name
        if not path.exists():
            if name not in OPTIONAL_FILES:
                problems.append(Problem(name, None, None, "file missing"))
            tables[name] = []
            continue
        try:
            header, rows = read_csv_file(path)
        except (UnicodeDecodeError, csv.Error) as exc:
            problems.append(Problem(name, None, None, f"cannot read as UTF-8 CSV: {exc}"))
            tables[name] = []
            continue
        missing = [c for c in required if c not in header]
        if missing:
            problems.append(Problem(name, 1, None, f"header lacks column(s): {', '.join(missing)}"))
            tables[name] = []
            continue
        tables[name] = rows
    meters_path = root / "meters.csv"
    if meters_path.exists():
        try:
            header, rows = read_csv_file(meters_path)
            missing = [c for c in ("id", "transformer", "kind") if c not in header]
            if missing:
                problems.append(Problem("meters.csv", 1, None,
                                        f"header lacks column(s): {', '.join(missing)}"))
            else:
                tables["meters.csv"] = rows
        except (UnicodeDecodeError, csv.Error) as exc:
            problems.append(Problem("meters.csv", None, None, f"cannot read as UTF-8 CSV: {exc}"))
    if problems:
        raise TopologyError(problems)
    return _parse_tables(tables, {name: 2 for name in tables}, str(root))


def _extra(row: dict[str, str], name: str) -> dict[str, str]:
    known = set(REQUIRED_COLUMNS.get(name, ("id", "transformer", "kind")))
    return {k: v for k, v in row.items() if k not in known}


def _parse_tables(
    tables: dict[str, list[dict[str, str]]], first_row: dict[str, int], source: str
) -> Topology:
    problems: list[Problem] = []

    # villages
    villages: dict[str, Village] = {}
    for r, row in enumerate(tables.get("villages.csv", []), start=first_row.get("villages.csv", 2)):
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

    # nodes
    nodes: dict[str, Node] = {}
    node_rows: dict[str, int] = {}
    for r, row in enumerate(tables.get("nodes.csv", []), start=first_row.get("nodes.csv", 2)):
        nid = row.get("id", "")
        if not nid:
            problems.append(Problem("nodes.csv", r, None, "id is empty"))
            continue
        if nid in nodes:
            problems.append(Problem("nodes.csv", r, nid,
                                    f"duplicate node id (first at row {node_rows[nid]})"))
            continue
        kind = row.get("kind", "")
        if kind not in NODE_KINDS:
            problems.append(Problem("nodes.csv", r, nid,
                                    f"kind must be one of {'|'.join(NODE_KINDS)}, got {kind!r}"))
        no_text = row.get("normally_open", "") or "0"
        if no_text not in ("0", "1", "true", "false", "True", "False"):
            problems.append(Problem("nodes.csv", r, nid, f"normally_open must be 0 or 1, got {no_text!r}"))
        normally_open = no_text in ("1", "true", "True")
        if normally_open and kind not in DEVICE_KINDS:
            problems.append(Problem("nodes.csv", r, nid,
                                    f"normally_open=1 is only for switching devices, not {kind!r}"))
        cust_text = row.get("customers", "") or "0"
        try:
            customers = int(cust_text)
            if customers < 0:
                raise ValueError
        except ValueError:
            problems.append(Problem("nodes.csv", r, nid,
                                    f"customers must be a whole number >= 0, got {cust_text!r}"))
            customers = 0
        village = row.get("village", "")
        if kind == "transformer":
            if customers < 1:
                problems.append(Problem("nodes.csv", r, nid, "transformer needs customers >= 1"))
            if not village:
                problems.append(Problem("nodes.csv", r, nid, "transformer needs a village"))
            elif villages and village not in villages:
                problems.append(Problem("nodes.csv", r, nid,
                                        f"village {village!r} is not in villages.csv"))
        coords: list[float | None] = []
        for axis in ("lat", "lon"):
            text = row.get(axis, "")
            if not text:
                coords.append(None)
                continue
            try:
                coords.append(float(text))
            except ValueError:
                problems.append(Problem("nodes.csv", r, nid, f"{axis} must be a number, got {text!r}"))
                coords.append(None)
        nodes[nid] = Node(nid, kind, row.get("name", ""), row.get("feeder", ""), normally_open,
                          village, customers, coords[0], coords[1], _extra(row, "nodes.csv"))
        node_rows[nid] = r

    # edges
    edges: list[tuple[str, str]] = []
    seen_edges: dict[frozenset[str], int] = {}
    for r, row in enumerate(tables.get("edges.csv", []), start=first_row.get("edges.csv", 2)):
        a, b = row.get("from", ""), row.get("to", "")
        bad = False
        for end, label in ((a, "from"), (b, "to")):
            if not end:
                problems.append(Problem("edges.csv", r, None, f"{label} is empty"))
                bad = True
            elif end not in nodes:
                problems.append(Problem("edges.csv", r, f"{a}-{b}",
                                        f"dangling edge: {label} node {end!r} is not in nodes.csv"))
                bad = True
        if bad:
            continue
        if a == b:
            problems.append(Problem("edges.csv", r, f"{a}-{b}", "edge connects a node to itself"))
            continue
        key = frozenset((a, b))
        if key in seen_edges:
            problems.append(Problem("edges.csv", r, f"{a}-{b}",
                                    f"duplicate edge (first at row {seen_edges[key]})"))
            continue
        seen_edges[key] = r
        edges.append((a, b))

    # energised network: each component one source, a tree
    if nodes:
        problems.extend(_check_energised(nodes, edges, node_rows))

    # liaisons
    liaisons: list[Liaison] = []
    for r, row in enumerate(tables.get("liaisons.csv", []), start=first_row.get("liaisons.csv", 2)):
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
    feeders = {n.feeder for n in nodes.values() if n.feeder}
    crews: list[Crew] = []
    crew_ids: set[str] = set()
    for r, row in enumerate(tables.get("crews.csv", []), start=first_row.get("crews.csv", 2)):
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

    # customers (optional)
    customers: list[Customer] = []
    customer_ids: set[str] = set()
    for r, row in enumerate(tables.get("customers.csv", []), start=first_row.get("customers.csv", 2)):
        cid = row.get("id", "")
        if not cid:
            problems.append(Problem("customers.csv", r, None, "id is empty"))
            continue
        if cid in customer_ids:
            problems.append(Problem("customers.csv", r, cid, "duplicate customer id"))
            continue
        customer_ids.add(cid)
        tx = row.get("transformer", "")
        if tx not in nodes or nodes[tx].kind != "transformer":
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
    for r, row in enumerate(tables.get("meters.csv", []), start=2):
        mid = row.get("id", "")
        if not mid:
            problems.append(Problem("meters.csv", r, None, "id is empty"))
            continue
        if mid in meter_ids:
            problems.append(Problem("meters.csv", r, mid, "duplicate meter id"))
            continue
        meter_ids.add(mid)
        tx = row.get("transformer", "")
        if tx not in nodes or nodes[tx].kind != "transformer":
            problems.append(Problem("meters.csv", r, mid, f"unknown transformer {tx!r}"))
        kind = row.get("kind", "") or "meter"
        if kind not in ("meter", "terminal"):
            problems.append(Problem("meters.csv", r, mid, f"kind must be meter|terminal, got {kind!r}"))
        meters.append(Meter(mid, tx, kind))

    if problems:
        raise TopologyError(problems)
    return Topology(nodes, edges, villages, liaisons, crews, customers, meters, source=source)


def _check_energised(
    nodes: dict[str, Node], edges: list[tuple[str, str]], node_rows: dict[str, int]
) -> list[Problem]:
    problems: list[Problem] = []
    g: nx.Graph = nx.Graph()
    g.add_nodes_from(nid for nid, n in nodes.items() if not n.normally_open)
    g.add_edges_from((a, b) for a, b in edges
                     if not nodes[a].normally_open and not nodes[b].normally_open)
    for component in nx.connected_components(g):
        sources = sorted(nid for nid in component if nodes[nid].kind == "source")
        sample = min(component, key=lambda nid: node_rows.get(nid, 0))
        if not sources:
            problems.append(Problem("nodes.csv", node_rows.get(sample), sample,
                                    f"energised component of {len(component)} node(s) containing "
                                    f"{sample!r} has no source"))
        elif len(sources) > 1:
            problems.append(Problem("nodes.csv", node_rows.get(sources[1]), sources[1],
                                    f"energised component has {len(sources)} sources "
                                    f"({', '.join(sources[:5])}); it must have exactly one"))
        sub = g.subgraph(component)
        if sub.number_of_edges() != sub.number_of_nodes() - 1:
            cycle = nx.find_cycle(sub)
            ring = " - ".join([str(e[0]) for e in cycle] + [str(cycle[0][0])])
            problems.append(Problem("edges.csv", None, str(cycle[0][0]),
                                    f"cycle in the energised network: {ring} "
                                    "(open a tie switch with normally_open=1)"))
    return problems
