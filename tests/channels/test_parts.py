"""A text over a robot's byte limit goes as consecutive parts, not cut.

A crew's dispatch longer than WeCom's 2048 bytes used to lose its special-care households and
its crew-page link while the board showed the whole text as sent. Now every robot channel with
a limit (WeCom, DingTalk, Feishu) splits at line breaks into numbered parts, each within the
limit; the delivery loop sends them in order under the one outbox message and records each
confirmed part, so a retry sends only the rest. Real local HTTP servers, real stores.
"""

from __future__ import annotations

import json
from datetime import timedelta

from outage_sentinel.channels.base import Message, Splitting
from outage_sentinel.channels.dingtalk import TEXT_LIMIT as DINGTALK_LIMIT
from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.feishu import BODY_LIMIT, FeishuChannel
from outage_sentinel.channels.wecom import MARKDOWN_LIMIT, TEXT_LIMIT, WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import Store
from outage_sentinel.textlimits import utf8_len
from tests.channels.conftest import FakeService, Reply
from tests.conftest import T0
from tests.test_delivery import POLICY, enqueue

LINK = "现场进度（接单 / 到场 / 找到故障 / 恢复送电）：https://board.example.cn/c/Ck7bZiRB2VNq"


def dispatch_text(households: int = 40) -> str:
    lines = ["【抢修派工】INC-20261205-0008 10kV王庄线", "重点关怀用户："]
    lines += [f"- 用户{i:02d}（生命支持设备用户、独居老人）139000{i:05d}，王庄村{i % 7}号台区"
              for i in range(households)]
    return "\n".join([*lines, "（第1版）", LINK])


def dispatch(text: str) -> OutboxMessage:
    return OutboxMessage(
        incident_id="INC-20261205-0008", revision=1, recipient="crew:CR04", purpose="dispatch",
        channel="wecom", target="crew-group", audience="crew", subject=text.splitlines()[0],
        body=text, payload={"mentions": ["13900000001"], "params": {}})


def wecom(service: FakeService) -> WeComChannel:
    return WeComChannel("wecom", robots={"crew-group": "key-crew-0123456789abcdef"},
                        base_url=service.url, timeout=5)


def contents(service: FakeService) -> list[str]:
    return [str(r.json()["text"]["content"]) for r in service.requests]


def joined(parts: list[str]) -> str:
    """The parts' texts without their " (i/n)" markers and the heading each part after the
    first repeats, glued back at the cuts."""
    texts = [p.rsplit(" (", 1)[0] for p in parts]
    return "\n".join([texts[0], *(t.split("\n", 1)[1] for t in texts[1:])])


def test_a_long_dispatch_arrives_whole_in_numbered_parts(store: Store,
                                                          service: FakeService) -> None:
    text = dispatch_text()
    assert utf8_len(text) > TEXT_LIMIT
    enqueue(store, dispatch(text))
    d = Deliverer(store, {"wecom": wecom(service)}, POLICY, Metrics(), rand=lambda: 0.5)
    d.run_once(T0)
    got = contents(service)
    assert len(got) == 2 and all(utf8_len(p) <= TEXT_LIMIT for p in got)
    assert got[0].endswith(" (1/2)") and got[1].endswith(" (2/2)")
    assert joined(got) == text  # cut between lines: every household and the link arrive
    assert all(r.json()["text"]["mentioned_mobile_list"] == ["13900000001"]
               for r in service.requests)
    (m,) = store.messages()
    assert (m.status, m.payload["parts_sent"], m.payload["parts"]) == ("sent", 2, 2)
    assert m.last_error == "ok; in 2 parts"


def test_a_retry_sends_only_the_parts_not_yet_delivered(store: Store,
                                                        service: FakeService) -> None:
    enqueue(store, dispatch(dispatch_text(60)))
    service.reply(Reply(200, {"errcode": 0, "errmsg": "ok"}),
                  Reply(200, {"errcode": -1, "errmsg": "system busy"}))
    d = Deliverer(store, {"wecom": wecom(service)}, POLICY, Metrics(), rand=lambda: 0.5)
    d.run_once(T0)
    (m,) = store.messages()
    assert (m.status, m.payload["parts_sent"]) == ("pending", 1)
    assert m.last_error is not None and m.last_error.startswith("part 2/3: errcode -1")
    # A new process (the progress is in the store, not in memory) finishes the message.
    Deliverer(store, {"wecom": wecom(service)}, POLICY, Metrics(),
              rand=lambda: 0.5).run_once(T0 + timedelta(minutes=5))
    markers = [c.rsplit(" ", 1)[1] for c in contents(service)]
    assert markers == ["(1/3)", "(2/3)", "(2/3)", "(3/3)"]  # part 1 never twice
    assert store.messages()[0].status == "sent"


def test_wecom_markdown_splits_at_its_own_limit() -> None:
    md = "\n".join(f"- **第{i}村** 停电 120户，预计 12:00 恢复" for i in range(200))
    ch = WeComChannel("wecom", robots={"cc": "key-cc-0123456789abcdef"})
    parts = ch.parts(Message(key="k", channel="wecom", target="cc", text=md, markdown=md))
    assert len(parts) > 1 and isinstance(ch, Splitting)
    for p in parts:
        content = ch.build_payload(p)["markdown"]["content"]
        assert content == p.markdown and utf8_len(content) <= MARKDOWN_LIMIT


def test_dingtalk_and_feishu_split_instead_of_trimming() -> None:
    long = "\n".join(f"第{i:04d}户 生命支持设备用户 13900001234 王庄村3号台区" for i in range(600))
    ding = DingTalkChannel("ding", robots={"g": ("token-0123456789", None)})
    for markdown in (None, long):
        msg = Message(key="k", channel="ding", target="g", text=long, markdown=markdown,
                      mentions=("13800000001",))
        parts = ding.parts(msg)
        assert len(parts) > 1
        bodies = [ding.build_payload(p) for p in parts]
        texts = [b["markdown"]["text"] if markdown else b["text"]["content"] for b in bodies]
        assert all(utf8_len(t) <= DINGTALK_LIMIT and "…" not in t for t in texts)
        assert joined([t.split("\n\n@")[0] for t in texts]) == long
    lark = FeishuChannel("lark", robots={"g": ("hook-0123456789", "secret-0123456789")})
    parts = lark.parts(Message(key="k", channel="lark", target="g", text=long * 2))
    assert len(parts) > 1
    for p in parts:
        body = lark.build_payload(p, {"timestamp": "1", "sign": "x"})
        assert body["content"]["text"] == p.text  # not trimmed
        assert utf8_len(json.dumps(body, ensure_ascii=False, separators=(",", ":"))) \
            <= BODY_LIMIT
