"""GridLAB-D ``.glm`` importer on hand-written snippets of what public feeders contain.

Each snippet is minimal and written for the test; the syntax follows GridLAB-D's loader
(macros, object headers, nested and inline objects, device states, transformer
configurations). Assertions are on the imported bundle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from outage_sentinel.importers import ImportError_, ImportSummary, import_topology
from outage_sentinel.locate import import_main
from outage_sentinel.topology import Topology, load_bundle

# a source, a line and a medium-voltage bus n1 to hang things from
HEAD = """
module powerflow;
object node { name src; bustype SWING; nominal_voltage 7200; }
object overhead_line { name l0; from src; to n1; }
object node { name n1; nominal_voltage 7200; }
object transformer_configuration { name ct; connect_type SINGLE_PHASE_CENTER_TAPPED;
  primary_voltage 7200 V; secondary_voltage 120 V; powerA_rating 25; }
"""


def run(tmp_path: Path, text: str, name: str = "feeder.glm") -> tuple[ImportSummary, Topology]:
    src = tmp_path / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "bundle"
    summary = import_topology("glm", str(src), str(out))
    return summary, load_bundle(out)


def kinds(topo: Topology) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in topo.nodes.values():
        out[n.kind] = out.get(n.kind, 0) + 1
    return out


def areas(topo: Topology) -> dict[str, int]:
    return {t: topo.nodes[t].customers for t in topo.transformers}


def opened(topo: Topology) -> set[str]:
    return {n.id for n in topo.nodes.values() if n.normally_open}


# -- 1. macros, includes, non-object blocks ----------------------------------------------------


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "network.glm").write_text("""
#include "devices.glm"
object transformer { name x1; from n1; to tn1; configuration ct; }
object triplex_node { name tn1; }
object triplex_meter { name m1; parent tn1; }
""")
    (tmp_path / "lib" / "devices.glm").write_text(
        "object fuse { name f1; from n1; to n2; }\nobject node { name n2; }\n")
    summary, topo = run(tmp_path, HEAD + '#include "lib/network.glm"\n#include "absent.glm"\n')
    assert areas(topo) == {"x1": 1}
    assert kinds(topo)["fuse"] == 1
    missing = [w for w in summary.warnings if "absent.glm" in w]
    assert missing and "feeder.glm:" in missing[0]  # names the including file and line


def test_include_found_from_the_run_directory_of_the_model(tmp_path: Path) -> None:
    # models meant to be run from the folder above them name includes from there
    (tmp_path / "model" / "library").mkdir(parents=True)
    (tmp_path / "model" / "library" / "areas.glm").write_text("""
object transformer { name x1; from n1; to tn1; configuration ct; }
object triplex_meter { name m1; }
object triplex_line { name tl; from tn1; to m1; }
object triplex_node { name tn1; }
""")
    _, topo = run(tmp_path, HEAD + '#include "model/library/areas.glm"\n', "model/main.glm")
    assert areas(topo) == {"x1": 1}


def test_include_cycle_is_a_warning_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "a.glm").write_text('#include "b.glm"\nobject fuse { name f1; from n1; to n2; }\n')
    (tmp_path / "b.glm").write_text('#include "a.glm"\nobject node { name n2; }\n')
    summary, topo = run(tmp_path, HEAD + '#include "a.glm"\n')
    assert kinds(topo)["fuse"] == 1
    assert any("a.glm" in w and "already being read" in w for w in summary.warnings)


def test_define_ifdef_else_and_variables(tmp_path: Path) -> None:
    text = HEAD + """
#define PREFIX=area
#define WITH_TIE
#set profiler=1
#ifdef WITH_TIE
object switch { name tie; from n1; to n9; status OPEN; }
object node { name n9; }
#endif
#ifdef NOT_DEFINED
object fuse { name ghost; from n1; to n8; }
object node { name n8; }
#else
object fuse { name f1; from n1; to n2; }
#endif
#ifndef WITH_TIE
object fuse { name ghost2; from n1; to n7; }
#endif
#if PREFIX==area
object node { name n2; }
#endif
object transformer { name ${PREFIX}_x; from n2; to ${PREFIX}_lv; configuration ct; }
object triplex_meter { name ${PREFIX}_lv; }
"""
    _, topo = run(tmp_path, text)
    assert kinds(topo)["fuse"] == 1 and "f1" in topo.nodes
    assert "ghost" not in topo.nodes and "ghost2" not in topo.nodes
    assert opened(topo) == {"tie"}
    assert areas(topo) == {"area_x": 1}
    assert topo.downstream_transformers("f1") == ["area_x"]


def test_include_using_sets_variables_for_each_inclusion(tmp_path: Path) -> None:
    (tmp_path / "area.glm").write_text("""
object transformer { name x_${ID}; from n1; to lv_${ID}; configuration ct; }
object triplex_node { name lv_${ID}; }
object triplex_meter:..${COUNT} { parent lv_${ID}; }
""")
    text = HEAD + ('#include using(ID=1,COUNT=2) "area.glm"\n'
                   '#include using(ID=2,COUNT=3) "area.glm"\n')
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x_1": 2, "x_2": 3}
    assert summary.customers == 5


def test_blocks_that_are_not_objects(tmp_path: Path) -> None:
    text = """
clock { timezone PST+8PDT; starttime '2000-01-01 00:00:00'; }
module powerflow { solver_method NR; line_capacitance true; }
module residential { implicit_enduses NONE; }
class player { double value; }
schedule residential_lights { weekday { * 0-6 * * 1-5 0.2; } * 7-23 * * * 0.8; }
global int32 SEQ 7;
""" + HEAD + """
object transformer { name x${SEQ}; from n1; to tn1; configuration ct; }
object triplex_node { name tn1; }
object triplex_meter { name m1; parent tn1; }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x7": 1}
    assert summary.customers == 1


def test_bom_crlf_and_tabs(tmp_path: Path) -> None:
    text = ("#ifdef NOT_DEFINED\r\nobject fuse { name ghost; from n1; to n2; }\r\n#endif\r\n"
            + HEAD.replace("\n", "\r\n")
            + "object\tfuse\t{\tname\tf1;\tfrom\tn1;\tto\tn2;\t}\r\nobject node { name n2; }\r\n")
    src = tmp_path / "bom.glm"
    src.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    import_topology("glm", str(src), str(tmp_path / "bundle"))
    topo = load_bundle(tmp_path / "bundle")
    assert "f1" in topo.nodes and "ghost" not in topo.nodes


# -- 2. object headers and property syntax -----------------------------------------------------


def test_module_qualified_class_and_brace_on_the_next_line(tmp_path: Path) -> None:
    text = HEAD + """
object powerflow.fuse:7
{
    name f1; from n1; to n2;
}
object powerflow.node { name n2; }
"""
    _, topo = run(tmp_path, text)
    assert kinds(topo)["fuse"] == 1 and "f1" in topo.nodes


def test_object_named_only_by_class_and_id(tmp_path: Path) -> None:
    text = HEAD + """
object fuse:12 { from n1; to node:40; }
object node:40 { }
object transformer:41 { from node:40; to triplex_node:42; configuration transformer_configuration:5; }
object triplex_node:42 { }
object triplex_meter:43 { parent triplex_node:42; }
object transformer_configuration:5 { connect_type SINGLE_PHASE_CENTER_TAPPED; }
"""
    _, topo = run(tmp_path, text)
    assert topo.downstream_transformers("fuse:12") == ["transformer:41"]
    assert areas(topo) == {"transformer:41": 1}


def test_id_ranges_and_counts(tmp_path: Path) -> None:
    text = HEAD + """
object overhead_line { name l1; from n1; to node:3; }
object node:3..4 { nominal_voltage 7200; }
object overhead_line { name l2; from node:3; to node:4; }
object transformer { name x1; from node:4; to tn1; configuration ct; }
object triplex_node { name tn1; }
object triplex_meter:..3 { parent tn1; }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 3}
    assert summary.customers == 3


def test_quoted_values_with_spaces_and_semicolons(tmp_path: Path) -> None:
    text = HEAD + """
object switch { name "sw;1"; from "n1"; to "n2"; status "OPEN"; }
object node { name "n2"; groupid "a b; c"; }
object fuse { name f1; from n1; to n3; } object node { name n3; }
"""
    _, topo = run(tmp_path, text)
    assert opened(topo) == {"sw;1"}
    assert kinds(topo)["fuse"] == 1


def test_braces_inside_a_value(tmp_path: Path) -> None:
    text = HEAD + """
object triplex_meter { groupid `grp_{AREA}`; parent tn1; }
object transformer { name x1; from n1; to tn1; configuration ct; }
object triplex_node { name tn1; object triplex_meter { }; }
object fuse { name f1; from n1; to n2; } object node { name n2 }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 2} and "f1" in topo.nodes
    assert any("feeder.glm:12" in w and "';'" in w for w in summary.warnings)  # name n2 }


def test_missing_semicolon_at_line_end_is_a_warning(tmp_path: Path) -> None:
    text = """
object node {
    name src
    bustype SWING;
}
object fuse { name f1; from src; to n1; }
object node { name n1; }
"""
    summary, topo = run(tmp_path, text)
    assert kinds(topo)["source"] == 1 and "f1" in topo.nodes
    assert any("feeder.glm:3" in w and "';'" in w for w in summary.warnings)


def test_names_with_dots_dashes_colons_and_later_references(tmp_path: Path) -> None:
    text = HEAD + """
object fuse { name R1-12.47-1_fuse:1; from n1; to R1-12.47-1_node.2; }
object transformer { name x.1; from R1-12.47-1_node.2; to tn-1; configuration ct; }
object triplex_meter { name m:1; parent tm.2; }
object triplex_meter { name tm.2; parent tn-1; }
object triplex_node { name tn-1; }
object node { name R1-12.47-1_node.2; }
"""
    _, topo = run(tmp_path, text)
    assert topo.downstream_transformers("R1-12.47-1_fuse:1") == ["x.1"]
    assert areas(topo) == {"x.1": 2}  # the meter chain of depth 2 is in the area


def test_anonymous_nested_objects(tmp_path: Path) -> None:
    text = HEAD + """
object transformer { name x1; from n1; to tn1; configuration ct; }
object triplex_node {
    name tn1;
    object triplex_meter { object house { floor_area 1500; }; };
    object triplex_meter { };
}
object transformer { name x2; from n1; to tn2; configuration ct; }
object triplex_node { name tn2; object triplex_meter { }; }
object fuse { from n1; to n2; }
object fuse { from n2; to n3; }
object node { name n2; } object node { name n3; }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 2, "x2": 1}
    assert kinds(topo)["fuse"] == 2
    assert all(n for n in topo.nodes)


# -- 4. devices ---------------------------------------------------------------------------------


def test_device_states(tmp_path: Path) -> None:
    text = HEAD + """
object switch { name s_lower; from n1; to a; status open; }
object switch { name s_numeric; from n1; to b; status 0; }
object switch { name s_phases; from n1; to c; phases ABCN;
    phase_A_state OPEN; phase_B_state OPEN; phase_C_state OPEN; }
object switch { name s_banked; from n1; to d; phases ABC; operating_mode BANKED;
    phase_A_state OPEN; phase_B_state OPEN; }
object switch { name s_one_open; from n1; to e; phases ABC; operating_mode INDIVIDUAL;
    phase_A_state OPEN; }
object recloser { name r1; from n1; to f; status CLOSED; retry_time 1; max_number_of_tries 3; }
object sectionalizer { name z1; from f; to g; phase_A_state OPEN; phases AN; }
object fuse { name f_open; from n1; to h; status OPEN; mean_replacement_time 3600; }
object fuse { name f_blown; from n1; to i; phases BN; phase_B_status BLOWN; }
object fuse { name f_good; from n1; to j; phases BN; phase_B_status GOOD; current_limit 50; }
object relay { name rl; from n1; to k; recloser_delay 2; recloser_limit 3; }
object node { name a; } object node { name b; } object node { name c; } object node { name d; }
object node { name e; } object node { name f; } object node { name g; } object node { name h; }
object node { name i; } object node { name j; } object node { name k; }
"""
    summary, topo = run(tmp_path, text)
    assert opened(topo) == {"s_lower", "s_numeric", "s_phases", "s_banked", "z1", "f_open",
                            "f_blown"}
    k = kinds(topo)
    assert (k["switch"], k["recloser"], k["sectionalizer"], k["fuse"]) == (5, 1, 1, 3)
    assert k["breaker"] == 2  # the relay, and the head breaker (n1 branches at once)
    assert topo.nodes["rl"].kind == "breaker"
    assert summary.normally_open == 7


def test_modify_directive_changes_a_property(tmp_path: Path) -> None:
    text = HEAD + """
object switch { name tie; from n1; to n2; status CLOSED; }
object node { name n2; }
modify tie.status OPEN;
"""
    _, topo = run(tmp_path, text)
    assert opened(topo) == {"tie"}


# -- 5. transformers ----------------------------------------------------------------------------


def test_inline_configuration(tmp_path: Path) -> None:
    text = HEAD + """
object transformer {
    name x_sub; from n1; to n2;
    configuration object transformer_configuration {
        connect_type WYE_WYE; primary_voltage 69 kV; secondary_voltage 7.2 kV;
    };
}
object node { name n2; nominal_voltage 7200; }
object transformer {
    name x1; from n2; to lv1;
    configuration object transformer_configuration {
        connect_type SINGLE_PHASE_CENTER_TAPPED; secondary_voltage 120;
    };
}
object meter { name lv1; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 1}


def test_secondary_voltage_units(tmp_path: Path) -> None:
    text = HEAD + """
object transformer_configuration { name sub; connect_type WYE_WYE; secondary_voltage 12.47 kV; }
object transformer_configuration { name kv; connect_type WYE_WYE; secondary_voltage 0.24 kV; }
object transformer_configuration { name nospace; connect_type WYE_WYE; secondary_voltage 240V; }
object transformer_configuration { name plain; connect_type WYE_WYE; secondary_voltage 480.0; }
object transformer { name x_sub; from n1; to m1; configuration sub; }
object transformer { name x_kv; from m1; to m2; configuration kv; }
object transformer { name x_nospace; from m1; to m3; configuration nospace; }
object transformer { name x_plain; from m1; to m4; configuration plain; }
object node { name m1; nominal_voltage 7200; } object meter { name m2; }
object meter { name m3; } object meter { name m4; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x_kv": 1, "x_nospace": 1, "x_plain": 1}
    assert "x_sub" not in topo.nodes  # a substation transformer is a plain connection


def test_configuration_defined_after_and_numeric_connect_type(tmp_path: Path) -> None:
    text = HEAD + """
object transformer { name x1; from n1; to lv1; configuration later; }
object node { name lv1; }
object load { name ld; parent lv1; }
object transformer_configuration { name later; connect_type 5; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 1}


def test_wye_wye_to_a_low_voltage_node_without_secondary_voltage(tmp_path: Path) -> None:
    text = HEAD + """
object transformer_configuration { name ww; connect_type WYE_WYE; power_rating 300; }
object transformer { name x1; from n1; to lv; configuration ww; }
object meter { name lv; nominal_voltage 230; }
object load { name shop; parent lv; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 1}


def test_low_voltage_transformer_inside_an_area(tmp_path: Path) -> None:
    # 7.2 kV -> 480 V, then 480 V -> 208 V inside the same building: one area, two customers
    text = HEAD + """
object transformer_configuration { name a; connect_type WYE_WYE;
    primary_voltage 12470; secondary_voltage 480; }
object transformer_configuration { name b; connect_type WYE_WYE;
    primary_voltage 480; secondary_voltage 208; }
object transformer { name x_mv; from n1; to bus480; configuration a; }
object meter { name bus480; nominal_voltage 277; }
object transformer { name x_lv; from bus480; to bus208; configuration b; }
object meter { name bus208; nominal_voltage 120; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x_mv": 2}


def test_cascaded_service_transformers_without_voltages(tmp_path: Path) -> None:
    # nothing tells the second center-tapped transformer is fed at low voltage but its place
    text = HEAD + """
object transformer_configuration { name bare; connect_type SINGLE_PHASE_CENTER_TAPPED; }
object transformer { name x1; from n1; to tn1; configuration bare; }
object triplex_node { name tn1; }
object triplex_meter { name m1; parent tn1; }
object transformer { name x2; from tn1; to tn2; configuration bare; }
object triplex_meter { name tn2; }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 2}
    assert any("x2" in w and "x1" in w for w in summary.warnings)


def test_regulator_is_not_a_service_transformer(tmp_path: Path) -> None:
    text = HEAD + """
object regulator_configuration { name rc; connect_type 1; band_center 122; }
object regulator { name reg; from n1; to n2; configuration rc; }
object node { name n2; }
object transformer { name x1; from n2; to tn; configuration ct; }
object triplex_meter { name tn; }
"""
    _, topo = run(tmp_path, text)
    assert areas(topo) == {"x1": 1}
    assert "reg" not in topo.nodes


# -- 6. customers -------------------------------------------------------------------------------


def test_houses_are_customers_where_meters_are_absent(tmp_path: Path) -> None:
    text = HEAD + """
object transformer { name x_nometer; from n1; to tn1; configuration ct; }
object triplex_node { name tn1; }
object house { name h1; parent tn1; }
object house { name h2; parent tn1; object ZIPload { base_power 1; }; }
object house { name h3; parent tn1; object ZIPload { base_power 1; }; object ZIPload { }; }
object transformer { name x_meters; from n1; to tn2; configuration ct; }
object triplex_node { name tn2; }
object triplex_meter { name m1; parent tn2; object house { name h4; }; }
object triplex_meter { name m2; parent tn2;
    object house { name h5; object ZIPload { base_power 1; }; }; }
object triplex_load { name tl; parent m2; }
"""
    summary, topo = run(tmp_path, text)
    assert areas(topo) == {"x_nometer": 3, "x_meters": 2}
    assert summary.customers == 5


def test_substation_object_as_the_swing_bus(tmp_path: Path) -> None:
    text = """
object substation { name sub; bustype SWING; nominal_voltage 7200; }
object recloser { name r1; from sub; to n1; }
object node { name n1; }
"""
    _, topo = run(tmp_path, text)
    assert kinds(topo)["source"] == 1
    assert "r1" in topo.nodes


def test_line_to_a_capacitor_node(tmp_path: Path) -> None:
    text = HEAD + """
object capacitor { name cap1; parent n1; phases ABC; }
object fuse { name f1; from cap1; to n2; }
object node { name n2; }
object capacitor { name cap_alone; parent n2; }
"""
    _, topo = run(tmp_path, text)
    assert topo.protective_upstream("n2") == "f1"
    assert "cap_alone" not in topo.nodes  # a capacitor nothing connects to adds no node


# -- 7. errors and warnings ---------------------------------------------------------------------


def test_unclosed_object_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "cut.glm"
    src.write_text(HEAD + "object fuse {\n  name f1; from n1;\n")
    with pytest.raises(ImportError_, match=r"cut\.glm:8: .*not closed"):
        import_topology("glm", str(src), str(tmp_path / "out"))


def test_bad_object_header_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.glm"
    src.write_text(HEAD + "object fuse:abc { name f1; }\n")
    with pytest.raises(ImportError_, match=r"bad\.glm:8: .*fuse:abc"):
        import_topology("glm", str(src), str(tmp_path / "out"))


def test_unknown_references_are_warned_with_their_line(tmp_path: Path) -> None:
    text = HEAD + """
object fuse { name f1; from n1; to nowhere; }
object triplex_meter { name m1; parent ghost; }
"""
    summary, _ = run(tmp_path, text)
    assert any("feeder.glm:9" in w and "nowhere" in w for w in summary.warnings)
    assert any("feeder.glm:10" in w and "ghost" in w for w in summary.warnings)


def test_cli_never_shows_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "junk.glm"
    binary.write_bytes(bytes(range(256)) * 8)
    assert import_main("glm", str(binary), str(tmp_path / "o1")) == 1
    cut = tmp_path / "cut.glm"
    cut.write_text("object node { name n0; bustype SWING;\n")
    assert import_main("glm", str(cut), str(tmp_path / "o2")) == 1
    assert import_main("glm", str(tmp_path), str(tmp_path / "o3")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cut.glm:1" in err
