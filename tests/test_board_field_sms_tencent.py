"""Tencent Cloud SMS replies (its uplink callback) at ``/hooks/sms/<token>/tencent``: one JSON
object per reply (``mobile``, ``nationcode``, ``text``, ``sign``, ``time`` in unix seconds,
``extend``), answered ``{"result": 0, "errmsg": "OK"}``. A keyword reply answers for the
village the number was last told about on an SMS channel, as an Aliyun reply does; a body of
the wrong shape is refused naming the key — over a real store (SQLite and PostgreSQL) and the
demo bundle with some liaisons moved to a Tencent channel ``tx``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import CommandCentreConfig, FieldConfig, load_config, parse_config
from outage_sentinel.store import Store
from outage_sentinel.topology import load_bundle
from tests.test_check_routing import copy_bundle, rows, write_rows
from tests.test_field import ROOT, Clock, sent_all
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)
from tests.test_tencent_sms_wiring import sms_channel

TOKEN = "hook-secret-123"
HOOK = f"/hooks/sms/{TOKEN}/tencent"
OK = {"result": 0, "errmsg": "OK"}
#: 魏云 (V004) is written with +86 in liaisons.csv, 唐云立 (V003) as the 11 digits.
MOVED = {("V004", "魏云"): "+86{}", ("V003", "唐云立"): "{}"}


@pytest.fixture
def tencent_board(store: Store, tmp_path: Path) -> tuple[Any, Store, Clock, Any]:
    """The demo board with two SMS liaisons on the Tencent channel ``tx``."""
    bundle = copy_bundle(tmp_path)
    liaisons = rows(bundle / "liaisons.csv")
    for r in liaisons:
        form = MOVED.get((r["village"], r["name"]))
        if form is not None:
            r["channel"], r["target"] = "tx", form.format(r["phone"])
    write_rows(bundle / "liaisons.csv", liaisons)
    topology = load_bundle(bundle)
    tx = parse_config({"sources": [{"name": "x", "type": "replay", "scenario": "s.jsonl"}],
                       "channels": {"tx": sms_channel("tencent_sms")}}).channels["tx"]
    base = load_config(ROOT / "config.yaml")
    config = base.model_copy(update={
        "state_dir": tmp_path, "channels": {**base.channels, "tx": tx},
        "field": FieldConfig(base_url="http://board.example.cn:8088"),
        "command_centre": CommandCentreConfig(channel="wecom")})
    clock = Clock()
    board = build(config, store, lambda: topology, clock)
    board.field_desk.sms_token = TOKEN
    return board, store, clock, topology


def push(li: Any, text: str, at: Any, **over: Any) -> dict[str, Any]:
    """Tencent's reply push from liaison ``li``'s phone, sent at ``at``."""
    return {"extend": "", "mobile": li.phone, "nationcode": "86", "sign": "某县供电公司",
            "text": text, "time": int(at.timestamp()), **over}


@pytest.mark.parametrize("who", sorted(MOVED), ids=["plus86", "digits"])
def test_a_tencent_reply_answers_for_the_village_the_number_was_told_about(
        tencent_board: Any, who: tuple[str, str]) -> None:
    board, store, clock, topology = tencent_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    li = next(x for x in topology.liaisons if (x.village, x.name) == who)
    area = topology.village_transformers(li.village)[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    sent_all(store, iid, clock.now)
    notice = next(m for m in store.messages(incident_id=iid)
                  if m.channel == "tx" and m.target == li.target)
    assert notice.status == "sent"
    processor = board.actions.core.processor
    clock.now += timedelta(minutes=10)
    processor.operator_restore(iid, "operator:x", area, None, "", now=clock.now)
    clock.now += timedelta(minutes=5)
    reply = push(li, "2", clock.now)
    assert client.post("/hooks/sms/wrong/tencent", json=reply).json() == \
        {"result": 1, "errmsg": "unknown webhook"}
    r = client.post(HOOK, json=reply)
    assert (r.status_code, r.json()) == (200, OK)
    off = {t for row in store.load_incidents(open_only=True)
           for t in processor.incident(row["id"]).off}
    assert area in off, "still dark, said the liaison by a Tencent SMS"
    answers = store.answers(iid)
    assert area in {a["area"] for a in answers}
    assert {(a["answer"], a["note"]) for a in answers} == {("dark", "tx 回复")}
    # the same push again (Tencent retrying) is answered OK and taken once
    clock.now += timedelta(minutes=1)
    assert client.post(HOOK, json=reply).json() == OK
    assert store.answers(iid) == answers


def test_a_stale_reply_or_no_keyword_is_answered_ok_and_not_taken(tencent_board: Any) -> None:
    board, store, clock, topology = tencent_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    li = next(x for x in topology.liaisons if x.channel == "tx")
    area = topology.village_transformers(li.village)[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    sent_all(store, iid, clock.now)
    clock.now += timedelta(minutes=5)
    for reply in (push(li, "1", clock.now - timedelta(hours=2)), push(li, "好的", clock.now),
                  push(li, "1", clock.now, mobile="13000000000")):
        assert client.post(HOOK, json=reply).json() == OK
    assert store.answers(iid) == []
    assert area in board.actions.core.processor.incident(iid).off


@pytest.mark.parametrize(("body", "error"), [
    ({"nationcode": "86", "text": "1", "time": 1}, "mobile: missing"),
    ({"mobile": "138", "nationcode": "86", "text": "1", "time": 1},
     "mobile: a mobile number (5 to 15 digits) expected"),
    ({"mobile": ["13812341234"], "nationcode": "86", "text": "1", "time": 1},
     "mobile: a mobile number (5 to 15 digits) expected, got list"),
    ({"mobile": "13812341234", "text": "1", "time": 1}, "nationcode: missing"),
    ({"mobile": "13812341234", "nationcode": "CN", "text": "1", "time": 1},
     "nationcode: a country code (1 to 4 digits, e.g. 86) expected"),
    ({"mobile": "13812341234", "nationcode": "86", "time": 1}, "text: missing"),
    ({"mobile": "13812341234", "nationcode": "86", "text": {"t": 1}, "time": 1},
     "text: text expected, got dict"),
    ({"mobile": "13812341234", "nationcode": "86", "text": "1"}, "time: missing"),
    ({"mobile": "13812341234", "nationcode": "86", "text": "1", "time": "yesterday"},
     "time: unix seconds expected, got str"),
    ({"mobile": "13812341234", "nationcode": "86", "text": "1", "time": 1e300},
     "time: 1e+300 is no time (unix seconds expected)"),
    ([{"mobile": "13812341234", "nationcode": "86", "text": "1", "time": 1}],
     "the body must be a JSON object, not a list"),
    ("1", "the body must be a JSON object with mobile, nationcode, text, time"),
])
def test_a_tencent_push_of_the_wrong_shape_is_refused_naming_the_key(
        field_board: Any, body: Any, error: str) -> None:  # noqa: F811 - the fixture
    board, *_ = field_board
    board.field_desk.sms_token = TOKEN
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    r = client.post(HOOK, json=body)
    assert r.status_code == 400 and r.json()["result"] == 1, r.text
    assert r.json()["errmsg"].startswith(error), r.json()
    assert "13812341234" not in r.text


def test_what_the_database_cannot_store_and_what_is_no_json_are_refused(
        field_board: Any) -> None:  # noqa: F811 - the fixture
    board, *_ = field_board
    board.field_desk.sms_token = TOKEN
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    r = client.post(HOOK, content=b'{"mobile": "13812341234", "nationcode": "86", '
                                   b'"text": "\\ud83d", "time": 1}')
    assert (r.status_code, r.json()["errmsg"]) == (
        400, "text: contains a character the database cannot store (NUL or a lone surrogate)")
    r = client.post(HOOK, content=b"{")
    assert (r.status_code, r.json()) == (400, {"result": 1, "errmsg": "the body must be JSON"})


def test_each_provider_is_answered_its_own_way_at_its_own_path(
        field_board: Any) -> None:  # noqa: F811 - the fixture
    """Aliyun's push stays at ``/hooks/sms/<token>`` with Aliyun's answer; Tencent's pushed
    there by mistake is refused naming the path it belongs at; an unknown provider is 404."""
    board, _store, clock, _ = field_board
    board.field_desk.sms_token = TOKEN
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    aliyun = client.post(f"/hooks/sms/{TOKEN}", json=[{"phone_number": "13812341234",
                                                       "content": "好的", "sequence_id": 1}])
    assert aliyun.json() == {"code": 0, "msg": "ok", "accepted": 0, "ignored": 1}
    misplaced = client.post(f"/hooks/sms/{TOKEN}", json=push(
        type("Li", (), {"phone": "13812341234"})(), "1", clock.now))
    assert misplaced.status_code == 400 and "/hooks/sms/<token>/tencent" in \
        misplaced.json()["msg"]
    assert client.post(f"/hooks/sms/{TOKEN}/huawei", json={}).status_code == 404
    for wrong in ("/hooks/sms/密钥/tencent", "/hooks/sms/密钥"):  # not ASCII: still just 404
        assert client.post(wrong, json={}).status_code == 404
    assert client.post(f"/hooks/sms/{TOKEN}/aliyun", json=[]).json()["code"] == 0
