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

import hashlib
import json
import re
import socket
import ssl
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests
import structlog
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.errors import exception_chain, parse_retry_after
from outage_sentinel.logs import PHONE, mask_phones, redact_secrets, register_secret
from outage_sentinel.textlimits import split_bytes, trim_bytes, utf8_len

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


def unconfirmed(detail: str, retry_after: float | None = None) -> SendResult:
    """The request went out and no verdict came back: it may have been delivered
    (:attr:`SendResult.uncertain`; the outbox resends it once at most)."""
    return SendResult(Outcome.RETRY, detail, retry_after=retry_after, uncertain=True)


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
    ``KEY#i/n``. The message itself when it fits.

    Every part after the first starts with the message's first line, its heading, marked as a
    continuation (:func:`continued_heading`): a robot with keyword security (DingTalk 310000,
    Feishu 19024) refuses a part without its keyword — for good, after the first part was
    posted — and the keyword is in the heading (【故障停电】, 【抢修派工】…).
    """
    body = (message.markdown or "") if markdown else message.text
    if utf8_len(body) <= limit:
        return (message,)
    prefix = continued_heading(body, limit // 4)
    pieces = split_bytes(body, limit - utf8_len(prefix), number=True)
    pieces = [pieces[0], *(prefix + p for p in pieces[1:])]
    n = len(pieces)
    return tuple(replace(message, key=f"{message.key}#{i}/{n}", text=p,
                         markdown=p if markdown else message.markdown)
                 for i, p in enumerate(pieces, 1))


def continued_heading(body: str, room: int) -> str:
    """The line that opens a part after the first: ``body``'s first line (trimmed to fit
    ``room`` bytes with the marker) plus "（续）" — " (cont.)" for a heading without Chinese —
    and a line break. Empty when ``body`` has no heading to repeat."""
    heading = body.strip().split("\n", 1)[0].strip()
    if not heading:
        return ""
    mark = "（续）" if any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"
                          for ch in heading) else " (cont.)"
    line = trim_bytes(heading, max(room - utf8_len(mark) - 1, 0)) + mark
    return line + "\n" if utf8_len(line) + 1 <= room else ""


@dataclass(frozen=True)
class HttpReply:
    """A completed HTTP exchange: status, parsed JSON (if any), and a short body excerpt."""

    status: int
    body: Any
    text: str
    headers: Mapping[str, str]

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds (delta or HTTP-date, capped), if present."""
        return parse_retry_after(self.header("Retry-After"), datetime.now(UTC))

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case (the reply's mapping is a plain dict)."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def not_from_the_service(self) -> bool:
        """Whether this reply cannot be the robot's or Aliyun's own: they answer JSON only,
        so an HTML page (``text/html``, or a body that is no JSON and does not even start
        like it) comes from something in between — a proxy's block or maintenance page, a
        gateway's error page — which did not pass the request on. An empty body or one that
        starts like JSON but does not parse may be the service's own reply cut short, so it
        is not counted here (it stays "delivery unconfirmed")."""
        if "text/html" in (self.header("Content-Type") or "").lower():
            return True
        text = self.text.lstrip()
        return self.body is None and bool(text) and not text.startswith(("{", "["))


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
    it left (refused, unknown host, connect timeout, a failed TLS handshake) are a plain retry.
    Only the exception *class* and a redacted message are reported.
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
    off, a TLS error after the handshake), a plain retry when it cannot have (refused, unknown
    host, connect timeout, TLS handshake)."""
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
    made (refused, unknown host, connect timeout), the proxy failed, or the TLS handshake did.
    ``requests`` raises the same ``SSLError`` for a TLS stream that breaks while the reply is
    read — after the request went out — so a TLS error counts only when it was raised while
    connecting (:func:`in_tls_handshake`)."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return True
    if any(isinstance(e, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError,
                          socket.gaierror)) for e in exception_chain(exc)):
        return True
    return isinstance(exc, requests.exceptions.SSLError) and in_tls_handshake(exc)


#: Where urllib3 and :mod:`ssl` make a connection: a TLS error raised inside one of them came
#: before a byte of the request was sent (``_validate_conn`` connects before the request).
_CONNECT_FRAMES = frozenset({"_validate_conn", "_new_conn", "connect", "do_handshake",
                             "_ssl_wrap_socket_and_match_hostname", "ssl_wrap_socket"})


def in_tls_handshake(exc: BaseException) -> bool:
    """Whether the TLS error ``exc`` wraps was raised while connecting: a certificate that
    does not verify (only checked in the handshake), or a TLS error whose traceback passes
    through the connection's set-up. The exception types alone can't tell: urllib3 wraps a
    handshake failure and a record broken mid-reply alike."""
    for e in exception_chain(exc):
        if isinstance(e, (ssl.SSLCertVerificationError, ssl.CertificateError)):
            return True
        if isinstance(e, (ssl.SSLError, urllib3_exceptions.SSLError)) and any(
                frame.f_code.co_name in _CONNECT_FRAMES
                for frame, _ in traceback.walk_tb(e.__traceback__)):
            return True
    return False


#: A gateway's "the service behind me was too slow" (504): the request may well have reached
#: the service and been acted on (a 504 after the robot posted the text), so it means what a
#: timeout waiting for the reply means. A 502 (the gateway could not reach the service, or
#: got garbage back) stays a plain retry: a gateway down for minutes answers it to every
#: request, and two "uncertain" sends dead-letter a notice — a loss to save a duplicate.
GATEWAY_STATUSES = frozenset({504})


def http_status_result(reply: HttpReply, redact: Redactor) -> SendResult | None:
    """Classify a reply by HTTP status alone, when the body carries no service verdict.

    429 → RETRY holding back the target (:func:`rate_limited`, for Retry-After); 504 →
    :func:`unconfirmed` (a gateway's verdict on the service behind it, which may have taken the
    message: resent once at most); other 5xx / 408 / 425 → RETRY (honouring Retry-After);
    other non-2xx → PERMANENT (a 404 means a wrong URL or key, which repeating won't fix).
    ``None`` for 2xx: the caller must read the body, because 200 alone is never proof of
    delivery.
    """
    if 200 <= reply.status < 300:
        return None
    excerpt = redact(reply.text[:200]).replace("\n", " ")
    if reply.status == 429:
        return rate_limited(f"HTTP 429: {excerpt}".strip(), reply.retry_after())
    if reply.status in GATEWAY_STATUSES:
        return unconfirmed(f"HTTP {reply.status} from a gateway: {excerpt}; the service behind "
                           "it may have taken it; delivery unconfirmed", reply.retry_after())
    if reply.status >= 500 or reply.status in (408, 425):
        return retry(f"HTTP {reply.status}: {excerpt}".strip(), reply.retry_after())
    return permanent(f"HTTP {reply.status}: {excerpt}".strip())


def no_verdict(reply: HttpReply, field: str, redact: Redactor) -> SendResult:
    """The RETRY for a 2xx reply without the service's verdict (``field``). A reply that is
    not the service's own (:meth:`HttpReply.not_from_the_service`: a proxy's HTML page) is a
    plain retry, bounded by the max age — the request did not get through, and calling it
    "unconfirmed" dead-letters the notice at the second such page. JSON without the verdict
    may come from the service itself: :func:`unconfirmed` (resent once at most)."""
    if reply.not_from_the_service():
        kind = reply.header("Content-Type") or "no content type"
        excerpt = redact(reply.text[:120]).replace("\n", " ")
        return retry(f"HTTP {reply.status} reply is not the service's ({kind}, not JSON: "
                     f"{excerpt}); not taken")
    return unconfirmed(f"no {field} in reply; delivery unconfirmed")


def robot_rate_key(credential: str) -> str:
    """The limiter key of the robot ``credential`` (its webhook key or access token) names: a
    hash, stable across restarts, nodes and renamed targets. Never the credential itself: the
    key is logged ("target_blocked") and stored in clear (``rate:<key>`` rows)."""
    digest = hashlib.sha256(f"outage-sentinel robot\n{credential}".encode()).hexdigest()
    return f"robot-{digest[:20]}"


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
        """What the service counts requests by: the robot (:func:`robot_rate_key`), which
        several targets may share — a township group holding several villages' liaisons,
        configured once per village with one webhook — so they share its budget and its
        blocks; the target itself when it has no robot."""
        credential = self.robot_credential(str(message.target))
        return (robot_rate_key(credential),) if credential else (str(message.target),)

    def robot_credential(self, target: str) -> str | None:
        """The key or token naming ``target``'s robot; ``None`` for senders without robots."""
        return None

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

    def robot_credential(self, target: str) -> str | None:
        """The access token (or hook token) of ``target``'s robot: the service counts per
        robot, and the secret only signs."""
        robot = self._robots.get(target)
        return robot[0] if robot else None
