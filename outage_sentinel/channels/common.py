"""Shared plumbing for the channel senders: secret redaction, phone masking, one HTTP attempt.

Why one place: every sender must obey the same two rules, and a rule implemented six times is
broken in one of them.

* **Secrets never leave the sender.** ``requests`` puts the full URL — with the WeCom ``key``
  or the DingTalk ``access_token`` in it — into its exception messages, so exception text is
  never used raw: it goes through :class:`Redactor`, which replaces every configured secret
  (and its URL-encoded forms) and strips query strings.
* **Phone numbers are masked** (``138****1234``) in every detail text and log line: liaisons'
  numbers are personal data, and details end up in the command-centre summary.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests
import structlog
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.errors import exception_chain, parse_retry_after
from outage_sentinel.logs import PHONE, mask_phones, redact_secrets, register_secret
from outage_sentinel.textlimits import split_bytes, utf8_len

log = structlog.get_logger("outage_sentinel.channels")

#: Mainland mobile numbers, optionally with +86/0086 (one pattern for logs and channels).
_PHONE = PHONE
_URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


def mask_number(phone: str) -> str:
    """``13812341234`` → ``138****1234``; anything else keeps only its last 4 characters."""
    digits = phone.strip()
    m = _PHONE.fullmatch(digits)
    if m:
        return f"{m.group(2)}****{m.group(4)}"
    if len(digits) <= 4:
        return "****"
    return "****" + digits[-4:]


class Redactor:
    """Removes known secrets from text: the channel's own, registered in the process-wide
    registry (:func:`outage_sentinel.logs.register_secret`, with their URL-encoded forms), and
    every other secret registered there (values the config read from ``${ENV}``)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._count = 0
        for s in secrets:
            if s:
                register_secret(s)
                self._count += 1

    def __call__(self, text: str) -> str:
        # Query strings carry keys, tokens and signatures; drop them wholesale.
        out = _URL_QUERY.sub(r"\1?<redacted>", text)
        return mask_phones(redact_secrets(out))

    def __repr__(self) -> str:
        return f"Redactor({self._count} secrets)"


def retry(detail: str, retry_after: float | None = None) -> SendResult:
    """A failure the service certainly did not take the message in (try again later)."""
    return SendResult(Outcome.RETRY, detail, retry_after=retry_after)


def unconfirmed(detail: str) -> SendResult:
    """The request went out and no verdict came back: it may have been delivered
    (:attr:`SendResult.uncertain`; the outbox resends it once at most)."""
    return SendResult(Outcome.RETRY, detail, uncertain=True)


def rate_limited(detail: str, retry_after: float | None) -> SendResult:
    """The service refuses the target for ``retry_after`` seconds (its hint; ``None``: it
    gave none): every message to the target waits (:attr:`SendResult.rate_limited`)."""
    return SendResult(Outcome.RETRY, detail, retry_after=retry_after, rate_limited=True)


def permanent(detail: str) -> SendResult:
    return SendResult(Outcome.PERMANENT, detail)


def classify_code(raw: Any, msg: str, retry_codes: Mapping[int, float | None],
                  permanent_codes: Mapping[int, str], label: str = "errcode",
                  rate_codes: Collection[int] = ()) -> SendResult:
    """The verdict for a robot service's numeric result code (WeCom, DingTalk, Feishu).

    0 is delivered; listed codes retry (with the service's wait; ``rate_codes`` among them
    hold back the whole target, :func:`rate_limited`) or fail permanently; codes we don't
    recognise retry, bounded by the retry policy's max age: giving up on an unknown code could
    silently drop an outage notice, retrying costs a few requests. A code that is no number
    is no verdict: :func:`unconfirmed`.
    """
    try:
        code = int(raw)
    except (TypeError, ValueError):
        return unconfirmed(f"unreadable {label} {raw!r}; delivery unconfirmed")
    if code == 0:
        return delivered()
    if code in rate_codes:
        return rate_limited(f"{label} {code}: {msg}", retry_codes.get(code))
    if code in retry_codes:
        return retry(f"{label} {code}: {msg}", retry_codes[code])
    if code in permanent_codes:
        return permanent(f"{label} {code} ({permanent_codes[code]}): {msg}")
    return retry(f"{label} {code} (unrecognised): {msg}")


def delivered(detail: str = "ok", provider_id: str | None = None) -> SendResult:
    return SendResult(Outcome.DELIVERED, detail, provider_id=provider_id)


def split_message(message: Message, limit: int, *, markdown: bool) -> tuple[Message, ...]:
    """``message`` in parts whose text (or markdown) is at most ``limit`` UTF-8 bytes, cut at
    line breaks where it can and ending " (i/n)"; each part keeps the mentions and gets the key
    ``KEY#i/n``. The message itself when it fits."""
    body = (message.markdown or "") if markdown else message.text
    if utf8_len(body) <= limit:
        return (message,)
    pieces = split_bytes(body, limit, number=True)
    n = len(pieces)
    return tuple(replace(message, key=f"{message.key}#{i}/{n}", text=p,
                         markdown=p if markdown else message.markdown)
                 for i, p in enumerate(pieces, 1))


@dataclass(frozen=True)
class HttpReply:
    """A completed HTTP exchange: status, parsed JSON (if any), and a short body excerpt."""

    status: int
    body: Any
    text: str
    headers: Mapping[str, str]

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds (delta or HTTP-date, capped), if present."""
        return parse_retry_after(self.headers.get("Retry-After"), datetime.now(UTC))


def http_attempt(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    redact: Redactor,
    json_body: Any = None,
    data: bytes | Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpReply | SendResult:
    """Make one request. Returns the reply, or a RETRY result for transport failures.

    Transport failures are always RETRY. Those after the request may have gone out (a timeout
    waiting for the reply, a connection dropped mid-exchange) are :func:`unconfirmed`: the
    outbox tolerates one duplicate but never a loss, and never a second duplicate. Those before
    it left (refused, unknown host, connect timeout, TLS handshake) are a plain retry. Only the
    exception *class* and a redacted message are reported.
    """
    body = data
    hdrs = dict(headers or {})
    if json_body is not None:
        # ensure_ascii=False: the services count UTF-8 bytes, and \\uXXXX escapes would triple
        # the size of Chinese text against the body limits.
        body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
    try:
        resp = session.request(method, url, data=body, headers=hdrs, timeout=timeout,
                               allow_redirects=False)
    except requests.RequestException as exc:
        return transport_failure(exc, timeout, redact)
    text = resp.text[:2000] if resp.content else ""
    parsed: Any = None
    if resp.content:
        try:
            parsed = resp.json()
        except ValueError:
            parsed = None
    return HttpReply(resp.status_code, parsed, text, dict(resp.headers))


def transport_failure(exc: requests.RequestException, timeout: float,
                      redact: Redactor) -> SendResult:
    """The RETRY for a request that raised ``exc``: :func:`unconfirmed` once the request may
    have gone out (a timeout waiting for the reply, a connection lost mid-exchange, a reply cut
    off), a plain retry when it cannot have (refused, unknown host, connect timeout, TLS)."""
    name = redact(type(exc).__name__)
    if isinstance(exc, requests.ConnectTimeout):
        return retry(f"connect timeout after {timeout:g} s")
    if isinstance(exc, requests.Timeout):
        return unconfirmed(f"timeout after {timeout:g} s waiting for the reply; "
                           "delivery unconfirmed")
    if isinstance(exc, requests.ConnectionError):
        if _refused(exc):
            return retry(f"connection refused: {name}")
        if never_sent(exc):
            return retry(f"connection failed: {name}")
        return unconfirmed(f"connection lost: {name}; delivery unconfirmed")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return unconfirmed(f"reply cut off: {name}; delivery unconfirmed")
    return retry(f"request failed: {name}: {redact(str(exc))[:200]}")


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e)
               for e in exception_chain(exc))


def never_sent(exc: BaseException) -> bool:
    """Whether a connection error happened before the request could leave: no connection was
    made (refused, unknown host, connect timeout), or the TLS handshake or the proxy failed."""
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    return any(isinstance(e, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError,
                              socket.gaierror)) for e in exception_chain(exc))


def http_status_result(reply: HttpReply, redact: Redactor) -> SendResult | None:
    """Classify a reply by HTTP status alone, when the body carries no service verdict.

    429 → RETRY holding back the target (:func:`rate_limited`, for Retry-After); 5xx / 408 /
    425 → RETRY (honouring Retry-After); other non-2xx → PERMANENT (a 404 means a wrong URL or
    key, which repeating won't fix). ``None`` for 2xx: the caller must read the body, because
    200 alone is never proof of delivery.
    """
    if 200 <= reply.status < 300:
        return None
    excerpt = redact(reply.text[:200]).replace("\n", " ")
    if reply.status == 429:
        return rate_limited(f"HTTP 429: {excerpt}".strip(), reply.retry_after())
    if reply.status >= 500 or reply.status in (408, 425):
        return retry(f"HTTP {reply.status}: {excerpt}".strip(), reply.retry_after())
    return permanent(f"HTTP {reply.status}: {excerpt}".strip())


def log_result(channel: str, channel_type: str, target: str, key: str, result: SendResult,
               redact: Redactor) -> None:
    """One structured log line per attempt; target masked, detail redacted."""
    level = "info" if result.outcome is Outcome.DELIVERED else "warning"
    getattr(log, level)(
        "channel_send",
        channel=channel,
        channel_type=channel_type,
        target=mask_phones(target),
        key=mask_phones(key),
        outcome=result.outcome.value,
        retry_after=result.retry_after,
        detail=redact(result.detail),
    )


def safe_result(result: SendResult, redact: Redactor) -> SendResult:
    """Re-check a result's detail on the way out (belt and braces for secrets and phones)."""
    clean = redact(result.detail)
    if clean == result.detail:
        return result
    return replace(result, detail=clean)


class HttpChannel:
    """Base for the senders: the ``send`` wrapper that guarantees the Channel contract.

    Subclasses implement :meth:`_send`. The wrapper makes sure that ``send`` never raises (a
    bug in one sender must not stop the delivery loop for every other target), that the detail
    is redacted, and that every attempt is logged exactly once.
    """

    type: str = "base"

    def __init__(self, name: str, *, timeout: float, secrets: Iterable[str] = (),
                 rate_limits: tuple[Any, ...] = (),
                 session: requests.Session | None = None) -> None:
        self.name = name
        self.timeout = timeout
        self.rate_limits = rate_limits
        self._redact = Redactor(secrets)
        self._session = session or requests.Session()
        # No proxies from the environment in tests pointing at 127.0.0.1; production proxies
        # still apply through HTTPS_PROXY for the real service hosts.
        self._session.headers["User-Agent"] = "outage-sentinel"

    def __repr__(self) -> str:
        # Never show config (it holds the keys).
        return f"{type(self).__name__}(name={self.name!r})"

    def rate_keys(self, message: Any) -> tuple[str, ...]:
        """What the service counts requests by; the robot, i.e. the target group, by default."""
        return (str(message.target),)

    def send(self, message: Any) -> SendResult:
        try:
            result = self._send(message)
        except Exception as exc:  # the contract: never raise for one message
            result = retry(f"internal error in {self.type} sender: {type(exc).__name__}: "
                           f"{self._redact(str(exc))[:200]}")
        result = safe_result(result, self._redact)
        log_result(self.name, self.type, str(message.target), str(message.key), result,
                   self._redact)
        return result

    def _send(self, message: Any) -> SendResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def already_delivered(self, key: str) -> bool | None:
        # Robots and SMS keep no queryable record of our key.
        return None

    def close(self) -> None:
        self._session.close()


class SignedRobotChannel(HttpChannel):
    """A group robot per target with an access token and an optional signing secret
    (DingTalk, Feishu). Signatures embed the time; the services reject one far off, so the
    clock is injectable for tests."""

    def __init__(self, name: str, *, robots: dict[str, tuple[str, str | None]], base_url: str,
                 timeout: float = 10.0, rate_limits: tuple[Any, ...] = (),
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        secrets = [s for pair in robots.values() for s in pair if s]
        super().__init__(name, timeout=timeout, secrets=secrets, rate_limits=rate_limits,
                         session=session)
        self._robots = dict(robots)
        self._base = base_url.rstrip("/")
        self._clock = clock
