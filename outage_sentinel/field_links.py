"""Personal links for the field: a liaison's (or a crew's) link to one incident's page.

A token names one incident, one village and one recipient, and when it was issued; it is
signed with HMAC-SHA256 under a secret from the environment, so it cannot be forged or moved to
another incident, village or recipient. It expires ``grace`` after the incident closed (or was
cancelled), and in any case ``max_age`` after issue. Pure: the secret and ``now`` come in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
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


class LinkError(ValueError):
    """A token that is malformed, forged, for something else, or expired."""


@dataclass(frozen=True)
class Link:
    incident_id: str
    village: str
    recipient: str
    issued: datetime


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
