"""Feishu custom bot: signature recomputed independently, 20 KB body limit, error codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.feishu import BODY_LIMIT, FeishuChannel
from tests.channels.conftest import FakeService, Reply

HOOK = "0b8e3c1a-7d2f-4e6a-9c5b-1f2e3d4c5b6a"
SECRET = "qVbGx3sLpM2nT8wZ1yR5kD"
NOW = 1_772_323_200.9


def channel(url: str) -> FeishuChannel:
    return FeishuChannel("lark", robots={"ops": (HOOK, SECRET)}, base_url=url, timeout=2.0,
                         clock=lambda: NOW)


def msg(**kw: object) -> Message:
    base: dict[str, object] = dict(key="I3/1/cc/summary", channel="lark", target="ops",
                                   text="3 起故障", audience="command_centre")
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def expected_sign(ts: str) -> str:
    # Feishu's recipe: the string "{timestamp}\n{secret}" is the HMAC *key*; the message is empty.
    key = f"{ts}\n{SECRET}".encode()
    return base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()


def test_signed_text_request(service: FakeService) -> None:
    service.default = Reply(200, {"code": 0, "msg": "success", "data": {}})
    assert channel(service.url).send(msg()).outcome is Outcome.DELIVERED
    (req,) = service.requests
    assert req.path == f"/open-apis/bot/v2/hook/{HOOK}"
    body = req.json()
    assert body["timestamp"] == str(int(NOW))
    assert body["sign"] == expected_sign(body["timestamp"])
    assert body["msg_type"] == "text" and body["content"] == {"text": "3 起故障"}


def test_markdown_card_and_at_ids(service: FakeService) -> None:
    service.default = Reply(200, {"code": 0})
    channel(service.url).send(msg(markdown="**3** 起", subject="汇总",
                                  mentions=("ou_abc", "13812341234")))
    card = service.requests[0].json()["card"]
    assert card["header"]["title"]["content"] == "汇总"
    content = card["elements"][0]["content"]
    # A card's markdown reads <at id=...>; the text message's user_id form shows there as text.
    assert content == "**3** 起<at id=ou_abc></at>"  # phones can't be @-ed on Feishu


def test_text_message_at_ids_and_all(service: FakeService) -> None:
    service.default = Reply(200, {"code": 0})
    channel(service.url).send(msg(text="3 起故障", mentions=("ou_abc", "all", "ou_abc")))
    text = service.requests[0].json()["content"]["text"]
    assert text == '3 起故障<at user_id="ou_abc"></at><at user_id="all"></at>'


def test_body_stays_under_20kb(service: FakeService) -> None:
    service.default = Reply(200, {"code": 0})
    channel(service.url).send(msg(text='停电"\n' * 8000))
    req = service.requests[0]
    assert len(req.body) <= BODY_LIMIT
    assert json.loads(req.body)["content"]["text"].endswith("…")


def test_legacy_status_code_reply(service: FakeService) -> None:
    service.reply(Reply(200, {"Extra": None, "StatusCode": 0, "StatusMessage": "success"}))
    assert channel(service.url).send(msg()).outcome is Outcome.DELIVERED


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        (Reply(200, {"code": 11232, "msg": "frequency limited psm"}), Outcome.RETRY, 60.0),
        (Reply(400, {"code": 19021, "msg": "sign match fail or timestamp is not within one "
                                           "hour from current time"}), Outcome.PERMANENT, None),
        (Reply(400, {"code": 19024, "msg": "Key Words Not Found"}), Outcome.PERMANENT, None),
        (Reply(400, {"code": 19022, "msg": "Ip Not Allowed"}), Outcome.PERMANENT, None),
        (Reply(200, {"code": 0}), Outcome.DELIVERED, None),
        (Reply(503, None, raw=b"busy", headers={"Retry-After": "7"}), Outcome.RETRY, 7.0),
        (Reply(200, {"data": {}}), Outcome.RETRY, None),
    ],
)
def test_outcomes(service: FakeService, reply: Reply, outcome: Outcome,
                  retry_after: float | None) -> None:
    service.reply(reply)
    result = channel(service.url).send(msg())
    assert (result.outcome, result.retry_after) == (outcome, retry_after), result
    assert HOOK not in str(result) and SECRET not in str(result)


def test_refused(refused_url: str) -> None:
    result = channel(refused_url).send(msg())
    assert result.outcome is Outcome.RETRY
    assert HOOK not in result.detail
