"""WeCom group robot against a local server that answers like WeCom."""

from __future__ import annotations

import pytest

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.wecom import MARKDOWN_LIMIT, TEXT_LIMIT, WeComChannel
from outage_sentinel.textlimits import utf8_len
from tests.channels.conftest import FakeService, Reply

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


def channel(url: str, timeout: float = 2.0) -> WeComChannel:
    return WeComChannel("wecom-main", robots={"村委群": KEY}, base_url=url, timeout=timeout)


def liaison_msg(**kw: object) -> Message:
    base: dict[str, object] = dict(key="I1/1/liaison:张家村/outage", channel="wecom-main",
                                   target="村委群", text="【故障停电】张家村 10:05 停电",
                                   mentions=("13812341234", "13900001111"))
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def test_text_with_mentions_exact_request(service: FakeService) -> None:
    result = channel(service.url).send(liaison_msg(markdown="**ignored** when mentioning"))
    assert result.outcome is Outcome.DELIVERED
    (req,) = service.requests
    assert req.method == "POST"
    assert req.path == "/cgi-bin/webhook/send"
    assert req.query == {"key": [KEY]}
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.json() == {
        "msgtype": "text",
        "text": {"content": "【故障停电】张家村 10:05 停电",
                 "mentioned_mobile_list": ["13812341234", "13900001111"]},
    }
    # UTF-8 on the wire, not \u escapes (the byte limits count UTF-8).
    assert "张家村".encode() in req.body


def test_markdown_for_command_centre(service: FakeService) -> None:
    msg = liaison_msg(mentions=(), markdown="# 汇总\n> 3 起故障", audience="command_centre")
    channel(service.url).send(msg)
    assert service.requests[0].json() == {"msgtype": "markdown",
                                          "markdown": {"content": "# 汇总\n> 3 起故障"}}


def test_long_texts_trimmed_to_byte_limits(service: FakeService) -> None:
    ch = channel(service.url)
    ch.send(liaison_msg(text="停" * 2000))
    ch.send(liaison_msg(mentions=(), markdown="电" * 3000))
    text = service.requests[0].json()["text"]["content"]
    md = service.requests[1].json()["markdown"]["content"]
    assert utf8_len(text) <= TEXT_LIMIT and text.endswith("…")
    assert utf8_len(md) <= MARKDOWN_LIMIT and md.endswith("…")
    assert utf8_len(text) > TEXT_LIMIT - 6  # trimmed, not truncated wholesale


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        (Reply(200, {"errcode": 0, "errmsg": "ok"}), Outcome.DELIVERED, None),
        (Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}), Outcome.RETRY, 60.0),
        (Reply(200, {"errcode": -1, "errmsg": "system busy"}), Outcome.RETRY, None),
        (Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"}), Outcome.PERMANENT,
         None),
        (Reply(200, {"errcode": 40008, "errmsg": "invalid message type"}), Outcome.PERMANENT,
         None),
        (Reply(200, {"errcode": 99999, "errmsg": "new"}), Outcome.RETRY, None),
        # HTTP 200 alone is not delivery.
        (Reply(200, None, raw=b"<html>gateway</html>"), Outcome.RETRY, None),
        (Reply(200, {"ok": True}), Outcome.RETRY, None),
        (Reply(502, None, raw=b"bad gateway"), Outcome.RETRY, None),
        (Reply(503, {"errcode": 0}, headers={"Retry-After": "30"}), Outcome.RETRY, 30.0),
        (Reply(404, None, raw=b"not found"), Outcome.PERMANENT, None),
    ],
)
def test_outcomes(service: FakeService, reply: Reply, outcome: Outcome,
                  retry_after: float | None) -> None:
    service.reply(reply)
    result = channel(service.url).send(liaison_msg())
    assert result.outcome is outcome, result
    assert result.retry_after == retry_after
    assert KEY not in str(result)


def test_timeout_is_retry(service: FakeService) -> None:
    service.reply(Reply(200, {"errcode": 0}, delay=1.0))
    result = channel(service.url, timeout=0.2).send(liaison_msg())
    assert result.outcome is Outcome.RETRY and "timeout" in result.detail


def test_connection_refused_is_retry(refused_url: str) -> None:
    result = channel(refused_url).send(liaison_msg())
    assert result.outcome is Outcome.RETRY and "refused" in result.detail
    assert KEY not in str(result)


def test_unknown_target_is_permanent_and_names_config_key(service: FakeService) -> None:
    result = channel(service.url).send(liaison_msg(target="别的群"))
    assert result.outcome is Outcome.PERMANENT
    assert "channels.wecom-main.robots" in result.detail
    assert service.requests == []


def test_repr_hides_key() -> None:
    assert KEY not in repr(channel("http://127.0.0.1:9"))
