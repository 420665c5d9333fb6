"""A secret never appears in logs, results or reprs — even when the server echoes it back.

Every channel that holds a secret is built from config (as the daemon does) and pointed at a
hostile local server that quotes the whole request — URL, query and body — in its error reply,
then at a refused port and a server too slow to answer. The captured structlog output and the
``str()`` of every result must not contain any secret; phone numbers must be masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.registry import build_channels
from outage_sentinel.config import parse_config
from tests.channels.conftest import FakeService, Reply

SECRETS = {
    "WX_KEY": "wxkey-1f2e3d4c-5b6a-7988-aabb-ccddeeff0011",
    "DD_TOKEN": "ddtoken9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    "DD_SECRET": "SECdd0123456789abcdef0123456789abcdef",
    "FS_HOOK": "fshook-aa11bb22-cc33-dd44-ee55-ff6677889900",
    "FS_SECRET": "fsSecretQWERTYuiop1234",
    "SMS_ID": "LTAI5tSecretKeyIdZZ9",
    "SMS_SECRET": "smsSecretValueXYZ0987654321",
    "HOOK_TOKEN": "Bearer hooktoken-5566778899aabbcc",
    "MAIL_PASSWORD": "mailPassw0rd-Secret!",
}
PHONE = "13812341234"


def channels_config(url: str) -> dict[str, Any]:
    return {
        "wx": {"type": "wecom", "base_url": url, "robots": {"g": {"key": "${WX_KEY}"}}},
        "dd": {"type": "dingtalk", "base_url": url,
               "robots": {"g": {"key": "${DD_TOKEN}", "secret": "${DD_SECRET}"}}},
        "fs": {"type": "feishu", "base_url": url,
               "robots": {"g": {"key": "${FS_HOOK}", "secret": "${FS_SECRET}"}}},
        "sms": {"type": "sms", "endpoint": url + "/", "access_key_id": "${SMS_ID}",
                "access_key_secret": "${SMS_SECRET}", "sign_name": "供电",
                "template_code": "SMS_1"},
        "hook": {"type": "webhook", "url": url + "/n/{target}",
                 "headers": {"Authorization": "${HOOK_TOKEN}"}, "timeout_seconds": 1},
        "mail": {"type": "email", "host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1]),
                 "security": "ssl", "username": "ops", "password": "${MAIL_PASSWORD}",
                 "sender": "s@example.cn", "timeout_seconds": 1},
    }


def build(url: str, timeout: float | None = None) -> dict[str, Any]:
    cfg = channels_config(url)
    if timeout is not None:
        for c in cfg.values():
            c["timeout_seconds"] = timeout
    data = {"sources": [{"name": "d", "type": "replay", "scenario": "s.jsonl"}],
            "channels": cfg}
    return build_channels(parse_config(data, env=SECRETS).channels)


def message(channel: str) -> Message:
    return Message(key=f"I1/1/liaison:{PHONE}/outage", channel=channel,
                   target="g" if channel in ("wx", "dd", "fs") else
                   ("ops@example.cn" if channel == "mail" else PHONE),
                   text=f"停电，联系 {PHONE}", mentions=(PHONE,))


def assert_clean(texts: list[str]) -> None:
    blob = "\n".join(texts)
    for name, secret in SECRETS.items():
        assert secret not in blob, f"{name} leaked"
        assert secret.split(" ")[-1] not in blob, f"{name} leaked"
    assert PHONE not in blob, "unmasked phone number"


def run_all(channels: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    with capture_logs() as logs:
        for name, ch in channels.items():
            result = ch.send(message(name))
            assert result.outcome is not Outcome.DELIVERED, (name, result)
            texts += [str(result), repr(result), repr(ch)]
    texts += [json.dumps(entry, default=str, ensure_ascii=False) for entry in logs]
    assert logs, "expected one log line per attempt"
    return texts


@pytest.fixture
def echo(service: FakeService) -> Iterator[FakeService]:
    """A server whose replies quote the request it got (URL with query, headers, body)."""
    import http.server

    handler_cls = service.server.RequestHandlerClass
    original = handler_cls._handle  # type: ignore[attr-defined]

    def quoting(self: http.server.BaseHTTPRequestHandler) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        quoted = (f"bad request {self.path} auth={self.headers.get('Authorization')} "
                  f"body={body.decode('utf-8', 'replace')}")
        status = 500 if "/n/" in self.path or self.path == "/" else 200
        payload = json.dumps({"errcode": 93000, "errmsg": quoted, "code": 19021,
                              "msg": quoted, "Code": "SignatureDoesNotMatch",
                              "Message": quoted}, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    handler_cls._handle = quoting  # type: ignore[attr-defined]
    yield service
    handler_cls._handle = original  # type: ignore[attr-defined]


def test_no_secret_in_logs_or_results_when_server_echoes(echo: FakeService) -> None:
    texts = run_all(build(echo.url))
    assert_clean(texts)
    # The echo did reach the details (redacted), so the test exercised the hostile path.
    assert any("bad request" in t and "***" in t for t in texts)


def test_no_secret_when_connection_refused(refused_url: str) -> None:
    assert_clean(run_all(build(refused_url)))


def test_no_secret_on_timeout(service: FakeService) -> None:
    service.default = Reply(200, {"errcode": 0, "code": 0, "Code": "OK"}, delay=0.5)
    assert_clean(run_all(build(service.url, timeout=0.1)))
