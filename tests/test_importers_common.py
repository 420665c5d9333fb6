"""The bundle rules every importer shares (``importers/common.py``), on networks built by hand,
and the import command's answer when the bundle cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from outage_sentinel.importers.common import (
    FOLD_WARNINGS,
    Branch,
    ImportError_,
    RawNetwork,
    write_bundle,
)
from outage_sentinel.locate import import_main
from outage_sentinel.topology import Topology, load_bundle


def network(*branches: Branch, customers: dict[str, int]) -> RawNetwork:
    """A source at ``src``, a line to ``n1``, then ``branches``; ``customers`` by bus."""
    net = RawNetwork(name="f")
    for br in (Branch("l0", "line", "src", "n1"), *branches):
        net.bus(br.a)
        net.bus(br.b)
        net.branches.append(br)
    net.sources.append(("grid", "src"))
    net.customers_at.update(customers)
    net.loads_at.update(customers)
    return net


def service(name: str, a: str, b: str) -> Branch:
    return Branch(name, "transformer", a, b, service=True)


def written(net: RawNetwork, tmp_path: Path) -> tuple[list[str], Topology]:
    summary = write_bundle(net, tmp_path / "bundle")
    return summary.warnings, load_bundle(tmp_path / "bundle")


def areas(topo: Topology) -> dict[str, int]:
    return {t: topo.nodes[t].customers for t in topo.transformers}


# -- cascaded service transformers --------------------------------------------------------------


def test_a_service_transformer_behind_another_is_folded_into_its_area(tmp_path: Path) -> None:
    # 12.47 kV -> 480 V (x1), then 480 V -> 240 V (x2) read as a second service transformer
    net = network(service("x1", "n1", "lv480"), Branch("l1", "line", "lv480", "shop"),
                  service("x2", "shop", "lv240"), Branch("l2", "line", "lv240", "flat"),
                  customers={"shop": 1, "lv240": 2, "flat": 3})
    warnings, topo = written(net, tmp_path)
    assert areas(topo) == {"x1": 6}  # every customer once, in the outer area
    assert "x2" not in topo.nodes and "lv240" not in topo.nodes
    assert any("x2" in w and "x1" in w for w in warnings)


def test_a_chain_of_three_folds_into_the_outermost(tmp_path: Path) -> None:
    net = network(service("x1", "n1", "a"), service("x2", "a", "b"), service("x3", "b", "c"),
                  customers={"a": 1, "b": 1, "c": 1})
    warnings, topo = written(net, tmp_path)
    assert areas(topo) == {"x1": 3}
    nested = [w for w in warnings if "low-voltage side" in w]
    assert len(nested) == 2 and all("x1" in w for w in nested)
    assert any("x3" in w for w in nested) and any("x2" in w for w in nested)


def test_two_areas_behind_one_stay_one_area_each_feeder(tmp_path: Path) -> None:
    # two inner transformers on the outer's secondary, and an unrelated area beside it
    net = network(service("x1", "n1", "a"), service("x2", "a", "b"), service("x3", "a", "c"),
                  service("y1", "n1", "d"),
                  customers={"a": 1, "b": 2, "c": 3, "d": 4})
    _, topo = written(net, tmp_path)
    assert areas(topo) == {"x1": 6, "y1": 4}
    assert topo.total_customers == 10


def test_many_folded_transformers_are_named_up_to_a_limit(tmp_path: Path) -> None:
    inner = [service(f"y{k}", "a", f"b{k}") for k in range(FOLD_WARNINGS + 5)]
    net = network(service("x1", "n1", "a"), *inner,
                  customers={f"b{k}": 1 for k in range(FOLD_WARNINGS + 5)})
    warnings, topo = written(net, tmp_path)
    assert areas(topo) == {"x1": FOLD_WARNINGS + 5}
    assert sum("low-voltage side of x1" in w for w in warnings) == FOLD_WARNINGS
    assert warnings[-1] == ("... and 5 more service transformer(s) fed from another's "
                            "low-voltage side")


def test_an_inner_transformer_whose_secondary_reaches_the_source(tmp_path: Path) -> None:
    # x2's secondary has a tie to a second source: x2 is a plain connection, so x1's
    # secondary reaches that source through it, and x1 is one too; the loads get
    # synthetic areas
    net = network(service("x1", "n1", "a"), service("x2", "a", "b"),
                  Branch("tie", "switch", "b", "src2", normally_open=True),
                  customers={"a": 1, "b": 2})
    net.sources.append(("grid2", "src2"))
    warnings, topo = written(net, tmp_path)
    assert areas(topo) == {"area-a": 1, "area-b": 2}
    assert sum("reaches a source" in w for w in warnings) == 2


def test_a_service_transformer_on_one_bus_is_a_plain_connection(tmp_path: Path) -> None:
    # its "secondary" is its primary, which the source feeds
    net = network(Branch("l1", "line", "n1", "a"), service("x1", "a", "a"),
                  customers={"a": 2})
    warnings, topo = written(net, tmp_path)
    assert areas(topo) == {"area-a": 2}
    assert any("x1" in w and "reaches a source" in w for w in warnings)


def test_service_transformers_in_a_ring_without_a_source(tmp_path: Path) -> None:
    # an island where each transformer feeds the other's primary: dropped, no crash
    net = network(service("x1", "i1", "i2"), service("x2", "i2", "i1"),
                  service("x3", "n1", "a"), customers={"a": 1, "i1": 1, "i2": 1})
    _, topo = written(net, tmp_path)
    assert areas(topo) == {"x3": 1}


# -- writing the bundle -------------------------------------------------------------------------


def small_glm(tmp_path: Path) -> Path:
    src = tmp_path / "mini.glm"
    src.write_text("object node { name n0; bustype SWING; nominal_voltage 7200; }\n"
                   "object load { name ld; parent n0; }\n")
    return src


def test_a_file_where_the_bundle_directory_should_be(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "bundle"
    outdir.write_text("not a folder")
    assert import_main("glm", str(small_glm(tmp_path)), str(outdir)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(outdir) in err and "not a directory" in err
    assert outdir.read_text() == "not a folder"


def test_a_file_where_a_folder_above_the_bundle_should_be(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "parent").write_text("")
    outdir = tmp_path / "parent" / "bundle"
    assert import_main("glm", str(small_glm(tmp_path)), str(outdir)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot write" in err and str(tmp_path / "parent") in err


def test_a_write_that_fails_is_an_import_error_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, *args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(ImportError_, match=r"edges\.csv|nodes\.csv") as caught:
        write_bundle(network(service("x1", "n1", "a"), customers={"a": 1}), tmp_path / "out")
    assert "No space left on device" in str(caught.value)


def test_a_write_that_fails_halfway_leaves_the_bundle_before_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon reloads the bundle on SIGHUP: new nodes beside old edges would be a network
    nobody drew. A failed import leaves the last good bundle, and nothing of its own."""
    out = tmp_path / "out"
    write_bundle(network(service("x1", "n1", "a"), customers={"a": 1}), out)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    real_open = Path.open

    def full_at_edges(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "edges.csv":
            raise OSError(28, "No space left on device", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", full_at_edges)
    bigger = network(service("x1", "n1", "a"), service("x2", "n1", "b"),
                     customers={"a": 1, "b": 2})
    with pytest.raises(ImportError_) as caught:
        write_bundle(bigger, out)
    monkeypatch.undo()
    assert str(caught.value).startswith(f"{out / 'edges.csv'}: cannot write the bundle")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    write_bundle(bigger, out)
    assert sorted(load_bundle(out).transformers) == ["x1", "x2"]
    assert sorted(f.name for f in out.iterdir()) == sorted(before)


def test_where_folders_cannot_be_swapped_the_files_are_moved_in_after_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount point, or a filesystem without an atomic swap: the checked files are moved in
    one by one, and the bundle's other files stay."""
    from outage_sentinel.importers import common

    out = tmp_path / "out"
    write_bundle(network(service("x1", "n1", "a"), customers={"a": 1}), out)
    (out / "README.md").write_text("ours")
    folder = out.stat().st_ino
    monkeypatch.setattr(common, "exchange_folders", lambda a, b: False)
    write_bundle(network(service("x1", "n1", "a"), service("x2", "n1", "b"),
                         customers={"a": 1, "b": 2}), out)
    assert out.stat().st_ino == folder and (out / "README.md").read_text() == "ours"
    assert sorted(load_bundle(out).transformers) == ["x1", "x2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_bundle_folder_that_is_a_mount_point_is_filled_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A volume or bind mount cannot be swapped nor renamed into from beside it (another
    filesystem): the bundle is staged inside it and its files moved in, the folder kept."""
    out = tmp_path / "out"
    write_bundle(network(service("x1", "n1", "a"), customers={"a": 1}), out)
    folder = out.stat().st_ino
    real = Path.is_mount
    monkeypatch.setattr(Path, "is_mount", lambda p: p == out or real(p))
    write_bundle(network(service("x1", "n1", "a"), service("x2", "n1", "b"),
                         customers={"a": 1, "b": 2}), out)
    assert out.stat().st_ino == folder
    assert sorted(load_bundle(out).transformers) == ["x1", "x2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


BIND_IMPORT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from outage_sentinel.importers.common import write_bundle
from outage_sentinel.topology import load_bundle
from tests.test_importers_common import network, service
out = Path(sys.argv[1])
write_bundle(network(service("x1", "n1", "a"), customers={{"a": 1}}), out)
write_bundle(network(service("x1", "n1", "a"), service("x2", "n1", "b"),
                     customers={{"a": 1, "b": 2}}), out)
print(sorted(load_bundle(out).transformers), sorted(p.name for p in out.parent.iterdir()))
"""


def test_a_bundle_folder_bind_mounted_is_filled_in_place(tmp_path: Path) -> None:
    """A real bind mount (same filesystem, yet no rename crosses it), in a user and mount
    namespace of its own; skipped where the system allows none."""
    import shutil
    import subprocess
    import sys

    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {tmp_path} {tmp_path}"],
                           capture_output=True, text=True, timeout=60) \
        if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"no user and mount namespace here: {probe.stderr.strip()[:200] if probe else ''}")
    source, out = tmp_path / "volume", tmp_path / "parent" / "topology"
    source.mkdir()
    out.mkdir(parents=True)
    script = tmp_path / "import.py"
    script.write_text(BIND_IMPORT.format(root=str(Path(__file__).resolve().parents[1])))
    r = subprocess.run(["unshare", "-rm", "sh", "-c",
                        f"mount --bind {source} {out} && {sys.executable} {script} {out}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['x1', 'x2'] ['topology']"
