"""The SMS providers' reply (uplink) pushes, read into one shape — who replied, what, when —
for :meth:`outage_sentinel.board.replies.FieldReplies.sms_replies`, and the answer each provider
expects. Pure: no clock, no store.

**Aliyun** pushes to ``/hooks/sms/<token>`` a JSON list of replies (or one reply), each
``{"phone_number", "content", "send_time" (Beijing time, no offset), "sequence_id",
"sign_name", "dest_code"}``, and expects ``{"code": 0, "msg": "ok"}`` (our counts ride along).
A reply of the wrong shape among them is ignored and counted, as the push may hold others.

**Tencent** pushes to ``/hooks/sms/<token>/tencent`` one JSON object per reply,
``{"mobile", "nationcode", "text", "sign", "time" (unix seconds), "extend"}``, and expects
``{"result": 0, "errmsg": "OK"}``. A body of the wrong shape is refused with ``result`` 1 and
an ``errmsg`` naming the key (:class:`UplinkError`). Tencent gives no id per reply: a push is
taken once by its number, time and text.

The provider is named by the path, not guessed from the body: an Aliyun push at Tencent's
path, or Tencent's at Aliyun's, is refused naming the path it belongs at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.events import UNSTORABLE, parse_optional_time, unstorable_key

#: The providers whose pushes the hook reads, as the path names them (Aliyun's has no name).
PROVIDERS = ("aliyun", "tencent")
#: Aliyun sends reply times in Beijing time without an offset.
CHINA = ZoneInfo("Asia/Shanghai")
#: How many replies of one Aliyun push are read.
MAX_REPLIES = 1000
#: The keys of Tencent's push that carry what a reply is read by.
TENCENT_KEYS = ("mobile", "nationcode", "text", "time")
_DIGITS = re.compile(r"\d{5,15}")
_COUNTRY = re.compile(r"[1-9]\d{0,3}")


class UplinkError(ValueError):
    """A push of the wrong shape; the message names the key."""


@dataclass(frozen=True)
class SmsReply:
    """One reply: the forms its number may be written in as a notice's target, the text, when
    it was sent, and the key of its replay marker."""

    numbers: tuple[str, ...]
    content: str
    sent: datetime
    once: str


def answer(provider: str, counts: Mapping[str, int] | None = None,
           error: str | None = None) -> dict[str, Any]:
    """The body ``provider`` expects back: taken (with ``counts``), or refused for ``error``."""
    if provider == "tencent":
        return {"result": 1, "errmsg": error} if error else {"result": 0, "errmsg": "OK"}
    return {"code": 1, "msg": error} if error else {"code": 0, "msg": "ok", **(counts or {})}


# -- Aliyun -------------------------------------------------------------------------------------


def aliyun_replies(body: Any) -> list[SmsReply | None]:
    """The replies of an Aliyun push (``None`` for one of the wrong shape: ignored)."""
    if isinstance(body, dict) and "phone_number" not in body \
            and all(k in body for k in ("mobile", "nationcode")):
        raise UplinkError("this is Tencent's reply push (mobile, nationcode): point it at "
                          "/hooks/sms/<token>/tencent")
    items = [] if body is None else body if isinstance(body, list) else [body]
    return [aliyun_reply(item) for item in items[:MAX_REPLIES]]


def aliyun_reply(item: Any) -> SmsReply | None:
    """One reply of an Aliyun push; ``None`` when malformed, or when the texts it would be
    kept by (its number, its sequence id) hold a character the database cannot store."""
    if not isinstance(item, dict) or unstorable_key(
            {k: item.get(k) for k in ("phone_number", "sequence_id")}) is not None:
        return None
    phone, content = str(item.get("phone_number") or ""), str(item.get("content") or "")
    try:
        sent = parse_optional_time(item.get("send_time"), "send_time", CHINA)
    except ValueError:
        return None
    if not phone or sent is None:
        return None
    once = f"sms_reply:{item.get('sequence_id') or phone + ':' + str(sent)}"
    return SmsReply((phone,), content, sent, once)


# -- Tencent ------------------------------------------------------------------------------------


def tencent_replies(body: Any) -> list[SmsReply]:
    """The reply of a Tencent push (one per push); an :class:`UplinkError` naming the key
    when the body is of the wrong shape."""
    if not isinstance(body, dict):
        if isinstance(body, list):
            raise UplinkError("the body must be a JSON object, not a list (Tencent pushes one "
                              "reply per request; Aliyun's push goes to /hooks/sms/<token>)")
        raise UplinkError(f"the body must be a JSON object with {', '.join(TENCENT_KEYS)}")
    missing = [k for k in TENCENT_KEYS if body.get(k) is None]
    if missing:
        raise UplinkError(f"{missing[0]}: missing (Tencent's reply push has "
                          f"{', '.join(TENCENT_KEYS)})")
    mobile = digits(body["mobile"], "mobile", _DIGITS, "a mobile number (5 to 15 digits)")
    country = digits(str(body["nationcode"]).strip().removeprefix("+"), "nationcode",
                     _COUNTRY, "a country code (1 to 4 digits, e.g. 86)")
    text = body["text"]
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        raise UplinkError(f"text: text expected, got {type(text).__name__}")
    if unstorable_key({"text": str(text)}) is not None:
        raise UplinkError(f"text: {UNSTORABLE}")
    sent = unix_time(body["time"])
    marker = hashlib.sha256(f"{country}\n{mobile}\n{sent.timestamp():.0f}\n{text}".encode())
    return [SmsReply(number_forms(country, mobile), str(text), sent,
                     f"sms_reply:tencent:{marker.hexdigest()[:32]}")]


def digits(value: Any, key: str, pattern: re.Pattern[str], what: str) -> str:
    """``value`` as the digits ``pattern`` wants; an :class:`UplinkError` naming ``key``
    otherwise (the value itself is not repeated: it may be a phone number)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UplinkError(f"{key}: {what} expected, got {type(value).__name__}")
    text = str(value).strip()
    if not pattern.fullmatch(text):
        raise UplinkError(f"{key}: {what} expected")
    return text


def unix_time(value: Any) -> datetime:
    """Tencent's ``time`` (unix seconds, a number; digits in a string are read too)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UplinkError(f"time: unix seconds expected, got {type(value).__name__}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise UplinkError(f"time: {value!r} is no time (unix seconds expected)") from None


def number_forms(country: str, mobile: str) -> tuple[str, ...]:
    """The ways a notice's target (a row of liaisons.csv) may write the number Tencent names
    by country code and mobile: a mainland number as its 11 digits or with +86, 86 or 0086;
    any other with +, 00 or nothing before the country code."""
    forms = (f"+{country}{mobile}", f"{country}{mobile}", f"00{country}{mobile}")
    return (mobile, *forms) if country == "86" else forms
