"""DingTalk (钉钉) custom robot, signed.

Wire format: ``POST {base}/robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN`` where
``SIGN = urlencode(base64(HMAC-SHA256(secret, "{MS}\\n{secret}")))`` (DESIGN §4). The body is
``{"msgtype": "text", "text": {"content"}, "at": {"atMobiles": [...], "isAtAll": false}}`` or
``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {...}}``; in markdown the
``@138...`` tokens must also appear in the text for the mention to render, so they are appended.

Verdict in ``errcode`` of an HTTP-200 body. 130101 ("send too fast") means the robot is now
blocked for ten minutes, so the retry hint is 600 s — retrying sooner only extends the block.
310000 covers keyword, signature and IP whitelist failures: configuration problems no retry
can fix. A robot without a secret (keyword security only) is sent unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote, quote_plus

from outage_sentinel.channels.base import Message, SendResult
from outage_sentinel.channels.common import (
    HttpReply,
    SignedRobotChannel,
    classify_code,
    http_attempt,
    http_status_result,
    no_verdict,
    permanent,
    split_message,
    unconfirmed,
)
from outage_sentinel.textlimits import trim_bytes

DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
#: DingTalk documents 20000 bytes for text content; markdown likewise.
TEXT_LIMIT = 20000
BLOCK_SECONDS = 600.0

_RETRY_CODES: dict[int, float | None] = {130101: BLOCK_SECONDS, 410100: BLOCK_SECONDS, -1: None}
#: The retry codes that block the robot itself (ten minutes), not only the message.
_RATE_CODES = frozenset({130101, 410100})
_PERMANENT_CODES: dict[int, str] = {
    310000: "keyword, signature or IP whitelist check failed",
    300001: "access token does not exist",
    300005: "access token does not exist",
    400013: "group disabled",
    400101: "access token does not exist",
    400102: "robot disabled",
    400105: "unsupported message type",
    400106: "robot does not exist",
    40035: "missing parameter",
}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value (already URL-encoded, as DingTalk's own sample does)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def classify_dingtalk(body: Any) -> SendResult:
    if not isinstance(body, dict) or "errcode" not in body:
        return unconfirmed("no errcode in reply; delivery unconfirmed")
    return classify_code(body["errcode"], str(body.get("errmsg", ""))[:200], _RETRY_CODES,
                         _PERMANENT_CODES, rate_codes=_RATE_CODES)


class DingTalkChannel(SignedRobotChannel):
    """Sends to DingTalk custom robots, one robot (token + optional secret) per target."""

    type = "dingtalk"
    #: Far below the 20000-byte limit: a digest is read on a phone.
    digest_limit_bytes = 4096

    def __init__(self, name: str, *, robots: dict[str, tuple[str, str | None]],
                 base_url: str = DEFAULT_BASE_URL, **kwargs: Any) -> None:
        super().__init__(name, robots=robots, base_url=base_url, **kwargs)

    def parts(self, message: Message) -> tuple[Message, ...]:
        """``message`` split to DingTalk's limit (a markdown part leaves room for the @tail)."""
        if message.markdown:
            tail = 2 + sum(len(f" @{m}".encode()) for m in dict.fromkeys(message.mentions))
            return split_message(message, TEXT_LIMIT - tail, markdown=True)
        return split_message(message, TEXT_LIMIT, markdown=False)

    def build_payload(self, message: Message) -> dict[str, Any]:
        mobiles = list(dict.fromkeys(message.mentions))
        at = {"atMobiles": mobiles, "isAtAll": False}
        if message.markdown:
            tail = ("\n\n" + " ".join(f"@{m}" for m in mobiles)) if mobiles else ""
            body = trim_bytes(message.markdown, TEXT_LIMIT - len(tail.encode())) + tail
            title = message.subject or message.text.strip().split("\n", 1)[0][:30] or "通知"
            return {"msgtype": "markdown", "markdown": {"title": title, "text": body}, "at": at}
        return {"msgtype": "text", "text": {"content": trim_bytes(message.text, TEXT_LIMIT)},
                "at": at}

    def _send(self, message: Message) -> SendResult:
        robot = self._robots.get(message.target)
        if robot is None:
            return permanent(f"no robot configured for target {message.target!r} "
                             f"(channels.{self.name}.robots)")
        token, secret = robot
        url = f"{self._base}/robot/send?access_token={quote(token, safe='')}"
        if secret:
            ts = int(self._clock() * 1000)
            url += f"&timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
        reply = http_attempt(self._session, "POST", url, timeout=self.timeout,
                             redact=self._redact, json_body=self.build_payload(message))
        if not isinstance(reply, HttpReply):
            return reply
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        if not isinstance(reply.body, dict) or "errcode" not in reply.body:
            return no_verdict(reply, "errcode", self._redact)
        return classify_dingtalk(reply.body)
