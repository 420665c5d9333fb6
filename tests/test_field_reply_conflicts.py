"""One keyword reply answers for every area of the village its liaison was told about. "1"
(已来电) while the meters still report several of those areas off is one answer, so the
command centre gets one ``field_conflict`` message naming every disputed area (not one per
area), and the incident's log still names each area. The same whichever way the reply came
(SMS, the DingTalk robot, a Feishu group): all go through ``FieldDesk.take_answer``.

Over the demo bundle and a real store, with the board's reply hooks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.incidents import disputed_areas
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.test_evidence_conflicts import HOOK, meters_dark, record, sms_reply
from tests.test_field import dingtalk_post, sent_all
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)

#: A liaison per channel whose number or group serves that village alone, and 3+ areas.
LIAISONS = {"sms": ("V035", "13800009698"), "dingtalk": ("V022", "傅楼村停电通知群"),
            "feishu": ("V030", "赵店村停电通知群")}
SECRET = "robot-test-key"


def reply(board: Any, client: TestClient, channel: str, target: str, now: datetime) -> None:
    """The liaison replies "1" (已来电) on ``channel`` from ``target``; taken."""
    desk = board.field_desk
    if channel == "sms":
        assert sms_reply(board, client, target, "1", now, 1)["accepted"] == 1
    elif channel == "dingtalk":
        r = dingtalk_post(client, SECRET, {"msgtype": "text", "text": {"content": "1"},
                                           "msgId": "m1", "conversationTitle": target}, now)
        assert r.status_code == 200 and r.json()["text"]["content"] == "已收到：已来电", r.text
    else:
        desk.feishu_chats = {"oc_group1": target}
        event = {"schema": "2.0", "header": {
            "event_id": "ev1", "token": "verify-token-1", "create_time": str(int(
                now.timestamp() * 1000)), "event_type": "im.message.receive_v1"},
            "event": {"message": {"chat_id": "oc_group1", "message_id": "om_1",
                                  "content": json.dumps({"text": "@_user_1 1"})}}}
        r = client.post("/hooks/feishu", content=json.dumps(event).encode(),
                        headers={"Content-Type": "application/json"})
        assert r.json() == {"taken": True}, r.text


def two_dark_by_meters(field_board: Any, channel: str  # noqa: F811
                       ) -> tuple[Any, Store, Any, Topology, str, list[str], str, TestClient]:
    """A village's three areas off in one incident: the first two by their meters, the third
    by an outage-system record alone; the liaison's notice sent on ``channel``."""
    board, store, clock, topology = field_board
    desk = board.field_desk
    desk.sms_token, desk.dingtalk_secret, desk.feishu_token = HOOK, SECRET, "verify-token-1"
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    village, target = LIAISONS[channel]
    areas = list(topology.village_transformers(village)[:3])
    start = clock.now - timedelta(minutes=5)
    record(store, board, clock.now, "oms", "R1", areas[2], start, status="active")
    for area in areas[:2]:
        meters_dark(store, board, clock.now, area, start)
    (row,) = store.load_incidents(open_only=True)
    iid = str(row["id"])
    assert set(areas) <= set(board.actions.core.processor.incident(iid).off)
    sent_all(store, iid, clock.now)
    assert any(m.channel == channel and m.target == target
               for m in store.messages(incident_id=iid) if m.audience == "liaison")
    return board, store, clock, topology, iid, areas, target, client


@pytest.mark.parametrize("channel", ["sms", "dingtalk", "feishu"])
def test_one_reply_for_a_village_is_one_word_to_the_command_centre_naming_every_area(
        field_board: Any, channel: str) -> None:  # noqa: F811
    board, store, clock, topology, iid, areas, target, client = two_dark_by_meters(
        field_board, channel)
    clock.now += timedelta(minutes=10)
    reply(board, client, channel, target, clock.now)
    inc = board.actions.core.processor.incident(iid)
    assert set(disputed_areas(inc)) == set(areas[:2]), "the meters still say off"
    assert areas[2] in inc.restored, "the record alone: the liaison's word brings it back"
    (alert,) = [m for m in store.messages(incident_id=iid) if m.purpose == "field_conflict"]
    assert alert.audience == "command" and "电表仍报停电" in alert.body
    for area in areas[:2]:
        assert topology.nodes[area].name in alert.body
    assert topology.nodes[areas[2]].name not in alert.body
    # The log still names each disputed area, and only those.
    steps = [e for e in store.incident_log(iid) if e["stage"] == "evidence_conflict"]
    assert sorted(t for e in steps for t in e["details"]["transformers"]) == sorted(areas[:2])
    assert all(e["details"]["said"] == "field_back" for e in steps)


def test_still_dark_by_sms_after_a_false_alarm_is_one_question_naming_the_areas(
        field_board: Any) -> None:  # noqa: F811
    """The command centre cancelled the outage; the liaison replies "2" (仍停电) for the
    village: the incident is not reopened, and the command centre is asked to check once,
    every area of the answer named."""
    board, store, clock, topology = field_board
    board.field_desk.sms_token = HOOK
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    village, phone = LIAISONS["sms"]
    areas = list(topology.village_transformers(village)[:3])
    iid = board.actions.open_incident({"transformers": ",".join(areas)}, "operator:x")
    sent_all(store, iid, clock.now)
    clock.now += timedelta(minutes=5)
    board.actions.steps.cancel(iid, "用户内部开关跳闸", "operator:x")
    clock.now += timedelta(minutes=5)
    assert sms_reply(board, client, phone, "2", clock.now, 1)["accepted"] == 1
    assert board.actions.core.processor.incident(iid).status == "cancelled"
    (ask,) = [m for m in store.messages(incident_id=iid) if m.purpose == "field_dark"]
    assert ask.audience == "command" and "用户内部开关跳闸" in ask.body
    for area in areas:
        assert topology.nodes[area].name in ask.body
    # The same reply again (a replay, or the same answer) asks nothing more.
    assert sms_reply(board, client, phone, "2", clock.now, 2)["accepted"] == 1
    assert len([m for m in store.messages(incident_id=iid) if m.purpose == "field_dark"]) == 1
