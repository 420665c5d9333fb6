"""SMTP e-mail: STARTTLS, implicit TLS or plain, a text part plus an HTML alternative.

One connection per message: notices are rare outside storms, and a long-lived SMTP connection
mostly collects server-side idle timeouts. The ``Message-ID`` is derived from the outbox key,
so if a crash makes us send the same message twice, mail clients and archives see one message.

Classification follows SMTP reply codes: 4xx is transient (RETRY), 5xx is permanent (bad
address, authentication refused), and anything on the transport (refused, timeout, dropped
connection) is RETRY.
"""

from __future__ import annotations

import hashlib
import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

from outage_sentinel.channels.base import Message, SendResult
from outage_sentinel.channels.common import (
    Redactor,
    delivered,
    log_result,
    permanent,
    retry,
    safe_result,
    unconfirmed,
)
from outage_sentinel.logs import mask_phones


def message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@outage-sentinel>"


def to_html(message: Message) -> str:
    """The HTML alternative: the renderer's ``params["html"]`` if given, else the text, escaped."""
    given = message.params.get("html") if message.params else None
    if isinstance(given, str) and given:
        return given
    body = html.escape(message.markdown or message.text).replace("\n", "<br>\n")
    title = html.escape(message.subject)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
            f'<body><div style="font-family:sans-serif;line-height:1.5">{body}</div>'
            f"</body></html>")


def _lost(exc: BaseException, timeout: float) -> str:
    """What became of a connection that stopped answering (smtplib reports a read timeout as
    a disconnect, "...: timed out")."""
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timeout after {timeout:g} s"
    return "server disconnected"


def _code_result(code: int, what: str) -> SendResult:
    if 400 <= code < 500:
        return retry(f"SMTP {code} {what}")
    return permanent(f"SMTP {code} {what}")


class EmailChannel:
    """Sends one e-mail per message to ``Message.target`` (comma-separated addresses)."""

    type = "email"

    def __init__(self, name: str, *, host: str, port: int = 587,
                 security: Literal["starttls", "ssl", "none"] = "starttls",
                 username: str | None = None, password: str | None = None, sender: str,
                 timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.security = security
        self.sender = sender
        self.timeout = timeout
        self.rate_limits: tuple[Any, ...] = ()
        self._username = username
        self._password = password
        self._context = ssl_context or ssl.create_default_context()
        self._redact = Redactor([password or ""])

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r}, host={self.host!r}, port={self.port})"

    def rate_keys(self, message: Message) -> tuple[str, ...]:
        return (message.target,)

    def build(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.target
        subject = message.subject or (message.text.strip().splitlines() or ["Outage Sentinel"])[0]
        mail["Subject"] = subject[:200]
        mail["Message-ID"] = message_id(message.key)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["X-Outage-Sentinel-Key"] = mask_phones(message.key)
        mail.set_content(message.text or message.markdown or "")
        mail.add_alternative(to_html(message), subtype="html")
        return mail

    def send(self, message: Message) -> SendResult:
        try:
            result = self._send(message)
        except Exception as exc:  # the Channel contract: never raise
            result = retry(f"internal error in email sender: {type(exc).__name__}")
        result = safe_result(result, self._redact)
        log_result(self.name, self.type, message.target, message.key, result, self._redact)
        return result

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=self._context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.ehlo()
            smtp.starttls(context=self._context)
            smtp.ehlo()
        return smtp

    def _send(self, message: Message) -> SendResult:
        recipients = [a.strip() for a in message.target.split(",") if a.strip()]
        if not recipients:
            return permanent("no recipient address")
        mail = self.build(message)
        sending = False  # from the mail transaction on, a lost reply leaves the outcome open
        refused: dict[str, tuple[int, bytes]] | None = None
        try:
            with self._connect() as smtp:
                if self._username:
                    smtp.login(self._username, self._password or "")
                sending = True
                refused = smtp.send_message(mail, from_addr=self.sender, to_addrs=recipients)
        except Exception as exc:
            if refused is None:  # else the server took it and only the goodbye failed
                return self._failure(exc, sending)
        if refused:
            # Some accepted, some not: resending would duplicate for the accepted ones.
            return delivered(f"delivered; refused for {len(refused)} recipient(s)")
        return delivered()

    def _failure(self, exc: BaseException, sending: bool) -> SendResult:
        """The outcome of an exchange that raised ``exc``; ``sending``: the mail transaction
        had begun, so a connection lost from then on may have delivered it."""
        if isinstance(exc, (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionResetError)):
            if sending:
                return unconfirmed(f"{_lost(exc, self.timeout)} during the mail transaction; "
                                   "delivery unconfirmed")
            return retry(_lost(exc, self.timeout))
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            # All refused: transient only if every refusal was a 4xx.
            if codes and all(400 <= c < 500 for c in codes):
                return retry(f"all recipients temporarily refused ({codes})")
            return permanent(f"recipients refused ({codes})")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return _code_result(exc.smtp_code, "authentication failed")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return permanent(f"server does not support {self.security} or AUTH")
        if isinstance(exc, smtplib.SMTPResponseException):
            return _code_result(exc.smtp_code, "refused")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return permanent("TLS certificate verification failed")
        if isinstance(exc, ConnectionRefusedError):
            return retry("connection refused")
        if isinstance(exc, (OSError, smtplib.SMTPException)):
            return retry(f"transport error: {type(exc).__name__}")
        raise exc

    def already_delivered(self, key: str) -> bool | None:
        return None

    def close(self) -> None:
        return None
