""""Power back" held from a village another incident keeps dark is sent once it is true:
when the other incident lets the village go without a word of "restored" (its estimate moves,
the command centre removes the area), the clock's check tells the village; when the other
incident tells it itself, nobody says it twice. Planned work announced for later holds no
village back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import Topology
from tests.conftest import GRID_LIAISONS, GRID_VILLAGE_ROWS, T0, build_topology
from tests.test_lifecycle import Recorder
from tests.test_shared_areas import CHANNELS, Clock, ev, feed, told
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)

# 马集村 (V1) is fed by two feeders: T1 on F1, T6 on F2 (beside T7 of V4, behind fuse FU3).
EDGES = [("S1", "B1"), ("B1", "R1"), ("R1", "J1"), ("J1", "T1"), ("J1", "T3"),
         ("S2", "B2"), ("B2", "R2"), ("R2", "J3"), ("J3", "T6"), ("J3", "FU3"), ("FU3", "T7")]
F2 = {"S2", "B2", "R2", "J3", "T6", "FU3", "T7"}


def two_feeder_village() -> Topology:
    return build_topology(
        EDGES, feeders={n: ("F2" if n in F2 else "F1") for e in EDGES for n in e},
        customers={"T1": 40, "T3": 50, "T6": 30, "T7": 45},
        villages={"T1": "V1", "T3": "V2", "T6": "V1", "T7": "V4"},
        names={"S1": "10kV马集线", "S2": "10kV城关线", "FU3": "城关3号熔断器"},
        village_rows=GRID_VILLAGE_ROWS, liaisons=GRID_LIAISONS,
        crews=[{"id": "CR1", "name": "班1", "phone": "13900000001", "channel": "wecom",
                "target": "crew-1", "feeders": "F1;F2"}])


@pytest.fixture
def shared(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"}})
    d = Daemon(config, topology=two_feeder_village(), sources=[],
               channels={name: Recorder("all") for name in CHANNELS}, clock=Clock())
    d.start()
    yield d
    d.close()


def by_feeder(d: Daemon, feeder: str) -> Incident:
    (row,) = [r for r in d.store.load_incidents(open_only=False) if r["feeder"] == feeder]
    return Incident.from_json(row["state"])


def check(d: Daemon, minutes: int) -> None:
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    d.clock_stage.run_once(d.clock())


def steps(d: Daemon, incident_id: str, stage: str) -> list[object]:
    return [r["details"] for r in d.store.incident_log(incident_id) if r["stage"] == stage]


def held_then_b_lets_go(d: Daemon) -> tuple[Incident, Incident]:
    """A (F1) holds T1 of V1; B (F2) infers T6 of V1 from a call; A ends: V1 held back."""
    feed(d, 1, ev("N1", "T1"))
    feed(d, 2, ev("N2", "T7", start=T0 + timedelta(minutes=2)),
         ev("C1", "T6", signal="call", start=T0 + timedelta(minutes=2)))
    a, b = by_feeder(d, "F1"), by_feeder(d, "F2")
    assert "V1" in b.notified_villages and "T6" in b.off  # the case: V1 dark in B too
    feed(d, 30, ev("N1", "T1", status="restored", end=T0 + timedelta(minutes=30)))
    assert ("V1", "restored", a.id) not in told(d)  # held: T6 may still be off
    return a, b


@pytest.mark.parametrize("lets_go", ["estimate", "operator"])
def test_a_village_held_back_hears_its_power_is_back_once_nobody_holds_it(
        shared: Daemon, lets_go: str) -> None:
    a, b = held_then_b_lets_go(shared)
    if lets_go == "estimate":  # the outage system names the fuse: T6 was never off
        feed(shared, 40, ev("N2", "T7", start=T0 + timedelta(minutes=2), device="FU3"))
    else:
        shared.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
        CommandSteps(shared.lifecycle, shared.processor, shared.clock).remove(
            b.id, "T6", "ops", "T6 not affected")
    assert "T6" not in by_feeder(shared, "F2").off
    # The incident's log says whom it has not told, and then that it has.
    assert steps(shared, a.id, "held_back") == [{"villages": ["V1"]}]
    assert steps(shared, a.id, "held_released") == []
    check(shared, 41)
    assert ("V1", "restored", a.id) in told(shared)
    assert "V1" in by_feeder(shared, "F1").restored_villages
    assert steps(shared, a.id, "held_released") == [{"villages": ["V1"], "already_told": []}]
    # B's own end later says nothing more to V1 about A, and A's is not said twice.
    feed(shared, 120, ev("N2", "T7", start=T0 + timedelta(minutes=2), status="restored",
                         end=T0 + timedelta(minutes=120), device="FU3"))
    check(shared, 121)
    restored_a = [m for m in shared.store.messages(incident_id=a.id)
                  if m.purpose == "restored" and ":V1:" in m.recipient]
    assert len(restored_a) == len({m.recipient for m in restored_a}) > 0


def test_when_the_other_incident_tells_the_village_itself_nobody_says_it_twice(
        shared: Daemon) -> None:
    a, b = held_then_b_lets_go(shared)
    check(shared, 31)  # still dark in B: nothing yet
    assert ("V1", "restored", a.id) not in told(shared)
    feed(shared, 90, ev("N2", "T7", start=T0 + timedelta(minutes=2), status="restored",
                        end=T0 + timedelta(minutes=90)),
         ev("C1", "T6", signal="call", start=T0 + timedelta(minutes=2), status="restored",
            end=T0 + timedelta(minutes=90)))
    assert ("V1", "restored", b.id) in told(shared)
    check(shared, 91)
    assert ("V1", "restored", a.id) not in told(shared)
    assert shared.store.kv_prefixed("held:") == {}  # nothing left held
    # ... and A's timeline says the village it held needs no word from it.
    assert steps(shared, a.id, "held_released") == [{"villages": [], "already_told": ["V1"]}]


def test_planned_work_announced_for_tomorrow_holds_no_village_back(
        daemon: Daemon) -> None:  # noqa: F811
    tomorrow = T0 + timedelta(days=1)
    feed(daemon, 1, ev("P1", "T1", "T2", kind="planned", start=tomorrow,
                       expected_restoration=tomorrow + timedelta(hours=4)))
    feed(daemon, 5, ev("F1", "T1", "T3", start=T0 + timedelta(minutes=5)))
    feed(daemon, 60, ev("F1", "T1", "T3", start=T0 + timedelta(minutes=5), status="restored",
                        end=T0 + timedelta(minutes=60)))
    fault = next(Incident.from_json(r["state"]) for r in daemon.store.load_incidents(
        open_only=False) if r["kind"] == "fault")
    assert {("V1", "restored", fault.id), ("V2", "restored", fault.id)} <= set(told(daemon))


def test_a_village_never_told_of_a_cancelled_outage_hears_nothing_when_released(
        shared: Daemon) -> None:
    feed(shared, 1, ev("N1", "T1"))
    feed(shared, 2, ev("N2", "T7", start=T0 + timedelta(minutes=2)),
         ev("C1", "T6", signal="call", start=T0 + timedelta(minutes=2)))
    a, b = by_feeder(shared, "F1"), by_feeder(shared, "F2")
    steps = CommandSteps(shared.lifecycle, shared.processor, shared.clock)
    steps.cancel(a.id, "误报", "ops")  # before its notices went out: withdrawn
    shared.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    steps.remove(b.id, "T6", "ops")
    check(shared, 41)
    assert not [m for m in shared.store.messages(incident_id=a.id)
                if m.audience == "liaison" and m.status != "withdrawn"]


def test_a_record_filed_under_another_line_keeps_the_village_dark(tmp_path: Path) -> None:
    """Two records name 南谢庄村 (text only), one on its own line (马集线), one on 王庄线:
    their incidents are filed under those lines. The first ending must not tell the village
    its power is back while the other still lists it off."""
    import json
    import subprocess
    import sys

    from tests.e2e_helpers import ROOT, make_config

    def record(eid: str, feeder: str, at: int, status: str = "active") -> dict[str, object]:
        return {"at": at, "event_id": eid, "kind": "fault", "status": status,
                "start_offset": -1800, "etr_offset": 7200, "feeder": feeder, "device": None,
                "transformers": [], "area_text": "南谢庄村部分用户", "cause": "线路故障"}

    lines = [record("A", "MJ01", 0), record("B", "MJ02", 0), record("A", "MJ01", 1, "restored")]
    (tmp_path / "feed.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in lines), encoding="utf-8")
    cfg = make_config(tmp_path, sources=[{"name": "f", "type": "replay",
                                          "scenario": str(tmp_path / "feed.jsonl"),
                                          "speed": 1.0, "interval_seconds": 0.5}])

    def cycle() -> list[tuple[str, str]]:
        r = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg),
                            "run", "--once"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        sink = tmp_path / "state" / "notifications.jsonl"
        return [(m["incident_id"], m["purpose"]) for m in map(json.loads, sink.read_text(
            encoding="utf-8").splitlines()) if ":V035:" in m["key"]]

    cycle()
    import time
    time.sleep(1.2)  # the restoration of A is due one second into the replay
    told = cycle()
    assert {p for _, p in told} == {"outage"} and len({i for i, _ in told}) == 2
    assert ("restored" not in {p for _, p in cycle()})


def test_a_held_village_whose_record_was_withdrawn_hears_it_called_off(shared: Daemon) -> None:
    """A (F1) names T1 of V1 on record N1 and T3 of V2 on N3; B (F2) keeps V1 dark. N3 is
    restored, then N1 withdrawn (cancelled): A is over, V1 held back. Once B lets V1 go, the
    held notice says what A's end was for V1 — its record withdrawn, no power seen back:
    停电取消, not 恢复送电."""
    feed(shared, 1, ev("N1", "T1"), ev("N3", "T3"))
    feed(shared, 2, ev("N2", "T7", start=T0 + timedelta(minutes=2)),
         ev("C1", "T6", signal="call", start=T0 + timedelta(minutes=2)))
    feed(shared, 30, ev("N3", "T3", status="restored", end=T0 + timedelta(minutes=30)))
    feed(shared, 31, ev("N1", "T1", status="cancelled"))
    a = by_feeder(shared, "F1")
    assert a.status == "restored" and steps(shared, a.id, "held_back") == [{"villages": ["V1"]}]
    feed(shared, 40, ev("N2", "T7", start=T0 + timedelta(minutes=2), device="FU3"))
    check(shared, 41)
    said = [p for v, p, i in told(shared) if v == "V1" and i == a.id]
    assert said == ["outage", "cancelled"]
