"""WeCom (企业微信) group robot.

Wire format: ``POST {base}/cgi-bin/webhook/send?key=KEY`` with JSON
``{"msgtype": "text", "text": {"content": ..., "mentioned_mobile_list": [...]}}`` or
``{"msgtype": "markdown", "markdown": {"content": ...}}``. WeCom answers HTTP 200 for almost
everything and puts the verdict in ``errcode``; only ``errcode == 0`` is delivery.

Choice of msgtype: ``mentioned_mobile_list`` works only with ``text``, and a liaison notice
that doesn't ping the liaison's phone is easy to miss in a busy group, so a message with
mentions always goes as text; one without mentions but with a markdown body (command-centre
summaries) goes as markdown.

A longer text is *split* (:meth:`WeComChannel.parts`) into consecutive parts of at most 2048
(text) / 4096 (markdown) bytes, cut at line breaks and numbered "(1/2)": a crew's dispatch keeps
its special-care households and its page link. The delivery loop sends the parts in order and
records each confirmed one, so a retry sends only the rest. ``build_payload`` still trims as a
last guard for a message that was not split.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from outage_sentinel.channels.base import Message, SendResult
from outage_sentinel.channels.common import (
    HttpChannel,
    HttpReply,
    classify_code,
    http_attempt,
    http_status_result,
    no_verdict,
    permanent,
    split_message,
    unconfirmed,
)
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.textlimits import trim_bytes

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TEXT_LIMIT = 2048
MARKDOWN_LIMIT = 4096

#: errcode → seconds to wait. 45009: "api freq out of limit" (20/min per robot); 45033: too
#: many concurrent calls; -1: busy.
_RETRY_CODES: dict[int, float | None] = {45009: 60.0, -1: None, 45033: 60.0}
#: The retry codes that refuse the robot itself for their wait, not only the message.
_RATE_CODES = frozenset({45009, 45033})
#: errcodes that repeating can't fix.
_PERMANENT_CODES: dict[int, str] = {
    93000: "invalid webhook key",
    93004: "robot removed from the group",
    93008: "robot not in the group",
    40001: "invalid credential",
    40008: "invalid message type",
    40035: "invalid parameter",
    40058: "invalid parameter",
    44004: "empty text content",
    45002: "content too long",
    40063: "empty parameter",
}


def classify_wecom(body: Any) -> SendResult:
    """The verdict in a WeCom reply body."""
    if not isinstance(body, dict) or "errcode" not in body:
        # No verdict: it may or may not have been posted (one duplicate at worst).
        return unconfirmed("no errcode in reply; delivery unconfirmed")
    return classify_code(body["errcode"], str(body.get("errmsg", ""))[:200], _RETRY_CODES,
                         _PERMANENT_CODES, rate_codes=_RATE_CODES)


class WeComChannel(HttpChannel):
    """Sends to WeCom group robots, one robot (webhook key) per target group."""

    type = "wecom"
    #: Digests go as text (to keep the @mentions), so the text limit applies.
    digest_limit_bytes = TEXT_LIMIT

    def __init__(self, name: str, *, robots: dict[str, str], base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 10.0, rate_limits: tuple[RateLimit, ...] = (),
                 session: requests.Session | None = None) -> None:
        super().__init__(name, timeout=timeout, secrets=robots.values(),
                         rate_limits=rate_limits, session=session)
        self._robots = dict(robots)
        self._base = base_url.rstrip("/")

    def robot_credential(self, target: str) -> str | None:
        """The webhook key of ``target``'s robot (WeCom counts 20 a minute per key)."""
        return self._robots.get(target)

    def parts(self, message: Message) -> tuple[Message, ...]:
        """``message`` split to WeCom's limits (text when it mentions or has no markdown)."""
        as_text = bool(message.mentions or not message.markdown)
        return split_message(message, TEXT_LIMIT if as_text else MARKDOWN_LIMIT,
                             markdown=not as_text)

    def build_payload(self, message: Message) -> dict[str, Any]:
        """The JSON body WeCom expects for ``message`` (public for tests and dry runs)."""
        if message.mentions or not message.markdown:
            text: dict[str, Any] = {"content": trim_bytes(message.text, TEXT_LIMIT)}
            if message.mentions:
                text["mentioned_mobile_list"] = list(dict.fromkeys(message.mentions))
            return {"msgtype": "text", "text": text}
        return {"msgtype": "markdown",
                "markdown": {"content": trim_bytes(message.markdown, MARKDOWN_LIMIT)}}

    def _send(self, message: Message) -> SendResult:
        key = self._robots.get(message.target)
        if key is None:
            return permanent(f"no robot configured for target {message.target!r} "
                             f"(channels.{self.name}.robots)")
        url = f"{self._base}/cgi-bin/webhook/send?key={quote(key, safe='')}"
        reply = http_attempt(self._session, "POST", url, timeout=self.timeout,
                             redact=self._redact, json_body=self.build_payload(message))
        if not isinstance(reply, HttpReply):
            return reply
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        if not isinstance(reply.body, dict) or "errcode" not in reply.body:
            return no_verdict(reply, "errcode", self._redact)
        return classify_wecom(reply.body)
