"""Synthetic radial feeders and a province-size bundle for the localisation benchmark.

A feeder is a random recursive tree grown from ``source -> breaker -> junction``: each new
element hangs off a random existing junction (biased towards recent ones, so laterals get
long), and is a transformer area (35 %), a fuse opening a lateral (5 %), a recloser or
sectionaliser on the line (0.6 %), or a plain junction (the rest). Customers per area are
log-uniform in 1..150, as in mixed urban/rural Chinese distribution.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_HEADER = ["id", "kind", "name", "feeder", "normally_open", "village", "customers", "lat",
               "lon"]


def gen_feeder(rng: random.Random, n_nodes: int, feeder: str, villages_per: int = 12
               ) -> tuple[list[dict[str, Any]], list[tuple[str, str]], list[str]]:
    """One radial feeder of about ``n_nodes`` nodes: (node records, edges, village ids)."""
    p = feeder
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[str, str]] = []

    def add(nid: str, kind: str, customers: int = 0, village: str = "") -> None:
        nodes.append({"id": nid, "kind": kind, "name": nid, "feeder": feeder,
                      "normally_open": 0, "village": village, "customers": customers,
                      "lat": "", "lon": ""})

    add(f"{p}-S", "source")
    add(f"{p}-B", "breaker")
    add(f"{p}-J0", "junction")
    edges += [(f"{p}-S", f"{p}-B"), (f"{p}-B", f"{p}-J0")]
    junctions = [f"{p}-J0"]
    village_ids: list[str] = []
    n_tx = 0
    k = 0
    while len(nodes) < n_nodes:
        k += 1
        parent = junctions[int(len(junctions) * rng.random() ** 0.6)]
        r = rng.random()
        if r < 0.35:
            n_tx += 1
            if (n_tx - 1) % villages_per == 0:
                village_ids.append(f"{p}-V{len(village_ids) + 1}")
            cust = int(math.exp(rng.uniform(0.0, math.log(150.0))))
            nid = f"{p}-T{k}"
            add(nid, "transformer", max(1, cust), village_ids[-1])
            edges.append((parent, nid))
            continue
        if r < 0.40:
            dev = f"{p}-F{k}"
            add(dev, "fuse")
        elif r < 0.406:
            dev = f"{p}-R{k}"
            add(dev, "recloser" if rng.random() < 0.6 else "sectionalizer")
        else:
            dev = ""
        j = f"{p}-J{k}"
        add(j, "junction")
        if dev:
            edges += [(parent, dev), (dev, j)]
        else:
            edges.append((parent, j))
        junctions.append(j)
    return nodes, edges, village_ids


def feeder_records(seed: int, n_nodes: int, feeder: str = "FD") -> dict[str, Any]:
    """Records for ``Topology.from_records`` of one synthetic feeder."""
    rng = random.Random(seed)
    nodes, edges, vids = gen_feeder(rng, n_nodes, feeder)
    villages = [{"id": v, "name": v, "township": feeder, "grid": feeder, "area_type": "rural"}
                for v in vids]
    return {"nodes": nodes, "edges": edges, "villages": villages}


class _SmallFeeders:
    """Records of many small feeders, each a source and a breaker with one village."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[tuple[str, str]] = []
        self.villages: list[dict[str, Any]] = []

    def head(self, p: str, area_type: str) -> Callable[..., None]:
        """Start feeder ``p`` (its village, source and breaker ``{p}-B``); returns the function
        that adds its nodes (transformers with customers go in its village)."""
        village = f"{p}-V"
        self.villages.append({"id": village, "name": village, "township": p, "grid": p,
                              "area_type": area_type})

        def add(nid: str, kind: str, customers: int = 0) -> None:
            self.nodes.append({"id": nid, "kind": kind, "name": nid, "feeder": p,
                               "normally_open": 0, "village": village if customers else "",
                               "customers": customers, "lat": "", "lon": ""})

        add(f"{p}-S", "source")
        add(f"{p}-B", "breaker")
        self.edges.append((f"{p}-S", f"{p}-B"))
        return add

    def records(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": self.edges, "villages": self.villages}


def urban_records(seed: int, feeders: int = 30) -> dict[str, Any]:
    """Small urban medium/low-voltage feeders with a breaker in front of every transformer:
    8-20 transformer areas a feeder, 40-120 customers each, on a short main line (a ring
    main unit's cabinets) — where a silent area and a false report elsewhere look alike."""
    rng = random.Random(seed)
    out = _SmallFeeders()
    for f in range(feeders):
        p = f"U{f:02d}"
        add = out.head(p, "urban")
        prev = f"{p}-B"
        for k in range(rng.randint(8, 20)):
            j = f"{p}-J{k}"
            add(j, "junction")
            out.edges.append((prev, j))
            prev = j
            add(f"{p}-TB{k}", "breaker")
            add(f"{p}-T{k}", "transformer", rng.randint(40, 120))
            out.edges += [(j, f"{p}-TB{k}"), (f"{p}-TB{k}", f"{p}-T{k}")]
    return out.records()


def rural_records(seed: int, feeders: int = 30) -> dict[str, Any]:
    """Small rural feeders with fuses on their branches: a breaker, a short main line, and 2-4
    branch fuses of 2-4 transformer areas each (10-60 customers an area): a feeder of 4-16
    areas, where the per-feeder false-report rate is at its cap and a lone area off beside a
    neighbour on is its transformer's own fault or a false report."""
    rng = random.Random(seed)
    out = _SmallFeeders()
    for f in range(feeders):
        p = f"R{f:02d}"
        add = out.head(p, "rural")
        prev = f"{p}-B"
        for b in range(rng.randint(2, 4)):
            j = f"{p}-J{b}"
            add(j, "junction")
            add(f"{p}-F{b}", "fuse")
            out.edges += [(prev, j), (j, f"{p}-F{b}")]
            prev = j
            for k in range(rng.randint(2, 4)):
                add(f"{p}-T{b}{k}", "transformer", rng.randint(10, 60))
                out.edges.append((f"{p}-F{b}", f"{p}-T{b}{k}"))
    return out.records()


def write_province(outdir: Path, seed: int = 7, feeders: int = 1000,
                   nodes_per_feeder: int = 1000) -> Path:
    """Write a province-size bundle (feeders x nodes_per_feeder nodes) to ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with (outdir / "nodes.csv").open("w", newline="", encoding="utf-8") as fn, \
            (outdir / "edges.csv").open("w", newline="", encoding="utf-8") as fe, \
            (outdir / "villages.csv").open("w", newline="", encoding="utf-8") as fv, \
            (outdir / "liaisons.csv").open("w", newline="", encoding="utf-8") as fl:
        wn, we, wv, wl = csv.writer(fn), csv.writer(fe), csv.writer(fv), csv.writer(fl)
        wn.writerow(NODE_HEADER)
        we.writerow(["from", "to"])
        wv.writerow(["id", "name", "township", "grid", "area_type"])
        wl.writerow(["village", "name", "role", "phone", "channel", "target"])
        for f in range(feeders):
            fid = f"P{f // 10:03d}F{f % 10}"
            nodes, edges, vids = gen_feeder(rng, nodes_per_feeder, fid)
            for n in nodes:
                wn.writerow([n[h] for h in NODE_HEADER])
            we.writerows(edges)
            for v in vids:
                wv.writerow([v, v, f"P{f // 10:03d}", fid, "rural"])
                wl.writerow([v, f"liaison {v}", "village_liaison", "13800000000", "sms",
                             "13800000000"])
    with (outdir / "crews.csv").open("w", newline="", encoding="utf-8") as fc:
        wc = csv.writer(fc)
        wc.writerow(["id", "name", "phone", "channel", "target", "feeders"])
        for s in range(math.ceil(feeders / 10)):
            fids = ";".join(f"P{s:03d}F{k}" for k in range(10) if s * 10 + k < feeders)
            wc.writerow([f"CR{s:03d}", f"crew {s}", "13900000000", "sms", "13900000000", fids])
    return outdir
