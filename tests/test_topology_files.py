"""Bundle files that cannot be read are listed problems (exit 4), never a traceback.

Reproducers of issue 11: ``edges.csv`` a directory or unreadable gave a traceback and rc 1 from
``check``, ``run`` and ``topology stats``; a cycle was reported as one 1 MB line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
