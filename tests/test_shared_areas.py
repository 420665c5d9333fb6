"""Villages whose areas more than one open incident holds, through the daemon's processing:
one incident ending must not tell a village its power is back while another still has an
area of it off (planned work ending under a fault, two records of the same outage, an
operator cancelling one of them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board.field import answer_event
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_grid
from tests.test_lifecycle import Recorder

CHANNELS = ("wecom", "sms", "dingtalk", "feishu", "cc")


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, build_grid())
    yield d
    d.close()


def make_daemon(tmp_path: Path, db_url: str, topology: Topology, **extra: Any) -> Daemon:
    """A started daemon on ``topology`` with recording channels and a hand-set clock
    (``extra``: more config sections, e.g. ``notify``)."""
    config = parse_config({
        "state_dir": str(tmp_path / "state"),
        "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        **extra,
    })
    d = Daemon(config, topology=topology, sources=[],
               channels={name: Recorder("all") for name in CHANNELS}, clock=Clock())
    d.start()
    return d


def ev(event_id: str, *areas: str, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": "active", "start": T0, "transformers": areas, **kw})


def feed(d: Daemon, minutes: int, *events: OutageEvent) -> None:
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    d.store.ingest("feed", PollResult(events=list(events)), d.clock())
    d.process()


def told(d: Daemon) -> list[tuple[str, str, str]]:
    """(village, purpose, incident) of every liaison notice queued, in order."""
    out = []
    for m in d.store.messages():
        if m.audience == "liaison" and m.recipient.startswith("village:"):
            out.append((m.recipient.split(":")[1], m.purpose, m.incident_id))
    return list(dict.fromkeys(out))


def incident(d: Daemon, kind: str) -> Incident:
    (row,) = [r for r in d.store.load_incidents(open_only=False)
              if Incident.from_json(r["state"]).kind == kind]
    return Incident.from_json(row["state"])


def test_planned_work_ending_under_a_fault_does_not_restore_the_village(
        daemon: Daemon) -> None:
    # Planned work on T1, T2 (both 马集村 V1); a fault record names T1 and T3 (刘庄村 V2).
    feed(daemon, 1, ev("P1", "T1", "T2", kind="planned", expected_restoration=T0 + timedelta(hours=4)))
    feed(daemon, 31, ev("F1", "T1", "T3", start=T0 + timedelta(minutes=30)))
    # The work is over; the fault record is still on: V1's T1 is dark.
    feed(daemon, 120, ev("P1", "T1", "T2", kind="planned", status="restored",
                         expected_restoration=T0 + timedelta(hours=4), end=T0 + timedelta(hours=2)))
    planned, fault = incident(daemon, "planned"), incident(daemon, "fault")
    assert planned.status == "restored" and "T1" in fault.off
    assert ("V1", "restored", planned.id) not in told(daemon)
    assert "V1" not in planned.restored_villages  # it was not told so
    # The fault ends: now V1 hears its power is back, once.
    feed(daemon, 180, ev("F1", "T1", "T3", start=T0 + timedelta(minutes=30),
                         status="restored", end=T0 + timedelta(hours=3)))
    back = [t for t in told(daemon) if t[1] == "restored"]
    assert sorted(v for v, _, _ in back) == ["V1", "V2"]
    assert {i for _, _, i in back} == {fault.id}


def test_an_operator_cancelling_one_record_does_not_tell_a_dark_village_it_is_normal(
        daemon: Daemon) -> None:
    # Meters open one incident at 09:00; the outage system's record of the same outage says
    # it began an hour earlier (outside the correlation window): a second incident.
    feed(daemon, 60, ev("M1", "T1", "T2", start=T0 + timedelta(hours=1), signal="dead"))
    feed(daemon, 65, ev("N1", "T1", "T2"))
    rows = daemon.store.load_incidents(open_only=True)
    assert len(rows) == 2  # the case: two incidents hold T1 and T2
    first, second = sorted(r["id"] for r in rows)
    assert ("V1", "outage", first) in told(daemon)
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    steps.cancel(first, "重复工单", "ops")
    assert ("V1", "cancelled", first) not in told(daemon)  # "正常供电" would be false
    # The meters say the power is back: the other incident ends and tells the village.
    feed(daemon, 90, ev("M1", "T1", "T2", start=T0 + timedelta(hours=1), signal="dead",
                        status="restored", end=T0 + timedelta(minutes=89)),
         ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=89)))
    assert ("V1", "restored", second) in told(daemon)


def test_a_fault_record_during_planned_work_keeps_its_area_off_after_the_work(
        daemon: Daemon) -> None:
    """A fault the outage system reports inside planned work was 'explained' and dropped: the
    end of the work told the village its power was back while the fault was live, and the
    record, listed unchanged, was never seen again."""
    feed(daemon, 1, ev("P1", "T1", "T2", kind="planned",
                       expected_restoration=T0 + timedelta(hours=4)))
    fault = ev("F1", "T1", start=T0 + timedelta(hours=1), device="FU1")
    feed(daemon, 61, fault)
    feed(daemon, 120, ev("P1", "T1", "T2", kind="planned", status="restored",
                         expected_restoration=T0 + timedelta(hours=4),
                         end=T0 + timedelta(hours=2)), fault)
    (row,) = daemon.store.load_incidents(open_only=True)
    inc = Incident.from_json(row["state"])
    assert "feed|F1" in inc.members and inc.off == ("T1",)
    assert not [t for t in told(daemon) if t[1] == "restored"]
    feed(daemon, 200, ev("F1", "T1", start=T0 + timedelta(hours=1), device="FU1",
                         status="restored", end=T0 + timedelta(minutes=199)))
    assert [t[:2] for t in told(daemon) if t[1] == "restored"] == [("V1", "restored")]
    # Meters' dead reports inside the work are still explained by it: no incident of theirs;
    # they join the work's incident as evidence (its areas stay off after it while dark).
    feed(daemon, 240, ev("P2", "T5", kind="planned", start=T0 + timedelta(hours=4),
                         expected_restoration=T0 + timedelta(hours=6)),
         ev("M5", "T5", signal="dead", start=T0 + timedelta(hours=4, minutes=5)))
    holders = [Incident.from_json(r["state"]) for r in daemon.store.load_incidents()]
    assert [i.kind for i in holders if "feed|M5" in i.members] == ["planned"]


def test_a_record_reissued_under_a_new_id_cancels_nothing_whatever_the_order(
        daemon: Daemon) -> None:
    """One poll lists the old record cancelled (作废) and its reissue active; folded old-first,
    the village was told 停电取消，正常供电 while dark, and a second incident opened."""
    feed(daemon, 1, ev("N1", "T1", "T2"))
    feed(daemon, 20, ev("N1", "T1", "T2", status="cancelled", end=T0 + timedelta(minutes=20)),
         ev("N2", "T1", "T2"))
    assert told(daemon) == [("V1", "outage", told(daemon)[0][2])]
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = Incident.from_json(row["state"])
    assert inc.status == "active" and set(inc.off) == {"T1", "T2"}
    # A record that flips within one poll keeps its own order: its last word counts.
    feed(daemon, 30, ev("N2", "T1", "T2", status="restored", end=T0 + timedelta(minutes=29)),
         ev("N2", "T1", "T2", start=T0 + timedelta(minutes=29)))
    (row,) = daemon.store.load_incidents(open_only=False)
    assert Incident.from_json(row["state"]).status == "active"


def test_an_operator_adding_an_area_taken_out_earlier_brings_it_back(daemon: Daemon) -> None:
    """A correction took T5 out; the command centre learns it is off after all. The add said
    it was done and changed nothing: the exclusion hid every later word of T5."""
    feed(daemon, 1, ev("N1", "T4", "T5"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = row["id"]
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    while daemon.deliverer.run_once(daemon.clock()):  # V3 told: a correction is owed
        pass
    steps.remove(iid, "T5", "ops", "误报")
    assert ("V3", "corrected", iid) in told(daemon)
    after = steps.add(iid, "T5", "ops", "村委来电确认停电")
    assert "T5" in after.off and "T5" not in after.excluded
    v3 = [m.purpose for m in daemon.store.messages()
          if m.audience == "liaison" and m.recipient.startswith("village:V3:")]
    assert "outage" in v3[v3.index("corrected"):]  # told again after the correction
    assert "V3" in after.notified_villages
    log = [e["stage"] for e in daemon.store.incident_log(iid)]
    assert log[-2:] == ["scope_readmitted", "scope_added"]


def test_a_liaisons_answer_on_planned_work_reaches_it_or_becomes_a_fault(
        daemon: Daemon) -> None:
    """已来电 during the work was dropped (no correlation with planned work, and the field's
    answers were not routed to the incident they answer); 仍停电 after the work opened a new
    *planned* outage and told the village of planned work nobody announced."""
    feed(daemon, 60, ev("P1", "T6", "T7", kind="planned",
                        expected_restoration=T0 + timedelta(hours=4)))
    planned = incident(daemon, "planned")
    back = answer_event("j" * 64, planned, "T6", "back", 1, daemon.clock())
    daemon.processor.report(back, daemon.clock())
    during = incident(daemon, "planned")
    assert any(k.startswith("field|") for k in during.members) and "T6" in during.restored
    feed(daemon, 180, ev("P1", "T6", "T7", kind="planned", status="restored",
                         expected_restoration=T0 + timedelta(hours=4),
                         end=T0 + timedelta(hours=3)))
    ended = incident(daemon, "planned")
    assert ended.status == "restored"
    daemon.clock.now = T0 + timedelta(minutes=200)  # type: ignore[attr-defined]
    dark = answer_event("k" * 64, ended, "T6", "dark", 1, daemon.clock())
    assert dark.kind == "fault"
    daemon.processor.report(dark, daemon.clock())
    fault = incident(daemon, "fault")
    assert fault.status == "active" and "T6" in fault.off
    assert len([r for r in daemon.store.load_incidents(open_only=False)]) == 2


def test_an_outage_record_published_after_the_meters_said_power_is_back_reopens_nothing(
        daemon: Daemon) -> None:
    start, back = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    meters = [ev(f"M-{t}", t, source="ami", signal="dead", start=start) for t in ("T1", "T2")]
    feed(daemon, 6, *meters)
    feed(daemon, 21, *[ev(m.event_id, *m.transformers, source="ami", signal="dead",
                          start=start, status="restored", end=back) for m in meters])
    # The outage system's record of the same outage, published late.
    feed(daemon, 30, ev("N1", "T1", "T2", start=start))
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = Incident.from_json(row["state"])
    assert inc.status == "restored" and "feed|N1" in inc.members
    assert [p for v, p, _ in told(daemon) if v == "V1"] == ["outage", "restored"]
    # An outage that begins after the restoration is a new one.
    feed(daemon, 40, ev("N2", "T1", start=T0 + timedelta(minutes=35)))
    assert len(daemon.store.load_incidents(open_only=True)) == 1
    assert [p for v, p, _ in told(daemon) if v == "V1"][-1] == "outage"


def test_a_false_alarm_cancelled_before_its_notices_went_takes_them_back(
        daemon: Daemon) -> None:
    """Cancelled before the deliverer ran, the outage notice and the crew's dispatch still
    went out (and then 停电取消): now they are taken back, and nobody hears of it."""
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    steps.cancel(row["id"], "误报", "ops")
    mine = daemon.store.messages(incident_id=row["id"])
    by = {(m.purpose, m.status) for m in mine if m.audience in ("liaison", "crew")}
    assert ("outage", "withdrawn") in by and ("dispatch", "withdrawn") in by
    assert not [m for m in mine if m.purpose == "cancelled" and m.audience == "liaison"]
    assert any(m.audience == "command" for m in mine)  # the command centre still hears
    # Once the notices went out, a cancel tells everyone told.
    feed(daemon, 30, ev("N2", "T5"))
    (row,) = daemon.store.load_incidents(open_only=True)
    while daemon.deliverer.run_once(daemon.clock()):
        pass
    steps.cancel(row["id"], "误报", "ops")
    cancelled = [m for m in daemon.store.messages(incident_id=row["id"])
                 if m.purpose == "cancelled" and m.audience == "liaison"]
    heard = {m.recipient.split(":")[1] for m in daemon.store.messages(incident_id=row["id"])
             if m.purpose == "outage" and m.status == "sent"}
    assert "V3" in heard and {m.recipient.split(":")[1] for m in cancelled} == heard


def test_a_crew_freed_in_the_same_poll_goes_to_the_new_fault(tmp_path: Path,
                                                              db_url: str) -> None:
    """One crew for both lines. One poll brings the end of the fault it was sent to (马集线)
    and a new fault on 城关线. Endings are folded last; the new fault still gets the crew,
    and the command centre hears of no crew shortage that was not there."""
    one = [{"id": "CR1", "name": "县抢修班", "phone": "13900000001", "channel": "wecom",
            "target": "crew-1", "feeders": "F1;F2"}]
    d = make_daemon(tmp_path, db_url, build_grid(crews=one))
    try:
        feed(d, 1, ev("F1", "T3"))
        first = incident(d, "fault")
        assert d.store.get_incident(first.id)["crew_id"] == "CR1"
        feed(d, 60, ev("F1", "T3", status="restored", end=T0 + timedelta(minutes=59)),
             ev("F2", "T6", start=T0 + timedelta(minutes=58)))
        (second,) = d.store.load_incidents(open_only=True)
        assert second["id"] != first.id and second["crew_id"] == "CR1"
        assert not [m for m in d.store.messages() if m.purpose == "waiting_for_crew"]
    finally:
        d.close()
