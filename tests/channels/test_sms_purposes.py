"""SMS per purpose, on the wire: the daemon's real planning, store and delivery, a real
``SmsChannel`` against a local service that checks Aliyun's signature, and a real WeCom
channel for the village group. Every purpose gets its own TemplateCode and exactly its
documented TemplateParam; special-care names and phones reach people, never the group."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import PollResult
from outage_sentinel.sms_params import PURPOSES
from outage_sentinel.topology import Topology, topology_from_records
from tests.channels.conftest import FakeService, Reply
from tests.channels.test_sms import KEY_ID, KEY_SECRET, independent_signature
from tests.test_lifecycle import T0, ev, node

LIAISON_V1 = "13800000001"
LIAISON_V2 = "13800000002"
LIAISON_V3 = "13800000003"
CREW = "13900000001"
COMMAND = "13900000009"
ELDER = "13700000001"
LIFE = "13700000002"
#: One code per purpose but "command", which falls back to template_code.
CODES = {p: f"SMS_{p.upper()}" for p in PURPOSES if p != "command"}


def topology() -> Topology:
    nodes = [
        node("S1", "source", "F1", feeder_name="10kV一号线"), node("B1", "breaker", "F1"),
        node("FU1", "fuse", "F1", name="东村支线熔断器"),
        node("T1", "transformer", "F1", "V1", 100, name="东村1号台区"),
        node("T2", "transformer", "F1", "V1", 50, name="东村2号台区"),
        node("T3", "transformer", "F1", "V2", 80, name="西村台区"),
        node("S2", "source", "F2", feeder_name="10kV二号线"), node("B2", "breaker", "F2"),
        node("T4", "transformer", "F2", "V3", 40, name="南村台区"),
    ]
    edges = [("S1", "B1"), ("B1", "FU1"), ("FU1", "T1"), ("FU1", "T2"), ("B1", "T3"),
             ("S2", "B2"), ("B2", "T4")]
    villages = [{"id": v, "name": n, "township": "城关镇", "grid": "G1", "area_type": "rural"}
                for v, n in (("V1", "东村"), ("V2", "西村"), ("V3", "南村"))]
    liaisons = [
        {"village": "V1", "name": "张三", "role": "village_liaison", "phone": LIAISON_V1,
         "channel": "sms", "target": ""},
        {"village": "V1", "name": "李四", "role": "grid_manager", "phone": "13800000011",
         "channel": "wecom", "target": "东村群"},
        {"village": "V2", "name": "王五", "role": "village_liaison", "phone": LIAISON_V2,
         "channel": "sms", "target": ""},
        {"village": "V3", "name": "赵六", "role": "village_liaison", "phone": LIAISON_V3,
         "channel": "sms", "target": ""},
    ]
    crews = [{"id": "C1", "name": "抢修一班", "phone": CREW, "channel": "sms", "target": CREW,
              "feeders": "F1;F2", "lat": 36.55, "lon": 115.55}]
    customers = [
        {"id": "L1", "transformer": "T1", "name": "王大爷", "phone": ELDER, "importance": "",
         "tags": "elderly_alone"},
        {"id": "L2", "transformer": "T2", "name": "刘奶奶", "phone": LIFE, "importance": "",
         "tags": "life_support;elderly_alone"},
    ]
    return topology_from_records(nodes, edges, villages, liaisons, crews, customers)


class Aliyun(FakeService):
    """SendSms as Aliyun answers it: ``Code OK`` for a correctly signed request."""

    def sends(self) -> list[dict[str, str]]:
        forms = [r.form() for r in self.requests]
        for form in forms:
            assert form["Action"] == "SendSms" and form["AccessKeyId"] == KEY_ID
            assert form["Signature"] == independent_signature(form, KEY_SECRET)
        return forms


class County:
    """The daemon's core under a fake clock, delivering through real channels."""

    def __init__(self, tmp: Path, aliyun: FakeService, wecom: FakeService,
                 field: dict[str, Any] | None = None) -> None:
        self.now = T0
        data: dict[str, Any] = {
            "state_dir": str(tmp / "state"),
            "sources": [{"name": "unused", "type": "replay",
                         "scenario": str(tmp / "none.jsonl")}],
            "channels": {
                "sms": {"type": "sms", "endpoint": aliyun.url + "/", "access_key_id": KEY_ID,
                        "access_key_secret": KEY_SECRET, "sign_name": "某县供电公司",
                        "template_code": "SMS_FALLBACK", "templates": CODES},
                "wecom": {"type": "wecom", "base_url": wecom.url,
                          "robots": {"东村群": {"key": "wecom-key-0001"}}},
            },
            "command_centre": {"channel": "sms", "target": COMMAND},
            **({"field": field} if field else {}),
        }
        self.daemon = Daemon(parse_config(data), topology=topology(), sources=[],
                             clock=lambda: self.now)
        self.daemon.start()

    def at(self, minutes: float) -> None:
        self.now = T0 + timedelta(minutes=minutes)

    def feed(self, *events: Any) -> None:
        self.daemon.store.ingest("feed", PollResult(events=list(events)), self.now)
        self.daemon.process()
        self.deliver()

    def deliver(self) -> None:
        self.daemon.lifecycle.check(self.now)
        while self.daemon.deliverer.run_once(self.now):
            pass

    def incident(self, feeder: str) -> str:
        rows = self.daemon.store.load_incidents(open_only=False)
        return next(str(r["id"]) for r in rows if r["feeder"] == feeder)


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[tuple[County, Aliyun, FakeService]]:
    aliyun, wecom = Aliyun(), FakeService()
    aliyun.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "9006^0"})
    county = County(tmp_path, aliyun, wecom)
    yield county, aliyun, wecom
    county.daemon.close()
    aliyun.close()
    wecom.close()


def run_every_purpose(county: County) -> None:
    """A fault (outage, dispatch with care lists, new ETR, restored) and planned work
    (announced, reminded, cancelled)."""
    county.feed(ev("f1", "T1", "T2", "T3", etr=T0 + timedelta(hours=2)))
    fault = county.incident("F1")
    county.at(5)
    county.daemon.lifecycle.ack(fault, "operator:zhang")
    county.daemon.lifecycle.dispatch(fault, "operator:zhang")
    county.deliver()
    county.at(30)
    county.feed(ev("f1", "T1", "T2", "T3", etr=T0 + timedelta(hours=3)))
    county.at(121)
    county.daemon.processor.operator_restore(
        fault, "operator:crew1", None, "2026-11-23 12:00", now=county.daemon.clock())
    county.deliver()
    # Planned work on F2 tomorrow 16:00-20:00 (Shanghai), announced now.
    start = T0 + timedelta(hours=30)
    county.feed(ev("p1", "T4", kind="planned", start=start, etr=start + timedelta(hours=4)))
    county.at(7 * 60)  # 23 h before the start: the 24 h reminder is due
    county.deliver()
    county.at(8 * 60)
    county.feed(ev("p1", "T4", kind="planned", status="cancelled", start=start,
                   etr=start + timedelta(hours=4)))
    # A fault record naming 东村1号台区 alone (the fuse above it inferred, 东村2号台区 with it)
    # ends: 东村 is asked about 2号台区. A fault record on F2 called off: 南村's notice is
    # taken back, nothing said of its power.
    county.at(9 * 60)
    county.feed(ev("f2", "T1", start=county.now), ev("f3", "T4", start=county.now))
    county.at(10 * 60)
    county.feed(ev("f2", "T1", start=T0 + timedelta(hours=9), status="restored"),
                ev("f3", "T4", start=T0 + timedelta(hours=9), status="cancelled"))
    # Planned work on 西村 begun at 20:30 and called off at 21:30: its own template
    # (cancelled_begun), which promises nothing of a day gone by.
    begun, until = T0 + timedelta(hours=10, minutes=30), T0 + timedelta(hours=14)
    county.at(11 * 60)
    county.feed(ev("p2", "T3", kind="planned", start=begun, etr=until))
    county.at(11 * 60 + 30)
    county.feed(ev("p2", "T3", kind="planned", status="cancelled", start=begun, etr=until))


#: The documented parameter set of every purpose (docs/channels.md, "SMS templates").
KEYS = {
    "outage": {"village", "feeder", "kind", "start", "etr", "cause", "households", "incident"},
    "update": {"village", "feeder", "kind", "start", "etr", "cause", "households", "incident"},
    "restored": {"village", "feeder", "start", "restored", "incident"},
    "planned": {"village", "feeder", "kind", "start", "end", "cause", "households", "incident"},
    "reminder": {"village", "feeder", "kind", "start", "end", "hours", "households",
                 "incident"},
    "cancelled": {"village", "feeder", "kind", "start", "incident"},
    "cancelled_begun": {"village", "feeder", "kind", "start", "incident"},
    "corrected": {"village", "feeder", "kind", "start", "incident"},
    "unconfirmed": {"village", "feeder", "start", "ended", "areas", "households", "incident"},
    "care": {"village", "count", "tags", "households", "start", "etr", "incident"},
    "dispatch": {"incident", "priority", "deadline", "feeder", "device", "villages",
                 "customers", "cause", "care"},
    "command": {"summary", "incident"},
}
FAULT = "INC-20261123-0001"
PLANNED = "INC-20261124-0001"


def sent(aliyun: Aliyun) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """TemplateCode -> [(PhoneNumbers, TemplateParam)], by number (each number is sent to by
    its own delivery worker, so the order between numbers is not defined; per number it is the
    sending order)."""
    out: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for form in aliyun.sends():
        out.setdefault(form["TemplateCode"], []).append(
            (form["PhoneNumbers"], json.loads(form["TemplateParam"])))
    return {code: sorted(sends, key=lambda s: s[0]) for code, sends in out.items()}


def test_every_purpose_has_its_template_code_and_parameters(
        wire: tuple[County, Aliyun, FakeService]) -> None:
    county, aliyun, _ = wire
    run_every_purpose(county)
    by_code = sent(aliyun)
    assert set(by_code) == {*CODES.values(), "SMS_FALLBACK"}
    for purpose in PURPOSES:
        for _, params in by_code[CODES.get(purpose, "SMS_FALLBACK")]:
            assert set(params) == KEYS[purpose], purpose
            assert all(isinstance(v, str) and v for v in params.values()), params
            assert all(len(v) <= 35 for v in params.values()), params

    def of(code: str) -> list[tuple[str, dict[str, str]]]:
        """The sends of the first fault (the later two are the unconfirmed and corrected)."""
        return [(n, p) for n, p in by_code[code] if p["incident"] == FAULT]

    assert of("SMS_OUTAGE") == [
        (LIAISON_V1, {"village": "东村", "feeder": "10kV一号线", "kind": "故障停电",
                      "start": "2026-11-23 10:00", "etr": "2026-11-23 12:00",
                      "cause": "线路故障", "households": "150", "incident": FAULT}),
        (LIAISON_V2, {"village": "西村", "feeder": "10kV一号线", "kind": "故障停电",
                      "start": "2026-11-23 10:00", "etr": "2026-11-23 12:00",
                      "cause": "线路故障", "households": "80", "incident": FAULT})]
    # The new ETR, to both villages already told.
    assert [(n, p["etr"]) for n, p in of("SMS_UPDATE")] == [
        (LIAISON_V1, "2026-11-23 13:00"), (LIAISON_V2, "2026-11-23 13:00")]
    # Restored: its own template, with the time power came back (not an empty etr).
    assert of("SMS_RESTORED") == [
        (LIAISON_V1, {"village": "东村", "feeder": "10kV一号线", "start": "2026-11-23 10:00",
                      "restored": "2026-11-23 12:00", "incident": FAULT}),
        (LIAISON_V2, {"village": "西村", "feeder": "10kV一号线", "start": "2026-11-23 10:00",
                      "restored": "2026-11-23 12:00", "incident": FAULT})]
    assert of("SMS_DISPATCH") == [
        (CREW, {"incident": FAULT, "priority": of("SMS_DISPATCH")[0][1]["priority"],
                "deadline": "2026-11-23 11:30", "feeder": "10kV一号线",
                # Only inferred (the record names areas, not the breaker): said so.
                "device": "B1（推断，可能性约95%）",
                "villages": "东村、西村", "customers": "230", "cause": "线路故障",
                "care": "2"})]
    assert int(of("SMS_DISPATCH")[0][1]["priority"]) > 0
    # Planned work: announced on its own template with the planned end, reminded with the
    # hours left, cancelled.
    assert [(n, p) for n, p in by_code["SMS_PLANNED"] if p["incident"] == PLANNED] == [
        (LIAISON_V3, {"village": "南村", "feeder": "10kV二号线", "kind": "计划停电",
                      "start": "2026-11-24 16:00", "end": "2026-11-24 20:00",
                      "cause": "线路故障", "households": "40", "incident": PLANNED})]
    assert by_code["SMS_REMINDER"] == [
        (LIAISON_V3, {"village": "南村", "feeder": "10kV二号线", "kind": "计划停电",
                      "start": "2026-11-24 16:00", "end": "2026-11-24 20:00", "hours": "23",
                      "households": "40", "incident": PLANNED})]
    assert by_code["SMS_CANCELLED"] == [
        (LIAISON_V3, {"village": "南村", "feeder": "10kV二号线", "kind": "计划停电",
                      "start": "2026-11-24 16:00", "incident": PLANNED})]
    # Work called off after it began: its own template, never cancelled's 届时正常供电.
    [(number, begun)] = by_code["SMS_CANCELLED_BEGUN"]
    assert number == LIAISON_V2 and begun["village"] == "西村" and begun["kind"] == "计划停电"
    assert begun["start"] == "2026-11-23 20:30"
    # The second fault's record named 1号台区 only: 2号台区's 50 households are possibly off.
    assert [(n, p["households"]) for n, p in by_code["SMS_OUTAGE"]
            if p["incident"] != FAULT and p["village"] == "东村"] == [
        (LIAISON_V1, "确认100户、可能另有50")]
    [(_, unsure)] = by_code["SMS_UNCONFIRMED"]
    assert unsure["village"] == "东村" and unsure["areas"] == "东村2号台区"
    assert unsure["households"] == "50" and unsure["ended"] == "2026-11-23 20:00"
    assert by_code["SMS_CORRECTED"] == [
        (LIAISON_V3, {"village": "南村", "feeder": "10kV二号线", "kind": "故障停电",
                      "start": "2026-11-23 19:00", "incident": unsure["incident"][:-1] + "3"})]
    # Command-centre messages have no code of their own here: the fallback template_code.
    assert (COMMAND, {"summary": f"已恢复 {FAULT} 第3版", "incident": FAULT}) \
        in by_code["SMS_FALLBACK"]
    # ... and the crew's power-back of the second fault, its first line as the summary.
    assert {n for n, _ in by_code["SMS_FALLBACK"]} == {COMMAND, CREW}
    assert all(p["summary"].startswith("已恢复送电") for n, p in by_code["SMS_FALLBACK"]
               if n == CREW)


def test_care_list_goes_to_the_liaison_by_sms_and_only_the_count_to_the_group(
        wire: tuple[County, Aliyun, FakeService]) -> None:
    county, aliyun, wecom = wire
    run_every_purpose(county)
    # The liaison's own SMS: households by name with full phones, most urgent first.
    assert [(n, p) for n, p in sent(aliyun)["SMS_CARE"] if p["incident"] == FAULT] == [
        (LIAISON_V1, {"village": "东村", "count": "2", "tags": "生命支持1户、独居老人2户",
                      "households": f"刘奶奶{LIFE}、王大爷{ELDER}",
                      "start": "2026-11-23 10:00", "etr": "2026-11-23 12:00",
                      "incident": FAULT})]
    # The village's WeCom group robot: the count and who holds the list, nothing more.
    group = [r.json()["text"]["content"] for r in wecom.requests]
    care = [t for t in group if t.startswith("【重点关怀】") and FAULT in t]
    assert care == [f"【重点关怀】东村（城关镇）故障停电\n本村有2户特殊关怀用户，名单已发送给"
                    f"村联络人张三（短信），请与其联系，不在群内公布。\n编号：{FAULT}（第1版）"]
    for text in group:
        for private in ("王大爷", "刘奶奶", ELDER, LIFE, "独居老人", "生命支持"):
            assert private not in text
    # The crew's dispatch carries the list (the crew is a recipient the list is for).
    assert sent(aliyun)["SMS_DISPATCH"][0][1]["care"] == "2"


def test_docs_list_every_parameter_of_every_purpose() -> None:
    """docs/channels.md has a table per purpose naming exactly the variables sent."""
    import re

    docs = (Path(__file__).parents[2] / "docs" / "channels.md").read_text("utf-8")
    section = docs[docs.index("### SMS templates per purpose"):]
    for purpose in PURPOSES:
        start = section.index(f"**`{purpose}`**")
        end = section.find("**`", start + 5)
        block = section[start:end if end > 0 else None]
        documented = set(re.findall(r"^\| `(\w+)` \|", block, flags=re.M))
        assert documented == KEYS[purpose], purpose
        template = next(line for line in block.splitlines() if "${" in line)
        assert set(re.findall(r"\$\{(\w+)\}", template)) == KEYS[purpose], purpose
        assert "【" not in template and "}${" not in template


def test_with_field_links_a_liaisons_sms_carries_its_link_token(tmp_path: Path) -> None:
    """outage, update and restored carry ``link`` (the template holds the board's address);
    the token opens that liaison's village page; the crew's dispatch carries the crew page's;
    no other purpose has one."""
    from starlette.testclient import TestClient

    from outage_sentinel.board.app import create_app
    from outage_sentinel.board.serve import build

    aliyun, wecom = Aliyun(), FakeService()
    aliyun.default = Reply(200, {"Code": "OK", "Message": "OK", "BizId": "9006^0"})
    county = County(tmp_path, aliyun, wecom, field={"base_url": "https://board.example.cn"})
    try:
        run_every_purpose(county)
        by_code = sent(aliyun)
        for purpose in PURPOSES:
            linked = purpose in ("outage", "update", "restored", "unconfirmed", "dispatch")
            for _, params in by_code[CODES.get(purpose, "SMS_FALLBACK")]:
                assert set(params) == KEYS[purpose] | ({"link"} if linked else set()), purpose
                assert all(len(v) <= 35 for v in params.values()), params
        tokens = {n: p["link"] for n, p in by_code["SMS_OUTAGE"] if p["incident"] == FAULT}
        assert all(len(t) == 24 for t in tokens.values())
        assert tokens[LIAISON_V1] != tokens[LIAISON_V2]  # one link per recipient
        # The same liaison's link in the update and the restoration: one page, one answer.
        assert {p["link"] for n, p in by_code["SMS_UPDATE"] + by_code["SMS_RESTORED"]
                if n == LIAISON_V1 and p["incident"] == FAULT} == {tokens[LIAISON_V1]}
        # The second fault's: the question whether 2号台区 is back opens its own page.
        [(_, unsure)] = by_code["SMS_UNCONFIRMED"]
        second = {p["link"] for n, p in by_code["SMS_OUTAGE"] if p["incident"] != FAULT
                  and n == LIAISON_V1}
        assert second == {unsure["link"]} and unsure["link"] != tokens[LIAISON_V1]
        board = build(county.daemon.config, county.daemon.store, lambda: county.daemon.topology,
                      county.daemon.clock)
        client = TestClient(create_app(board))
        page = client.get(f"/f/{tokens[LIAISON_V1]}")
        assert page.status_code == 200 and "东村" in page.text and "西村" not in page.text
        # The crew's dispatch by SMS: its token opens the crew page of that incident.
        [dispatch] = [p for _, p in by_code["SMS_DISPATCH"] if p["incident"] == FAULT]
        crew_page = client.get(f"/c/{dispatch['link']}")
        assert crew_page.status_code == 200 and FAULT in crew_page.text
        assert client.get(f"/f/{dispatch['link']}").status_code != 200  # not a liaison page
    finally:
        county.daemon.close()
        aliyun.close()
        wecom.close()
