"""Keyword replies to the liaisons' notices, taken as their answers: SMS replies (Aliyun's and
Tencent's uplink pushes, :mod:`.sms_uplink`), a DingTalk outgoing robot's callback and Feishu's
event callbacks. A keyword (1 = 已来电, 2 = 仍停电 by default) answers for every affected area
of the village the replying number or group was last told about, as one answer (one word to
the command centre naming the areas it concerns), through the same path as a tap on the
liaison's page (:meth:`.field.FieldDesk.take_answer`). Kept apart from the pages
themselves: each channel here authenticates its own way (a path secret, a signature, a
verification token) and is taken once per message, not per link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from outage_sentinel.board.field import ANSWERS, FieldDesk, FieldError
from outage_sentinel.board.sms_uplink import (
    PROVIDERS,
    SmsReply,
    UplinkError,
    aliyun_replies,
    tencent_replies,
)
from outage_sentinel.events import UNSTORABLE, unstorable_key
from outage_sentinel.store import OutboxRow

#: An SMS reply older than this when it arrives is not taken (a replay or a stale queue).
SMS_REPLY_MAX_AGE = timedelta(minutes=30)
#: How long a reply's replay marker is kept. Every channel refuses a reply older than an hour
#: by its own timestamp, so a marker past this age guards nothing and is deleted.
REPLY_MEMORY = timedelta(days=2)
#: The notices a keyword reply answers (the latest of them sent to the number or group).
REPLY_PURPOSES = ("outage", "update", "restored")


@dataclass
class FieldReplies:
    """The reply webhooks over a :class:`FieldDesk`: its store, clock, topology and actions,
    and its webhook secrets, keywords and Feishu chats, read at each call (so the desk's
    configuration stays the one place they are set)."""

    desk: FieldDesk

    # -- SMS replies (Aliyun's and Tencent's uplink pushes) ------------------------------------

    def sms_replies(self, token: str, body: Any, provider: str = "aliyun",
                    channels: Collection[str] = ("sms",)) -> dict[str, int]:
        """Replies to SMS notices, as ``provider`` pushes them (:mod:`.sms_uplink`): a keyword
        (1 = 已来电, 2 = 仍停电) answers for every area of the village the replying number was
        last told about on one of the SMS ``channels``. A reply is taken once (Aliyun's
        ``sequence_id``; Tencent's number, time and text), and only within
        :data:`SMS_REPLY_MAX_AGE` of being sent. A Tencent push of the wrong shape is a
        :class:`FieldError` naming the key; an Aliyun reply of the wrong shape is ignored."""
        if self.desk.sms_token is None or provider not in PROVIDERS or not hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), self.desk.sms_token.encode()):
            raise FieldError("unknown webhook", 404)
        try:
            replies: list[SmsReply | None] = [*tencent_replies(body)] \
                if provider == "tencent" else aliyun_replies(body)
        except UplinkError as exc:
            raise FieldError(str(exc)) from None
        counts = {"accepted": 0, "ignored": 0}
        for reply in replies:
            taken = reply is not None and self._sms_reply(reply, channels)
            counts["accepted" if taken else "ignored"] += 1
        return counts

    def _sms_reply(self, reply: SmsReply, channels: Collection[str]) -> bool:
        """One reply, taken (True) when fresh and a keyword answering a notice."""
        if self.desk.clock() - reply.sent > SMS_REPLY_MAX_AGE:
            return False
        return self.reply_from(channels, reply.numbers, reply.content, reply.once)

    def reply(self, channel: str, target: str, content: str, once: str) -> bool:
        """A keyword reply (SMS, a robot's group) answers for every affected area of the
        village ``target`` was last told about; ``once`` names it so a replay is ignored."""
        return self.reply_from((channel,), (target,), content, once)

    def reply_from(self, channels: Collection[str], targets: Collection[str], content: str,
                   once: str) -> bool:
        """:meth:`reply` from whichever of ``targets`` (the forms of one number) on whichever
        of ``channels`` was told last."""
        answer = self.desk.sms_keywords.get(content.strip())
        if answer is None:
            return False
        now = self.desk.clock()
        marker = uuid.uuid4().hex
        if self.desk.store.kv_setdefault(once, marker, now) != marker:
            return False  # a replay
        self.desk.store.kv_forget(once.split(":", 1)[0] + ":", now - REPLY_MEMORY)
        notice = self.last_notice(channels, targets)
        if notice is None:
            return False
        village = str(notice.payload.get("village") or "")
        processor = self.desk.actions.core.processor
        inc = processor.incident(notice.incident_id)
        key = hashlib.sha256(f"{notice.channel}:{notice.target}:{inc.id}".encode()).hexdigest()
        areas = [t for t in inc.estimate.transformers
                 if t in self.desk.topology().village_transformers(village)]
        # After the end, a notice that asked about the areas nobody confirmed is answered
        # for those alone (the others' records said they are back).
        asked = [t for t in areas if t in inc.unconfirmed]
        areas = asked if inc.status != "active" and asked else areas
        # One answer for them all: the command centre hears of it once, naming the areas.
        self.desk.take_answer(key, inc, areas, village, answer, f"{notice.channel} 回复")
        return bool(areas)

    def last_notice(self, channels: Collection[str], targets: Collection[str]
                    ) -> OutboxRow | None:
        """The latest liaison notice a reply answers (:data:`REPLY_PURPOSES`) sent to one of
        ``targets`` on one of ``channels`` (one still queued was never read)."""
        found = [n for c in sorted(channels) for t in dict.fromkeys(targets)
                 if (n := self.desk.store.last_liaison_notice(c, t, REPLY_PURPOSES)) is not None]
        return max(found, default=None,
                   key=lambda n: (n.sent_at.timestamp() if n.sent_at else 0.0, n.id))

    # -- DingTalk outgoing robot ---------------------------------------------------------------

    def dingtalk(self, timestamp: str, sign: str, body: Any) -> str | None:
        """A message @-ing the outgoing robot in a liaisons' group: its keyword answers like an
        SMS reply. The signature (HMAC-SHA256 of ``timestamp + "\\n" + secret``) must match
        and the timestamp be within an hour; each ``msgId`` is taken once. Returns what the
        robot says back (None: nothing taken)."""
        secret = self.desk.dingtalk_secret
        if secret is None:
            raise FieldError("unknown webhook", 404)
        expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, sign):
            raise FieldError("bad signature", 403)
        try:
            sent = datetime.fromtimestamp(int(timestamp) / 1000, tz=UTC)
        except (ValueError, OverflowError):
            raise FieldError("bad timestamp", 403) from None
        if abs((self.desk.clock() - sent).total_seconds()) > 3600:
            raise FieldError("stale request", 403)
        if not isinstance(body, dict):
            raise FieldError("the body must be a JSON object")
        refuse_unstorable(body)
        text = text_at(body, "text", "content")
        group = str(body.get("conversationTitle") or "")
        taken = self.reply("dingtalk", group, text, f"dingtalk:{body.get('msgId') or sign}")
        return f"已收到：{ANSWERS[self.desk.sms_keywords[text.strip()]]}" if taken else None

    # -- Feishu event callbacks ----------------------------------------------------------------

    def feishu(self, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        """A message in a liaisons' Feishu group (``im.message.receive_v1``), or the URL check.
        The verification token must match, and the signature when an encrypt key is set; the
        event must be under an hour old and is taken once (its ``event_id``)."""
        if self.desk.feishu_token is None:
            raise FieldError("unknown webhook", 404)
        if self.desk.feishu_key is not None:
            stamp = headers.get("x-lark-request-timestamp", "")
            nonce = headers.get("x-lark-request-nonce", "")
            expected = hashlib.sha256((stamp + nonce + self.desk.feishu_key).encode() + raw)
            if not hmac.compare_digest(expected.hexdigest(),
                                       headers.get("x-lark-signature", "")):
                raise FieldError("bad signature", 403)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise FieldError("the body must be JSON") from None
        if not isinstance(body, dict):
            raise FieldError("the body must be a JSON object")
        nested = body.get("header")
        header: dict[str, Any] = nested if isinstance(nested, dict) else body
        if not hmac.compare_digest(str(header.get("token") or ""), self.desk.feishu_token):
            raise FieldError("bad verification token", 403)
        refuse_unstorable(body)
        if body.get("type") == "url_verification":
            return {"challenge": body.get("challenge")}
        return {"taken": self._feishu_message(header, body.get("event") or {})}

    def _feishu_message(self, header: dict[str, Any], event: Any) -> bool:
        """A group message of a Feishu event: taken (True) when it is a keyword reply; an
        event of the wrong shape is a :class:`FieldError` naming the key."""
        try:
            created = datetime.fromtimestamp(int(str(header.get("create_time"))) / 1000, tz=UTC)
        except (ValueError, OverflowError, OSError):
            return False
        message = feishu_message(event)
        if message is None:
            return False  # another kind of event
        text = feishu_text(message)
        if abs((self.desk.clock() - created).total_seconds()) > 3600:
            return False
        target = self.desk.feishu_chats.get(str(message.get("chat_id") or ""))
        words = [w for w in text.split() if not w.startswith("@")]
        if target is None or len(words) != 1:
            return False
        return self.reply("feishu", target, words[0],
                          f"feishu:{header.get('event_id') or message.get('message_id')}")


def refuse_unstorable(body: Any) -> None:
    """A :class:`FieldError` (400) naming the key when a text of ``body`` holds a character
    the database cannot store (NUL or a lone surrogate)."""
    key = unstorable_key(body)
    if key is not None:
        raise FieldError(f"{key}: {UNSTORABLE}")


def text_at(body: dict[str, Any], outer: str, inner: str) -> str:
    """``body[outer][inner]`` as text ("" where either is missing or null); another shape is
    a :class:`FieldError` naming the key."""
    holder = body.get(outer)
    if holder is None:
        return ""
    if not isinstance(holder, dict):
        raise FieldError(f"{outer}: a JSON object with {inner!r} expected, got "
                         f"{type(holder).__name__}")
    value = holder.get(inner)
    if value is not None and not isinstance(value, str | int | float):
        raise FieldError(f"{outer}.{inner}: text expected, got {type(value).__name__}")
    return "" if value is None else str(value)


def feishu_message(event: Any) -> dict[str, Any] | None:
    """The message of a Feishu event (None: another kind of event); a shape it cannot have
    is a :class:`FieldError` naming the key."""
    if not isinstance(event, dict):
        raise FieldError(f"event: a JSON object expected, got {type(event).__name__}")
    message = event.get("message")
    if message is not None and not isinstance(message, dict):
        raise FieldError(f"event.message: a JSON object expected, got "
                         f"{type(message).__name__}")
    return message


def feishu_text(message: dict[str, Any]) -> str:
    """The text of a Feishu message: its ``content`` is JSON text of an object whose
    ``text`` is the message ("" for a message without text, e.g. an image)."""
    raw = message.get("content")
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise FieldError(f"event.message.content: JSON text expected, got {type(raw).__name__}")
    try:
        content = json.loads(raw)
    except ValueError:
        raise FieldError("event.message.content: not JSON") from None
    if not isinstance(content, dict):
        raise FieldError(f"event.message.content: a JSON object expected, got "
                         f"{type(content).__name__}")
    return text_at({"event.message.content": content}, "event.message.content", "text")
