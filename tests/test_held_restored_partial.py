""""Power back" held from a village during a PARTIAL restoration (its incident still on) is
kept until it is true, then sent — it is not thrown away by the clock's check while the
incident goes on. The village dropped from the holding incident's list only when it goes off
again in that incident (whose own notices then speak for it). And a "power back" that waited in
the outbox is not sent to a village dark again by then — in another incident, or in its own.

Topology (tests.test_held_notices): 马集村 V1 has T1 on F1 and T6 on F2; 刘庄村 V2 has T3
on F1; 城关社区 V4 has T7 on F2. Incident A (F1: T1, T3) and B (F2: T6, T7) both keep V1 dark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_grid
from tests.test_held_notices import by_feeder, check, steps, two_feeder_village
from tests.test_lifecycle import Recorder
from tests.test_shared_areas import CHANNELS, Clock, ev, feed

QUIET = {"notify": {"quiet_hours": {"liaison": "22:00-07:00"}}}
#: Minutes after T0 (08:00 local): 22:00 and 07:00 the next morning.
NIGHT, MORNING = 840, 1380


def start_daemon(tmp_path: Path, db_url: str, topology: Topology, **extra: Any) -> Daemon:
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"}, **extra})
    d = Daemon(config, topology=topology, sources=[],
               channels={name: Recorder("all") for name in CHANNELS}, clock=Clock())
    d.start()
    return d


@pytest.fixture
def make(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def build(topology: Topology, **extra: Any) -> Daemon:
        made.append(start_daemon(tmp_path, db_url, topology, **extra))
        return made[-1]

    yield build
    for d in made:
        d.close()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def meters(d: Daemon, minutes: int, *events: OutageEvent) -> None:
    """Screened AMI outputs (area dead / alive), as the meters' source hands them on."""
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    d.store.ingest("ami", PollResult(events=list(events)), d.clock())
    d.process()


def deliver(d: Daemon, minutes: int) -> None:
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    while d.deliverer.run_once(d.clock()):
        pass


def liaison(d: Daemon, village: str, incident_id: str | None = None
            ) -> list[tuple[str, str, str]]:
    """(purpose, incident, status) of every liaison message to ``village``'s WeCom group or
    SMS manager, in queue order (one per message, not per recipient: the first recipient)."""
    rows = [m for m in d.store.messages() if m.audience == "liaison"
            and m.recipient.startswith(f"village:{village}:")
            and (incident_id is None or m.incident_id == incident_id)]
    first = rows[0].recipient if rows else ""
    return [(m.purpose, m.incident_id, m.status) for m in rows if m.recipient == first]


def two_outages_a_partly_back(d: Daemon) -> tuple[Incident, Incident]:
    """A (F1: T1 of V1, T3 of V2) and B (F2: T6 of V1, T7 of V4); T1 comes back at 08:20
    while A goes on (T3): V1's "restored" is held (T6 still off in B)."""
    feed(d, 1, ev("N1", "T1", "T3"), ev("N2", "T6", "T7"))
    a, b = by_feeder(d, "F1"), by_feeder(d, "F2")
    assert {"V1", "V2"} <= set(a.notified_villages) and "V1" in b.notified_villages
    d.clock.now = at(20)  # type: ignore[attr-defined]
    d.processor.operator_restore(a.id, "op", "T1", None, "", now=d.clock())
    a = by_feeder(d, "F1")
    assert a.status == "active" and a.off == ("T3",)
    assert d.store.kv_get(f"held:{a.id}") == {"villages": ["V1"]}
    return a, b


def test_a_partial_restoration_held_back_survives_the_clock_check_and_is_sent_when_true(
        make: Callable[..., Daemon]) -> None:
    d = make(two_feeder_village())
    a, b = two_outages_a_partly_back(d)
    check(d, 21)  # A still on, V1 still dark in B: kept, nothing said
    assert d.store.kv_get(f"held:{a.id}") == {"villages": ["V1"]}
    assert ("restored", a.id) not in {(p, i) for p, i, _ in liaison(d, "V1")}
    d.clock.now = at(25)  # type: ignore[attr-defined]
    CommandSteps(d.lifecycle, d.processor, d.clock).remove(b.id, "T6", "ops", "not off")
    # B's outage notice to V1 never went: withdrawn, and no 【更正】 of it.
    assert [(p, s) for p, _, s in liaison(d, "V1", b.id)] == [("outage", "withdrawn")]
    check(d, 26)  # B let V1 go without a word of power back; A is still on (T3)
    assert by_feeder(d, "F1").status == "active"
    assert [p for p, i, _ in liaison(d, "V1", a.id)] == ["outage", "restored"]
    (said,) = {m.body for m in d.store.messages(incident_id=a.id)
               if m.purpose == "restored" and m.recipient.startswith("village:V1:wecom")}
    assert "【恢复送电】" in said and "08:20恢复送电" in said  # T1's time, not A's end
    assert "V1" in by_feeder(d, "F1").restored_villages
    assert d.store.kv_get(f"held:{a.id}") is None
    assert steps(d, a.id, "held_released") == [{"villages": ["V1"], "already_told": []}]
    # A ends: V2 hears it; V1, told already, does not hear it twice.
    feed(d, 40, ev("N1", "T1", "T3", status="restored", end=at(40)))
    check(d, 41)
    assert [p for p, i, _ in liaison(d, "V1", a.id)] == ["outage", "restored"]
    assert [p for p, i, _ in liaison(d, "V2", a.id)] == ["outage", "restored"]


def test_the_held_notice_goes_out_once_the_holding_incident_ends_too(
        make: Callable[..., Daemon]) -> None:
    """The reproduction's order: checks while A is on, B lets V1 go, A ends, the next check
    tells V1 (before the fix the first check had thrown the held entry away)."""
    d = make(two_feeder_village())
    a, b = two_outages_a_partly_back(d)
    check(d, 21)
    d.clock.now = at(25)  # type: ignore[attr-defined]
    CommandSteps(d.lifecycle, d.processor, d.clock).remove(b.id, "T6", "ops", "not off")
    feed(d, 40, ev("N1", "T1", "T3", status="restored", end=at(40)))
    check(d, 41)
    assert [p for p, i, _ in liaison(d, "V1", a.id)] == ["outage", "restored"]
    assert d.store.kv_prefixed("held:") == {}


def test_a_held_village_off_again_in_the_holding_incident_is_let_go_to_its_own_notices(
        make: Callable[..., Daemon]) -> None:
    d = make(two_feeder_village())
    a, b = two_outages_a_partly_back(d)
    meters(d, 22, ev("T1@22", "T1", source="ami", signal="dead", start=at(22)))
    assert "T1" in by_feeder(d, "F1").off  # V1 dark again in A itself
    check(d, 23)
    assert d.store.kv_get(f"held:{a.id}") is None  # A's own notices speak for V1 now
    d.clock.now = at(25)  # type: ignore[attr-defined]
    CommandSteps(d.lifecycle, d.processor, d.clock).remove(b.id, "T6", "ops", "not off")
    check(d, 26)  # dark in A: not told its power is back
    assert "restored" not in [p for p, _, _ in liaison(d, "V1", a.id)]
    meters(d, 39, ev("T1@22", "T1", source="ami", signal="dead", start=at(22),
                     status="restored", end=at(39)))
    feed(d, 40, ev("N1", "T1", "T3", status="restored", end=at(40)))
    check(d, 41)
    assert [p for p, _, _ in liaison(d, "V1", a.id)].count("restored") == 1
    assert by_feeder(d, "F1").status == "restored"


def test_a_partial_restoration_that_went_moot_is_held_and_sent_once_true(
        make: Callable[..., Daemon]) -> None:
    """Planned work A on F1 (T1 of V1, T3 of V2); at 22:10 T1 comes back while T3 stays off:
    V1's 恢复送电 waits for 07:00 (quiet hours). At 23:00 a fault B on F2 takes V1's T6: at
    07:00 the waiting notice is moot and A holds V1 — still on (T3) — until B lets V1 go."""
    d = make(two_feeder_village(), **QUIET)
    feed(d, 600, ev("P1", "T1", "T3", kind="planned", start=at(600),
                    expected_restoration=at(1500)))
    deliver(d, 600)
    a = by_feeder(d, "F1")
    d.clock.now = at(NIGHT + 10)  # type: ignore[attr-defined]
    d.processor.operator_restore(a.id, "op", "T1", None, "", now=d.clock())
    deliver(d, NIGHT + 10)
    assert ("restored", a.id, "pending") in liaison(d, "V1")
    feed(d, NIGHT + 60, ev("F9", "T6", start=at(NIGHT + 60)))
    b = by_feeder(d, "F2")
    deliver(d, MORNING + 1)
    back = [s for p, i, s in liaison(d, "V1", a.id) if p == "restored"]
    assert back == ["superseded"]
    assert d.store.kv_get(f"held:{a.id}") == {"villages": ["V1"]}
    check(d, MORNING + 2)  # A still on (T3), V1 dark in B: kept
    assert by_feeder(d, "F1").status == "active"
    assert d.store.kv_get(f"held:{a.id}") == {"villages": ["V1"]}
    d.clock.now = at(MORNING + 5)  # type: ignore[attr-defined]
    CommandSteps(d.lifecycle, d.processor, d.clock).remove(b.id, "T6", "ops", "not off")
    check(d, MORNING + 6)
    deliver(d, MORNING + 6)
    back = [s for p, i, s in liaison(d, "V1", a.id) if p == "restored"]
    assert back == ["superseded", "sent"]
    assert d.store.kv_get(f"held:{a.id}") is None


def planned_work_announced(d: Daemon) -> Incident:
    """Planned work on 马集村's T1, T2 and 刘庄村's T3 from 18:00 to 09:00, announced (sent)."""
    feed(d, 600, ev("P1", "T1", "T2", "T3", kind="planned", start=at(600),
                    expected_restoration=at(1500)))
    deliver(d, 600)
    (row,) = d.store.load_incidents(open_only=True)
    return Incident.from_json(row["state"])


def test_a_waiting_power_back_is_not_sent_to_a_village_dark_again_in_the_same_incident(
        make: Callable[..., Daemon]) -> None:
    """Planned work on 马集村's T1, T2 and 刘庄村's T3; at 22:10 T1 and T2 are back while T3
    stays off: 马集村's 恢复送电 waits for 07:00 (quiet hours). At 22:30 the meters say T1 is
    dark again — in the same incident. The waiting 恢复送电 would be false: it is taken back
    at once, the new outage notice corrects nothing (the village never heard its power was
    back), and 马集村 hears of its power back once the work is over."""
    d = make(build_grid(), **QUIET)
    a = planned_work_announced(d)
    d.clock.now = at(NIGHT + 10)  # type: ignore[attr-defined]
    d.processor.operator_restore(a.id, "op", "T1,T2", None, "", now=d.clock())
    deliver(d, NIGHT + 10)
    assert ("restored", a.id, "pending") in liaison(d, "V1")
    meters(d, NIGHT + 30, ev("T1@30", "T1", source="ami", signal="dead", start=at(NIGHT + 29)))
    # Taken back at once, and the outage notice does not correct a word the village never had
    heard = liaison(d, "V1", a.id)
    assert [(p, s) for p, _, s in heard] == [
        ("outage", "sent"), ("restored", "withdrawn"), ("outage", "pending")]
    to_v1 = [m for m in d.store.messages(incident_id=a.id)
             if m.recipient.startswith("village:V1:")]
    (why,) = {m.last_error for m in to_v1 if m.purpose == "restored"}
    assert why == "the village is off again before it went out (revision 3)"
    again = [m.body for m in to_v1 if m.purpose == "outage" and m.status == "pending"]
    assert again and not any("更正" in body or "已恢复送电" in body for body in again)
    deliver(d, MORNING + 1)
    assert [(p, s) for p, _, s in liaison(d, "V1", a.id)] == [
        ("outage", "sent"), ("restored", "withdrawn"), ("outage", "sent")]
    # Not held: A itself tells 马集村 when its power is back.
    check(d, MORNING + 2)
    assert d.store.kv_prefixed("held:") == {}
    meters(d, MORNING + 30, ev("T1@30", "T1", source="ami", signal="dead",
                               start=at(NIGHT + 29), status="restored", end=at(MORNING + 30)))
    feed(d, MORNING + 31, ev("P1", "T1", "T2", "T3", kind="planned", start=at(600),
                             expected_restoration=at(1500), status="restored",
                             end=at(MORNING + 31)))
    check(d, MORNING + 32)
    deliver(d, MORNING + 32)
    heard = liaison(d, "V1", a.id)
    assert [(p, s) for p, _, s in heard][-1] == ("restored", "sent")
    assert [s for p, _, s in heard if p == "restored"] == ["withdrawn", "sent"]


def test_a_second_off_and_back_still_waiting_is_taken_back_too(
        make: Callable[..., Daemon]) -> None:
    """马集村 heard its power was back (sent) and off again (sent) in the day; back again at
    22:10, its 恢复送电 waits for 07:00; off again at 22:30: that waiting notice is taken back
    and the outage notice corrects nothing — the last word the village had was 停电, the
    first 恢复送电 having been overtaken by the day's outage notice."""
    d = make(build_grid(), **QUIET)
    a = planned_work_announced(d)
    d.clock.now = at(610)  # type: ignore[attr-defined]
    d.processor.operator_restore(a.id, "op", "T1,T2", None, "", now=d.clock())
    deliver(d, 610)
    meters(d, 620, ev("T1@619", "T1", source="ami", signal="dead", start=at(619)))
    deliver(d, 620)
    meters(d, NIGHT + 10, ev("T1@619", "T1", source="ami", signal="dead", start=at(619),
                             status="restored", end=at(NIGHT + 10)))
    deliver(d, NIGHT + 10)
    meters(d, NIGHT + 30, ev("T1@N29", "T1", source="ami", signal="dead",
                             start=at(NIGHT + 29)))
    assert [(p, s) for p, _, s in liaison(d, "V1", a.id)] == [
        ("outage", "sent"), ("restored", "sent"), ("outage", "sent"),
        ("restored", "withdrawn"), ("outage", "pending")]
    last = [m.body for m in d.store.messages(incident_id=a.id)
            if m.recipient.startswith("village:V1:") and m.purpose == "outage"][-1]
    assert "更正" not in last and "已恢复送电" not in last


def test_a_clock_check_that_releases_nothing_writes_and_logs_nothing(
        make: Callable[..., Daemon], capsys: pytest.CaptureFixture[str]) -> None:
    """V1 held by A (still on, partly back) and dark in B: check after check, nothing is
    released, so nothing is logged as released and the held entry stays as it was."""
    d = make(two_feeder_village())
    a, _ = two_outages_a_partly_back(d)
    capsys.readouterr()
    check(d, 21)
    first = d.store.kv_prefixed("held:")
    check(d, 22)
    assert d.store.kv_prefixed("held:") == first == {a.id: {"villages": ["V1"]}}
    assert "held_notice_released" not in capsys.readouterr().out
    assert steps(d, a.id, "held_released") == []
