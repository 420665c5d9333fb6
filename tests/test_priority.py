"""Repair priority: the ordering docs/design.md §4 asks for, the formula's terms, and the config."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outage_sentinel.config import PriorityConfig, parse_config
from outage_sentinel.priority import Priority, PriorityWeights, score, summary
from outage_sentinel.topology import Topology, load_bundle
from tests.conftest import REPO, T0, build_topology

# One feeder, four transformer areas behind their own fuses, so each area is an outage alone:
#   S1 ─ B1 ─ J1 ─ FU1 ─ T1 (1 customer: the hospital)
#               ├─ FU2 ─ T2 (500 ordinary customers)
#               ├─ FU3 ─ T3 (10 customers, one on life support)
#               └─ FU4 ─ T4 (10 customers, one elderly living alone)
EDGES = [("S1", "B1"), ("B1", "J1"), ("J1", "FU1"), ("FU1", "T1"), ("J1", "FU2"), ("FU2", "T2"),
         ("J1", "FU3"), ("FU3", "T3"), ("J1", "FU4"), ("FU4", "T4"), ("J1", "FU5"), ("FU5", "T5"),
         ("J1", "FU6"), ("FU6", "T6"), ("J1", "FU7"), ("FU7", "T7")]
CUSTOMERS = [
    {"id": "C-HOSP", "transformer": "T1", "name": "县人民医院", "phone": "13700000001",
     "importance": "special", "tags": ""},
    {"id": "C-LIFE", "transformer": "T3", "name": "居民甲", "phone": "13700000002",
     "importance": "", "tags": "life_support"},
    {"id": "C-OLD", "transformer": "T4", "name": "居民乙", "phone": "13700000003",
     "importance": "", "tags": "elderly_alone"},
    {"id": "C-FIRST", "transformer": "T5", "name": "自来水厂", "phone": "13700000004",
     "importance": "first", "tags": ""},
    {"id": "C-SECOND", "transformer": "T6", "name": "中学", "phone": "13700000005",
     "importance": "second", "tags": ""},
    {"id": "C-COLD", "transformer": "T7", "name": "冷库", "phone": "13700000006",
     "importance": "", "tags": "cold_storage"},
]


@pytest.fixture(scope="module")
def topo() -> Topology:
    return build_topology(EDGES, customers={"T1": 1, "T2": 500, "T3": 10, "T4": 10, "T5": 10,
                                            "T6": 10, "T7": 10},
                          customer_rows=CUSTOMERS)


def at(topo: Topology, *areas: str, hours: float = 0.0, **kw: Any) -> Priority:
    return score(topo, areas, T0, T0 + timedelta(hours=hours), **kw)


def test_special_grade_hospital_beats_500_ordinary_customers(topo: Topology) -> None:
    assert at(topo, "T1").score > at(topo, "T2").score
    # ... even when the ordinary outage has been going on for a whole day longer.
    assert at(topo, "T1").score > at(topo, "T2", hours=24).score


def test_grades_rank_special_first_second_then_ordinary(topo: Topology) -> None:
    special, first, second = at(topo, "T1"), at(topo, "T5"), at(topo, "T6")
    assert special.score > first.score > second.score > at(topo, "T2").score


def test_life_support_beats_elderly_alone_beats_ordinary_area(topo: Topology) -> None:
    life, old = at(topo, "T3"), at(topo, "T4")
    assert life.score > old.score
    plain = build_topology(EDGES, customers={"T3": 10})
    assert old.score > at(plain, "T3").score  # same 10 customers, nobody tagged


def test_elapsed_time_raises_the_score_up_to_the_cap(topo: Topology) -> None:
    scores = [at(topo, "T2", hours=h).score for h in (0, 1, 6, 24, 48)]
    assert scores[0] < scores[1] < scores[2] < scores[3] == scores[4]
    assert scores[1] - scores[0] == 20  # 20 points per hour by default


def test_now_before_start_counts_as_no_time() -> None:
    grid = build_topology(EDGES)
    early = score(grid, ["T2"], T0, T0 - timedelta(hours=3))
    assert early.score == score(grid, ["T2"], T0, T0).score
    assert early.elapsed_hours == 0.0


def test_breakdown_adds_up_to_the_score(topo: Topology) -> None:
    p = at(topo, "T1", "T2", "T3", "T4", hours=2)
    assert p.score == round(sum(p.breakdown.values()))
    assert p.breakdown["special"] == 1000
    assert p.breakdown["life_support"] == 600
    assert p.breakdown["elderly_alone"] == 120
    assert p.breakdown["customers"] == pytest.approx(40 * math.log10(1 + 521))
    assert p.breakdown["elapsed"] == pytest.approx(40)
    assert p.customers == 521


def test_reasons_name_people_most_important_first(topo: Topology) -> None:
    p = at(topo, "T4", "T3", "T1", hours=1.5)
    assert p.reasons == ("县人民医院（特级重要用户）", "生命支持设备用户1户：居民甲",
                         "独居老人1户：居民乙", "停电21户", "已停电1小时30分钟")
    en = at(topo, "T1", language="en")
    assert en.reasons[0] == "县人民医院 (special-grade important user)"
    assert "1 customers off" in en.reasons


def test_special_care_and_important_ids(topo: Topology) -> None:
    p = at(topo, "T4", "T3", "T6", "T1", "T5", "T7")
    assert p.special_care == ("C-LIFE", "C-OLD")  # life support first, whatever the input order
    assert p.important == ("C-HOSP", "C-FIRST", "C-SECOND")
    assert "C-COLD" not in p.special_care  # a weighted-or-not tag is not a care tag


def test_extra_tags_weigh_only_when_configured(topo: Topology) -> None:
    base = at(topo, "T7")
    weighted = at(topo, "T7", weights=PriorityWeights(extra_tags=(("cold_storage", 50.0),)))
    assert "cold_storage" not in base.breakdown
    assert weighted.score == base.score + 50
    assert weighted.counts["cold_storage"] == 1
    assert "冷库1户：冷库" in weighted.reasons


def test_a_household_with_two_tags_counts_both_and_a_repeated_tag_once() -> None:
    grid = build_topology(EDGES, customer_rows=[
        {"id": "C1", "transformer": "T3", "name": "甲", "phone": "", "importance": "",
         "tags": "life_support;elderly_alone;life_support"}])
    p = score(grid, ["T3"], T0, T0)
    assert p.breakdown["life_support"] == 600 and p.breakdown["elderly_alone"] == 120
    assert p.special_care == ("C1",)


def test_unknown_and_repeated_areas_are_ignored(topo: Topology) -> None:
    assert at(topo, "T1", "T1", "NOPE").score == at(topo, "T1").score


def test_long_lists_are_counted_not_all_named() -> None:
    rows = [{"id": f"C{i}", "transformer": "T2", "name": f"老人{i}", "phone": "",
             "importance": "", "tags": "elderly_alone"} for i in range(8)]
    grid = build_topology(EDGES, customer_rows=rows)
    p = score(grid, ["T2"], T0, T0, PriorityWeights(max_named=3))
    assert p.reasons[0] == "独居老人8户：老人0、老人1、老人2等"
    assert p.breakdown["elderly_alone"] == 8 * 120


def test_summary_has_counts_and_no_names(topo: Topology) -> None:
    p = at(topo, "T1", "T3", hours=0.5)
    assert summary(p) == "特级重要用户1个；生命支持设备用户1户；停电11户；已停电30分钟"
    assert "县人民医院" not in summary(p, "en")


# -- properties ---------------------------------------------------------------------------------

AREAS = ["T1", "T2", "T3", "T4", "T5", "T6", "T7"]
_PROPERTY_TOPO = build_topology(EDGES, customers={"T1": 1, "T2": 500, "T3": 10, "T4": 10},
                                customer_rows=CUSTOMERS)


@given(st.lists(st.sampled_from(AREAS)), st.sampled_from(AREAS),
       st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_more_areas_or_more_time_never_lower_the_score(areas: list[str], extra: str,
                                                       h1: float, h2: float) -> None:
    """All weights are non-negative, so the score is monotone in what is off and for how long:
    an incident growing or dragging on can never drop down the queue."""
    grid = _PROPERTY_TOPO
    lo, hi = sorted((h1, h2))
    base = score(grid, areas, T0, T0 + timedelta(hours=lo))
    assert score(grid, areas, T0, T0 + timedelta(hours=hi)).score >= base.score
    assert score(grid, [*areas, extra], T0, T0 + timedelta(hours=lo)).score >= base.score


# -- config -------------------------------------------------------------------------------------


def test_config_defaults_are_the_documented_weights() -> None:
    assert PriorityConfig().to_weights() == PriorityWeights()


def test_config_priority_section_round_trips() -> None:
    config = parse_config({
        "sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
        "channels": {"sink": {"type": "file", "path": "out.jsonl"}},
        "priority": {"special": 2000, "per_hour": 5, "extra_tags": {"cold_storage": 30}},
    })
    weights = config.priority.to_weights()
    assert weights.special == 2000 and weights.per_hour == 5
    assert weights.extra_tags == (("cold_storage", 30.0),)


def test_config_rejects_negative_weights() -> None:
    with pytest.raises(ValueError):
        PriorityConfig(special=-1)
    with pytest.raises(ValueError):
        PriorityConfig(extra_tags={"greenhouse": -5})


# -- the demo county ----------------------------------------------------------------------------


def test_demo_county_hospital_area_outranks_the_biggest_plain_feeder_outage() -> None:
    """Realistic check: the county hospital's transformer area alone outranks losing the whole
    of the largest feeder-branch with no important user on it (the ordering principle on real
    numbers, not just on toy ones)."""
    county = load_bundle(REPO / "topology")
    hospital = next(c for c in county.customers if c.importance == "special")
    hospital_score = score(county, [hospital.transformer], T0, T0).score
    graded = {c.transformer for c in county.customers if c.importance}
    plain = []
    for node_id, node in county.nodes.items():
        if node.kind in ("breaker", "recloser", "sectionalizer", "fuse"):
            areas = county.downstream_transformers(node_id)
            if areas and not graded & set(areas):
                plain.append(areas)
    biggest = max(plain, key=county.customers_of)
    assert county.customers_of(biggest) > 500
    assert hospital_score > score(county, biggest, T0, T0 + timedelta(hours=6)).score
