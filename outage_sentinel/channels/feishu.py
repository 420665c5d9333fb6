"""Feishu (飞书) custom bot, signed.

Wire format: ``POST {base}/open-apis/bot/v2/hook/{token}`` with JSON
``{"timestamp": "S", "sign": SIGN, "msg_type": "text", "content": {"text": ...}}`` where
``SIGN = base64(HMAC-SHA256(key="{S}\\n{secret}", msg=""))`` (DESIGN §4; note the secret is in
the *key*, unlike DingTalk). Markdown bodies go as an ``interactive`` card with a markdown
element, which is how Feishu renders lark-markdown from a bot.

Verdict: ``code == 0`` (older deployments answer ``StatusCode == 0``). Feishu answers some
errors with HTTP 400 *and* a JSON ``code``, so the body is read before the HTTP status.
The whole request body must stay under 20 KB: a longer text is split into parts of at most
16 KB (:meth:`FeishuChannel.parts`, numbered "(1/2)", sent in order by the delivery loop), and
``build_payload`` still trims as a last guard until the encoded body fits.

Mentions: Feishu can only @ by user id (``ou_...``) or ``all``, not by phone number; such ids
in :attr:`Message.mentions` become ``<at user_id="...">`` tags in a text message and
``<at id=...>`` tags in a card's markdown (the two syntaxes Feishu reads there; the other is
shown as literal text), phone numbers are ignored (the liaison is identified in the text by
the renderer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

from outage_sentinel.channels.base import Message, Outcome, SendResult
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
from outage_sentinel.textlimits import trim_bytes, utf8_len

DEFAULT_BASE_URL = "https://open.feishu.cn"
BODY_LIMIT = 20 * 1024
#: A part's text: room left in the body for the signature, the card, the @ tags and escapes.
PART_LIMIT = 16 * 1024

_RETRY_CODES: dict[int, float | None] = {11232: 60.0, 9499: None}
#: Frequency limits (11232; 9499 "too many request"): the bot itself is refused for a while.
_RATE_CODES = frozenset({11232, 9499})
_PERMANENT_CODES: dict[int, str] = {
    19021: "bad signature or timestamp",
    19022: "IP not allowed",
    19024: "keyword check failed",
    19001: "invalid parameters",
    19002: "invalid request",
    19007: "bot not found or not in the group",
    11105: "invalid app or webhook",
    11246: "content too long",
}


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """``base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b""))`` as Feishu's sample code does."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def classify_feishu(body: Any) -> SendResult | None:
    """The verdict in a Feishu body; ``None`` if the body has no verdict at all."""
    if not isinstance(body, dict):
        return None
    raw = body.get("code", body.get("StatusCode"))
    if raw is None:
        return None
    return classify_code(raw, str(body.get("msg", body.get("StatusMessage", "")))[:200],
                         _RETRY_CODES, _PERMANENT_CODES, label="code", rate_codes=_RATE_CODES)


class FeishuChannel(SignedRobotChannel):
    """Sends to Feishu custom bots, one bot (hook token + optional secret) per target."""

    type = "feishu"
    #: Well inside the 20 KB body limit, and readable on a phone.
    digest_limit_bytes = 8192

    def __init__(self, name: str, *, robots: dict[str, tuple[str, str | None]],
                 base_url: str = DEFAULT_BASE_URL, **kwargs: Any) -> None:
        super().__init__(name, robots=robots, base_url=base_url, **kwargs)

    def parts(self, message: Message) -> tuple[Message, ...]:
        """``message`` split so that each part's body fits."""
        return split_message(message, PART_LIMIT, markdown=bool(message.markdown))

    @staticmethod
    def _at_tags(message: Message) -> str:
        ids = [m for m in dict.fromkeys(message.mentions) if m == "all" or m.startswith("ou_")]
        if message.markdown:
            return "".join(f"<at id={i}></at>" for i in ids)
        return "".join(f'<at user_id="{i}"></at>' for i in ids)

    def _payload(self, message: Message, body_text: str) -> dict[str, Any]:
        if message.markdown:
            card: dict[str, Any] = {
                "config": {"wide_screen_mode": True},
                "elements": [{"tag": "markdown", "content": body_text}],
            }
            if message.subject:
                card["header"] = {"title": {"tag": "plain_text", "content": message.subject}}
            return {"msg_type": "interactive", "card": card}
        return {"msg_type": "text", "content": {"text": body_text}}

    def build_payload(self, message: Message, signature: dict[str, str] | None = None
                      ) -> dict[str, Any]:
        """The JSON body, trimmed so that its UTF-8 encoding is at most 20 KB."""
        tags = self._at_tags(message)
        text = (message.markdown or message.text) + tags
        sig = signature or {}
        payload = {**sig, **self._payload(message, text)}
        size = utf8_len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        while size > BODY_LIMIT:
            # JSON escaping can make the body grow faster than the text; trim by the excess
            # (plus a margin) and measure again.
            room = max(utf8_len(text) - (size - BODY_LIMIT) - 64 - utf8_len(tags), 0)
            text = trim_bytes(message.markdown or message.text, room) + tags
            payload = {**sig, **self._payload(message, text)}
            size = utf8_len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        return payload

    def _send(self, message: Message) -> SendResult:
        robot = self._robots.get(message.target)
        if robot is None:
            return permanent(f"no robot configured for target {message.target!r} "
                             f"(channels.{self.name}.robots)")
        token, secret = robot
        sig: dict[str, str] = {}
        if secret:
            ts = int(self._clock())
            sig = {"timestamp": str(ts), "sign": feishu_sign(secret, ts)}
        url = f"{self._base}/open-apis/bot/v2/hook/{quote(token, safe='')}"
        reply = http_attempt(self._session, "POST", url, timeout=self.timeout,
                             redact=self._redact, json_body=self.build_payload(message, sig))
        if not isinstance(reply, HttpReply):
            return reply
        verdict = classify_feishu(reply.body)
        if verdict is not None and verdict.outcome is Outcome.DELIVERED \
                and not 200 <= reply.status < 300:
            return unconfirmed(f"HTTP {reply.status} with code 0; delivery unconfirmed")
        if verdict is not None:
            return verdict
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        return no_verdict(reply, "code", self._redact)
