"""SMTP e-mail against a local aiosmtpd server: plain, STARTTLS with AUTH, refusals."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from outage_sentinel.channels.base import ChannelError, Message, Outcome
from outage_sentinel.channels.email import EmailChannel, message_id
from outage_sentinel.channels.registry import build_channel
from outage_sentinel.config import EmailChannelConfig, load_config, parse_config

PASSWORD = "Sm7p-Pa55w0rd-Example"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # noqa: N802 - aiosmtpd API
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"ops"
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    yield handler, port
    ctl.stop()


def msg(**kw: object) -> Message:
    base: dict[str, object] = dict(key="I5/1/cc:ops/summary", channel="mail",
                                   target="ops@example.cn", subject="故障汇总",
                                   text="3 起故障\n张家村 <停电>", audience="command_centre")
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def test_plain_text_and_html_alternative(smtp: tuple[Handler, int]) -> None:
    handler, port = smtp
    ch = EmailChannel("mail", host="127.0.0.1", port=port, security="none",
                      sender="sentinel@example.cn", timeout=5)
    assert ch.send(msg()).outcome is Outcome.DELIVERED
    ((mail_from, rcpts, raw),) = handler.messages
    assert mail_from == "sentinel@example.cn" and rcpts == ["ops@example.cn"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "故障汇总"
    assert parsed["Message-ID"] == message_id("I5/1/cc:ops/summary")
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").strip() == "3 起故障\n张家村 <停电>"
    assert "张家村 &lt;停电&gt;" in html.get_content()


@contextmanager
def starttls_server(cert: tuple[Path, Path], **kw: Any) -> Iterator[tuple[Handler, int]]:
    """A real SMTP server on loopback that requires STARTTLS with ``cert``."""
    key, crt = cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    handler = Handler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port, tls_context=server_ctx,
                     require_starttls=True, **kw)
    ctl.start()
    try:
        yield handler, port
    finally:
        ctl.stop()


def test_starttls_with_auth(cert: tuple[Path, Path]) -> None:
    crt = cert[1]
    server = starttls_server(cert, authenticator=authenticator, auth_required=True)
    with server as (handler, port):
        client_ctx = ssl.create_default_context(cafile=str(crt))
        ch = EmailChannel("mail", host="127.0.0.1", port=port, security="starttls",
                          username="ops", password=PASSWORD, sender="sentinel@example.cn",
                          timeout=5, ssl_context=client_ctx)
        assert ch.send(msg()).outcome is Outcome.DELIVERED
        assert len(handler.messages) == 1
        bad = EmailChannel("mail", host="127.0.0.1", port=port, security="starttls",
                           username="ops", password="wrong-" + PASSWORD, sender="s@example.cn",
                           timeout=5, ssl_context=client_ctx)
        result = bad.send(msg())
        assert result.outcome is Outcome.PERMANENT and "535" in result.detail
        assert PASSWORD not in str(result)
        # An untrusted certificate is a configuration problem, not a transient one.
        untrusting = EmailChannel("mail", host="127.0.0.1", port=port, security="starttls",
                                  sender="s@example.cn", timeout=5)
        assert untrusting.send(msg()).outcome is Outcome.PERMANENT


def test_ca_file_from_the_config_trusts_a_private_ca(cert: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    """An intranet mail server signed by a private CA: the channel built from the config with
    ``ca_file`` trusts it; one without does not; a file that is no CA is refused at start."""
    crt = cert[1]
    with starttls_server(cert) as (handler, port):
        base = {"type": "email", "host": "127.0.0.1", "port": port, "sender": "s@example.cn"}
        trusting = build_channel("mail", parse_channel({**base, "ca_file": str(crt)}))
        assert trusting.send(msg()).outcome is Outcome.DELIVERED
        assert len(handler.messages) == 1
        default = build_channel("mail", parse_channel(base))
        assert default.send(msg()).outcome is Outcome.PERMANENT
    junk = tmp_path / "not-a-ca.pem"
    junk.write_text("hello", encoding="utf-8")
    for ca_file, problem in ((junk, "cannot load"), (tmp_path / "missing.pem", "cannot load")):
        with pytest.raises(ChannelError, match=rf"channels\.mail\.ca_file: {problem}"):
            build_channel("mail", parse_channel({**base, "ca_file": str(ca_file)}))
    with pytest.raises(ChannelError, match="only used with starttls or ssl"):
        build_channel("mail", parse_channel({**base, "security": "none", "ca_file": str(crt)}))


def test_ca_file_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir()
    config.write_text(
        "sources: [{name: r, type: replay, scenario: x.jsonl}]\n"
        "channels: {mail: {type: email, host: smtp.example.cn, sender: s@example.cn,"
        " ca_file: certs/intranet-ca.pem}}\n", encoding="utf-8")
    loaded = load_config(config).channels["mail"]
    assert isinstance(loaded, EmailChannelConfig)
    assert loaded.ca_file == tmp_path / "etc" / "certs" / "intranet-ca.pem"


def parse_channel(data: dict[str, Any]) -> Any:
    return parse_config({"sources": [{"name": "r", "type": "replay", "scenario": "x.jsonl"}],
                         "channels": {"mail": data}}).channels["mail"]


@pytest.mark.parametrize(("reply", "outcome"), [("550 5.1.1 no such user", Outcome.PERMANENT),
                                                 ("451 4.3.0 try later", Outcome.RETRY)])
def test_recipient_refused(smtp: tuple[Handler, int], reply: str, outcome: Outcome) -> None:
    handler, port = smtp
    handler.rcpt_reply = reply
    ch = EmailChannel("mail", host="127.0.0.1", port=port, security="none", sender="s@example.cn")
    assert ch.send(msg()).outcome is outcome


def test_connection_refused_is_retry() -> None:
    ch = EmailChannel("mail", host="127.0.0.1", port=free_port(), security="none",
                      sender="s@example.cn", timeout=2)
    result = ch.send(msg())
    assert result.outcome is Outcome.RETRY and "refused" in result.detail


def test_timeout_is_retry() -> None:
    # A server that accepts the TCP connection but never greets.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        ch = EmailChannel("mail", host="127.0.0.1", port=srv.getsockname()[1],
                          security="none", sender="s@example.cn", timeout=0.3)
        result = ch.send(msg())
        assert result.outcome is Outcome.RETRY and "timeout" in result.detail
    finally:
        srv.close()
