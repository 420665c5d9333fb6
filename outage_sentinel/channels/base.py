"""The channel interface: every notification sender implements it.

A channel turns a rendered :class:`Message` into one request to its service and classifies the
outcome. It never decides *whether* to send (that is the outbox's job) and never retries by
itself (the retry policy lives in the delivery loop), so each call is exactly one attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    #: Try again later (rate limited, 5xx, timeout, connection refused, no verdict in the
    #: reply); see :attr:`SendResult.uncertain` and :attr:`SendResult.rate_limited`.
    RETRY = "retry"
    #: Will never succeed as is (bad key, bad signature, keyword missing, invalid number).
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    #: Seconds the service asked us to wait (Retry-After, a documented block period), if any.
    retry_after: float | None = None
    #: The service's id for the delivered message, if it returns one.
    provider_id: str | None = None
    #: A RETRY whose request may have reached the service: it went out and no verdict came
    #: back (a timeout waiting for the reply, a connection or TLS stream dropped mid-exchange,
    #: a gateway's 504, a 2xx JSON reply without the service's verdict). The outbox
    #: resends such a message once at most, as after a crash mid-send. ``False``: the service
    #: certainly did not take it (connection refused, connect timeout, a failed TLS handshake,
    #: 500/502/503, a proxy's HTML page, an error code in the reply).
    uncertain: bool = False
    #: A RETRY because the service refuses the *target* for a while (WeCom 45009, DingTalk
    #: 130101, Feishu 11232, Aliyun flow control, HTTP 429): the outbox holds back every
    #: message to that target, not only this one, for ``retry_after`` seconds.
    rate_limited: bool = False


@dataclass(frozen=True)
class Message:
    """A rendered notification for one recipient on one channel."""

    #: Idempotency key: ``incident/revision/recipient/purpose``; unique in the outbox.
    key: str
    channel: str
    target: str
    text: str
    subject: str = ""
    markdown: str | None = None
    #: Phone numbers to @-mention (WeCom/DingTalk) or to send to (SMS).
    mentions: tuple[str, ...] = ()
    audience: str = "liaison"
    purpose: str = "outage"
    incident_id: str = ""
    #: Template parameters for template-based channels (SMS).
    params: Mapping[str, Any] = field(default_factory=dict)


#: The channel types that send SMS: a registered template and its parameters per purpose
#: (:mod:`outage_sentinel.sms_params`), never the message's text, to one person's mobile
#: number — Aliyun (``sms``) and Tencent Cloud (``tencent_sms``). Whatever treats an SMS
#: channel specially (the care list in person, no progress notices, the field link as the
#: ``link`` variable, ``check``'s mobile targets) asks :func:`is_sms_type`.
SMS_CHANNEL_TYPES = frozenset({"sms", "tencent_sms"})


def is_sms_type(channel_type: str) -> bool:
    """Whether a channel of ``channel_type`` sends SMS templates (:data:`SMS_CHANNEL_TYPES`)."""
    return channel_type in SMS_CHANNEL_TYPES


class ChannelError(Exception):
    """A channel could not be built from its config (the message names the key)."""


@runtime_checkable
class Channel(Protocol):
    name: str
    type: str

    def send(self, message: Message) -> SendResult:
        """One attempt to deliver ``message``. Must not raise for service or network errors."""

    def already_delivered(self, key: str) -> bool | None:
        """After a crash mid-send: does the service already hold ``key``? ``None`` = can't tell."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class Timed(Protocol):
    """A channel whose every request is bounded (``timeout_seconds``): a send claimed longer
    ago than this (plus a margin) and not settled is no longer under way."""

    timeout: float


@runtime_checkable
class RateLimited(Protocol):
    """A channel with per-target limits (robots per group, SMS per number per day)."""

    rate_limits: tuple[Any, ...]

    def rate_keys(self, message: Message) -> tuple[str, ...]:
        """The limiter keys ``message`` counts against (without the channel's name)."""


@runtime_checkable
class Splitting(Protocol):
    """A channel whose service caps a message's size (the robots): a longer text goes as
    several consecutive parts, each within the cap, cut at line breaks and numbered "(1/2)".
    The delivery loop sends the parts in order and records each one confirmed, so a retry
    sends only the parts not yet delivered."""

    def parts(self, message: Message) -> tuple[Message, ...]:
        """``message`` as the requests it takes: itself alone when it fits."""


@runtime_checkable
class Digestible(Protocol):
    """A channel that can take several pending messages as one digest of at most this size."""

    digest_limit_bytes: int

