"""How the fault point and its probability are stated, the same on every surface: the command
centre's summary, the crew's orders, ``incidents show``, the certainty the board reads, and
the villages' notices (a real daemon on SQLite, the tests' grid).

- a change of the stated (rounded) probability is a new revision (summary and board agree on
  the number of one revision), which tells the villages nothing;
- each device of a fault point is as sure as it is (named by a source: reported; else
  inferred), and a set of several states its probability as the set's;
- a village is named a device only when it feeds the village's areas, and hears the same
  name in every notice of one outage;
- a device a source reported operated is always in the crew's checks and the summary, even
  when the estimate dropped it;
- the protection above areas reported off outside the fault point's section is checked for
  them, named, whatever other role it has.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel import crew as crews
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incident_view import incident_text
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import Topology, load_bundle
from tests import conftest
from tests.conftest import REPO, T0, build_grid, build_topology
from tests.test_lifecycle import Recorder
from tests.test_shared_areas import CHANNELS, Clock

TZ = ZoneInfo("Asia/Shanghai")


def make(tmp: Path, topology: Topology | None = None, **extra: Any) -> Daemon:
    config = parse_config({
        "state_dir": str(tmp / "state"),
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp / "x.jsonl")}],
        "channels": {n: {"type": "file", "path": str(tmp / "sink.jsonl")} for n in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        **extra,
    })
    d = Daemon(config, topology=topology or build_grid(), sources=[],
               channels={n: Recorder(n) for n in CHANNELS}, clock=Clock())
    d.start()
    return d


def ev(event_id: str, *areas: str, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": "active", "start": T0, "transformers": areas, **kw})


def feed(d: Daemon, minutes: int, *events: OutageEvent) -> None:
    d.clock.now = T0 + timedelta(minutes=minutes)
    d.store.ingest("feed", PollResult(events=list(events)), d.clock())
    d.process()
    while d.deliverer.run_once(d.clock()):
        pass


def only_incident(d: Daemon) -> str:
    rows = d.store.load_incidents(open_only=False)
    assert len(rows) == 1
    return str(rows[0]["id"])


def msgs(d: Daemon, iid: str, audience: str, purpose: str | None = None) -> list[Any]:
    return [m for m in d.store.messages(incident_id=iid)
            if m.audience == audience and (purpose is None or m.purpose == purpose)]


def incident(d: Daemon, iid: str) -> Incident:
    return Incident.from_json(d.store.get_incident(iid)["state"])


def cli(d: Daemon, iid: str) -> str:
    return incident_text(d.store.get_incident(iid), [], [], d.topology, TZ)


def test_a_stated_probability_that_moves_is_a_new_revision_the_villages_never_hear(tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N0", "T1"))
    iid = only_incident(d)
    first = incident(d, iid)
    village_rows = len(msgs(d, iid, "liaison"))
    # meters elsewhere on the line have power: the fault point is the same, surer
    feed(d, 5, ev("A1", "T3", signal="alive", source="ami"),
         ev("A2", "T4", signal="alive", source="ami"), ev("A3", "T5", signal="alive", source="ami"))
    now = incident(d, iid)
    assert now.estimate.devices == first.estimate.devices
    assert crews.percent_label(now.estimate.probability) != crews.percent_label(
        first.estimate.probability)
    assert now.revision > first.revision
    summary = msgs(d, iid, "command", "summary")[-1].body.splitlines()
    assert f"第{now.revision}版" in summary[0]
    stated = crews.certainty(d.topology, now)["probability_label"]
    assert f"（概率{stated}）" in summary[1]
    assert f"概率 {stated}" in cli(d, iid)
    assert len(msgs(d, iid, "liaison")) == village_rows  # never told the probability
    d.close()


def test_a_probability_that_moves_within_its_rounding_is_no_revision(tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N0", "T1"))
    iid = only_incident(d)
    inc = incident(d, iid)
    p = inc.estimate.probability
    nudged = Incident.from_json({**inc.to_json(), "estimate": {
        **inc.to_json()["estimate"], "probability": p + 0.0001}})
    assert crews.percent_label(p) == crews.percent_label(p + 0.0001)
    assert nudged.material() == inc.material()
    d.close()


def test_each_device_of_a_set_is_as_sure_as_it_is_and_the_set_has_its_probability(tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N1", "T1", "T2", device="FU2"))  # FU2 feeds T4 and T5, not T1 and T2
    iid = only_incident(d)
    inc = incident(d, iid)
    assert set(inc.estimate.devices) == {"FU1", "FU2"}
    p = crews.percent_label(inc.estimate.probability)
    assert crews.device_bases(inc) == {"FU1": "inferred", "FU2": "reported"}
    joint = f"与马集2号熔断器同时动作的可能性{p}"
    crew = msgs(d, iid, "crew", "dispatch")[-1].body.splitlines()
    assert "- 马集2号熔断器（数据源报告动作）" in crew
    assert f"- 马集1号熔断器（疑似动作，{joint}）" in crew
    summary = msgs(d, iid, "command", "summary")[-1].body.splitlines()[1]
    assert "故障点：马集2号熔断器" in summary
    assert f"推断故障点：马集1号熔断器（{joint}）" in summary
    shown = cli(d, iid)
    assert "故障点: 马集2号熔断器" in shown and f"推断故障点: 马集1号熔断器 ({joint})" in shown
    sure = crews.certainty(d.topology, inc)
    assert sure["label"] == f"马集2号熔断器数据源报告动作；马集1号熔断器疑似动作，两处同时动作的可能性{p}"
    assert [x["label"] for x in sure["devices"]] == [f"疑似动作，{joint}", "数据源报告动作"]
    told = {m.target: m.body.splitlines()[1] for m in msgs(d, iid, "liaison", "outage")}
    assert told["group-v1"].startswith("马集I线") and "马集2号熔断器" not in told["group-v1"]
    assert told["group-v2"].startswith("马集I线（马集2号熔断器）")
    d.close()


def test_two_inferred_devices_state_their_probability_as_the_pairs(tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N1", "T1", "T2", device="FU2"))
    iid = only_incident(d)
    inc = incident(d, iid)
    inferred = Incident.from_json({**inc.to_json(), "members": {
        k: {**m, "device": None} for k, m in inc.to_json()["members"].items()}})
    p = crews.percent_label(inc.estimate.probability)
    assert crews.device_bases(inferred) == {"FU1": "inferred", "FU2": "inferred"}
    assert crews.certainty(d.topology, inferred)["label"] == f"疑似动作，两处同时动作的可能性{p}"
    summary = d.lifecycle.render_summary(inferred).splitlines()[1]
    assert f"推断故障点：马集1号熔断器、马集2号熔断器（两处同时动作的可能性{p}）" in summary
    d.close()


def test_a_village_hears_one_name_for_its_outage_from_first_notice_to_last(tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N1", "T1", "T2", "T3", device="R1"))
    iid = only_incident(d)
    # the recloser closed again: T3 is back; a fuse below it stays open
    feed(d, 30, ev("N1", "T1", "T2", "T3", device="R1", status="restored",
                   end=T0 + timedelta(minutes=29)),
         ev("N2", "T1", "T2", device="FU1", start=T0 + timedelta(minutes=29)))
    feed(d, 90, ev("N2", "T1", "T2", device="FU1", status="restored",
                   start=T0 + timedelta(minutes=29), end=T0 + timedelta(minutes=89)))
    for group in ("group-v1", "group-v2"):
        said = [m.body.splitlines()[1] for m in msgs(d, iid, "liaison") if m.target == group]
        assert [m.purpose for m in msgs(d, iid, "liaison") if m.target == group] == \
            ["outage", "restored"]
        assert all(line.startswith("马集I线（马集重合器）停电") for line in said), said
    d.close()


def test_a_device_the_outage_system_named_is_in_the_crews_checks_when_meters_contradict_it(
        tmp_path: Path) -> None:
    d = make(tmp_path)
    feed(d, 1, ev("N1", device="FU2", feeder="F1"), ev("A1", "T5", signal="alive", source="ami"))
    iid = only_incident(d)
    assert "FU2" not in incident(d, iid).estimate.devices
    crew = msgs(d, iid, "crew", "dispatch")[-1].body.splitlines()
    line = [x for x in crew if x.startswith("- 马集2号熔断器")]
    assert line and "数据源报告动作" in line[0] and "表计报告有电" in line[0]
    summary = msgs(d, iid, "command", "summary")[-1].body
    assert "马集2号熔断器" in summary and "表计报告有电" in summary
    d.close()


def test_the_crew_checks_the_protection_of_areas_reported_off_outside_its_section(tmp_path: Path) -> None:
    d = make(tmp_path, topology=load_bundle(REPO / "topology"))
    feed(d, 1, ev("N1", "T-CG01-002"), ev("A1", "T-CG01-003", signal="alive", source="ami"))
    iid = only_incident(d)
    crew = msgs(d, iid, "crew", "dispatch")[-1].body.splitlines()
    line = [x for x in crew if x.startswith("- 建设路支线跌落式熔断器")]
    assert line and "建设路社区2号台区" in line[0] and "请一并核查" in line[0]
    assert "越级" in line[0]  # its other role is kept
    d.close()


def test_areas_reported_off_under_the_feeder_head_alone_are_named_in_the_orders(
        tmp_path: Path) -> None:
    """T8 hangs off the substation bus: no protection of its own for the crew to check, so
    the orders name the area itself when the fault point does not explain it."""
    g = conftest
    grid = build_topology(
        [*g.GRID_EDGES, ("S1", "T8")], feeders={n: "F2" for n in g.GRID_F2},
        customers={**g.GRID_CUSTOMERS, "T8": 10}, villages={**g.GRID_VILLAGES, "T8": "V1"},
        normally_open=["TIE"], names={"FU1": "马集1号熔断器", "T8": "台区T8"},
        village_rows=g.GRID_VILLAGE_ROWS, crews=g.GRID_CREWS)
    d = make(tmp_path, topology=grid)
    feed(d, 1, ev("N1", "T1", "T2"), ev("N8", "T8", source="calls2"),
         *(ev(f"A{t}", t, signal="alive", source="ami") for t in ("T3", "T4", "T5")))
    iid = only_incident(d)
    assert incident(d, iid).estimate.devices == ("FU1",)
    crew = msgs(d, iid, "crew", "dispatch")[-1].body
    assert "另有已报停电的台区T8不在上述区段，请一并核查。" in crew
    d.close()
