"""Aliyun SendSms: the RPC signature recomputed independently, OutId, flow-control hints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime

import pytest

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.sms import SmsChannel, out_id
from tests.channels.conftest import FakeService, Reply

KEY_ID = "LTAI5tQ9xExampleKeyId01"
KEY_SECRET = "wXyZ0123456789abcdefEXAMPLEsecret"
# 2026-03-01 15:30:00 China time.
NOW = datetime(2026, 3, 1, 7, 30, tzinfo=UTC).timestamp()
PHONE = "13812341234"


def channel(url: str, timeout: float = 2.0) -> SmsChannel:
    return SmsChannel("sms", access_key_id=KEY_ID, access_key_secret=KEY_SECRET,
                      sign_name="国网某县供电公司", template_code="SMS_465350123",
                      endpoint=url + "/", timeout=timeout, clock=lambda: NOW,
                      nonce=lambda: "nonce-0001")


def msg(**kw: object) -> Message:
    base: dict[str, object] = dict(key="I7/2/crew:c1/dispatch", channel="sms", target=PHONE,
                                   text="", purpose="dispatch",
                                   params={"feeder": "10kV 城关线", "eta": "45分钟",
                                           "villages": ["a", "b"]})
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def independent_signature(params: dict[str, str], secret: str) -> str:
    """Aliyun's documented recipe, written out step by step."""
    def pe(s: str) -> str:
        return (urllib.parse.quote_plus(s, encoding="utf-8")
                .replace("+", "%20").replace("*", "%2A").replace("%7E", "~"))

    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{pe(k)}={pe(v)}" for k, v in pairs)
    to_sign = "POST&" + pe("/") + "&" + pe(canonical)
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def test_exact_request_and_signature(service: FakeService) -> None:
    service.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0",
                                  "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})
    result = channel(service.url).send(msg())
    assert result.outcome is Outcome.DELIVERED
    assert result.provider_id == "900619746936498440^0"
    (req,) = service.requests
    assert req.method == "POST" and req.path == "/"
    assert req.query == {}  # phone numbers stay out of the URL
    form = req.form()
    assert form["Signature"] == independent_signature(form, KEY_SECRET)
    assert {k: form[k] for k in ("AccessKeyId", "Action", "Format", "SignatureMethod",
                                 "SignatureVersion", "Version", "SignatureNonce",
                                 "Timestamp", "RegionId")} == {
        "AccessKeyId": KEY_ID, "Action": "SendSms", "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "Version": "2017-05-25",
        "SignatureNonce": "nonce-0001", "Timestamp": "2026-03-01T07:30:00Z",
        "RegionId": "cn-hangzhou"}
    assert form["PhoneNumbers"] == PHONE
    assert form["SignName"] == "国网某县供电公司"
    assert form["TemplateCode"] == "SMS_465350123"
    assert form["OutId"] == "I7/2/crew:c1/dispatch"
    # Only scalar params become template variables.
    assert json.loads(form["TemplateParam"]) == {"feeder": "10kV 城关线", "eta": "45分钟"}


def test_explicit_sms_params_and_long_out_id(service: FakeService) -> None:
    service.default = Reply(200, {"Code": "OK"})
    long_key = "INC-2026-000123/17/liaison:张家村-村委会-王主任/outage-restored-notice"
    channel(service.url).send(msg(key=long_key, params={"sms": {"v": "张家村"}, "x": "y"}))
    form = service.requests[0].form()
    assert form["OutId"] == out_id(long_key) and form["OutId"].startswith("h-")
    assert len(form["OutId"]) <= 64 and out_id(long_key) == out_id(long_key)
    assert json.loads(form["TemplateParam"]) == {"v": "张家村"}


def test_mentions_are_the_recipients_and_rate_keys(service: FakeService) -> None:
    service.default = Reply(200, {"Code": "OK"})
    ch = channel(service.url)
    m = msg(target="crew-c1", mentions=("13812341234", "13900001111"))
    ch.send(m)
    assert service.requests[0].form()["PhoneNumbers"] == "13812341234,13900001111"
    assert ch.rate_keys(m) == ("13812341234/SMS_465350123", "13900001111/SMS_465350123")


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        # Day-level flow control: wait until midnight China time (+60 s): 15:30 → 8.5 h.
        (Reply(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发天级流控Permits:10"}),
         Outcome.RETRY, 8.5 * 3600 + 60),
        (Reply(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}),
         Outcome.RETRY, 60.0),
        (Reply(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发小时级流控Permits:5"}),
         Outcome.RETRY, 3600.0),
        (Reply(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}),
         Outcome.PERMANENT, None),
        (Reply(200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"}),
         Outcome.PERMANENT, None),
        (Reply(400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not "
                     "matched with our calculation."}), Outcome.PERMANENT, None),
        (Reply(404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key "
                     "is not found."}), Outcome.PERMANENT, None),
        (Reply(200, {"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"}), Outcome.RETRY, None),
        (Reply(503, {"Code": "ServiceUnavailable", "Message": "busy"}), Outcome.RETRY, None),
        (Reply(500, None, raw=b"<html>"), Outcome.RETRY, None),
        (Reply(200, {"Code": "isv.SOMETHING_NEW", "Message": "?"}), Outcome.PERMANENT, None),
        (Reply(200, {"RequestId": "x"}), Outcome.RETRY, None),
    ],
)
def test_outcomes(service: FakeService, reply: Reply, outcome: Outcome,
                  retry_after: float | None) -> None:
    service.reply(reply)
    result = channel(service.url).send(msg())
    assert result.outcome is outcome, result
    assert result.retry_after == (pytest.approx(retry_after) if retry_after else None)
    text = str(result)
    assert KEY_SECRET not in text and KEY_ID not in text and PHONE not in text


def test_phone_masked_in_detail(service: FakeService) -> None:
    service.reply(Reply(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL",
                              "Message": f"号码 {PHONE} 非法"}))
    result = channel(service.url).send(msg())
    assert PHONE not in result.detail and "138****1234" in result.detail


def test_timeout_and_refused(service: FakeService, refused_url: str) -> None:
    service.reply(Reply(200, {"Code": "OK"}, delay=1.0))
    assert channel(service.url, timeout=0.2).send(msg()).outcome is Outcome.RETRY
    assert channel(refused_url).send(msg()).outcome is Outcome.RETRY
