"""Planned work called off after it began: the SMS says what the group notice says.

The group and robot notice reads 「原定…起的计划停电（…）已取消。如仍停电，请拨打95598…」 once
the work has begun (the power may have been off since its start), but the SMS went out on
the ``cancelled`` template, whose registered text ends 届时正常供电 — a day of normal supply
promised for a time gone by. Work called off after it began has its own template,
``cancelled_begun`` (same variables, its text says 如仍停电，请拨打95598); ``cancelled`` stays
for work called off before it began.

The network is the tests' two-feeder grid (tests/conftest.py); V1 (T1, T2) has a WeCom group
and an SMS liaison (王五)."""

from __future__ import annotations

from typing import Any

from outage_sentinel.channels.base import Message
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.cli import sms_template_notes
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.sms_params import PURPOSES, cancelled_params, sms_purpose
from tests.test_audit_truth_village_promises import at, deliver
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed

SMS = {"type": "sms", "access_key_id": "LTAI5tQ9xExampleKeyId01",
       "access_key_secret": "wXyZ0123456789abcdefEXAMPLEsecret", "sign_name": "某县供电公司"}


def cancelled_to_v1(d: Daemon) -> dict[str, tuple[str, dict[str, Any]]]:
    """The V1 cancellation as each channel has it: (body, params) by channel."""
    return {m.channel: (m.body, dict(m.payload.get("params") or {}))
            for m in d.store.messages()
            if m.audience == "liaison" and m.recipient.startswith("village:V1:")
            and m.purpose == "cancelled"}


def work_on_t1(d: Daemon, cancel_at: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Work on T1 (V1) from 08:00 to 12:00, announced a day ahead, voided at ``cancel_at``
    minutes after its start."""
    feed(d, -1440, ev("P1", "T1", kind="planned", start=at(0), expected_restoration=at(240)))
    deliver(d, -1439)
    feed(d, cancel_at, ev("P1", "T1", kind="planned", start=at(0),
                          expected_restoration=at(240), status="cancelled"))
    deliver(d, cancel_at + 1)
    return cancelled_to_v1(d)


def test_work_called_off_after_it_began_goes_by_the_begun_template(
        daemon: Daemon) -> None:  # noqa: F811
    said = work_on_t1(daemon, 60)
    group, _ = said["wecom"]
    assert "已取消" in group and "如仍停电" in group and "届时正常供电" not in group, group
    _, params = said["sms"]
    assert params["sms_template"] == "cancelled_begun", params
    sms = params["sms"]
    assert set(sms) == {"village", "feeder", "kind", "start", "incident"}, sms
    assert sms["start"].endswith("08:00") and sms["kind"] == "计划停电", sms


def test_work_called_off_before_it_began_keeps_the_cancelled_template(
        daemon: Daemon) -> None:  # noqa: F811
    said = work_on_t1(daemon, -120)
    group, _ = said["wecom"]
    assert "届时正常供电" in group, group
    assert said["sms"][1]["sms_template"] == "cancelled"


def test_the_begun_template_is_a_purpose_of_its_own() -> None:
    assert "cancelled_begun" in PURPOSES
    assert sms_purpose("cancelled", "planned", begun=True) == "cancelled_begun"
    assert sms_purpose("cancelled", "temporary", begun=True) == "cancelled_begun"
    assert sms_purpose("cancelled", "planned") == "cancelled"
    # a fault called off is a notice taken back, begun or not
    assert sms_purpose("cancelled", "fault", begun=True) == "corrected"
    assert set(cancelled_params(village="v", feeder="f", kind="k", start=None,
                                incident="i")) == {"village", "feeder", "kind", "start",
                                                   "incident"}


def test_the_sms_channel_sends_it_on_its_own_code() -> None:
    ch = SmsChannel("sms", access_key_id="id", access_key_secret="secret-0001", sign_name="s",
                    templates={"cancelled": "SMS_C", "cancelled_begun": "SMS_B"},
                    endpoint="http://127.0.0.1:9/")
    message = Message(key="I/2/village:V1:sms:13800000003/cancelled", channel="sms",
                      target="13800000003", text="", purpose="cancelled",
                      params={"kind": "planned", "sms_template": "cancelled_begun",
                              "sms": {"village": "东村"}})
    assert ch.template_for(message) == "SMS_B"
    # A channel configured before the purpose existed sends it on ``cancelled``'s code: an
    # upgrade must not stop the county's SMS until the provider approves a new template
    # (``check`` notes it: that text promises normal supply).
    alone = SmsChannel("sms", access_key_id="id", access_key_secret="secret-0001",
                       sign_name="s", templates={"cancelled": "SMS_C"},
                       endpoint="http://127.0.0.1:9/")
    assert alone.template_for(message) == "SMS_C"


def test_check_notes_the_begun_template_sent_on_cancelleds() -> None:
    """A config from before the purpose existed still passes ``check`` (an upgrade must not
    keep the daemon down until the provider approves a template), with a note naming it."""
    config = parse_config({
        "state_dir": "/tmp/unused",
        "sources": [{"name": "x", "type": "replay", "scenario": "x.jsonl"}],
        "channels": {"sms": {**SMS, "templates": {p: f"SMS_{i}" for i, p in enumerate(PURPOSES)
                                                  if p != "cancelled_begun"}}}})
    problems, notes = sms_template_notes(config)
    assert problems == []
    assert [n for n in notes if "cancelled_begun has no template and is sent on cancelled's"
            in n] != []


def test_check_fails_on_the_begun_template_with_no_code_at_all() -> None:
    config = parse_config({
        "state_dir": "/tmp/unused",
        "sources": [{"name": "x", "type": "replay", "scenario": "x.jsonl"}],
        "channels": {"sms": {**SMS, "templates": {p: f"SMS_{i}" for i, p in enumerate(PURPOSES)
                                                  if p not in ("cancelled_begun", "cancelled")}}}})
    problems, _ = sms_template_notes(config)
    assert problems == ["channels.sms.templates: no template code for cancelled, "
                        "cancelled_begun and no template_code fallback"]


def test_a_tencent_config_from_before_the_purpose_passes_check_with_a_note() -> None:
    templates = {p: {"id": str(1830000 + i), "params": ["incident"]}
                 for i, p in enumerate(PURPOSES) if p != "cancelled_begun"}
    config = parse_config({
        "sources": [{"name": "x", "type": "replay", "scenario": "x.jsonl"}],
        "channels": {"tx": {"type": "tencent_sms", "secret_id": "AKIDexample0001",
                            "secret_key": "tencent-test-key-0001", "sms_sdk_app_id": "1400787878",
                            "sign_name": "某县供电公司", "templates": templates}}})
    problems, notes = sms_template_notes(config)
    assert problems == []
    assert notes == ["channels.tx.templates: cancelled_begun has no template and is sent on "
                     "cancelled's (planned work called off after it began would read as "
                     "cancelled: register one, see docs/channels.md)"]


def test_a_tencent_template_for_it_takes_the_cancelled_variables() -> None:
    templates = {p: {"id": str(1830000 + i), "params": ["incident"]}
                 for i, p in enumerate(PURPOSES)}
    templates["cancelled_begun"] = {"id": "1830012",
                                    "params": ["village", "start", "feeder", "kind", "incident"]}
    config = parse_config({
        "sources": [{"name": "x", "type": "replay", "scenario": "x.jsonl"}],
        "channels": {"tx": {"type": "tencent_sms", "secret_id": "AKIDexample0001",
                            "secret_key": "tencent-test-key-0001", "sms_sdk_app_id": "1400787878",
                            "sign_name": "某县供电公司", "templates": templates}}})
    from outage_sentinel.channels.registry import build_channels

    (ch,) = build_channels(config.channels).values()
    assert sms_template_notes(config) == ([], [])
    assert ch.name == "tx"
