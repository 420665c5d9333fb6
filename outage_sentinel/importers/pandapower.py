"""pandapower / SimBench importer, from pandapower's JSON file format (``pp.to_json``).

No pandapower installation is needed to read a JSON file. With pandapower installed (the
``pandapower`` extra), ``SRC`` may also name a built-in network, e.g.
``pandapower.networks.example_simple`` or ``pandapower.networks.create_cigre_network_mv``.

Read: ``bus``, ``ext_grid`` (sources), ``line``, ``trafo`` and ``trafo3w`` (a *service*
transformer when its low-voltage side is below 1 kV), ``switch`` (``et`` b/l/t; type ``CB`` is
a breaker, ``LBS``/``LS``/``DS`` and others are switches; ``closed = false`` is normally
open), ``load`` (one customer each). Out-of-service elements are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork

SWITCH_KINDS = {"CB": "breaker"}


def _load_json(src: str) -> tuple[str, dict[str, Any]]:
    if src.startswith("pandapower.networks."):
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
    path = Path(src)
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    try:
        return path.stem, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{path}: not JSON ({exc})") from exc


def _table(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Rows (with ``index``) of one DataFrame of a pandapower JSON network."""
    obj = doc.get("_object", doc)
    entry = obj.get(name)
    if entry is None:
        return []
    frame = entry.get("_object", entry) if isinstance(entry, dict) else entry
    if isinstance(frame, str):
        frame = json.loads(frame)
    columns = frame.get("columns", [])
    rows = []
    for idx, values in zip(frame.get("index", []), frame.get("data", []), strict=False):
        row = dict(zip(columns, values, strict=False))
        row["index"] = idx
        rows.append(row)
    return rows


def _in_service(row: dict[str, Any]) -> bool:
    return row.get("in_service", True) not in (False, "False", 0)


def parse(src: str | Path) -> RawNetwork:
    """Read a pandapower JSON network (or a named built-in one) into a :class:`RawNetwork`."""
    name, doc = _load_json(str(src))
    net = RawNetwork(name=name)
    buses = _buses(net, doc)
    for row in _table(doc, "ext_grid"):
        if _in_service(row) and row["bus"] in buses:
            net.sources.append((str(row.get("name") or f"ext_grid{row['index']}"),
                                buses[row["bus"]]))
    if not net.sources:
        raise ImportError_(f"{src}: no in-service ext_grid (the source)")
    ends = _switches(net, doc, buses)

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
        if _in_service(row) and row["hv_bus"] in buses and row["lv_bus"] in buses:
            a = connect("t", row["index"], row["hv_bus"])
            b = connect("t", row["index"], row["lv_bus"])
            net.branches.append(Branch(str(row.get("name") or f"trafo{row['index']}"),
                                       "transformer", a, b,
                                       service=float(row.get("vn_lv_kv") or 99) < 1.0))
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


def _switches(net: RawNetwork, doc: dict[str, Any], buses: dict[int, str]
              ) -> dict[tuple[str, int, int], list[tuple[str, str, bool]]]:
    """Bus-bus switches become branches; switches on line / trafo ends are returned by
    element end: ``(et, element, bus) -> [(kind, name, open)]``."""
    ends: dict[tuple[str, int, int], list[tuple[str, str, bool]]] = {}
    for row in _table(doc, "switch"):
        kind = SWITCH_KINDS.get(str(row.get("type") or ""), "switch")
        sname = str(row.get("name") or f"switch{row['index']}")
        is_open = row.get("closed", True) in (False, "False", 0)
        if row["bus"] not in buses:
            continue
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
                service = float(row.get(f"vn_{side}_kv") or 99) < 1.0
                net.branches.append(Branch(f"{tname}-{side}", "transformer",
                                           buses[row["hv_bus"]], buses[row[f"{side}_bus"]],
                                           service=service))
