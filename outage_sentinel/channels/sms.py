"""Aliyun SMS ``SendSms`` over the RPC-style HTTP API, with its signature scheme.

Request: a form-encoded ``POST`` to the endpoint with the common parameters (``AccessKeyId``,
``Action=SendSms``, ``Format=JSON``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``,
``SignatureNonce``, ``SignatureVersion=1.0``, ``Timestamp`` in UTC ISO 8601, ``Version=2017-05-25``)
and the action's (``PhoneNumbers``, ``SignName``, ``TemplateCode``, ``TemplateParam``, ``OutId``),
plus ``Signature``::

    canonical     = "&".join(pe(k) + "=" + pe(v) for k, v in sorted(params))
    string_to_sign = "POST&%2F&" + pe(canonical)
    Signature      = base64(HMAC-SHA1(AccessKeySecret + "&", string_to_sign))

where ``pe`` is RFC 3986 percent-encoding (space → ``%20``, ``*`` → ``%2A``, ``~`` kept).
POST rather than GET keeps phone numbers out of URLs (and so out of proxy logs).

Each purpose (outage, planned, update, restored, cancelled, reminder, care, dispatch, command)
has its own template code (``templates``, falling back to ``template_code``) and its own fixed
``TemplateParam`` set, built by :mod:`outage_sentinel.sms_params` when the message is planned.

``SendSms`` is not idempotent, so ``OutId`` carries our outbox key (hashed when too long) for
reconciliation in the SMS console. Verdict: ``Code == "OK"``; ``BizId`` is the provider id.
``isv.BUSINESS_LIMIT_CONTROL`` is the per-number flow control; its ``Message`` says which level
(minute/hour/day) tripped, and the retry hint follows it — the day level means "tomorrow",
China time, when Aliyun resets the quota.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.common import (
    HttpChannel,
    HttpReply,
    delivered,
    http_attempt,
    http_status_result,
    mask_number,
    no_verdict,
    permanent,
    rate_limited,
    retry,
    unconfirmed,
)
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.sms_params import purpose_on, template_purpose, template_values

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"
#: OutId is a short free-text field; longer or non-ASCII keys are replaced by a stable hash.
OUT_ID_MAX = 64
_CHINA = ZoneInfo("Asia/Shanghai")

_RETRY_CODES = {
    "isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "Throttling", "Throttling.User", "Throttling.Api",
    "ServiceUnavailable", "InternalError", "SignatureNonceUsed", "InvalidTimeStamp.Expired",
    # The account ran out of balance (AMOUNT_NOT_ENOUGH), or is suspended for arrears
    # (OUT_OF_SERVICE, 业务停机: "top up to resume"): an operator's top-up fixes both, after
    # which the same request goes through; until then it waits, bounded by the max age.
    "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE",
    # The account's monthly total set in the console is used up: it lifts with the next month
    # or when an operator raises it (the daily one, DAY_LIMIT_CONTROL, is a rate limit).
    "isv.MONTH_LIMIT_CONTROL",
}
_PERMANENT_CODES: dict[str, str] = {
    "isv.MOBILE_NUMBER_ILLEGAL": "invalid phone number",
    "isv.MOBILE_COUNT_OVER_LIMIT": "too many phone numbers",
    "isv.SMS_SIGNATURE_ILLEGAL": "sign name not approved",
    "isv.SMS_SIGN_ILLEGAL": "sign name not approved",
    "isv.SMS_TEMPLATE_ILLEGAL": "template not approved",
    "isv.TEMPLATE_MISSING_PARAMETERS": "template parameters missing",
    "isv.TEMPLATE_PARAMS_ILLEGAL": "template parameters invalid",
    "isv.INVALID_PARAMETERS": "invalid parameters",
    "isv.INVALID_JSON_PARAM": "TemplateParam is not valid JSON",
    "isv.PARAM_LENGTH_LIMIT": "a template parameter is too long",
    "isv.BLACK_KEY_CONTROL_LIMIT": "text contains a forbidden keyword",
    "isv.ACCOUNT_NOT_EXISTS": "account does not exist",
    "isv.ACCOUNT_ABNORMAL": "account abnormal",
    "isv.DENY_IP_RANGE": "source IP denied",
    "isv.PRODUCT_UN_SUBSCRIPT": "SMS product not subscribed",
    "isp.RAM_PERMISSION_DENY": "RAM permission denied",
    "SignatureDoesNotMatch": "bad signature (check AccessKeySecret)",
    "IncompleteSignature": "bad signature",
    "InvalidAccessKeyId.NotFound": "unknown AccessKeyId",
    "InvalidAccessKeyId.Inactive": "AccessKeyId disabled",
    "Forbidden.RAM": "RAM permission denied",
}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's RPC signature requires."""
    return quote(value, safe="~")


def rpc_signature(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """Aliyun RPC signature (SignatureVersion 1.0, HMAC-SHA1) over ``params``."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}"
                         for k in sorted(params))
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def out_id(key: str) -> str:
    """``OutId`` for an outbox key: the key itself when short ASCII, else a stable hash."""
    if len(key) <= OUT_ID_MAX and key.isascii() and key.isprintable():
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def seconds_until_next_china_day(now: float) -> float:
    """Seconds from ``now`` to the next midnight in China time (+1 min for clock skew)."""
    local = datetime.fromtimestamp(now, UTC).astimezone(_CHINA)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds() + 60.0


def flow_control_wait(message: str, now: float) -> float:
    """Retry hint for ``isv.BUSINESS_LIMIT_CONTROL`` from its message (which level tripped)."""
    if "分钟" in message or "minute" in message.lower():
        return 60.0
    if "小时" in message or "hour" in message.lower():
        return 3600.0
    if "天" in message or "day" in message.lower():
        return seconds_until_next_china_day(now)
    return 3600.0


def classify_sms(body: Any, now: float) -> SendResult | None:
    """The verdict in a SendSms reply; ``None`` if there is no ``Code`` at all."""
    if not isinstance(body, dict) or "Code" not in body:
        return None
    code = str(body.get("Code"))
    msg = str(body.get("Message", ""))[:200]
    if code == "OK":
        biz = body.get("BizId")
        return delivered("OK", str(biz) if biz else None)
    if code == "isv.BUSINESS_LIMIT_CONTROL":  # the number is refused for a while
        return rate_limited(f"{code}: {msg}", flow_control_wait(msg, now))
    if code == "isv.DAY_LIMIT_CONTROL":
        return rate_limited(f"{code}: {msg}", seconds_until_next_china_day(now))
    if code in _RETRY_CODES:
        return retry(f"{code}: {msg}")
    if code in _PERMANENT_CODES:
        return permanent(f"{code} ({_PERMANENT_CODES[code]}): {msg}")
    # isv.* is "the caller's fault" in Aliyun's scheme: repeating the same request won't help.
    # Anything else (isp.*, gateway codes) is on their side: retry.
    if code.startswith("isv."):
        return permanent(f"{code} (unrecognised caller error): {msg}")
    return retry(f"{code} (unrecognised): {msg}")


def template_param(params: Mapping[str, Any]) -> dict[str, str]:
    """The template variables (:func:`outage_sentinel.sms_params.template_values`)."""
    return template_values(params)


def message_purpose(message: Message) -> str:
    """The SMS template purpose of ``message``: what the planner named (``sms_template``),
    else derived from the outbox purpose and the incident kind."""
    return template_purpose(message.purpose, message.params)


class SmsChannel(HttpChannel):
    """Aliyun SMS; one message goes to ``Message.mentions`` (or to ``Message.target``)."""

    type = "sms"

    def __init__(self, name: str, *, access_key_id: str, access_key_secret: str,
                 sign_name: str, template_code: str | None = None,
                 templates: Mapping[str, str] | None = None, endpoint: str = DEFAULT_ENDPOINT,
                 region_id: str = "cn-hangzhou", timeout: float = 10.0,
                 rate_limits: tuple[RateLimit, ...] = (),
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        super().__init__(name, timeout=timeout, secrets=[access_key_secret, access_key_id],
                         rate_limits=rate_limits, session=session)
        self._key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        #: Fallback template code for purposes without their own (``template_code``).
        self.template_code = template_code
        #: Template code per purpose (``templates``), see :data:`sms_params.PURPOSES`.
        self.templates = dict(templates or {})
        self._endpoint = endpoint
        self._region = region_id
        self._clock = clock
        self._nonce = nonce

    @staticmethod
    def numbers(message: Message) -> tuple[str, ...]:
        return tuple(dict.fromkeys(message.mentions)) or (message.target,)

    def template_for(self, message: Message) -> str | None:
        """The template code for ``message``'s purpose, else the fallback, else ``None``."""
        purpose = purpose_on(message_purpose(message), self.templates)
        return self.templates.get(purpose) or self.template_code

    def rate_keys(self, message: Any) -> tuple[str, ...]:
        """Aliyun counts per number and template, so the limiter does too."""
        code = self.template_for(message) or "-"
        return tuple(f"{n}/{code}" for n in self.numbers(message))

    def build_params(self, message: Message) -> dict[str, str]:
        """All request parameters including ``Signature``."""
        now = self._clock()
        params = {
            "AccessKeyId": self._key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self._region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "Timestamp": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            "PhoneNumbers": ",".join(self.numbers(message)),
            "SignName": self.sign_name,
            "TemplateCode": self.template_for(message) or "",
            "OutId": out_id(message.key),
        }
        tp = template_param(message.params)
        if tp:
            params["TemplateParam"] = json.dumps(tp, ensure_ascii=False, separators=(",", ":"))
        params["Signature"] = rpc_signature(params, self._secret, "POST")
        return params

    def _send(self, message: Message) -> SendResult:
        numbers = self.numbers(message)
        if not any(numbers):
            return permanent("no phone number to send to")
        if self.template_for(message) is None:
            purpose = message_purpose(message)
            return permanent(f"no SMS template for purpose {purpose!r}: set channels."
                             f"{self.name}.templates.{purpose} or template_code")
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                        for k, v in self.build_params(message).items()).encode()
        reply = http_attempt(self._session, "POST", self._endpoint, timeout=self.timeout,
                             redact=self._redact, data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        if not isinstance(reply, HttpReply):
            return reply
        # Aliyun puts a Code in 4xx bodies too (SignatureDoesNotMatch comes as HTTP 400).
        verdict = classify_sms(reply.body, self._clock())
        who = ",".join(mask_number(n) for n in numbers)
        if verdict is not None:
            if verdict.outcome is Outcome.DELIVERED and not 200 <= reply.status < 300:
                return unconfirmed(f"HTTP {reply.status} with Code OK for {who}; unconfirmed")
            return replace(verdict, detail=f"{verdict.detail} [to {who}]")
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        result = no_verdict(reply, "Code", self._redact)
        return replace(result, detail=f"{result.detail} [to {who}]")
