"""One page of an HTTP JSON feed fetched and read, for :mod:`outage_sentinel.sources.http_json`.

:class:`FeedClient` owns the HTTP side of a poll: the request (configured headers, query and
POST body, the page parameter, the conditional headers it is given), connect and read timeouts
and the limit on the whole download, the response-size cap enforced while streaming, retries
with exponential backoff for HTTP 5xx/429, timeouts, refused/reset connections and truncated
bodies, the status codes (304, redirects refused, errors), and the body decoded and parsed as
JSON. Every failure is a :class:`FeedError` naming the redacted URL, its message and raw body
scrubbed of the configured secret values.
"""

from __future__ import annotations

import codecs
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import structlog
import urllib3

from outage_sentinel.config import HttpJsonSourceConfig, PaginationConfig
from outage_sentinel.errors import exception_chain, parse_retry_after
from outage_sentinel.events import load_json
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sources.base import SourceError

__all__ = ["FeedClient", "FeedError", "FeedResponse", "RAW_LIMIT", "decode_body", "page_prefix",
           "raw_text", "redact_url"]

#: How much of a failed body is kept on :attr:`FeedError.raw` for quarantine.
RAW_LIMIT = 64 * 1024
#: Streaming read size; the size cap is checked after each chunk.
CHUNK_BYTES = 64 * 1024
USER_AGENT = "outage-sentinel (http_json source)"

log = structlog.get_logger(__name__)


class FeedError(SourceError):
    """A poll of an HTTP feed failed as a whole.

    Attributes: ``source`` (source name), ``url`` (redacted), ``reason`` (what went wrong, no
    secrets), ``status`` (HTTP status if a response came), ``raw`` (the body or its first
    :data:`RAW_LIMIT` characters, decoded leniently, or ``None``), ``retryable`` (whether
    trying again may help), ``retry_after`` (seconds the server asked to wait, if any).
    """

    def __init__(self, source: str, url: str, reason: str, *, status: int | None = None,
                 raw: str | None = None, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        self.source = source
        self.url = url
        self.reason = reason
        self.status = status
        self.raw = raw
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"source {source}: {reason} ({url})")


def redact_url(url: str) -> str:
    """``url`` without credentials and with every query value replaced by ``***``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class FeedResponse:
    """What one HTTP request of the feed answered."""

    status: int
    etag: str | None
    last_modified: str | None
    body: bytes
    charset: str | None


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            name = value.strip().strip('"')
            try:
                return codecs.lookup(name).name
            except LookupError:
                return None
    return None


def _os_reason(exc: BaseException) -> str:
    """The innermost OS-level reason of a connection error (``Connection refused``), no URL."""
    reasons = [e.strerror for e in exception_chain(exc)
               if isinstance(e, OSError) and e.strerror]
    found = reasons[-1] if reasons else None
    if found:
        return found
    name = type(exc).__name__
    text = str(exc)
    # Without an OS reason, name the failure by its class; urllib3's texts embed the URL.
    for marker in ("NameResolutionError", "Failed to resolve", "getaddrinfo"):
        if marker in text:
            return "host name could not be resolved"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "server closed the connection without a response"
    return name


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives, decompressed: each piece is what one read of the socket gave
    (at most :data:`CHUNK_BYTES`), so a server trickling a byte at a time is caught by the
    download deadline (``iter_content`` hands a chunk over only once it is full, and a
    trickle never lets a read time out). urllib3's errors become requests' own, as
    ``iter_content`` raises them."""
    raw = response.raw
    while True:
        try:
            data = raw.read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.exceptions.ConnectionError(exc) from exc
        if not data:
            return
        yield data


def _chain_has(exc: BaseException, name: str) -> bool:
    return any(type(e).__name__ == name or name in str(e.args[:1]) for e in exception_chain(exc))


def page_prefix(page: int | None) -> str:
    """How a message names the page it is about (nothing when the feed is not paged)."""
    return f"page {page}: " if page is not None else ""


def raw_text(body: bytes, charset: str | None) -> str:
    """A body as kept for quarantine: decoded leniently, at most :data:`RAW_LIMIT` characters."""
    return decode_body(body[:RAW_LIMIT * 4], charset, lenient=True)[:RAW_LIMIT]


def decode_body(body: bytes, charset: str | None, *, lenient: bool = False) -> str:
    """Decode a body: declared charset, else UTF-8 (BOM allowed), else GB18030."""
    errors = "replace" if lenient else "strict"
    if charset:
        try:  # a BOM is no character of the document, whatever the charset says
            return body.decode(charset, errors).removeprefix("\ufeff")
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Chinese government and utility back ends still emit GBK without saying so.
        return body.decode("gb18030", errors)


class FeedClient:
    """The HTTP side of an ``http_json`` source: it owns the session (closing it only when it
    made it), the request of one page with its timeouts, size cap and retries, the reading of
    its status and body, the body parsed as JSON, and the secrets kept out of every
    :class:`FeedError` it makes (:meth:`error`, which the source uses for its own failures).

    ``sleep``, ``clock`` and ``rand`` are injected so tests neither wait nor draw jitter.
    """

    def __init__(self, config: HttpJsonSourceConfig, pagination: PaginationConfig,
                 retry: RetryPolicy, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        self.name: str = config.name
        self.pagination = pagination
        self.retry = retry
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.url_redacted = redact_url(config.url)
        self._secrets = self._collect_secrets()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def _collect_secrets(self) -> list[str]:
        secrets: list[str] = [v.get_secret_value() for v in self.config.headers.values()]
        secrets += list(self.config.params.values())
        parts = urlsplit(self.config.url)
        secrets += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        secrets += [s for s in (parts.username, parts.password) if s]

        def leaves(value: Any) -> Iterator[str]:
            if isinstance(value, str):
                yield value
            elif isinstance(value, Mapping):
                for v in value.values():
                    yield from leaves(v)
            elif isinstance(value, list):
                for v in value:
                    yield from leaves(v)

        if self.config.body is not None:
            secrets += list(leaves(self.config.body))
        # Very short values ("1", "zh") would mangle messages and are no secret anyway.
        return sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def error(self, reason: str, **kwargs: Any) -> FeedError:
        """A :class:`FeedError` of this feed; ``reason`` and ``raw`` scrubbed of its secrets."""
        raw = kwargs.pop("raw", None)
        return FeedError(self.name, self.url_redacted, self._scrub(reason),
                         raw=self._scrub(raw) if raw is not None else None, **kwargs)

    def parse(self, response: FeedResponse, page: int | None) -> Any:
        """The page's body as JSON: decoded (:func:`decode_body`), else the poll fails. An
        integer of more digits than Python converts is a
        :class:`~outage_sentinel.events.LongNumber` (:func:`~outage_sentinel.events.load_json`).
        """
        where = page_prefix(page)
        try:
            text = decode_body(response.body, response.charset)
        except UnicodeDecodeError:
            raise self.error(f"{where}body is not text in UTF-8 or GB18030",
                             raw=raw_text(response.body, response.charset)) from None
        if not text.strip():
            raise self.error(f"{where}empty body (expected JSON)", raw="")
        try:
            # bounded: nesting too deep is bad JSON like any other (never a RecursionError
            # failing the poll with no reason and no quarantined body); a number of more
            # digits than Python converts is marked, and costs only the record holding it
            # (the record mapper refuses it naming its key), not the page
            return load_json(text, mark_long_numbers=True)
        except json.JSONDecodeError as exc:
            stripped = text.rstrip()
            if exc.pos >= len(stripped) - 1:
                reason = (f"{where}invalid JSON: document ends unexpectedly at char {exc.pos} "
                          f"({exc.msg}); the body looks truncated")
            else:
                reason = (f"{where}invalid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}")
            raise self.error(reason, raw=raw_text(response.body, response.charset)) from None

    def fetch(self, page: int | None, conditional: Mapping[str, str]) -> FeedResponse:
        """Request ``page`` (None: the feed is not paged) with the ``conditional`` headers,
        retrying what may pass; raise :class:`FeedError` when it failed for good."""
        attempts = self.config.retry.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._fetch_once(page, conditional)
            except FeedError as exc:
                if not exc.retryable or attempt == attempts:
                    if exc.retryable and attempts > 1:
                        exc.reason = f"{exc.reason} (gave up after {attempts} attempts)"
                        exc.args = (f"source {exc.source}: {exc.reason} ({exc.url})",)
                    raise
                delay = self.retry.delay(attempt, self._rand(), exc.retry_after)
                log.warning("http_json.retry", source=self.name, attempt=attempt,
                            max_attempts=attempts, reason=exc.reason, delay_s=round(delay, 3))
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request_args(self, page: int | None, conditional: Mapping[str, str]) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        headers.update(conditional)
        params: dict[str, str] = dict(self.config.params)
        body = dict(self.config.body) if self.config.body is not None else None
        if page is not None:
            if self.pagination.page_location == "body":
                body = {**(body or {}), self.pagination.page_param: page}
            else:
                params[self.pagination.page_param] = str(page)
        args: dict[str, Any] = {
            "method": self.config.method,
            "url": self.config.url,
            "params": params,
            "headers": headers,
            "timeout": (self.config.connect_timeout_seconds, self.config.timeout_seconds),
            "stream": True,
            "verify": self.config.verify_tls,
            # Configured headers carry credentials; following a redirect would hand them to
            # whatever host the feed points at. The operator configures the final URL instead.
            "allow_redirects": False,
        }
        if body is not None:
            args["json"] = body
        return args

    def _fetch_once(self, page: int | None, conditional: Mapping[str, str]) -> FeedResponse:
        where = page_prefix(page)
        cfg = self.config
        try:
            response = self._session.request(**self._request_args(page, conditional))
        except requests.exceptions.ConnectTimeout:
            raise self.error(f"{where}connect timed out after {cfg.connect_timeout_seconds:g}s",
                             retryable=True) from None
        except requests.exceptions.ReadTimeout:
            raise self.error(f"{where}no response within {cfg.timeout_seconds:g}s (timeout)",
                             retryable=True) from None
        except requests.exceptions.SSLError as exc:
            raise self.error(f"{where}TLS error: {_os_reason(exc)}") from None
        except requests.exceptions.ConnectionError as exc:
            raise self.error(f"{where}connection failed: {_os_reason(exc)}",
                             retryable=True) from None
        except requests.exceptions.RequestException as exc:
            raise self.error(f"{where}request failed: {type(exc).__name__}") from None
        with response:
            status = response.status_code
            charset = _charset(response.headers.get("Content-Type"))
            if status == 304:
                return FeedResponse(304, None, None, b"", charset)
            if status >= 500 or status == 429:
                body = self._read_body(response, page, min(cfg.max_response_bytes, RAW_LIMIT),
                                       truncate=True)
                raise self.error(f"{where}HTTP {status} {response.reason or ''}".rstrip(),
                                 status=status, raw=raw_text(body, charset), retryable=True,
                                 retry_after=self._retry_after(response))
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                target = redact_url(location) if "://" in location else "a relative location"
                raise self.error(f"{where}HTTP {status} redirect to {target}; redirects are "
                                 f"not followed, set url to the final address", status=status)
            if not 200 <= status < 300:
                body = self._read_body(response, page, min(cfg.max_response_bytes, RAW_LIMIT),
                                       truncate=True)
                raise self.error(f"{where}HTTP {status} {response.reason or ''}".rstrip(),
                                 status=status, raw=raw_text(body, charset))
            body = self._read_body(response, page, cfg.max_response_bytes)
            return FeedResponse(status, response.headers.get("ETag"),
                                response.headers.get("Last-Modified"), body, charset)

    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))

    def _read_body(self, response: requests.Response, page: int | None, limit: int,
                   *, truncate: bool = False) -> bytes:
        """Stream the body into memory, never holding more than ``limit`` (+1 chunk) bytes.

        ``truncate`` (used for error bodies we only keep for inspection) stops quietly at the
        limit instead of failing the poll on size.
        """
        where = page_prefix(page)
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise self.error(f"{where}response too large: Content-Length {declared} bytes "
                             f"exceeds max_response_bytes {limit}")
        deadline = self._clock() + max(self.config.timeout_seconds,
                                       self.config.connect_timeout_seconds)
        buf = bytearray()
        try:
            for chunk in _body_chunks(response):
                buf += chunk
                if len(buf) > limit:
                    if truncate:
                        return bytes(buf[:limit])
                    raise self.error(f"{where}response too large: more than {limit} bytes "
                                     f"(max_response_bytes); download aborted",
                                     raw=raw_text(bytes(buf[:RAW_LIMIT]), None))
                if self._clock() > deadline:
                    raise self.error(f"{where}download not finished within "
                                     f"{self.config.timeout_seconds:g}s (timeout)",
                                     retryable=True)
        except requests.exceptions.ChunkedEncodingError:
            if truncate:
                return bytes(buf)
            raise self.error(f"{where}truncated body: connection closed after {len(buf)} bytes"
                             + (f" of {declared}" if declared.isdigit() else ""),
                             raw=raw_text(bytes(buf), None), retryable=True) from None
        except requests.exceptions.ConnectionError as exc:
            if truncate:
                return bytes(buf)
            if _chain_has(exc, "ReadTimeoutError"):
                reason = f"{where}timed out reading the body after {len(buf)} bytes"
            else:
                reason = f"{where}connection lost reading the body: {_os_reason(exc)}"
            raise self.error(reason, raw=raw_text(bytes(buf), None), retryable=True) from None
        except requests.exceptions.ContentDecodingError:
            raise self.error(f"{where}body could not be decompressed",
                             raw=None) from None
        return bytes(buf)
