"""Tencent Cloud SMS ``SendSms`` over API 3.0 (version 2021-01-11), signed TC3-HMAC-SHA256.

Request: a JSON ``POST`` to ``/`` of the endpoint with the common parameters as headers
(``X-TC-Action: SendSms``, ``X-TC-Version: 2021-01-11``, ``X-TC-Region``, ``X-TC-Timestamp``)
and the action's in the body (``PhoneNumberSet`` in E.164, ``SmsSdkAppId``, ``SignName``,
``TemplateId``, ``TemplateParamSet``, ``SessionContext``), plus ``Authorization``::

    CanonicalRequest = "POST\\n/\\n\\n" + "content-type:…\\nhost:…\\n" + "\\n"
                       + "content-type;host\\n" + hex(sha256(body))
    StringToSign     = "TC3-HMAC-SHA256\\n" + timestamp + "\\n" + scope + "\\n"
                       + hex(sha256(CanonicalRequest))      (scope = UTC date/sms/tc3_request)
    SigningKey       = HMAC(HMAC(HMAC("TC3" + SecretKey, date), "sms"), "tc3_request")
    Authorization    = "TC3-HMAC-SHA256 Credential=" + SecretId + "/" + scope
                       + ", SignedHeaders=content-type;host, Signature=" + hex(HMAC(key, STS))

Unlike Aliyun's named ``TemplateParam``, Tencent's template variables are positional
(``{1}``, ``{2}`` …): the config gives, per purpose, the template id and the names of the
purpose's parameters (:mod:`outage_sentinel.sms_params`) in the order the registered text
uses them. Tencent answers HTTP 200 for every API error (``Response.Error``) and gives each
number its own status (``Response.SendStatusSet``, ``Code == "Ok"``). A message to several
numbers goes as one request per number (:meth:`TencentSmsChannel.parts`): the delivery loop
records each number confirmed, so a number refused is retried alone and the others never get
their SMS twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

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
from outage_sentinel.channels.sms import (
    flow_control_wait,
    message_purpose,
    out_id,
    seconds_until_next_china_day,
    template_param,
)
from outage_sentinel.logs import PHONE
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.sms_params import purpose_on

DEFAULT_BASE_URL = "https://sms.tencentcloudapi.com"
DEFAULT_REGION = "ap-guangzhou"
API_VERSION = "2021-01-11"
SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"

_BASE = frozenset({"village", "feeder", "start", "incident"})
#: The variables each purpose's parameter set has (:mod:`outage_sentinel.sms_params`), with
#: ``link`` where field links add one: the names a template's ``params`` may list.
VARIABLES: Mapping[str, frozenset[str]] = {
    "outage": _BASE | {"kind", "etr", "cause", "households", "link"},
    "planned": _BASE | {"kind", "end", "cause", "households"},
    "update": _BASE | {"kind", "etr", "cause", "households", "link"},
    "restored": _BASE | {"restored", "link"},
    "unconfirmed": _BASE | {"ended", "areas", "households", "link"},
    "cancelled": _BASE | {"kind"},
    "cancelled_begun": _BASE | {"kind"},
    "corrected": _BASE | {"kind"},
    "reminder": _BASE | {"kind", "end", "hours", "households"},
    "care": frozenset({"village", "count", "tags", "households", "start", "etr", "incident"}),
    "dispatch": frozenset({"incident", "priority", "deadline", "feeder", "device", "villages",
                           "customers", "cause", "care", "link"}),
    "command": frozenset({"summary", "incident"}),
}

#: Refusals of the number for a while (rate limited: every message to it waits).
_UNTIL_TOMORROW = frozenset({
    "LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.PhoneNumberSameContentDailyLimit",
    # the account's own daily totals set in the console: they reset with the day too
    "LimitExceeded.AppDailyLimit", "LimitExceeded.DailyLimit",
    "LimitExceeded.AppMainlandChinaDailyLimit", "LimitExceeded.AppGlobalDailyLimit",
    "LimitExceeded.AppCountryOrRegionDailyLimit",
})
_HOLD_SECONDS = {"LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
                 "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0}
_RETRY_CODES: dict[str, str] = {
    # The balance is used up: a top-up cures it and the same request then goes through.
    "FailedOperation.InsufficientBalanceInSmsPackage": "SMS package balance used up; top up",
    # Our clock is more than 5 min off Tencent's: every attempt is signed anew with the clock
    # of its time, so one after the clock is put right (NTP) goes through.
    "AuthFailure.SignatureExpire": "timestamp too far off; check the clock (NTP)",
}
_PERMANENT_CODES: dict[str, str] = {
    "LimitExceeded.PhoneNumberCountLimit": "more than 200 numbers in one request",
    "LimitExceeded.AppCountryOrRegionInBlacklist": "the country is blocked in the console",
    "FailedOperation.TemplateIncorrectOrUnapproved": "template not approved or not matching",
    "FailedOperation.SignatureIncorrectOrUnapproved": "sign name not approved",
    "FailedOperation.TemplateUnapprovedOrNotExist": "template not approved or no such id",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate":
        "parameter count differs from the approved template",
    "FailedOperation.ContainSensitiveWord": "text contains a sensitive word",
    "FailedOperation.PhoneNumberInBlacklist": "number opted out (免打扰名单)",
    "FailedOperation.PhoneNumberParseFail": "number not readable",
    "FailedOperation.FailResolvePacket": "request not readable",
    "FailedOperation.JsonParseFail": "request not readable",
}
#: The caller's fault by Tencent's naming: repeating the same request won't help.
_PERMANENT_PREFIXES = (
    "AuthFailure", "InvalidParameter", "UnauthorizedOperation", "MissingParameter",
    "UnsupportedOperation", "UnknownParameter", "InvalidAction", "NoSuchVersion",
    "NoSuchProduct", "ActionOffline", "IpInBlacklist", "IpNotInWhitelist", "InvalidRequest",
    "RequestSizeLimitExceeded", "UnsupportedRegion", "UnsupportedProtocol",
)
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_SEPARATORS = str.maketrans("", "", " -.()")


@dataclass(frozen=True)
class Template:
    """A registered template: its ``TemplateId`` and the parameter names for ``{1}``, ``{2}``…"""

    id: str
    params: tuple[str, ...]


def variable_problem(purpose: str, params: Sequence[str]) -> str | None:
    """Why ``params`` cannot be a template of ``purpose`` (``params[i]: …``), or ``None``."""
    known = VARIABLES.get(purpose)
    if known is None:
        return f"params: no variables for unknown purpose {purpose!r}"
    for i, name in enumerate(params):
        if name not in known:
            return (f"params[{i}]: unknown variable {name!r} for {purpose} "
                    f"(one of {', '.join(sorted(known))})")
    return None


# -- signing ------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_request(host: str, payload: bytes, content_type: str = CONTENT_TYPE) -> str:
    """The CanonicalRequest of a JSON ``POST /`` signing ``content-type`` and ``host``."""
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join(["POST", "/", "", headers, SIGNED_HEADERS, sha256_hex(payload)])


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, *, host: str, service: str,
                      timestamp: int, payload: bytes, content_type: str = CONTENT_TYPE) -> str:
    """The ``Authorization`` header of a TC3-HMAC-SHA256 signed API 3.0 request."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")  # UTC, not local
    scope = f"{date}/{service}/tc3_request"
    hashed = sha256_hex(canonical_request(host, payload, content_type).encode("utf-8"))
    string_to_sign = "\n".join([ALGORITHM, str(timestamp), scope, hashed])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, "
            f"Signature={signature}")


# -- numbers and verdicts -----------------------------------------------------------------------


def e164(number: str) -> str | None:
    """``number`` as Tencent wants it: a mainland mobile (11 digits, with or without +86/86/
    0086 and separators) as ``+86…``, an E.164 number (``+``/``00`` and 7–15 digits) as is;
    ``None`` for anything else."""
    raw = number.strip()
    m = PHONE.fullmatch(raw)
    if m:
        return f"+86{m.group(2)}{m.group(3)}{m.group(4)}"
    compact = raw.translate(_SEPARATORS)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if _E164.fullmatch(compact) else None


def classify_code(code: str, msg: str, now: float) -> SendResult:
    """The verdict for a Tencent error code (a request's ``Error.Code`` or a number's)."""
    text = f"{code}: {msg}"
    if code in _RETRY_CODES:
        return retry(f"{code} ({_RETRY_CODES[code]}): {msg}")
    if code in _PERMANENT_CODES:
        return permanent(f"{code} ({_PERMANENT_CODES[code]}): {msg}")
    if code in _UNTIL_TOMORROW:
        return rate_limited(text, seconds_until_next_china_day(now))
    if code in _HOLD_SECONDS:
        return rate_limited(text, _HOLD_SECONDS[code])
    if code == "LimitExceeded.DeliveryFrequencyLimit":  # the console's policy; level unsaid
        return rate_limited(text, flow_control_wait(msg, now))
    if code.startswith(("LimitExceeded", "RequestLimitExceeded")):
        return rate_limited(text, None)
    if code.startswith("InternalError"):
        return retry(text)
    if code.startswith(_PERMANENT_PREFIXES):
        return permanent(f"{code} (caller error): {msg}")
    # FailedOperation.* and anything new: retry, bounded by the max age (giving up on a code
    # we don't know could silently drop an outage notice).
    return retry(f"{code} (unrecognised): {msg}")


def status_result(status: Any, now: float) -> SendResult:
    """The verdict for one number's entry of ``SendStatusSet``."""
    if not isinstance(status, dict) or status.get("Code") is None:
        return unconfirmed("no status for the number; delivery unconfirmed")
    code = str(status["Code"])
    if code == "Ok":
        serial = status.get("SerialNo")
        return delivered("Ok", str(serial) if serial else None)
    return classify_code(code, str(status.get("Message", ""))[:200], now)


def statuses_result(statuses: list[Any], numbers: Sequence[str], now: float) -> SendResult:
    """All numbers' verdicts as one: delivered only when every number is ``Ok``; else the
    first number's failure, naming those that did get it."""
    entries = [s for s in statuses if isinstance(s, dict)]
    by_number = {str(s.get("PhoneNumber")): s for s in entries}
    results = []
    for n in numbers:
        entry = by_number.get(n, entries[0] if len(numbers) == len(entries) == 1 else None)
        results.append((n, status_result(entry, now)))
    failed = [(n, r) for n, r in results if r.outcome is not Outcome.DELIVERED]
    if not failed:
        ids = ",".join(r.provider_id for _, r in results if r.provider_id)
        return delivered(f"Ok [to {masked(numbers)}]", ids or None)
    number, first = failed[0]
    got = [n for n, r in results if r.outcome is Outcome.DELIVERED]
    also = f"; delivered to {masked(got)}" if got else ""
    return replace(first, detail=f"{first.detail} [to {mask_number(number)}]{also}")


def masked(numbers: Sequence[str]) -> str:
    return ",".join(mask_number(n) for n in numbers)


# -- the channel --------------------------------------------------------------------------------


class TencentSmsChannel(HttpChannel):
    """Tencent Cloud SMS; one request per number of ``Message.mentions`` (or ``target``)."""

    type = "tencent_sms"

    def __init__(self, name: str, *, secret_id: str, secret_key: str, sms_sdk_app_id: str,
                 sign_name: str, templates: Mapping[str, Template],
                 base_url: str = DEFAULT_BASE_URL, region: str = DEFAULT_REGION,
                 timeout: float = 10.0, rate_limits: tuple[RateLimit, ...] = (),
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, timeout=timeout, secrets=[secret_key, secret_id],
                         rate_limits=rate_limits, session=session)
        self._secret_id = secret_id
        self._secret_key = secret_key
        self.sms_sdk_app_id = sms_sdk_app_id
        self.sign_name = sign_name
        #: Template per purpose, see :data:`outage_sentinel.sms_params.PURPOSES`.
        self.templates = dict(templates)
        self._url = base_url.rstrip("/") + "/"
        self._host = urlsplit(base_url).netloc.lower()
        self._region = region
        self._clock = clock

    @staticmethod
    def numbers(message: Message) -> tuple[str, ...]:
        """The recipients, E.164 where they are numbers (duplicates once)."""
        raw = tuple(message.mentions) or (message.target,)
        return tuple(dict.fromkeys(e164(n) or n for n in raw))

    def parts(self, message: Message) -> tuple[Message, ...]:
        """One message per number (``KEY#i/n``): each number's SMS is confirmed on its own."""
        numbers = self.numbers(message)
        if len(numbers) <= 1:
            return (message,)
        n = len(numbers)
        return tuple(replace(message, key=f"{message.key}#{i}/{n}", mentions=(number,))
                     for i, number in enumerate(numbers, 1))

    def rate_keys(self, message: Any) -> tuple[str, ...]:
        """Tencent counts per number, whatever the template."""
        return self.numbers(message)

    def template_for(self, message: Message) -> tuple[str, Template | None]:
        purpose = purpose_on(message_purpose(message), self.templates)
        return purpose, self.templates.get(purpose)

    def build_body(self, message: Message, template: Template) -> bytes:
        """The JSON body for ``message`` with ``template`` (public for tests and dry runs);
        every parameter the template names must have a value (:meth:`refusal`)."""
        values = template_param(message.params)
        body: dict[str, Any] = {
            "PhoneNumberSet": list(self.numbers(message)),
            "SmsSdkAppId": self.sms_sdk_app_id,
            "SignName": self.sign_name,
            "TemplateId": template.id,
            "TemplateParamSet": [values[p] for p in template.params],
            "SessionContext": out_id(message.key),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        """The request's headers, ``Authorization`` signed over ``body`` at ``timestamp``."""
        auth = tc3_authorization(self._secret_id, self._secret_key, host=self._host,
                                 service=SERVICE, timestamp=timestamp, payload=body)
        return {"Authorization": auth, "Content-Type": CONTENT_TYPE, "Host": self._host,
                "X-TC-Action": "SendSms", "X-TC-Version": API_VERSION,
                "X-TC-Region": self._region, "X-TC-Timestamp": str(timestamp)}

    def refusal(self, message: Message) -> SendResult | None:
        """Why ``message`` cannot be sent as it is (no request is made), or ``None``."""
        numbers = self.numbers(message)
        if not any(numbers):
            return permanent("no phone number to send to")
        bad = [n for n in numbers if not _E164.fullmatch(n)]
        if bad:
            return permanent(f"not a mobile number (E.164, or 11 mainland digits): "
                             f"{masked(bad)}")
        purpose, template = self.template_for(message)
        if template is None:
            return permanent(f"no SMS template for purpose {purpose!r}: set channels."
                             f"{self.name}.templates.{purpose}")
        values = template_param(message.params)
        missing = [p for p in template.params if p not in values]
        if missing:
            return permanent(f"the {purpose} message has no value for {missing[0]!r}, which "
                             f"channels.{self.name}.templates.{purpose}.params names")
        return None

    def _send(self, message: Message) -> SendResult:
        refused = self.refusal(message)
        _, template = self.template_for(message)
        if refused is not None or template is None:
            return refused or permanent("no SMS template")
        body = self.build_body(message, template)
        reply = http_attempt(self._session, "POST", self._url, timeout=self.timeout,
                             redact=self._redact, data=body,
                             headers=self.headers(body, int(self._clock())))
        if not isinstance(reply, HttpReply):
            return reply
        return self.verdict(reply, self.numbers(message))

    def verdict(self, reply: HttpReply, numbers: Sequence[str]) -> SendResult:
        """The outcome of a reply: the request's ``Error``, else every number's status."""
        who = masked(numbers)
        response = reply.body.get("Response") if isinstance(reply.body, dict) else None
        response = response if isinstance(response, dict) else {}
        error = response.get("Error")
        if isinstance(error, dict) and error.get("Code") is not None:
            result = classify_code(str(error["Code"]), str(error.get("Message", ""))[:200],
                                   self._clock())
            return replace(result, detail=f"{result.detail} [to {who}]")
        statuses = response.get("SendStatusSet")
        if isinstance(statuses, list) and statuses:
            result = statuses_result(statuses, numbers, self._clock())
            if result.outcome is Outcome.DELIVERED and not 200 <= reply.status < 300:
                return unconfirmed(f"HTTP {reply.status} with Ok for {who}; unconfirmed")
            return result
        status = http_status_result(reply, self._redact)
        if status is not None:
            return status
        result = no_verdict(reply, "Response.SendStatusSet", self._redact)
        return replace(result, detail=f"{result.detail} [to {who}]")
