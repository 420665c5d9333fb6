"""The map's payload: the county drawn from the bundle's coordinates, or a schematic feeder
tree when the bundle has none. Pure and compact (arrays, rounded numbers); the page draws it
as SVG itself, so no tile server is needed.

Two levels of detail. A bundle of up to :data:`DETAIL_LIMIT` nodes is sent whole: every line,
transformer area and protective device. A larger one (a province) is sent as the county view
— transformer areas aggregated per village (a point at their centroid, with counts), each
feeder drawn as its substation joined to its villages — and the page asks for the full detail of
the feeders it needs (those with outages, the one clicked) with ``feeders=…``.

Lines join each node that has a position to its nearest upstream node that has one, so a
bundle with coordinates only on switches and transformer areas still draws its feeders. The
schematic layout puts each node at (depth, row): leaves one row each in Euler-tour order, an
inner node on the row of the first leaf below it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from outage_sentinel.topology import PROTECTIVE_KINDS, Topology

#: Bundles with more nodes than this get the county view first, detail per feeder.
DETAIL_LIMIT = 50_000
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    mode: str  # geo | schematic
    x: FloatArray
    y: FloatArray
    placed: npt.NDArray[np.bool_]
    #: For each node, the nearest node upstream that is placed (-1: none).
    anchor: IntArray


def layout(topology: Topology) -> Layout:
    cols = topology.columns
    lat = np.array([v if v is not None else np.nan for v in cols.lat], dtype=np.float64)
    lon = np.array([v if v is not None else np.nan for v in cols.lon], dtype=np.float64)
    placed = ~(np.isnan(lat) | np.isnan(lon))
    parent = np.array(topology.parent, dtype=np.int64)
    if placed.any():
        return Layout("geo", lon, lat, placed, _anchors(parent, placed))
    x, y, placed = schematic(topology)
    return Layout("schematic", x, y, placed, _anchors(parent, placed))


def _anchors(parent: IntArray, placed: npt.NDArray[np.bool_]) -> IntArray:
    up = parent.copy()
    while True:
        climb = (up >= 0) & ~placed[np.maximum(up, 0)]
        if not climb.any():
            return up
        up[climb] = parent[up[climb]]


def schematic(topology: Topology) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """x = depth, y = row: leaves in Euler-tour order one row each (a gap between feeders),
    an inner node on the row of the first leaf of its subtree."""
    n = len(topology.parent)
    order = np.array(topology.order, dtype=np.int64)
    parent = np.array(topology.parent, dtype=np.int64)
    has_child = np.zeros(n, dtype=bool)
    has_child[parent[parent >= 0]] = True
    is_leaf = ~has_child[order]
    root = np.array(topology.root, dtype=np.int64)[order]
    new_feeder = np.r_[True, root[1:] != root[:-1]]
    rows = np.cumsum(is_leaf) - is_leaf + np.cumsum(new_feeder) - 1
    # The first leaf at or after each Euler time lies in that node's subtree.
    leaf_rows = np.where(is_leaf, rows, np.inf)
    first_leaf = np.minimum.accumulate(leaf_rows[::-1])[::-1]
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    x[order] = np.array(topology.depth, dtype=np.float64)[order]
    y[order] = first_leaf
    placed = np.zeros(n, dtype=bool)
    placed[order] = True
    return x, y, placed


def _r(v: float) -> float:
    return round(float(v), 6)


def map_payload(topology: Topology, tile_url: str | None = None,
                feeders: Iterable[str] | None = None, lay: Layout | None = None,
                detail_limit: int = DETAIL_LIMIT) -> dict[str, Any]:
    """The whole map (small bundles), the county view (large ones), or the detail of
    ``feeders``."""
    lay = lay or layout(topology)
    wanted = set(feeders) if feeders is not None else None
    county = wanted is None and len(topology.parent) > detail_limit
    placed = np.flatnonzero(lay.placed)
    xs, ys = lay.x[placed], lay.y[placed]
    out: dict[str, Any] = {
        "mode": lay.mode, "level": "county" if county else "detail",
        "bounds": [_r(xs.min()), _r(ys.min()), _r(xs.max()), _r(ys.max())] if len(placed)
        else [0.0, 0.0, 1.0, 1.0],
        "tile_url": tile_url,
    }
    out.update(_county(topology, lay) if county else _detail(topology, lay, wanted))
    return out


def _feeder_of(topology: Topology) -> list[str]:
    """Feeder id of each node position (its source's feeder)."""
    cols, root = topology.columns, topology.root
    return [cols.feeders[r] or cols.ids[r] if r >= 0 else cols.feeders[i]
            for i, r in enumerate(root)]


def _detail(topology: Topology, lay: Layout, wanted: set[str] | None) -> dict[str, Any]:
    cols = topology.columns
    feeder_of = _feeder_of(topology)
    keep = [i for i in np.flatnonzero(lay.placed).tolist()
            if wanted is None or feeder_of[i] in wanted]
    x, y, anchor = lay.x, lay.y, lay.anchor
    lines: dict[str, list[list[float]]] = {}
    for i in keep:
        a = int(anchor[i])
        if a >= 0:
            lines.setdefault(feeder_of[i], []).append([_r(x[a]), _r(y[a]), _r(x[i]), _r(y[i])])
    kinds = cols.kinds
    areas = [[cols.ids[i], _r(x[i]), _r(y[i]), cols.villages[i], cols.customers[i]]
             for i in keep if kinds[i] == "transformer"]
    devices = [[cols.ids[i], _r(x[i]), _r(y[i])] for i in keep if kinds[i] in PROTECTIVE_KINDS]
    sources = [[cols.ids[i], _r(x[i]), _r(y[i])] for i in keep if kinds[i] == "source"]
    return {"feeders": [{"id": f, "name": topology.feeder_names.get(f, f), "lines": ls}
                        for f, ls in sorted(lines.items())],
            "areas": areas, "devices": devices, "sources": sources,
            "villages": _villages(topology, lay, wanted, feeder_of)}


def _villages(topology: Topology, lay: Layout, wanted: set[str] | None,
              feeder_of: list[str]) -> list[list[Any]]:
    """[id, name, x, y, transformer areas, customers, feeder] at the centroid of each village's
    placed transformer areas."""
    cols = topology.columns
    out = []
    for vid, village in topology.villages.items():
        idx = [cols.pos[t] for t in topology.village_transformers(vid)]
        idx = [i for i in idx if lay.placed[i] and (wanted is None or feeder_of[i] in wanted)]
        if idx:
            out.append([vid, village.name, _r(lay.x[idx].mean()), _r(lay.y[idx].mean()),
                        len(idx), int(sum(cols.customers[i] for i in idx)), feeder_of[idx[0]]])
    return out


def _county(topology: Topology, lay: Layout) -> dict[str, Any]:
    """Villages aggregated; each feeder drawn as its substation joined to its villages."""
    cols = topology.columns
    feeder_of = _feeder_of(topology)
    villages = _villages(topology, lay, None, feeder_of)
    heads = {feeder_of[i]: i for i in (cols.pos[s] for s in topology.sources) if lay.placed[i]}
    lines: dict[str, list[list[float]]] = {}
    for v in villages:
        head = heads.get(v[6])
        if head is not None:
            lines.setdefault(v[6], []).append([_r(lay.x[head]), _r(lay.y[head]), v[2], v[3]])
    return {"feeders": [{"id": f, "name": topology.feeder_names.get(f, f), "lines": ls}
                        for f, ls in sorted(lines.items())],
            "areas": [], "devices": [],
            "sources": [[cols.ids[i], _r(lay.x[i]), _r(lay.y[i])] for i in heads.values()],
            "villages": villages}
