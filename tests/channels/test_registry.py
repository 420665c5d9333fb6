"""Building channels from config: defaults, rate limits, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.channels.base import Channel, ChannelError, Message
from outage_sentinel.channels.common import robot_rate_key
from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.feishu import FeishuChannel
from outage_sentinel.channels.file import FileChannel
from outage_sentinel.channels.registry import build_channels, rate_keys_of, rate_limits_of
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.config import parse_config
from outage_sentinel.ratelimit import RateLimit


def config(channels: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    data = {"sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
            "channels": channels}
    return parse_config(data, env=env or {}).channels


FULL = {
    "wx": {"type": "wecom", "robots": {"g1": {"key": "${WX_KEY}"}}},
    "dd": {"type": "dingtalk", "robots": {"g1": {"key": "tok", "secret": "SECxyz"}}},
    "fs": {"type": "feishu", "per_minute": 50, "robots": {"ops": {"key": "hook"}}},
    "sms": {"type": "sms", "access_key_id": "id", "access_key_secret": "${SMS_SECRET}",
            "sign_name": "供电", "template_code": "SMS_1", "per_number_per_day": 10},
    "mail": {"type": "email", "host": "smtp.example.cn", "sender": "s@example.cn"},
    "hook": {"type": "webhook", "url": "https://hooks.example.cn/{target}"},
    "file": {"type": "file", "path": "/tmp/x.jsonl"},
    "con": {"type": "console"},
    "off": {"type": "console", "enabled": False},
}


def test_builds_every_type_with_default_limits() -> None:
    chans = build_channels(config(FULL, {"WX_KEY": "k-1234", "SMS_SECRET": "s-5678"}))
    assert set(chans) == set(FULL) - {"off"}
    assert all(isinstance(c, Channel) for c in chans.values())
    assert isinstance(chans["wx"], WeComChannel) and isinstance(chans["dd"], DingTalkChannel)
    assert isinstance(chans["fs"], FeishuChannel) and isinstance(chans["sms"], SmsChannel)
    assert rate_limits_of(chans["wx"])[0].max_requests == 20
    assert rate_limits_of(chans["dd"])[0].max_requests == 20
    assert {lim.max_requests for lim in rate_limits_of(chans["fs"])} == {50, 5}
    assert rate_limits_of(chans["sms"]) == (RateLimit(10, 86400.0),)
    assert rate_limits_of(chans["con"]) == ()
    m = Message(key="k", channel="sms", target="13812341234", text="")
    assert rate_keys_of(chans["sms"], m) == ("sms/13812341234/SMS_1",)
    assert rate_keys_of(chans["wx"], Message(key="k", channel="wx", target="g1", text="")) == (
        f"wx/{robot_rate_key('k-1234')}",)
    # Config secrets never show in a repr.
    assert all("k-1234" not in repr(c) and "s-5678" not in repr(c) for c in chans.values())


@pytest.mark.parametrize(
    ("channels", "needle"),
    [
        ({"wx": {"type": "wecom", "robots": {}}}, "channels.wx.robots:"),
        ({"wx": {"type": "wecom", "robots": {"g1": {"key": " "}}}}, "channels.wx.robots.g1.key"),
        ({"wx": {"type": "wecom", "robots": {"g1": {"key": "k", "secret": "s"}}}},
         "channels.wx.robots.g1.secret"),
        ({"dd": {"type": "dingtalk", "base_url": "ftp://x", "robots": {"g": {"key": "k"}}}},
         "channels.dd.base_url"),
        ({"sms": {"type": "sms", "access_key_id": "", "access_key_secret": "s", "sign_name": "x",
                  "template_code": "T"}}, "channels.sms.access_key_id"),
        ({"m": {"type": "email", "host": "h", "sender": "nobody"}}, "channels.m.sender"),
        ({"m": {"type": "email", "host": "h", "sender": "a@b.cn", "security": "none",
                "username": "u", "password": "p"}}, "channels.m.security"),
    ],
)
def test_bad_configs_name_the_key(channels: dict[str, Any], needle: str) -> None:
    with pytest.raises(ChannelError) as info:
        build_channels(config(channels))
    assert needle in str(info.value)


def test_file_path_is_kept(tmp_path: Path) -> None:
    chans = build_channels(config({"f": {"type": "file", "path": str(tmp_path / "a.jsonl")}}))
    file_channel = chans["f"]
    assert isinstance(file_channel, FileChannel)
    assert file_channel.path == tmp_path / "a.jsonl"
