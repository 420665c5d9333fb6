"""Topology bundle: loading CSV directories, validating every rule at once, and the index.

The validator tests write small broken bundles to temporary directories, because what an
operator sees is ``file:row (id): message`` for a bundle on disk. The index is checked against
networkx computations on random trees (hypothesis), so the Euler-tour shortcuts cannot drift
from what the network actually is.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outage_sentinel.topology import (
    DEVICE_KINDS,
    PROTECTIVE_KINDS,
    REQUIRED_COLUMNS,
    Problem,
    Topology,
    TopologyError,
    load_bundle,
    topology_from_records,
)
from tests.conftest import build_topology

# -- bundle helpers -----------------------------------------------------------------------------


def node(nid: str, kind: str, feeder: str = "F1", *, village: str = "", customers: Any = "",
         normally_open: Any = "0", name: str = "", **extra: str) -> dict[str, Any]:
    return {"id": nid, "kind": kind, "name": name or f"name-{nid}", "feeder": feeder,
            "normally_open": normally_open, "village": village, "customers": customers,
            "lat": "", "lon": "", **extra}


def village(vid: str, area_type: str = "rural", **extra: str) -> dict[str, Any]:
    return {"id": vid, "name": f"村{vid}", "township": "镇", "grid": "g", "area_type": area_type,
            **extra}


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              *, bom: bool = False) -> None:
    cols = list(columns or [])
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def write_bundle(directory: Path, tables: Mapping[str, Sequence[Mapping[str, Any]] | None]) -> Path:
    """Write ``tables`` (file name -> rows) as CSVs with the standard header; None = no file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        if rows is None:
            continue
        if name == "edges.csv":
            rows = [{"from": r[0], "to": r[1]} if isinstance(r, tuple) else r for r in rows]
        write_csv(directory / name, rows, REQUIRED_COLUMNS.get(name))
    return directory


def good_tables() -> dict[str, Any]:
    """A small valid two-feeder bundle with a normally-open tie between the feeders."""
    return {
        "nodes.csv": [
            node("S1", "source", "F1", feeder_name="一号线", substation="东变"),
            node("B1", "breaker"),
            node("FU1", "fuse"),
            node("T1", "transformer", village="V1", customers=12),
            node("T2", "transformer", village="V2", customers=8),
            node("TIE", "switch", "F1", normally_open="1"),
            node("S2", "source", "F2", substation="西变"),
            node("B2", "breaker", "F2"),
            node("T3", "transformer", "F2", village="V2", customers=5),
        ],
        "edges.csv": [("S1", "B1"), ("B1", "FU1"), ("FU1", "T1"), ("B1", "T2"), ("T2", "TIE"),
                      ("TIE", "B2"), ("S2", "B2"), ("B2", "T3")],
        "villages.csv": [village("V1", population="1200"), village("V2", "urban")],
        "liaisons.csv": [{"village": "V1", "name": "张三", "role": "village_liaison",
                          "phone": "13800000001", "channel": "wecom", "target": "g1",
                          "wechat": "zs01"}],
        "crews.csv": [{"id": "C1", "name": "一班", "phone": "13900000001", "channel": "sms",
                       "target": "", "feeders": "F1;F2"}],
        "customers.csv": [{"id": "U1", "transformer": "T1", "name": "卫生院", "phone": "",
                           "importance": "special", "tags": "life_support; elderly_alone",
                           "address": "东街1号"}],
    }


def problems_of(directory: Path) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        load_bundle(directory)
    return info.value.problems


def find(problems: Sequence[Problem], file: str, row: int | None, id_: str | None,
         text: str) -> Problem:
    hits = [p for p in problems
            if p.file == file and p.row == row and p.id == id_ and text in p.message]
    assert hits, f"no problem {file}:{row} ({id_}) ~ {text!r} in:\n" + "\n".join(map(str, problems))
    return hits[0]


# -- loading a good bundle ----------------------------------------------------------------------


def test_good_bundle_loads_with_tie_between_feeders(tmp_path: Path) -> None:
    topo = load_bundle(write_bundle(tmp_path / "b", good_tables()))
    assert set(topo.nodes) == {"S1", "B1", "FU1", "T1", "T2", "TIE", "S2", "B2", "T3"}
    assert topo.nodes["TIE"].normally_open is True
    assert topo.nodes["T1"].customers == 12
    # The tie is in the full graph but not energised: each side is fed from its own source.
    assert topo.graph.has_edge("T2", "TIE") and topo.graph.has_edge("TIE", "B2")
    assert not topo.energised[topo.pos["TIE"]]
    assert topo.feeder_of("T3") == "F2" and topo.feeder_of("T2") == "F1"
    assert set(topo.downstream_transformers("S1")) == {"T1", "T2"}
    assert topo.downstream_transformers("S2") == ["T3"]
    assert not topo.is_downstream("T3", "S1")
    assert not topo.is_downstream("TIE", "S1")
    assert topo.downstream_transformers("TIE") == []
    assert topo.downstream_customers("TIE") == 0
    assert topo.source == str(tmp_path / "b")


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    topo = load_bundle(write_bundle(tmp_path / "b", good_tables()))
    assert topo.nodes["S1"].extra == {"feeder_name": "一号线", "substation": "东变"}
    assert topo.villages["V1"].extra == {"population": "1200"}
    assert topo.liaisons[0].extra == {"wechat": "zs01"}
    assert topo.customers[0].extra == {"address": "东街1号"}
    assert topo.customers[0].tags == ("life_support", "elderly_alone")
    assert topo.crews[0].feeders == ("F1", "F2")
    # The extra feeder_name column is used to look feeders up by the name feeds use.
    assert topo.feeder_by_name["一号线"] == "F1"
    assert topo.stats()["substations"] == 2


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    d = write_bundle(tmp_path / "b", good_tables())
    write_csv(d / "nodes.csv", good_tables()["nodes.csv"], REQUIRED_COLUMNS["nodes.csv"], bom=True)
    topo = load_bundle(d)
    assert "S1" in topo.nodes


def test_customers_file_is_optional(tmp_path: Path) -> None:
    tables = good_tables()
    tables["customers.csv"] = None
    topo = load_bundle(write_bundle(tmp_path / "b", tables))
    assert topo.customers == []


def test_resolve_maps_ids_names_and_customer_ids(tmp_path: Path) -> None:
    topo = load_bundle(write_bundle(tmp_path / "b", good_tables()))
    assert topo.resolve("T1") == "T1"
    assert topo.resolve("name-T2") == "T2"
    assert topo.resolve("U1") == "T1"  # a customer id -> its transformer area
    assert topo.resolve("nothing") is None


# -- the validator: every problem, with file and row --------------------------------------------


def test_every_problem_is_reported_at_once_with_file_and_row(tmp_path: Path) -> None:
    tables: dict[str, Any] = {
        "nodes.csv": [
            node("S1", "source"),                                           # row 2
            node("B1", "breaker"),                                          # row 3
            node("T1", "transformer", village="V1", customers=10),          # row 4
            node("B1", "breaker"),                                          # row 5 duplicate
            node("X1", "transformr"),                                       # row 6 bad kind
            node("SW1", "switch", normally_open="yes"),                     # row 7 bad NO
            node("T2", "transformer", village="", customers=0),             # row 8 no village/cust
            node("T3", "transformer", village="V9", customers=3),           # row 9 unknown village
            node("J9", "junction"),                                         # row 10 no source
            node("T9", "transformer", village="V1", customers=1),           # row 11
            node("S2", "source", "F2"),                                     # row 12
            node("S3", "source", "F2"),                                     # row 13 second source
            node("S4", "source", "F4"),                                     # row 14
            node("J4", "junction", "F4"),                                   # row 15 cycle ...
            node("J5", "junction", "F4"),                                   # row 16
            node("J6", "junction", "F4"),                                   # row 17
            node("T4", "transformer", "F4", village="V1", customers=2,
                 normally_open="1"),                                        # row 18 NO on tx
        ],
        "edges.csv": [
            ("S1", "B1"), ("B1", "T1"), ("B1", "X1"), ("B1", "SW1"), ("SW1", "T2"),  # rows 2-6
            ("B1", "T3"), ("J9", "T9"), ("S2", "S3"),                                # rows 7-9
            ("B1", "GHOST"),                                                         # row 10
            ("S4", "J4"), ("J4", "J5"), ("J5", "J6"), ("J6", "J4"),                  # rows 11-14
            ("T1", "T1"), ("B1", "S1"),                                              # rows 15-16
        ],
        "villages.csv": [village("V1"), village("V2", "suburb")],
        "liaisons.csv": [
            {"village": "V1", "name": "甲", "role": "village_liaison", "phone": "1",
             "channel": "wecom", "target": "g"},
            {"village": "V7", "name": "乙", "role": "village_liaison", "phone": "2",
             "channel": "wecom", "target": "g"},
            {"village": "V1", "name": "丙", "role": "mayor", "phone": "", "channel": "",
             "target": ""},
        ],
        "crews.csv": [
            {"id": "C1", "name": "一班", "phone": "", "channel": "sms", "target": "",
             "feeders": "F1;F9"},
            {"id": "C1", "name": "二班", "phone": "", "channel": "sms", "target": "",
             "feeders": "F1"},
        ],
        "customers.csv": [
            {"id": "U1", "transformer": "T1", "name": "", "phone": "", "importance": "",
             "tags": ""},
            {"id": "U2", "transformer": "T404", "name": "", "phone": "", "importance": "",
             "tags": ""},
            {"id": "U3", "transformer": "B1", "name": "", "phone": "", "importance": "vip",
             "tags": ""},
        ],
    }
    problems = problems_of(write_bundle(tmp_path / "broken", tables))

    find(problems, "nodes.csv", 5, "B1", "duplicate node id (first at row 3)")
    find(problems, "nodes.csv", 6, "X1", "kind must be one of")
    find(problems, "nodes.csv", 7, "SW1", "normally_open must be 0 or 1, got 'yes'")
    find(problems, "nodes.csv", 8, "T2", "transformer needs customers >= 1")
    find(problems, "nodes.csv", 8, "T2", "transformer needs a village")
    find(problems, "nodes.csv", 9, "T3", "village 'V9' is not in villages.csv")
    find(problems, "nodes.csv", 10, "J9", "has no source")
    find(problems, "nodes.csv", 13, "S3", "2 sources")
    find(problems, "nodes.csv", 18, "T4", "normally_open=1 is only for switching devices")
    find(problems, "edges.csv", 10, "B1-GHOST", "dangling edge: to node 'GHOST'")
    find(problems, "edges.csv", 15, "T1-T1", "connects a node to itself")
    find(problems, "edges.csv", 16, "B1-S1", "duplicate edge (first at row 2)")
    cycle = [p for p in problems if p.file == "edges.csv" and "cycle" in p.message]
    assert len(cycle) == 1 and all(n in cycle[0].message for n in ("J4", "J5", "J6"))
    find(problems, "villages.csv", 3, "V2", "area_type must be one of urban|rural|remote")
    find(problems, "liaisons.csv", 3, "乙", "unknown village 'V7'")
    find(problems, "liaisons.csv", 4, "丙", "role must be one of")
    find(problems, "liaisons.csv", 4, "丙", "channel is empty")
    find(problems, "liaisons.csv", 4, "丙", "needs a target or a phone")
    find(problems, "crews.csv", 2, "C1", "unknown feeder 'F9'")
    find(problems, "crews.csv", 3, "C1", "duplicate crew id")
    find(problems, "customers.csv", 3, "U2", "unknown transformer 'T404'")
    find(problems, "customers.csv", 4, "U3", "unknown transformer 'B1'")
    find(problems, "customers.csv", 4, "U3", "importance must be")

    # Nothing valid was reported: the good rows stay quiet.
    assert not [p for p in problems if p.id in ("S1", "T1", "T9", "U1")]
    assert not [p for p in problems if p.file == "liaisons.csv" and p.row == 2]


def test_error_message_lists_every_problem_with_location(tmp_path: Path) -> None:
    tables = good_tables()
    tables["nodes.csv"] = tables["nodes.csv"] + [node("B1", "breaker"), node("Q", "quux")]
    tables["edges.csv"] = tables["edges.csv"] + [("T1", "Q")]
    with pytest.raises(TopologyError) as info:
        load_bundle(write_bundle(tmp_path / "b", tables))
    text = str(info.value)
    assert "2 problem(s)" in text
    assert "nodes.csv:11 (B1): duplicate node id" in text
    assert "nodes.csv:12 (Q): kind must be one of" in text


def test_missing_file_and_missing_header_column_reported_together(tmp_path: Path) -> None:
    tables = good_tables()
    tables["edges.csv"] = None
    d = write_bundle(tmp_path / "b", tables)
    # villages.csv without the area_type and grid columns
    write_csv(d / "villages.csv", [{"id": "V1", "name": "a", "township": "t"}])
    problems = problems_of(d)
    find(problems, "edges.csv", None, None, "file missing")
    p = find(problems, "villages.csv", 1, None, "header lacks column(s)")
    assert "grid" in p.message and "area_type" in p.message
    assert len(problems) == 2


def test_not_a_directory(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "nope")
    assert problems[0].message == "not a directory"


def test_closed_tie_between_feeders_is_two_sources(tmp_path: Path) -> None:
    tables = good_tables()
    tables["nodes.csv"] = [dict(r, normally_open="0") if r["id"] == "TIE" else r
                           for r in tables["nodes.csv"]]
    problems = problems_of(write_bundle(tmp_path / "b", tables))
    assert len(problems) == 1
    assert "2 sources" in problems[0].message and "S1" in problems[0].message


def test_ring_within_a_feeder_is_valid_only_when_opened(tmp_path: Path) -> None:
    nodes = [node("S1", "source"), node("B1", "breaker"), node("J1", "junction"),
             node("J2", "junction"), node("SW", "switch", normally_open="1"),
             node("T1", "transformer", village="V1", customers=1)]
    edges = [("S1", "B1"), ("B1", "J1"), ("B1", "J2"), ("J1", "SW"), ("SW", "J2"), ("J2", "T1")]
    tables: dict[str, Any] = {"nodes.csv": nodes, "edges.csv": edges,
                              "villages.csv": [village("V1")], "liaisons.csv": [], "crews.csv": []}
    topo = load_bundle(write_bundle(tmp_path / "open", tables))
    assert topo.path_to_root("T1") == ["T1", "J2", "B1", "S1"]

    tables["nodes.csv"] = [dict(r, normally_open="0") if r["id"] == "SW" else r for r in nodes]
    problems = problems_of(write_bundle(tmp_path / "closed", tables))
    assert [p.file for p in problems] == ["edges.csv"]
    assert "cycle in the energised network" in problems[0].message


def test_isolated_section_behind_open_switch_has_no_source(tmp_path: Path) -> None:
    """A normally-open switch that cuts a section off from every source is an error."""
    nodes = [node("S1", "source"), node("SW", "switch", normally_open="1"),
             node("T1", "transformer", village="V1", customers=1)]
    tables: dict[str, Any] = {"nodes.csv": nodes, "edges.csv": [("S1", "SW"), ("SW", "T1")],
                              "villages.csv": [village("V1")], "liaisons.csv": [], "crews.csv": []}
    problems = problems_of(write_bundle(tmp_path / "b", tables))
    find(problems, "nodes.csv", 4, "T1", "has no source")


def test_from_records_validates_too() -> None:
    with pytest.raises(TopologyError) as info:
        topology_from_records(
            [{"id": "S1", "kind": "source", "feeder": "F1"},
             {"id": "T1", "kind": "transformer", "feeder": "F1", "customers": 0, "village": ""}],
            [("S1", "T1"), ("T1", "T2")])
    messages = [str(p) for p in info.value.problems]
    assert any("T1" in m and "customers >= 1" in m for m in messages)
    assert any("dangling edge" in m and "'T2'" in m for m in messages)


# -- index queries on a hand-made network ------------------------------------------------------


def test_index_queries_on_the_grid(grid: Topology) -> None:
    assert grid.downstream_transformers("FU1") == ["T1", "T2"]
    assert set(grid.downstream_transformers("R1")) == {"T1", "T2", "T3"}
    assert set(grid.downstream_transformers("B1")) == {"T1", "T2", "T3", "T4", "T5"}
    assert grid.downstream_customers("R1") == 40 + 30 + 50
    assert grid.downstream_customers("T4") == 20
    assert grid.common_protective_device(["T1", "T2"]) == "FU1"
    assert grid.common_protective_device(["T1", "T3"]) == "R1"
    assert grid.common_protective_device(["T1", "T4"]) == "B1"
    assert grid.common_protective_device(["T6"]) == "FU3"
    assert grid.common_protective_device(["T1", "T6"]) is None  # two feeders
    assert grid.common_protective_device([]) is None
    assert grid.lowest_common_ancestor(["T1", "T3"]) == "J2"
    assert grid.lowest_common_ancestor(["T1", "TIE"]) == "T1"  # de-energised ids are skipped
    assert grid.is_downstream("T1", "R1") and grid.is_downstream("R1", "R1")
    assert not grid.is_downstream("R1", "T1")
    assert grid.protective_path("T3") == ["R1", "B1", "S1"]
    assert grid.protective_upstream("FU1", include_self=False) == "R1"
    assert grid.protective_upstream("S1", include_self=False) is None
    # Patrol section: from R1 down to (and including) the next devices, not past them.
    assert set(grid.suspected_section("R1")) == {"R1", "J2", "FU1", "T3"}
    # The open tie is not part of the energised tree, so not of any patrol section.
    assert set(grid.suspected_section("B1")) == {"B1", "J1", "R1", "FU2"}
    assert grid.villages_of(["T1", "T2", "T3", "T1"]) == ["V1", "V2"]
    assert grid.customers_of(["T6", "T7"]) == 80
    assert grid.feeder_by_name["马集I线"] == "F1" and grid.feeder_by_name["10kV城关线"] == "F2"


# -- index queries against networkx on random trees --------------------------------------------

NON_SOURCE_KINDS = ["breaker", "recloser", "sectionalizer", "fuse", "switch", "junction",
                    "transformer", "transformer", "transformer"]


@st.composite
def random_networks(draw: st.DrawFn) -> dict[str, Any]:
    """One or two random trees, each rooted at a source; maybe a normally-open tie between."""
    kinds: dict[str, str] = {}
    feeders: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    customers: dict[str, int] = {}
    villages: dict[str, str] = {}
    trees: list[list[str]] = []
    for t in range(draw(st.integers(1, 2))):
        root = f"S{t}"
        kinds[root], feeders[root] = "source", f"F{t}"
        ids = [root]
        for i in range(1, draw(st.integers(1, 30))):
            nid = f"N{t}x{i}"
            parent = ids[draw(st.integers(0, len(ids) - 1))]
            kinds[nid], feeders[nid] = draw(st.sampled_from(NON_SOURCE_KINDS)), f"F{t}"
            if kinds[nid] == "transformer":
                customers[nid] = draw(st.integers(1, 500))
                villages[nid] = draw(st.sampled_from(["V1", "V2", "V3"]))
            edges.append((parent, nid) if draw(st.booleans()) else (nid, parent))
            ids.append(nid)
        trees.append(ids)
    tie = len(trees) == 2 and draw(st.booleans())
    if tie:
        kinds["TIE"], feeders["TIE"] = "switch", "F0"
        edges.append((draw(st.sampled_from(trees[0])), "TIE"))
        edges.append(("TIE", draw(st.sampled_from(trees[1]))))
    energised = [n for tree in trees for n in tree]
    subset = draw(st.lists(st.sampled_from(energised + (["TIE"] if tie else [])), max_size=6))
    return {"kinds": kinds, "feeders": feeders, "edges": edges, "customers": customers,
            "villages": villages, "normally_open": ["TIE"] if tie else [], "subset": subset}


def _reference(net: dict[str, Any]) -> tuple[nx.DiGraph, dict[str, str]]:
    """The energised network as a directed forest (source -> downstream), and each node's root."""
    no = set(net["normally_open"])
    g = nx.Graph()
    g.add_nodes_from(n for n in net["kinds"] if n not in no)
    g.add_edges_from((a, b) for a, b in net["edges"] if a not in no and b not in no)
    d = nx.DiGraph()
    root_of: dict[str, str] = {}
    for s in (n for n, k in net["kinds"].items() if k == "source"):
        d.add_node(s)
        d.add_edges_from(nx.bfs_edges(g, s))
        for n in nx.node_connected_component(g, s):
            root_of[n] = s
    return d, root_of


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks())
def test_index_matches_networkx_on_random_trees(net: dict[str, Any]) -> None:
    kinds = net["kinds"]
    topo = build_topology(net["edges"], kinds=kinds, feeders=net["feeders"],
                          customers=net["customers"], villages=net["villages"],
                          normally_open=net["normally_open"])
    d, root_of = _reference(net)
    nodes = list(d.nodes)

    def below(x: str) -> set[str]:
        return set(nx.descendants(d, x)) | {x}

    def up_path(x: str) -> list[str]:
        return list(reversed(nx.shortest_path(d, root_of[x], x)))

    for x in nodes:
        sub = below(x)
        txs = topo.downstream_transformers(x)
        assert len(txs) == len(set(txs))
        assert set(txs) == {n for n in sub if kinds[n] == "transformer"}
        assert topo.downstream_customers(x) == sum(net["customers"].get(n, 0) for n in sub)
        for y in nodes:
            assert topo.is_downstream(y, x) == (y in sub), (y, x)
        path = up_path(x)
        assert topo.path_to_root(x) == path
        assert topo.parent_of(x) == (path[1] if len(path) > 1 else None)
        assert topo.protective_upstream(x) == next(n for n in path if kinds[n] in PROTECTIVE_KINDS)
        assert topo.protective_path(x) == [n for n in path if kinds[n] in PROTECTIVE_KINDS]
        assert topo.feeder_of(x) == net["feeders"][root_of[x]]
        # Suspected section: x and every node below it reached without passing a device.
        expected_section = {
            n for n in sub
            if all(kinds[m] not in DEVICE_KINDS for m in nx.shortest_path(d, x, n)[1:-1])
        }
        section = topo.suspected_section(x)
        assert len(section) == len(set(section)) and set(section) == expected_section
        assert set(topo.children(x)) == set(d.successors(x))

    for nid in net["normally_open"]:
        assert topo.downstream_transformers(nid) == []
        assert topo.downstream_customers(nid) == 0
        assert not any(topo.is_downstream(nid, x) or topo.is_downstream(x, nid) for x in nodes)

    # Lowest common ancestor of a random set (de-energised ids skipped) and the protective
    # device above it.
    chosen = [n for n in net["subset"] if n in d]
    expected: str | None
    if not chosen:
        expected = None
    elif len({root_of[n] for n in chosen}) > 1:
        expected = None
    else:
        expected = chosen[0]
        for n in chosen[1:]:
            expected = nx.lowest_common_ancestor(d, expected, n)
    assert topo.lowest_common_ancestor(net["subset"]) == expected
    protective = (None if expected is None
                  else next(n for n in up_path(expected) if kinds[n] in PROTECTIVE_KINDS))
    assert topo.common_protective_device(net["subset"]) == protective
