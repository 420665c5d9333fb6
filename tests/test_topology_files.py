"""Bundle files that cannot be read are listed problems (exit 4), never a traceback.

Reproducers of issue 11: ``edges.csv`` a directory or unreadable gave a traceback and rc 1 from
``check``, ``run`` and ``topology stats``; a cycle was reported as one 1 MB line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from outage_sentinel.topology import TopologyError, load_bundle, topology_from_records
from tests.e2e_helpers import ROOT, make_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=120)


def bundle_with_edges_as_directory(tmp: Path) -> Path:
    bundle = tmp / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    (bundle / "edges.csv").unlink()
    (bundle / "edges.csv").mkdir()
    return bundle


def test_edges_csv_a_directory_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    bundle = bundle_with_edges_as_directory(tmp_path)
    with pytest.raises(TopologyError) as info:
        load_bundle(bundle)
    (problem,) = info.value.problems
    assert problem.file == "edges.csv"
    assert str(problem).startswith("edges.csv: cannot read: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    (bundle / "edges.csv").chmod(0)
    try:
        with pytest.raises(TopologyError) as info:
            load_bundle(bundle)
    finally:
        (bundle / "edges.csv").chmod(0o644)
    assert [str(p) for p in info.value.problems] == ["edges.csv: cannot read: Permission denied"]


@pytest.mark.parametrize(("verb", "rc"), [(("check",), 1), (("run", "--once"), 4),
                                         (("topology", "stats"), 4)])
def test_every_verb_names_the_file_with_its_exit_code(tmp_path: Path, verb: tuple[str, ...],
                                                      rc: int) -> None:
    """``check`` lists problems (exit 1, README "Exit codes"); ``run`` and ``stats`` refuse
    the bundle (exit 4)."""
    bundle = bundle_with_edges_as_directory(tmp_path)
    cfg = make_config(tmp_path, topology=str(bundle))
    r = cli("--config", str(cfg), *verb)
    assert r.returncode == rc, (r.returncode, r.stderr)
    assert "edges.csv: cannot read" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_long_cycle_is_one_short_line_with_a_count() -> None:
    n = 50_000
    nodes = [{"id": "S", "kind": "source", "feeder": "F"}] + [
        {"id": f"J{i}", "kind": "junction", "feeder": "F"} for i in range(n)]
    edges = [("S", "J0"), *((f"J{i}", f"J{i + 1}") for i in range(n - 1)), (f"J{n - 1}", "J0")]
    with pytest.raises(TopologyError) as info:
        topology_from_records(nodes, edges)
    (problem,) = info.value.problems
    text = str(problem)
    assert len(text) < 400
    assert "cycle in the energised network: J0 - J1" in text
    assert "… and 49,981 more nodes" in text


# -- problems name the line an editor shows; coordinates are on Earth ---------------------------


def demo_copy(tmp: Path) -> Path:
    bundle = tmp / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    return bundle


def rewrite(path: Path, change: Callable[[list[str]], None]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    change(lines)
    path.write_text("\n".join(lines), encoding="utf-8")


def test_problems_name_the_file_line_past_blank_lines_and_quoted_line_breaks(
        tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)

    def nodes(lines: list[str]) -> None:
        lines[9] = lines[9].replace(",junction,", ",junctoin,")   # file line 10 ...
        lines[1] = lines[1].replace("城关变10kV城东线出线", '"城关变10kV\n城东线出线"')
        lines[1:1] = ["", "", ""]                                  # ... now line 14

    def edges(lines: list[str]) -> None:
        lines[2:2] = [" ", ""]                           # a space-only line is a row (of "")
        lines[5] = lines[5].split(",")[0] + ",NOPE"       # file line 6

    def villages(lines: list[str]) -> None:
        lines[1:1] = [""]
        lines[3] = lines[3].replace(",urban,", ",town,")  # file line 4

    rewrite(bundle / "nodes.csv", nodes)
    rewrite(bundle / "edges.csv", edges)
    rewrite(bundle / "villages.csv", villages)
    with pytest.raises(TopologyError) as info:
        load_bundle(bundle)
    where = {(p.file, p.row) for p in info.value.problems}
    assert {("nodes.csv", 14), ("edges.csv", 3), ("edges.csv", 6), ("villages.csv", 4)} <= where
    text = (bundle / "nodes.csv").read_text(encoding="utf-8").split("\n")
    assert "junctoin" in text[14 - 1]


@pytest.mark.parametrize(("axis", "value", "message"), [
    ("lon", "inf", "lon must be a number from -180 to 180, got 'inf'"),
    ("lat", "999", "lat must be a number from -90 to 90, got '999'"),
    ("lat", "nan", "lat must be a number from -90 to 90, got 'nan'"),
    ("lon", "-180.5", "lon must be a number from -180 to 180, got '-180.5'"),
    ("lat", "1e999", "lat must be a number from -90 to 90, got '1e999'"),
])
def test_a_coordinate_off_the_earth_is_a_problem_naming_file_line_and_column(
        tmp_path: Path, axis: str, value: str, message: str) -> None:
    bundle = demo_copy(tmp_path)
    column = 7 if axis == "lat" else 8

    def nodes(lines: list[str]) -> None:
        fields = lines[3].split(",")
        fields[column] = value
        lines[3] = ",".join(fields)
        lines[1:1] = [""]                                  # the row is on file line 5

    rewrite(bundle / "nodes.csv", nodes)
    with pytest.raises(TopologyError) as info:
        load_bundle(bundle)
    assert [str(p) for p in info.value.problems] == [f"nodes.csv:5 (J-CG01-01): {message}"]


def test_the_map_of_a_bundle_that_loads_is_strict_json(tmp_path: Path) -> None:
    import json

    from outage_sentinel.board.geo import map_payload

    bundle = demo_copy(tmp_path)
    rewrite(bundle / "nodes.csv", lambda lines: lines.__setitem__(
        3, lines[3].replace("36.499939", "-90").replace("115.511312", "180")))
    body = json.dumps(map_payload(load_bundle(bundle)), allow_nan=False)
    assert "Infinity" not in body and "NaN" not in body
