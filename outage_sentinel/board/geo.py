"""The map's payload: the county drawn from the bundle's coordinates, or a schematic feeder
tree when the bundle has none. Pure and compact (arrays, rounded numbers); the page draws it
as SVG itself, so no tile server is needed.

Lines join each node that has a position to its nearest upstream node that has one, so a
bundle with coordinates only on switches and transformer areas still draws its feeders.
"""

from __future__ import annotations

from typing import Any

from outage_sentinel.topology import PROTECTIVE_KINDS, Topology


def positions(topology: Topology) -> tuple[str, dict[str, tuple[float, float]]]:
    """``("geo", {node: (x=lon, y=lat)})`` when any node has coordinates, else a schematic
    layout ``("schematic", {node: (x=depth, y=leaf row)})``."""
    geo = {nid: (float(n.lon), float(n.lat)) for nid, n in topology.nodes.items()
           if n.lat is not None and n.lon is not None}
    if geo:
        return "geo", geo
    return "schematic", schematic(topology)


def schematic(topology: Topology) -> dict[str, tuple[float, float]]:
    """A feeder-tree layout: depth across, leaves down, feeders stacked (iterative DFS)."""
    out: dict[str, tuple[float, float]] = {}
    row = 0.0
    for source in topology.sources:
        stack: list[tuple[str, int, bool]] = [(source, 0, False)]
        while stack:
            node, depth, done = stack.pop()
            kids = topology.children(node)
            if done:
                ys = [out[k][1] for k in kids if k in out]
                out[node] = (float(depth), sum(ys) / len(ys) if ys else row)
                continue
            if not kids:
                out[node] = (float(depth), row)
                row += 1.0
                continue
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in reversed(kids))
        row += 1.0  # a gap between feeders
    return out


def map_payload(topology: Topology, tile_url: str | None = None) -> dict[str, Any]:
    mode, pos = positions(topology)
    lines: dict[str, list[list[float]]] = {}
    for nid in pos:
        up = topology.parent_of(nid)
        while up is not None and up not in pos:
            up = topology.parent_of(up)
        if up is not None:
            (x1, y1), (x2, y2) = pos[up], pos[nid]
            lines.setdefault(topology.feeder_of(nid), []).append(
                [round(x1, 6), round(y1, 6), round(x2, 6), round(y2, 6)])
    areas = [[t, round(pos[t][0], 6), round(pos[t][1], 6), topology.nodes[t].village,
              topology.nodes[t].customers] for t in topology.transformers if t in pos]
    devices = [[nid, round(pos[nid][0], 6), round(pos[nid][1], 6)]
               for nid, n in topology.nodes.items() if n.kind in PROTECTIVE_KINDS and nid in pos]
    villages = []
    for vid, village in topology.villages.items():
        pts = [pos[t] for t in topology.village_transformers(vid) if t in pos]
        if pts:
            villages.append([vid, village.name, round(sum(p[0] for p in pts) / len(pts), 6),
                             round(sum(p[1] for p in pts) / len(pts), 6)])
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    return {"mode": mode, "bounds": [min(xs), min(ys), max(xs), max(ys)],
            "feeders": [{"id": f, "name": topology.feeder_names.get(f, f), "lines": ls}
                        for f, ls in sorted(lines.items())],
            "areas": areas, "devices": devices, "villages": villages,
            "sources": [[s, *pos[s]] for s in topology.sources if s in pos],
            "tile_url": tile_url}
