"""OpenDSS importer on what public decks really contain: each deck here is a small hand-written
script showing one thing real feeders do (IEEE 8500, EPRI ckt5/ckt7/ckt24, SMART-DS, decks saved
by OpenDSS or written by utilities' tools), checked on the bundle it imports to."""

from __future__ import annotations

from pathlib import Path

import pytest

from outage_sentinel.importers import ImportError_, ImportSummary, dss_script, import_topology
from outage_sentinel.locate import import_main
from outage_sentinel.topology import Topology, load_bundle


def write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


def run(tmp_path: Path, master: str, **files: str | bytes) -> tuple[ImportSummary, Topology]:
    """Import ``master.dss`` (beside ``files``, keyed by relative path) and load the bundle."""
    write(tmp_path / "deck", {"master.dss": master, **files})
    out = tmp_path / "bundle"
    summary = import_topology("opendss", str(tmp_path / "deck" / "master.dss"), str(out))
    return summary, load_bundle(out)


def areas(topo: Topology) -> dict[str, int]:
    return {t: topo.nodes[t].customers for t in topo.transformers}


def kinds(topo: Topology) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in topo.nodes.values():
        out[node.kind] = out.get(node.kind, 0) + 1
    return out


# -- 1. XfmrCode -----------------------------------------------------------------------------------


def test_transformer_windings_from_an_xfmrcode(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=src basekv=12.47
New XfmrCode.CT25 phases=1 windings=3 kvs=[7.2 0.12 0.12] kvas=[25 25 25]
New XfmrCode.Step windings=2 kvs=[12.47 4.16]
New Line.L1 bus1=src bus2=p
New Transformer.T1 XfmrCode=CT25 buses=[p.1 s1.1.0 s1.0.2]
New Load.h1 bus1=s1.1 kV=0.12
New Load.h2 bus1=s1.2 kV=0.12
! properties after the code override it ...
New Transformer.T2 xfmrcode=step buses=[p s2] wdg=2 kv=0.24
New Load.h3 bus1=s2
! ... and the code overrides properties before it
New Transformer.T3 kvs=[7.2 0.24] XfmrCode=Step buses=[p s3]
New Load.big bus1=s3
""")
    assert areas(topo) == {"T1": 2, "T2": 1, "area-s3": 1}
    assert "T3" not in topo.nodes  # a 12.47/4.16 kV step transformer is a plain connection


def test_an_xfmrcode_defined_after_its_transformer_is_a_warning(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New Transformer.T1 XfmrCode=late buses=[src s]
New XfmrCode.late windings=2 kvs=[7.2 0.24]
New Load.h bus1=s
""")
    assert areas(topo) == {"area-s": 1}  # OpenDSS rejects the reference too: 12.47 kV windings
    assert any("master.dss:2" in w and "late" in w for w in summary.warnings)


# -- 2. names are case-insensitive -----------------------------------------------------------------


def test_bus_and_element_names_ignore_letter_case(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=Src
New Line.L1 Bus1=SRC bus2=N1
New Line.L2 bus1=n1 bus2=N2
New Transformer.T1 phases=1 buses=[n2.1 LV1] kvs=[7.2 0.24]
New Load.h1 bus1=lv1.1
New Load.h2 bus1=Lv1.2
new transformer.T2 like=t1 buses=[N2.2 lv2]
New Load.h3 bus1=LV2
New Fuse.F1 MonitoredObj=LINE.l2
New Line.Tie bus1=N2 bus2=n1 switch=yes
Open line.TIE
BusCoords xy.csv
""", **{"xy.csv": "SRC, 0, 0\nn2, 5, 6\n"})
    assert {"Src", "N1", "N2"} <= set(topo.nodes)
    assert not {"SRC", "n1", "n2"} & set(topo.nodes)
    assert areas(topo) == {"T1": 2, "T2": 1}
    assert sorted(topo.downstream_transformers("F1")) == ["T1", "T2"]
    assert topo.nodes["Tie"].normally_open
    assert topo.nodes["N2"].extra == {"x": "5", "y": "6"}


# -- 3. Redirect/Compile targets written on Windows -----------------------------------------------


def test_redirect_targets_written_for_windows(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
Redirect sub\\lines
compile ("Loads Dir/house loads.dss")
Redirect missing.dss
BusCoords COORDS\\xy.CSV
Redirect C:\\Users\\someone\\Feeder\\Extra.dss
""", **{
        "Sub/Lines.DSS": "New Line.L1 bus1=src bus2=a\nRedirect ..\\More.dss\n",
        "more.dss": "New Line.L2 bus1=a bus2=b\r\n".encode("utf-16"),  # Notepad's "Unicode"
        "Loads Dir/House Loads.dss": "New Load.h1 bus1=b\n",
        "coords/XY.csv": "a 1 2\n",
        "extra.dss": "New Load.h2 bus1=b\n",
    })
    assert areas(topo) == {"area-b": 2}
    assert topo.nodes["a"].extra == {"x": "1", "y": "2"}
    missing = [w for w in summary.warnings if "missing.dss" in w]
    assert len(missing) == 1 and "master.dss:4" in missing[0]
    assert any("master.dss:6" in w and "Windows path" in w for w in summary.warnings)


# -- 4. SwtControl ---------------------------------------------------------------------------------


def test_swtcontrol_makes_a_switch_and_sets_its_normal_state(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New Line.L1 bus1=src bus2=a
New Line.L2 bus1=a bus2=b
New Line.L3 bus1=b bus2=c
New Line.SW2 bus1=a bus2=d
New Line.Tie1 bus1=c bus2=a switch=y
New Line.Tie3 bus1=d bus2=b
New Line.Tie4 bus1=d bus2=c
New SwtControl.S1 SwitchedObj=Line.Tie1 Normal=open
New SwtControl.S2 SwitchedObj=Line.SW2 Action=close
New SwtControl.S3 SwitchedObj=Line.Tie3 State=open
New SwtControl.S4 SwitchedObj=Line.Tie4 Action=Open
New Load.b bus1=b
New Load.c bus1=c
New Load.d bus1=d
""")
    switches = {n.id: n.normally_open for n in topo.nodes.values() if n.kind == "switch"}
    assert switches == {"Tie1": True, "SW2": False, "Tie3": True, "Tie4": True}
    assert summary.normally_open == 3
    assert topo.downstream_transformers("SW2") == ["area-d"]


# -- 5. quoted names, object=, positions, Disable/Enable, Edit too early, loops on one bus -----------


def test_names_positions_and_commands_as_opendss_reads_them(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New "Line.L 1" bus1=src bus2=a
New Line."L2" a b
New object=Line.L3 bus1=b bus2=c
New Line.L4 b d
~ switch=y
Disable Line.L4
New Line.L5 c e enabled=no
Enable Line.L5
Edit Line.L6 bus2=zz
New Line.L6 e f
New Line.Loop f.1 F.2
New Load.h1 1 f.1 0.24 3
New Transformer.T9 phases=1
~ wdg=1 e wye 7.2
~ wdg=2 s9 wye 0.24
New Load.h9 bus1=s9
""")
    assert areas(topo) == {"area-f": 1, "T9": 1}
    assert topo.nodes["L4"].normally_open and topo.nodes["L4"].kind == "switch"
    assert "zz" not in topo.nodes
    assert any("master.dss:10" in w and "Line.L6" in w for w in summary.warnings)
    assert any("master.dss:12" in w and "Loop" in w for w in summary.warnings)


def test_commands_may_be_abbreviated_and_continued(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """new circuit.c
~ bus1=Top
New Line.L1 bus1=top
~bus2=a
m switch=y
redir loads
""", **{"Loads.dss": "New Load.h bus1=a\n"})
    assert kinds(topo)["switch"] == 1
    assert areas(topo) == {"area-a": 1}
    assert topo.sources == ["c"]


def test_like_copies_neither_buses_nor_disabled_state(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=src
New Line.L1 bus1=src bus2=a
New Line.Template bus1=x1 bus2=x2 switch=y enabled=no
New Line.S1 like=Template bus1=a bus2=b
New Load.early bus1=b
Disable Load.*
New Load.late bus1=b NumCust=4
""")
    assert not topo.nodes["S1"].normally_open
    assert areas(topo) == {"area-b": 4}


# -- 6. centre-tapped service transformers, conns, kv per winding --------------------------------


def test_three_winding_and_per_winding_transformers(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=src basekv=12.47
New Transformer.CT phases=1 windings=3 buses=[src.1 s1.1.0 s1.0.2] conns=[wye wye wye]
~ kvs=[7.2 .12 .12] kvas=[25 25 25]
New Load.a bus1=s1.1 kV=0.12
New Load.b bus1=s1.2 kV=0.12
New Load.c bus1=s1.1.2 kV=0.24
New Transformer.W phases=1 wdg=1 bus=src.2 conn=wye kv=7.2 wdg=2 bus=s2.1 conn=wye kv=0.24
New Load.d bus1=s2
New Transformer.Sub phases=3 windings=2 buses=[src p] conns=[delta wye] kvs=[12.47 4.16]
New Load.e bus1=p
""")
    assert areas(topo) == {"CT": 3, "W": 1, "area-p": 1}
    assert "Sub" not in topo.nodes


def test_numbers_in_brackets_are_inline_math(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=src basekv=12.47
New Transformer.W phases=1 XHL=(8 1000 /) wdg=1 bus=src.2 kv=(12.47 3 sqrt /) wdg=2 bus=s.1
~ kv=(0.24 2 /)
New Load.d bus1=s
New Transformer.Sub phases=3 buses=[src p] kvs=[(12.47) "4.16"]
New Load.e bus1=p
""")
    assert areas(topo) == {"W": 1, "area-p": 1}


# -- 7. more of what real decks do -----------------------------------------------------------------


def test_a_bank_of_single_phase_service_transformers_is_one_area(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New Line.L1 bus1=src bus2=p
New Transformer.Ta phases=1 buses=[p.1 x.1] kvs=[7.2 0.24] bank=B1
New Transformer.Tb like=Ta buses=[p.2 x.2]
New Transformer.Tc like=Ta buses=[p.3 x.3]
New Line.svc bus1=x bus2=house
New Load.h1 bus1=house.1.2.3 kV=0.24
New Load.h2 bus1=x.1 kV=0.24
""")
    assert areas(topo) == {"Ta": 2}
    assert summary.customers == 2
    assert any("bank" in w and "Ta, Tb, Tc" in w for w in summary.warnings)


def test_a_service_transformer_on_another_ones_secondary_is_inside_its_area(
        tmp_path: Path) -> None:
    # T2's primary kV is not given (12.47 kV by default), so it reads as a second service
    # transformer, fed from T1's 480 V side
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New Line.L1 bus1=src bus2=p
New Transformer.T1 buses=[p s480] kvs=[12.47 0.48]
New Load.motor bus1=s480 kV=0.48
New Transformer.T2 windings=2 wdg=1 bus=s480 wdg=2 bus=s240 kv=0.24
New Load.flats bus1=s240 kV=0.24 NumCust=4
""")
    assert areas(topo) == {"T1": 5}
    assert any("T2" in w and "T1" in w for w in summary.warnings)


def test_devices_on_transformers_and_on_their_switched_line(tmp_path: Path) -> None:
    _, topo = run(tmp_path, """New Circuit.c bus1=src
New Line.L1 bus1=src bus2=p
New Transformer.T1 phases=1 buses=[p.1 s.1] kvs=[7.2 0.24]
New Load.h bus1=s
New Fuse.FT1 MonitoredObj=Transformer.T1 MonitoredTerm=1
New Relay.RL MonitoredObj=Vsource.source SwitchedObj=Line.L1
""")
    assert topo.downstream_transformers("FT1") == ["T1"]
    assert topo.downstream_transformers("RL") == ["T1"]
    assert kinds(topo)["breaker"] == 1  # the relay protects the head: none is added


def test_a_deck_saved_by_opendss(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.sub7
Edit "Vsource.source" bus1=SubBus.1 phases=1
New Vsource.ph2 bus1=subbus.2 phases=1
New "Line.L1" bus1=SubBus bus2=a length=1
New "Line.L1" bus2=b
New Reactor.R1 bus1=b bus2=c phases=3 X=0.1
New Capacitor.C1 bus1=c phases=3 kvar=300
New "Transformer.T1" phases=1 buses=[c.1, x.1, ] kVs=[7.2, 0.24, ] kVAs=[25, 25, ]
New "Load.h1" bus1=x.1 NumCust=3
New Line.L2 bus1=c bus2=d
New L3 bus1=d bus2=e
Line.L3.switch=yes
New Load.h2 bus1=e
LatLongCoords latlong.csv
""", **{"latlong.csv": "b, 30.5, -90.1\n"})
    assert topo.sources == ["sub7"]  # three phases of one source, one feeder named after the circuit
    assert "a" not in topo.nodes  # the second New of L1 edits it: SubBus to b
    assert areas(topo) == {"T1": 3, "area-e": 1}
    assert topo.nodes["L3"].kind == "switch"
    assert topo.nodes["b"].extra == {"x": "-90.1", "y": "30.5"}
    assert any("defined again" in w and "master.dss:5: line.L1" in w for w in summary.warnings)


def test_a_bad_value_is_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    summary, topo = run(tmp_path, """New Circuit.c bus1=src
New Transformer.T1 phases=1 buses=[src.1 s.1] kvs=[7.2 abc]
New Transformer.T2 phases=1 windings=1e9 buses=[src.2 s2.2] kvs=[7.2 0.24]
New Load.h bus1=s
New Load.h2 bus1=s2
New Line.L1 bus1=src bus2="unterminated
""")
    assert any("master.dss:2" in w and "abc" in w for w in summary.warnings)
    assert any("master.dss:3" in w and "windings" in w for w in summary.warnings)
    assert areas(topo) == {"area-s": 1, "T2": 1}  # T1's secondary stays at 12.47 kV


def test_a_deck_that_cannot_be_read_is_an_error_naming_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"master.dss": "New Circuit.c bus1=src\nNew Line.L1 bus1=src bus2=a\n"})

    def broken(bus: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(dss_script, "strip_phases", broken)
    with pytest.raises(ImportError_, match=r"master\.dss:1.*boom"):
        import_topology("opendss", str(tmp_path / "master.dss"), str(tmp_path / "out"))
    assert import_main("opendss", str(tmp_path / "master.dss"), str(tmp_path / "out")) == 1
    assert "master.dss:1" in capsys.readouterr().err


def test_a_circuit_without_an_enabled_source_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"master.dss": "New Circuit.c bus1=src\nDisable Vsource.source\n"})
    with pytest.raises(ImportError_, match="no enabled source"):
        import_topology("opendss", str(tmp_path / "master.dss"), str(tmp_path / "out"))


def test_a_folder_picks_the_master_not_the_run_script(tmp_path: Path) -> None:
    write(tmp_path, {
        "Run_Master_x.dss": "Compile master_x.dss\nNew Line.extra bus1=a bus2=b\n",
        "master_x.dss": "New Circuit.x bus1=src\nNew Line.L1 bus1=src bus2=a\nNew Load.h bus1=a\n",
    })
    summary = import_topology("opendss", str(tmp_path), str(tmp_path / "out"))
    assert summary.feeders == ["x"] and summary.customers == 1
    assert "b" not in load_bundle(tmp_path / "out").nodes
