"""Generic JSON webhook: the message as JSON, POSTed to a URL (``{target}`` substituted).

For integrations the project doesn't know (a dispatch system, a paging gateway). The body is
the whole message; an ``Idempotency-Key`` header carries the outbox key (percent-encoded) so a
receiver can drop the one duplicate a crash may cause. Success is any 2xx, or — when
``success_field`` is set — a 2xx whose JSON field (dotted path) is ``0``, ``true``, ``"ok"`` or
``"success"``; many such services answer 200 with an error inside, like the robots do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from outage_sentinel.channels.base import Message, SendResult
from outage_sentinel.channels.common import (
    HttpChannel,
    HttpReply,
    delivered,
    http_attempt,
    http_status_result,
    permanent,
    unconfirmed,
)
from outage_sentinel.ratelimit import RateLimit

_OK_VALUES = {"0", "ok", "success", "true"}


def _lookup(body: Any, path: str) -> tuple[bool, Any]:
    cur = body
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def message_json(message: Message) -> dict[str, Any]:
    """The message as the webhook body (phone numbers included: the receiver needs them)."""
    return {
        "key": message.key,
        "channel": message.channel,
        "target": message.target,
        "audience": message.audience,
        "purpose": message.purpose,
        "incident_id": message.incident_id,
        "subject": message.subject,
        "text": message.text,
        "markdown": message.markdown,
        "mentions": list(message.mentions),
        "params": dict(message.params),
    }


class WebhookChannel(HttpChannel):
    type = "webhook"

    def __init__(self, name: str, *, url: str, headers: Mapping[str, str] | None = None,
                 success_field: str | None = None, timeout: float = 10.0,
                 rate_limits: tuple[RateLimit, ...] = (),
                 session: requests.Session | None = None) -> None:
        hdrs = dict(headers or {})
        # Header values are typically tokens; redact them all. The URL itself may embed a
        # token too (``https://hooks.example/T0K3N/{target}``): redact its path segments
        # that look like secrets (long, not a plain word).
        url_secrets = [seg for seg in url.split("/") if len(seg) >= 16 and "{" not in seg]
        super().__init__(name, timeout=timeout, secrets=[*hdrs.values(), *url_secrets],
                         rate_limits=rate_limits, session=session)
        self._url = url
        self._headers = hdrs
        self._success_field = success_field

    def url_for(self, target: str) -> str:
        return self._url.replace("{target}", quote(target, safe=""))

    def _send(self, message: Message) -> SendResult:
        # Header values must be ASCII (keys hold village names): percent-encode them.
        headers = {**self._headers, "Idempotency-Key": quote(message.key, safe="/:-_.~")}
        reply = http_attempt(self._session, "POST", self.url_for(message.target),
                             timeout=self.timeout, redact=self._redact,
                             json_body=message_json(message), headers=headers)
        if not isinstance(reply, HttpReply):
            return reply
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        if self._success_field is None:
            return delivered(f"HTTP {reply.status}")
        found, value = _lookup(reply.body, self._success_field)
        if not found:
            return unconfirmed(f"no {self._success_field!r} in reply; delivery unconfirmed")
        if str(value).strip().lower() in _OK_VALUES or value is True:
            return delivered(f"{self._success_field}={value}")
        return permanent(f"{self._success_field}={str(value)[:100]}")
