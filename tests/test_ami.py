"""AMI payload parsing and master-station screening (pure: no broker, no clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from outage_sentinel.ami import (
    AmiRegistry,
    AmiScreen,
    ScreenPolicy,
    compact_time,
    device_ref,
    parse_device_ref,
)
from outage_sentinel.config import AmiPayloadConfig, AmiScreenConfig
from outage_sentinel.events import OutageEvent
from outage_sentinel.sources.ami_payload import AmiPayloadParser, PayloadError

T = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def registry(areas: int = 3, meters: int = 10) -> AmiRegistry:
    """Areas TX0..; meters TXi-M0..; one terminal TXi-T per area."""
    rows = []
    for a in range(areas):
        rows.append((f"TX{a}-T", f"TX{a}", "terminal"))
        rows.extend((f"TX{a}-M{m}", f"TX{a}", "meter") for m in range(meters))
    return AmiRegistry.from_records(rows, {f"TX{a}": f"F{a % 2}" for a in range(areas)})


def obs(device: str, action: str, at: float, kind: str = "meter", tx: str = "") -> OutageEvent:
    t = T + timedelta(seconds=at)
    off = action == "off"
    return OutageEvent(source="ami-mqtt", event_id=f"{device}:{action}:{compact_time(t)}",
                       kind="fault", status="active" if off else "restored",
                       signal="dead" if off else "alive", start=t, end=None if off else t,
                       transformers=(tx,) if tx else (), area_text=device_ref(kind, device))


def meters_off(area: int, count: int, at: float = 0.0, step: float = 1.0) -> list[OutageEvent]:
    return [obs(f"TX{area}-M{m}", "off", at + m * step) for m in range(count)]


def meters_on(area: int, count: int, at: float, step: float = 1.0) -> list[OutageEvent]:
    return [obs(f"TX{area}-M{m}", "on", at + m * step) for m in range(count)]


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# -- payload parsing ----------------------------------------------------------------------------


def parser(**cfg: object) -> AmiPayloadParser:
    return AmiPayloadParser("ami-mqtt", AmiPayloadConfig.model_validate(cfg), registry(),
                            default_tz="Asia/Shanghai")


def test_device_ref_round_trip() -> None:
    assert parse_device_ref(device_ref("terminal", "T:1")) == ("terminal", "T:1")
    assert parse_device_ref("Village A") is None
    assert parse_device_ref("meter:") is None


def test_json_forms_give_deterministic_events() -> None:
    p = parser()
    one = p.json_payload(json.dumps(
        {"meter_id": "TX0-M1", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"}), "t")
    assert len(one.events) == 1
    e = one.events[0]
    assert (e.signal, e.status, e.transformers, e.feeder) == ("dead", "active", ("TX0",), "F0")
    assert e.area_text == "meter:TX0-M1"
    assert e.start == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)  # naive = Asia/Shanghai
    assert e.event_id == "TX0-M1:off:20260701T080000Z"
    again = p.json_payload(json.dumps(
        [{"meterId": "TX0-M1", "eventType": "3.26.0.85", "timestamp": "2026-07-01T08:00:00Z"}]),
        "t")
    assert (again.events[0].event_id, again.events[0].revision) == (e.event_id, e.revision)
    cim = {"Payload": {"EndDeviceEvents": {"EndDeviceEvent": [
        {"mRID": "ev-1", "createdDateTime": "2026-07-01T08:01:00+00:00",
         "EndDeviceEventType": {"ref": "3.26.0.216"}, "Assets": {"mRID": "TX0-M1"}}]}}}
    restored = p.json_payload(json.dumps(cim), "t").events
    assert [(x.signal, x.status, x.end) for x in restored] == [
        ("alive", "restored", datetime(2026, 7, 1, 8, 1, tzinfo=UTC))]
    envelope = p.json_payload(json.dumps({"events": [
        {"meter": "TX1-M0", "code": "power_off", "time": 1782892800}]}), "t")
    assert envelope.events[0].transformers == ("TX1",)


def test_compact_local_times_are_read_as_such_and_odd_digit_counts_quarantined() -> None:
    """``202607011600`` was read as epoch milliseconds: an observation in 1976, unremarked."""
    p = parser()
    parsed = p.json_payload(json.dumps([
        {"meter": "TX1-M0", "code": "power_off", "time": "202607011600"},
        {"meter": "TX1-M1", "code": "power_off", "time": 20260701160005},
        {"terminal_id": "TX2-T", "erc": "ERC14", "off_time": "20260701160000",
         "on_time": "20260701160030"},
        {"meter": "TX1-M2", "code": "power_off", "time": "17828928000"},
    ]), "t")
    assert [(e.area_text, e.start) for e in parsed.events] == [
        ("meter:TX1-M0", T), ("meter:TX1-M1", T + timedelta(seconds=5)),
        ("terminal:TX2-T", T), ("terminal:TX2-T", T + timedelta(seconds=30))]
    [bad] = parsed.quarantined
    assert bad.reason.startswith("t record 4: time: 17828928000 is not a time: 11 digits")


def test_a_device_id_the_database_cannot_store_is_a_record_error_naming_the_field() -> None:
    p = AmiPayloadParser("ami", AmiPayloadConfig(unknown_devices="keep"))
    good = {"meter_id": "M1", "code": "power_off", "time": "2026-07-01 16:00:00"}
    parsed = p.json_lines("\n".join(json.dumps(r) for r in (
        good, dict(good, meter_id="M\ud800"), dict(good, terminal_id="T\x00", meter_id=None),
        dict(good, meter_id="M2"))), "export.jsonl")
    assert [e.area_text for e in parsed.events] == ["meter:M1", "meter:M2"]
    assert [q.reason.split(": contains")[0] for q in parsed.quarantined] == [
        "export.jsonl line 2 record 1: device id (meter_id)",
        "export.jsonl line 3 record 1: device id (terminal_id)"]


def test_terminal_off_on_record_gives_both_observations() -> None:
    p = parser()
    parsed = p.json_payload(json.dumps({"terminal_id": "TX2-T", "erc": "ERC14",
                                        "off_time": "2026-07-01 16:00:00",
                                        "on_time": "2026-07-01 16:00:30"}), "t")
    assert [(e.signal, e.area_text) for e in parsed.events] == [
        ("dead", "terminal:TX2-T"), ("alive", "terminal:TX2-T")]
    only_off = p.json_payload(json.dumps({"terminal": "TX2-T", "oi": 3106,
                                          "start_time": "2026-07-01 16:00:00"}), "t")
    assert [e.signal for e in only_off.events] == ["dead"]


def test_a_terminal_record_with_a_placeholder_or_drifted_on_time_keeps_its_off() -> None:
    """ERC14 with the on time zeroed (power not back yet) is an off; an on time a minute
    before the off time is the terminal's clock, not a broken record: back at once."""
    p = parser()

    def record(on: str) -> list[tuple[str, datetime]]:
        parsed = p.json_payload(json.dumps({"terminal_id": "TX2-T", "erc": "ERC14",
                                            "off_time": "2026-07-01 16:00:00",
                                            "on_time": on}), "t")
        assert not parsed.quarantined, parsed.quarantined
        return [(e.signal, e.start) for e in parsed.events]

    off = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)  # 16:00 in the parser's Beijing time
    assert record("0000-00-00 00:00:00") == [("dead", off)]
    assert record("2026-07-01 15:59:00") == [("dead", off), ("alive", off)]
    far = p.json_payload(json.dumps({"terminal_id": "TX2-T", "erc": "ERC14",
                                     "off_time": "2026-07-01 16:00:00",
                                     "on_time": "2026-07-01 12:00:00"}), "t")
    (bad,) = far.quarantined
    assert "before the off time" in bad.reason and not far.events


def test_bad_records_are_quarantined_with_reason_rest_goes_on() -> None:
    p = parser()
    parsed = p.json_payload(json.dumps([
        {"meter_id": "TX0-M1", "code": "3.26.0.85", "time": "yesterday"},
        {"meter_id": "NOPE", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"},
        {"code": "3.26.0.85", "time": "2026-07-01 16:00:00"},
        {"meter_id": "TX0-M2", "code": "3.26.0.999", "time": "2026-07-01 16:00:00"},
        {"meter_id": "TX0-M3", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"},
    ]), "topic ami/x")
    assert [e.area_text for e in parsed.events] == ["meter:TX0-M3"]
    reasons = [q.reason for q in parsed.quarantined]
    assert reasons[0].startswith("topic ami/x record 1: time: expected a time")
    assert "record 2: device id: meter or terminal 'NOPE' is not in meters.csv" in reasons[1]
    assert "record 3: device id: none of meter_id" in reasons[2]
    assert parsed.ignored == 1  # unknown code: skipped by default
    strict = parser(unknown_codes="quarantine").json_payload(json.dumps(
        {"meter_id": "TX0-M2", "code": "3.26.0.999", "time": "2026-07-01 16:00:00"}), "t")
    assert "3.26.0.999" in strict.quarantined[0].reason
    with pytest.raises(PayloadError, match="not valid JSON"):
        p.json_payload(b"{oops", "t")


def test_an_unknown_code_is_logged_once_by_name() -> None:
    """A vendor's power-on code left unmapped is an outage that never ends: the operator must
    see which code was skipped, not only a count."""
    from structlog.testing import capture_logs

    p = parser()
    rec = {"meter_id": "TX0-M2", "code": "E-18", "time": "2026-07-01 16:00:00"}
    with capture_logs() as logs:
        for _ in range(3):
            assert p.json_payload(json.dumps([rec, dict(rec, code="e-18")]), "t").ignored == 2
        p.json_payload(json.dumps(dict(rec, code="3.26.0.85")), "t")  # a known code: quiet
    warned = [e for e in logs if e["event"] == "ami_unknown_code"]
    assert [(e["code"], e["source"]) for e in warned] == [("E-18", "ami-mqtt")]


def test_configured_codes_extend_defaults() -> None:
    p = parser(codes={"E-17": "off", "E-18": {"action": "on"}, "3.26.0.85": "ignore"})
    parsed = p.json_payload(json.dumps([
        {"meter_id": "TX0-M1", "code": "e-17", "time": "2026-07-01 16:00:00"},
        {"meter_id": "TX0-M1", "code": "E-18", "time": "2026-07-01 16:05:00"},
        {"meter_id": "TX0-M1", "code": "3.26.0.85", "time": "2026-07-01 16:00:00"},
    ]), "t")
    assert [e.signal for e in parsed.events] == ["dead", "alive"]
    assert parsed.ignored == 1


def test_csv_rows_and_header_checks() -> None:
    p = parser()
    text = ("meter_id,code,time\n"
            "TX0-M1,3.26.0.85,2026-07-01 16:00:00\n"
            "TX0-M2,3.26.0.85\n"
            "TX0-M3,3.26.0.85,not a time\n"
            "TX0-M4,3.26.0.216,2026-07-01 16:02:00\n")
    parsed = p.csv_text(text, "export.csv")
    assert [e.area_text for e in parsed.events] == ["meter:TX0-M1", "meter:TX0-M4"]
    assert [q.reason.split(":")[0] for q in parsed.quarantined] == [
        "export.csv row 3", "export.csv row 4"]
    with pytest.raises(PayloadError, match="no event code column"):
        p.csv_text("meter_id,when\nTX0-M1,2026-07-01\n", "x.csv")
    headerless = parser(csv_columns=["meter_id", "code", "time"]).csv_text(
        "TX0-M1,3.26.0.85,2026-07-01 16:00:00\n", "t")
    assert len(headerless.events) == 1


# -- screening ----------------------------------------------------------------------------------


def test_momentary_blip_makes_no_outage() -> None:
    screen = AmiScreen(registry())
    r = screen.feed(meters_off(0, 6), at(6))
    assert r.events == [] and r.held == 1
    r = screen.feed(meters_on(0, 6, at=20), at(26))
    assert r.events == [] and r.momentary == 1 and r.held == 0
    assert screen.tick(at(3600)).events == []
    assert screen.outages() == {}


def test_area_outage_is_held_for_min_duration_then_restored() -> None:
    screen = AmiScreen(registry())
    r = screen.feed(meters_off(1, 5, at=0, step=10), at(40))
    assert r.events == []
    assert screen.next_due() == at(60)
    assert screen.tick(at(59)).events == []
    dead = screen.tick(at(60)).events
    assert len(dead) == 1
    d = dead[0]
    assert (d.source, d.signal, d.status, d.transformers, d.feeder, d.start) == (
        "ami", "dead", "active", ("TX1",), "F1", T)
    assert d.event_id == "TX1@20260701T080000Z"
    assert screen.outages() == {"TX1": T}
    # Two of five back: not yet restored (restore_share 0.5 needs three).
    assert screen.feed(meters_on(1, 2, at=600), at(602)).events == []
    alive = screen.feed(meters_on(1, 3, at=610), at(613)).events
    assert len(alive) == 1
    a = alive[0]
    assert (a.signal, a.status, a.event_id, a.end) == ("alive", "restored", d.event_id, at(612))
    assert a.revision != d.revision


def test_terminal_off_plus_meters_make_one_area_outage() -> None:
    screen = AmiScreen(registry())
    events = [obs("TX2-T", "off", 2, kind="terminal")] + meters_off(2, 8)
    r = screen.feed(events, at(10))
    assert r.events == []
    out = screen.tick(at(61)).events
    assert [(e.signal, e.transformers, e.start) for e in out] == [("dead", ("TX2",), T)]
    assert out[0].raw["basis"] == "terminal" and out[0].raw["meters_off"] == 8
    assert out[0].cause == ""  # the evidence is in raw; a liaison reads no English counts
    # Terminal on while the eight meters still say off: not restored (rule 3) ...
    assert screen.feed([obs("TX2-T", "on", 900, kind="terminal")], at(901)).events == []
    # ... until half of them say on.
    back = screen.feed(meters_on(2, 4, at=950), at(955)).events
    assert [(e.signal, e.event_id, e.end) for e in back] == [
        ("alive", out[0].event_id, at(953))]
    # Terminal off with fewer meters than an outage needs: the terminal's on restores it.
    screen.feed([obs("TX1-T", "off", 0, kind="terminal")] + meters_off(1, 3), at(10))
    assert [e.signal for e in screen.tick(at(61)).events] == ["dead"]
    back = screen.feed([obs("TX1-T", "on", 900, kind="terminal")], at(901)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(900))]


def test_terminal_alone_is_an_area_outage_and_its_blip_is_momentary() -> None:
    screen = AmiScreen(registry())
    screen.feed([obs("TX0-T", "off", 0, kind="terminal")], at(1))
    r = screen.feed([obs("TX0-T", "on", 30, kind="terminal")], at(31))
    assert r.momentary == 1 and r.events == []
    screen.feed([obs("TX0-T", "off", 100, kind="terminal")], at(101))
    assert [e.signal for e in screen.tick(at(160)).events] == ["dead"]


def test_duplicates_are_merged() -> None:
    screen = AmiScreen(registry())
    batch = meters_off(0, 5)
    first = screen.feed(batch, at(5))
    again = screen.feed(batch + meters_off(0, 5, at=20), at(25))  # redelivery + retries
    assert first.merged == 0 and again.merged == 10
    out = screen.tick(at(61)).events
    assert len(out) == 1
    redelivered = screen.feed(batch, at(62))
    assert redelivered.events == [] and redelivered.merged == 5


def test_single_meter_is_a_customer_fault_not_an_area_outage() -> None:
    screen = AmiScreen(registry())
    screen.feed([obs("TX0-M3", "off", 0)], at(0))
    r = screen.tick(at(60))
    assert r.events == []
    assert [(f.meter, f.transformer, f.status) for f in r.customer_faults] == [
        ("TX0-M3", "TX0", "active")]
    back = screen.feed([obs("TX0-M3", "on", 300)], at(300))
    assert [(f.status, f.end) for f in back.customer_faults] == [("restored", at(300))]
    # A short single-meter blip is nothing at all.
    r = screen.feed([obs("TX0-M4", "off", 400), obs("TX0-M4", "on", 410)], at(411))
    assert r.momentary == 1 and r.customer_faults == [] and r.events == []


def test_too_few_or_too_spread_meters_are_no_area_outage() -> None:
    screen = AmiScreen(registry())
    r = screen.feed(meters_off(0, 4), at(4))  # 4 < 5
    r.extend(screen.feed(meters_off(1, 5, step=70), at(281)))  # 5 over 280 s, window 60 s
    r.extend(screen.tick(at(400)))
    assert r.events == []
    assert len(r.customer_faults) == 9


def test_share_threshold() -> None:
    policy = ScreenPolicy.from_config(AmiScreenConfig(min_share=0.5, min_meters=5))
    screen = AmiScreen(registry(meters=20), policy)
    screen.feed(meters_off(0, 9), at(9))
    assert screen.tick(at(100)).events == []
    screen2 = AmiScreen(registry(meters=20), policy)
    screen2.feed(meters_off(0, 10), at(10))
    assert [e.signal for e in screen2.tick(at(100)).events] == ["dead"]
    small = AmiScreen(registry(meters=3))  # fewer registered than min_meters: all of them
    small.feed(meters_off(0, 3), at(3))
    assert [e.signal for e in small.tick(at(100)).events] == ["dead"]


def test_backlog_with_off_and_on_in_one_batch_gives_dead_and_alive() -> None:
    screen = AmiScreen(registry())
    batch = meters_on(0, 5, at=300) + meters_off(0, 5)  # out of order on purpose
    r = screen.feed(batch, at(3600))
    assert [(e.signal, e.start, e.end) for e in r.events] == [
        ("dead", T, None), ("alive", T, at(302))]


def test_stale_report_is_ignored() -> None:
    screen = AmiScreen(registry())
    screen.feed([obs("TX0-M1", "on", 100)], at(100))
    r = screen.feed([obs("TX0-M1", "off", 50)], at(101))
    assert r.stale == 1


def test_unknown_devices_are_counted_not_screened() -> None:
    screen = AmiScreen(registry())
    r = screen.feed([obs("X-1", "off", 0), obs("X-2", "off", 0, tx="TX0")], at(1))
    assert r.observed == 2 and r.unknown == 1
    notice = OutageEvent(source="95598", event_id="n1", kind="planned", status="active",
                         start=T, transformers=("TX0",))
    assert screen.feed([notice], at(2)).observed == 0


def test_state_round_trip_keeps_held_outage() -> None:
    reg = registry()
    screen = AmiScreen(reg)
    screen.feed(meters_off(0, 5) + [obs("TX1-M1", "off", 0)], at(5))
    state = json.loads(json.dumps(screen.to_state()))
    restored = AmiScreen.from_state(state, reg)
    r = restored.tick(at(61))
    assert [e.event_id for e in r.events] == ["TX0@20260701T080000Z"]
    assert [f.meter for f in r.customer_faults] == ["TX1-M1"]
    assert restored.feed(meters_off(0, 5), at(62)).merged == 5


def test_state_stays_small_after_many_blips() -> None:
    screen = AmiScreen(registry(areas=50, meters=10))
    for k in range(20):
        base = k * 1000.0
        batch = []
        for a in range(50):
            batch += [obs(f"TX{a}-M{m}", "off", base + m) for m in range(10)]
            batch += [obs(f"TX{a}-M{m}", "on", base + 20 + m) for m in range(10)]
        screen.feed(batch, at(base + 40))
    screen.tick(at(30000))
    state = screen.to_state()
    # One last close per area and one last "on" per meter, until forget_after_hours.
    assert all(a["episode"] is None and a["off"] == {} for a in state["areas"].values())
    assert len(state["areas"]) == 50 and len(state["last"]) == 500 and state["singles"] == {}
    screen.tick(at(20000 + 72 * 3600 + 120))
    state = screen.to_state()
    assert state["areas"] == {} and state["last"] == {} and state["singles"] == {}
    assert len(screen._schedule) < 4000


def test_backlog_replayed_in_batches_keeps_blips_momentary() -> None:
    """Reports hours old (a backlog after a restart): ``now`` is far ahead of their times, yet
    a blip whose restore comes in the next batch is still dropped, and a real outage is
    released as soon as the report stream has moved past its minimum duration."""
    screen = AmiScreen(registry())
    late = 3 * 3600.0
    r = screen.feed(meters_off(0, 6) + meters_off(1, 6), at(late))
    assert r.events == []
    r = screen.feed(meters_on(0, 6, at=10), at(late + 1))  # next batch, one second later
    assert r.momentary == 1 and r.events == []
    later_reports = [obs("TX2-M0", "off", 80), obs("TX2-M0", "on", 81)]
    r = screen.feed(later_reports, at(late + 2))  # the stream is now 80 s past TX1's start
    assert [(e.signal, e.transformers) for e in r.events] == [("dead", ("TX1",))]


def test_restore_in_transit_cancels_a_just_seen_outage() -> None:
    """An outage first seen after its minimum duration is held ``lateness`` more seconds."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 5), at(70))  # reports arrive 70 s late
    assert screen.tick(at(80)).events == []
    assert screen.next_due() == at(85)
    r = screen.feed(meters_on(0, 5, at=50), at(82))  # the restores were 50 s after the offs
    assert r.momentary == 1
    assert screen.tick(at(200)).events == []


def test_area_outputs_point_at_the_fault() -> None:
    """Terminal off in T1 plus meters in T2 (both under FU1, T3 under FU2 fine): the screened
    dead areas localise to FU1 through the topology."""
    from outage_sentinel.topology import Meter, Topology, topology_from_records

    nodes = [{"id": "S1", "kind": "source", "name": "S1", "feeder": "F1"},
             {"id": "B1", "kind": "breaker", "name": "B1", "feeder": "F1"},
             {"id": "FU1", "kind": "fuse", "name": "FU1", "feeder": "F1"},
             {"id": "FU2", "kind": "fuse", "name": "FU2", "feeder": "F1"}]
    nodes += [{"id": t, "kind": "transformer", "name": t, "feeder": "F1", "village": "V1",
               "customers": 6} for t in ("T1", "T2", "T3")]
    base = topology_from_records(
        nodes, [("S1", "B1"), ("B1", "FU1"), ("B1", "FU2"), ("FU1", "T1"), ("FU1", "T2"),
                ("FU2", "T3")],
        villages=[{"id": "V1", "name": "V1", "township": "X", "grid": "G",
                   "area_type": "rural"}])
    meters = [Meter(f"{t}-TERM", t, "terminal") for t in ("T1", "T2", "T3")]
    meters += [Meter(f"{t}-M{m}", t, "meter") for t in ("T1", "T2", "T3") for m in range(6)]
    topo = Topology(base.nodes, base.edges, base.villages, base.liaisons, base.crews,
                    base.customers, meters)
    screen = AmiScreen(AmiRegistry.from_topology(topo))
    reports = [obs("T1-TERM", "off", 0, kind="terminal")]
    reports += [obs(f"T2-M{m}", "off", 1 + m) for m in range(6)]
    reports += [obs("T3-M0", "off", 2)]  # a lone meter under FU2: customer side
    r = screen.feed(reports, at(10))
    r.extend(screen.tick(at(120)))
    dead = sorted(tx for e in r.events if e.signal == "dead" for tx in e.transformers)
    assert dead == ["T1", "T2"]
    assert {e.feeder for e in r.events} == {"F1"}
    assert topo.common_protective_device(dead) == "FU1"
    assert [f.meter for f in r.customer_faults] == ["T3-M0"]


# -- reports about the past, and clocks ahead ---------------------------------------------------


def test_old_meter_power_down_records_do_not_restore_an_outage_in_progress() -> None:
    """Ten meters off since 2 h; five meters' logs of a blip two hours before that arrive
    (3011: off, on 30 s later). The area is still out: an "on" older than the meter's current
    off, or than the outage's start, closes nothing."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 10, at=7200), at(7205))
    assert [e.signal for e in screen.tick(at(7320)).events] == ["dead"]
    logs = []
    for m in range(5):
        logs += [obs(f"TX0-M{m}", "off", m), obs(f"TX0-M{m}", "on", 30 + m)]
    r = screen.feed(logs, at(7200 + 2400))
    assert r.events == [] and r.stale == 5 and r.merged == 5
    assert screen.outages() == {"TX0": at(7200)}
    # Fed one by one (the on in a later poll than its off): the same.
    for m in range(5, 10):
        screen.feed([obs(f"TX0-M{m}", "off", m)], at(7200 + 2500))
        assert screen.feed([obs(f"TX0-M{m}", "on", 30 + m)], at(7200 + 2501)).events == []
    assert screen.outages() == {"TX0": at(7200)}
    back = screen.feed(meters_on(0, 6, at=9000), at(9006)).events
    assert [(e.signal, e.start, e.end) for e in back] == [("alive", at(7200), at(9005))]


def test_an_on_before_the_outage_began_does_not_close_it() -> None:
    """A meter off before a released outage began joins it; its "on" from before the start
    is a blip of its own, not the area's restoration."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 5, at=600), at(605))
    assert [e.signal for e in screen.tick(at(720)).events] == ["dead"]
    late = [obs(f"TX0-M{m}", "off", 100 + m) for m in range(5, 10)]
    late += [obs(f"TX0-M{m}", "on", 130 + m) for m in range(5, 10)]
    screen.feed(late[:5], at(800))
    r = screen.feed(late[5:], at(801))
    assert r.events == [] and screen.outages() == {"TX0": at(600)}


def test_an_old_terminal_off_on_record_does_not_restore_a_meter_outage() -> None:
    """ERC14 from two hours before a meter outage (off, on 3 min later) arrives 30 min into
    it: the area stays out, and the outage is not the terminal's."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 10, at=7200), at(7205))
    assert [e.signal for e in screen.tick(at(7320)).events] == ["dead"]
    record = [obs("TX0-T", "off", 0, kind="terminal"), obs("TX0-T", "on", 180, kind="terminal")]
    assert screen.feed(record, at(7200 + 1800)).events == []
    assert screen.outages() == {"TX0": at(7200)}
    # The off alone first, its on in a later poll: the same.
    screen.feed([obs("TX1-T", "off", 0, kind="terminal")], at(1))
    screen.feed([obs("TX1-T", "on", 180, kind="terminal")], at(181))
    screen.feed(meters_off(1, 10, at=7200), at(7205))
    screen.tick(at(7320))
    assert screen.feed([obs("TX1-T", "off", 10, kind="terminal"),
                        obs("TX1-T", "on", 200, kind="terminal")], at(9000)).events == []
    assert set(screen.outages()) == {"TX0", "TX1"}
    # The terminal's own off and on during the outage: its on alone does not restore an area
    # whose ten meters still say off; their restores do, and the outage was the terminal's too.
    assert screen.feed([obs("TX0-T", "off", 7201, kind="terminal"),
                        obs("TX0-T", "on", 9500, kind="terminal")], at(9501)).events == []
    back = screen.feed(meters_on(0, 6, at=9600), at(9606)).events
    assert [(e.signal, e.end, e.raw["terminal_off"]) for e in back] == [
        ("alive", at(9605), True)]


def test_a_terminal_on_alone_does_not_overrule_meters_still_off() -> None:
    """The mirror of "few meters don't overrule a terminal still off": a terminal that never
    reported off, reporting on, does not restore an area whose meters (enough for an outage,
    and most of the outage's) still report off. Their restores do."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 10), at(5))
    assert [e.signal for e in screen.tick(at(120)).events] == ["dead"]
    assert screen.feed([obs("TX0-T", "on", 300, kind="terminal")], at(301)).events == []
    assert screen.outages() == {"TX0": T}
    back = screen.feed(meters_on(0, 6, at=600), at(606)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(605))]
    # Fewer still off than an outage needs: the terminal's on is believed.
    screen.feed(meters_off(1, 5), at(5))
    screen.tick(at(120))
    screen.feed([obs("TX1-M0", "on", 200)], at(201))
    back = screen.feed([obs("TX1-T", "on", 300, kind="terminal")], at(301)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(300))]


def test_power_offs_reported_after_their_power_ons_are_stale() -> None:
    """A concentrator's backlog split over two polls, the power-ons (1 h old) first, the older
    power-offs (3 h old) next: the offs are stale, no outage that would never close. On
    history is kept by when it was seen, not by its (old) report time."""
    screen = AmiScreen(registry())
    now = at(3 * 3600)
    screen.feed(meters_on(0, 10, at=7200), now)
    screen.tick(now + timedelta(seconds=120))  # prunes
    r = screen.feed(meters_off(0, 10), now + timedelta(seconds=180))
    assert r.stale == 10
    r.extend(screen.tick(now + timedelta(hours=1)))
    assert r.events == [] and r.customer_faults == [] and screen.outages() == {}
    # Live: the ons as they happen, the offs read from the meters' logs 15 min later.
    screen.feed(meters_on(1, 10, at=20000), at(20005))
    screen.tick(at(20000 + 700))
    r = screen.feed(meters_off(1, 10, at=20000 - 7200), at(20000 + 900))
    assert r.stale == 10 and screen.outages() == {}


def test_on_history_is_forgotten_after_the_horizon_and_survives_a_restart() -> None:
    reg = registry()
    screen = AmiScreen(reg)
    screen.feed(meters_on(0, 10, at=0), at(10800))  # seen 3 h after they happened
    state = json.loads(json.dumps(screen.to_state()))
    again = AmiScreen.from_state(state, reg)
    again.tick(at(10800 + 600))
    assert again.feed(meters_off(0, 10, at=-3600), at(10800 + 660)).stale == 10
    again.tick(at(10800 + 71 * 3600))
    assert len(again.to_state()["last"]) == 10  # kept forget_after_hours (72 h)
    again.tick(at(10800 + 72 * 3600 + 100))
    assert again.to_state()["last"] == {}  # 72 hours after they were seen


def test_a_saved_state_of_the_previous_version_loads() -> None:
    reg = registry()
    old = {"version": 1, "areas": {"TX0": {
        "off": {f"TX0-M{m}": float(T.timestamp()) for m in range(5)}, "terminal_off": None,
        "episode": {"start": T.timestamp(), "basis": "meters",
                    "meters": [f"TX0-M{m}" for m in range(5)], "restored": [],
                    "terminal_off": False, "released": True, "cause": "", "seen": 0.0}}},
        "last": {f"TX0-M{m}": [T.timestamp(), "off"] for m in range(5)}
        | {"TX1-M0": [T.timestamp() + 30, "on"]},
        "singles": {}, "watermark": T.timestamp() + 30}
    screen = AmiScreen.from_state(old, reg)
    assert screen.outages() == {"TX0": T}
    assert screen.feed([obs("TX1-M0", "off", 10)], at(60)).stale == 1
    back = screen.feed(meters_on(0, 3, at=100), at(103)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(102))]


def test_a_device_clock_ahead_does_not_switch_off_the_momentary_rule() -> None:
    """One meter's clock 3 min fast (or a year) must not move the watermark ahead: a later
    4-second reclose anywhere is still momentary, and the meter's real reports still count."""
    reg = registry()
    screen = AmiScreen(reg)
    screen.feed([obs("TX2-M0", "off", 180)], at(2))  # 3 minutes ahead
    screen.feed(meters_off(0, 10, at=10, step=0), at(11))
    r = screen.feed(meters_on(0, 10, at=14, step=0), at(15))
    assert (r.events, r.momentary) == ([], 1)
    assert screen.watermark == at(32)  # now + 30 s at most
    assert screen.feed([obs("TX2-M0", "on", 100)], at(100)).stale == 0
    # A mark saved a year ahead (before this rule): lowered, and the reclose stays momentary.
    state = json.loads(json.dumps(screen.to_state()))
    state["watermark"] = at(365 * 86400).timestamp()
    again = AmiScreen.from_state(state, reg)
    again.feed(meters_off(1, 10, at=200, step=0), at(201))
    r = again.feed(meters_on(1, 10, at=204, step=0), at(205))
    assert (r.events, r.momentary) == ([], 1)
    # A real outage is released when it has lasted the minute, not before.
    again.feed([obs("TX2-M1", "off", 365 * 86400)], at(300))
    again.feed(meters_off(0, 10, at=300, step=0), at(301))
    assert again.tick(at(359)).events == []
    assert [e.signal for e in again.tick(at(360)).events] == ["dead"]


def test_a_terminal_on_does_not_restore_while_most_meters_still_say_off() -> None:
    """Terminal off, all ten meters off; the terminal reports on while the meters still say
    off: the area stays out until the meters' restores come (rule 3, both ways)."""
    screen = AmiScreen(registry())
    screen.feed([obs("TX0-T", "off", 0, kind="terminal")] + meters_off(0, 10), at(12))
    assert [e.signal for e in screen.tick(at(180)).events] == ["dead"]
    assert screen.feed([obs("TX0-T", "on", 540, kind="terminal")], at(600)).events == []
    assert screen.outages() == {"TX0": T}
    back = screen.feed(meters_on(0, 6, at=4140), at(4200)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(4145))]


def test_a_meter_whose_restore_was_lost_does_not_stretch_the_next_blip() -> None:
    """Two 40 s recloser shots, one meter's power-on lost in the first: the meter's off time
    from before the first shot's close must not start the second shot's outage (which would
    then have "lasted" 85 s: an outage and a restoration for two momentary interruptions)."""
    screen = AmiScreen(registry())
    r = screen.feed(meters_off(0, 10, step=0), at(2))
    r.extend(screen.feed([obs(f"TX0-M{m}", "on", 40) for m in range(1, 10)], at(42)))
    r.extend(screen.feed(meters_off(0, 10, at=45, step=0), at(47)))  # M0: a repeated off
    r.extend(screen.tick(at(70)))
    r.extend(screen.feed(meters_on(0, 10, at=85, step=0), at(87)))
    r.extend(screen.tick(at(3600)))
    assert r.events == [] and r.momentary == 2
    assert screen.outages() == {}
    # Lockout after another shot: a real outage, starting when the lockout began.
    screen.feed(meters_off(0, 10, at=4000, step=0), at(4002))
    out = screen.tick(at(4060)).events
    assert [(e.signal, e.start, e.raw["meters_off"]) for e in out] == [("dead", at(4000), 10)]


def test_a_meter_still_off_after_a_close_counts_again_when_it_reports_off_again() -> None:
    """In a five-meter area the lost-restore meter is needed to reach the threshold: its new
    off (after the close) counts, from its new time."""
    screen = AmiScreen(registry(meters=5))
    screen.feed(meters_off(0, 5, step=0), at(2))
    r = screen.feed([obs(f"TX0-M{m}", "on", 30) for m in range(1, 5)], at(32))
    assert r.momentary == 1
    screen.feed(meters_off(0, 5, at=300, step=0), at(302))
    out = screen.tick(at(360)).events
    assert [(e.signal, e.start, e.raw["meters_off"]) for e in out] == [("dead", at(300), 5)]
    # A copy of the old off (from before the close) is merged, and changes nothing.
    assert screen.feed([obs("TX0-M0", "off", 0)], at(361)).merged == 1
    assert screen.outages() == {"TX0": at(300)}


def test_a_terminal_off_after_a_close_does_not_reach_back_to_stale_meter_offs() -> None:
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 10, step=0), at(2))
    screen.feed([obs(f"TX0-M{m}", "on", 40) for m in range(1, 10)], at(42))
    screen.feed([obs("TX0-T", "off", 45, kind="terminal")], at(46))
    r = screen.feed([obs("TX0-T", "on", 85, kind="terminal")], at(86))
    r.extend(screen.tick(at(3600)))
    assert r.events == [] and r.momentary == 1


def test_the_last_close_survives_a_restart() -> None:
    reg = registry()
    screen = AmiScreen(reg)
    screen.feed(meters_off(0, 10, step=0), at(2))
    screen.feed([obs(f"TX0-M{m}", "on", 40) for m in range(1, 10)], at(42))
    again = AmiScreen.from_state(json.loads(json.dumps(screen.to_state())), reg)
    r = again.feed(meters_off(0, 10, at=45, step=0), at(47))
    r.extend(again.feed(meters_on(0, 10, at=85, step=0), at(87)))
    r.extend(again.tick(at(3600)))
    assert r.events == [] and r.momentary == 1


def test_a_concentrator_backlog_is_not_announced_as_a_live_outage() -> None:
    """A concentrator reconnects and uploads a 3-hour-old outage: the offs first, the ons in
    its next message 20 s later. Known for 15 s is not enough for reports that old: the
    backlog is held ``backlog_hold_seconds`` (120 s), and the ons close it (a finished
    outage: ``dead`` and ``alive`` together)."""
    screen = AmiScreen(registry())
    now = 3 * 3600.0
    r = screen.feed(meters_off(0, 10), at(now))
    r.extend(screen.tick(at(now + 16)))
    r.extend(screen.tick(at(now + 60)))
    assert r.events == [] and r.held == 1
    assert screen.next_due() == at(now + 120)
    r = screen.feed(meters_on(0, 10, at=3600), at(now + 20))
    assert [(e.signal, e.start, e.end) for e in r.events] == [
        ("dead", T, None), ("alive", T, at(3605))]
    # A backlog whose ons never come is released after the hold, not before.
    screen.feed(meters_off(1, 10), at(now))
    assert screen.tick(at(now + 119)).events == []
    assert [e.signal for e in screen.tick(at(now + 120)).events] == ["dead"]


def test_a_backlog_in_a_live_stream_is_not_released_by_the_live_watermark() -> None:
    """Other areas' live reports keep the watermark at ``now``; that says nothing about
    whether the reconnecting concentrator's restores are still in transit: its old outage
    waits for the hold, and its old blip (ons in the next message) stays momentary."""
    screen = AmiScreen(registry())
    now = 3 * 3600.0
    screen.feed([obs("TX2-M0", "off", now - 1)], at(now - 1))  # live, another area
    r = screen.feed(meters_off(0, 10) + meters_off(1, 10, at=600), at(now))
    r.extend(screen.tick(at(now + 16)))
    assert r.events == []
    r = screen.feed(meters_on(1, 10, at=630), at(now + 20))  # a 30 s blip, 2.8 h ago
    assert r.events == [] and r.momentary == 1
    assert [(e.signal, e.transformers) for e in screen.tick(at(now + 120)).events] == [
        ("dead", ("TX0",))]


def test_a_live_outage_is_released_when_it_was_before() -> None:
    """The backlog hold does not slow live outages: seen as they happen, or late by less than
    ``min_duration + lateness``, they are released as before."""
    screen = AmiScreen(registry())
    screen.feed(meters_off(0, 5), at(5))
    assert screen.next_due() == at(60)
    assert [e.signal for e in screen.tick(at(60)).events] == ["dead"]
    screen.feed(meters_off(1, 5, at=1000), at(1074))  # 74 s late: not a backlog
    assert screen.tick(at(1088)).events == []
    assert [e.signal for e in screen.tick(at(1089)).events] == ["dead"]


def test_backlog_hold_survives_a_restart() -> None:
    reg = registry()
    screen = AmiScreen(reg)
    screen.feed(meters_off(0, 10), at(3 * 3600))
    again = AmiScreen.from_state(json.loads(json.dumps(screen.to_state())), reg)
    assert again.tick(at(3 * 3600 + 60)).events == []
    assert [e.signal for e in again.tick(at(3 * 3600 + 120)).events] == ["dead"]


def test_a_backlog_is_not_released_by_other_areas_live_reports_in_its_poll_or_the_next() -> None:
    """A fresh screen (the daemon just started): a concentrator's 3-hour-old offs arrive with
    other areas' live reports in one poll, or alone and the live reports in the next poll, or
    into a quiet stream whose newest report is ten minutes old. None of these says the
    upload's power-ons are not in transit: each waits for the backlog hold."""
    now = 3 * 3600.0
    one = AmiScreen(registry())
    one.feed(meters_off(0, 10) + [obs("TX2-M0", "off", now - 2)], at(now))
    assert one.tick(at(now + 16)).events == []
    two = AmiScreen(registry())
    two.feed(meters_off(0, 10), at(now))
    two.feed([obs("TX2-M0", "off", now)], at(now + 1))
    assert two.tick(at(now + 16)).events == []
    quiet = AmiScreen(registry())
    quiet.feed([obs("TX2-M0", "off", now - 600)], at(now - 600))
    quiet.feed(meters_off(0, 10), at(now))
    assert quiet.tick(at(now + 16)).events == []
    for screen in (one, two, quiet):
        r = screen.feed(meters_on(0, 10, at=3600), at(now + 25))
        assert [e.signal for e in r.events] == ["dead", "alive"]
