"""What a reply that is not the service's plain verdict means for a notice (a channel audit).

* A gateway's 504 may come after the robot behind it posted the text: it means what a
  timeout waiting for the reply means — sent once more at most, not over and over.
* A TLS stream that breaks while the reply is read comes after the request went out: the
  same. Only a failed handshake is certainly "not sent".
* Aliyun ``isv.OUT_OF_SERVICE`` (suspended for arrears) is cured by a top-up, like
  ``isv.AMOUNT_NOT_ENOUGH``: the SMS waits instead of being dead-lettered at once.
* A proxy's HTML page with HTTP 200 is not the service's answer (they answer JSON only): a
  plain retry bounded by the max age, not "delivery uncertain" at the second page.
* Targets that share one robot share its rate limit and its blocks (the service counts per
  robot), under a key that is a hash of the robot's key, never the key itself.
* Every part of a split text repeats the heading, so a robot's security keyword in it is in
  every part.

Real local HTTP and TLS servers, real stores; no mock of the senders.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.common import HttpChannel
from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.feishu import FeishuChannel
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.channels.wecom import TEXT_LIMIT, WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DEFAULT_LIMITS, RateLimit
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import Store
from outage_sentinel.textlimits import utf8_len
from tests.channels.conftest import FakeService, Reply
from tests.conftest import T0

#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")

POLICY = RetryPolicy(initial_seconds=1, multiplier=1, max_seconds=1, jitter=0.0,
                     max_age_seconds=3600)
NGINX_504 = (b"<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 "
             b"Gateway Time-out</h1></center><hr><center>nginx</center></body></html>")
PROXY_PAGE = ("<html><head><meta charset=utf-8><title>提示</title></head>"
              "<body>网络维护中，请稍后再试</body></html>").encode()
OK = {"errcode": 0, "errmsg": "ok"}


def robot_channels(url: str) -> list[HttpChannel]:
    """One sender of each robot type and SMS, all at ``url``, all with target ``g1``."""
    return [
        WeComChannel("wx", robots={"g1": "key-g1"}, base_url=url, timeout=2),
        DingTalkChannel("dd", robots={"g1": ("token-g1", None)}, base_url=url, timeout=2),
        FeishuChannel("fs", robots={"g1": ("hook-g1", None)}, base_url=url, timeout=2),
        SmsChannel("sms", access_key_id="AK", access_key_secret="secret-0123456789",
                   sign_name="供电", template_code="SMS_1", endpoint=url + "/", timeout=2),
    ]


def msg(target: str = "g1", text: str = "【故障停电】东村 10:05 停电") -> Message:
    return Message(key="INC-1/1/village:V1/outage", channel="c", target=target, text=text,
                   mentions=("13800000001",), params={"village": "东村"})


def notice(channel: str = "wx", target: str = "g1", n: int = 1) -> OutboxMessage:
    body = f"【故障停电通知】东村{n}\n10kV 一号线故障停电"
    return OutboxMessage(incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}",
                         purpose="outage", channel=channel, target=target, audience="liaison",
                         subject=body.splitlines()[0], body=body,
                         payload={"mentions": ["13800000001"], "params": {"village": "东村"}})


def enqueue(store: Store, *rows: OutboxMessage) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, list(rows), T0)


def runs(d: Deliverer, n: int) -> None:
    """``n`` delivery runs, 10 s apart (each after the 1 s backoff)."""
    for i in range(n):
        d.run_once(T0 + timedelta(seconds=10 * i))


# -- 1. a gateway's 504 (a 502 stays a plain retry) ------------------------------------------


@pytest.mark.parametrize("status", [504])
def test_a_gateway_504_is_unconfirmed_for_every_sender(service: FakeService,
                                                       status: int) -> None:
    for ch in robot_channels(service.url):
        service.reply(Reply(status, None, raw=NGINX_504, headers={"Retry-After": "5"}))
        result = ch.send(msg())
        assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), (ch, result)
        assert result.retry_after == 5.0 and f"HTTP {status}" in result.detail


def test_a_503_a_502_and_a_500_stay_plain_retries(service: FakeService) -> None:
    for ch in robot_channels(service.url):
        # 502: what a gateway answers to every request while the service is unreachable;
        # "uncertain" would dead-letter every notice at its second one.
        for status in (500, 502, 503):
            service.reply(Reply(status, None, raw=b"busy"))
            result = ch.send(msg())
            assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), (ch, result)


def test_a_504_after_the_robot_posted_sends_the_notice_twice_at_most(
        store: Store, service: FakeService) -> None:
    """The audit's case: each request reached the robot (which posted the notice), and the
    gateway in front answered 504 ten times; the group read it eleven times."""
    service.reply(*[Reply(504, None, raw=NGINX_504) for _ in range(10)])
    ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=service.url, timeout=2)
    enqueue(store, notice())
    runs(Deliverer(store, {"wx": ch}, POLICY, Metrics(), rand=lambda: 0.5), 12)
    (m,) = store.messages()
    assert len(service.requests) == 2  # the send and the one resend allowed
    assert m.status == "dead" and (m.last_error or "").startswith("delivery uncertain: ")


# -- 2. TLS errors: in the handshake, or after the request went out ---------------------------


class TlsRobot:
    """A robot's HTTPS host: it reads the whole POST (the robot posts the text, counted in
    ``posts``), then breaks the TLS stream with a corrupt record instead of replying — what a
    middlebox or load balancer does. ``handshake_garbage``: it answers the ClientHello with
    bytes that are no TLS at all, so no request can ever be sent."""

    def __init__(self, cert: tuple[Path, Path], *, handshake_garbage: bool = False) -> None:
        self.posts = 0
        self.garbage = handshake_garbage
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert[1], cert[0])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                self._one(raw)
            except OSError:
                pass  # the client gave up: nothing to serve
            finally:
                raw.close()

    def _one(self, raw: socket.socket) -> None:
        if self.garbage:
            raw.recv(65536)
            raw.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 64)
            return
        conn = self.ctx.wrap_socket(raw, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        self.posts += 1
        # An application-data record that does not decrypt: the client's read fails.
        broken = socket.socket(fileno=os.dup(conn.fileno()))
        broken.sendall(b"\x17\x03\x03\x00\x40" + bytes(64))
        broken.close()
        conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tls_robot(cert: tuple[Path, Path]) -> Iterator[TlsRobot]:
    robot = TlsRobot(cert)
    yield robot
    robot.close()


def trusting(cert: tuple[Path, Path]) -> requests.Session:
    """A session that trusts the test certificate (and only it: ``REQUESTS_CA_BUNDLE`` in the
    environment would override a session's ``verify``, so the environment is not read)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cert[1])
    return session


def test_a_tls_stream_broken_after_the_request_went_out_is_unconfirmed(
        tls_robot: TlsRobot, cert: tuple[Path, Path]) -> None:
    ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=tls_robot.url, timeout=3,
                      session=trusting(cert))
    result = ch.send(msg())
    assert tls_robot.posts == 1
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), result


def test_a_broken_tls_stream_after_each_post_sends_the_notice_twice_at_most(
        store: Store, tls_robot: TlsRobot, cert: tuple[Path, Path]) -> None:
    ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=tls_robot.url, timeout=3,
                      session=trusting(cert))
    enqueue(store, notice())
    runs(Deliverer(store, {"wx": ch}, POLICY, Metrics(), rand=lambda: 0.5), 10)
    (m,) = store.messages()
    assert tls_robot.posts == 2
    assert m.status == "dead" and (m.last_error or "").startswith("delivery uncertain: ")


def test_a_certificate_that_does_not_verify_is_a_plain_retry(tls_robot: TlsRobot) -> None:
    # The system's CAs don't know the test certificate: the handshake fails, nothing is sent.
    ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=tls_robot.url, timeout=3)
    result = ch.send(msg())
    assert tls_robot.posts == 0
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), result


def test_a_handshake_answered_with_no_tls_is_a_plain_retry(cert: tuple[Path, Path]) -> None:
    robot = TlsRobot(cert, handshake_garbage=True)
    try:
        ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=robot.url, timeout=3,
                          session=trusting(cert))
        result = ch.send(msg())
    finally:
        robot.close()
    assert robot.posts == 0
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), result
    assert "SSLError" in result.detail


# -- 3. Aliyun: an account suspended for arrears ------------------------------------------------


def sms(service: FakeService) -> SmsChannel:
    return SmsChannel("sms", access_key_id="AK", access_key_secret="secret-0123456789",
                      sign_name="供电", template_code="SMS_1", endpoint=service.url + "/",
                      timeout=2)


@pytest.mark.parametrize("code", ["isv.OUT_OF_SERVICE", "isv.AMOUNT_NOT_ENOUGH",
                                  "isv.MONTH_LIMIT_CONTROL"])
def test_codes_an_operator_clears_by_topping_up_or_raising_a_quota_are_retried(
        service: FakeService, code: str) -> None:
    service.reply(Reply(200, {"Code": code, "Message": "账户余额不足，业务停机"}))
    result = sms(service).send(msg("13800000001"))
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), result
    assert code in result.detail


def test_an_sms_refused_for_arrears_goes_out_after_the_top_up(store: Store,
                                                              service: FakeService) -> None:
    service.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "9^0"})
    service.reply(Reply(200, {"Code": "isv.OUT_OF_SERVICE", "Message": "业务停机"}))
    enqueue(store, notice("sms", "13800000001"))
    runs(Deliverer(store, {"sms": sms(service)}, POLICY, Metrics(), rand=lambda: 0.5), 3)
    (m,) = store.messages()
    assert (m.status, len(service.requests)) == ("sent", 2)


# -- 5. a proxy's HTML page with HTTP 200 -------------------------------------------------------


@pytest.mark.parametrize("headers", [{"Content-Type": "text/html; charset=utf-8"}, {}],
                         ids=["text-html", "html-labelled-json"])
def test_a_proxys_html_page_is_a_plain_retry_for_every_sender(
        service: FakeService, headers: dict[str, str]) -> None:
    for ch in robot_channels(service.url):
        service.reply(Reply(200, None, raw=PROXY_PAGE, headers=headers))
        result = ch.send(msg())
        assert (result.outcome, result.uncertain) == (Outcome.RETRY, False), (ch, result)
        assert "not the service's" in result.detail


@pytest.mark.parametrize("reply", [Reply(200, {"data": {}}),
                                   Reply(200, None, raw=b'{"errcode":0,"errm'),
                                   Reply(200, None, raw=b"")],
                         ids=["json-without-verdict", "json-cut-short", "empty"])
def test_a_reply_that_may_be_the_services_own_stays_unconfirmed(service: FakeService,
                                                                 reply: Reply) -> None:
    for ch in robot_channels(service.url):
        service.reply(reply)
        result = ch.send(msg())
        assert (result.outcome, result.uncertain) == (Outcome.RETRY, True), (ch, result)


def test_html_pages_from_a_proxy_do_not_dead_letter_the_notice(store: Store,
                                                               service: FakeService) -> None:
    page = Reply(200, None, raw=PROXY_PAGE, headers={"Content-Type": "text/html"})
    service.reply(page, page, page)
    ch = WeComChannel("wx", robots={"g1": "key-g1"}, base_url=service.url, timeout=2)
    enqueue(store, notice())
    runs(Deliverer(store, {"wx": ch}, POLICY, Metrics(), rand=lambda: 0.5), 5)
    (m,) = store.messages()
    assert (m.status, len(service.requests), m.interruptions) == ("sent", 4, 0)


# -- 4. targets that share one robot share its limit and its blocks -----------------------------


def test_targets_sharing_a_robot_share_one_limiter_key_that_hides_the_key() -> None:
    wx = WeComChannel("wx", robots={"v12": "wecom-key-0001", "v13": "wecom-key-0001",
                                    "v14": "wecom-key-0002"})
    dd = DingTalkChannel("dd", robots={"v12": ("dd-token-0001", "SEC-1"),
                                       "v13": ("dd-token-0001", "SEC-2"),
                                       "v14": ("dd-token-0002", None)})
    fs = FeishuChannel("fs", robots={"v12": ("fs-hook-0001", None),
                                     "v13": ("fs-hook-0001", None),
                                     "v14": ("fs-hook-0002", None)})
    for ch, secret in ((wx, "wecom-key-0001"), (dd, "dd-token-0001"), (fs, "fs-hook-0001")):
        (k12,), (k13,), (k14,) = (ch.rate_keys(msg(t)) for t in ("v12", "v13", "v14"))
        assert k12 == k13 != k14, ch
        assert secret not in k12 and "0001" not in k12
    # Stable: the same key from a new process (a hash, not an id of the run).
    assert WeComChannel("wx", robots={"x": "wecom-key-0001"}).rate_keys(msg("x")) == \
        wx.rate_keys(msg("v12"))


def dingtalk_pair(service: FakeService) -> DingTalkChannel:
    """Two villages' entries that are one township group's robot."""
    return DingTalkChannel("dd", robots={"v12": ("SAME-TOKEN-0123456789", None),
                                         "v13": ("SAME-TOKEN-0123456789", None)},
                           base_url=service.url, timeout=2,
                           rate_limits=DEFAULT_LIMITS["dingtalk"])


def test_a_block_on_a_shared_robot_holds_back_the_other_target_too(
        store: Store, service: FakeService) -> None:
    service.reply(Reply(200, {"errcode": 130101, "errmsg": "send too fast"}))
    d = Deliverer(store, {"dd": dingtalk_pair(service)}, POLICY, Metrics(), rand=lambda: 0.5)
    enqueue(store, notice("dd", "v12", 1))
    d.run_once(T0)  # refused: DingTalk blocks the robot for ten minutes
    with store.transaction() as conn:
        store.enqueue_in(conn, [notice("dd", "v13", 2)], T0 + timedelta(seconds=5))
    d.run_once(T0 + timedelta(seconds=10))
    assert len(service.requests) == 1  # a request now would only extend the block
    assert {m.target: m.last_error for m in store.messages()}["v13"] == \
        "rate limited: blocked by the service"
    d.run_once(T0 + timedelta(seconds=601))
    assert [m.status for m in store.messages()] == ["sent", "sent"]
    stored = json.dumps(store.kv_prefixed("rate:"))
    assert "SAME-TOKEN" not in stored and "0123456789" not in stored


def test_targets_sharing_a_robot_share_its_budget(store: Store, service: FakeService) -> None:
    ch = DingTalkChannel("dd", robots={"v12": ("SAME-TOKEN-0123456789", None),
                                       "v13": ("SAME-TOKEN-0123456789", None)},
                         base_url=service.url, timeout=2, rate_limits=(RateLimit(3, 60.0),))
    enqueue(store, *(notice("dd", t, n) for n, t in enumerate(["v12", "v12", "v13", "v13"])))
    d = Deliverer(store, {"dd": ch}, POLICY, Metrics(), rand=lambda: 0.5)
    d.run_once(T0)
    assert len(service.requests) <= 3  # the robot's 3 a minute, not 3 per village
    d.run_once(T0 + timedelta(seconds=61))
    assert {m.status for m in store.messages() if m.purpose != "digest"} == {"sent"}


# -- 6. every part carries the heading (and so the robot's keyword) -----------------------------


class KeywordRobot:
    """A robot with keyword security: a text without ``keyword`` is refused for good
    (DingTalk 310000, Feishu 19024), as the services do."""

    def __init__(self, flavour: str, keyword: str) -> None:
        self.posted: list[str] = []
        self.refused: list[str] = []
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = json.dumps(body, ensure_ascii=False)
                ok = keyword in text
                (robot.posted if ok else robot.refused).append(text)
                reply = ({"errcode": 0, "errmsg": "ok"} if ok else
                         {"errcode": 310000, "errmsg": "keywords not in content"}) \
                    if flavour == "dingtalk" else \
                    ({"code": 0, "msg": "success"} if ok else
                     {"code": 19024, "msg": "Key Words Not Found"})
                out = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


LINK = "接单及现场反馈：https://board.example.cn/c/Ngd3rLo1esRxIE4Dua3no8K1"


def long_dispatch() -> OutboxMessage:
    care = "\n".join(f"{i:03d}. 马集村{i}号 王秀英 138{i:08d} 生命支持设备用户，请优先恢复并电话确认"
                     for i in range(1, 260))
    body = f"【抢修派工】INC-1 10kV马集线 停电\n请于45分钟内到达。\n重点关怀用户：\n{care}\n{LINK}"
    return OutboxMessage(incident_id="INC-1", revision=1, recipient="crew:C1",
                         purpose="dispatch", channel="bot", target="crew-1", audience="crew",
                         subject=body.splitlines()[0], body=body,
                         payload={"mentions": ["13800000001"], "params": {}})


@pytest.mark.parametrize("flavour", ["dingtalk", "feishu"])
def test_every_part_of_a_long_dispatch_passes_the_robots_keyword_check(
        store: Store, flavour: str) -> None:
    robot = KeywordRobot(flavour, "停电")
    kind = DingTalkChannel if flavour == "dingtalk" else FeishuChannel
    try:
        ch = kind("bot", robots={"crew-1": ("TOKEN-0123456789", None)}, base_url=robot.url,
                  timeout=2, rate_limits=DEFAULT_LIMITS[flavour])
        enqueue(store, long_dispatch())
        Deliverer(store, {"bot": ch}, POLICY, Metrics(), rand=lambda: 0.5).run_once(T0)
    finally:
        robot.close()
    (m,) = store.messages()
    assert (m.status, len(robot.posted), robot.refused) == ("sent", 2, [])
    assert "（续）" in robot.posted[1] and LINK in robot.posted[1]


def test_parts_repeat_the_heading_within_the_limit() -> None:
    text = "[Outage] East village, feeder 7\n" + "\n".join(f"line {i} " + "x" * 60
                                                         for i in range(80))
    ch = WeComChannel("wx", robots={"g": "key-g-0123456789"})
    parts = ch.parts(Message(key="k", channel="wx", target="g", text=text))
    assert len(parts) > 1
    assert all(utf8_len(p.text) <= TEXT_LIMIT for p in parts)
    assert parts[0].text.startswith("[Outage] East village, feeder 7\nline 0 ")
    assert all(p.text.startswith("[Outage] East village, feeder 7 (cont.)\n")
               for p in parts[1:])
