"""Structured logging: structlog, one JSON object per line.

Two processors guard what reaches the log: phone numbers are masked (``138****5678``), and
every secret value registered with :func:`register_secret` (webhook keys, SMS credentials, DB
passwords, read from the environment) is replaced by ``***`` wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog

# The optional country code (+86 / 86 / 0086 glued to the number, as E.164 and SMS APIs write
# it) is kept but must not hide the number from the mask; nor must the spaces or hyphens people
# type in 3-4-4 groups (139 1111 0011, 139-1111-0012).
# Dots too (138.1234.5678). Full-width digits and separators, as a Chinese input method types
# them (１３８１２３４５６７８), are matched on an ASCII copy of the text (:data:`_ASCII`).
PHONE = re.compile(r"(?<!\d)((?:\+?86|0086)[- ]?)?(1[3-9]\d)[-. ]?(\d{4})[-. ]?(\d{4})(?!\d)")
#: Full-width digits, plus, hyphen, dot, brackets and space -> ASCII, one character for one,
#: so that a match on the copy has the same span in the original.
_ASCII = str.maketrans("０１２３４５６７８９＋－．（）\u3000", "0123456789+-.() ")
#: The one secret registry of the process: every value read from ``${ENV}`` in the config
#: (registered by :mod:`outage_sentinel.config` as it interpolates), every SecretStr, every
#: channel credential, each with its URL-encoded forms so a key inside a URL or a form body is
#: found as well.
_secrets: set[str] = set()
_MIN_SECRET = 4


#: A mainland landline: a 3- or 4-digit area code (0…, in brackets or not), a local number of
#: 7 or 8 digits (in one piece or split by a space or dash), maybe an extension; not inside a
#: word, a decimal or a longer number.
LANDLINE = re.compile(r"(?<![0-9A-Za-z_.\-－])(\(?0[1-9]\d{1,2}\)?)([- －]?)([2-9]\d{2,3})"
                      r"([- ]?)(\d{4})(?:-\d{1,5})?(?![0-9A-Za-z_.]|[-－]\d)")


def mask_phones(text: str) -> str:
    """Mask mainland mobile and landline numbers in ``text``: 13812345678 -> 138****5678,
    0316-5551234 -> 0316-****1234. Twelve digits in one piece are left alone: more likely an
    id (a meter's) than a 4-digit area code with an 8-digit number written unbroken."""
    text = _sub_ascii(PHONE, lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)
    return _sub_ascii(LANDLINE, _masked_landline, text)


def _sub_ascii(pattern: re.Pattern[str], masked: Any, text: str) -> str:
    """``pattern.sub(masked, text)`` with the matches found on ``text`` read in ASCII
    (:data:`_ASCII`); the text outside them is left as written."""
    plain = text.translate(_ASCII)
    if plain == text:
        return pattern.sub(masked, text)
    out: list[str] = []
    last = 0
    for m in pattern.finditer(plain):
        out += [text[last:m.start()], masked(_AsWritten(m, text))]
        last = m.end()
    return "".join(out) + text[last:]


class _AsWritten:
    """A match found on the ASCII copy, its groups read from the text as written (a kept
    separator stays full-width where it was)."""

    def __init__(self, match: re.Match[str], text: str) -> None:
        self._match, self._text = match, text

    def group(self, index: int = 0) -> str | None:
        if self._match.group(index) is None:
            return None
        return self._text[self._match.start(index):self._match.end(index)]


def _masked_landline(m: re.Match[str]) -> str:
    whole = re.sub(r"\D", "", m.group(0))
    if not m.group(2) and not m.group(4) and not m.group(1).startswith("(") and len(whole) >= 12:
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}****{m.group(5)}"


def register_secret(value: str | None) -> None:
    """Never show ``value`` in logs, stored errors, CLI output or reprs.

    Ignored when shorter than 4 characters: too likely to hit ordinary text.
    """
    if not value or len(value) < _MIN_SECRET:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    _secrets.update(f for f in forms if len(f) >= _MIN_SECRET)


def reset_secrets() -> None:
    """Forget every registered secret (for tests that must start from a clean registry)."""
    _secrets.clear()


def redact_secrets(text: str) -> str:
    """Replace every registered secret in ``text`` by ``***`` (phones left alone)."""
    # Longest first, so a secret containing another secret is replaced whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact(text: str) -> str:
    """Mask phones and registered secrets in ``text``."""
    return mask_phones(redact_secrets(text))


def escape_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``\\udcb5``): a GBK file
    name read on a UTF-8 host, a JSON ``"\\ud800"``. UTF-8 cannot encode one, and a log line
    holding one made the log call itself raise."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return escape_surrogates(redact(value))
    if isinstance(value, int) and not isinstance(value, bool) and PHONE.fullmatch(str(value)):
        return mask_phones(str(value))  # a phone number that arrived as a number
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return value


def scrub_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]
                    ) -> MutableMapping[str, Any]:
    """structlog processor: mask phones and secrets in every value, escape lone surrogates."""
    return {escape_surrogates(k): _scrub(v) for k, v in event_dict.items()}


class SafePrintLogger(structlog.PrintLogger):
    """structlog's printer, except that a line it cannot write (a closed stream, a full disk)
    is dropped, not raised into the caller: a poll or a send never fails for its log line
    (the standard library's handlers behave so too)."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except Exception:  # noqa: S110 (nowhere left to say it)
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def capture_warnings() -> None:
    """Python warnings (a bundle's names several nodes share: TopologyWarning) join the log
    stream as lines of their own, not bare text on stderr a log collector would drop. Off
    first: a second configure, or a stale capture, would leave someone else's printer."""
    logging.captureWarnings(False)
    logging.captureWarnings(True)


def configure(level: str = "INFO", fmt: str = "json", file: Path | None = None,
              stream: TextIO | None = None) -> None:
    """Configure structlog for the daemon and the CLI."""
    out = _log_stream(file, stream)
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    _route_library_logs(out, shared, renderer, level)
    capture_warnings()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=lambda *_args: SafePrintLogger(out),
        cache_logger_on_first_use=False,
    )


def _log_stream(file: Path | None, stream: TextIO | None) -> TextIO:
    """Where the log lines go: ``file`` (appended to, its folder made), else ``stream``, else
    stderr."""
    if file is None:
        return stream or sys.stderr
    file.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace, as Python's own stderr: nothing written may raise (lone surrogates
    # are escaped by scrub_processor already; this is for anything that slips past it).
    return open(file, "a", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                buffering=1)  # lives with the process


def _route_library_logs(out: TextIO, shared: list[Any], renderer: Any, level: str) -> None:
    """Libraries (APScheduler, paho) log through the standard library: their records are
    rendered the same way (``shared`` processors, then scrubbed, then ``renderer``), into the
    same stream ``out``, so an operator's log is one JSON object per line. The handler a
    previous call installed is replaced."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, scrub_processor, renderer]))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_outage_sentinel", False)]:
        root.removeHandler(old)
    handler._outage_sentinel = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
    # APScheduler says "Running job ..." / "executed successfully" at INFO for every run of
    # every job (several a second); only its warnings and errors belong in an operator's log.
    # The daemon reports skipped and failed jobs itself (job_skipped / job_failed, counted in
    # outage_sentinel_scheduler_jobs_missed_total); the scheduler's own lines would repeat them.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("outage_sentinel").bind(**bind)
