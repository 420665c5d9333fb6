"""Personal links for the field: a liaison's (or a crew's) link to one incident's page.

A link names one incident, one village and one recipient. It is signed with HMAC-SHA256 under a
secret from the environment, so it cannot be forged or moved to another incident, village or
recipient. It expires :data:`GRACE` after the incident closed (or was cancelled), and in any
case :data:`MAX_AGE` after it was last issued. Pure: the secret and ``now`` come in.

Two forms:

* **short** (what every message carries now): 24 URL-safe characters, a 12-character *key*
  and a 12-character MAC (72 bits each), both HMACs of the link's incident, village and
  recipient. The key names the link's stored row (incident, village, recipient, when last
  issued; kept by the store when a message carrying the link is queued, see
  :func:`link_record`); the MAC is checked against that row, so a row cannot be altered or a
  key guessed into another link. The same recipient gets the same link for the same incident
  and village in every notice.
* **long** (messages sent before short links): the signed payload itself
  (``<base64 JSON>.<base64 MAC>``, ~140 characters), still taken until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

#: A link never outlives this, whatever the incident does.
MAX_AGE = timedelta(days=14)
#: How long after the incident ended the page still answers.
GRACE = timedelta(hours=24)
#: The "village" of an incident's public progress page link (status, cause, photos).
PUBLIC = "public"
#: Bytes of the HMAC kept in the token (128 bits).
MAC_BYTES = 16
#: Bytes of a short token's key and of its MAC (72 bits each, 12 characters each).
SHORT_BYTES = 9
#: Length of a short token, in characters.
SHORT_LENGTH = 24
#: The kv key prefix of the stored short links (``field:link:<key>``).
LINK_PREFIX = "field:link:"
#: A personal link's token in a text: a liaison's (``/f/``) or a crew's (``/c/``), short or
#: long. The public progress page (``/p/``) is no one's own and acts on nothing.
PERSONAL_LINK = re.compile(r"/([cf])/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?")
#: What a redacted token reads.
REDACTED = "…"


class LinkError(ValueError):
    """A token that is malformed, forged, for something else, or expired."""


@dataclass(frozen=True)
class Link:
    incident_id: str
    village: str
    recipient: str
    issued: datetime


@dataclass(frozen=True)
class IssuedLink:
    """A short link as a message carries it: the URL to show, the token alone (an SMS
    template's variable: the template holds the board's address), and what the store keeps
    (the message's ``payload["field_links"]``)."""

    url: str
    token: str
    record: dict[str, str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"outage-sentinel/field-link/v1\0" + payload,
                    hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: bytes, link: Link) -> str:
    """The token of ``link`` (URL-safe, no padding)."""
    payload = json.dumps([link.incident_id, link.village, link.recipient,
                          int(link.issued.timestamp())], ensure_ascii=False,
                         separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str, now: datetime, ended: datetime | None = None) -> Link:
    """The link ``token`` stands for, or :class:`LinkError`. ``ended``: when its incident was
    closed or cancelled (None while it is open)."""
    try:
        head, mac = token.split(".")
        payload, given = _unb64(head), _unb64(mac)
    except ValueError:
        raise LinkError("malformed link") from None
    if not hmac.compare_digest(_mac(secret, payload), given):
        raise LinkError("this link is not one of ours")
    try:
        incident_id, village, recipient, issued = json.loads(payload)
        issued_at = datetime.fromtimestamp(int(issued), tz=now.tzinfo)
    except (ValueError, TypeError):
        raise LinkError("malformed link") from None
    if now - issued_at > MAX_AGE or (ended is not None and now - ended > GRACE):
        raise LinkError("this link has expired")
    return Link(str(incident_id), str(village), str(recipient), issued_at)


# -- short links --------------------------------------------------------------------------------


def _short_part(secret: bytes, label: bytes, *fields: str) -> str:
    payload = b"outage-sentinel/field-link/short\0" + label + b"\0" + "\0".join(fields).encode()
    return _b64(hmac.new(secret, payload, hashlib.sha256).digest()[:SHORT_BYTES])


def short_token(secret: bytes, incident_id: str, village: str, recipient: str) -> str:
    """The short token of a link: its key, then its MAC (both fixed by the three fields)."""
    key = _short_part(secret, b"key", incident_id, village, recipient)
    return key + _short_part(secret, b"mac", key, incident_id, village, recipient)


def short_key(token: str) -> str | None:
    """The key of a short token (the stored row's name), or None if ``token`` is none."""
    if len(token) != SHORT_LENGTH or not all(c.isascii() and (c.isalnum() or c in "-_")
                                             for c in token):
        return None
    return token[:SHORT_LENGTH // 2]


def link_record(secret: bytes, incident_id: str, village: str, recipient: str
                ) -> dict[str, str]:
    """What the store keeps of a short link, under :data:`LINK_PREFIX` + ``key`` (the store
    adds ``issued``). A message carrying the link has it in ``payload["field_links"]``."""
    token = short_token(secret, incident_id, village, recipient)
    return {"key": token[:SHORT_LENGTH // 2], "incident": incident_id, "village": village,
            "recipient": recipient}


def verify_short(secret: bytes, token: str, stored: Link | None, now: datetime,
                 ended: datetime | None = None) -> Link:
    """The link a short ``token`` stands for, given the row its key names (None: no row), or
    :class:`LinkError`."""
    if short_key(token) is None:
        raise LinkError("malformed link")
    if stored is None or not hmac.compare_digest(
            short_token(secret, stored.incident_id, stored.village, stored.recipient), token):
        raise LinkError("this link is not one of ours")
    if now - stored.issued > MAX_AGE or (ended is not None and now - ended > GRACE):
        raise LinkError("this link has expired")
    return stored


def redact_links(text: str) -> str:
    """``text`` with every personal link's token cut (``…/c/…``): whoever holds a token acts
    as the crew or the liaison it names, so it is shown only to those who may act."""
    return PERSONAL_LINK.sub(lambda m: f"/{m.group(1)}/{REDACTED}", text)


def stored_link(value: object) -> Link | None:
    """The link of a stored row (what :func:`link_record` gave, plus ``issued``), or None."""
    if not isinstance(value, dict):
        return None
    try:
        return Link(str(value["incident"]), str(value["village"]), str(value["recipient"]),
                    datetime.fromisoformat(str(value["issued"])))
    except (KeyError, ValueError):
        return None
