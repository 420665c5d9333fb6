"""The locate and topology-import commands: called directly and through the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from outage_sentinel.locate import import_main, locate_main
from tests.localise_fixture import write

REPO = Path(__file__).resolve().parents[1]
FEEDERS = REPO.parent / "shared/data/feeders"


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return write(tmp_path / "bundle")


def run(bundle: Path, tmp_path: Path, text: str) -> tuple[int, list[dict[str, object]]]:
    evidence = tmp_path / "evidence.jsonl"
    evidence.write_text(text, encoding="utf-8")
    out = io.StringIO()
    code = locate_main(str(bundle), str(evidence), out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_single_json_object(bundle: Path, tmp_path: Path) -> None:
    code, answers = run(bundle, tmp_path, json.dumps(
        {"id": "c1", "dead": ["T1", "T2"], "alive": ["T4"], "calls": ["T1", "T1"],
         "open_devices": []}, indent=2))
    assert code == 0
    assert len(answers) == 1
    a = answers[0]
    assert a["id"] == "c1"
    assert a["hypotheses"][0]["devices"] == ["F1"]
    assert a["hypotheses"][0]["customers"] == 70
    assert a["hypotheses"][0]["villages"] == ["V1"]
    assert a["hypotheses"][0]["important_customers"] == ["C-HOSP"]
    assert isinstance(a["elapsed_ms"], float) and a["elapsed_ms"] >= 0
    assert a["unknown"] == []


def test_json_lines_with_a_bad_line_continue_and_exit_1(bundle: Path, tmp_path: Path) -> None:
    text = "\n".join([
        json.dumps({"id": "a", "dead": ["T3"], "calls": ["C-LIFE", "M-T3-1"]}),
        "{not json",
        json.dumps({"id": "b", "dead": "T1"}),
        "",
        json.dumps({"id": "c", "open_devices": ["R1"], "dead": ["nope"]}),
    ])
    code, answers = run(bundle, tmp_path, text)
    assert code == 1
    assert [a["id"] for a in answers] == ["a", None, "b", "c"]
    assert answers[0]["hypotheses"][0]["devices"] == ["F2"]
    assert answers[0]["unknown"] == []  # customer and meter ids map to their area
    assert answers[1]["line"] == 2 and "invalid JSON" in str(answers[1]["error"])
    assert answers[2]["line"] == 3 and "dead" in str(answers[2]["error"])
    assert answers[3]["hypotheses"][0]["devices"] == ["R1"]
    assert answers[3]["unknown"] == ["nope"]


def test_json_array_of_cases(bundle: Path, tmp_path: Path) -> None:
    code, answers = run(bundle, tmp_path, json.dumps([
        {"id": 1, "dead": ["T9", "T10"]}, {"id": 2, "dead": ["T5"], "planned": ["F3"]}]))
    assert code == 0
    assert answers[0]["hypotheses"][0]["devices"] == ["F4"]
    assert answers[1]["hypotheses"] == [] and answers[1]["explained"] == ["T5"]


# F1 clearly out; under F2 a single call and nothing else (a spurious call, or a second fault?)
WEAK_SECOND = {"dead": ["T1", "T2"], "alive": ["T4", "T7", "T8"],
               "calls": ["T1"] * 4 + ["T2"] * 3 + ["T3"]}


def test_storm_context_per_case(bundle: Path, tmp_path: Path) -> None:
    code, answers = run(bundle, tmp_path, "\n".join(json.dumps(c) for c in [
        {"id": "calm", **WEAK_SECOND},
        {"id": "quiet", **WEAK_SECOND, "storm": False, "faults_elsewhere": 0,
         "devices_elsewhere": 5000},
        {"id": "storm", **WEAK_SECOND, "storm": True},
    ]))
    assert code == 0
    devices = {a["id"]: a["hypotheses"][0]["devices"] for a in answers}  # type: ignore[index]
    assert devices["calm"] == ["F1"] and devices["quiet"] == ["F1"]
    assert sorted(devices["storm"]) == ["F1", "F2"]


@pytest.mark.parametrize("extra, key", [
    ({"storm": "yes"}, "storm"),
    ({"faults_elsewhere": -2, "devices_elsewhere": 10}, "faults_elsewhere"),
    ({"faults_elsewhere": 3, "devices_elsewhere": 1.5}, "devices_elsewhere"),
    ({"faults_elsewhere": 30, "devices_elsewhere": 10}, "faults_elsewhere"),
])
def test_bad_context_value_names_the_case_and_key(bundle: Path, tmp_path: Path,
                                                  extra: dict[str, object], key: str) -> None:
    code, answers = run(bundle, tmp_path, "\n".join(json.dumps(c) for c in [
        {"id": "before", "dead": ["T9", "T10"]},
        {"id": "bad-one", "dead": ["T1", "T2"], **extra},
        {"id": "after", "dead": ["T3"], "storm": True},
    ]))
    assert code == 1
    assert [a["id"] for a in answers] == ["before", "bad-one", "after"]
    assert answers[0]["hypotheses"][0]["devices"] == ["F4"]  # type: ignore[index]
    assert answers[2]["hypotheses"][0]["devices"] == ["F2"]  # type: ignore[index]
    bad = answers[1]
    assert "hypotheses" not in bad and bad["line"] == 2
    assert "bad-one" in str(bad["error"]) and key in str(bad["error"])


def test_default_context_applies_to_cases_without_one(bundle: Path, tmp_path: Path) -> None:
    from outage_sentinel.localise import FaultContext

    evidence = tmp_path / "e.jsonl"
    evidence.write_text("\n".join(json.dumps(c) for c in [
        {"id": "inherits", **WEAK_SECOND}, {"id": "own", **WEAK_SECOND, "storm": False}]))
    out = io.StringIO()
    assert locate_main(str(bundle), str(evidence), out, context=FaultContext(storm=True)) == 0
    answers = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted(answers[0]["hypotheses"][0]["devices"]) == ["F1", "F2"]
    assert answers[1]["hypotheses"][0]["devices"] == ["F1"]


def test_bad_topology_exits_4_as_every_verb_does(tmp_path: Path) -> None:
    evidence = tmp_path / "e.json"
    evidence.write_text("{}")
    assert locate_main(str(tmp_path / "missing"), str(evidence), io.StringIO()) == 4


def test_import_main_writes_a_loadable_bundle(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mini.dss"
    src.write_text("New Circuit.c bus1=s\nNew Line.L1 bus1=s bus2=a\nNew Load.x bus1=a\n")
    assert import_main("opendss", str(src), str(tmp_path / "out")) == 0
    assert "1 transformer areas" in capsys.readouterr().out
    assert import_main("nonsense", str(src), str(tmp_path / "out2")) == 2


# -- through the CLI (cli.py is owned by the lead; these run when the verbs are wired) -----------


def test_cli_locate(bundle: Path, tmp_path: Path) -> None:
    evidence = tmp_path / "e.jsonl"
    evidence.write_text(json.dumps({"id": "x", "dead": ["T1", "T2"]}) + "\nbad\n")
    proc = subprocess.run([sys.executable, "-m", "outage_sentinel", "locate", "--topology",
                           str(bundle), "--evidence", str(evidence)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert proc.returncode == 1, proc.stderr
    assert lines[0]["hypotheses"][0]["devices"] == ["F1"]
    assert lines[1]["line"] == 2


def test_cli_locate_reads_the_evidence_from_standard_input(bundle: Path) -> None:
    """``--evidence -`` as documented (issue 13): the cases come from stdin."""
    cases = json.dumps({"id": "a", "dead": ["T1", "T2"]}) + "\n" + json.dumps(
        {"id": "b", "dead": ["T1"]}) + "\n"
    proc = subprocess.run([sys.executable, "-m", "outage_sentinel", "locate", "--topology",
                           str(bundle), "--evidence", "-"], input=cases,
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["id"] for x in proc.stdout.splitlines()] == ["a", "b"]


@pytest.mark.skipif(not FEEDERS.is_dir(), reason=f"public feeders not found at {FEEDERS}")
def test_cli_topology_import(tmp_path: Path) -> None:
    out = tmp_path / "r4"
    proc = subprocess.run([sys.executable, "-m", "outage_sentinel", "topology", "import", "glm",
                           str(FEEDERS / "taxonomy" / "R4-12.47-1.glm"), str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "551 transformer areas" in proc.stdout
    assert (out / "nodes.csv").exists()


def test_storm_flag_of_the_command_is_the_default_context(
        bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from outage_sentinel import cli

    evidence = tmp_path / "e.jsonl"
    evidence.write_text("\n".join(json.dumps(c) for c in [
        {"id": "inherits", **WEAK_SECOND}, {"id": "own", **WEAK_SECOND, "storm": False}]))
    args = ["locate", "--topology", str(bundle), "--evidence", str(evidence)]
    for flag, inherited in (([], ["F1"]), (["--storm"], ["F1", "F2"])):
        assert cli.main([*args, *flag]) == 0
        answers = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert sorted(answers[0]["hypotheses"][0]["devices"]) == inherited
        assert answers[1]["hypotheses"][0]["devices"] == ["F1"]
