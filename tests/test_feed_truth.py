"""The outage-information system's records as villages hear them, through the daemon's own
processing on a real store: planned work re-issued under a new id, a record whose type no
mapping classifies, planned work first seen after its stop, and a finished planned record a
feed still lists that must not hold another incident's "power back"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.sources.http_json import HttpJsonSource
from tests.conftest import T0
from tests.test_http_json import Reply, Scripted, json_reply, make_source
from tests.test_http_json import server as server  # noqa: F401  (the fixture)
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed, incident, told

H = timedelta(hours=1)


def check(d: Daemon, minutes: int) -> None:
    """The clock's check at ``minutes`` (held notices are released there)."""
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    d.clock_stage.run_once(d.clock())


# -- a finished planned record still listed -------------------------------------------------


def fault_ends_beside_finished_work(d: Daemon, *, work_end: bool = False) -> Incident:
    """刘庄村 (V2): planned work on T4 (behind FU2) 08:00–10:00, still listed after; a fault
    on T3 (behind R1) from 09:00, which ends at 11:00. Returns the fault incident."""
    work = {"kind": "planned", "expected_restoration": T0 + 2 * H}
    if work_end:
        work["end"] = T0 + 2 * H  # the record gives its actual end, status still active
    feed(d, 1, ev("P1", "T4", **work))
    feed(d, 61, ev("F1", "T3", start=T0 + H))
    feed(d, 180, ev("F1", "T3", start=T0 + H, status="restored", end=T0 + 3 * H))
    return incident(d, "fault")


def test_finished_work_with_no_word_of_its_areas_still_holds_the_fault_s_power_back(
        daemon: Daemon) -> None:
    """Nothing says T4 is back: the work may have overrun; silence is the honest answer."""
    fault = fault_ends_beside_finished_work(daemon)
    check(daemon, 181)
    assert ("V2", "restored", fault.id) not in told(daemon)


@pytest.mark.parametrize("evidence", ["meters", "record_end"])
def test_finished_work_whose_area_is_known_back_holds_no_power_back(
        daemon: Daemon, evidence: str) -> None:
    """The planned stop has passed and the meters said T4 came back (or the record gives its
    actual end): the fault's "power back" is true for 刘庄村 and goes out."""
    if evidence == "meters":
        feed(daemon, 1, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H))
        feed(daemon, 61, ev("F1", "T3", start=T0 + H))
        # The area's power-restore from the AMI screen, after the work (joins the fault).
        feed(daemon, 126, ev("A-T4", "T4", source="ami", signal="dead", status="restored",
                             start=T0 + timedelta(minutes=5), end=T0 + timedelta(minutes=125)))
        feed(daemon, 180, ev("F1", "T3", start=T0 + H, status="restored", end=T0 + 3 * H))
        fault = incident(daemon, "fault")
    else:
        fault = fault_ends_beside_finished_work(daemon, work_end=True)
    check(daemon, 181)
    assert ("V2", "restored", fault.id) in told(daemon)



# -- planned work first seen after its stop ------------------------------------------------


def liaison_texts(d: Daemon, incident_id: str) -> list[str]:
    return [m.body for m in d.store.messages(incident_id=incident_id)
            if m.audience == "liaison"]


def test_planned_work_first_seen_after_its_stop_is_not_announced(daemon: Daemon) -> None:
    """08:00–10:00 work listed at 11:00, nothing saying its areas are dark: no village hears
    of an outage that is over; the incident is kept, and its log says whom it did not tell."""
    feed(daemon, 180, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H))
    work = incident(daemon, "planned")
    assert liaison_texts(daemon, work.id) == []
    assert work.status == "active" and work.notified_villages == ()
    (step,) = [e for e in daemon.store.incident_log(work.id) if e["stage"] == "past_stop"]
    # V2 alone: the work names T4, and no device (the fuse above it is no work on T5).
    assert set(step["details"]["villages"]) == {"V2"}
    # The feed ends it: nobody was told, nobody hears "power back".
    feed(daemon, 200, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H,
                         status="restored", end=T0 + 2 * H))
    assert liaison_texts(daemon, work.id) == []


def test_planned_work_past_its_stop_while_meters_say_dark_is_called_an_overrun(
        daemon: Daemon) -> None:
    """The meters say T4 is dark at 10:30: the work listed at 11:00 is an outage past its
    planned end, and its notice says exactly that, never "预计恢复 10:00"."""
    feed(daemon, 150, ev("A-T4", "T4", source="ami", signal="dead",
                         start=T0 + timedelta(minutes=150)))
    feed(daemon, 180, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H))
    work = incident(daemon, "planned")
    texts = liaison_texts(daemon, work.id)
    v2 = [t for t in texts if "刘庄村" in t]
    assert v2 and all("超出计划时间仍停电" in t and "预计恢复" not in t for t in v2)
    assert not [t for t in texts if "王楼村" in t]  # V3's T5: nothing says it is dark


def test_a_fault_whose_expected_restoration_has_passed_states_no_past_time_as_expected(
        daemon: Daemon) -> None:
    feed(daemon, 180, ev("F1", "T3", start=T0 + H, expected_restoration=T0 + 2 * H))
    texts = liaison_texts(daemon, incident(daemon, "fault").id)
    assert texts and not [t for t in texts if "预计恢复" in t]
    assert all("恢复时间待定" in t for t in texts)


# -- an outage type no mapping classifies ---------------------------------------------------


def local(minutes: int) -> str:
    """The feed's Beijing-time text of ``T0 + minutes`` (T0 is 08:00 there)."""
    return (T0 + timedelta(minutes=minutes) + 8 * H).strftime("%Y-%m-%d %H:%M:%S")


def record(rid: str, type_code: str, *areas: str, start: int = 60, stop: int = 240,
           **extra: Any) -> dict[str, Any]:
    return {"powerOffId": rid, "typeCode": type_code, "startTime": local(start),
            "stopTime": local(stop), "lineName": "10kV马集线", "pubTranName": ",".join(areas),
            "scope": "", "poweroffReason": "", **extra}


def listing(*records: dict[str, Any]) -> Reply:
    return json_reply({"seleList": list(records),
                       "pageModel": {"pageNow": 1, "totalPage": 1, "totalCount": len(records)}})


def poll(d: Daemon, source: HttpJsonSource, minutes: int) -> None:
    """One poll of the feed at ``T0 + minutes``, stored and processed as the daemon does."""
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    result = source.poll(d.clock())
    d.store.ingest(source.name, result, d.clock())
    source.acknowledge(result)
    d.process()


def test_an_unclassified_type_is_announced_as_a_neutral_outage_and_still_gets_a_crew(
        daemon: Daemon, server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [listing(record("X1", "9", "T3"))]
    source = make_source(url)
    with capture_logs() as logs:
        poll(daemon, source, 61)
        script.replies = [listing(record("X1", "9", "T3", stop=300))]
        poll(daemon, source, 70)
    inc = incident(daemon, "fault")  # handled as the field map's default_kind
    mine = daemon.store.messages(incident_id=inc.id)
    village = [m.body for m in mine if m.audience == "liaison" and m.purpose == "outage"]
    assert village and all(b.startswith("【停电通知】") and "故障" not in b and "抢修" not in b
                           for b in village)
    assert [m for m in mine if m.audience == "crew" and m.purpose == "dispatch"]
    summary = [m.body for m in mine if m.audience == "command"]
    assert summary and "类型未识别" in summary[0]
    unknown = [e for e in logs if e["event"] == "feed_unknown_kind"]
    assert [(e["value"], e["source"]) for e in unknown] == [("9", "feed95598")]


# -- planned work re-issued under a new id --------------------------------------------------

TOMORROW = T0 + 24 * H


def test_planned_work_reissued_in_the_same_poll_is_one_update(daemon: Daemon) -> None:
    """The outage system lists the old record cancelled (作废) and the edited work under a
    new id, two hours longer: the villages hear one update, not 停电取消 and a new notice."""
    work = {"kind": "planned", "start": TOMORROW}
    feed(daemon, 1, ev("P1", "T4", **work, expected_restoration=TOMORROW + 4 * H))
    feed(daemon, 20, ev("P1", "T4", **work, expected_restoration=TOMORROW + 4 * H,
                        status="cancelled"),
         ev("P2", "T4", **work, expected_restoration=TOMORROW + 6 * H))
    (row,) = daemon.store.load_incidents(open_only=False)
    assert [(v, p) for v, p, _ in told(daemon) if v == "V2"] == [("V2", "outage"),
                                                                 ("V2", "update")]
    work_now = Incident.from_json(row["state"])
    assert work_now.status == "active" and work_now.etr == TOMORROW + 6 * H
    # The command centre sees which record continues which.
    assert work_now.members["feed|P1"].superseded_by == "feed|P2"
    (step,) = [e for e in daemon.store.incident_log(row["id"]) if e["stage"] == "reissued"]
    assert step["details"] == {"record": "feed|P1", "by": "feed|P2"}


def test_planned_work_reissued_on_a_snapshot_feed_is_one_update(
        daemon: Daemon, server: tuple[str, Scripted]) -> None:
    """The 95598 list drops the old id as the new one appears (same line, areas, window
    shifted): one incident, one update."""
    url, script = server
    source = make_source(url)
    script.replies = [listing(record("X1", "1", "T4", start=1500, stop=1740))]
    poll(daemon, source, 1)
    script.replies = [listing(record("X2", "1", "T4", start=1560, stop=1800))]
    poll(daemon, source, 10)
    poll(daemon, source, 20)  # X1 missing twice: inferred called off
    assert len(daemon.store.load_incidents(open_only=False)) == 1
    assert [(v, p) for v, p, _ in told(daemon) if v == "V2"] == [("V2", "outage"),
                                                                 ("V2", "update")]


def jobs(d: Daemon) -> list[tuple[str, ...]]:
    """Each incident's records (event ids), in opening order."""
    rows = sorted(d.store.load_incidents(open_only=False), key=lambda r: r["id"])
    return [tuple(k.split("|")[1] for k in Incident.from_json(r["state"]).members)
            for r in rows]


@pytest.mark.parametrize("case", ["disjoint_areas", "finished_at_its_stop"])
def test_two_jobs_on_one_line_are_not_linked(daemon: Daemon, case: str) -> None:
    """Another job on the line as one ends: areas it does not share (T5 of 王楼村 after T4 of
    刘庄村 was called off), or the same area after the first job finished at its planned
    stop. Each is its own work: its own incident and its own notices."""
    if case == "disjoint_areas":
        work = {"kind": "planned", "start": TOMORROW, "expected_restoration": TOMORROW + 4 * H}
        feed(daemon, 1, ev("P1", "T4", **work))
        feed(daemon, 20, ev("P1", "T4", **work, status="cancelled"), ev("P2", "T5", **work))
        first, second = "cancelled", ("V3", "outage")
    else:
        feed(daemon, 1, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H))
        feed(daemon, 120, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H,
                             status="restored", end=T0 + 2 * H),
             ev("P2", "T4", kind="planned", start=T0 + 2 * H, expected_restoration=T0 + 4 * H))
        first, second = "restored", ("V2", "outage")
    assert jobs(daemon) == [("P1",), ("P2",)]
    rows = sorted(daemon.store.load_incidents(open_only=False), key=lambda r: r["id"])
    assert [r["status"] for r in rows] == [first, "active"]
    assert (*second, rows[1]["id"]) in told(daemon)
    assert not [e for r in rows for e in daemon.store.incident_log(r["id"])
                if e["stage"] == "reissued"]


@pytest.mark.parametrize("case", ["disjoint_areas", "finished_at_its_stop"])
def test_two_jobs_on_a_snapshot_feed_are_not_linked(
        daemon: Daemon, server: tuple[str, Scripted], case: str) -> None:
    """The 95598 list drops one job as another appears: not a re-issue when they share no
    area, nor when the first left the list at its planned stop (finished)."""
    url, script = server
    source = make_source(url)
    if case == "disjoint_areas":
        first, second = record("X1", "1", "T4", start=1500, stop=1740), \
            record("X2", "1", "T5", start=1500, stop=1740)
    else:
        first, second = record("X1", "1", "T4", start=0, stop=120), \
            record("X2", "1", "T4", start=120, stop=240)
    script.replies = [listing(first)]
    poll(daemon, source, 1)
    script.replies = [listing(second)]
    poll(daemon, source, 120)
    poll(daemon, source, 130)  # X1 missing twice: over
    assert jobs(daemon) == [("X1",), ("X2",)]


def test_work_partly_dropped_in_the_reissue_tells_the_dropped_village_it_is_called_off(
        daemon: Daemon) -> None:
    """The edited work no longer takes in T5 (王楼村): that village hears the work is called
    off for it (停电取消), never "power back" for work that has not begun; 刘庄村 hears
    nothing new (its time did not change)."""
    work = {"kind": "planned", "start": TOMORROW, "expected_restoration": TOMORROW + 4 * H}
    feed(daemon, 1, ev("P1", "T4", "T5", **work))
    feed(daemon, 20, ev("P1", "T4", "T5", **work, status="cancelled"), ev("P2", "T4", **work))
    assert jobs(daemon) == [("P1", "P2")]
    assert [(v, p) for v, p, _ in told(daemon)] == [("V2", "outage"), ("V3", "outage"),
                                                    ("V3", "cancelled")]


@pytest.mark.parametrize("started", [False, True])
def test_work_edited_under_its_own_id_to_leave_a_village_out_tells_that_village(
        daemon: Daemon, started: bool) -> None:
    """The same record, edited to no longer take in T5 (王楼村). Before the work begins the
    village hears it is called off for it (停电取消); once the work has begun it hears its
    power is back only when something says so (never silence, never a guess)."""
    start = T0 + 30 * timedelta(minutes=1) if started else TOMORROW
    work = {"kind": "planned", "start": start, "expected_restoration": start + 4 * H}
    feed(daemon, 1, ev("P1", "T4", "T5", **work))
    feed(daemon, 60, ev("P1", "T4", **work))
    said = [(v, p) for v, p, _ in told(daemon)]
    if not started:
        assert said == [("V2", "outage"), ("V3", "outage"), ("V3", "cancelled")]
        # The command centre reads it as called off for T5, not as a partial restoration.
        work_now = incident(daemon, "planned")
        assert work_now.stage == "confirmed"
        steps = [(e["stage"], e["details"].get("transformers"))
                 for e in daemon.store.incident_log(work_now.id)]
        assert ("called_off", ["T5"]) in steps
        assert "partially_restored" not in [s for s, _ in steps]
        # Edited back in: the village hears of the work anew.
        feed(daemon, 90, ev("P1", "T4", "T5", **work))
        v3 = [m.purpose for m in daemon.store.messages()
              if m.audience == "liaison" and m.recipient.startswith("village:V3")]
        assert v3 == ["outage", "cancelled", "outage"]
    else:
        assert said == [("V2", "outage"), ("V3", "outage")]
        assert "T5" in incident(daemon, "planned").off


def test_a_cancelled_reissue_quotes_the_start_the_village_was_last_told(
        daemon: Daemon) -> None:
    """Work moved from 08:00 to 10:00 by a re-issue, then called off: 停电取消 says the work
    that was to start at 10:00 is off, not the 08:00 the village was told it no longer was."""
    work = {"kind": "planned", "start": TOMORROW, "expected_restoration": TOMORROW + 4 * H}
    moved = {"kind": "planned", "start": TOMORROW + 2 * H,
             "expected_restoration": TOMORROW + 6 * H}
    for minutes, events in ((1, [ev("P1", "T4", **work)]),
                            (20, [ev("P1", "T4", **work, status="cancelled"),
                                  ev("P2", "T4", **moved)]),
                            (40, [ev("P2", "T4", **moved, status="cancelled")])):
        feed(daemon, minutes, *events)
        while daemon.deliverer.run_once(daemon.clock()):  # told, not taken back unsent
            pass
    texts = {m.purpose: m.body for m in daemon.store.messages()
             if m.recipient.startswith("village:V2") and m.channel == "dingtalk"}
    assert "停电时间：2026-03-02 10:00" in texts["update"]
    assert "原定2026-03-02 10:00起" in texts["cancelled"]
