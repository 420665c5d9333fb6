"""Special-care lists (names, phones, 独居老人/生命支持) go only to people: liaisons reached by
SMS or e-mail get the list; a group (robot, webhook, file/console sink) gets the count and who
holds the list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.config import parse_config
from outage_sentinel.crew import care_list_context
from outage_sentinel.incidents import Evidence, Incident, first_estimate
from outage_sentinel.liaison import LiaisonPlanner, Renderer, individual_channels
from outage_sentinel.topology import Topology
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

SHANGHAI = ZoneInfo("Asia/Shanghai")
PRIVATE = ("居民甲", "13700000002", "生命支持", "独居老人", "life support", "elderly alone")


def grid_with(*liaisons: dict[str, Any]) -> Topology:
    """The shared test grid (居民甲, life support + elderly alone, behind T4 in 刘庄村 V2,
    whose liaison 赵六 is in a DingTalk group), with extra liaisons."""
    feeders = {n: ("F2" if n in GRID_F2 else "F1") for e in GRID_EDGES for n in e}
    return build_topology(
        GRID_EDGES, feeders=feeders, customers=GRID_CUSTOMERS, villages=GRID_VILLAGES,
        normally_open=["TIE"], village_rows=GRID_VILLAGE_ROWS,
        liaisons=[*GRID_LIAISONS, *liaisons],
        customer_rows=[{"id": "C-LIFE", "transformer": "T4", "name": "居民甲",
                        "phone": "13700000002", "importance": "",
                        "tags": "life_support;elderly_alone"}])


def care_rows(topo: Topology, individual: dict[str, str], language: str = "zh"
              ) -> list[dict[str, Any]]:
    est = first_estimate(topo, Evidence(dead=frozenset({"T4"})))
    inc = Incident(id="INC-1", feeder="F1", kind="fault", status="active", revision=2,
                   start=T0, etr=T0 + timedelta(hours=2), end=None, cause="雷击",
                   area_text="", members={}, estimate=est)
    care = care_list_context(topo, inc, "V2", T0, SHANGHAI, language)
    assert care["households"]
    planner = LiaisonPlanner(topo, Renderer(language), SHANGHAI)
    return planner.care_rows(inc, "V2", care, individual, "马集抢修班")


def test_group_only_village_hears_the_count_and_that_the_crew_holds_the_list() -> None:
    (row,) = care_rows(grid_with(), individual={"sms": "sms"})
    assert (row.channel, row.target) == ("dingtalk", "group-v2")
    assert row.body == ("【重点关怀】刘庄村（马集镇）故障停电\n"
                           "本村有1户特殊关怀用户，名单已发送给马集抢修班，请与其联系，不在群内公布。\n"
                           "编号：INC-1（第2版）")
    text = repr(row)
    for private in PRIVATE:
        assert private not in text


def test_liaison_by_email_and_sms_gets_the_list_and_the_group_is_told_who_holds_it() -> None:
    topo = grid_with(
        {"village": "V2", "name": "周九", "role": "grid_manager", "phone": "13800000009",
         "channel": "mail", "target": "zhou@example.cn"},
        {"village": "V2", "name": "吴十", "role": "transformer_manager",
         "phone": "13800000010", "channel": "sms", "target": ""})
    rows = {r.channel: r for r in care_rows(topo, {"sms": "sms", "mail": "email"})}
    assert set(rows) == {"dingtalk", "mail", "sms"}
    for person in ("mail", "sms"):
        assert "居民甲" in rows[person].body and "13700000002" in rows[person].body
        assert "生命支持" in rows[person].body
    assert rows["sms"].payload["params"]["sms"]["households"] == "居民甲13700000002"
    group = rows["dingtalk"]
    assert ("名单已发送给网格经理周九（邮件）、台区经理吴十（短信）" in group.body)
    for private in PRIVATE:
        assert private not in repr(group)


def test_file_and_webhook_channels_count_as_groups() -> None:
    topo = grid_with({"village": "V2", "name": "周九", "role": "grid_manager",
                      "phone": "13800000009", "channel": "hook", "target": "ops"})
    rows = care_rows(topo, individual={}, language="en")
    assert {r.channel for r in rows} == {"dingtalk", "hook"}
    for row in rows:
        assert "1 special-care household(s) in this village; the list went to 马集抢修班" \
            in row.body
        for private in PRIVATE:
            assert private not in repr(row)


def test_individual_or_group_is_decided_by_the_channel_type() -> None:
    secret = {"access_key_id": "id-0001", "access_key_secret": "secret-0001"}
    config = parse_config({"state_dir": "/tmp/unused", "sources": [
        {"name": "x", "type": "replay", "scenario": "x.jsonl"}], "channels": {
        "text": {"type": "sms", "sign_name": "s", "template_code": "SMS_1", **secret},
        "off": {"type": "sms", "sign_name": "s", "template_code": "SMS_1", "enabled": False,
                **secret},
        "mail": {"type": "email", "host": "127.0.0.1", "sender": "os@example.cn"},
        "wecom": {"type": "wecom", "robots": {"g": {"key": "k-0001"}}},
        "dingtalk": {"type": "dingtalk", "robots": {"g": {"key": "k-0001"}}},
        "feishu": {"type": "feishu", "robots": {"g": {"key": "k-0001"}}},
        "hook": {"type": "webhook", "url": "http://127.0.0.1/{target}"},
        "sink": {"type": "file", "path": "/tmp/unused.jsonl"},
        "screen": {"type": "console"}}})
    assert individual_channels(config.channels) == {"text": "sms", "mail": "email"}
