"""The committed demo county bundle and demo replay scenario (scripts/gen_demo_county.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from outage_sentinel.topology import LIAISON_ROLES, Topology, load_bundle

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "topology"
SCENARIO = ROOT / "fixtures" / "scenarios" / "demo.jsonl"
GENERATOR = ROOT / "scripts" / "gen_demo_county.py"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_bundle(BUNDLE)  # raises TopologyError listing every problem


@pytest.fixture(scope="module")
def scenario() -> list[dict]:
    return [json.loads(line) for line in SCENARIO.read_text(encoding="utf-8").splitlines() if line]


def test_counts(topo: Topology) -> None:
    stats = topo.stats()
    assert stats["substations"] == 3
    assert stats["feeders"] >= 12
    assert stats["transformer_areas"] >= 300
    assert stats["villages"] >= 60
    assert stats["crews"] >= 5
    kinds = stats["kinds"]
    for kind in ("source", "breaker", "recloser", "sectionalizer", "fuse", "switch", "junction"):
        assert kinds.get(kind, 0) > 0, kind
    assert kinds["source"] == stats["feeders"]
    assert {v.area_type for v in topo.villages.values()} == {"urban", "rural", "remote"}


def test_every_feeder_has_its_devices(topo: Topology) -> None:
    by_feeder: dict[str, Counter[str]] = {}
    for n in topo.nodes.values():
        if not n.normally_open:
            by_feeder.setdefault(n.feeder, Counter())[n.kind] += 1
    for feeder, kinds in by_feeder.items():
        assert kinds["source"] == 1 and kinds["breaker"] == 1, feeder
        assert 1 <= kinds["recloser"] <= 2, feeder
        assert kinds["fuse"] >= 1 and kinds["transformer"] >= 10, feeder
    source = next(n for n in topo.nodes.values() if n.kind == "source")
    assert source.extra["substation"] and source.extra["feeder_name"].startswith("10kV")


def test_every_transformer_energised_with_customers_and_village(topo: Topology) -> None:
    for t in topo.transformers:
        node = topo.node(t)
        assert topo.energised[topo.pos[t]], t
        assert 20 <= node.customers <= 300, t
        assert node.village in topo.villages
        assert topo.feeder_of(t) == node.feeder
    # most areas sit behind a branch fuse, some directly on the trunk
    behind = Counter(topo.node(topo.protective_upstream(t)).kind for t in topo.transformers)
    assert behind["fuse"] > 0.7 * len(topo.transformers)
    assert sum(v for k, v in behind.items() if k != "fuse") > 0


def test_tie_switches(topo: Topology) -> None:
    ties = [n for n in topo.nodes.values() if n.normally_open]
    assert len(ties) >= 3
    for tie in ties:
        assert tie.kind == "switch"
        neighbours = [b if a == tie.id else a for a, b in topo.edges if tie.id in (a, b)]
        assert len(neighbours) == 2
        assert len({topo.feeder_of(n) for n in neighbours}) == 2, tie.id


def test_every_village_has_each_liaison_role(topo: Topology) -> None:
    for vid in topo.villages:
        roles = Counter(x.role for x in topo.liaisons_by_village.get(vid, []))
        for role in LIAISON_ROLES:
            assert roles[role] >= 1, (vid, role)
    for liaison in topo.liaisons:
        assert len(liaison.phone) == 11 and liaison.phone[:2] in ("13", "15", "18")
        assert liaison.channel in ("wecom", "dingtalk", "feishu", "sms")
        if liaison.channel == "sms":
            assert liaison.target == liaison.phone


def test_customers_importance_and_tags(topo: Topology) -> None:
    importance = {c.importance for c in topo.customers}
    assert {"special", "first", "second"} <= importance
    tags = {t for c in topo.customers for t in c.tags}
    assert {"life_support", "elderly_alone"} <= tags
    assert all(c.transformer in topo.nodes for c in topo.customers)


def test_meters(topo: Topology) -> None:
    terminals = Counter(m.transformer for m in topo.meters if m.kind == "terminal")
    assert set(terminals) == set(topo.transformers) and set(terminals.values()) == {1}
    assert topo.resolve(topo.meters[1].id) == topo.meters[1].transformer
    assert (BUNDLE / "meters.csv").stat().st_size < 3_000_000


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    out = tmp_path / "topology"
    scenario = tmp_path / "demo.jsonl"
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), "--scenario", str(scenario)],
                   check=True, capture_output=True)
    committed = sorted(p.name for p in BUNDLE.glob("*.csv"))
    assert committed == sorted(p.name for p in out.glob("*.csv"))
    for name in committed:
        assert (out / name).read_bytes() == (BUNDLE / name).read_bytes(), name
    assert scenario.read_bytes() == SCENARIO.read_bytes()


def test_scenario_ids_exist(topo: Topology, scenario: list[dict]) -> None:
    assert [e["at"] for e in scenario] == sorted(e["at"] for e in scenario)
    for e in scenario:
        assert e["kind"] in ("planned", "temporary", "fault")
        assert e["status"] in ("active", "restored", "cancelled")
        assert e["feeder"] in topo.feeders
        if e["device"] is not None:
            assert e["device"] in topo.nodes
            assert topo.feeder_of(e["device"]) == e["feeder"]
        assert e["transformers"]
        for t in e["transformers"]:
            assert topo.node(t).kind == "transformer"
            assert topo.feeder_of(t) == e["feeder"]
        assert e["area_text"] and e["cause"]


def test_scenario_story(topo: Topology, scenario: list[dict]) -> None:
    revisions: dict[str, list[dict]] = {}
    for e in scenario:
        revisions.setdefault(e["event_id"], []).append(e)
    faults = [eid for eid, revs in revisions.items() if revs[0]["kind"] == "fault"]
    planned = [eid for eid, revs in revisions.items() if revs[0]["kind"] == "planned"]
    assert len(faults) == 2 and len(planned) == 1
    feeders = {revisions[eid][0]["feeder"] for eid in revisions}
    assert len(feeders) == 3

    # fault 1: a fuse blew, no device named; the areas all sit behind one fuse
    first = revisions[faults[0]]
    assert first[0]["device"] is None and 3 <= len(first[0]["transformers"]) <= 5
    fuse = topo.common_protective_device(first[0]["transformers"])
    assert fuse is not None and topo.node(fuse).kind == "fuse"
    assert set(first[0]["transformers"]) < set(first[1]["transformers"])
    for t in first[1]["transformers"]:
        assert topo.is_downstream(t, fuse)
    assert set(first[1]["transformers"]) == set(topo.downstream_transformers(fuse))
    assert first[-1]["status"] == "restored"

    # fault 2: a named recloser and every area downstream of it
    second = revisions[faults[1]]
    recloser = second[0]["device"]
    assert topo.node(recloser).kind == "recloser"
    assert set(second[0]["transformers"]) == set(topo.downstream_transformers(recloser))
    assert all(topo.is_downstream(t, recloser) for t in second[0]["transformers"])
    assert second[-1]["status"] == "restored"

    # planned outage tomorrow, four hours
    plan = revisions[planned[0]][0]
    assert plan["start_offset"] == 86400 and plan["etr_offset"] == 86400 + 4 * 3600
    assert set(plan["transformers"]) == set(topo.downstream_transformers(plan["device"]))
