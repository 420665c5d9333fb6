"""DingTalk custom robot: the signature recomputed independently, @mobiles, error codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.dingtalk import DingTalkChannel
from tests.channels.conftest import FakeService, Reply

TOKEN = "5f3c7e2a9b1d4c6e8f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e"
SECRET = "SECd4f0b6a2c8e4f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9"
NOW = 1_772_323_200.123  # fixed clock


def channel(url: str, secret: str | None = SECRET) -> DingTalkChannel:
    return DingTalkChannel("ding", robots={"grid-7": (TOKEN, secret)}, base_url=url,
                           timeout=2.0, clock=lambda: NOW)


def msg(**kw: object) -> Message:
    base: dict[str, object] = dict(key="I9/2/liaison:李家村/outage", channel="ding",
                                   target="grid-7", text="李家村 停电", mentions=("13812341234",))
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def expected_sign(ts: str) -> str:
    # Written from DingTalk's documented recipe, independent of the implementation.
    string_to_sign = f"{ts}\n{SECRET}"
    mac = hmac.new(SECRET.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_signed_text_request(service: FakeService) -> None:
    service.default = Reply(200, {"errcode": 0, "errmsg": "ok"})
    assert channel(service.url).send(msg()).outcome is Outcome.DELIVERED
    (req,) = service.requests
    assert req.path == "/robot/send"
    ts = req.query["timestamp"][0]
    assert ts == str(int(NOW * 1000))
    # parse_qs decodes once: the value is the raw base64 signature.
    assert req.query["sign"][0] == expected_sign(ts)
    assert req.query["access_token"] == [TOKEN]
    # And on the wire it was URL-encoded exactly once (no raw '+' or '/').
    raw_sign = dict(p.split("=", 1) for p in req.raw_query.split("&"))["sign"]
    assert urllib.parse.unquote(raw_sign) == expected_sign(ts)
    assert "+" not in raw_sign and "/" not in raw_sign
    assert req.json() == {"msgtype": "text", "text": {"content": "李家村 停电"},
                          "at": {"atMobiles": ["13812341234"], "isAtAll": False}}


def test_markdown_mentions_are_in_text(service: FakeService) -> None:
    service.default = Reply(200, {"errcode": 0})
    channel(service.url).send(msg(markdown="### 停电\n李家村", subject="停电通知"))
    body = service.requests[0].json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "停电通知"
    assert body["markdown"]["text"].endswith("@13812341234")
    assert body["at"]["atMobiles"] == ["13812341234"]


def test_unsigned_robot_has_no_sign(service: FakeService) -> None:
    service.default = Reply(200, {"errcode": 0})
    channel(service.url, secret=None).send(msg())
    assert set(service.requests[0].query) == {"access_token"}


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        (Reply(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
         Outcome.RETRY, 600.0),
        (Reply(200, {"errcode": 310000, "errmsg": "keywords not in content"}),
         Outcome.PERMANENT, None),
        (Reply(200, {"errcode": 310000, "errmsg": "sign not match"}), Outcome.PERMANENT, None),
        (Reply(200, {"errcode": 310000, "errmsg": "ip 1.2.3.4 not in whitelist"}),
         Outcome.PERMANENT, None),
        (Reply(200, {"errcode": 300001, "errmsg": "token is not exist"}), Outcome.PERMANENT,
         None),
        (Reply(200, {"errcode": -1, "errmsg": "system busy"}), Outcome.RETRY, None),
        (Reply(500, None, raw=b"oops"), Outcome.RETRY, None),
        (Reply(200, {"errmsg": "ok"}), Outcome.RETRY, None),
    ],
)
def test_outcomes(service: FakeService, reply: Reply, outcome: Outcome,
                  retry_after: float | None) -> None:
    service.reply(reply)
    result = channel(service.url).send(msg())
    assert (result.outcome, result.retry_after) == (outcome, retry_after), result
    assert TOKEN not in str(result) and SECRET not in str(result)


def test_timeout_and_refused(service: FakeService, refused_url: str) -> None:
    service.reply(Reply(200, {"errcode": 0}, delay=1.0))
    slow = DingTalkChannel("ding", robots={"grid-7": (TOKEN, SECRET)}, base_url=service.url,
                           timeout=0.2)
    assert slow.send(msg()).outcome is Outcome.RETRY
    assert channel(refused_url).send(msg()).outcome is Outcome.RETRY
