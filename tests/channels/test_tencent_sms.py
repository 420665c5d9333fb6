"""Tencent Cloud SMS ``SendSms`` (API 3.0): TC3 signing, positional parameters, verdicts.

A local server plays Tencent: it recomputes the TC3-HMAC-SHA256 signature of every request
from the raw bytes it received (an independent, step-by-step implementation written from the
public spec, not the channel's) and refuses a wrong one as Tencent does
(``AuthFailure.SignatureFailure``); it answers each number with a scripted status. The signer
itself reproduces the worked example of Tencent's "Signature v3" document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel import sms_params
from outage_sentinel.channels.base import ChannelError, Message, Outcome, Splitting
from outage_sentinel.channels.registry import build_channels, rate_keys_of, rate_limits_of
from outage_sentinel.channels.tencent_sms import (
    VARIABLES,
    Template,
    TencentSmsChannel,
    canonical_request,
    e164,
    tc3_authorization,
)
from outage_sentinel.config import ConfigError, parse_config
from outage_sentinel.delivery import Deliverer
from outage_sentinel.logs import redact_secrets
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DAY, RateLimit
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import Store
from tests.channels.conftest import FakeService, Reply
from tests.conftest import T0
from tests.test_delivery import enqueue

SECRET_ID = "AKIDtencentTestSecretId0123456789"
SECRET_KEY = "tcSecretKeyValue0123456789abcdef"
APP_ID = "1400787878"
# 2026-03-01 15:30:00 China time (07:30 UTC).
NOW = datetime(2026, 3, 1, 7, 30, tzinfo=UTC).timestamp()
PHONE = "13812341234"
OTHER = "13900001111"
#: Long enough for a number refused for the day to get its SMS the next day.
POLICY = RetryPolicy(initial_seconds=10, multiplier=2, max_seconds=300, jitter=0.2,
                     max_age_seconds=3 * 86400)
OUTAGE_PARAMS = ("village", "feeder", "start", "etr", "incident")
SMS = {"village": "马集村", "feeder": "10kV马集线", "kind": "故障停电", "start": "2026-03-01 15:00",
       "etr": "2026-03-01 18:00", "cause": "待查", "households": "120", "incident": "INC-7"}


# -- the fake Tencent service -------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_authorization(headers: dict[str, str], body: bytes, secret_id: str,
                           secret_key: str) -> str:
    """What Tencent computes for a request, step by step from the "Signature v3" document,
    over the headers as the server received them (names lower-cased, values trimmed)."""
    low = {k.lower(): v.strip() for k, v in headers.items()}
    signed = "content-type;host"
    canonical_headers = f"content-type:{low['content-type'].lower()}\nhost:{low['host'].lower()}\n"
    canonical = "\n".join(["POST", "/", "", canonical_headers, signed, sha256_hex(body)])
    timestamp = int(low["x-tc-timestamp"])
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/sms/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         sha256_hex(canonical.encode())])

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = mac(mac(mac(("TC3" + secret_key).encode(), date), "sms"), "tc3_request")
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}")


class FakeTencent:
    """Checks the signature, the action and the timestamp as Tencent does; answers each
    number with ``statuses[number]`` (default ``Ok``), or the whole request with ``error``."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: dict[str, str] = {}
        self.error: tuple[str, str] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                fake.requests.append((headers, body))
                payload = json.dumps(fake.answer(self.path, headers, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        error = self.refusal(path, headers, body) or self.error
        if error is not None:
            return {"Response": {"Error": {"Code": error[0], "Message": error[1]},
                                 "RequestId": "req-err"}}
        request = json.loads(body)
        return {"Response": {"RequestId": "req-1", "SendStatusSet": [
            {"SerialNo": f"2028:{i}" if self.statuses.get(n, "Ok") == "Ok" else "",
             "PhoneNumber": n, "Fee": 1, "SessionContext": request.get("SessionContext", ""),
             "Code": self.statuses.get(n, "Ok"), "Message": "send success", "IsoCode": "CN"}
            for i, n in enumerate(request["PhoneNumberSet"])]}}

    def refusal(self, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str] | None:
        if path != "/" or headers.get("X-TC-Action") != "SendSms" \
                or headers.get("X-TC-Version") != "2021-01-11":
            return ("InvalidAction", "unknown action or version")
        if abs(int(headers["X-TC-Timestamp"]) - NOW) > 300:
            return ("AuthFailure.SignatureExpire", "signature expired")
        if headers.get("Authorization") != expected_authorization(headers, body, SECRET_ID,
                                                                  SECRET_KEY):
            return ("AuthFailure.SignatureFailure", "The provided credentials could not be "
                    "validated. Please check your signature is correct.")
        return None

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tencent() -> Iterator[FakeTencent]:
    t = FakeTencent()
    yield t
    t.close()


def channel(url: str, *, secret_key: str = SECRET_KEY, timeout: float = 2.0,
            clock: float = NOW) -> TencentSmsChannel:
    return TencentSmsChannel(
        "tx", secret_id=SECRET_ID, secret_key=secret_key, sms_sdk_app_id=APP_ID,
        sign_name="某县供电公司", base_url=url, timeout=timeout, clock=lambda: clock,
        templates={"outage": Template("1830001", OUTAGE_PARAMS),
                   "command": Template("1830009", ("summary", "incident"))})


def msg(**kw: Any) -> Message:
    base: dict[str, Any] = dict(
        key="INC-7/1/village:V1:tx:13812341234/outage", channel="tx", target=PHONE, text="",
        purpose="outage", params={"sms_template": "outage", "sms": SMS, "kind": "fault"})
    base.update(kw)
    return Message(**base)


# -- signing ------------------------------------------------------------------------------------


def test_signer_reproduces_tencents_worked_example() -> None:
    """The "Signature v3" document's example (CVM DescribeInstances, 2019-02-25): its
    payload hash, canonical-request hash and final Authorization, byte for byte."""
    payload = (b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
               b'"Name": "instance-name"}]}')
    canonical = canonical_request("cvm.tencentcloudapi.com", payload)
    assert canonical.endswith("35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    assert sha256_hex(canonical.encode()) == \
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    assert tc3_authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        host="cvm.tencentcloudapi.com", service="cvm", timestamp=1551113065,
        payload=payload) == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")


def test_the_date_of_the_scope_is_utc() -> None:
    # 00:44 on the 26th in China is still the 25th in UTC (the document's own warning).
    auth = tc3_authorization("id", "key", host="sms.tencentcloudapi.com", service="sms",
                             timestamp=1551113065, payload=b"{}")
    assert "/2019-02-25/sms/tc3_request" in auth


# -- the request --------------------------------------------------------------------------------


def test_exact_request_signed_and_positional_params(tencent: FakeTencent) -> None:
    result = channel(tencent.url).send(msg())
    assert result.outcome is Outcome.DELIVERED, result
    assert result.provider_id == "2028:0"
    ((headers, _),) = tencent.requests
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert (headers["X-TC-Action"], headers["X-TC-Version"], headers["X-TC-Region"],
            headers["X-TC-Timestamp"]) == ("SendSms", "2021-01-11", "ap-guangzhou",
                                           str(int(NOW)))
    (body,) = tencent.sent()
    assert body == {
        "PhoneNumberSet": ["+8613812341234"], "SmsSdkAppId": APP_ID, "SignName": "某县供电公司",
        "TemplateId": "1830001",
        # the config's order, not the parameter set's
        "TemplateParamSet": ["马集村", "10kV马集线", "2026-03-01 15:00", "2026-03-01 18:00",
                             "INC-7"],
        "SessionContext": "INC-7/1/village:V1:tx:13812341234/outage"}


def test_a_wrong_secret_key_is_refused_by_the_signature_check(tencent: FakeTencent) -> None:
    result = channel(tencent.url, secret_key="not-the-key-0000").send(msg())
    assert result.outcome is Outcome.PERMANENT
    assert "AuthFailure.SignatureFailure" in result.detail


def test_a_clock_far_off_retries_with_a_fresh_signature(tencent: FakeTencent) -> None:
    result = channel(tencent.url, clock=NOW - 3600).send(msg())
    assert (result.outcome, result.rate_limited) == (Outcome.RETRY, False)
    assert "AuthFailure.SignatureExpire" in result.detail and "clock" in result.detail


@pytest.mark.parametrize(("number", "wire"), [
    ("13812341234", "+8613812341234"), ("+86 138-1234-1234", "+8613812341234"),
    ("008613812341234", "+8613812341234"), ("8613812341234", "+8613812341234"),
    ("+85291234567", "+85291234567"), ("0085291234567", "+85291234567"),
])
def test_numbers_go_as_e164(number: str, wire: str) -> None:
    assert e164(number) == wire


@pytest.mark.parametrize("number", ["12345", "010-12345678", "", "tx-crew", "+0123"])
def test_a_number_that_is_no_mobile_is_refused_before_sending(tencent: FakeTencent,
                                                              number: str) -> None:
    assert e164(number) is None
    result = channel(tencent.url).send(msg(target=number))
    assert result.outcome is Outcome.PERMANENT and tencent.requests == []


def test_no_template_for_the_purpose_names_the_key(tencent: FakeTencent) -> None:
    result = channel(tencent.url).send(msg(purpose="restored",
                                           params={"sms_template": "restored", "sms": SMS}))
    assert result.outcome is Outcome.PERMANENT and tencent.requests == []
    assert "channels.tx.templates.restored" in result.detail


def test_a_missing_parameter_value_is_named(tencent: FakeTencent) -> None:
    partial = {k: v for k, v in SMS.items() if k != "etr"}
    result = channel(tencent.url).send(msg(params={"sms_template": "outage", "sms": partial}))
    assert result.outcome is Outcome.PERMANENT and tencent.requests == []
    assert "'etr'" in result.detail and "channels.tx.templates.outage.params" in result.detail


# -- verdicts -----------------------------------------------------------------------------------

UNTIL_CHINA_MIDNIGHT = 8.5 * 3600 + 60  # 15:30 China time → midnight, +1 min


@pytest.mark.parametrize(("code", "outcome", "held", "retry_after"), [
    ("LimitExceeded.PhoneNumberDailyLimit", Outcome.RETRY, True, UNTIL_CHINA_MIDNIGHT),
    ("LimitExceeded.PhoneNumberSameContentDailyLimit", Outcome.RETRY, True,
     UNTIL_CHINA_MIDNIGHT),
    ("LimitExceeded.DeliveryFrequencyLimit", Outcome.RETRY, True, 3600.0),
    ("LimitExceeded.PhoneNumberOneHourLimit", Outcome.RETRY, True, 3600.0),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", Outcome.RETRY, True, 30.0),
    ("InvalidParameterValue.IncorrectPhoneNumber", Outcome.PERMANENT, False, None),
    ("FailedOperation.PhoneNumberInBlacklist", Outcome.PERMANENT, False, None),
    ("FailedOperation.TemplateIncorrectOrUnapproved", Outcome.PERMANENT, False, None),
    ("FailedOperation.InsufficientBalanceInSmsPackage", Outcome.RETRY, False, None),
    ("InternalError.Timeout", Outcome.RETRY, False, None),
    ("Something.New", Outcome.RETRY, False, None),
])
def test_per_number_status(tencent: FakeTencent, code: str, outcome: Outcome, held: bool,
                           retry_after: float | None) -> None:
    tencent.statuses["+8613812341234"] = code
    result = channel(tencent.url).send(msg())
    assert (result.outcome, result.rate_limited, result.uncertain) == (outcome, held, False)
    assert result.retry_after == (pytest.approx(retry_after) if retry_after else None)
    assert code in result.detail and "138****1234" in result.detail
    assert PHONE not in result.detail


@pytest.mark.parametrize(("code", "outcome", "held"), [
    ("AuthFailure.SecretIdNotFound", Outcome.PERMANENT, False),
    ("AuthFailure.UnauthorizedOperation", Outcome.PERMANENT, False),
    ("InvalidParameter", Outcome.PERMANENT, False),
    ("InvalidParameterValue.TemplateParameterLengthLimit", Outcome.PERMANENT, False),
    ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", Outcome.PERMANENT, False),
    ("FailedOperation.SignatureIncorrectOrUnapproved", Outcome.PERMANENT, False),
    ("FailedOperation.TemplateIncorrectOrUnapproved", Outcome.PERMANENT, False),
    ("MissingParameter.EmptyPhoneNumberSet", Outcome.PERMANENT, False),
    ("LimitExceeded.PhoneNumberCountLimit", Outcome.PERMANENT, False),
    ("RequestLimitExceeded", Outcome.RETRY, True),
    ("LimitExceeded.AppDailyLimit", Outcome.RETRY, True),
    ("InternalError", Outcome.RETRY, False),
    ("InternalError.OtherError", Outcome.RETRY, False),
])
def test_request_errors(tencent: FakeTencent, code: str, outcome: Outcome, held: bool) -> None:
    tencent.error = (code, f"refused {code}")
    result = channel(tencent.url).send(msg())
    assert (result.outcome, result.rate_limited, result.uncertain) == (outcome, held, False)
    assert code in result.detail


@pytest.mark.parametrize(("reply", "uncertain"), [
    (Reply(504, None, raw=b"<html>gateway timeout</html>"), True),
    (Reply(502, None, raw=b"<html>bad gateway</html>"), False),
    (Reply(503, {"message": "busy"}), False),
    (Reply(200, {"Response": {"RequestId": "r"}}), True),  # the service's JSON, no verdict
    (Reply(200, None, raw=b""), True),
    (Reply(200, None, raw=b"<html>proxy says no</html>"), False),  # not the service's reply
    (Reply(500, {"Response": {"RequestId": "r", "SendStatusSet": [
        {"PhoneNumber": "+8613812341234", "Code": "Ok", "SerialNo": "s"}]}}), True),
])
def test_replies_without_a_verdict(service: FakeService, reply: Reply, uncertain: bool) -> None:
    service.reply(reply)
    result = channel(service.url).send(msg())
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, uncertain), result


def test_timeout_is_uncertain_and_refused_is_not(service: FakeService, refused_url: str) -> None:
    service.reply(Reply(200, {"Response": {}}, delay=1.0))
    timed_out = channel(service.url, timeout=0.2).send(msg())
    assert (timed_out.outcome, timed_out.uncertain) == (Outcome.RETRY, True)
    refused = channel(refused_url).send(msg())
    assert (refused.outcome, refused.uncertain) == (Outcome.RETRY, False)


# -- several numbers ----------------------------------------------------------------------------


def test_several_numbers_in_one_request_are_never_all_delivered_on_one_ok(
        tencent: FakeTencent) -> None:
    tencent.statuses["+8613900001111"] = "LimitExceeded.PhoneNumberDailyLimit"
    result = channel(tencent.url).send(msg(target="crew", mentions=(PHONE, OTHER)))
    assert result.outcome is Outcome.RETRY and result.rate_limited
    assert "139****1111" in result.detail and "delivered to 138****1234" in result.detail
    assert PHONE not in result.detail and OTHER not in result.detail


def test_several_numbers_go_as_one_part_each() -> None:
    ch = channel("http://127.0.0.1:9")
    assert isinstance(ch, Splitting)
    m = msg(target="crew", mentions=(PHONE, "+86 138 1234 1234", OTHER))
    parts = ch.parts(m)
    assert [p.mentions for p in parts] == [("+8613812341234",), ("+8613900001111",)]
    assert [p.key for p in parts] == [f"{m.key}#1/2", f"{m.key}#2/2"]
    assert ch.parts(msg()) == (msg(),)
    assert ch.rate_keys(m) == ("+8613812341234", "+8613900001111")


def test_a_number_refused_is_retried_alone_through_the_delivery_loop(
        sqlite_store: Store, tencent: FakeTencent) -> None:
    """The honest outcome for two numbers, one refused for the day: the other's SMS is
    recorded delivered at once, the message stays pending, and the retry sends only the
    number still owed its SMS (never a second SMS to the first)."""
    enqueue(sqlite_store, OutboxMessage(
        incident_id="INC-7", revision=1, recipient="crew:C1", purpose="outage", channel="tx",
        target="crew-c1", audience="crew", subject="s", body="b",
        payload={"mentions": [PHONE, OTHER],
                 "params": {"sms_template": "outage", "sms": SMS}}))
    tencent.statuses["+8613900001111"] = "LimitExceeded.PhoneNumberDailyLimit"
    ch = channel(tencent.url)
    Deliverer(sqlite_store, {"tx": ch}, POLICY, Metrics(), rand=lambda: 0.5).run_once(T0)
    (m,) = sqlite_store.messages()
    assert (m.status, m.payload["parts_sent"]) == ("pending", 1)
    assert "LimitExceeded.PhoneNumberDailyLimit" in (m.last_error or "")
    tencent.statuses.clear()
    Deliverer(sqlite_store, {"tx": ch}, POLICY, Metrics(),
              rand=lambda: 0.5).run_once(T0 + timedelta(days=1))
    assert [b["PhoneNumberSet"] for b in tencent.sent()] == [
        ["+8613812341234"], ["+8613900001111"], ["+8613900001111"]]
    assert sqlite_store.messages()[0].status == "sent"


# -- secrets and phones -------------------------------------------------------------------------


def test_no_secret_or_number_in_results_or_logs_when_the_server_echoes(
        tencent: FakeTencent) -> None:
    ch = channel(tencent.url)  # registers its credentials
    tencent.error = ("InvalidParameter", f"bad request: Authorization=TC3 Credential="
                     f"{SECRET_ID}/x key={SECRET_KEY} PhoneNumberSet=[{PHONE}]")
    with capture_logs() as logs:
        result = ch.send(msg())
    texts = [str(result), repr(ch), *(json.dumps(e, default=str) for e in logs)]
    assert result.outcome is Outcome.PERMANENT and "***" in result.detail
    for text in texts:
        assert SECRET_ID not in text and SECRET_KEY not in text and PHONE not in text
    assert redact_secrets(SECRET_KEY) != SECRET_KEY


# -- config, registry and check -----------------------------------------------------------------


def tencent_config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "type": "tencent_sms", "secret_id": "${TC_SECRET_ID}", "secret_key": "${TC_SECRET_KEY}",
        "sms_sdk_app_id": 1400787878, "sign_name": "某县供电公司",
        "templates": {"outage": {"id": 1830001, "params": list(OUTAGE_PARAMS)},
                      "command": {"id": "1830009", "params": ["summary", "incident"]}}}
    cfg.update(over)
    return cfg


ENV = {"TC_SECRET_ID": SECRET_ID, "TC_SECRET_KEY": SECRET_KEY}


def channels_of(channels: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    data = {"sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
            "channels": channels}
    return parse_config(data, env=ENV if env is None else env).channels


def test_built_from_config_with_defaults(tencent: FakeTencent) -> None:
    chans = build_channels(channels_of({"tx": tencent_config(base_url=tencent.url)}))
    ch = chans["tx"]
    assert isinstance(ch, TencentSmsChannel) and ch.type == "tencent_sms"
    assert rate_limits_of(ch) == (RateLimit(10, DAY),)
    assert rate_keys_of(ch, msg()) == ("tx/+8613812341234",)
    assert SECRET_KEY not in repr(ch) and SECRET_ID not in repr(ch)
    defaults = channels_of({"tx": tencent_config()})["tx"]
    assert (defaults.base_url, defaults.region) == ("https://sms.tencentcloudapi.com",
                                                   "ap-guangzhou")


@pytest.mark.parametrize(("over", "env", "problem"), [
    ({"secret_key": None}, ENV, "channels.tx.secret_key: required key is missing"),
    ({}, {"TC_SECRET_ID": SECRET_ID},
     "channels.tx.secret_key: environment variable TC_SECRET_KEY is not set"),
    ({"templates": {"outages": {"id": "1", "params": []}}}, ENV,
     "channels.tx: Value error, templates.outages: unknown purpose"),
    ({"templates": {"outage": {"id": " ", "params": []}}}, ENV,
     "channels.tx: Value error, templates.outage.id: must not be empty"),
    ({"templates": {"outage": {"id": "1"}}}, ENV,
     "channels.tx.templates.outage.params: required key is missing"),
    ({"base_url": "sms.tencentcloudapi.com"}, ENV, "channels.tx.base_url: String should match"),
    ({"region": "ap-guangzhou", "regin": "x"}, ENV, "channels.tx.regin: unknown key"),
])
def test_a_bad_config_names_the_key(over: dict[str, Any], env: dict[str, str],
                                    problem: str) -> None:
    cfg = {k: v for k, v in tencent_config(**over).items() if v is not None}
    with pytest.raises(ConfigError) as err:
        channels_of({"tx": cfg}, env)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(("over", "env", "problem"), [
    ({"templates": {"outage": {"id": "1", "params": ["village", "vilage"]}}}, ENV,
     "channels.tx.templates.outage.params[1]: unknown variable 'vilage' for outage"),
    ({"templates": {"command": {"id": "1", "params": ["etr"]}}}, ENV,
     "channels.tx.templates.command.params[0]: unknown variable 'etr' for command"),
    ({}, {**ENV, "TC_SECRET_KEY": ""}, "channels.tx.secret_key: must not be empty"),
    ({"sign_name": " "}, ENV, "channels.tx.sign_name: must not be empty"),
    ({"sms_sdk_app_id": ""}, ENV, "channels.tx.sms_sdk_app_id: must not be empty"),
])
def test_check_and_run_refuse_a_bad_channel_naming_the_key(
        over: dict[str, Any], env: dict[str, str], problem: str) -> None:
    from outage_sentinel.cli import channel_problems

    channels = channels_of({"tx": tencent_config(**over)}, env)
    with pytest.raises(ChannelError, match=r"^" + problem.replace("[", r"\[")):
        build_channels(channels)
    config = parse_config({"sources": [{"name": "demo", "type": "replay",
                                        "scenario": "s.jsonl"}],
                           "channels": {"tx": tencent_config(**over)}}, env=env)
    assert any(p.startswith(problem) for p in channel_problems(config))


def test_the_variables_per_purpose_are_the_parameter_sets() -> None:
    """The names a template's ``params`` may use are exactly what the planner builds."""
    built = {
        "outage": sms_params.outage_params(village="v", feeder="f", kind="k", start=None,
                                           etr=None, cause=None, households=1, incident="i"),
        "planned": sms_params.planned_params(village="v", feeder="f", kind="k", start=None,
                                             end=None, cause=None, households=1, incident="i"),
        "update": sms_params.update_params(village="v", feeder="f", kind="k", start=None,
                                           etr=None, cause=None, households=1, incident="i"),
        "restored": sms_params.restored_params(village="v", feeder="f", start=None,
                                               restored=None, incident="i"),
        "unconfirmed": sms_params.unconfirmed_params(village="v", feeder="f", start=None,
                                                     ended=None, areas=["a"], households=1,
                                                     incident="i"),
        "cancelled": sms_params.cancelled_params(village="v", feeder="f", kind="k", start=None,
                                                 incident="i"),
        "reminder": sms_params.reminder_params(village="v", feeder="f", kind="k", start=None,
                                               end=None, hours=24, households=1, incident="i"),
        "care": sms_params.care_params(village="v", households=[], total=0, start=None,
                                       etr=None, incident="i"),
        "dispatch": sms_params.dispatch_params(incident="i", priority=1, deadline=None,
                                               feeder="f", device="d", villages=["v"],
                                               customers=1, cause=None, care=0),
        "command": sms_params.command_params(summary="s", incident="i"),
    }
    built["corrected"] = built["cancelled_begun"] = built["cancelled"]
    linked = {"outage", "update", "restored", "unconfirmed", "dispatch"}
    assert set(VARIABLES) == set(sms_params.PURPOSES) == set(built)
    for purpose, values in built.items():
        assert VARIABLES[purpose] == set(values) | ({"link"} if purpose in linked else set())


def test_the_documented_example_builds() -> None:
    """docs/channels.md's example: every purpose, the suggested texts' variable orders."""
    import re
    from pathlib import Path

    import yaml

    doc = (Path(__file__).parents[2] / "docs" / "channels.md").read_text(encoding="utf-8")
    section = doc.split("## `tencent_sms`", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    example = yaml.safe_load(block.group(1))
    env = {"TENCENT_SECRET_ID": SECRET_ID, "TENCENT_SECRET_KEY": SECRET_KEY}
    (ch,) = build_channels(channels_of(example, env)).values()
    assert isinstance(ch, TencentSmsChannel)
    assert set(ch.templates) == set(sms_params.PURPOSES)
    assert ch.templates["outage"] == Template("1830001", (
        "village", "feeder", "kind", "start", "cause", "households", "etr", "incident"))
