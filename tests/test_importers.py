"""Importers on the shared public feeders: counts checked against the source files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from outage_sentinel.importers import BundleInvalidError, ImportError_, import_topology
from outage_sentinel.locate import import_main
from outage_sentinel.topology import load_bundle

FEEDERS = Path(__file__).resolve().parents[1].parent / "shared/data/feeders"
needs_feeders = pytest.mark.skipif(not FEEDERS.is_dir(),
                                   reason=f"public feeders not found at {FEEDERS}")


def kinds_of(bundle: Path) -> dict[str, int]:
    topo = load_bundle(bundle)
    out: dict[str, int] = {}
    for n in topo.nodes.values():
        out[n.kind] = out.get(n.kind, 0) + 1
    return out


# -- GridLAB-D -------------------------------------------------------------------------------


def glm_counts(path: Path) -> dict[str, int]:
    """Count objects in the .glm text, comments removed, independently of the importer."""
    text = "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())

    def objects(kind: str) -> int:
        return len(re.findall(rf"^\s*object\s+{kind}(?::\d+)?\s*\{{", text, re.M))

    transformer_targets = set(re.findall(
        r"object\s+transformer(?::\d+)?\s*\{[^}]*?\bto\s+([^;\s]+)\s*;", text))
    meters = set(re.findall(r"object\s+meter(?::\d+)?\s*\{[^}]*?\bname\s+([^;\s]+)\s*;", text))
    return {
        "fuse": objects("fuse"),
        "recloser": objects("recloser"),
        "sectionalizer": objects("sectionalizer"),
        "switch": objects("switch"),
        "transformer": objects("transformer"),
        "customers": objects("triplex_meter") + len(meters & transformer_targets),
        "open": len(re.findall(r"\bstatus\s+OPEN\s*;", text)),
    }


@needs_feeders
@pytest.mark.parametrize("name", ["GC-12.47-1.glm", "R2-12.47-2.glm", "R4-12.47-1.glm"])
def test_glm_taxonomy_feeders(tmp_path: Path, name: str) -> None:
    src = FEEDERS / "taxonomy" / name
    expected = glm_counts(src)
    summary = import_topology("glm", str(src), str(tmp_path))
    kinds = kinds_of(tmp_path)
    for kind in ("fuse", "recloser", "sectionalizer", "switch", "transformer"):
        assert kinds.get(kind, 0) == expected[kind], kind
    assert kinds["breaker"] == 1  # the feeder head had none: one is added
    assert kinds["source"] == 1
    assert summary.customers == expected["customers"]
    assert load_bundle(tmp_path).total_customers == expected["customers"]
    assert summary.normally_open == expected["open"]


@needs_feeders
def test_glm_r4_has_the_documented_devices(tmp_path: Path) -> None:
    import_topology("glm", str(FEEDERS / "taxonomy" / "R4-12.47-1.glm"), str(tmp_path))
    kinds = kinds_of(tmp_path)
    assert kinds["fuse"] == 79 and kinds["recloser"] == 1  # as SOURCES.md says
    topo = load_bundle(tmp_path)
    # every area is downstream of the head breaker and of exactly one source
    brk = next(n.id for n in topo.nodes.values() if n.kind == "breaker")
    assert len(topo.downstream_transformers(brk)) == kinds["transformer"]
    # every area has a synthetic village with a liaison
    assert all(topo.liaisons_by_village.get(topo.nodes[t].village) for t in topo.transformers)


def test_glm_commented_out_objects_and_open_switches(tmp_path: Path) -> None:
    src = tmp_path / "mini.glm"
    src.write_text("""
module powerflow;
object node { name n0; bustype SWING; nominal_voltage 7200; }
object overhead_line { name l1; from n0; to n1; }
object node { name n1; }
object fuse { name f1; from n1; to n2; status CLOSED; }
object node { name n2; }
object transformer_configuration { name tc; connect_type SINGLE_PHASE_CENTER_TAPPED; }
object transformer { name x1; from n2; to tn1; configuration tc; }
object triplex_node { name tn1; }
object triplex_line { name tl1; from tn1; to tm1; }
object triplex_meter { name tm1; }
object triplex_meter { name tm2; parent tn1; }
object switch { name tie; from n2; to n1; status OPEN; }
// object fuse { name ghost; from n1; to n2; }
""")
    out = tmp_path / "bundle"
    summary = import_topology("glm", str(src), str(out))
    kinds = kinds_of(out)
    assert kinds["fuse"] == 1 and kinds["switch"] == 1 and kinds["transformer"] == 1
    assert summary.customers == 2 and summary.normally_open == 1
    topo = load_bundle(out)
    assert topo.nodes["tie"].normally_open
    assert topo.downstream_transformers("f1") == ["x1"]


def test_glm_without_swing_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.glm"
    src.write_text("object node { name n0; }\n")
    with pytest.raises(ImportError_, match="SWING"):
        import_topology("glm", str(src), str(tmp_path / "out"))
    assert import_main("glm", str(src), str(tmp_path / "out2")) == 1


# -- OpenDSS ---------------------------------------------------------------------------------


def dss_counts(files: list[Path]) -> dict[str, int]:
    """Loads, load buses, switches and load-less service transformers from the DSS text."""
    text = "\n".join(re.sub(r"!.*", "", f.read_text()) for f in files)
    loads = re.findall(r"^\s*new\s+load\.\S+\s+.*?bus1=([^\s.]+)", text, re.I | re.M)
    switches = re.findall(r"^\s*new\s+line\.\S+.*switch=(?:y|yes|true)", text, re.I | re.M)
    # service transformers: a winding below 1 kV; its LV bus is the one with that kv
    service_lv: list[str] = []
    for m in re.finditer(r"^\s*new\s+transformer\.(\S+)(.*?)(?=^\s*new\s|\Z)", text,
                         re.I | re.M | re.S):
        body = m.group(2)
        pairs = re.findall(r"bus=(\S+)\s+conn=\S+\s+kv=([\d.]+)", body, re.I)
        if pairs and min(float(kv) for _, kv in pairs) < 1.0:
            service_lv.append(min(pairs, key=lambda p: float(p[1]))[0].split(".")[0])
    load_buses = {b for b in loads}
    loadless = [b for b in service_lv if b not in load_buses]
    return {
        "loads": len(loads),
        "areas": len(load_buses) + len(loadless),
        "customers": len(loads) + len(loadless),
        "switches": len(switches),
    }


@needs_feeders
def test_opendss_ieee13(tmp_path: Path) -> None:
    src = FEEDERS / "ieee13"
    expected = dss_counts([src / "IEEE13Nodeckt.dss"])
    summary = import_topology("opendss", str(src), str(tmp_path))
    kinds = kinds_of(tmp_path)
    assert kinds["transformer"] == expected["areas"] == 9
    assert summary.customers == expected["customers"] == 15
    assert kinds["switch"] == expected["switches"] == 1
    assert kinds["breaker"] == 1 and kinds["source"] == 1
    topo = load_bundle(tmp_path)
    # the XFM1 service transformer carries the three 634 loads
    assert topo.nodes["XFM1"].customers == 3


@needs_feeders
@pytest.mark.parametrize("master", ["IEEE123Master.dss", "IEEE123Switches.dss"])
def test_opendss_ieee123(tmp_path: Path, master: str) -> None:
    src = FEEDERS / "ieee123"
    expected = dss_counts([src / master, src / "IEEE123Loads.DSS"])
    summary = import_topology("opendss", str(src / master), str(tmp_path))
    kinds = kinds_of(tmp_path)
    assert kinds["transformer"] == expected["areas"]
    assert summary.customers == expected["customers"]
    assert kinds["switch"] == expected["switches"] == 8
    assert summary.normally_open == 2  # Sw7 and Sw8, the open ties
    topo = load_bundle(tmp_path)
    assert topo.nodes["Sw7"].normally_open and topo.nodes["Sw8"].normally_open
    assert not topo.nodes["Sw1"].normally_open


@needs_feeders
def test_opendss_directory_picks_the_master(tmp_path: Path) -> None:
    a = import_topology("opendss", str(FEEDERS / "ieee123"), str(tmp_path / "a"))
    b = import_topology("opendss", str(FEEDERS / "ieee123" / "IEEE123Master.dss"),
                        str(tmp_path / "b"))
    assert (a.transformers, a.customers, a.devices) == (b.transformers, b.customers, b.devices)


def test_opendss_fuse_recloser_relay_on_lines(tmp_path: Path) -> None:
    src = tmp_path / "mini.dss"
    src.write_text("""Clear
New Circuit.mini basekv=12.47 bus1=src
New Line.L1 bus1=src bus2=a
New Line.L2 bus1=a bus2=b
New Line.L3 bus1=a.1 bus2=c.1
New Line.L4 bus1=c bus2=b switch=y
~ enabled=yes
New Relay.R1 MonitoredObj=Line.L1 MonitoredTerm=1
New Recloser.RC1 MonitoredObj=Line.L2
New Fuse.F1 MonitoredObj=Line.L3
New Transformer.T1 phases=1 windings=2 buses=[b b_lv] kvs=[7.2 0.24]
new transformer.T2 like=T1 buses=[c c_lv]
New Load.house1 bus1=b_lv.1 kW=3
New Load.house2 bus1=b_lv.2 kW=3
New Load.big bus1=c kW=300
open Line.L4
Redirect missing_file.dss
""")
    out = tmp_path / "bundle"
    summary = import_topology("opendss", str(src), str(out))
    kinds = kinds_of(out)
    assert kinds == {"source": 1, "breaker": 1, "recloser": 1, "fuse": 1, "switch": 1,
                     "transformer": 3, "junction": kinds["junction"]}
    topo = load_bundle(out)
    assert topo.nodes["T1"].customers == 2
    assert topo.nodes["L4"].normally_open
    assert sorted(topo.downstream_transformers("F1")) == ["T2", "area-c"]
    assert topo.nodes["T2"].customers == 1  # a service transformer without loads
    assert any("missing_file.dss" in w for w in summary.warnings)


def test_opendss_without_circuit_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "x.dss"
    src.write_text("New Line.L1 bus1=a bus2=b\n")
    with pytest.raises(ImportError_, match="Circuit"):
        import_topology("opendss", str(src), str(tmp_path / "out"))


# -- pandapower --------------------------------------------------------------------------------


def frame(columns: list[str], rows: list[list[object]]) -> dict[str, object]:
    return {"_module": "pandas.core.frame", "_class": "DataFrame", "orient": "split",
            "_object": json.dumps({"columns": columns, "index": list(range(len(rows))),
                                   "data": rows})}


def test_pandapower_json_without_pandapower(tmp_path: Path) -> None:
    # HV grid -> substation trafo -> MV bus -> CB -> line -> MV/LV trafo -> 3 LV loads,
    # plus an MV load, a load-break switch and an open tie.
    net = {"_module": "pandapower.auxiliary", "_class": "pandapowerNet", "_object": {
        "bus": frame(["name", "vn_kv", "in_service"], [
            ["HV", 110.0, True], ["MV0", 20.0, True], ["MV1", 20.0, True],
            ["MV2", 20.0, True], ["LV", 0.4, True], ["MV3", 20.0, True],
            ["dead", 20.0, False]]),
        "ext_grid": frame(["name", "bus", "in_service"], [["grid", 0, True]]),
        "trafo": frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"], [
            ["sub", 0, 1, 20.0, True], ["dt1", 3, 4, 0.4, True]]),
        "line": frame(["name", "from_bus", "to_bus", "in_service"], [
            ["l1", 1, 2, True], ["l2", 2, 3, True], ["l3", 2, 5, True], ["tie", 5, 3, True]]),
        "switch": frame(["name", "bus", "element", "et", "type", "closed"], [
            ["cb1", 1, 0, "l", "CB", True], ["lbs", 2, 2, "l", "LBS", True],
            ["open-tie", 5, 3, "l", "LBS", False]]),
        "load": frame(["name", "bus", "in_service"], [
            ["h1", 4, True], ["h2", 4, True], ["h3", 4, True], ["mv", 5, True],
            ["off", 5, False]]),
    }}
    src = tmp_path / "net.json"
    src.write_text(json.dumps(net))
    out = tmp_path / "bundle"
    assert import_main("pandapower", str(src), str(out)) == 0
    topo = load_bundle(out)
    kinds = kinds_of(out)
    assert kinds["breaker"] == 1  # cb1 protects the feeder head: no breaker is added
    assert kinds.get("switch", 0) == 2
    areas = {t: topo.nodes[t].customers for t in topo.transformers}
    assert areas == {"dt1": 3, "area-bus5": 1}
    assert sum(1 for n in topo.nodes.values() if n.normally_open) == 1


def test_pandapower_cascaded_service_transformers(tmp_path: Path) -> None:
    # a 20/0.4 kV transformer, then a 0.4/0.23 kV one on its secondary: one area
    net = {"_module": "pandapower.auxiliary", "_class": "pandapowerNet", "_object": {
        "bus": frame(["name", "vn_kv", "in_service"], [
            ["MV", 20.0, True], ["LV", 0.4, True], ["LV2", 0.23, True]]),
        "ext_grid": frame(["name", "bus", "in_service"], [["grid", 0, True]]),
        "trafo": frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"], [
            ["dt", 0, 1, 0.4, True], ["dt-inner", 1, 2, 0.23, True]]),
        "load": frame(["name", "bus", "in_service"], [["h1", 1, True], ["h2", 2, True]]),
    }}
    src = tmp_path / "net.json"
    src.write_text(json.dumps(net))
    summary = import_topology("pandapower", str(src), str(tmp_path / "bundle"))
    topo = load_bundle(tmp_path / "bundle")
    assert {t: topo.nodes[t].customers for t in topo.transformers} == {"dt": 2}
    assert any("dt-inner" in w and "dt" in w for w in summary.warnings)


def substation_net(couplers: list[list[object]], hv_line: bool = False) -> dict[str, object]:
    """A SimBench-like substation: two 110 kV buses joined by a closed switch, each feeding a
    110/20 kV transformer (breakers on both ends) to its own busbar (MV-A, MV-C); a third
    busbar MV-B between them; ``couplers`` are the bus-bus switches among the busbars. A
    feeder leaves each busbar through a line with a breaker to a bus with a load; MV-A's
    second feeder leaves through a bay breaker (bus-bus) to a bus, then a line."""
    buses = [["HV1", 110.0], ["HV2", 110.0], ["MV-A", 20.0], ["MV-B", 20.0], ["MV-C", 20.0],
             ["fa", 20.0], ["fb", 20.0], ["fc", 20.0], ["bay", 20.0], ["fd", 20.0],
             ["far", 110.0]]
    lines = [["la", 2, 5], ["lb", 3, 6], ["lc", 4, 7], ["ld", 8, 9]]
    if hv_line:
        lines.append(["hv-line", 1, 10])
    return {"_module": "pandapower.auxiliary", "_class": "pandapowerNet", "_object": {
        "bus": frame(["name", "vn_kv", "in_service"], [[*b, True] for b in buses]),
        "ext_grid": frame(["name", "bus", "in_service"], [["grid", 0, True]]),
        "trafo": frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"], [
            ["T1", 0, 2, 20.0, True], ["T2", 1, 4, 20.0, True]]),
        "line": frame(["name", "from_bus", "to_bus", "in_service"],
                      [[*ln, True] for ln in lines]),
        "switch": frame(["name", "bus", "element", "et", "type", "closed"], [
            ["hv-coupler", 0, 1, "b", "CB", True],
            ["T1-hv", 0, 0, "t", "CB", True], ["T1-mv", 2, 0, "t", "CB", True],
            ["T2-hv", 1, 1, "t", "CB", True], ["T2-mv", 4, 1, "t", "CB", True],
            ["cb-a", 2, 0, "l", "CB", True], ["cb-b", 3, 1, "l", "CB", True],
            ["cb-c", 4, 2, "l", "CB", True], ["bay-d", 2, 8, "b", "CB", True],
            *couplers]),
        "load": frame(["name", "bus", "in_service"], [
            ["a", 5, True], ["b", 6, True], ["c", 7, True], ["d", 9, True]]),
    }}


def import_net(tmp_path: Path, net: dict[str, object]) -> tuple[object, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "net.json"
    src.write_text(json.dumps(net))
    summary = import_topology("pandapower", str(src), str(tmp_path / "bundle"))
    return summary, tmp_path / "bundle"


def test_pandapower_parallel_substation_transformers_are_one_source(tmp_path: Path) -> None:
    # both busbars coupled through the middle one: a loop through the two transformers,
    # which a bundle cannot hold; the substation is left out and the busbars are one source
    summary, out = import_net(tmp_path, substation_net([
        ["ab", 2, 3, "b", "CB", True], ["bc", 3, 4, "b", "CB", True]]))
    topo = load_bundle(out)
    names = {n.name for n in topo.nodes.values() if n.kind != "source"}
    assert not names & {"T1", "T2", "T1-hv", "T1-mv", "T2-hv", "T2-mv", "hv-coupler", "ab",
                        "bc"}
    sources = [n for n in topo.nodes.values() if n.kind == "source"]
    assert [s.name for s in sources] == ["T1"]
    assert {n.feeder for n in topo.nodes.values()} == {sources[0].feeder}
    # every feeder's head breaker is kept, the bay breaker included
    assert {"cb-a", "cb-b", "cb-c", "bay-d"} <= {n.name for n in topo.nodes.values()
                                                  if n.kind == "breaker"}
    assert sorted(topo.transformers) == ["area-bus5", "area-bus6", "area-bus7", "area-bus9"]
    assert any("T1, T2" in w and "1 source(s)" in w for w in summary.warnings)


def test_pandapower_substation_busbars_apart_are_two_sources(tmp_path: Path) -> None:
    # no coupler: each transformer's busbar feeds its own part; the middle busbar, fed by
    # neither, is dropped with its feeder
    summary, out = import_net(tmp_path, substation_net([]))
    topo = load_bundle(out)
    sources = sorted(n.name for n in topo.nodes.values() if n.kind == "source")
    assert sources == ["T1", "T2"]
    feeders = {t: topo.nodes[t].feeder for t in topo.transformers}
    assert feeders["area-bus5"] == feeders["area-bus9"] != feeders["area-bus7"]
    assert "area-bus6" not in feeders
    assert any("2 source(s)" in w for w in summary.warnings)


def test_pandapower_open_coupler_stays_a_tie(tmp_path: Path) -> None:
    _, out = import_net(tmp_path, substation_net([
        ["ab", 2, 3, "b", "CB", True], ["bc", 3, 4, "b", "CB", False]]))
    topo = load_bundle(out)
    assert sorted(n.name for n in topo.nodes.values() if n.kind == "source") == ["T1", "T2"]
    tie = next(n for n in topo.nodes.values() if n.name == "bc")
    assert tie.normally_open
    # MV-B hangs off T1's busbar behind its section breaker, which stays a device above it
    feeders = {t: topo.nodes[t].feeder for t in topo.transformers}
    assert feeders["area-bus6"] == feeders["area-bus5"] != feeders["area-bus7"]
    section = next(i for i, n in topo.nodes.items() if n.name == "ab")
    assert topo.nodes[section].kind == "breaker"
    assert "area-bus6" in topo.downstream_transformers(section)
    assert "area-bus5" not in topo.downstream_transformers(section)


def test_pandapower_high_voltage_line_keeps_the_grid_as_source(tmp_path: Path) -> None:
    # a line leaves the high-voltage side: the substation is not left out, and the loop
    # through the two transformers is reported as before
    with pytest.raises(BundleInvalidError, match="cycle"):
        import_net(tmp_path, substation_net([["ac", 2, 4, "b", "CB", True]], hv_line=True))
    assert not (tmp_path / "bundle").exists()  # nothing written that would not load
    _, out = import_net(tmp_path / "apart", substation_net([], hv_line=True))
    topo = load_bundle(out)
    assert [n.name for n in topo.nodes.values() if n.kind == "source"] == ["grid"]
    assert {"T1-hv", "T1-mv"} <= {n.name for n in topo.nodes.values()}


def test_pandapower_builtin_network(tmp_path: Path) -> None:
    pp = pytest.importorskip("pandapower", reason="pandapower not installed (optional extra)")
    import pandapower.networks as pn

    net = pn.create_cigre_network_mv()
    loads = int(net.load.in_service.sum())
    lv_trafos = int((net.trafo.vn_lv_kv < 1.0).sum())
    cb = int((net.switch.type == "CB").sum())
    other = int((net.switch.type != "CB").sum())
    open_switches = int((~net.switch.closed).sum())
    summary = import_topology("pandapower", "pandapower.networks.create_cigre_network_mv",
                              str(tmp_path))
    kinds = kinds_of(tmp_path)
    assert lv_trafos == 0  # CIGRE MV loads sit on MV buses: one synthetic area per load bus
    assert summary.customers == loads
    assert kinds["transformer"] == len(set(net.load.bus[net.load.in_service]))
    assert kinds.get("switch", 0) == other
    assert kinds["breaker"] >= cb
    assert summary.normally_open == open_switches
    assert pp is not None


# -- a bad import leaves the bundle there; a malformed network is named, not a traceback --------

REPO = Path(__file__).resolve().parents[1]


def small_net(**tables: dict[str, object]) -> dict[str, object]:
    """A grid, a line, a 20/0.4 kV transformer and a load; ``tables`` replaces tables."""
    return {"_module": "pandapower.auxiliary", "_class": "pandapowerNet", "_object": {
        "bus": frame(["name", "vn_kv", "in_service"],
                     [["b0", 20.0, True], ["b1", 20.0, True], ["b2", 0.4, True]]),
        "ext_grid": frame(["name", "bus", "in_service"], [["grid", 0, True]]),
        "line": frame(["name", "from_bus", "to_bus", "in_service"], [["l1", 0, 1, True]]),
        "trafo": frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"],
                       [["t1", 1, 2, 0.4, True]]),
        "load": frame(["name", "bus", "in_service"], [["ld", 2, True]]),
        **tables}}


def cli_import(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "topology", "import",
                           "pandapower", str(src), str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_an_import_that_would_not_load_leaves_the_bundle_there(tmp_path: Path) -> None:
    good, out = tmp_path / "good.json", tmp_path / "live"
    good.write_text(json.dumps(small_net()))
    assert cli_import(good, out).returncode == 0
    (out / "README.md").write_text("ours")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    looped = tmp_path / "looped.json"
    looped.write_text(json.dumps(substation_net([["ac", 2, 4, "b", "CB", True]], hv_line=True)))
    proc = cli_import(looped, out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{out}: the imported bundle would be invalid" in proc.stderr and "cycle" in proc.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "live", "looped.json"]
    load_bundle(out)


def test_an_import_keeps_the_files_it_does_not_write_and_checks_them(tmp_path: Path) -> None:
    src, out = tmp_path / "net.json", tmp_path / "live"
    src.write_text(json.dumps(small_net()))
    assert import_main("pandapower", str(src), str(out)) == 0
    (out / "meters.csv").write_text("id,transformer,kind\nM1,t1,meter\n")
    assert import_main("pandapower", str(src), str(out)) == 0
    assert [(m.id, m.transformer) for m in load_bundle(out).meters] == [("M1", "t1")]
    renamed = small_net(trafo=frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"],
                                    [["t9", 1, 2, 0.4, True]]))
    src.write_text(json.dumps(renamed))
    with pytest.raises(BundleInvalidError, match=r"meters\.csv:2 \(M1\): unknown transformer"):
        import_topology("pandapower", str(src), str(out))
    assert [n for n in load_bundle(out).transformers] == ["t1"]


def test_a_feeder_name_with_a_semicolon_is_written_so_that_it_loads(tmp_path: Path) -> None:
    src, out = tmp_path / "feeder;A.json", tmp_path / "live"
    src.write_text(json.dumps(small_net()))
    proc = cli_import(src, out)
    assert proc.returncode == 0, proc.stderr
    assert "feeder name 'feeder;A' has ';'" in proc.stderr
    assert load_bundle(out).crews[0].feeders == ("feeder_A",)


def bad_trafo(kv: object) -> dict[str, object]:
    return small_net(trafo=frame(["name", "hv_bus", "lv_bus", "vn_lv_kv", "in_service"],
                                 [["t1", 1, 2, kv, True]]))


@pytest.mark.parametrize(("text", "message"), [
    (json.dumps(bad_trafo("n/a")), "trafo 0 ('t1'): 'vn_lv_kv' must be a number, got 'n/a'"),
    (json.dumps([1, 2]), "not a pandapower network (a JSON object of tables"),
    (json.dumps(small_net(load=frame(["name", "in_service"], [["ld", True]]))),
     "load 0 ('ld'): no 'bus' column"),
    (json.dumps(small_net(load=frame(["name", "bus", "in_service"], [["ld", None, True]]))),
     "load 0 ('ld'): 'bus' must be a whole number (an index), got None"),
    (json.dumps(small_net(load=frame(["name", "bus", "in_service"], [["ld", [2], True]]))),
     "load 0 ('ld'): 'bus' must be a whole number (an index), got [2]"),
    (json.dumps(small_net(line=[1])), "table 'line': a DataFrame"),
    (json.dumps(small_net(line={"_object": "{"})), "table 'line': its '_object' is not JSON"),
    (json.dumps(small_net(line={"_object": '{"columns": [' + "9" * 5000 + "]}"})),
     "table 'line': its '_object' is not JSON (a number of 5000 digits"),
    ('{"bus": ' + "9" * 5000 + "}", "not JSON (a number of 5000 digits under key 'bus'"),
    (json.dumps(small_net(line={"_object": json.dumps(
        {"columns": ["name"], "index": [0, 1], "data": [["a"]]})})),
     "table 'line': 2 index entries for 1 rows"),
    (json.dumps(small_net(switch=frame(["name", "bus", "element", "et"], [["s", 0, 1, [1]]]))),
     "switch 0 ('s'): 'et' must be b, l, t or t3"),
])
def test_a_malformed_pandapower_network_names_the_file_element_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    src = tmp_path / "net.json"
    src.write_text(text)
    assert import_main("pandapower", str(src), str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"outage-sentinel topology import: {src}: ") and message in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_pandapower_file_not_in_utf8_is_named(tmp_path: Path) -> None:
    src = tmp_path / "latin1.json"
    src.write_bytes(b'{"note": "caf\xe9", ' + json.dumps(small_net()).encode()[1:])
    proc = cli_import(src, tmp_path / "out")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{src}: not UTF-8 text (byte 0xe9" in proc.stderr
