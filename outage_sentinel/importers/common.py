"""Format-neutral network description and the bundle writer shared by the importers.

An importer fills a :class:`RawNetwork` (buses, two-terminal branches, loads, sources) and
:func:`write_bundle` turns it into a bundle (docs/design.md §3) by these documented rules:

1. **Service transformers become transformer areas.** A transformer is a service (distribution)
   transformer when the format says so (see each importer). Everything on its low-voltage side
   (found by walking from its secondary without crossing it back) is folded into one
   ``transformer`` node; its ``customers`` is the number of customer objects found there
   (at least 1). Other transformers (substation, regulators) are plain connections.
2. **Loads not behind a service transformer** get a synthetic area ``area-<bus>`` per bus, with
   one customer per load on that bus.
3. **Devices are nodes in series.** A switch/fuse/recloser/sectionaliser/breaker branch becomes
   a node between its two buses; ``normally_open=1`` when the source marks it open.
4. **Feeder heads.** A source with no protective device next to it gets a breaker
   ``<source>-brk`` between it and the network.
5. **Only the energised network is kept:** buses not connected to a source (out of service or
   isolated) are dropped, as are normally-open devices left with no energised neighbour.
6. **Synthetic villages and liaisons.** Transformer areas are grouped into villages by their
   nearest protective device upstream, at most 20 areas per village in Euler order
   (``<feeder>-V<n>``, area type ``rural``); each village gets a ``village_liaison`` with a
   placeholder SMS number, and each feeder a crew ``<feeder>-crew``. Replace these with real
   ones before going live.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from outage_sentinel.topology import PROTECTIVE_KINDS

VILLAGE_SIZE = 20
PLACEHOLDER_PHONE = "13800000000"


class ImportError_(ValueError):
    """The source cannot be turned into a valid bundle (names the file and what is wrong)."""


@dataclass
class Branch:
    """A two-terminal element between buses ``a`` and ``b``.

    ``kind`` is ``line`` (a plain connection), a device kind (``switch``, ``fuse``,
    ``recloser``, ``sectionalizer``, ``breaker``) or ``transformer``.
    """

    name: str
    kind: str
    a: str
    b: str
    normally_open: bool = False
    service: bool = False  # transformer: a service (distribution) transformer


@dataclass
class RawNetwork:
    """What an importer extracts from a source model."""

    name: str
    buses: dict[str, dict[str, str]] = field(default_factory=dict)  # bus -> extra columns
    branches: list[Branch] = field(default_factory=list)
    #: bus -> number of customer objects attached there
    customers_at: dict[str, int] = field(default_factory=dict)
    #: bus -> number of loads there: customers where no customer objects are found, and the
    #: buses outside service transformers that get a synthetic area (rule 2)
    loads_at: dict[str, int] = field(default_factory=dict)
    sources: list[tuple[str, str]] = field(default_factory=list)  # (source name, bus)
    warnings: list[str] = field(default_factory=list)

    def bus(self, name: str) -> str:
        self.buses.setdefault(name, {})
        return name


@dataclass
class ImportSummary:
    """Counts of what was written (printed by the import command)."""

    outdir: str
    nodes: int
    edges: int
    transformers: int
    customers: int
    devices: dict[str, int]
    normally_open: int
    feeders: list[str]
    villages: int
    warnings: list[str]


def _bfs(adj: dict[str, set[str]], start: str, blocked: set[str]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adj.get(u, ()):
            if v not in seen and v not in blocked:
                seen.add(v)
                queue.append(v)
    return seen


def write_bundle(net: RawNetwork, outdir: str | Path) -> ImportSummary:
    """Apply the rules above and write the bundle CSVs into ``outdir``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    names: dict[str, str] = {}
    normally_open: dict[str, bool] = {}
    customers: dict[str, int] = {}
    extra: dict[str, dict[str, str]] = {}
    edges: set[tuple[str, str]] = set()
    taken: set[str] = set()

    def new_id(base: str) -> str:
        nid, k = base, 1
        while nid in taken:
            k += 1
            nid = f"{base}~{k}"
        taken.add(nid)
        return nid

    bus_id = {b: new_id(b) for b in net.buses}
    for b, nid in bus_id.items():
        kinds[nid], names[nid] = "junction", b
        extra[nid] = dict(net.buses[b])

    def edge(a: str, b: str) -> None:
        if a != b:
            edges.add((a, b) if a < b else (b, a))

    # bus adjacency through everything except service transformers (to find LV sides)
    adj: dict[str, set[str]] = {}
    for br in net.branches:
        if br.kind == "transformer" and br.service:
            continue
        adj.setdefault(br.a, set()).add(br.b)
        adj.setdefault(br.b, set()).add(br.a)
    absorbed: set[str] = set()
    source_buses = {bus for _, bus in net.sources}
    for br in net.branches:
        if br.kind != "transformer" or not br.service:
            continue
        lv = _bfs(adj, br.b, {br.a})
        if lv & source_buses:
            net.warnings.append(f"transformer {br.name}: secondary reaches a source; kept as a "
                                "plain connection")
            br.service = False
            edge(bus_id[br.a], bus_id[br.b])
            continue
        absorbed |= lv
        count = sum(net.customers_at.get(x, 0) for x in lv)
        if count == 0:
            count = sum(net.loads_at.get(x, 0) for x in lv)
        nid = new_id(br.name)
        kinds[nid], names[nid] = "transformer", br.name
        customers[nid] = max(1, count)
        extra[nid] = {}
        edge(bus_id[br.a], nid)
    for br in net.branches:
        if br.kind == "transformer" and br.service:
            continue
        if br.a in absorbed or br.b in absorbed:
            continue
        if br.kind in ("line", "transformer"):
            edge(bus_id[br.a], bus_id[br.b])
            continue
        nid = new_id(br.name)
        kinds[nid], names[nid] = br.kind, br.name
        normally_open[nid] = br.normally_open
        extra[nid] = {}
        edge(bus_id[br.a], nid)
        edge(nid, bus_id[br.b])
    for bus in absorbed:
        nid = bus_id[bus]
        for d in (kinds, names, extra):
            d.pop(nid, None)
    for bus in sorted(net.loads_at):
        if bus in absorbed or bus not in bus_id:
            continue
        count = net.customers_at.get(bus, 0) or net.loads_at.get(bus, 0)
        if count <= 0:
            continue
        nid = new_id(f"area-{bus}")
        kinds[nid], names[nid] = "transformer", f"{bus} (synthetic area)"
        customers[nid] = count
        extra[nid] = {}
        edge(bus_id[bus], nid)
    source_ids: list[tuple[str, str]] = []
    for k, (sname, bus) in enumerate(net.sources):
        nid = new_id(sname)
        kinds[nid], names[nid] = "source", sname
        extra[nid] = {}
        edge(nid, bus_id[bus])
        source_ids.append((nid, net.name if len(net.sources) == 1 else f"{net.name}-{k + 1}"))

    adjacency: dict[str, list[str]] = {n: [] for n in kinds}
    for a, b in edges:
        adjacency[a].append(b)
        adjacency[b].append(a)
    # rule 4: feeder-head breakers
    for sid, _feeder in source_ids:
        if not _head_protected(sid, adjacency, kinds, normally_open):
            brk = new_id(f"{sid}-brk")
            kinds[brk], names[brk], extra[brk] = "breaker", f"{names[sid]} feeder breaker", {}
            adjacency[brk] = []
            for v in list(adjacency[sid]):
                edges.discard((sid, v) if sid < v else (v, sid))
                adjacency[v].remove(sid)
                edge(brk, v)
                adjacency[v].append(brk)
                adjacency[brk].append(v)
            adjacency[sid] = [brk]
            edge(sid, brk)
            adjacency[brk].append(sid)
    # rule 5: energised network from each source; feeder = that source's feeder
    feeder_of: dict[str, str] = {}
    order: list[str] = []
    for sid, feeder in source_ids:
        if sid in feeder_of:
            continue
        feeder_of[sid] = feeder
        stack = [sid]
        while stack:
            u = stack.pop()
            order.append(u)
            for v in sorted(adjacency[u], reverse=True):
                if v in feeder_of or normally_open.get(v, False):
                    continue
                feeder_of[v] = feeder
                stack.append(v)
    keep = set(feeder_of)
    for nid, is_open in normally_open.items():
        if is_open and any(v in keep for v in adjacency[nid]):
            keep.add(nid)
            feeder_of[nid] = next(feeder_of[v] for v in adjacency[nid] if v in feeder_of)
    dropped = len(kinds) - len(keep)
    if dropped:
        net.warnings.append(f"dropped {dropped} node(s) not connected to a source")
    # rule 6: villages by nearest protective device upstream, in DFS order
    parent_dev: dict[str, str] = {}
    for sid, _ in source_ids:
        parent_dev[sid] = sid
    village_of: dict[str, str] = {}
    village_rows: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    visited: set[str] = set()
    for sid, _ in source_ids:
        stack2: list[tuple[str, str]] = [(sid, sid)]
        while stack2:
            u, dev = stack2.pop()
            if u in visited:
                continue
            visited.add(u)
            if kinds[u] in PROTECTIVE_KINDS:
                dev = u
            if kinds[u] == "transformer":
                groups.setdefault(dev, []).append(u)
            for v in sorted(adjacency[u], reverse=True):
                if v in keep and v not in visited and not normally_open.get(v, False):
                    stack2.append((v, dev))
    counter: dict[str, int] = {}
    for dev, areas in groups.items():
        feeder = feeder_of[dev]
        for start in range(0, len(areas), VILLAGE_SIZE):
            counter[feeder] = counter.get(feeder, 0) + 1
            vid = f"{feeder}-V{counter[feeder]}"
            village_rows.append([vid, f"{names.get(dev, dev)} area {counter[feeder]}",
                                 feeder, feeder, "rural"])
            for a in areas[start:start + VILLAGE_SIZE]:
                village_of[a] = vid

    extra_cols = sorted({k for nid in keep for k in extra.get(nid, {})})
    with (out / "nodes.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "kind", "name", "feeder", "normally_open", "village", "customers",
                    "lat", "lon", *extra_cols])
        rank = {n: i for i, n in enumerate(order)}
        for nid in sorted(keep, key=lambda n: (rank.get(n, len(order)), n)):
            ex = extra.get(nid, {})
            w.writerow([nid, kinds[nid], names[nid], feeder_of.get(nid, ""),
                        1 if normally_open.get(nid) else 0, village_of.get(nid, ""),
                        customers.get(nid, "") if kinds[nid] == "transformer" else "",
                        "", "", *[ex.get(c, "") for c in extra_cols]])
    with (out / "edges.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["from", "to"])
        for a, b in sorted(edges):
            if a in keep and b in keep:
                w.writerow([a, b])
    with (out / "villages.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "township", "grid", "area_type"])
        w.writerows(village_rows)
    with (out / "liaisons.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["village", "name", "role", "phone", "channel", "target"])
        for row in village_rows:
            w.writerow([row[0], f"{row[0]} liaison (placeholder)", "village_liaison",
                        PLACEHOLDER_PHONE, "sms", PLACEHOLDER_PHONE])
    feeders = sorted({f for _, f in source_ids})
    with (out / "crews.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "phone", "channel", "target", "feeders"])
        for f in feeders:
            w.writerow([f"{f}-crew", f"{f} repair crew (placeholder)", PLACEHOLDER_PHONE, "sms",
                        PLACEHOLDER_PHONE, f])
    devices: dict[str, int] = {}
    for nid in keep:
        if kinds[nid] in ("breaker", "recloser", "sectionalizer", "fuse", "switch"):
            devices[kinds[nid]] = devices.get(kinds[nid], 0) + 1
    tx = [n for n in keep if kinds[n] == "transformer"]
    return ImportSummary(
        outdir=str(out), nodes=len(keep),
        edges=sum(1 for a, b in edges if a in keep and b in keep),
        transformers=len(tx), customers=sum(customers[n] for n in tx),
        devices=dict(sorted(devices.items())),
        normally_open=sum(1 for n in keep if normally_open.get(n)),
        feeders=feeders, villages=len(village_rows), warnings=list(net.warnings),
    )


def _head_protected(source: str, adjacency: dict[str, list[str]], kinds: dict[str, str],
                    normally_open: dict[str, bool]) -> bool:
    """True when a protective device sits on the single path out of the source before the
    network first branches (or reaches an area)."""
    prev, u = "", source
    while True:
        onward = [v for v in adjacency[u] if v != prev and not normally_open.get(v, False)]
        if len(onward) != 1:
            return False
        prev, u = u, onward[0]
        if kinds[u] in PROTECTIVE_KINDS:
            return True
        if kinds[u] == "transformer":
            return False


def strip_phases(bus: str) -> str:
    """``632.1.2.3`` -> ``632`` (OpenDSS node suffixes)."""
    return bus.split(".", 1)[0]


def count(items: Iterable[object]) -> int:
    return sum(1 for _ in items)
