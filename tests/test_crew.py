"""Crew dispatch: deadlines, crew choice, escalation, map links, and the rendered messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.config import DispatchConfig, parse_config
from outage_sentinel.crew import (
    Busy,
    Commitments,
    CrewChoice,
    DispatchParams,
    arrival_deadline,
    care_list_context,
    certainty,
    choose_crew,
    deadline_at_risk,
    dispatch_context,
    dispatch_params,
    escalation_context,
    haversine_km,
    incident_location,
    map_link,
    percent_label,
    travel_minutes,
)
from outage_sentinel.incidents import Evidence, Incident, first_estimate
from outage_sentinel.liaison import Renderer
from outage_sentinel.priority import score
from outage_sentinel.topology import Topology, load_bundle
from tests.conftest import REPO, T0, build_topology

SHANGHAI = ZoneInfo("Asia/Shanghai")

#   F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1 urban: hospital), T2 (V2 rural: life support)
#                            └─ SW1 ─ J3 ─ T3 (V3 remote)
#   F2: S2 ─ B2 ─ FU2 ─ T4 (V2)
#   F3: S3 ─ B3 ─ T5 (V3)
EDGES = [("S1", "B1"), ("B1", "J1"), ("J1", "R1"), ("R1", "J2"), ("J2", "FU1"), ("FU1", "T1"),
         ("FU1", "T2"), ("J2", "SW1"), ("SW1", "J3"), ("J3", "T3"),
         ("S2", "B2"), ("B2", "FU2"), ("FU2", "T4"), ("S3", "B3"), ("B3", "T5")]
FEEDERS = {**{n: "F2" for n in ("S2", "B2", "FU2", "T4")}, **{n: "F3" for n in ("S3", "B3", "T5")}}
VILLAGES = [
    {"id": "V1", "name": "城关社区", "township": "城关镇", "grid": "g1", "area_type": "urban"},
    {"id": "V2", "name": "马集村", "township": "马集镇", "grid": "g1", "area_type": "rural"},
    {"id": "V3", "name": "西山村", "township": "西山乡", "grid": "g2", "area_type": "remote"},
]
SITE = (36.50, 115.50)  # R1's coordinates: where the crew goes


def crew_row(crew_id: str, feeders: str, lat: float | None, lon: float | None) -> dict[str, Any]:
    return {"id": crew_id, "name": f"抢修班{crew_id}", "phone": "13900000000", "channel": "wecom",
            "target": f"crew-{crew_id}", "feeders": feeders,
            "lat": "" if lat is None else str(lat), "lon": "" if lon is None else str(lon),
            "leader": f"班长{crew_id}"}


CREWS = [
    crew_row("NEAR", "F1", 36.51, 115.50),        # ~1.1 km, covers F1
    crew_row("FAR", "F1;F3", 36.60, 115.50),      # ~11 km, covers F1
    crew_row("NOXY", "F1", None, None),           # covers F1, base unknown
    crew_row("OTHER", "F2", 36.50, 115.505),      # ~0.45 km, but F2 only
    crew_row("OTHER2", "F3", 36.70, 115.50),      # ~22 km, F3 only
]


def grid(crews: list[dict[str, Any]] | None = None) -> Topology:
    return build_topology(
        EDGES, feeders=FEEDERS, customers={"T1": 5, "T2": 40, "T3": 20, "T4": 30, "T5": 10},
        villages={"T1": "V1", "T2": "V2", "T3": "V3", "T4": "V2", "T5": "V3"},
        names={"S1": "10kV城关变出线", "B1": "城关线911断路器", "R1": "城关线#20杆重合器",
               "J2": "城关线#21杆", "FU1": "城关支线熔断器", "SW1": "西山支线隔离开关",
               "J3": "西山支线#3杆", "T1": "医院专变", "T2": "马集村1号台区",
               "T3": "西山村1号台区"},
        node_extra={"S1": {"feeder_name": "10kV城关线"},
                    "R1": {"lat": str(SITE[0]), "lon": str(SITE[1])},
                    "T1": {"lat": "36.49", "lon": "115.49"},
                    "T2": {"lat": "36.48", "lon": "115.48"}},
        village_rows=VILLAGES,
        crews=CREWS if crews is None else crews,
        customer_rows=[
            {"id": "C-HOSP", "transformer": "T1", "name": "县人民医院", "phone": "13700000001",
             "importance": "special", "tags": ""},
            {"id": "C-LIFE", "transformer": "T2", "name": "居民甲", "phone": "13700000002",
             "importance": "", "tags": "life_support"},
            {"id": "C-OLD", "transformer": "T3", "name": "居民乙", "phone": "13700000003",
             "importance": "", "tags": "elderly_alone"},
        ])


@pytest.fixture(scope="module")
def topo() -> Topology:
    return grid()


def choose(topo: Topology, busy: Mapping[str, int | Busy] | None = None, priority: int = 1000,
           feeder: str | None = "F1", location: tuple[float, float] | None = SITE,
           **kw: Any) -> CrewChoice | None:
    return choose_crew(topo, feeder, location, priority, busy or {}, T0, **kw)


def chosen(choice: CrewChoice | None) -> str | None:
    return choice.crew.id if choice is not None else None


# -- deadlines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("villages", "minutes", "area"), [
    (["V2", "V1", "V3"], 45, "urban"),
    (["V3", "V2"], 90, "rural"),
    (["V3"], 120, "remote"),
    ([], 90, "rural"),             # nothing known: the default area type
    (["NOPE", "V3"], 120, "remote"),  # unknown ids are ignored
])
def test_deadline_uses_the_strictest_area_type(topo: Topology, villages: list[str], minutes: int,
                                               area: str) -> None:
    assert arrival_deadline(topo, villages, T0) == (T0 + timedelta(minutes=minutes), area)


def test_deadline_commitments_are_configurable(topo: Topology) -> None:
    gbt = Commitments(urban=60, rural=120, remote=240, default_area_type="remote")
    assert arrival_deadline(topo, ["V1"], T0, gbt) == (T0 + timedelta(minutes=60), "urban")
    assert arrival_deadline(topo, [], T0, gbt) == (T0 + timedelta(minutes=240), "remote")
    # A configuration where "rural" is stricter than "urban" is obeyed, not second-guessed.
    odd = Commitments(urban=100, rural=50)
    assert arrival_deadline(topo, ["V1", "V2"], T0, odd)[1] == "rural"


# -- crew choice --------------------------------------------------------------------------------


def test_covering_crew_beats_a_nearer_crew_of_another_feeder(topo: Topology) -> None:
    choice = choose(topo)
    assert choice is not None
    assert choice.crew.id == "NEAR"
    assert not choice.outside_area and choice.preempts is None
    assert choice.distance_km == pytest.approx(1.11, abs=0.01)
    assert choice.travel_minutes == pytest.approx(1.11 * 1.4 / 30 * 60, abs=0.05)
    assert choice.travel_minutes is not None
    assert choice.eta == T0 + timedelta(minutes=choice.travel_minutes)


def test_nearest_covering_crew_wins_and_unknown_base_comes_last(topo: Topology) -> None:
    assert chosen(choose(topo, {"NEAR": 5000})) == "FAR"
    assert chosen(choose(topo, {"NEAR": 5000, "FAR": 5000})) == "NOXY"
    noxy = choose(topo, {"NEAR": 5000, "FAR": 5000})
    assert noxy is not None and noxy.distance_km is None and noxy.eta is None


def test_busy_on_higher_or_equal_priority_is_never_taken(topo: Topology) -> None:
    busy: dict[str, int | Busy] = {"NEAR": 1000, "FAR": 1001, "NOXY": Busy(2000, "INC-9")}
    choice = choose(topo, busy, priority=1000)
    assert chosen(choice) == "OTHER"  # equal priority is not pulled off either


def test_a_free_covering_crew_beats_preempting_a_nearer_one(topo: Topology) -> None:
    choice = choose(topo, {"NEAR": 10, "NOXY": 10})
    assert chosen(choice) == "FAR" and choice is not None and choice.preempts is None


def test_preemption_reports_the_work_left(topo: Topology) -> None:
    busy: dict[str, int | Busy] = {"NEAR": Busy(300, "INC-LOW"), "FAR": Busy(200, "INC-LOWER"),
                                   "NOXY": 5000}
    choice = choose(topo, busy, priority=1000)
    assert choice is not None
    assert choice.crew.id == "NEAR"  # nearest of the pre-emptable, not the lowest priority
    assert choice.preempts == Busy(300, "INC-LOW")
    assert not choice.outside_area


def test_a_crew_at_work_on_site_is_never_pulled_off_automatically(topo: Topology) -> None:
    # NEAR is on site at a low-priority fault, FAR on its way to one: FAR is taken instead,
    # though farther, and with both on site nobody covering the feeder is taken.
    busy: dict[str, int | Busy] = {"NEAR": Busy(10, "INC-THERE", on_site=True),
                                   "FAR": Busy(10, "INC-ROAD"), "NOXY": 5000}
    choice = choose(topo, busy, priority=1000)
    assert choice is not None and choice.preempts == Busy(10, "INC-ROAD")
    busy["FAR"] = Busy(10, "INC-ROAD", on_site=True)
    choice = choose(topo, busy, priority=1000)
    assert choice is not None and choice.crew.id == "OTHER" and choice.outside_area


def test_plain_int_busy_scores_are_accepted(topo: Topology) -> None:
    choice = choose(topo, {"NEAR": 10, "FAR": 5000, "NOXY": 5000})
    assert choice is not None and choice.preempts == Busy(10, None)


def test_falls_back_to_the_nearest_free_crew_outside_the_area(topo: Topology) -> None:
    busy = {"NEAR": 5000, "FAR": 5000, "NOXY": 5000}
    choice = choose(topo, busy)
    assert choice is not None
    assert (choice.crew.id, choice.outside_area, choice.preempts) == ("OTHER", True, None)
    # Free outside crews come before pre-empting outside crews.
    choice = choose(topo, {**busy, "OTHER": 10})
    assert chosen(choice) == "OTHER2" and choice is not None and choice.outside_area
    choice = choose(topo, {**busy, "OTHER": 10, "OTHER2": 5000})
    assert choice is not None and (choice.crew.id, choice.preempts) == ("OTHER", Busy(10))


def test_none_when_every_crew_is_busy_on_higher_priority(topo: Topology) -> None:
    busy = {c["id"]: 5000 for c in CREWS}
    assert choose(topo, busy) is None
    assert choose(grid(crews=[])) is None


def test_unknown_feeder_or_location_still_gives_a_deterministic_answer(topo: Topology) -> None:
    choice = choose(topo, feeder=None)
    assert choice is not None and choice.outside_area and choice.crew.id == "OTHER"
    # No location: no distances, so the crew id decides within the tier.
    choice = choose(topo, location=None)
    assert choice is not None and choice.crew.id == "FAR" and choice.distance_km is None


def test_travel_speed_follows_the_area_type(topo: Topology) -> None:
    urban = choose(topo, area_type="urban")
    remote = choose(topo, area_type="remote")
    assert urban is not None and remote is not None
    assert urban.travel_minutes is not None and remote.travel_minutes is not None
    assert remote.travel_minutes == pytest.approx(urban.travel_minutes * 25 / 20)


# -- geometry and at-risk -----------------------------------------------------------------------


def test_haversine_and_travel_time() -> None:
    assert haversine_km((36.0, 115.0), (37.0, 115.0)) == pytest.approx(111.19, abs=0.01)
    assert haversine_km((36.5, 115.5), (36.5, 115.5)) == 0.0
    assert travel_minutes(10.0, "rural") == pytest.approx(28.0)  # 10 km × 1.4 at 30 km/h
    assert travel_minutes(10.0, "urban", DispatchParams(road_factor=1.0)) == pytest.approx(24.0)


def test_incident_location_device_then_centroid_then_none(topo: Topology) -> None:
    assert incident_location(topo, ["R1"], ["T1", "T2"]) == SITE
    # FU1 has no coordinates: the centroid of the located areas (T3 has none and is skipped).
    assert incident_location(topo, ["FU1"], ["T1", "T2", "T3"]) == pytest.approx((36.485, 115.485))
    assert incident_location(topo, ["FU1"], ["T3"]) is None


@pytest.mark.parametrize(("travel", "on_site", "expected"), [
    (14.0, False, False),   # arrives 16 min before the deadline: fine
    (15.0, False, True),    # exactly at the 15-minute margin: warn now
    (60.0, False, True),
    (60.0, True, False),    # on site: nothing to escalate
    (None, False, False),   # no travel estimate: only the margin counts (30 > 15)
])
def test_deadline_at_risk_boundaries(travel: float | None, on_site: bool, expected: bool) -> None:
    deadline = T0 + timedelta(minutes=30)
    assert deadline_at_risk(deadline, T0, travel, 15.0, on_site) is expected


def test_deadline_at_risk_without_travel_and_when_past() -> None:
    deadline = T0 + timedelta(minutes=30)
    assert not deadline_at_risk(deadline, T0 + timedelta(minutes=14, seconds=59))
    assert deadline_at_risk(deadline, T0 + timedelta(minutes=15))
    assert deadline_at_risk(deadline, T0 + timedelta(hours=1))  # overdue
    assert not deadline_at_risk(deadline, T0 + timedelta(minutes=20), margin_minutes=0)


# -- map links ----------------------------------------------------------------------------------


def test_map_link_encodes_the_label_and_orders_lon_lat() -> None:
    url = map_link(36.5, 115.25, "东湖支线 #3杆&熔断器")
    assert url.startswith("https://uri.amap.com/marker?position=115.250000,36.500000&name=")
    assert " " not in url and "#" not in url and url.count("&") == 1
    assert parse_qs(urlsplit(url).query)["name"] == ["东湖支线 #3杆&熔断器"]


def test_map_link_custom_template() -> None:
    url = map_link(36.5, 115.25, "a b", "https://maps.example/?q={lat},{lon}({label})")
    assert url == "https://maps.example/?q=36.500000,115.250000(a%20b)"


# -- contexts and templates ---------------------------------------------------------------------


def incident(topo: Topology, devices: set[str], **kw: Any) -> Incident:
    est = first_estimate(topo, Evidence(open_devices=frozenset(devices)))
    return Incident(id="INC-20260301-0001", feeder="F1", kind="fault", status="active",
                    revision=2, start=T0, etr=None, end=None, cause=kw.get("cause", ""),
                    area_text="", members={}, estimate=est)


def dispatch(topo: Topology, language: str, busy: Mapping[str, int | Busy] | None = None,
             now: datetime | None = None) -> tuple[dict[str, Any], str]:
    inc = incident(topo, {"R1"})
    now = now or T0 + timedelta(minutes=10)
    pr = score(topo, inc.estimate.transformers, inc.start, now, language=language)
    deadline, area = arrival_deadline(topo, inc.estimate.villages, inc.start)
    loc = incident_location(topo, inc.estimate.devices, inc.estimate.transformers)
    choice = choose_crew(topo, inc.feeder, loc, pr.score, busy or {}, now, area_type=area)
    ctx = dispatch_context(topo, inc, pr, choice, deadline, area, now, SHANGHAI, language)
    return ctx, Renderer(language).render("crew_dispatch", **ctx)


def test_dispatch_context_content(topo: Topology) -> None:
    ctx, _ = dispatch(topo, "zh")
    assert ctx["crew_name"] == "抢修班NEAR" and ctx["crew_leader"] == "班长NEAR"
    assert (ctx["area_type"], ctx["commitment_minutes"], ctx["minutes_left"]) == ("urban", 45, 35)
    assert ctx["deadline_local"] == "2026-03-01 08:45"
    assert ctx["patrol_from"] == "城关线#20杆重合器"
    assert ctx["patrol_to"] == "城关支线熔断器、西山支线隔离开关"
    assert ctx["patrol_nodes"] == ["城关线#21杆"]
    assert [(d["id"], d["role"]) for d in ctx["devices"]] == [
        ("R1", "operated"), ("B1", "upstream"), ("FU1", "downstream")]
    assert [h["id"] for h in ctx["important"]] == ["C-HOSP"]
    assert [(h["id"], h["phone"]) for h in ctx["households"]] == [
        ("C-LIFE", "13700000002"), ("C-OLD", "13700000003")]
    assert ctx["map_link"].startswith("https://uri.amap.com/marker?position=115.500000,36.500000")


def test_feeder_head_breaker_has_no_upstream_to_check(topo: Topology) -> None:
    inc = incident(topo, {"B1"})
    pr = score(topo, inc.estimate.transformers, T0, T0)
    ctx = dispatch_context(topo, inc, pr, None, T0, "urban", T0, SHANGHAI)
    roles = {d["id"]: d["role"] for d in ctx["devices"]}
    assert roles == {"B1": "operated", "R1": "downstream"}


def test_dispatch_renders_in_chinese(topo: Topology) -> None:
    _, body = dispatch(topo, "zh")
    lines = body.splitlines()
    assert lines[0] == "【抢修派工】故障停电：10kV城关线（优先级1796，编号INC-20260301-0001）"
    assert "到达时限：2026-03-01 08:45前（城区45分钟，剩35分钟）；距你班驻地约1.1公里" in body
    assert "- 城关线#20杆重合器（疑似动作）" in lines
    assert "- 县人民医院（特级重要用户）13700000001，医院专变" in lines
    assert "- 居民甲（生命支持设备用户）13700000002，马集村1号台区" in lines
    assert "position=115.500000,36.500000" in body
    assert "跨区" not in body and "暂停" not in body
    assert "{{" not in body and "None" not in body


def test_dispatch_renders_in_english(topo: Topology) -> None:
    _, body = dispatch(topo, "en")
    assert body.startswith("[Dispatch] Fault outage: 10kV城关线 (priority 1796")
    assert "Arrive by 2026-03-01 08:45 (urban, 45 min; 35 min left)" in body
    assert "- 居民乙 (elderly living alone) 13700000003, 西山村1号台区" in body.splitlines()
    assert "None" not in body


@pytest.mark.parametrize(("language", "said", "sms"), [
    ("zh", "65户（已确认25户，其余未确认）", "65（已确认25）"),
    ("en", "65 customers (25 confirmed, the rest not)", "65 (25 confirmed)")])
def test_a_dispatch_by_sms_says_how_many_customers_are_only_inferred(
        topo: Topology, language: str, said: str, sms: str) -> None:
    """The text said "65户（已确认25户，其余未确认）" while the SMS ``customers`` said "65"."""
    inc = replace(incident(topo, {"R1"}), scope={"T2": "inferred"})  # T1, T3 reported
    pr = score(topo, inc.estimate.transformers, T0, T0, language=language)
    ctx = dispatch_context(topo, inc, pr, None, T0, "urban", T0, SHANGHAI, language)
    assert said in Renderer(language).render("crew_dispatch", **ctx)
    assert dispatch_params(ctx, language)["sms"]["customers"] == sms
    sure = dispatch_context(topo, incident(topo, {"R1"}), pr, None, T0, "urban", T0, SHANGHAI,
                            language)
    assert dispatch_params(sure, language)["sms"]["customers"] == "65"


def test_dispatch_says_preempted_and_outside_area(topo: Topology) -> None:
    busy: dict[str, int | Busy] = {"NEAR": Busy(10, "INC-OLD"), "FAR": 9999, "NOXY": 9999}
    ctx, body = dispatch(topo, "zh", busy)
    assert ctx["preempts_incident"] == "INC-OLD"
    assert "请暂停INC-OLD（优先级10）的抢修，优先处理本次停电。" in body
    busy = {"NEAR": 9999, "FAR": 9999, "NOXY": 9999}
    _, body = dispatch(topo, "en", busy)
    assert "outside your service area" in body
    _, body = dispatch(topo, "zh", {}, now=T0 + timedelta(hours=1))
    assert "已超15分钟" in body


def sure_of(topo: Topology, probability: float | None, *alternatives: tuple[str, float],
            **kw: Any) -> Incident:
    """The R1 incident as the localiser left it: ``probability`` for R1, then
    ``alternatives`` (device, probability) as its next hypotheses."""
    inc = incident(topo, {"R1"})
    ranked = [{"devices": ["R1"], "probability": probability},
              *({"devices": [d], "probability": p} for d, p in alternatives)]
    return replace(inc, estimate=replace(inc.estimate, probability=probability,
                                         hypotheses=tuple(ranked)), **kw)


def render_dispatch(topo: Topology, inc: Incident, language: str = "zh") -> str:
    pr = score(topo, inc.estimate.transformers, inc.start, T0, language=language)
    ctx = dispatch_context(topo, inc, pr, None, T0 + timedelta(hours=1), "urban", T0, SHANGHAI,
                           language)
    return Renderer(language).render("crew_dispatch", **ctx)


@pytest.mark.parametrize(("p", "zh", "en"), [
    (0.8, "约80%", "about 80%"), (0.624, "约62%", "about 62%"), (0.985, "约99%", "about 99%"),
    # 99 % is 99 %: only what rounds above 99 reads ">99%" (0.99 used to).
    (0.99, "约99%", "about 99%"), (0.994, "约99%", "about 99%"),
    (0.995, "＞99%", ">99%"), (0.9995, "＞99%", ">99%"), (1.0, "＞99%", ">99%"),
    # ... and only what rounds below 1 "<1%".
    (0.01, "约1%", "about 1%"), (0.006, "约1%", "about 1%"), (0.004, "＜1%", "<1%"),
    (0.0, "＜1%", "<1%")])
def test_a_probability_is_rounded_honestly_never_100(p: float, zh: str, en: str) -> None:
    assert (percent_label(p, "zh"), percent_label(p, "en")) == (zh, en)


def test_the_crew_hears_how_sure_the_suspected_device_is_and_the_close_alternative(
        topo: Topology) -> None:
    body = render_dispatch(topo, sure_of(topo, 0.62, ("FU1", 0.31)))
    assert "- 城关线#20杆重合器（疑似动作，可能性约62%）" in body.splitlines()
    assert "另一可能：城关支线熔断器（可能性约31%），上述区段未见故障时请一并巡视。" in body
    body = render_dispatch(topo, sure_of(topo, 0.62, ("FU1", 0.31)), "en")
    assert "- 城关线#20杆重合器 (suspected to have operated, about 62%)" in body.splitlines()
    assert "Next most likely: 城关支线熔断器 (about 31%)" in body
    # A far second is no alternative worth a patrol; a near-certain one is never "100%".
    body = render_dispatch(topo, sure_of(topo, 0.9995, ("FU1", 0.0004)))
    assert "（疑似动作，可能性＞99%）" in body and "100%" not in body and "另一可能" not in body
    body = render_dispatch(topo, sure_of(topo, 0.7, ("FU1", 0.2)))
    assert "另一可能" not in body


def test_a_device_the_command_centre_set_is_no_guess(topo: Topology) -> None:
    inc = sure_of(topo, None, ("FU1", 0.31), device_set=("R1",), device_set_by="board:alice")
    body = render_dispatch(topo, inc)
    assert "- 城关线#20杆重合器（运行人员确认）" in body.splitlines()
    assert "疑似" not in body and "可能性" not in body and "另一可能" not in body
    sure = certainty(topo, inc, "en")
    assert (sure["basis"], sure["set_by"], sure["label"], sure["alternative"]) == (
        "set", "board:alice", "confirmed by the command centre", None)
    # No probability known (the simple estimator): suspected, with no number made up.
    assert certainty(topo, incident(topo, {"R1"}))["label"] == "疑似动作"


def test_care_list_per_village(topo: Topology) -> None:
    inc = incident(topo, {"R1"})
    ctx = care_list_context(topo, inc, "V2", T0, SHANGHAI)
    assert [h["id"] for h in ctx["households"]] == ["C-LIFE"]
    assert care_list_context(topo, inc, "V1", T0, SHANGHAI)["households"] == []  # hospital ≠ care
    zh = Renderer("zh").render("liaison_care", **ctx)
    assert zh.splitlines()[0] == "【重点关怀】马集村（马集镇）故障停电"
    assert "1. 居民甲（生命支持设备用户）13700000002，马集村1号台区" in zh
    en = Renderer("en").render("liaison_care", **care_list_context(topo, inc, "V3", T0, SHANGHAI,
                                                                   "en"))
    assert "1. 居民乙 (elderly living alone) 13700000003, 西山村1号台区" in en


def test_escalation_renders_with_and_without_a_crew(topo: Topology) -> None:
    inc = incident(topo, {"R1"})
    now = T0 + timedelta(minutes=35)
    pr = score(topo, inc.estimate.transformers, T0, now)
    deadline, area = arrival_deadline(topo, inc.estimate.villages, T0)
    busy: dict[str, int | Busy] = {"NEAR": Busy(9000, "INC-HOSP"), "FAR": 9000}
    ctx = escalation_context(topo, inc, pr, "no_crew", deadline, area, now, SHANGHAI, None, busy)
    body = Renderer("zh").render("command_escalation", **ctx)
    assert body.splitlines()[0].startswith("【到达超时预警】无可派抢修班组：10kV城关线")
    assert "暂无可派抢修班组。" in body and "剩10分钟" in body
    assert "抢修班FAR（优先级9000）；抢修班NEAR（INC-HOSP，优先级9000）" in body
    choice = choose(topo, busy)
    late = T0 + timedelta(minutes=50)
    ctx = escalation_context(topo, inc, pr, "overdue", deadline, area, late, SHANGHAI, choice,
                             language="en")
    body = Renderer("en").render("command_escalation", **ctx)
    assert body.startswith("[Arrival escalation] arrival deadline missed")
    assert "5 min overdue" in body and "Crew: 抢修班NOXY" in body
    assert "13700000002" not in body  # household phones are for crews and liaisons only


# -- config -------------------------------------------------------------------------------------


def test_dispatch_config_defaults_match_the_params() -> None:
    assert DispatchConfig().to_params() == DispatchParams()


def test_dispatch_config_section() -> None:
    config = parse_config({
        "sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
        "channels": {"sink": {"type": "file", "path": "out.jsonl"}},
        "dispatch": {"arrival_minutes": {"urban": 60, "rural": 120, "remote": 240},
                     "at_risk_margin_minutes": 20, "speed_kmh": {"rural": 40},
                     "map_url_template": "https://api.map.baidu.com/marker?location={lat},"
                                         "{lon}&title={label}&output=html"},
    })
    params = config.dispatch.to_params()
    assert params.commitments == Commitments(urban=60, rural=120, remote=240)
    assert (params.at_risk_margin_minutes, params.rural_speed_kmh) == (20, 40)
    assert map_link(1, 2, "x", params.map_url_template).startswith(
        "https://api.map.baidu.com/marker?location=1.000000,2.000000")


@pytest.mark.parametrize("template", ["https://x/{lat}/{foo}", "https://x/{", "ftp://x/{lat}"])
def test_dispatch_config_rejects_bad_map_templates(template: str) -> None:
    with pytest.raises(ValueError, match="map_url_template"):
        DispatchConfig(map_url_template=template)


# -- the demo county ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def county() -> Topology:
    return load_bundle(REPO / "topology")


def test_demo_county_hospital_fault_goes_to_the_town_crew(county: Topology) -> None:
    hospital = next(c for c in county.customers if c.importance == "special")
    device = county.protective_upstream(hospital.transformer)
    assert device is not None
    est = first_estimate(county, Evidence(open_devices=frozenset({device})))
    feeder = county.feeder_of(device)
    deadline, area = arrival_deadline(county, est.villages, T0)
    assert area == "urban" and deadline == T0 + timedelta(minutes=45)
    pr = score(county, est.transformers, T0, T0)
    loc = incident_location(county, est.devices, est.transformers)
    choice = choose_crew(county, feeder, loc, pr.score, {}, T0, area_type=area)
    assert choice is not None and feeder in choice.crew.feeders
    assert choice.distance_km is not None and choice.distance_km < 10
    assert not deadline_at_risk(deadline, T0, choice.travel_minutes)


def test_demo_county_two_incidents_one_crew(county: Topology) -> None:
    """The acceptance scenario in pure form: two outages at once, one free crew. The hospital
    incident gets it; the other finds every crew busy on higher priority, and escalates once
    its deadline comes within the margin."""
    hospital = next(c for c in county.customers if c.importance == "special")
    feeder = county.feeder_of(hospital.transformer)
    crews = [c for c in county.crews if feeder in c.feeders]
    only = crews[0].id
    one_crew = Topology(county.nodes, county.edges, county.villages, county.liaisons,
                        [c for c in county.crews if c.id == only], county.customers)
    plain = next(t for t in county.downstream_transformers(f"S-{feeder}")
                 if not county.customers_by_transformer.get(t))
    hosp_score = score(one_crew, [hospital.transformer], T0, T0).score
    plain_score = score(one_crew, [plain], T0, T0).score
    assert hosp_score > plain_score
    # The plain outage was seen first and got the crew; the hospital outage takes it over.
    first = choose_crew(one_crew, feeder, None, plain_score, {}, T0)
    assert first is not None and first.crew.id == only
    second = choose_crew(one_crew, feeder, None, hosp_score, {only: Busy(plain_score, "INC-A")},
                         T0)
    assert second is not None and second.preempts == Busy(plain_score, "INC-A")
    # The plain incident asks again: nobody is free for it.
    assert choose_crew(one_crew, feeder, None, plain_score, {only: Busy(hosp_score, "INC-B")},
                       T0) is None
    deadline, _ = arrival_deadline(one_crew, county.villages_of([plain]), T0)
    margin = DispatchParams().at_risk_margin_minutes
    assert not deadline_at_risk(deadline, deadline - timedelta(minutes=margin + 1))
    assert deadline_at_risk(deadline, deadline - timedelta(minutes=margin))


def test_demo_county_every_dispatch_renders(county: Topology) -> None:
    """Every protective device's outage renders in both languages, with no template gaps."""
    renderers = {lang: Renderer(lang) for lang in ("zh", "en")}
    for node_id, node in county.nodes.items():
        if node.kind not in ("breaker", "recloser", "sectionalizer", "fuse"):
            continue
        inc = incident(county, {node_id})
        pr = score(county, inc.estimate.transformers, T0, T0)
        deadline, area = arrival_deadline(county, inc.estimate.villages, T0)
        loc = incident_location(county, inc.estimate.devices, inc.estimate.transformers)
        choice = choose_crew(county, county.feeder_of(node_id), loc, pr.score, {}, T0)
        for lang, renderer in renderers.items():
            ctx = dispatch_context(county, inc, pr, choice, deadline, area, T0, SHANGHAI, lang)
            body = renderer.render("crew_dispatch", **ctx)
            assert "None" not in body and body.count("\n\n") == 0, (node_id, lang)
