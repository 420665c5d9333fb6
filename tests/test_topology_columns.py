"""The column-wise bundle reader and the lazy node/edge containers.

Plain files go through a fast whole-text split; anything else (quotes, blank lines, ragged rows,
stray carriage returns) through the csv module. Both must read exactly what ``csv.DictReader``
reads, values stripped, and give the same row numbers in problems.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outage_sentinel.topology import (
    EdgeList,
    NodeMap,
    Topology,
    TopologyError,
    load_bundle,
    read_table,
)
from tests.conftest import build_topology

HEADER = "id,kind,name,feeder,normally_open,village,customers,lat,lon"


def dictreader(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    reader.fieldnames = [h.strip() for h in (reader.fieldnames or [])]
    return [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]


@pytest.mark.parametrize("text", [
    f"{HEADER}\nS1,source,s,F1,0,,,,\nT1,transformer,t,F1,0,V1,5,1.5,2\n",
    f"{HEADER}\r\nS1,source,s,F1,0,,,,\r\nT1,transformer,t,F1,0,V1,5,1.5,2",
    f"{HEADER}\nS1, source ,s,F1,0,,,,\n T1,transformer,\u4e1c\u3000,F1,0,V1,5,,\n",
    f"{HEADER}\nS1,source,\"a, b\",F1,0,,,,\n\nT1,transformer,\" t \",F1,0,V1,5,,\n",
    f"{HEADER}\nS1,source\nT1,transformer,t,F1,0,V1,5,1,2,surplus,fields\n",
    f"{HEADER}\rS1,source,s,F1,0,,,,\rT1,transformer,t,F1,0,V1,5,,\r",
    "id,kind\n",
    "",
    # quoted files go through pandas' C parser; these must read exactly as DictReader does
    '"id","kind","name"\n"S1","source","a\nb"\n"T1"," transformer ",""\n',
    '"id","kind"\n"S1","source"\n   \n"T1","transformer"\n',
    '"id","kind","id"\n"S1","source","X"\n',
    '"id","kind"\n"S1"\n"T1","transformer","surplus"\n',
    '"id",""\n"S1","source"\n',
])
def test_reader_matches_csv_dictreader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "nodes.csv"
    path.write_bytes(text.encode("utf-8"))
    table = read_table(path)
    assert list(table.dicts()) == dictreader(text)
    assert table.n == len(dictreader(text))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(alphabet=['a', '1', ',', ',', '\n', '"', ' ', '\r', '\u4e1c', '\t', '\u3000',
                         '#', "'"], max_size=60))
def test_any_quoted_text_reads_as_dictreader_does(text: str) -> None:
    content = '"id","kind","name"\n' + text
    path = Path(tempfile.mkdtemp()) / "nodes.csv"
    path.write_bytes(content.encode("utf-8"))
    try:
        expected = dictreader(content)
    except csv.Error:
        return  # the csv module refuses it; read_table's callers report that as a problem
    table = read_table(path)
    assert list(table.dicts()) == expected
    assert table.n == len(expected)


def test_row_numbers_are_the_file_lines_past_blank_lines(tmp_path: Path) -> None:
    """A problem names the line of the file an editor shows (blank lines count)."""
    d = tmp_path / "b"
    d.mkdir()
    (d / "nodes.csv").write_text(f"{HEADER}\nS1,source,s,F1,0,,,,\n\nX1,transformr,x,F1,0,,,,\n",
                                 encoding="utf-8")
    (d / "edges.csv").write_text("from,to\nS1,X1\n", encoding="utf-8")
    for name, header in (("villages.csv", "id,name,township,grid,area_type"),
                         ("liaisons.csv", "village,name,role,phone,channel,target"),
                         ("crews.csv", "id,name,phone,channel,target,feeders")):
        (d / name).write_text(header + "\n", encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_bundle(d)
    [p] = info.value.problems
    assert (p.file, p.row, p.id) == ("nodes.csv", 4, "X1") and "kind must be one of" in p.message


def test_nodes_is_a_lazy_read_only_mapping() -> None:
    topo = build_topology([("S1", "B1"), ("B1", "T1")], node_extra={"S1": {"feeder_name": "x"}})
    assert isinstance(topo.nodes, NodeMap)
    assert list(topo.nodes) == list(topo.ids) and len(topo.nodes) == 3
    assert "T1" in topo.nodes and "nope" not in topo.nodes and topo.nodes.get("nope") is None
    assert topo.nodes["T1"].kind == "transformer" == topo.kinds[topo.pos["T1"]]
    assert topo.nodes["S1"].extra == {"feeder_name": "x"} and topo.nodes["B1"].extra == {}
    assert [n.id for n in topo.nodes.values()] == list(topo.ids)
    assert dict(topo.nodes.items())["B1"] == topo.nodes["B1"]
    assert topo.nodes["B1"] in topo.nodes.values()
    with pytest.raises(TypeError):
        topo.nodes["X"] = topo.nodes["B1"]  # type: ignore[index]


def test_edges_and_rebuilding_from_another_topology() -> None:
    topo = build_topology([("S1", "B1"), ("B1", "J1"), ("J1", "T1"), ("J1", "T2")])
    assert isinstance(topo.edges, EdgeList)
    assert list(topo.edges) == [("S1", "B1"), ("B1", "J1"), ("J1", "T1"), ("J1", "T2")]
    assert topo.edges == list(topo.edges) and topo.edges[1] == ("B1", "J1")
    assert topo.edges[-1] == ("J1", "T2") and topo.edges[1:3] == [("B1", "J1"), ("J1", "T1")]
    for nodes, edges in ((topo.nodes, topo.edges), (dict(topo.nodes), list(topo.edges))):
        again = Topology(nodes, edges, topo.villages, topo.liaisons, topo.crews, topo.customers)
        assert again.tin == topo.tin and again.tout == topo.tout and again.parent == topo.parent
        assert again.downstream_transformers("B1") == ["T1", "T2"]
    assert topo.children("J1") == ["T1", "T2"] and topo.sources == ["S1"]
    assert set(topo.graph.edges) == {tuple(e) for e in topo.edges}
