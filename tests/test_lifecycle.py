"""Issue 6 acceptance: an incident through every lifecycle state, priority dispatch with one
crew, planned outages announced and reminded and not mistaken for faults, and the report's
customer-hours checked by hand. The daemon's real processing, store (SQLite) and lifecycle run
under a fake clock; the channel is a recording collaborator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.lifecycle import LifecycleError
from outage_sentinel.reports import build_report
from outage_sentinel.topology import Topology, topology_from_records

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")


class Recorder:
    """A channel that accepts everything (but the targets in ``refuse``) and remembers it."""

    type = "file"

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Message] = []
        self.refuse: set[str] = set()

    def send(self, message: Message) -> SendResult:
        if message.target in self.refuse:
            return SendResult(Outcome.PERMANENT, "errcode 310000: keywords not in content")
        self.sent.append(message)
        return SendResult(Outcome.DELIVERED, "ok")

    def already_delivered(self, key: str) -> bool | None:
        return None

    def close(self) -> None:
        pass


def node(id: str, kind: str, feeder: str, village: str = "", customers: int = 0,
         lat: float = 36.5, lon: float = 115.5, **extra: Any) -> dict[str, Any]:
    return {"id": id, "kind": kind, "name": id, "feeder": feeder, "normally_open": 0,
            "village": village, "customers": customers, "lat": lat, "lon": lon, **extra}


def county() -> Topology:
    return topology_from_records(**county_records())


def county_records() -> dict[str, list[Any]]:
    """The county's bundle as records (nodes, edges, villages, liaisons, crews, customers),
    for a test to vary before building it."""
    nodes = [
        node("S1", "source", "F1", feeder_name="10kV一号线"), node("B1", "breaker", "F1"),
        node("J1", "junction", "F1"), node("FU1", "fuse", "F1"), node("FU2", "fuse", "F1"),
        node("T1", "transformer", "F1", "V1", 100), node("T2", "transformer", "F1", "V1", 50),
        node("T3", "transformer", "F1", "V2", 80),
        node("S2", "source", "F2", lat=36.6, lon=115.6, feeder_name="10kV二号线"),
        node("B2", "breaker", "F2", lat=36.6, lon=115.6),
        node("FU3", "fuse", "F2", lat=36.6, lon=115.6),
        node("T4", "transformer", "F2", "V3", 40, lat=36.6, lon=115.6),
        node("T5", "transformer", "F2", "V3", 30, lat=36.6, lon=115.6),
    ]
    edges = [("S1", "B1"), ("B1", "J1"), ("J1", "FU1"), ("FU1", "T1"), ("FU1", "T2"),
             ("J1", "FU2"), ("FU2", "T3"), ("S2", "B2"), ("B2", "FU3"), ("FU3", "T4"),
             ("FU3", "T5")]
    villages = [{"id": v, "name": n, "township": "城关镇", "grid": "G1", "area_type": "rural"}
                for v, n in (("V1", "东村"), ("V2", "西村"), ("V3", "南村"))]
    liaisons = [{"village": v, "name": f"{v}联络人", "role": "village_liaison",
                 "phone": f"1380000000{i}", "channel": "wecom", "target": f"{v}群"}
                for i, v in enumerate(("V1", "V2", "V3"))]
    crews = [{"id": "C1", "name": "抢修一班", "phone": "13900000001", "channel": "sms",
              "target": "13900000001", "feeders": "F1;F2", "lat": 36.55, "lon": 115.55}]
    customers = [
        {"id": "H1", "transformer": "T4", "name": "县人民医院", "phone": "", "importance": "special",
         "tags": ""},
        {"id": "L1", "transformer": "T1", "name": "王大爷", "phone": "13700000001",
         "importance": "", "tags": "elderly_alone"},
    ]
    return {"nodes": nodes, "edges": edges, "villages": villages, "liaisons": liaisons,
            "crews": crews, "customers": customers}


class Harness:
    def __init__(self, tmp: Path, db_url: str | None = None, **config: Any) -> None:
        self.now = T0
        self.topology = county()
        data = {
            "state_dir": str(tmp / "state"),
            "database": {"url": db_url},
            "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp / "none.jsonl")}],
            "channels": {"wecom": {"type": "file", "path": str(tmp / "sink.jsonl")},
                         "sms": {"type": "file", "path": str(tmp / "sink.jsonl")},
                         "cc": {"type": "file", "path": str(tmp / "sink.jsonl")}},
            "command_centre": {"channel": "cc", "target": "指挥中心"},
            **config,
        }
        self.config = parse_config(data)
        self.channel = Recorder("all")
        self.daemon = Daemon(self.config, topology=self.topology, sources=[],
                             channels={"wecom": self.channel, "sms": self.channel,
                                       "cc": self.channel},
                             clock=lambda: self.now)
        self.daemon.start()

    def feed(self, *events: OutageEvent) -> None:
        self.daemon.store.ingest("feed", PollResult(events=list(events)), self.now)
        self.daemon.process()
        self.deliver()

    def deliver(self) -> list[Message]:
        before = len(self.channel.sent)
        self.daemon.lifecycle.check(self.now)
        while self.daemon.deliverer.run_once(self.now):
            pass
        return self.channel.sent[before:]

    def at(self, minutes: float) -> None:
        self.now = T0 + timedelta(minutes=minutes)

    def incident(self, incident_id: str) -> dict[str, Any]:
        row = self.daemon.store.get_incident(incident_id)
        assert row is not None
        return row

    def only_incident(self) -> str:
        rows = self.daemon.store.load_incidents(open_only=False)
        assert len(rows) == 1, [r["id"] for r in rows]
        return str(rows[0]["id"])

    def sent(self, purpose: str | None = None, audience: str | None = None) -> list[Message]:
        return [m for m in self.channel.sent if (purpose is None or m.purpose == purpose)
                and (audience is None or m.audience == audience)]


def ev(event_id: str, *transformers: str, kind: str = "fault", status: str = "active",
       signal: str = "notice", start: datetime = T0, etr: datetime | None = None,
       device: str | None = None, feeder: str | None = None, source: str = "feed"
       ) -> OutageEvent:
    return OutageEvent(source=source, event_id=event_id, kind=kind, status=status,  # type: ignore[arg-type]
                       signal=signal, start=start, expected_restoration=etr,  # type: ignore[arg-type]
                       transformers=transformers, device=device, feeder=feeder,
                       cause="线路故障")


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Harness:
    """The daemon's core on SQLite and on the local PostgreSQL (see conftest ``db_url``)."""
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def test_one_fault_through_every_state_with_two_restoration_steps(h: Harness) -> None:
    # Detected from AMI evidence alone: not yet confirmed, no crew sent.
    h.feed(ev("ami-1", "T1", "T2", "T3", signal="dead", source="ami"))
    inc = h.only_incident()
    row = h.incident(inc)
    assert row["stage"] == "detected" and row["fault_device"] == "B1"
    outage = h.sent("outage", "liaison")
    assert sorted(m.target for m in outage) == ["V1群", "V2群"]
    assert not h.sent("dispatch")

    h.at(5)
    life = h.daemon.lifecycle
    assert life.ack(inc, "operator:zhang").stage == "confirmed"
    assert h.incident(inc)["stage"] == "confirmed"
    assert life.dispatch(inc, "operator:zhang").stage == "dispatched"
    h.deliver()
    dispatch = h.sent("dispatch", "crew")
    assert len(dispatch) == 1 and dispatch[0].target == "13900000001"
    assert "B1" in dispatch[0].text and inc in dispatch[0].text
    # The elderly household behind T1 is on the crew's list; its village's liaison group
    # (a group: no names there) hears the count and who holds the list.
    assert "王大爷" in dispatch[0].text
    care = h.sent("care", "liaison")
    assert [m.target for m in care] == ["V1群"] and "王大爷" not in care[0].text
    assert "本村有1户特殊关怀用户，名单已发送给抢修一班" in care[0].text

    h.at(40)
    assert life.arrive(inc, "operator:crew1").stage == "on_site"

    # Restoration step 1: T3 (all of 西村) back at +60 min — only 西村 hears it.
    h.at(61)
    step1 = h.daemon.processor.operator_restore(
        inc, "operator:crew1", "T3", "2026-11-23 11:00", "倒闸恢复", now=h.daemon.clock())
    assert step1.stage == "partially_restored" and set(step1.off) == {"T1", "T2"}
    restored = h.deliver()
    liaison_restored = [m for m in restored if m.purpose == "restored" and m.audience == "liaison"]
    assert [m.target for m in liaison_restored] == ["V2群"]

    # Step 2: the rest at +120 min.
    h.at(121)
    step2 = h.daemon.processor.operator_restore(
        inc, "operator:crew1", None, "2026-11-23 12:00", now=h.daemon.clock())
    assert step2.status == "restored" and step2.stage == "restored" and not step2.off
    restored = h.deliver()
    assert [m.target for m in restored if m.purpose == "restored" and m.audience == "liaison"] \
        == ["V1群"]

    h.at(180)
    closed = life.close(inc, "operator:zhang", "树线矛盾", "清理树障后恢复")
    assert closed.stage == "closed"
    assert h.incident(inc)["cause_category"] == "树线矛盾"
    h.deliver()
    # A wrong close-out is corrected by closing again with amend, never by a second close.
    closed_at = h.incident(inc)["closed_at"]
    with pytest.raises(LifecycleError, match="already closed.*--amend"):
        life.close(inc, "operator:zhang", "设备故障")
    h.at(190)
    life.close(inc, "operator:li", "设备故障", "班组核实为绝缘子击穿", device="B1", amend=True)
    assert h.incident(inc)["cause_category"] == "设备故障"
    assert h.incident(inc)["closed_at"] == closed_at
    closes = [r["details"] for r in h.daemon.store.incident_log(inc) if r["stage"] == "closed"]
    assert closes[-1] == {"cause_category": "设备故障", "device": "B1", "devices": ["B1"],
                          "amended": True}
    assert h.daemon.store.confirmed_devices()[inc] == ["B1"]
    life.close(inc, "operator:li", "外力破坏", amend=True)  # the cause alone: devices stand
    assert h.daemon.store.confirmed_devices()[inc] == ["B1"]
    assert h.incident(inc)["cause_category"] == "外力破坏"
    h.deliver()
    assert h.sent("close_amended", "command")[-1].text.startswith("【销号更正】")

    stages = [r["stage"] for r in h.daemon.store.incident_log(inc)]
    for s in ("detected", "confirmed", "dispatched", "on_site", "partially_restored", "restored",
              "closed"):
        assert s in stages, stages
    assert stages.index("partially_restored") < stages.index("restored") < stages.index("closed")

    # Every liaison notice went to the right group, once per revision; nothing left undelivered.
    keys = [m.key for m in h.channel.sent]
    assert len(keys) == len(set(keys))
    assert h.daemon.store.outbox_counts().get("pending", 0) == 0
    command = {m.purpose for m in h.sent(audience="command")}
    assert {"summary", "dispatched", "closed"} <= command

    # Customer-hours by hand: T3 80 customers × 1 h (10:00→11:00) + (T1 100 + T2 50) × 2 h
    # (10:00→12:00) = 80 + 300 = 380. AIHC-1 over the 300 customers of the area = 380/300 h;
    # RS-1 over the 24 h day = (1 − (380/300)/24) × 100.
    day_start = datetime(2026, 11, 23, tzinfo=TZ)
    report = build_report(h.daemon.store, h.topology, day_start, day_start + timedelta(days=1),
                          TZ, T0 + timedelta(days=2))
    summary = report.summary.iloc[0]
    assert summary["customer_hours"] == pytest.approx(380.0)
    assert summary["aihc1_h"] == pytest.approx(380.0 / 300)
    assert summary["rs1_pct"] == pytest.approx((1 - (380.0 / 300) / 24) * 100)


def test_one_crew_two_incidents_hospital_first_other_escalates(h: Harness) -> None:
    # An ordinary outage on feeder 1 is confirmed first and takes the only crew.
    h.feed(ev("F1", "T1", "T2", "T3"))
    first = h.only_incident()
    assert h.incident(first)["crew_id"] == "C1"
    # Then the hospital's feeder goes off: higher priority, the crew is reassigned to it.
    h.at(2)
    h.feed(ev("F2", "T4", "T5", start=T0 + timedelta(minutes=2)))
    second = next(r["id"] for r in h.daemon.store.load_incidents() if r["id"] != first)
    assert h.incident(second)["priority"] > h.incident(first)["priority"]
    assert h.incident(second)["crew_id"] == "C1"
    assert h.incident(first)["crew_id"] is None
    assert h.incident(first)["stage"] == "confirmed"
    assert "县人民医院" in h.sent("dispatch")[-1].text
    h.daemon.lifecycle.arrive(second, "operator:crew1")

    # Nothing is escalated while the rural 90-minute deadline is far away...
    h.at(30)
    assert not [m for m in h.deliver() if m.purpose.startswith("escalation")]
    # ...but 15 minutes before it, the waiting incident goes to the command centre, once.
    h.at(76)
    escalated = [m for m in h.deliver() if m.purpose.startswith("escalation")]
    assert [m.incident_id for m in escalated] == [first]
    assert escalated[0].audience == "command"
    h.at(80)
    assert not [m for m in h.deliver() if m.purpose.startswith("escalation")]


def test_planned_outage_announced_reminded_and_not_taken_for_a_fault(h: Harness) -> None:
    start = T0 + timedelta(days=2)
    h.feed(ev("P1", "T1", "T2", kind="planned", start=start, etr=start + timedelta(hours=4)))
    planned = h.only_incident()
    announced = h.sent("outage")
    assert [m.target for m in announced] == ["V1群"] and "计划停电" in announced[0].text
    assert not h.sent("dispatch")  # planned work needs no repair crew

    h.at(60 * 24)  # 24 h before the start: the day-before reminder
    day_before = [m for m in h.deliver() if m.purpose.startswith("reminder")]
    assert [(m.purpose, m.target) for m in day_before] == [("reminder_24h", "V1群")]
    h.at(60 * 24 + 30)
    assert not [m for m in h.deliver() if m.purpose.startswith("reminder")]
    h.at(60 * 47 + 10)  # 50 minutes before: the one-hour reminder
    hour_before = [m for m in h.deliver() if m.purpose.startswith("reminder")]
    assert [(m.purpose, m.target) for m in hour_before] == [("reminder_1h", "V1群")]

    # During the window AMI sees T1 and T2 dead: explained by the planned work, no fault.
    h.at(60 * 49)
    h.feed(ev("ami-9", "T1", "T2", signal="dead", source="ami", start=h.now))
    assert [r["id"] for r in h.daemon.store.load_incidents(open_only=False)] == [planned]
    assert not h.sent("dispatch")

    # A time change is announced as an update.
    h.at(60 * 50)
    h.feed(ev("P1", "T1", "T2", kind="planned", start=start, etr=start + timedelta(hours=6)))
    assert [m.target for m in h.sent("update")] == ["V1群"]
    # The record says the work was called off, but the meters still say T1 and T2 are dark:
    # the village is not told its supply is normal until they say it is back.
    h.feed(ev("P1", "T1", "T2", kind="planned", status="cancelled", start=start,
              etr=start + timedelta(hours=6)))
    assert not h.sent("cancelled") and not h.sent("restored")
    h.at(60 * 51)
    h.feed(ev("ami-9", "T1", "T2", signal="alive", source="ami", status="restored",
              start=T0 + timedelta(minutes=60 * 49)))
    # It was dark: "power is back", not "called off, supply normal".
    assert not h.sent("cancelled")
    back = h.sent("restored")
    assert [m.target for m in back] == ["V1群"] and "恢复送电" in back[0].text
    assert h.incident(planned)["status"] == "restored"


def test_meters_inside_planned_work_keep_the_works_time(h: Harness) -> None:
    """Work on FU3 lists T4; T5, below the same fuse, is inferred. Once the work is under way
    the meters confirm T5 dark — a report that gives no time. The village keeps the work's end
    as its expected time: no update telling it the time is now unknown (恢复时间待定)."""
    end = T0 + timedelta(hours=4)
    h.feed(ev("P1", "T4", kind="planned", device="FU3", start=T0, etr=end))
    planned = h.only_incident()
    (announced,) = h.sent("outage")
    assert "预计恢复：" in announced.text
    h.at(5)
    h.feed(ev("ami-1", "T5", signal="dead", source="ami", start=h.now))
    assert h.only_incident() == planned
    assert not h.sent("update")
    assert h.incident(planned)["etr"] is not None


def test_a_record_without_a_time_borrows_none_from_the_breaker_above(h: Harness) -> None:
    """西村's record (FU2 blown) gives no time; then the line breaker above it trips with 东村's
    areas and a time. 西村 stays 待定: that time is the other record's promise."""
    h.feed(ev("N2", "T3", device="FU2"))
    h.at(3)
    h.feed(ev("N1", "T1", "T2", device="B1", etr=T0 + timedelta(hours=1),
              start=T0 + timedelta(minutes=3)))
    told = [m for m in h.sent(audience="liaison") if m.target == "V2群"]
    assert told and all("11:00" not in m.text for m in told)
    assert "恢复时间待定" in told[0].text


def test_summary_states_a_named_device_as_fact_and_an_inferred_one_as_inferred(
        h: Harness) -> None:
    """In a storm the record names FU1; the meters and a call from T3 (under FU2, which nobody
    named) make the localiser add FU2. The command centre reads FU1 as the fault point and FU2
    as inferred, with the pair's probability as the pair's — not "故障点：FU1、FU2" as if both
    were reported, nor the pair's probability as FU2's own."""
    from outage_sentinel.triage import STORM_KEY, storm_declaration
    h.daemon.store.kv_set(STORM_KEY, storm_declaration(True, "operator:zhang", h.now, hours=12),
                          h.now)
    h.feed(ev("R1", "T1", "T2", device="FU1"))
    h.at(5)
    h.feed(ev("ami-T3", "T3", signal="dead", source="ami", start=T0 + timedelta(minutes=4)))
    h.at(6)
    h.feed(ev("call-1", "T3", signal="call", source="calls", start=T0 + timedelta(minutes=5)))
    inc = h.incident(h.only_incident())["state"]
    assert set(inc["estimate"]["devices"]) == {"FU1", "FU2"}
    summary = h.sent("summary")[-1].text
    assert "故障点：FU1；推断故障点：FU2（与FU1同时动作的可能性" in summary
    assert "100%" not in summary


def test_a_fault_across_two_planned_works_is_not_dropped(h: Harness) -> None:
    """Work P1 on T1 and P2 on T3 are both under way when the outage system files a fault
    naming T1 and T3. Neither work holds both areas, so neither explains it: it opens a fault
    incident, and when the works end their villages are not told power is back while the
    fault's record still lists their areas off."""
    h.at(-60 * 20)
    h.feed(ev("P1", "T1", kind="planned", start=T0, etr=T0 + timedelta(hours=2)),
           ev("P2", "T3", kind="planned", start=T0, etr=T0 + timedelta(hours=2)))
    h.at(30)
    h.feed(ev("R1", "T1", "T3", start=T0 + timedelta(minutes=29),
              etr=T0 + timedelta(hours=5)))
    rows = h.daemon.store.load_incidents(open_only=False)
    faults = [r for r in rows if r["kind"] == "fault"]
    assert len(rows) == 3 and len(faults) == 1
    assert {"T1", "T3"} <= set(faults[0]["state"]["estimate"]["transformers"])
    h.at(121)
    h.feed(ev("P1", "T1", kind="planned", status="restored", start=T0),
           ev("P2", "T3", kind="planned", status="restored", start=T0))
    assert not h.sent("restored", "liaison") and not h.sent("cancelled", "liaison")


def test_a_crew_hears_of_villages_the_outage_reached_after_it_was_sent(h: Harness) -> None:
    """The crew is sent to 西村's T3; a second record adds 东村's T1, where 王大爷 lives alone.
    东村's liaisons are told the special-care list went to the crew and that it is on its way:
    the crew gets new orders naming 东村 and 王大爷 (it had only 西村's)."""
    h.feed(ev("R1", "T3"))
    (first,) = h.sent("dispatch")
    assert "东村" not in first.text and "王大爷" not in first.text
    h.at(10)
    h.feed(ev("R2", "T1", start=T0 + timedelta(minutes=9)))
    assert h.only_incident()
    orders = h.sent("dispatch")[1:]
    assert len(orders) == 1 and "更新" in orders[0].subject
    assert "停电范围扩大" in orders[0].text and "故障点" not in orders[0].text.splitlines()[1]
    assert "东村" in orders[0].text and "王大爷" in orders[0].text
    assert [m.target for m in h.sent("care")] == ["V1群"]
    # Nothing new reached: no further orders.
    h.at(12)
    h.feed(ev("R2", "T1", start=T0 + timedelta(minutes=9)))
    assert len(h.sent("dispatch")) == 2


def test_a_restore_notes_words_restore_nothing(h: Harness) -> None:
    """An operator restores T3 and writes "T1仍停电，待查" in the note: the note is kept for the
    record, and T1 — named in it — stays off (its words were read as areas brought back)."""
    h.feed(ev("R1", "T1", "T3"))
    inc = h.only_incident()
    h.at(30)
    step = h.daemon.processor.operator_restore(inc, "operator:zhang", "T3", None,
                                               "T1仍停电，待查", now=h.daemon.clock())
    assert set(step.off) == {"T1", "T2"}
    assert [m.target for m in h.deliver() if m.purpose == "restored"] == ["V2群"]


def dark_again_overnight(h: Harness) -> Callable[[float], datetime]:
    """Planned work on 东村 ends at 22:30, in the liaisons' quiet hours (its 恢复送电 waits
    for 07:00); at 23:00 a fault on FU1 takes 东村 off again. Returns minutes after 10:00 ->
    the time."""
    t: Callable[[float], datetime] = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731
    h.feed(ev("P1", "T1", "T2", kind="planned", start=t(600), etr=t(780)))
    h.at(750)
    h.feed(ev("P1", "T1", "T2", kind="planned", status="restored", start=t(600)))
    h.at(780)
    h.feed(ev("F1", "T1", "T2", start=t(779), device="FU1"))
    return t


def test_a_power_back_notice_that_waited_is_not_sent_to_a_village_dark_again(
        tmp_path: Path, db_url: str) -> None:
    """Planned work on 东村 ends at 22:30, in the liaisons' quiet hours: its 恢复送电 waits for
    07:00. At 23:00 a fault takes 东村 off again and it is told at once. At 07:00 the waiting
    恢复送电 would be the last word the village read while it is dark: it is superseded."""
    h = Harness(tmp_path, db_url, notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    try:
        t = dark_again_overnight(h)
        assert "【故障停电通知】" in h.sent("outage")[-1].text  # told at once
        h.at(1261)
        h.deliver()
        assert not h.sent("restored", "liaison")
        (held,) = [m for m in h.daemon.store.messages() if m.purpose == "restored"
                   and m.audience == "liaison"]
        assert held.status == "superseded" and "dark again" in (held.last_error or "")
        # The planned work now holds the village, as one held back when planned: whoever
        # ends last, the village hears its power is back once, when it is dark nowhere.
        planned = next(r["id"] for r in h.daemon.store.load_incidents(open_only=False)
                       if r["kind"] == "planned")
        assert h.daemon.store.kv_get(f"held:{planned}") == {"villages": ["V1"]}
        h.at(1300)
        h.feed(ev("F1", "T1", "T2", start=t(779), device="FU1", status="restored"))
        h.daemon.clock_stage.run_once(h.now)
        h.deliver()
        heard = [m.purpose for m in h.sent(None, "liaison") if m.target == "V1群"
                 and m.purpose in ("outage", "planned", "restored")]
        assert heard[-2:] == ["outage", "restored"] and heard.count("restored") == 1
        assert h.daemon.store.kv_get(f"held:{planned}") is None
    finally:
        h.daemon.close()


@pytest.mark.parametrize("tomorrow", ["", "announced and called off"])
def test_a_village_whose_power_back_went_moot_hears_it_when_the_other_incident_says_nothing(
        tmp_path: Path, db_url: str, tomorrow: str) -> None:
    """As above, but the fault that darkened 东村 again never tells it its power is back
    (the command centre silenced that incident): the planned work, holding the village since
    its own notice went moot, tells it once it is dark nowhere — under a revision of its own,
    as the moot notice's key is taken. Work announced for tomorrow and called off meanwhile
    says nothing of the supply now: its 取消 is not a word that the power is back."""
    from outage_sentinel.silences import Silence

    h = Harness(tmp_path, db_url, notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    try:
        t = dark_again_overnight(h)
        h.at(1261)
        h.deliver()
        rows = h.daemon.store.load_incidents(open_only=False)
        planned = next(r["id"] for r in rows if r["kind"] == "planned")
        fault = next(r["id"] for r in rows if r["kind"] == "fault")
        # (forced: 东村 has a special-care household, never muted otherwise)
        h.daemon.store.add_silence(Silence(0, "incident", fault, t(1261), t(1500), "误报核实中",
                                           "ops", force=True))
        h.at(1300)
        h.feed(ev("F1", "T1", "T2", start=t(779), device="FU1", status="restored"))
        if tomorrow:
            h.feed(ev("P2", "T1", "T2", kind="planned", start=t(2900), etr=t(3000)))
            h.feed(ev("P2", "T1", "T2", kind="planned", start=t(2900), etr=t(3000),
                      status="cancelled"))
            assert [m.purpose for m in h.sent(None, "liaison")][-2:] == ["outage", "cancelled"]
        h.daemon.clock_stage.run_once(h.now)
        h.deliver()
        back = [m for m in h.daemon.store.messages() if m.purpose == "restored"
                and m.recipient == "village:V1:wecom:V1群"]
        assert [(m.incident_id, m.status) for m in back] == [
            (planned, "superseded"), (fault, "silenced"), (planned, "sent")]
        assert back[2].revision == back[0].revision + 1
        assert h.daemon.store.kv_get(f"held:{planned}") is None
    finally:
        h.daemon.close()


def test_a_held_power_back_is_not_repeated_after_an_announcement_of_tomorrow_s_work(
        tmp_path: Path, db_url: str) -> None:
    """As above: the planned work holds 东村, the fault ends and tells it 恢复送电; then
    tomorrow's work is announced before the clock's check. The held notice must not read that
    announcement as what the village heard last of its supply now (it repeated 恢复送电)."""
    h = Harness(tmp_path, db_url, notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    try:
        t = dark_again_overnight(h)
        h.at(1261)
        h.deliver()
        h.at(1300)
        h.feed(ev("F1", "T1", "T2", start=t(779), device="FU1", status="restored"))
        h.at(1310)
        h.feed(ev("P2", "T1", "T2", kind="planned", start=t(2900), etr=t(3000)))
        h.daemon.clock_stage.run_once(h.now)
        h.deliver()
        heard = [(m.purpose, m.incident_id) for m in h.sent(None, "liaison")
                 if m.target == "V1群" and m.purpose in ("outage", "restored")]
        assert [p for p, _ in heard[-3:]] == ["outage", "restored", "outage"], heard
        assert [p for p, _ in heard].count("restored") == 1
    finally:
        h.daemon.close()


def test_daily_report_goes_to_the_command_centre_once(h: Harness) -> None:
    h.feed(ev("F1", "T3"))
    inc = h.only_incident()
    h.at(60)
    h.daemon.processor.operator_restore(
        inc, "operator:crew1", None, None, now=h.daemon.clock())
    h.at(60 * 24)  # the next morning: yesterday's report
    assert h.daemon.report_job.run_once(h.now) == 1
    assert h.daemon.report_job.run_once(h.now) == 0  # idempotent within the day
    sent = [m for m in h.deliver() if m.purpose == "daily_report"]
    assert len(sent) == 1 and sent[0].audience == "command" and sent[0].target == "指挥中心"
    assert "80" in sent[0].text  # the 80 customers × 1 h lost


def test_an_outage_soon_after_restoration_links_to_the_original(h: Harness) -> None:
    h.feed(ev("F1", "T3"))
    first = h.only_incident()
    h.at(30)
    h.daemon.processor.operator_restore(
        first, "operator:crew1", None, None, now=h.daemon.clock())
    h.at(45)  # off again within the reopen window
    h.feed(ev("F1-again", "T3", start=h.now))
    second = next(r for r in h.daemon.store.load_incidents(open_only=False) if r["id"] != first)
    assert second["parent_id"] == first
    assert "reopened" in [r["stage"] for r in h.daemon.store.incident_log(first)]


def test_quiet_hours_hold_planned_notices_but_not_faults(tmp_path: Path) -> None:
    h = Harness(tmp_path, notify={"quiet_hours": {"liaison": "22:00-07:00"}})
    try:
        h.at(13 * 60)  # 23:00 in Shanghai
        start = h.now + timedelta(days=3)
        h.feed(ev("P1", "T1", kind="planned", start=start, etr=start + timedelta(hours=4)))
        assert not h.sent("outage")  # planned work waits for the morning
        h.feed(ev("F9", "T4", start=h.now))
        assert [m.target for m in h.sent("outage")] == ["V3群"]  # a fault goes out at once
        h.at(20 * 60 + 59)  # 06:59
        assert not [m for m in h.deliver() if m.incident_id != h.sent("outage")[0].incident_id
                    and m.purpose == "outage"]
        h.at(21 * 60)  # 07:00: the held announcement goes out
        assert [m.target for m in h.deliver() if m.purpose == "outage"] == ["V1群"]
    finally:
        h.daemon.close()


def test_planned_works_device_no_record_named_is_called_the_likely_one(h: Harness) -> None:
    start = T0 + timedelta(days=1)
    h.feed(ev("P1", "T4", "T5", kind="planned", start=start, etr=start + timedelta(hours=4)))
    [planned] = [m.text for m in h.sent("summary", "command")]
    assert "线路：10kV二号线；推断停电设备：FU3\n" in planned


def test_planned_work_edited_to_leave_an_area_out_says_so_and_reminds_of_the_rest(
        h: Harness) -> None:
    start = T0 + timedelta(hours=30)
    h.feed(ev("P", "T4", "T5", kind="planned", start=start, etr=start + timedelta(hours=4)))
    h.at(60)
    h.feed(ev("P", "T4", kind="planned", start=start, etr=start + timedelta(hours=4)))
    [update] = [m.text for m in h.sent("update", "liaison")]
    assert "（T5的停电已取消）" in update and "停电范围：T4，本村40户" in update
    assert "指挥中心" not in update  # the outage system's edit, not the command centre's
    h.at(30 * 60 - 50)  # within the hour before the work
    h.deliver()
    [reminder] = [m.text for m in h.sent() if m.purpose.startswith("reminder")]
    assert "停电范围：T4，本村40户" in reminder and "T5" not in reminder


def test_a_withdrawn_record_calls_its_village_off_unless_power_was_seen_back(
        h: Harness) -> None:
    """Record A names 东村's T1, T2; B names 西村's T3 and keeps the incident on. A withdrawn:
    东村 hears 停电取消, and a later record naming T1 corrects that, not a 恢复送电 it never
    heard."""
    h.feed(ev("A", "T1", "T2"), ev("B", "T3"))
    h.at(10)
    h.feed(ev("A", "T1", "T2", status="cancelled"))
    [called] = [m.text for m in h.sent(audience="liaison") if m.target == "V1群"
                and m.purpose in ("cancelled", "restored")]
    assert called.startswith("【停电取消】东村") and "如仍停电，请拨打95598" in called
    h.at(30)
    h.feed(ev("C", "T1", start=h.now))
    again = [m.text for m in h.sent("outage", "liaison") if m.target == "V1群"][-1]
    assert "更正：此前通知本村停电已取消，现本村停电（或再次停电）" in again


def test_a_withdrawn_record_after_the_command_centre_saw_power_back_is_a_restoration(
        h: Harness) -> None:
    h.feed(ev("A", "T1", "T2"), ev("B", "T3"))
    iid = h.only_incident()
    h.at(10)
    h.daemon.processor.operator_restore(iid, "operator:张", "T1", None, now=h.now)
    h.at(20)
    h.feed(ev("A", "T1", "T2", status="cancelled"))
    told = [m.text for m in h.sent(audience="liaison") if m.target == "V1群"
            and m.purpose in ("cancelled", "restored")]
    assert [t.splitlines()[0] for t in told] == ["【恢复送电】东村"]


def test_the_summary_counts_confirmed_areas_among_those_still_off(h: Harness) -> None:
    """Two records name T1 and T3; T3's ends: of the two areas still off (T1, T2), one was
    reported, not two."""
    h.feed(ev("A", "T1"), ev("B", "T3"))
    h.at(10)
    h.feed(ev("B", "T3", status="restored"))
    summary = h.sent("summary", "command")[-1].text
    assert "当前停电2个台区150户（已确认1个台区，其余为推断" in summary


def test_the_summary_says_which_areas_are_back_on_a_liaisons_word_alone(h: Harness) -> None:
    from outage_sentinel.board.field import answer_event

    h.feed(ev("A", "T3"))
    iid = h.only_incident()
    h.at(20)
    inc = Incident.from_json(h.incident(iid)["state"])
    h.daemon.processor.report(answer_event("link-key", inc, "T3", "back", 1, h.now), h.now)
    h.deliver()
    summary = h.sent("summary", "command")[-1].text
    assert summary.startswith("【已恢复】")
    assert "仅据联络人反馈已来电（停电记录、表计、运行人员均未证实，请核实）：T3" in summary
    h.at(30)
    h.feed(ev("A", "T3", status="restored"))  # the record's own end: the system's word now
    inc = Incident.from_json(h.incident(iid)["state"])
    assert "仅据联络人反馈" not in h.daemon.processor.lifecycle.render_summary(inc)


def test_a_dead_letter_is_shown_to_the_command_centre(h: Harness) -> None:
    h.channel.refuse.add("V2群")
    h.feed(ev("F1", "T3"))
    inc = h.only_incident()
    dead = h.daemon.store.messages(status="dead")
    assert [m.target for m in dead] == ["V2群"]
    h.deliver()
    notices = [m for m in h.sent(audience="command") if m.purpose == "dead_letter"]
    assert len(notices) == 1 and notices[0].incident_id == inc
    assert "V2群" in notices[0].text and "310000" in notices[0].text


def test_summaries_describe_planned_work_as_planned_and_name_the_crew(h: Harness) -> None:
    """Issue 13: a planned outage starting tomorrow is not a fault point with a probability
    nor 当前停电; a dispatched fault's summaries name the crew."""
    start = T0 + timedelta(days=1)
    h.feed(ev("P1", "T4", "T5", kind="planned", start=start, etr=start + timedelta(hours=4),
              device="FU3"))
    [planned] = [m.text for m in h.sent("summary", "command")]
    assert "停电设备：FU3" in planned and "尚未开始，计划停电2个台区" in planned
    assert "概率" not in planned and "推断" not in planned and "当前停电" not in planned
    assert "计划2026-11-24 10:00起" in planned
    h.feed(ev("F1", "T1", "T2", "T3"))  # the outage system's notice: confirmed, crew sent
    [dispatched] = [m.text for m in h.sent("dispatched", "command")]
    assert "抢修队伍：抢修一班" in dispatched and "当前停电" in dispatched
    h.at(30)
    h.feed(ev("F1", "T1", "T2", "T3", etr=T0 + timedelta(hours=3)))  # a new revision
    assert "抢修队伍：抢修一班" in [m.text for m in h.sent("summary", "command")][-1]


def test_a_crew_late_to_a_partly_restored_fault_is_escalated_until_it_arrives(
        h: Harness) -> None:
    """Switching brings part of a fault back before the crew arrives: the areas still dark
    keep the arrival commitment, so a crew running late is escalated as it would be had
    nothing come back — and not once it is on site."""
    h.feed(ev("F1", "T1", "T2", "T3"))
    inc = h.only_incident()
    assert h.incident(inc)["crew_id"] == "C1"
    h.at(20)
    h.feed(ev("ami-3", "T3", signal="alive", source="ami", status="restored",
              start=T0 + timedelta(minutes=20)))
    assert h.incident(inc)["stage"] == "partially_restored"
    assert not card(h, inc)["arrived"]  # the board does not show the deadline met
    h.at(76)  # 14 minutes before the rural 90-minute commitment, the crew not there
    escalated = [m for m in h.deliver() if m.purpose.startswith("escalation")]
    assert [(m.incident_id, m.purpose) for m in escalated] == [(inc, "escalation_at_risk")]
    # It counts what is still off (T1, T2 of 东村), not the part switching brought back.
    assert "150户仍停电（已恢复80户），涉及东村。" in escalated[0].text
    h.daemon.lifecycle.arrive(inc, "operator:crew1")
    assert h.incident(inc)["stage"] == "partially_restored" and card(h, inc)["arrived"]
    h.at(95)  # past the deadline, but the crew is on site: nothing to escalate
    assert not [m for m in h.deliver() if m.purpose.startswith("escalation")]
    # T3 off again: the incident is back to its crew's stage, on site.
    h.feed(ev("ami-3b", "T3", signal="dead", source="ami", start=h.now))
    assert h.incident(inc)["stage"] == "on_site"


def card(h: Harness, incident_id: str) -> dict[str, Any]:
    """The incident as the board's overview shows it."""
    from outage_sentinel.board.views import Viewer, incident_card

    return incident_card(h.incident(incident_id), h.topology, h.now, Viewer("zh", TZ, False),
                         h.daemon.lifecycle.params.commitments)


def test_a_partly_restored_fault_without_a_crew_gets_one_from_the_clock(h: Harness) -> None:
    """The crew of a partly restored fault is taken for a higher-priority outage: once it is
    free again, the clock's check sends it back to the areas still dark."""
    h.feed(ev("F1", "T1", "T2", "T3"))
    first = h.only_incident()
    h.at(10)
    h.feed(ev("ami-3", "T3", signal="alive", source="ami", status="restored",
              start=T0 + timedelta(minutes=10)))
    assert h.incident(first)["stage"] == "partially_restored"
    h.at(12)
    h.feed(ev("F2", "T4", "T5", start=T0 + timedelta(minutes=12)))  # the hospital
    second = next(r["id"] for r in h.daemon.store.load_incidents() if r["id"] != first)
    assert (h.incident(second)["crew_id"], h.incident(first)["crew_id"]) == ("C1", None)
    h.at(40)
    h.feed(ev("F2", "T4", "T5", status="restored", start=T0 + timedelta(minutes=12)))
    assert h.incident(second)["status"] == "restored"
    h.at(41)
    h.deliver()  # the clock's check
    assert h.incident(first)["crew_id"] == "C1"


def test_a_crew_at_work_on_site_is_not_pulled_off_by_a_more_urgent_fault(h: Harness) -> None:
    # The only crew reaches an ordinary outage on feeder 1 and starts work.
    h.feed(ev("F1", "T1", "T2", "T3"))
    first = h.only_incident()
    h.at(20)
    h.daemon.lifecycle.arrive(first, "operator:crew1")
    # The hospital's feeder goes off: more urgent, but the crew stays where it is working;
    # the command centre is told no crew could be sent, and that C1 is on site elsewhere.
    h.at(25)
    h.feed(ev("F2", "T4", "T5", start=T0 + timedelta(minutes=25)))
    second = next(r["id"] for r in h.daemon.store.load_incidents() if r["id"] != first)
    assert h.incident(second)["priority"] > h.incident(first)["priority"]
    assert h.incident(first)["crew_id"] == "C1" and h.incident(first)["stage"] == "on_site"
    assert h.incident(second)["crew_id"] is None
    assert [m.incident_id for m in h.sent("dispatch")] == [first]
    h.at(25 + 76)
    escalated = [m for m in h.deliver() if m.purpose.startswith("escalation")]
    assert [m.incident_id for m in escalated] == [second]
    assert "抢修一班" in escalated[0].text and "在现场" in escalated[0].text
    # The operator can still send it, by name: that is a decision, not the daemon's.
    h.daemon.lifecycle.dispatch(second, "operator:cc", crew_id="C1")
    assert h.incident(second)["crew_id"] == "C1"


def test_a_report_the_fault_point_does_not_explain_is_named_to_the_command_centre(
        h: Harness) -> None:
    """T1's meters say it is off, T2's (same fuse) that it is on: the localiser's best answer
    is "FU2 operated and sent nothing, T1's report is false". The summary states that fault
    point with its probability, T1 as confirmed off (a source said so) — and says that the
    two do not agree, so the command centre checks T1 instead of reading a contradiction."""
    h.feed(ev("ami-T1", "T1", signal="dead", source="ami"),
           ev("ami-T2", "T2", signal="alive", source="ami"))
    inc = h.incident(h.only_incident())["state"]
    assert "T1" not in inc["estimate"]["section"] and inc["estimate"]["devices"]
    summary = h.sent("summary")[-1].text
    assert "推断故障点" in summary
    assert "已报停电、不在故障点下游（按误报处理，或另有故障，请核实）：T1" in summary
    assert "Reported off" not in summary  # the command centre's language only


def test_reports_the_fault_point_explains_are_not_remarked_on(h: Harness) -> None:
    h.feed(ev("ami-T1", "T1", "T2", signal="dead", source="ami"))
    inc = h.incident(h.only_incident())["state"]
    assert inc["estimate"]["devices"] == ["FU1"]
    assert "不在故障点下游" not in h.sent("summary")[-1].text


def test_a_crew_pulled_off_before_its_orders_went_out_never_gets_them(h: Harness) -> None:
    """C1 is sent to a fault on F1; before the orders go out (a slow channel, a restart) a
    hospital's feeder fails and C1 is pulled off for it. The old orders are taken back: sent
    after the new ones (their own chain), they were the last thing the crew read."""
    h.daemon.store.ingest("feed", PollResult(events=[ev("A", "T3")]), h.now)
    h.daemon.process()
    low = h.only_incident()
    h.at(5)
    h.daemon.store.ingest("feed", PollResult(events=[ev("B", "T4", "T5")]), h.now)
    h.daemon.process()
    high = next(r["id"] for r in h.daemon.store.load_incidents(open_only=True)
                if r["id"] != low)
    assert h.incident(high)["crew_id"] == "C1" and h.incident(low)["crew_id"] is None
    h.deliver()
    orders = [(m.incident_id, m.status) for m in h.daemon.store.messages()
              if m.purpose == "dispatch"]
    assert orders == [(low, "withdrawn"), (high, "sent")]
    assert [m.incident_id for m in h.sent("dispatch")] == [high]


def test_the_summary_never_states_a_time_gone_by_as_expected(h: Harness) -> None:
    """The liaisons read 原预计…恢复，已超时 once the expected time passed; the command centre's
    summary of the same revision used to read 预计<that past time>恢复."""
    h.feed(ev("F1", "T3", etr=T0 + timedelta(minutes=30)))
    first = h.sent("summary", "command")[-1].text
    assert "预计2026-11-23 10:30恢复" in first and "已超时" not in first
    h.at(60)
    h.feed(ev("F1", "T3", "T2", etr=T0 + timedelta(minutes=30)))  # the record grows: a revision
    later = h.sent("summary", "command")[-1].text
    assert "原预计2026-11-23 10:30恢复，已超时" in later
    assert "预计2026-11-23 10:30恢复" not in later.replace("原预计2026-11-23 10:30恢复", "")
    inc = h.daemon.store.get_incident(h.only_incident())
    assert inc is not None
    from outage_sentinel.incidents import Incident
    facts = h.daemon.lifecycle.digest_facts(Incident.from_json(inc["state"]))
    assert facts["etr"] == ""  # a digest line does not promise it either
    # Once over, the record keeps when it was expected, beside when it came back.
    h.at(90)
    h.feed(ev("F1", "T3", "T2", status="restored", etr=T0 + timedelta(minutes=30)))
    over = h.sent("summary", "command")[-1].text
    assert "预计2026-11-23 10:30恢复" in over and "已超时" not in over
