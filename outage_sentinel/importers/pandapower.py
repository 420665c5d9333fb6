"""pandapower / SimBench importer, from pandapower's JSON file format (``pp.to_json``).

No pandapower installation is needed to read a JSON file. With pandapower installed (the
``pandapower`` extra), ``SRC`` may also name a built-in network, e.g.
``pandapower.networks.example_simple`` or ``pandapower.networks.create_cigre_network_mv``.

Read: ``bus``, ``ext_grid`` (sources), ``line``, ``trafo`` and ``trafo3w`` (a *service*
transformer when its low-voltage side is below 1 kV), ``switch`` (``et`` b/l/t; type ``CB`` is
a breaker, ``LBS``/``LS``/``DS`` and others are switches; ``closed = false`` is normally
open), ``load`` (one customer each). Out-of-service elements are skipped.

**The substation is the source.** A network modelled from the high-voltage grid (SimBench,
``mv_oberrhein``, CIGRE MV) has its ``ext_grid`` on a high-voltage bus and reaches the
distribution network through substation transformers (not service ones), often two in
parallel with a bus coupler closed between their busbars: a loop, which a bundle cannot hold,
and no part of what a distribution outage system watches. When the buses joined to the
``ext_grid`` by closed bus-bus switches (the high-voltage side) lead out only through such
transformers, that side and the transformers are left out and each transformer's low-voltage
busbar becomes a source; busbars that closed bus-bus switches join, directly or through the
bus sections between them, are one source (those couplers left out), an open coupler stays as
a normally-open tie, and a section fed from a busbar through a closed section breaker and no
other way stays behind that breaker. A warning names the transformers. Where anything else
leaves the high-voltage side (a line, a load, a three-winding transformer) the ``ext_grid``
stays the source, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from outage_sentinel.events import load_json
from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork

SWITCH_KINDS = {"CB": "breaker"}
#: The columns holding the index of a bus (of an element, for a switch's ``element``).
INDEX_COLUMNS = ("bus", "from_bus", "to_bus", "hv_bus", "mv_bus", "lv_bus", "element")


class MalformedNetworkError(ImportError_):
    """A table, row or column of a pandapower JSON network is not as pandapower writes it
    (names the table, the element and the key; :func:`parse` adds the file)."""


class Row(dict[str, Any]):
    """One row of a pandapower table (with its ``index``); a missing column is a
    :class:`MalformedNetworkError` naming the table, the element and the column."""

    def __init__(self, table: str, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.table = table

    def where(self) -> str:
        name = self.get("name")
        return f"{self.table} {self.get('index')}" + (f" ({name!r})" if name else "")

    def __missing__(self, key: str) -> Any:
        raise MalformedNetworkError(f"{self.where()}: no {key!r} column")

    def number(self, column: str, default: float) -> float:
        """A numeric column (``default`` where missing, empty or null)."""
        value = self.get(column)
        if value in (None, ""):
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MalformedNetworkError(f"{self.where()}: {column!r} must be a number, got "
                                        f"{value!r}") from None


def _load_json(src: str) -> tuple[str, dict[str, Any]]:
    if src.startswith("pandapower.networks."):
        return _builtin(src)
    path = Path(src)
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    try:
        doc = load_json(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                           f"offset {exc.start}); pandapower writes its JSON in UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{path}: not JSON ({exc})") from exc
    except (OSError, RecursionError) as exc:
        raise ImportError_(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
                           ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("_object", doc), dict):
        raise ImportError_(f"{path}: not a pandapower network (a JSON object of tables, "
                           f"'_object' holding them), got {type(doc).__name__}")
    return path.stem, doc


def _builtin(src: str) -> tuple[str, dict[str, Any]]:
    """A built-in network of ``pandapower.networks``, as the JSON pandapower writes."""
    try:
        import pandapower as pp
        import pandapower.networks as pn
    except ImportError as exc:
        raise ImportError_(f"{src}: pandapower is not installed (pip install "
                           "'outage-sentinel[pandapower]'), or pass a pandapower JSON "
                           "file") from exc
    fn = getattr(pn, src.rsplit(".", 1)[1], None)
    if fn is None:
        raise ImportError_(f"{src}: no such network in pandapower.networks")
    return src.rsplit(".", 1)[1], json.loads(pp.to_json(fn()))


def _table(doc: dict[str, Any], name: str) -> list[Row]:
    """Rows (with ``index``) of one DataFrame of a pandapower JSON network."""
    entry = doc.get("_object", doc).get(name)
    if entry is None:
        return []
    frame = _frame(name, entry)
    columns, index, data = frame["columns"], frame["index"], frame["data"]
    if len(index) != len(data):
        raise MalformedNetworkError(f"table {name!r}: {len(index)} index entries for "
                                    f"{len(data)} rows")
    rows = []
    for idx, values in zip(index, data, strict=True):
        if not isinstance(values, list) or len(values) != len(columns):
            raise MalformedNetworkError(f"{name} {idx!r}: a row of {len(columns)} values "
                                        f"(the columns) expected, got {values!r:.80}")
        row = Row(name, dict(zip(columns, values, strict=True)))
        row["index"] = idx
        for column in ("index", *INDEX_COLUMNS):
            if column in row:
                row[column] = _index(row, column)
        rows.append(row)
    return rows


def _frame(name: str, entry: Any) -> dict[str, list[Any]]:
    """A table's DataFrame in pandas' ``split`` layout: ``columns``, ``index`` and ``data``."""
    frame = entry.get("_object", entry) if isinstance(entry, dict) else entry
    if isinstance(frame, str):
        try:
            frame = load_json(frame)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise MalformedNetworkError(f"table {name!r}: its '_object' is not JSON "
                                        f"({exc})") from None
    if not isinstance(frame, dict):
        raise MalformedNetworkError(f"table {name!r}: a DataFrame ('columns', 'index', "
                                    f"'data') expected, got {type(frame).__name__}")
    for key in ("columns", "index", "data"):
        if not isinstance(frame.get(key, []), list):
            raise MalformedNetworkError(f"table {name!r}: {key!r} must be a list, got "
                                        f"{type(frame[key]).__name__}")
    columns = frame.get("columns", [])
    if not all(isinstance(c, str) for c in columns):
        raise MalformedNetworkError(f"table {name!r}: 'columns' must be names, got "
                                    f"{columns!r:.80}")
    return {key: frame.get(key, []) for key in ("columns", "index", "data")}


def _index(row: Row, column: str) -> int:
    """The whole number in ``column`` of ``row`` (a bus or element index)."""
    value = row[column]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    what = "the row's index" if column == "index" else f"{column!r}"
    raise MalformedNetworkError(f"{row.where()}: {what} must be a whole number (an index), "
                                f"got {value!r:.80}")


def _in_service(row: dict[str, Any]) -> bool:
    return _flag(row, "in_service")


def _flag(row: dict[str, Any], column: str) -> bool:
    """A boolean column, true when missing (pandapower JSON may hold it as a string)."""
    return row.get(column, True) not in (False, "False", 0)


def _trafo_name(row: dict[str, Any]) -> str:
    return str(row.get("name") or f"trafo{row['index']}")


def parse(src: str | Path) -> RawNetwork:
    """Read a pandapower JSON network (or a named built-in one) into a :class:`RawNetwork`;
    a malformed one is an :class:`ImportError_` naming the file, the element and the key."""
    name, doc = _load_json(str(src))
    try:
        return _network(src, name, doc)
    except MalformedNetworkError as exc:
        raise ImportError_(f"{src}: {exc}") from None


def _network(src: str | Path, name: str, doc: dict[str, Any]) -> RawNetwork:
    net = RawNetwork(name=name)
    buses = _buses(net, doc)
    grids = [row for row in _table(doc, "ext_grid") if _in_service(row) and row["bus"] in buses]
    if not grids:
        raise ImportError_(f"{src}: no in-service ext_grid (the source)")
    sub = _substation(doc, buses, grids)
    if sub is None:
        net.sources += [(str(row.get("name") or f"ext_grid{row['index']}"), buses[row["bus"]])
                        for row in grids]
    else:
        _collapse(net, doc, buses, sub)
    ends = _switches(net, doc, buses, sub.skipped if sub else frozenset())

    def connect(et: str, idx: int, bus: int) -> str:
        """The bus an element end attaches to, through its switches (if any)."""
        here = buses[bus]
        for k, (kind, sname, is_open) in enumerate(ends.get((et, idx, bus), [])):
            nxt = net.bus(f"{et}{idx}@{bus}#{k + 1}")
            net.branches.append(Branch(sname, kind, here, nxt, normally_open=is_open))
            here = nxt
        return here

    for row in _table(doc, "line"):
        if _in_service(row) and row["from_bus"] in buses and row["to_bus"] in buses:
            a = connect("l", row["index"], row["from_bus"])
            b = connect("l", row["index"], row["to_bus"])
            net.branches.append(Branch(str(row.get("name") or f"line{row['index']}"), "line",
                                       a, b))
    for row in _table(doc, "trafo"):
        if sub and row["index"] in sub.trafos:
            continue
        if _in_service(row) and row["hv_bus"] in buses and row["lv_bus"] in buses:
            a = connect("t", row["index"], row["hv_bus"])
            b = connect("t", row["index"], row["lv_bus"])
            net.branches.append(Branch(_trafo_name(row),
                                       "transformer", a, b,
                                       service=row.number("vn_lv_kv", 99) < 1.0))
    _three_winding(net, doc, buses)
    for row in _table(doc, "load"):
        if _in_service(row) and row["bus"] in buses:
            b = buses[row["bus"]]
            net.customers_at[b] = net.customers_at.get(b, 0) + 1
            net.loads_at[b] = net.loads_at.get(b, 0) + 1
    return net


def _buses(net: RawNetwork, doc: dict[str, Any]) -> dict[int, str]:
    """In-service buses, by pandapower index."""
    buses: dict[int, str] = {}
    for row in _table(doc, "bus"):
        if not _in_service(row):
            continue
        label = f"bus{row['index']}"
        buses[row["index"]] = net.bus(label)
        net.buses[label]["bus_name"] = str(row.get("name") or "")
        net.buses[label]["vn_kv"] = str(row.get("vn_kv") or "")
    return buses


def _switches(net: RawNetwork, doc: dict[str, Any], buses: dict[int, str],
              skipped: frozenset[int] = frozenset()
              ) -> dict[tuple[str, int, int], list[tuple[str, str, bool]]]:
    """Bus-bus switches become branches; switches on line / trafo ends are returned by
    element end: ``(et, element, bus) -> [(kind, name, open)]``. ``skipped``: switches left
    out with the substation."""
    ends: dict[tuple[str, int, int], list[tuple[str, str, bool]]] = {}
    for row in _table(doc, "switch"):
        if row["index"] in skipped:
            continue
        kind = SWITCH_KINDS.get(str(row.get("type") or ""), "switch")
        sname = str(row.get("name") or f"switch{row['index']}")
        is_open = not _flag(row, "closed")
        if row["bus"] not in buses:
            continue
        if not isinstance(row["et"], str):
            raise MalformedNetworkError(f"{row.where()}: 'et' must be b, l, t or t3, got "
                                        f"{row['et']!r:.80}")
        if row["et"] == "b":
            if row["element"] in buses:
                net.branches.append(Branch(sname, kind, buses[row["bus"]],
                                           buses[row["element"]], normally_open=is_open))
        else:
            ends.setdefault((row["et"], int(row["element"]), int(row["bus"])), []).append(
                (kind, sname, is_open))
    return ends


def _three_winding(net: RawNetwork, doc: dict[str, Any], buses: dict[int, str]) -> None:
    """A three-winding transformer as two two-winding ones from its HV side."""
    for row in _table(doc, "trafo3w"):
        if not _in_service(row):
            continue
        tname = str(row.get("name") or f"trafo3w{row['index']}")
        for side in ("mv", "lv"):
            if row["hv_bus"] in buses and row[f"{side}_bus"] in buses:
                service = row.number(f"vn_{side}_kv", 99) < 1.0
                net.branches.append(Branch(f"{tname}-{side}", "transformer",
                                           buses[row["hv_bus"]], buses[row[f"{side}_bus"]],
                                           service=service))


@dataclass(frozen=True)
class Substation:
    """What :func:`_substation` leaves out: the substation transformers (by index), the
    switches of the high-voltage side and of the closed couplers (by index), and the sources:
    ``[(name, [bus indices])]``, the first a transformer's busbar, the others the buses that
    closed couplers join it to other busbars through."""

    trafos: frozenset[int]
    skipped: frozenset[int]
    sources: list[tuple[str, list[int]]]


def _closed_bus_switches(doc: dict[str, Any], buses: dict[int, str]
                         ) -> list[tuple[int, int, int]]:
    """``(switch index, bus, bus)`` of the closed bus-bus switches between in-service buses."""
    return [(row["index"], row["bus"], row["element"]) for row in _table(doc, "switch")
            if row["et"] == "b" and _flag(row, "closed")
            and row["bus"] in buses and row["element"] in buses]


def _substation(doc: dict[str, Any], buses: dict[int, str], grids: list[Row]
                ) -> Substation | None:
    """The substation to leave out (see the module docstring), or None to keep the
    ``ext_grid`` as the source."""
    couplers = _closed_bus_switches(doc, buses)
    hv = {row["bus"] for row in grids}
    grew = True
    while grew:  # the high-voltage side: what closed bus-bus switches join to an ext_grid
        grew = False
        for _, a, b in couplers:
            if (a in hv) != (b in hv):
                hv |= {a, b}
                grew = True
    trafos = [row for row in _table(doc, "trafo") if _in_service(row) and row["hv_bus"] in hv
              and row.number("vn_lv_kv", 0) >= 1.0 and row["lv_bus"] in buses]
    if not trafos or not _only_through(doc, hv, {row["index"] for row in trafos}):
        return None
    busbars = {row["lv_bus"] for row in trafos}
    skipped = {k for k, a, b in couplers if a in hv and b in hv}
    joined = nx.MultiGraph()
    joined.add_nodes_from(busbars)
    joined.add_edges_from((a, b, k) for k, a, b in couplers if a not in hv and b not in hv)
    names: dict[int, str] = {}  # a busbar is named after its first transformer
    for row in sorted(trafos, key=lambda r: r["index"]):
        names.setdefault(row["lv_bus"], _trafo_name(row))
    sources: list[tuple[str, list[int]]] = []
    for part in sorted((c for c in nx.connected_components(joined) if c & busbars), key=min):
        core = joined.subgraph(_between(joined.subgraph(part), busbars))
        skipped |= {k for _, _, k in core.edges(keys=True)}
        first = min(busbars & set(core))
        sources.append((names[first], [first, *sorted(set(core) - {first})]))
    skipped |= {row["index"] for row in _table(doc, "switch")
                if row["et"] == "t" and int(row["element"]) in {t["index"] for t in trafos}}
    return Substation(frozenset(t["index"] for t in trafos), frozenset(skipped), sources)


def _between(part: nx.MultiGraph, busbars: set[int]) -> set[int]:
    """The buses of ``part`` (busbars joined by closed bus-bus switches) that lie between
    substation busbars: what is left after pruning, again and again, the buses with one
    switch or none that are not busbars themselves (a feeder's bay beyond its breaker)."""
    keep = set(part)
    leaves = [b for b in keep if b not in busbars and part.degree(b) <= 1]
    while leaves:
        keep -= set(leaves)
        sub = part.subgraph(keep)
        leaves = [b for b in keep if b not in busbars and sub.degree(b) <= 1]
    return keep


def _only_through(doc: dict[str, Any], hv: set[int], trafos: set[int]) -> bool:
    """Whether the high-voltage side ``hv`` reaches the rest only through ``trafos``: no line,
    load, other transformer or three-winding transformer touches it."""
    for row in _table(doc, "line"):
        if _in_service(row) and (row["from_bus"] in hv or row["to_bus"] in hv):
            return False
    for row in _table(doc, "trafo"):
        if _in_service(row) and row["index"] not in trafos and (
                row["hv_bus"] in hv or row["lv_bus"] in hv):
            return False
    for table, keys in (("trafo3w", ("hv_bus", "mv_bus", "lv_bus")), ("load", ("bus",))):
        for row in _table(doc, table):
            if _in_service(row) and any(row[k] in hv for k in keys):
                return False
    return True


def _collapse(net: RawNetwork, doc: dict[str, Any], buses: dict[int, str],
              sub: Substation) -> None:
    """The substation's busbars as the sources: one source per group of coupled busbars, the
    group's other busbars joined to its first by a plain connection."""
    for name, group in sub.sources:
        net.sources.append((name, buses[group[0]]))
        for other in group[1:]:
            net.branches.append(Branch(f"{name}-busbar{other}", "line", buses[group[0]],
                                       buses[other]))
    names = sorted(_trafo_name(row)
                   for row in _table(doc, "trafo") if row["index"] in sub.trafos)
    net.warnings.append(f"substation transformer(s) {', '.join(names)} and the high-voltage "
                        f"side left out: the source is their busbar ({len(sub.sources)} "
                        f"source(s))")
