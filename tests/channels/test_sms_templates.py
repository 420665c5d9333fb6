"""SMS template configuration and parameter limits: ``templates:`` per purpose with the old
``template_code`` as fallback, what ``check`` says, and Aliyun's 35-character variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.sms import SmsChannel
from outage_sentinel.config import ConfigError, parse_config
from outage_sentinel.sms_params import (
    PURPOSES,
    VARIABLE_LIMIT,
    care_params,
    command_params,
    customers_value,
    dispatch_params,
    outage_params,
    pack,
    power_back_summary,
    sms_purpose,
)
from tests.channels.conftest import FakeService, Reply
from tests.e2e_helpers import make_config
from tests.test_cli import cli

SMS = {"type": "sms", "access_key_id": "LTAI5tQ9xExampleKeyId01",
       "access_key_secret": "wXyZ0123456789abcdefEXAMPLEsecret", "sign_name": "某县供电公司"}


def config_with(sms: dict[str, Any]) -> Any:
    return parse_config({"state_dir": "/tmp/unused", "sources": [
        {"name": "x", "type": "replay", "scenario": "x.jsonl"}], "channels": {"sms": sms}})


def test_an_old_config_with_one_template_code_stays_valid() -> None:
    ch = config_with({**SMS, "template_code": "SMS_1"}).channels["sms"]
    assert ch.template_code == "SMS_1" and ch.templates == {}
    assert ch.purposes_without_code() == list(PURPOSES)


def test_unknown_purpose_and_missing_codes_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        config_with({**SMS, "templates": {"restoration": "SMS_2"}})
    assert "templates.restoration: unknown purpose" in str(info.value)
    assert "channels.sms" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_with(dict(SMS))
    assert "give 'templates' (a code per purpose) or 'template_code'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_with({**SMS, "templates": {"outage": " "}})
    assert "templates.outage: must not be empty" in str(info.value)


def _check(tmp_path: Path, sms: dict[str, Any]) -> Any:
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"]["sms"] = sms
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cli("--config", str(cfg), "check")


def test_check_notes_purposes_on_the_fallback_code(tmp_path: Path) -> None:
    r = _check(tmp_path, {**SMS, "template_code": "SMS_1",
                          "templates": {"outage": "SMS_2", "restored": "SMS_3"}})
    assert r.returncode == 0, r.stderr
    assert ("note: channels.sms.templates: planned, update, unconfirmed, cancelled, "
            "cancelled_begun, corrected, reminder, care, dispatch, command use the fallback "
            "template_code SMS_1") in r.stdout


def test_check_fails_on_purposes_without_any_code(tmp_path: Path) -> None:
    r = _check(tmp_path, {**SMS, "templates": {p: f"SMS_{i}" for i, p in enumerate(PURPOSES)
                                               if p not in ("care", "command")}})
    assert r.returncode == 1
    assert ("channels.sms.templates: no template code for care, command and no "
            "template_code fallback") in r.stderr


def test_a_purpose_without_a_code_is_refused_permanently_naming_the_key(
        service: FakeService) -> None:
    ch = SmsChannel("sms", access_key_id="id", access_key_secret="secret-0001",
                    sign_name="s", templates={"outage": "SMS_OUT"}, endpoint=service.url + "/")
    message = Message(key="I/1/village:V1:sms:13800000001/care", channel="sms",
                      target="13800000001", text="", purpose="care",
                      params={"sms_template": "care", "sms": {"village": "东村"}})
    result = ch.send(message)
    assert result.outcome is Outcome.PERMANENT
    assert "channels.sms.templates.care" in result.detail
    assert service.requests == []


def test_rate_keys_count_per_number_and_the_purpose_template(service: FakeService) -> None:
    service.default = Reply(200, {"Code": "OK"})
    ch = SmsChannel("sms", access_key_id="id", access_key_secret="secret-0001",
                    sign_name="s", template_code="SMS_ANY",
                    templates={"restored": "SMS_BACK"}, endpoint=service.url + "/")
    back = Message(key="k", channel="sms", target="13800000001", text="", purpose="restored")
    other = Message(key="k2", channel="sms", target="13800000001", text="",
                    purpose="reminder_24h")
    assert ch.rate_keys(back) == ("13800000001/SMS_BACK",)
    assert ch.rate_keys(other) == ("13800000001/SMS_ANY",)


@pytest.mark.parametrize(("purpose", "kind", "expected"), [
    ("outage", "fault", "outage"), ("outage", "planned", "planned"),
    ("outage", "temporary", "planned"), ("reminder_1h", "planned", "reminder"),
    ("care", "fault", "care"), ("dispatch", "fault", "dispatch"),
    ("escalation_overdue", "fault", "command"), ("dead_letter", "fault", "command"),
    ("daily_report", "fault", "command"),
    # A fault called off is a notice taken back, not "届时正常供电"; announced work keeps it.
    ("cancelled", "fault", "corrected"), ("cancelled", "planned", "cancelled"),
    ("cancelled", "temporary", "cancelled"), ("corrected", "planned", "corrected"),
])
def test_sms_purpose_of_outbox_purposes(purpose: str, kind: str, expected: str) -> None:
    assert sms_purpose(purpose, kind) == expected


def test_households_only_possibly_off_are_never_counted_as_sure() -> None:
    from outage_sentinel.sms_params import households_value, reminder_params

    assert households_value(150) == households_value(150, 150) == "150"
    assert households_value(150, 100) == "确认100户、可能另有50"
    assert households_value(150, 0) == "可能150"
    assert households_value(150, 100, "en") == "100 confirmed, possibly 50 more"
    for value in (outage_params(village="东村", feeder="F", kind="故障停电", start=None,
                                etr=None, cause=None, households=150, incident="I",
                                confirmed=100)["households"],
                  reminder_params(village="东村", feeder="F", kind="计划停电", start=None,
                                  end=None, hours=24, households=150, incident="I",
                                  confirmed=0)["households"]):
        assert "可能" in value and len(value) <= VARIABLE_LIMIT


def test_a_dispatch_never_counts_customers_only_inferred_off_as_sure() -> None:
    """The crew's text said "150户（已确认50户，其余未确认）", its SMS "共150户"."""
    assert customers_value(150) == customers_value(150, 150) == "150"
    assert customers_value(150, 50) == "150（已确认50）"
    assert customers_value(150, 0) == "150（均未确认）"
    assert customers_value(150, 50, "en") == "150 (50 confirmed)"
    assert customers_value(150, 0, "en") == "150 (none confirmed)"
    crew = dispatch_params(incident="INC-1", priority=87, deadline=None, feeder="F",
                           device="FU1", villages=["东村"], customers=150, cause=None,
                           care=1, confirmed=50)
    assert crew["customers"] == "150（已确认50）"


@pytest.mark.parametrize(("by", "unsure", "language", "summary"), [
    ("feed", (), "zh", "已恢复送电（据feed）；派工未撤回"),
    ("feed", ("T2",), "zh", "已恢复送电（据feed），T2来电未确认；派工未撤回"),
    # who said so goes first when the areas need the room
    ("村联络人反馈", ("东村2号台区", "东村3号台区", "西村1号台区"), "zh",
     "已恢复送电，东村2号台区、东村3号台区等3个台区来电未确认；派工未撤回"),
    # a name too long to be whole: the count, never a cut name
    ("feed", ("很长的台区名" * 4,), "zh", "已恢复送电（据feed），1个台区来电未确认；派工未撤回"),
    ("feed", (), "en", "Back (per feed); proceed"),
    ("feed", ("T2",), "en", "Back; T2 unconfirmed; proceed"),
])
def test_a_crews_power_back_summary_keeps_the_unconfirmed_areas_and_the_orders(
        by: str, unsure: tuple[str, ...], language: str, summary: str) -> None:
    """The ``command`` summary of a crew's power-back was its first line cut to 35
    characters: the areas nobody confirmed and "派工未撤回" were lost."""
    value = power_back_summary(by, unsure, language)
    assert value == summary and len(value) <= VARIABLE_LIMIT
    assert command_params(summary=value, incident="INC-1")["summary"] == summary


def test_long_care_lists_are_cut_with_the_count_within_the_variable_limit() -> None:
    households = [{"name": f"用户{i}", "phone": f"1370000{i:04d}", "tags": ["elderly_alone"]}
                  for i in range(8)]
    params = care_params(village="东村", households=households, total=11, start=None,
                         etr=None, incident="INC-1")
    assert params["households"] == "用户013700000000、用户113700000001等11户"
    assert params["count"] == "11"
    assert params["tags"] == "独居老人8户"
    assert params["etr"] == "待定" and params["start"] == "待定"
    assert all(len(v) <= VARIABLE_LIMIT for v in params.values())


def test_values_are_strings_cut_to_the_limit_and_never_empty() -> None:
    params = outage_params(village="很长的村名" * 10, feeder="10kV一号线", kind="故障停电",
                           start="2026-11-23 10:00", etr=None, cause="  ", households=0,
                           incident="INC-1")
    assert len(params["village"]) == VARIABLE_LIMIT and params["village"].endswith("…")
    assert params["cause"] == "待查" and params["etr"] == "待定"
    assert params["households"] == "0"
    crew = dispatch_params(incident="INC-1", priority=87, deadline=None, feeder="F",
                           device="", villages=[f"第{i}村" for i in range(20)], customers=5,
                           cause=None, care=0)
    assert crew["villages"].endswith("等20个村") and len(crew["villages"]) <= VARIABLE_LIMIT
    assert all(isinstance(v, str) and v for v in crew.values())


def test_pack_cuts_a_single_oversized_item() -> None:
    assert pack(["甲" * 50], 3, "等{n}户") == "甲" * 31 + "…等3户"  # 35 characters
    assert pack([], 0, "等{n}户") == ""


def test_a_link_token_is_a_whole_variable_or_none() -> None:
    from outage_sentinel.sms_params import with_link

    base = outage_params(village="东村", feeder="F1", kind="故障停电", start=None, etr=None,
                         cause=None, households=3, incident="INC-1")
    assert with_link(base, "A" * 24) == {**base, "link": "A" * 24}
    for bad in ("", "A" * (VARIABLE_LIMIT + 1)):  # never cut: a cut link opens nothing
        with pytest.raises(ValueError):
            with_link(base, bad)


def test_docs_say_how_a_template_carries_the_link() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "channels.md").read_text("utf-8")
    intro = docs[docs.index("### SMS templates per purpose"):docs.index("**`outage`**")]
    assert "/f/${link}" in intro and "| `link` |" in intro


@pytest.mark.parametrize(("basis", "probability", "shown"), [
    ("inferred", "约80%", "东村支线熔断器（推断，可能性约80%）"),
    ("inferred", "", "东村支线熔断器（推断）"),
    ("reported", "", "东村支线熔断器（已报告动作）"),
    ("set", "", "东村支线熔断器（指挥中心确认）"),
    ("", "", "东村支线熔断器（推断）"),  # no word of how it is known: never read as fact
])
def test_the_dispatch_device_says_how_sure_the_fault_point_is(
        basis: str, probability: str, shown: str) -> None:
    crew = dispatch_params(incident="INC-1", priority=87, deadline=None, feeder="F",
                           device="东村支线熔断器", villages=["东村"], customers=5, cause=None,
                           care=0, basis=basis, probability=probability)
    assert crew["device"] == shown


def test_a_long_device_name_is_cut_and_its_certainty_kept() -> None:
    crew = dispatch_params(incident="INC-1", priority=87, deadline=None, feeder="F",
                           device="很长的设备名" * 10, villages=["东村"], customers=5, cause=None,
                           care=0, basis="inferred", probability="约55%")
    assert len(crew["device"]) == VARIABLE_LIMIT
    assert crew["device"].endswith("…（推断，可能性约55%）")
