"""Format-neutral network description and the bundle writer shared by the importers.

An importer fills a :class:`RawNetwork` (buses, two-terminal branches, loads, sources) and
:func:`write_bundle` turns it into a bundle (docs/design.md §3) by these documented rules:

1. **Service transformers become transformer areas.** A transformer is a service (distribution)
   transformer when the format says so (see each importer). Everything on its low-voltage side
   (found by walking from its secondary without crossing it back) is folded into one
   ``transformer`` node; its ``customers`` is the number of customer objects found there
   (at least 1). Other transformers (substation, regulators) are plain connections, and so
   is a service transformer whose low-voltage side reaches a source (or its own primary bus).
   *Cascaded* service transformers — one fed from inside another's low-voltage side, such as
   a 12.47/0.48 kV then a 0.48/0.24 kV pair, or center-tapped transformers given no voltages —
   make one area, the outer one's: the inner is a plain connection inside it (a warning names
   both), so every customer behind either is counted once, in the outer area. Keeping the
   inner as an area of its own would need an area inside an area, which a bundle has no place
   for: its customers would be counted twice, or taken out of the outer area that an outage
   of the outer transformer darkens too.
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
import ctypes
import errno
import os
import secrets
import shutil
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outage_sentinel.topology import PROTECTIVE_KINDS, TopologyError, load_bundle

VILLAGE_SIZE = 20
PLACEHOLDER_PHONE = "13800000000"
FOLD_WARNINGS = 20  # cascaded transformers named one by one; the rest are counted


class ImportError_(ValueError):
    """The source cannot be turned into a valid bundle (names the file and what is wrong)."""


class BundleWriteError(ImportError_):
    """The bundle cannot be written where it was asked to go (names the path and why)."""


class BundleInvalidError(ImportError_):
    """The imported bundle would not load (names the folder and lists every problem)."""


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


def _owners(sides: dict[int, set[str]]) -> dict[str, int]:
    """Each LV bus -> the first service transformer (branch index) whose side holds it."""
    owner: dict[str, int] = {}
    for k, lv in sides.items():
        for bus in lv:
            owner.setdefault(bus, k)
    return owner


def write_bundle(net: RawNetwork, outdir: str | Path) -> ImportSummary:
    """Apply the rules above and write the bundle into ``outdir``: written in a folder beside
    it, checked with the bundle loader (with the files of ``outdir`` the import does not write,
    such as ``meters.csv``), and only then put in place, in one step where the filesystem can
    swap two folders. A bundle that would not load is a :class:`BundleInvalidError` and a folder
    that cannot be made or a file that cannot be written a :class:`BundleWriteError`; either
    way ``outdir`` is left as it was."""
    out = Path(outdir)
    if out.is_symlink():
        out = out.resolve()
    _check_target(out)
    b = _BundleBuilder(net)
    b.add_buses()
    absorbed = b.add_service_transformers()
    b.add_branches(absorbed)
    b.add_synthetic_areas(absorbed)
    sources = b.add_sources()
    adjacency = b.protect_heads(sources)
    feeder_of, order = b.energise(sources, adjacency)
    village_of, village_rows = b.villages(sources, adjacency, feeder_of)
    keep = set(feeder_of)
    feeders = sorted({f for _, f in sources})
    with _staged(out) as stage:
        b.write_nodes(stage, keep, feeder_of, village_of, order)
        b.write_tables(stage, keep, village_rows, feeders)
    return b.summary(out, keep, feeders, len(village_rows))


def _check_target(out: Path) -> None:
    """``out`` is a folder or nothing yet, and its parent folder exists (made if need be)."""
    with _writing(out):
        if out.exists() and not out.is_dir():
            raise BundleWriteError(f"{out}: not a directory (a file is in the way); the bundle "
                                   "was not written")
        out.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def _writing(out: Path, stage: Path | None = None) -> Iterator[None]:
    """An operating-system error writing the bundle as a one-line :class:`BundleWriteError`
    naming the path (a permission denied, a file in the way, a full disk); a file of
    ``stage`` is named as the file of ``out`` it was to become."""
    try:
        yield
    except OSError as exc:
        name = str(exc.filename or out)
        if stage is not None:
            name = name.replace(str(stage), str(out))
        raise BundleWriteError(f"{name}: cannot write the bundle "
                               f"({exc.strerror or exc})") from exc


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A new folder to write the bundle's files in, put in place of ``out`` only once every
    file is written and the whole bundle loads: a failure halfway, or a bundle that would not
    load, leaves the bundle that was there untouched (not half old and half new for the
    daemon's next reload to read) and no file of its own."""
    with _writing(out):
        stage = _new_stage(out)
    try:
        with _writing(out, stage):
            yield stage
            written = {f.name for f in stage.iterdir()}
            _carry_over(out, stage, written)
        _check_loads(out, stage)
        with _writing(out, stage):
            _put_in_place(out, stage, written)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _new_stage(out: Path) -> Path:
    """An empty folder beside ``out`` (so that it can take its place by a rename), or inside
    ``out`` (its files then moved in one by one, on the same filesystem) when ``out`` is a
    mount point or on another filesystem than its parent (a volume, a bind mount), or when
    the parent folder cannot be written (no permission, read-only)."""
    if out.is_dir() and (out.is_mount() or out.stat().st_dev != out.parent.stat().st_dev):
        return _make_stage(out, out)
    try:
        stage = _make_stage(out.parent, out)
    except OSError:
        if not out.is_dir():
            raise
        return _make_stage(out, out)
    if out.is_dir() and _crosses_mount(stage, out):  # a bind mount of the same filesystem
        shutil.rmtree(stage, ignore_errors=True)
        return _make_stage(out, out)
    return stage


def _crosses_mount(stage: Path, out: Path) -> bool:
    """Whether a rename from ``stage`` into ``out`` crosses a mount (EXDEV), tried with an
    empty folder."""
    probe, there = stage / ".probe", out / f"{stage.name}.probe"
    probe.mkdir()
    try:
        os.rename(probe, there)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return True
        raise
    os.rmdir(there)
    return False


def _make_stage(parent: Path, out: Path) -> Path:
    """A new folder in ``parent`` with the permissions of ``out`` (the umask's if none)."""
    stage = parent / f".{out.name}.import-{secrets.token_hex(6)}"
    stage.mkdir()
    if out.is_dir():
        shutil.copymode(out, stage)
    return stage


def _carry_over(out: Path, stage: Path, written: set[str]) -> None:
    """The entries of ``out`` the import does not write (``meters.csv``, ``customers.csv``, a
    README, ...) into ``stage``, hard-linked where possible: the bundle checked and put in
    place is the whole bundle the daemon will read."""
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if entry.name in written or entry == stage:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, stage / entry.name, symlinks=True, copy_function=_link)
        else:
            _link(entry, stage / entry.name)


def _link(src: str | Path, dst: str | Path) -> None:
    """A hard link of ``src`` at ``dst``, or a copy where links cannot be made."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _check_loads(out: Path, stage: Path) -> None:
    """Load the staged bundle as the daemon would; its problems as a
    :class:`BundleInvalidError`."""
    try:
        load_bundle(stage)
    except TopologyError as exc:
        raise BundleInvalidError(f"{out}: the imported bundle would be invalid, so {out} was "
                                 f"left as it was; {exc}") from exc


def _put_in_place(out: Path, stage: Path, written: set[str]) -> None:
    """``stage`` becomes ``out``: a rename when ``out`` does not exist, an atomic swap of the
    two folders where the system can (the old one is then at ``stage``, to be removed), else
    each written file moved in (each file at once, the set one after the other)."""
    if not out.exists():
        os.rename(stage, out)
    elif stage.parent == out or not exchange_folders(stage, out):
        for name in sorted(written):
            os.replace(stage / name, out / name)


def exchange_folders(a: Path, b: Path) -> bool:
    """Swap folders ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EBUSY):
        return False
    raise OSError(err, os.strerror(err), str(b))


class _BundleBuilder:
    """The bundle's nodes and edges as the rules of this module build them."""

    def __init__(self, net: RawNetwork) -> None:
        self.net = net
        self.kinds: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.normally_open: dict[str, bool] = {}
        self.customers: dict[str, int] = {}
        self.extra: dict[str, dict[str, str]] = {}
        self.edges: set[tuple[str, str]] = set()
        self.taken: set[str] = set()
        self.bus_id: dict[str, str] = {}

    def new_id(self, base: str) -> str:
        nid, k = base, 1
        while nid in self.taken:
            k += 1
            nid = f"{base}~{k}"
        self.taken.add(nid)
        return nid

    def edge(self, a: str, b: str) -> None:
        if a != b:
            self.edges.add((a, b) if a < b else (b, a))

    def node(self, base: str, kind: str, name: str, *, customers: int | None = None,
             normally_open: bool | None = None) -> str:
        nid = self.new_id(base)
        self.kinds[nid], self.names[nid], self.extra[nid] = kind, name, {}
        if customers is not None:
            self.customers[nid] = customers
        if normally_open is not None:
            self.normally_open[nid] = normally_open
        return nid

    def add_buses(self) -> None:
        self.bus_id = {b: self.new_id(b) for b in self.net.buses}
        for b, nid in self.bus_id.items():
            self.kinds[nid], self.names[nid] = "junction", b
            self.extra[nid] = dict(self.net.buses[b])

    def add_service_transformers(self) -> set[str]:
        """Rule 1: a service transformer becomes a transformer area absorbing its LV side;
        returns the absorbed buses."""
        net = self.net
        sides = self._service_sides()
        absorbed: set[str] = set()
        for k, br in enumerate(net.branches):
            if k not in sides:
                continue
            lv = sides[k]
            absorbed |= lv
            count = sum(net.customers_at.get(x, 0) for x in lv)
            if count == 0:
                count = sum(net.loads_at.get(x, 0) for x in lv)
            nid = self.node(br.name, "transformer", br.name, customers=max(1, count))
            self.edge(self.bus_id[br.a], nid)
        return absorbed

    def _service_sides(self) -> dict[int, set[str]]:
        """The LV side of each service transformer that stays one, by branch index. The
        others (rule 1) are made plain connections, a warning naming each; repeated until
        none is left, as a plain connection widens the LV sides it joins."""
        net = self.net
        sources = {bus for _, bus in net.sources}
        folded: dict[int, int] = {}  # inner transformer -> the one it was fed from
        while True:
            adj = self._bus_adjacency()
            sides = {k: _bfs(adj, br.b, {br.a}) for k, br in enumerate(net.branches)
                     if br.kind == "transformer" and br.service}
            if self._demote_unserviced(sides, sources) or self._fold_nested(sides, folded):
                continue
            self._warn_folded(sides, folded)
            return sides

    def _demote_unserviced(self, sides: dict[int, set[str]], sources: set[str]) -> bool:
        """Service transformers whose LV side reaches a source, or that have one bus for
        both sides, become plain connections; whether any did."""
        demoted = False
        for k, lv in sides.items():
            br = self.net.branches[k]
            if lv & sources or br.a == br.b:
                why = "secondary reaches a source" if lv & sources else (
                    "primary and secondary on the same bus")
                self.net.warnings.append(f"transformer {br.name}: {why}; kept as a plain "
                                         "connection")
                br.service, demoted = False, True
        return demoted

    def _fold_nested(self, sides: dict[int, set[str]], folded: dict[int, int]) -> bool:
        """A service transformer whose primary bus is on another's LV side becomes a plain
        connection there (``folded``: inner -> outer); whether any did. Of service
        transformers feeding each other in a ring, the first that no other is folded into
        stays."""
        owner = _owners(sides)
        fresh: dict[int, int] = {}

        def root(k: int) -> int:
            while k in fresh:
                k = fresh[k]
            return k

        for k in sides:
            outer = owner.get(self.net.branches[k].a)
            if outer is not None and root(outer) != k:
                fresh[k] = outer
        for k in fresh:
            self.net.branches[k].service = False
        folded.update(fresh)
        return bool(fresh)

    def _warn_folded(self, sides: dict[int, set[str]], folded: dict[int, int]) -> None:
        """A warning naming each folded transformer and the area it ended up inside."""
        branches, owner = self.net.branches, _owners(sides)
        for inner, outer in sorted(folded.items())[:FOLD_WARNINGS]:
            area = owner.get(branches[inner].a)
            where = (f"a plain connection inside {branches[area].name}'s area, its customers "
                     "counted there" if area is not None else "a plain connection")
            self.net.warnings.append(
                f"transformer {branches[inner].name}: fed from the low-voltage side of "
                f"{branches[area if area is not None else outer].name}; {where}")
        if len(folded) > FOLD_WARNINGS:
            self.net.warnings.append(f"... and {len(folded) - FOLD_WARNINGS} more service "
                                     "transformer(s) fed from another's low-voltage side")

    def _bus_adjacency(self) -> dict[str, set[str]]:
        """Bus adjacency through everything except service transformers (the LV sides)."""
        adj: dict[str, set[str]] = {}
        for br in self.net.branches:
            if br.kind == "transformer" and br.service:
                continue
            adj.setdefault(br.a, set()).add(br.b)
            adj.setdefault(br.b, set()).add(br.a)
        return adj

    def add_branches(self, absorbed: set[str]) -> None:
        """Rule 3: lines join buses; switching devices become nodes between them (a branch
        with an end inside an area is part of that area)."""
        for br in self.net.branches:
            if (br.kind == "transformer" and br.service) or br.a in absorbed or br.b in absorbed:
                continue
            if br.kind in ("line", "transformer"):
                self.edge(self.bus_id[br.a], self.bus_id[br.b])
                continue
            nid = self.node(br.name, br.kind, br.name, normally_open=br.normally_open)
            self.edge(self.bus_id[br.a], nid)
            self.edge(nid, self.bus_id[br.b])
        for bus in absorbed:
            nid = self.bus_id[bus]
            for d in (self.kinds, self.names, self.extra):
                d.pop(nid, None)

    def add_synthetic_areas(self, absorbed: set[str]) -> None:
        """Rule 2: loads on a bus with no service transformer become a synthetic area."""
        net = self.net
        for bus in sorted(net.loads_at):
            if bus in absorbed or bus not in self.bus_id:
                continue
            count = net.customers_at.get(bus, 0) or net.loads_at.get(bus, 0)
            if count <= 0:
                continue
            nid = self.node(f"area-{bus}", "transformer", f"{bus} (synthetic area)",
                            customers=count)
            self.edge(self.bus_id[bus], nid)

    def add_sources(self) -> list[tuple[str, str]]:
        """The sources, each with its feeder name: ``[(node id, feeder)]``."""
        net = self.net
        name = self.feeder_name()
        out: list[tuple[str, str]] = []
        for k, (sname, bus) in enumerate(net.sources):
            nid = self.node(sname, "source", sname)
            self.edge(nid, self.bus_id[bus])
            out.append((nid, name if len(net.sources) == 1 else f"{name}-{k + 1}"))
        return out

    def feeder_name(self) -> str:
        """The network's name as a feeder name: crews.csv separates feeders with ``;``, so a
        ``;`` in it (e.g. from a file named ``feeder;A.json``) becomes ``_`` (a warning says
        so); empty or blank is ``feeder``."""
        name = self.net.name.strip() or "feeder"
        if ";" in name:
            fixed = name.replace(";", "_")
            self.net.warnings.append(f"feeder name {name!r} has ';', which separates feeders in "
                                     f"crews.csv: written as {fixed!r}")
            name = fixed
        return name

    def protect_heads(self, sources: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Rule 4: a feeder-head breaker where none protects the way out of a source;
        returns the node adjacency."""
        adjacency: dict[str, list[str]] = {n: [] for n in self.kinds}
        for a, b in self.edges:
            adjacency[a].append(b)
            adjacency[b].append(a)
        for sid, _feeder in sources:
            if _head_protected(sid, adjacency, self.kinds, self.normally_open):
                continue
            brk = self.node(f"{sid}-brk", "breaker", f"{self.names[sid]} feeder breaker")
            adjacency[brk] = []
            for v in list(adjacency[sid]):
                self.edges.discard((sid, v) if sid < v else (v, sid))
                adjacency[v].remove(sid)
                self.edge(brk, v)
                adjacency[v].append(brk)
                adjacency[brk].append(v)
            adjacency[sid] = [brk]
            self.edge(sid, brk)
            adjacency[brk].append(sid)
        return adjacency

    def energise(self, sources: list[tuple[str, str]], adjacency: dict[str, list[str]]
                 ) -> tuple[dict[str, str], list[str]]:
        """Rule 5: the energised network from each source (feeder = that source's), plus the
        normally-open points at its edge; returns the feeder of each kept node and the DFS
        order."""
        feeder_of: dict[str, str] = {}
        order: list[str] = []
        for sid, feeder in sources:
            if sid in feeder_of:
                continue
            feeder_of[sid] = feeder
            stack = [sid]
            while stack:
                u = stack.pop()
                order.append(u)
                for v in sorted(adjacency[u], reverse=True):
                    if v in feeder_of or self.normally_open.get(v, False):
                        continue
                    feeder_of[v] = feeder
                    stack.append(v)
        for nid, is_open in self.normally_open.items():
            if is_open and any(v in feeder_of for v in adjacency[nid]):
                feeder_of[nid] = next(feeder_of[v] for v in adjacency[nid] if v in feeder_of)
        dropped = len(self.kinds) - len(feeder_of)
        if dropped:
            self.net.warnings.append(f"dropped {dropped} node(s) not connected to a source")
        return feeder_of, order

    def villages(self, sources: list[tuple[str, str]], adjacency: dict[str, list[str]],
                 feeder_of: dict[str, str]) -> tuple[dict[str, str], list[list[str]]]:
        """Rule 6: villages by nearest protective device upstream, in DFS order."""
        groups: dict[str, list[str]] = {}
        visited: set[str] = set()
        for sid, _ in sources:
            stack: list[tuple[str, str]] = [(sid, sid)]
            while stack:
                u, dev = stack.pop()
                if u in visited:
                    continue
                visited.add(u)
                if self.kinds[u] in PROTECTIVE_KINDS:
                    dev = u
                if self.kinds[u] == "transformer":
                    groups.setdefault(dev, []).append(u)
                for v in sorted(adjacency[u], reverse=True):
                    if (v in feeder_of and v not in visited
                            and not self.normally_open.get(v, False)):
                        stack.append((v, dev))
        village_of: dict[str, str] = {}
        rows: list[list[str]] = []
        counter: dict[str, int] = {}
        for dev, areas in groups.items():
            feeder = feeder_of[dev]
            for start in range(0, len(areas), VILLAGE_SIZE):
                counter[feeder] = counter.get(feeder, 0) + 1
                vid = f"{feeder}-V{counter[feeder]}"
                rows.append([vid, f"{self.names.get(dev, dev)} area {counter[feeder]}",
                             feeder, feeder, "rural"])
                for a in areas[start:start + VILLAGE_SIZE]:
                    village_of[a] = vid
        return village_of, rows

    def write_nodes(self, out: Path, keep: set[str], feeder_of: dict[str, str],
                    village_of: dict[str, str], order: list[str]) -> None:
        extra_cols = sorted({k for nid in keep for k in self.extra.get(nid, {})})
        rank = {n: i for i, n in enumerate(order)}
        rows = []
        for nid in sorted(keep, key=lambda n: (rank.get(n, len(order)), n)):
            ex = self.extra.get(nid, {})
            rows.append([nid, self.kinds[nid], self.names[nid], feeder_of.get(nid, ""),
                         1 if self.normally_open.get(nid) else 0, village_of.get(nid, ""),
                         self.customers.get(nid, "") if self.kinds[nid] == "transformer"
                         else "", "", "", *[ex.get(c, "") for c in extra_cols]])
        _write_csv(out / "nodes.csv", ["id", "kind", "name", "feeder", "normally_open",
                                       "village", "customers", "lat", "lon", *extra_cols], rows)

    def write_tables(self, out: Path, keep: set[str], village_rows: list[list[str]],
                     feeders: list[str]) -> None:
        """Edges, villages, and placeholder liaisons and crews to be replaced by real ones."""
        _write_csv(out / "edges.csv", ["from", "to"],
                   [[a, b] for a, b in sorted(self.edges) if a in keep and b in keep])
        _write_csv(out / "villages.csv", ["id", "name", "township", "grid", "area_type"],
                   village_rows)
        _write_csv(out / "liaisons.csv", ["village", "name", "role", "phone", "channel", "target"],
                   [[row[0], f"{row[0]} liaison (placeholder)", "village_liaison",
                     PLACEHOLDER_PHONE, "sms", PLACEHOLDER_PHONE] for row in village_rows])
        _write_csv(out / "crews.csv", ["id", "name", "phone", "channel", "target", "feeders"],
                   [[f"{f}-crew", f"{f} repair crew (placeholder)", PLACEHOLDER_PHONE, "sms",
                     PLACEHOLDER_PHONE, f] for f in feeders])

    def summary(self, out: Path, keep: set[str], feeders: list[str],
                villages: int) -> ImportSummary:
        devices: dict[str, int] = {}
        for nid in keep:
            if self.kinds[nid] in ("breaker", "recloser", "sectionalizer", "fuse", "switch"):
                devices[self.kinds[nid]] = devices.get(self.kinds[nid], 0) + 1
        tx = [n for n in keep if self.kinds[n] == "transformer"]
        return ImportSummary(
            outdir=str(out), nodes=len(keep),
            edges=sum(1 for a, b in self.edges if a in keep and b in keep),
            transformers=len(tx), customers=sum(self.customers[n] for n in tx),
            devices=dict(sorted(devices.items())),
            normally_open=sum(1 for n in keep if self.normally_open.get(n)),
            feeders=feeders, villages=villages, warnings=list(self.net.warnings),
        )


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


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
