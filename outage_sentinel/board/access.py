"""Who may use the board and what they may do.

Passwords are hashed with argon2id (``argon2-cffi``). A session is a random token in an
HttpOnly, SameSite=Strict cookie; the database keeps only its SHA-256, with the session's CSRF
token, which every state-changing request must send back in ``X-CSRF-Token``. Failed sign-ins
are counted per user name in the audit table (so several board processes share the count):
after ``max_failed_sign_ins`` in a quarter of an hour each further attempt must wait, doubling
from 2 s up to 5 min.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
#: What each role may do beyond looking.
MAY_ACT: frozenset[str] = frozenset({"operator", "admin"})
#: Roles that see liaison and customer phone numbers unmasked.
MAY_SEE_PHONES: frozenset[str] = frozenset({"operator", "admin"})
#: The window failed sign-ins are counted in.
FAILURE_WINDOW = timedelta(minutes=15)
MAX_WAIT_SECONDS = 300.0
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


class AccessError(ValueError):
    """A user, role or password that cannot be accepted (the message says which)."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccessError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise AccessError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise AccessError(f"user name {name!r}: 1–100 characters, no spaces")
    return name


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class NewSession:
    token: str
    token_hash: str
    csrf: str


def new_session() -> NewSession:
    token = secrets.token_urlsafe(32)
    return NewSession(token, token_hash(token), secrets.token_urlsafe(24))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(expected, given or "")


def sign_in_wait(failures: Sequence[datetime], now: datetime, allowed: int) -> float:
    """Seconds the next attempt must still wait, given the failed attempts (oldest first) in
    :data:`FAILURE_WINDOW`: none for the first ``allowed``; then 2, 4, 8 … s (at most
    :data:`MAX_WAIT_SECONDS`) counted from the last failure."""
    recent = [f for f in failures if f > now - FAILURE_WINDOW]
    over = len(recent) - allowed + 1
    if over <= 0 or not recent:
        return 0.0
    wait = min(MAX_WAIT_SECONDS, 2.0 ** over)
    return max(0.0, wait - (now - recent[-1]).total_seconds())
