"""A liaison, crew or care holder reached by Tencent Cloud SMS (``tencent_sms``) is treated as
one reached by Aliyun SMS (``sms``): the special-care list goes to them in person (the ``care``
template, not the group's count text), progress notices for groups are not queued for them,
a field link goes as the template's ``link`` variable, ``outage-sentinel check`` reads their
targets as mobile numbers and names purposes without a template, and a message to several
numbers sent one request per number counts each number once against its daily limit.

Every scenario runs for both SMS types, on a channel keyed ``text`` (a channel keyed ``sms``
is taken for SMS by its name alone, whatever its type).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from outage_sentinel.channels.tencent_sms import Template, TencentSmsChannel
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.delivery import Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DAY, RateLimit
from outage_sentinel.sms_params import PURPOSES
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.channels.test_tencent_sms import (
    APP_ID,
    NOW,
    OTHER,
    PHONE,
    POLICY,
    SECRET_ID,
    SECRET_KEY,
    SMS,
    FakeTencent,
    tencent,  # noqa: F401 - the fixture
)
from tests.conftest import (
    GRID_CUSTOMERS,
    GRID_EDGES,
    GRID_F2,
    GRID_LIAISONS,
    GRID_VILLAGE_ROWS,
    GRID_VILLAGES,
    T0,
    build_topology,
)
from tests.e2e_helpers import make_config
from tests.test_care_and_reminder_truth import Clock, ev, feed, household, messages
from tests.test_check_routing import cli, copy_bundle, rows, write_rows
from tests.test_delivery import enqueue
from tests.test_lifecycle import Recorder

SMS_TYPES = ("sms", "tencent_sms")
GROUPS = ("wecom", "dingtalk", "feishu", "cc")
#: 马集村 (V1): two life-support households behind T1; its SMS liaison is 王五.
CARE = [household("L1", "T1", "life_support"), household("L2", "T1", "life_support")]


def sms_channel(kind: str, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """An SMS channel of ``kind`` with a template for every purpose but ``leave_out``."""
    if kind == "sms":
        return {"type": "sms", "endpoint": "http://127.0.0.1:9/", "access_key_id": "id-0001",
                "access_key_secret": "wiring-test-key-5c1e", "sign_name": "某县供电公司",
                "templates": {p: f"SMS_{i}" for i, p in enumerate(PURPOSES)
                              if p not in leave_out}}
    return {"type": "tencent_sms", "base_url": "http://127.0.0.1:9", "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY, "sms_sdk_app_id": APP_ID, "sign_name": "某县供电公司",
            "templates": {p: {"id": str(1830000 + i), "params": ["incident"]}
                          for i, p in enumerate(PURPOSES) if p not in leave_out}}


def grid(crew_channel: str = "wecom") -> Topology:
    """The shared two-feeder grid, 王五's SMS on the channel keyed ``text``, crew CR1 on
    ``crew_channel``."""
    feeders = {n: ("F2" if n in GRID_F2 else "F1") for e in GRID_EDGES for n in e}
    liaisons = [{**li, "channel": "text" if li["channel"] == "sms" else li["channel"]}
                for li in GRID_LIAISONS]
    crew_target = "13900000001" if crew_channel == "text" else "crew-1"
    return build_topology(
        GRID_EDGES, feeders=feeders, customers=GRID_CUSTOMERS, villages=GRID_VILLAGES,
        normally_open=["TIE"], names={t: f"台区{t}" for t in GRID_CUSTOMERS},
        village_rows=GRID_VILLAGE_ROWS, liaisons=liaisons,
        crews=[{"id": "CR1", "name": "马集抢修班", "phone": "13900000001",
                "channel": crew_channel, "target": crew_target, "feeders": "F1"}],
        customer_rows=CARE)


def make_daemon(tmp_path: Path, db_url: str, kind: str, topology: Topology,
                **config: Any) -> Daemon:
    """A started daemon whose channel ``text`` is an SMS channel of ``kind`` (recorded)."""
    data = {
        "state_dir": str(tmp_path / "state"),
        "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {**{name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                        for name in GROUPS}, "text": sms_channel(kind)},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        **config,
    }
    d = Daemon(parse_config(data), topology=topology, sources=[],
               channels={name: Recorder(name) for name in (*GROUPS, "text")}, clock=Clock())
    d.start()
    return d


@pytest.mark.parametrize("kind", SMS_TYPES)
def test_a_liaison_by_sms_of_either_type_gets_the_care_list(
        tmp_path: Path, db_url: str, kind: str) -> None:
    d = make_daemon(tmp_path, db_url, kind, grid())
    try:
        feed(d, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
        care = {m.channel: m for m in messages(d, "care", "V1")}
        assert set(care) == {"wecom", "text"}, "the fault was dispatched with a care list"
        sms = care["text"]
        assert sms.payload["params"]["sms_template"] == "care"
        assert sms.payload["params"]["sms"]["count"] == "2"
        assert "户L1" in sms.body and "户L2" in sms.body  # the list, not the count text
        assert "不在群内公布" not in sms.body
        group = care["wecom"].body
        assert "户L1" not in group and "名单已发送给" in group
        assert "台区经理王五（短信）" in group  # the SMS type said as 短信, whichever carrier
    finally:
        d.close()


@pytest.mark.parametrize("kind", SMS_TYPES)
def test_progress_notices_go_to_the_groups_and_not_by_sms(
        tmp_path: Path, db_url: str, kind: str) -> None:
    d = make_daemon(tmp_path, db_url, kind, grid())
    try:
        feed(d, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
        (iid,) = {m.incident_id for m in messages(d, "outage")}
        assert {m.channel for m in messages(d, "outage", "V1")} == {"wecom", "text"}
        d.lifecycle.arrive(iid, "crew:CR1")
        progress = messages(d, "progress_on_site")
        assert progress, "the villages told of the outage hear the crew is on site"
        assert {m.channel for m in progress} <= set(GROUPS)
        assert "village:V1:wecom:group-v1" in {m.recipient for m in progress}
    finally:
        d.close()


@pytest.mark.parametrize("kind", SMS_TYPES)
def test_field_links_go_as_the_templates_link_variable(
        tmp_path: Path, db_url: str, kind: str) -> None:
    d = make_daemon(tmp_path, db_url, kind, grid(crew_channel="text"),
                    field={"base_url": "http://board.example.cn"})
    try:
        feed(d, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
        outage = {m.channel: m for m in messages(d, "outage", "V1")}
        sms, group = outage["text"], outage["wecom"]
        token = sms.payload["params"]["sms"]["link"]
        assert token and "http://board.example.cn" not in sms.body
        assert "http://board.example.cn/f/" in group.body
        assert "link" not in group.payload["params"].get("sms", {})
        (dispatch,) = [m for m in d.store.messages() if m.purpose == "dispatch"]
        assert dispatch.channel == "text"
        assert dispatch.payload["params"]["sms"]["link"]
        assert "http://board.example.cn/c/" not in dispatch.body
    finally:
        d.close()


@pytest.mark.parametrize("kind", SMS_TYPES)
def test_check_reads_the_target_as_a_mobile_and_names_purposes_without_a_template(
        tmp_path: Path, kind: str) -> None:
    bundle = copy_bundle(tmp_path)
    crews = rows(bundle / "crews.csv")
    c = next(i for i, r in enumerate(crews) if r["channel"] == "sms")
    crews[c]["target"] = "12345678901"         # not a mobile prefix
    write_rows(bundle / "crews.csv", crews)
    cfg = make_config(tmp_path, topology=str(bundle))
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"]["sms"] = sms_channel(kind, leave_out=("care", "command"))
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1, r.stdout
    (line,) = [p for p in r.stderr.splitlines() if f"crews.csv:{c + 2} ({crews[c]['id']})" in p]
    assert "SMS target '12345678901' is not a" in line and "mobile number" in line, r.stderr
    (templates,) = [p.strip() for p in r.stderr.splitlines() if "channels.sms.templates" in p]
    assert templates.startswith("channels.sms.templates: no template") and \
        "for care, command" in templates


def test_a_tencent_target_in_e164_passes_check(tmp_path: Path) -> None:
    """Tencent takes E.164 numbers beyond the mainland: ``check`` agrees with the channel."""
    bundle = copy_bundle(tmp_path)
    crews = rows(bundle / "crews.csv")
    c = next(i for i, r in enumerate(crews) if r["channel"] == "sms")
    crews[c]["target"] = "+85291234567"
    write_rows(bundle / "crews.csv", crews)
    cfg = make_config(tmp_path, topology=str(bundle))
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"]["sms"] = sms_channel("tencent_sms")
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 0, r.stderr


def test_each_number_of_a_message_in_parts_counts_once_against_its_daily_limit(
        sqlite_store: Store, tencent: FakeTencent) -> None:  # noqa: F811 - the fixture
    """A daily limit of one SMS per number: a message to two numbers goes to both (each
    number's one SMS of the day), not to the first alone with the second held for a day
    because the first number was counted again for the second's request."""
    enqueue(sqlite_store, OutboxMessage(
        incident_id="INC-7", revision=1, recipient="crew:C1", purpose="outage", channel="tx",
        target="crew-c1", audience="crew", subject="s", body="b",
        payload={"mentions": [PHONE, OTHER], "params": {"sms_template": "outage", "sms": SMS}}))
    ch = TencentSmsChannel(
        "tx", secret_id=SECRET_ID, secret_key=SECRET_KEY, sms_sdk_app_id=APP_ID,
        sign_name="某县供电公司", base_url=tencent.url, timeout=2.0,
        clock=lambda: NOW,
        templates={"outage": Template("1830001", ("village", "incident"))},
        rate_limits=(RateLimit(1, DAY),))
    Deliverer(sqlite_store, {"tx": ch}, POLICY, Metrics(), rand=lambda: 0.5).run_once(T0)
    (m,) = sqlite_store.messages()
    assert [b["PhoneNumberSet"] for b in tencent.sent()] == [
        ["+8613812341234"], ["+8613900001111"]]
    assert m.status == "sent", m.last_error


def test_check_names_a_tencent_template_with_link_while_field_links_are_off() -> None:
    """Without field links no message has a ``link``: a template listing it would refuse
    every such SMS, so ``check`` says so; with them on it is what the template needs."""
    from outage_sentinel.cli import sms_template_notes

    channel = sms_channel("tencent_sms")
    channel["templates"]["outage"]["params"] = ["village", "link", "incident"]
    data: dict[str, Any] = {
        "sources": [{"name": "demo", "type": "replay", "scenario": "s.jsonl"}],
        "channels": {"tx": channel}}
    problems, _ = sms_template_notes(parse_config(data))
    assert problems == ["channels.tx.templates.outage.params: 'link' while field links are "
                        "off (field.base_url unset): those SMS would be refused"]
    linked = parse_config({**data, "field": {"base_url": "https://board.example.cn"}})
    assert sms_template_notes(linked) == ([], [])
