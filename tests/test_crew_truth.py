"""What a crew and the command centre are told stays true to where the crews are and by when
they must arrive: a crew named for a second outage leaves the first (which waits and
escalates), a crew another region sent is busy for every region, an outage grown into an urban
village is held to the urban deadline, an outage off again is warned of again, and the crew's
page takes as "fault found" only what a close-out would.

The daemon's core runs under a controlled clock (:class:`tests.test_lifecycle.Harness`); the
crew's page through the board's test client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import tests.test_lifecycle as lifecycle_tests
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import CommandCentreConfig, FieldConfig, load_config
from outage_sentinel.lifecycle import LifecycleError
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle, topology_from_records
from tests.test_field import crew_token
from tests.test_lifecycle import T0, Harness, county_records, ev, node

ROOT = Path(__file__).resolve().parents[1]


def county(urban: frozenset[str] = frozenset(), two_crews: bool = False) -> Topology:
    """tests.test_lifecycle's county (hospital H1 behind T4 on F2), with the villages in
    ``urban`` urban, and with ``two_crews`` a west crew (C1: F1, F3) and an east one (C2: F2)
    and a third feeder F3 (T6, 西村)."""
    r = county_records()
    r["nodes"] += [node("S3", "source", "F3", feeder_name="10kV三号线"),
                   node("B3", "breaker", "F3"), node("T6", "transformer", "F3", "V2", 60)]
    r["edges"] += [("S3", "B3"), ("B3", "T6")]
    for v in r["villages"]:
        v["area_type"] = "urban" if v["id"] in urban else "rural"
    r["crews"][0]["feeders"] = "F1;F3" if two_crews else "F1;F2;F3"
    if two_crews:
        r["crews"].append({"id": "C2", "name": "东区抢修班", "phone": "13900000002",
                           "channel": "sms", "target": "13900000002", "feeders": "F2",
                           "lat": 36.6, "lon": 115.6})
    r["customers"] = [c for c in r["customers"] if c["id"] == "H1"]  # the hospital alone
    return topology_from_records(**r)


def harness(monkeypatch: pytest.MonkeyPatch, tmp: Path, db_url: str | None,
            topology: Topology, **config: Any) -> Harness:
    monkeypatch.setattr(lifecycle_tests, "county", lambda: topology)
    return Harness(tmp, db_url, **config)


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness_ = harness(monkeypatch, tmp_path, db_url, county())
    yield harness_
    harness_.daemon.close()


def other(h: Harness, incident_id: str) -> str:
    return next(str(r["id"]) for r in h.daemon.store.load_incidents(open_only=False)
                if r["id"] != incident_id)


def warnings_for(h: Harness, incident_id: str) -> list[str]:
    return [m.purpose for m in h.sent(audience="command") if m.incident_id == incident_id
            and m.purpose.startswith(("escalation", "waiting"))]


# -- a crew named for another outage leaves the one it held --------------------------------


def test_a_crew_named_for_another_outage_leaves_the_first_which_waits_and_warns(
        h: Harness) -> None:
    h.feed(ev("H", "T4", "T5"))  # the hospital's feeder: the only crew goes
    hospital = h.only_incident()
    h.at(2)
    h.feed(ev("L", "T1", "T2", "T3", start=T0 + timedelta(minutes=2)))
    low = other(h, hospital)
    assert h.incident(hospital)["crew_id"] == "C1" and h.incident(low)["crew_id"] is None
    h.at(5)
    h.daemon.lifecycle.dispatch(low, "operator:cc", crew_id="C1")  # the command centre's word
    h.deliver()
    # The hospital's outage no longer holds a crew that is elsewhere: it waits for one ...
    row = h.incident(hospital)
    assert (row["crew_id"], row["stage"]) == (None, "confirmed")
    assert h.incident(low)["crew_id"] == "C1"
    # ... the crew's new orders tell it to leave the hospital's outage, as a preemption's do ...
    orders = [m for m in h.sent("dispatch") if m.incident_id == low][-1]
    assert f"请暂停{hospital}（优先级" in orders.text
    # ... and the command centre hears at once that the hospital waits for a crew.
    assert warnings_for(h, hospital) == ["waiting_for_crew"]
    (note,) = [e for e in h.daemon.store.incident_log(hospital)
               if (e["details"] or {}).get("reassigned_to")]
    assert note["actor"] == "operator:cc" and note["details"]["reassigned_to"] == low
    # The daemon does not undo the command centre's decision at its next check: the crew it
    # named stays where it was sent, though still on its way and on lower-priority work.
    h.at(6)
    h.deliver()
    assert h.incident(low)["crew_id"] == "C1" and h.incident(hospital)["crew_id"] is None
    assert [m.incident_id for m in h.sent("dispatch")] == [hospital, low]
    # The hospital's outage escalates by its own deadline (T0 + 90 min, rural).
    h.at(76)
    h.deliver()
    h.at(91)
    h.deliver()
    assert warnings_for(h, hospital) == ["waiting_for_crew", "escalation_no_crew",
                                         "escalation_overdue"]


def test_a_crew_at_work_named_for_a_hospital_leaves_its_outage_to_wait_and_escalate(
        h: Harness) -> None:
    h.feed(ev("X", "T1", "T2", "T3"))
    first = h.only_incident()
    h.at(20)
    h.daemon.lifecycle.arrive(first, "operator:crew1")
    h.at(25)
    h.feed(ev("Y", "T4", "T5", start=T0 + timedelta(minutes=25)))
    hospital = other(h, first)
    h.daemon.lifecycle.dispatch(hospital, "operator:cc", crew_id="C1")
    h.deliver()
    row = h.incident(first)
    assert (row["crew_id"], row["stage"]) == (None, "confirmed")
    orders = [m for m in h.sent("dispatch") if m.incident_id == hospital][-1]
    assert f"请暂停{first}" in orders.text
    assert warnings_for(h, first) == ["waiting_for_crew"]
    h.at(40)
    h.daemon.lifecycle.arrive(hospital, "operator:crew1")
    for minute in (76, 91):
        h.at(minute)
        h.deliver()
    assert warnings_for(h, first) == ["waiting_for_crew", "escalation_no_crew",
                                      "escalation_overdue"]


# -- a crew is one crew whichever region sent it --------------------------------------------


@pytest.fixture
def regions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
            ) -> Iterator[tuple[Harness, Harness]]:
    topology = county(two_crews=True)
    west = harness(monkeypatch, tmp_path / "w", db_url, topology,
                   region={"name": "west", "feeders": ["F1", "F3"]})
    east = harness(monkeypatch, tmp_path / "e", db_url, topology,
                   region={"name": "east", "feeders": ["F2"]})
    yield west, east
    west.daemon.close()
    east.daemon.close()


def test_a_crew_another_region_sent_is_busy_for_this_region_too(
        regions: tuple[Harness, Harness]) -> None:
    west, east = regions
    east.feed(ev("E1", "T4"))  # the hospital: east's crew C2 goes
    hospital = east.only_incident()
    assert east.incident(hospital)["crew_id"] == "C2"
    west.at(3)
    west.feed(ev("W1", "T1", start=T0 + timedelta(minutes=3)))
    west.at(5)
    west.feed(ev("W2", "T6", start=T0 + timedelta(minutes=5)))
    by_id = {r["id"]: r for r in west.daemon.store.load_incidents()}
    assert sorted(r["crew_id"] or "" for r in by_id.values()) == ["", "C1"]
    assert not [m for m in west.sent("dispatch") if m.target == "13900000002"]
    waiting = next(i for i, r in by_id.items() if r["crew_id"] is None)
    told = [m for m in west.sent("waiting_for_crew") if m.incident_id == waiting]
    assert told and "东区抢修班" in told[0].text  # the command centre sees where C2 is
    assert east.incident(hospital)["crew_id"] == "C2"


def test_a_free_crew_of_another_region_is_sent_across_and_stays_its_regions_to_release(
        regions: tuple[Harness, Harness]) -> None:
    west, east = regions
    west.feed(ev("W1", "T1"))
    west.at(2)
    west.feed(ev("W2", "T6", start=T0 + timedelta(minutes=2)))
    across = [m for m in west.sent("dispatch") if m.target == "13900000002"]
    assert len(across) == 1 and "跨区支援" in across[0].text
    # East's hospital cannot pull C2 off west's incident (not east's to write): it waits,
    # and the command centre cannot name C2 from east either until west releases it.
    east.at(4)
    east.feed(ev("E1", "T4", start=T0 + timedelta(minutes=4)))
    hospital = east.only_incident()
    assert east.incident(hospital)["crew_id"] is None
    assert [m.incident_id for m in east.sent("waiting_for_crew")] == [hospital]
    with pytest.raises(LifecycleError, match="C2 is held by INC-west"):
        east.daemon.lifecycle.dispatch(hospital, "operator:cc", crew_id="C2")


# -- an outage grown into an urban village is held to the urban deadline ----------------------


def test_an_outage_grown_into_an_urban_village_gets_the_urban_deadline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    h = harness(monkeypatch, tmp_path, db_url, county(urban=frozenset({"V2"})))
    try:
        h.feed(ev("A1", "T1"))  # 东村, rural: 90 minutes
        inc = h.only_incident()
        first = h.sent("dispatch")[-1].text
        assert "农村90分钟" in first
        h.at(10)
        h.feed(ev("A2", "T3", start=T0 + timedelta(minutes=10)))  # 西村, urban, same fault
        update = h.sent("dispatch")[-1]
        assert update.incident_id == inc and "更新" in update.text.splitlines()[0]
        # From detection (10:00) with the urban 45 minutes: 10:45, not 11:30.
        assert "到达时限：2026-11-23 10:45前（城区45分钟，剩35分钟）" in update.text
        with h.daemon.store.transaction() as conn:
            i, row = h.daemon.lifecycle.load_in(conn, inc)
            deadline, area, _ = h.daemon.lifecycle.dispatcher.deadline_in(conn, i, row, h.now)
        assert (deadline, area) == (T0 + timedelta(minutes=45), "urban")
        h.at(46)
        h.deliver()
        assert "escalation_overdue" in warnings_for(h, inc)
    finally:
        h.daemon.close()


def test_a_restored_part_never_loosens_the_deadline_already_given(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    h = harness(monkeypatch, tmp_path, db_url, county(urban=frozenset({"V2"})))
    try:
        h.feed(ev("A1", "T1", "T3"))  # urban from the start: 45 minutes
        inc = h.only_incident()
        h.at(10)
        h.daemon.processor.operator_restore(inc, "operator:crew1", "T3", "2026-11-23 10:10",
                                            now=h.daemon.clock())
        with h.daemon.store.transaction() as conn:
            i, row = h.daemon.lifecycle.load_in(conn, inc)
            deadline, area, _ = h.daemon.lifecycle.dispatcher.deadline_in(conn, i, row, h.now)
        assert (deadline, area) == (T0 + timedelta(minutes=45), "urban")
    finally:
        h.daemon.close()


# -- an outage off again is a new episode, warned of again -----------------------------------


def test_an_outage_off_again_with_no_crew_is_warned_of_again(h: Harness) -> None:
    h.feed(ev("X", "T1", "T2", "T3"))  # C1 goes and starts work there
    busy = h.only_incident()
    h.at(5)
    h.daemon.lifecycle.arrive(busy, "operator:crew1")
    h.at(6)
    h.feed(ev("A", "T4", "T5", start=T0 + timedelta(minutes=6)))
    waiting = other(h, busy)
    assert warnings_for(h, waiting) == ["waiting_for_crew"]
    h.at(100)
    h.feed(ev("A", "T4", "T5", status="restored", start=T0 + timedelta(minutes=6)))
    h.at(110)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).reopen(
        waiting, None, "operator:cc", "仍停电")
    h.deliver()
    assert h.incident(waiting)["status"] == "active"
    told = [m for m in h.daemon.store.messages(incident_id=waiting)
            if m.purpose == "waiting_for_crew"]
    assert len(told) == 2 and all(m.status == "sent" for m in told)
    # The second states the new deadline, counted from when it went off again.
    assert "2026-11-23 13:20" in told[1].body


# -- the crew's page names as the fault only what a close-out would take ---------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_crew_page_refuses_a_pole_as_the_fault_device(store: Store, tmp_path: Path
                                                          ) -> None:
    config = load_config(ROOT / "config.yaml").model_copy(update={
        "state_dir": tmp_path, "field": FieldConfig(base_url="http://board.example.cn:8088"),
        "command_centre": CommandCentreConfig(channel="wecom")})
    topology = load_bundle(ROOT / "topology")
    clock = Clock()
    board = build(config, store, lambda: topology, clock)
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-002,T-CG01-003"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    section = board.actions.core.processor.incident(iid).estimate.section
    pole = next(n for n in section if topology.nodes[n].kind == "junction")
    fuse = next(n for n in section if topology.nodes[n].kind == "fuse")
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": pole,
                                              "cause": "绝缘子击穿"})
    assert r.status_code == 400 and pole in r.text and "junction" in r.text
    assert not [e for e in store.incident_log(iid) if e["stage"] == "fault_found"]
    # The page offers only what it takes.
    offered = client.get(f"/c/{token}").text
    assert f'value="{fuse}"' in offered and f'value="{pole}"' not in offered
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": fuse})
    assert r.status_code == 200, r.text
    clock.now += timedelta(minutes=30)
    board.actions.incident_step(iid, "restore", {}, "operator:cc")
    board.actions.incident_step(iid, "close", {"cause": "设备故障"}, "operator:cc")
    assert store.confirmed_devices()[iid] == [fuse]
