"""A two-feeder test network shared by the localisation tests.

::

    S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ F1 ─ J3 ─ T1, T2
               │         ├─ F2 ─ T3
               │         └─ T4
               ├─ F3 ─ J4 ─ T5, T6
               │         └─ TIE (normally open) ─ J5
               ├─ T7
               └─ SW1 ─ T8
    S2 ─ B2 ─ J5 ─ F4 ─ T9, T10
               └─ T11
"""

from __future__ import annotations

import csv
from pathlib import Path

from outage_sentinel.topology import Topology, topology_from_records

EDGES = [
    ("S1", "B1"), ("B1", "J1"), ("J1", "R1"), ("R1", "J2"), ("J2", "F1"), ("F1", "J3"),
    ("J3", "T1"), ("J3", "T2"), ("J2", "F2"), ("F2", "T3"), ("J2", "T4"), ("J1", "F3"),
    ("F3", "J4"), ("J4", "T5"), ("J4", "T6"), ("J4", "TIE"), ("TIE", "J5"), ("J1", "T7"),
    ("J1", "SW1"), ("SW1", "T8"),
    ("S2", "B2"), ("B2", "J5"), ("J5", "F4"), ("F4", "T9"), ("F4", "T10"), ("J5", "T11"),
]
KINDS = {
    "S1": "source", "S2": "source", "B1": "breaker", "B2": "breaker", "R1": "recloser",
    "F1": "fuse", "F2": "fuse", "F3": "fuse", "F4": "fuse", "SW1": "switch", "TIE": "switch",
    "J1": "junction", "J2": "junction", "J3": "junction", "J4": "junction", "J5": "junction",
}
CUSTOMERS = {"T1": 40, "T2": 30, "T3": 50, "T4": 20, "T5": 60, "T6": 10, "T7": 25, "T8": 15,
             "T9": 35, "T10": 45, "T11": 30}
VILLAGE = {"T1": "V1", "T2": "V1", "T3": "V2", "T4": "V2", "T5": "V3", "T6": "V3", "T7": "V4",
           "T8": "V4", "T9": "V5", "T10": "V5", "T11": "V6"}


def build() -> Topology:
    """The network above, with villages and a few important customers."""
    nodes = []
    for nid in sorted({a for e in EDGES for a in e}):
        kind = KINDS.get(nid, "transformer")
        feeder = "FD2" if nid in {"S2", "B2", "J5", "F4", "T9", "T10", "T11"} else "FD1"
        nodes.append({
            "id": nid, "kind": kind, "name": f"name-{nid}", "feeder": feeder,
            "normally_open": 1 if nid == "TIE" else 0, "village": VILLAGE.get(nid, ""),
            "customers": CUSTOMERS.get(nid, 0), "lat": "", "lon": "",
        })
    villages = [{"id": v, "name": f"village {v}", "township": "t", "grid": "g",
                 "area_type": "rural"} for v in sorted(set(VILLAGE.values()))]
    customers = [
        {"id": "C-HOSP", "transformer": "T1", "name": "hospital", "phone": "1", "importance":
         "special", "tags": ""},
        {"id": "C-LIFE", "transformer": "T3", "name": "home", "phone": "2", "importance": "",
         "tags": "life_support"},
        {"id": "C-PLAIN", "transformer": "T2", "name": "shop", "phone": "3", "importance": "",
         "tags": ""},
    ]
    return topology_from_records(nodes, EDGES, villages, customers=customers)


def write(directory: Path) -> Path:
    """Write the network above as a bundle directory (for the locate command)."""
    directory.mkdir(parents=True, exist_ok=True)
    topo = build()

    def dump(name: str, header: list[str], rows: list[list[object]]) -> None:
        with (directory / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)

    dump("nodes.csv", ["id", "kind", "name", "feeder", "normally_open", "village", "customers",
                       "lat", "lon"],
         [[n.id, n.kind, n.name, n.feeder, int(n.normally_open), n.village, n.customers, "", ""]
          for n in topo.nodes.values()])
    dump("edges.csv", ["from", "to"], [list(e) for e in EDGES])
    dump("villages.csv", ["id", "name", "township", "grid", "area_type"],
         [[v.id, v.name, v.township, v.grid, v.area_type] for v in topo.villages.values()])
    dump("liaisons.csv", ["village", "name", "role", "phone", "channel", "target"], [])
    dump("crews.csv", ["id", "name", "phone", "channel", "target", "feeders"], [])
    dump("customers.csv", ["id", "transformer", "name", "phone", "importance", "tags"],
         [[c.id, c.transformer, c.name, c.phone, c.importance, ";".join(c.tags)]
          for c in topo.customers])
    dump("meters.csv", ["id", "transformer", "kind"], [["M-T3-1", "T3", "meter"]])
    return directory
