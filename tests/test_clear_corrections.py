"""The command centre takes back what it set: the fault device (``incidents device --clear``)
and the expected restoration time (``incidents etr --clear``), from the CLI and the board.

Taken back, the fault device gives way to the localiser: the incident is estimated from its
records again, as the processor would fold it now (the planned work in force, the storm), the
villages the new areas add or drop hear what any revision tells them, and the crew sent gets
new orders. The time taken back gives way to the sources' (none when they give none), and the
villages hear their own. Either is refused, saying why, when nothing was set or the incident
is over. The test grid (``tests/conftest.py``): T4 alone off lies under 马集2号熔断器 FU2;
T3 under 马集重合器 R1, whose other areas T1 and T2 (马集村 V1) the localiser then infers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.labels import STAGE_LABELS, label
from outage_sentinel.lifecycle import LifecycleError
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.topology import Topology
from outage_sentinel.triage import STORM_KEY, storm_declaration
from tests.conftest import T0, build_grid
from tests.e2e_helpers import make_config
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_app import post, signed_in
from tests.test_cli import cli
from tests.test_field import crew_token
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)
from tests.test_shared_areas import CHANNELS, Clock, ev, feed, told
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_stand_down import crew_messages, deliver, one_incident

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def messages(d: Daemon, incident_id: str, purpose: str | None = None,
             since: int = 0) -> list[OutboxMessage]:
    return [m for m in d.store.messages(incident_id=incident_id)
            if m.id > since and (purpose is None or m.purpose == purpose)]


def last_id(d: Daemon) -> int:
    return max((m.id for m in d.store.messages()), default=0)


def log_of(d: Daemon, incident_id: str, stage: str) -> list[dict[str, Any]]:
    return [e for e in d.store.incident_log(incident_id) if e["stage"] == stage]


def local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def fault_id(d: Daemon) -> str:
    (iid,) = [r["id"] for r in d.store.load_incidents(open_only=True)
              if Incident.from_json(r["state"]).kind == "fault"]
    return str(iid)


PLANNED = {"kind": "planned", "start": T0, "expected_restoration": T0 + timedelta(hours=1)}


# -- the fault device ---------------------------------------------------------------------------


def test_the_device_taken_back_gives_the_localisers_fault_point_and_the_crew_new_orders(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    localised = daemon.processor.incident(iid)
    assert localised.estimate.devices == ("FU2",) and localised.estimate.probability
    steps.device(iid, "B1", "board:alice", "SCADA: 911 tripped")
    deliver(daemon)
    was = daemon.processor.incident(iid)
    liaisons = len([m for m in messages(daemon, iid) if m.audience == "liaison"])
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.clear_device(iid, "board:alice", "911 was a false trip")
    # The localiser's word again, as it was before the device was set (the same evidence,
    # the same weather); its areas are those the estimate had all along.
    assert (after.device_set, after.device_set_by) == ((), "")
    assert after.estimate.devices == ("FU2",)
    assert after.estimate.probability == pytest.approx(localised.estimate.probability)
    assert after.estimate.transformers == localised.estimate.transformers
    assert (after.revision, after.stage) == (was.revision + 1, was.stage)
    assert daemon.processor.incident(iid).to_json() == after.to_json()  # as written
    deliver(daemon)
    # No village hears of a device; the crew sent gets orders that name the inference.
    assert len([m for m in messages(daemon, iid) if m.audience == "liaison"]) == liaisons
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent")] * 3
    orders = messages(daemon, iid, "dispatch")[-1]
    assert orders.subject.startswith("【抢修派工·更新】") and "（运行人员确认）" not in orders.body
    assert "- 马集2号熔断器（疑似动作" in orders.body
    # the crew hears the command centre's point was taken back, and that this one is inferred
    assert "指挥中心撤销了所设故障点，系统推断故障点为" in orders.body
    assert "已更正故障点" not in orders.body
    (summary,) = messages(daemon, iid, "device_cleared")
    assert summary.subject.startswith("【故障点更正撤销】")
    assert "推断故障点：马集2号熔断器" in summary.body and "运行人员确认" not in summary.body
    (entry,) = log_of(daemon, iid, "device_cleared")
    assert (entry["actor"], entry["note"]) == ("board:alice", "911 was a false trip")
    assert entry["details"] == {"devices": ["B1"], "set_by": "board:alice", "now": ["FU2"],
                                "was": ["B1"], "crew": "CR1"}
    # Later evidence is the localiser's to read: a report of T1 off moves the fault point.
    feed(daemon, 30, ev("N2", "T1"))
    later = daemon.processor.incident(iid)
    assert later.device_set == () and later.estimate.devices != ("FU2",)
    assert not log_of(daemon, iid, "device_set_dropped")  # nothing set to drop


def test_taken_back_a_device_a_record_named_is_given_to_the_crew_as_reported(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """The record names FU2; the command centre sets B1, then takes it back: the crew hears
    FU2 as the records' word, not as an inference (nor as a correction to it)."""
    feed(daemon, 1, ev("N1", "T4", device="FU2"))
    iid = one_incident(daemon)
    deliver(daemon)
    steps.device(iid, "B1", "ops")
    deliver(daemon)
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    steps.clear_device(iid, "ops")
    orders = messages(daemon, iid, "dispatch")[-1]
    assert "指挥中心撤销了所设故障点，停电信息报告的故障点为马集2号熔断器" in orders.body
    assert "推断" not in orders.body.splitlines()[1]


def test_taken_back_the_estimate_leaves_out_what_planned_work_in_force_explains_now(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """T3 is off: R1 infers T1 and T2, and 马集村 is told it may be affected. The command
    centre sets R1; then planned work on T1 and T2 begins, and a storm is declared. Taken
    back, the device gives way to the estimate the processor makes now: R1 with T3 alone
    (the work explains T1 and T2), in a storm. 马集村 is withdrawn quietly (a ``withdrawn``
    line to the command centre; its liaisons hear of the work from the work's incident)."""
    feed(daemon, 1, ev("N1", "T3"))
    iid = one_incident(daemon)
    inferred = daemon.processor.incident(iid)
    assert inferred.estimate.transformers == ("T1", "T2", "T3")
    assert inferred.mark("T1") == inferred.mark("T2") == "inferred"
    assert set(inferred.notified_villages) == {"V1", "V2"}
    steps.device(iid, "R1", "ops")
    feed(daemon, 5, ev("P1", "T1", "T2", **{**PLANNED, "start": T0 + timedelta(minutes=2)}))
    daemon.store.kv_set(STORM_KEY, storm_declaration(True, "ops", daemon.clock()),
                        daemon.clock())
    deliver(daemon)
    assert daemon.processor.incident(iid).estimate.transformers == ("T1", "T2", "T3")
    before = last_id(daemon)
    daemon.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    after = steps.clear_device(iid, "ops")
    assert after.estimate.devices == ("R1",) and after.estimate.probability is not None
    assert after.estimate.transformers == ("T3",) and dict(after.scope) == {"T3": "reported"}
    assert after.estimate.context["storm"] is True  # the weather of now, not of the fold
    assert (after.notified_villages, after.withdrawn_villages) == (("V2",), ("V1",))
    new = messages(daemon, iid, since=before)
    assert not [m for m in new if m.audience == "liaison"]  # a withdrawal tells no liaison
    (summary,) = [m for m in new if m.purpose == "device_cleared"]
    assert "已撤回推断（未通知联络人）：马集村" in summary.body
    (orders,) = [m for m in new if m.purpose == "dispatch"]
    assert "50户" in orders.body and "马集村" not in orders.body


def test_taken_back_a_dropped_village_s_unsent_notices_are_withdrawn(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """As above, but nothing was sent yet when the device is taken back: the "may be
    affected" queued for 马集村 is withdrawn with the inference, not sent after it."""
    feed(daemon, 1, ev("N1", "T3"))
    iid = one_incident(daemon)
    steps.device(iid, "R1", "ops")
    feed(daemon, 5, ev("P1", "T1", "T2", **{**PLANNED, "start": T0 + timedelta(minutes=2)}))
    queued = [m for m in messages(daemon, iid, "outage") if m.payload.get("village") == "V1"]
    assert queued and all(m.status == "pending" for m in queued)
    daemon.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    steps.clear_device(iid, "ops")
    after = {m.id: m.status for m in messages(daemon, iid, "outage")}
    assert all(after[m.id] == "withdrawn" for m in queued)
    deliver(daemon)
    assert not [m for m in messages(daemon, iid, "outage")
                if m.payload.get("village") == "V1" and m.status != "withdrawn"]


def test_taken_back_the_estimate_takes_in_what_planned_work_no_longer_explains(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """Planned work on T1 and T2 is on when T3 goes off: R1, T3 alone. The work ends while
    the command centre's R1 stands. Taken back, the estimate the processor makes now infers
    T1 and T2 again: 马集村 hears it may be affected, and the crew that its outage is wider."""
    feed(daemon, 1, ev("P1", "T1", "T2", **PLANNED))
    feed(daemon, 10, ev("N1", "T3", start=T0 + timedelta(minutes=10),
                        expected_restoration=T0 + timedelta(hours=3)))
    iid = fault_id(daemon)
    assert daemon.processor.incident(iid).estimate.transformers == ("T3",)
    steps.device(iid, "R1", "ops")
    feed(daemon, 60, ev("P1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=60),
                        **PLANNED))
    deliver(daemon)
    assert ("V1", "outage", iid) not in told(daemon)
    daemon.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    after = steps.clear_device(iid, "ops")
    assert after.estimate.transformers == ("T1", "T2", "T3")
    assert after.mark("T1") == after.mark("T2") == "inferred"
    assert set(after.notified_villages) == {"V1", "V2"}
    outage = [m for m in messages(daemon, iid, "outage") if m.payload.get("village") == "V1"]
    assert outage and all(m.revision == after.revision for m in outage)
    assert all("可能受影响：台区T1、台区T2" in m.body for m in outage if m.channel == "wecom")
    orders = messages(daemon, iid, "dispatch")[-1]
    assert orders.revision == after.revision and "马集村" in orders.body


def test_only_a_device_the_command_centre_set_can_be_taken_back_and_while_open(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    revision = daemon.processor.incident(iid).revision
    with pytest.raises(LifecycleError, match=f"{iid} has no fault device set by the command "
                                             "centre: nothing to clear"):
        steps.clear_device(iid, "ops")
    assert daemon.processor.incident(iid).revision == revision
    steps.device(iid, "FU2", "ops")
    steps.cancel(iid, "误报", "ops")
    with pytest.raises(LifecycleError, match="is cancelled; clear the fault device of only "
                                             "an open incident"):
        steps.clear_device(iid, "ops")
    assert daemon.processor.incident(iid).device_set == ("FU2",)
    assert not log_of(daemon, iid, "device_cleared")


# -- the expected restoration time --------------------------------------------------------------


def test_the_etr_taken_back_is_the_sources_again_and_the_villages_hear_it(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4", expected_restoration=T0 + timedelta(hours=3)))
    iid = one_incident(daemon)
    steps.etr(iid, local(T0 + timedelta(hours=5)), "ops")
    deliver(daemon)
    was = daemon.processor.incident(iid)
    assert (was.etr, was.etr_set) == (T0 + timedelta(hours=5),) * 2
    before = last_id(daemon)
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.clear_etr(iid, "ops", "调度未确认")
    assert (after.etr, after.etr_set) == (T0 + timedelta(hours=3), None)
    assert after.revision == was.revision + 1
    new = messages(daemon, iid, since=before)
    updates = [m for m in new if m.purpose == "update"]
    # 刘庄村 (T4 reported) and 王楼村 (T5 inferred under FU2): each told the record's time.
    assert {m.payload["village"] for m in updates} == set(was.notified_villages) == {"V2",
                                                                                       "V3"}
    assert all(f"预计恢复时间调整为：{local(T0 + timedelta(hours=3))}" in m.body
               for m in updates if m.channel in ("dingtalk", "feishu"))
    (summary,) = [m for m in new if m.purpose == "etr_cleared"]
    assert summary.subject.startswith("【预计恢复时间调整撤销】")
    assert f"预计{local(T0 + timedelta(hours=3))}恢复" in summary.body
    (entry,) = log_of(daemon, iid, "etr_cleared")
    assert (entry["actor"], entry["note"]) == ("ops", "调度未确认")
    assert entry["details"] == {"cleared": (T0 + timedelta(hours=5)).isoformat(),
                                "etr": (T0 + timedelta(hours=3)).isoformat()}
    # The sources' time counts again: the outage system moving it moves the incident's.
    feed(daemon, 20, ev("N1", "T4", expected_restoration=T0 + timedelta(hours=4)))
    assert daemon.processor.incident(iid).etr == T0 + timedelta(hours=4)


def test_taken_back_with_no_time_from_the_sources_the_villages_hear_it_is_unknown(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    steps.etr(iid, local(T0 + timedelta(hours=2)), "ops")
    deliver(daemon)
    before = last_id(daemon)
    after = steps.clear_etr(iid, "ops")
    assert (after.etr, after.etr_set) == (None, None)
    updates = [m for m in messages(daemon, iid, "update", since=before)
               if m.channel == "dingtalk"]
    assert updates and all("恢复时间待定" in m.body for m in updates)


def test_only_a_time_the_command_centre_set_can_be_taken_back_and_while_open(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4", expected_restoration=T0 + timedelta(hours=3)))
    iid = one_incident(daemon)
    with pytest.raises(LifecycleError, match="has no expected restoration time set by the "
                                             "command centre: nothing to clear"):
        steps.clear_etr(iid, "ops")
    steps.etr(iid, local(T0 + timedelta(hours=5)), "ops")
    feed(daemon, 30, ev("N1", "T4", expected_restoration=T0 + timedelta(hours=3),
                        status="restored", end=T0 + timedelta(minutes=30)))
    with pytest.raises(LifecycleError, match="is restored; clear the expected restoration "
                                             "time of only an open incident"):
        steps.clear_etr(iid, "ops")
    assert not log_of(daemon, iid, "etr_cleared")


# -- words --------------------------------------------------------------------------------------


def test_the_steps_have_words_in_both_languages(tmp_path: Path, sqlite_url: str) -> None:
    for step in ("device_cleared", "etr_cleared"):
        assert label(STAGE_LABELS, "zh", step) != step != label(STAGE_LABELS, "en", step)
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "database": {"url": sqlite_url},
        "notify": {"language": "en"},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "command"}})
    d = Daemon(config, topology=build_grid(), sources=[], clock=Clock())
    d.start()
    try:
        feed(d, 1, ev("N1", "T4", expected_restoration=T0 + timedelta(hours=3)))
        iid = one_incident(d)
        steps = CommandSteps(d.lifecycle, d.processor, d.clock)
        steps.device(iid, "B1", "ops")
        steps.etr(iid, local(T0 + timedelta(hours=5)), "ops")
        steps.clear_device(iid, "ops")
        steps.clear_etr(iid, "ops")
        heads = {m.purpose: m.subject for m in d.store.messages(incident_id=iid)}
        assert heads["device_cleared"].startswith("[Fault point set taken back]")
        assert heads["etr_cleared"].startswith("[ETR set taken back]")
    finally:
        d.close()


# -- the command line ---------------------------------------------------------------------------


def test_the_command_line_takes_both_back_and_refuses_a_muddled_request(
        tmp_path: Path) -> None:
    cfg = str(make_config(tmp_path))
    r = cli("--config", cfg, "incidents", "open", "--transformers", "T-MJ01-020,T-MJ01-021")
    assert r.returncode == 0, r.stderr
    iid = r.stdout.strip().splitlines()[-1].split(":")[0]
    tomorrow = local(datetime.now(SHANGHAI) + timedelta(days=1))
    for args in (("device", iid, "RC-MJ01-2"), ("etr", iid, tomorrow)):
        r = cli("--config", cfg, "incidents", *args, "--actor", "zhang")
        assert r.returncode == 0, r.stderr
    for args, said in ((("device", iid), "give the device(s), or --clear"),
                       (("device", iid, "RC-MJ01-2", "--clear"), "--clear takes no device"),
                       (("etr", iid), "one of the arguments time --clear is required"),
                       (("etr", iid, tomorrow, "--clear"), "not allowed with argument")):
        r = cli("--config", cfg, "incidents", *args)
        assert r.returncode == 2 and said in r.stderr, (args, r.stderr)
    for verb in ("device", "etr"):
        r = cli("--config", cfg, "incidents", verb, iid, "--clear", "--actor", "zhang",
                "--note", "taken back")
        assert r.returncode == 0, r.stderr
        again = cli("--config", cfg, "incidents", verb, iid, "--clear")
        assert again.returncode == 1 and "nothing to clear" in again.stderr
    shown = json.loads(cli("--config", cfg, "incidents", "show", iid, "--json").stdout)
    assert (shown["device_set"], shown["device_set_by"], shown["etr_set"]) == ([], "", None)
    assert shown["estimate"]["probability"] is not None
    log = cli("--config", cfg, "incidents", "show", iid).stdout
    assert "撤销更正的故障点" in log and "撤销调整的预计恢复时间" in log


# -- the board ----------------------------------------------------------------------------------


def test_the_board_takes_both_back_under_the_rules_of_setting_them(
        board_env: Any, demo: Topology) -> None:  # noqa: F811
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/incidents", {"transformers": ["T-MJ01-020", "T-MJ01-021"]})
    iid = str(r.json()["result"])
    base = f"/api/incidents/{iid}"
    r = post(client, csrf, f"{base}/device", {"clear": True})
    assert (r.status_code, "nothing to clear" in r.text) == (409, True), r.text
    etr = local(clock.now + timedelta(hours=3))
    assert post(client, csrf, f"{base}/device", {"devices": ["RC-MJ01-2"]}).status_code == 200
    assert post(client, csrf, f"{base}/etr", {"time": etr}).status_code == 200
    page = client.get(base).json()
    assert ([d["id"] for d in page["device_set"]], page["etr_set"]) == (["RC-MJ01-2"], etr)
    for path, body, said in ((f"{base}/device", {"clear": True, "devices": ["RC-MJ01-2"]},
                              "devices: none with clear"),
                             (f"{base}/etr", {"clear": True, "time": etr}, "time: none with"),
                             (f"{base}/etr", {"clear": "yes"}, "clear: true or false")):
        r = post(client, csrf, path, body)
        assert (r.status_code, said in r.text) == (400, True), (body, r.text)
    # A viewer may not, and nobody without the CSRF token.
    viewer, viewer_csrf = signed_in(app, "watch")
    assert post(viewer, viewer_csrf, f"{base}/device", {"clear": True}).status_code == 403
    assert client.post(f"{base}/etr", json={"clear": True}).status_code == 403
    clock.now += timedelta(minutes=2)
    for action in ("device", "etr"):
        r = post(client, csrf, f"{base}/{action}", {"clear": True, "note": "taken back"})
        assert r.status_code == 200, r.text
    page = client.get(base).json()
    assert (page["device_set"], page["etr_set"], page["certainty"]["basis"]) == (
        [], None, "inferred")
    steps = {e["stage"]: e for e in page["timeline"]}
    assert steps["device_cleared"]["actor"] == "board:ops"
    assert "RC-MJ01-2" in steps["device_cleared"]["details"]
    assert steps["etr_cleared"]["stage_label"] == "撤销调整的预计恢复时间（按停电信息）"
    # Each kept in the audit trail with what was asked, taken or refused.
    audited = [(a["action"], a["ok"]) for a in store.audit_trail()
               if a["kind"] == "action" and a["target"] == iid and a["actor"] == "ops"
               and '"clear": true' in a["detail"]]
    assert audited[:2] == [("etr", True), ("device", True)] and audited[-1] == ("device", False)


def test_a_crews_time_counts_again_once_the_command_centre_takes_its_own_back(
        field_board: Any) -> None:  # noqa: F811
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-001"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    etr = local(clock.now + timedelta(hours=4))
    board.actions.incident_step(iid, "etr", {"time": etr}, "board:ops")
    r = client.post(f"/c/{token}/step", json={"step": "etr", "time": etr})
    assert r.status_code == 409 and "command centre" in r.text
    board.actions.incident_step(iid, "etr", {"clear": True}, "board:ops")
    later = local(clock.now + timedelta(hours=5))
    r = client.post(f"/c/{token}/step", json={"step": "etr", "time": later})
    assert r.status_code == 200, r.text
    assert local(board.actions.core.processor.incident(iid).etr) == later
