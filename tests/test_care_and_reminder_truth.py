"""What special-care notices and planned-work reminders tell people must be what they have.

- The care SMS counts households per tag over all of them, not over the few its list shows
  ("本村13户（生命支持8户）" hid two life-support households).
- A reminder of planned work says 可能受影响 of the areas its record names only loosely, as its
  announcement does; the SMS ``households`` of both say how many are only possible.
- A village group is told the crew holds its care list only when the crew's dispatch lists
  every one of the village's households.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel import crew
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.liaison import LiaisonPlanner, Renderer, care_list_holders
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.topology import Topology
from tests.conftest import (
    GRID_CUSTOMERS,
    GRID_EDGES,
    GRID_F2,
    GRID_LIAISONS,
    GRID_VILLAGE_ROWS,
    GRID_VILLAGES,
    T0,
    build_grid,
    build_topology,
)
from tests.test_liaison import incident as make_incident
from tests.test_lifecycle import Recorder

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNELS = ("wecom", "sms", "dingtalk", "feishu", "cc")


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(minutes=1)

    def __call__(self) -> Any:
        return self.now


def make_daemon(tmp_path: Path, db_url: str, topology: Topology,
                **config: Any) -> Daemon:
    """A started daemon on ``topology`` with recording channels and a hand-set clock."""
    data = {
        "state_dir": str(tmp_path / "state"),
        "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        # "sms" an SMS channel (it reaches one person: the care list goes there), recorded
        "channels": {**{name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                        for name in CHANNELS},
                     "sms": {"type": "sms", "endpoint": "http://127.0.0.1:9/",
                             "access_key_id": "id", "access_key_secret": "care-test-key-7f3a9",
                             "sign_name": "某县供电公司", "template_code": "SMS_0"}},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        **config,
    }
    d = Daemon(parse_config(data), topology=topology, sources=[],
               channels={name: Recorder(name) for name in CHANNELS}, clock=Clock())
    d.start()
    return d


def feed(d: Daemon, minutes: float, *events: OutageEvent) -> None:
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    d.store.ingest("feed", PollResult(events=list(events)), d.clock())
    d.process()


def ev(event_id: str, *areas: str, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": "active", "start": T0, "transformers": areas, **kw})


def messages(d: Daemon, purpose: str, village: str | None = None) -> list[OutboxMessage]:
    return [m for m in d.store.messages() if m.purpose == purpose
            and (village is None or m.recipient.startswith(f"village:{village}:"))]


def grid(customer_rows: list[dict[str, Any]]) -> Topology:
    """The shared two-feeder grid (tests/conftest.py) with its own special-care households."""
    feeders = {n: ("F2" if n in GRID_F2 else "F1") for e in GRID_EDGES for n in e}
    return build_topology(
        GRID_EDGES, feeders=feeders, customers=GRID_CUSTOMERS, villages=GRID_VILLAGES,
        normally_open=["TIE"], names={t: f"台区{t}" for t in GRID_CUSTOMERS},
        village_rows=GRID_VILLAGE_ROWS, liaisons=GRID_LIAISONS,
        crews=[{"id": "CR1", "name": "马集抢修班", "phone": "13900000001",
                "channel": "wecom", "target": "crew-1", "feeders": "F1"}],
        customer_rows=customer_rows)


def household(cid: str, area: str, tags: str) -> dict[str, Any]:
    return {"id": cid, "transformer": area, "name": f"户{cid}",
            "phone": f"1370{zlib.crc32(cid.encode()) % 10**7:07d}", "importance": "",
            "tags": tags}


# -- 1. the care SMS counts every household per tag ---------------------------------------------

#: V1 (马集村, an SMS liaison 王五): 10 life-support and 3 elderly-alone households.
MANY_CARE = ([household(f"L{i}", "T1", "life_support") for i in range(10)]
             + [household(f"E{i}", "T2", "elderly_alone") for i in range(3)])


def test_care_sms_counts_tags_over_every_household_not_only_those_listed() -> None:
    topo = grid(MANY_CARE)
    inc = make_incident(topo, {"T1", "T2"}, feeder="F1")
    care = crew.care_list_context(topo, inc, "V1", T0, SHANGHAI)
    assert len(care["households"]) == 8 and care["households_more"] == 5  # the list is cut
    planner = LiaisonPlanner(topo, Renderer("zh"), SHANGHAI)
    (row,) = [r for r in planner.care_rows(inc, "V1", care, {"sms": "sms"}, "马集抢修班")
              if r.channel == "sms"]
    values = row.payload["params"]["sms"]
    assert values["count"] == "13"
    assert values["tags"] == "生命支持10户、独居老人3户"


def test_the_daemons_care_sms_to_a_liaison_counts_every_life_support_household(
        tmp_path: Path, db_url: str) -> None:
    d = make_daemon(tmp_path, db_url, grid(MANY_CARE))
    try:
        feed(d, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
        sms = [m for m in messages(d, "care", "V1") if m.channel == "sms"]
        assert sms, "the fault was dispatched and V1's SMS liaison got its care list"
        for m in sms:
            assert m.payload["params"]["sms"]["tags"] == "生命支持10户、独居老人3户"
    finally:
        d.close()


def test_a_group_is_not_told_its_liaison_holds_a_list_that_was_cut(
        tmp_path: Path, db_url: str) -> None:
    """王五 (SMS) gets 8 of 马集村's 13 households and "另有5户，见系统清单": his group is not
    told he has the list."""
    d = make_daemon(tmp_path, db_url, grid(MANY_CARE))
    try:
        feed(d, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
        (group,) = [m for m in messages(d, "care", "V1") if m.channel == "wecom"]
        assert "王五" not in group.body and "名单已发送" not in group.body
        assert "完整名单在指挥中心（系统清单）" in group.body
    finally:
        d.close()


# -- 2. a reminder says 可能受影响 as its announcement does -----------------------------------------

def planned_with_loose_words(d: Daemon) -> None:
    """Planned work two days ahead naming T3 (刘庄村) exactly and 马集村 only loosely: its
    areas T1, T2 (70 households) are possibly affected."""
    start = T0 + timedelta(hours=48)
    feed(d, 1, ev("p1", "T3", kind="planned", start=start, expected_restoration=start + timedelta(hours=4),
                  area_text="马集村部分用户", cause="线路检修"))
    d.clock.now = start - timedelta(minutes=50)  # type: ignore[attr-defined]
    d.lifecycle.check(d.clock())  # the one-hour reminder (and the day-before one)


def test_a_reminder_says_possibly_affected_as_its_announcement_does(
        tmp_path: Path, db_url: str) -> None:
    d = make_daemon(tmp_path, db_url, build_grid())
    try:
        planned_with_loose_words(d)
        (announced,) = [m for m in messages(d, "outage", "V1") if m.channel == "wecom"]
        assert "可能受影响：台区T1、台区T2" in announced.body
        reminders = [m for m in messages(d, "reminder_1h", "V1") if m.channel == "wecom"]
        assert reminders
        for m in reminders:
            assert "可能受影响：台区T1、台区T2，本村70户" in m.body
            assert "停电范围" not in m.body
        # the village named exactly still reads its areas as the work's scope
        (exact,) = [m for m in messages(d, "reminder_1h", "V2")]
        assert "停电范围：台区T3，本村50户" in exact.body
    finally:
        d.close()


def test_planned_and_reminder_sms_say_the_households_are_only_possibly_off(
        tmp_path: Path, db_url: str) -> None:
    d = make_daemon(tmp_path, db_url, build_grid())
    try:
        planned_with_loose_words(d)
        by_purpose = {m.purpose: m.payload["params"] for m in d.store.messages()
                      if m.recipient.startswith("village:V1:sms")}
        assert by_purpose["outage"]["sms_template"] == "planned"
        assert by_purpose["outage"]["sms"]["households"] == "可能70"
        assert by_purpose["reminder_1h"]["sms_template"] == "reminder"
        assert by_purpose["reminder_1h"]["sms"]["households"] == "可能70"
    finally:
        d.close()


# -- 3. a group is told the crew holds its list only when it does ------------------------------

#: V2 (刘庄村, a DingTalk group only): one life-support household; V3 (王楼村, a Feishu group
#: only): one elderly-alone household. A crew's dispatch listing one household lists V2's.
SPLIT_CARE = [household("LIFE", "T4", "life_support"), household("OLD", "T5", "elderly_alone")]


@pytest.fixture
def capped(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, grid(SPLIT_CARE), dispatch={"max_households": 1})
    yield d
    d.close()


def test_a_group_is_not_told_the_crew_holds_names_its_dispatch_left_out(
        capped: Daemon) -> None:
    feed(capped, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
    (dispatch,) = messages(capped, "dispatch")
    assert "户LIFE" in dispatch.body and "户OLD" not in dispatch.body  # the crew's list is cut
    (v3,) = messages(capped, "care", "V3")
    assert "马集抢修班" not in v3.body and "名单已发送" not in v3.body
    assert "完整名单在指挥中心（系统清单）" in v3.body
    assert v3.payload["crew_named"] == ""
    (v2,) = messages(capped, "care", "V2")
    assert "名单已发送给马集抢修班" in v2.body and v2.payload["crew_named"] == "马集抢修班"


def test_every_group_told_the_crew_holds_its_list_finds_all_its_names_in_the_dispatch(
        capped: Daemon) -> None:
    """The two texts come from one decision: whatever a group is told the crew has, the
    crew's dispatch has."""
    feed(capped, 1, ev("f1", "T1", "T2", "T3", "T4", "T5"))
    topo = capped.topology
    (dispatch,) = messages(capped, "dispatch")
    named = [m for m in messages(capped, "care") if m.payload.get("crew_named")]
    assert named, "no group was told the crew holds its list: nothing checked"
    for m in named:
        village = m.recipient.split(":")[1]
        names = [f"户{c['id']}" for c in SPLIT_CARE
                 if topo.nodes[c["transformer"]].village == village]
        assert names and all(n in dispatch.body for n in names), m.body


def test_the_holder_decision() -> None:
    crew_label = "马集抢修班"
    assert care_list_holders(["村联络人王五（短信）"], True, False, crew_label) == (
        ["村联络人王五（短信）"], "")
    # the liaison's list was cut: neither it nor a crew without them all is named
    assert care_list_holders(["村联络人王五（短信）"], False, False, crew_label) == ([], "")
    assert care_list_holders([], True, True, crew_label) == ([], crew_label)
    assert care_list_holders([], True, False, crew_label) == ([], "")


@pytest.mark.parametrize("language, says", [
    ("zh", "完整名单在指挥中心（系统清单），请与指挥中心联系，不在群内公布"),
    ("en", "the full list is with the command centre (the system list)"),
])
def test_the_group_text_without_a_holder(language: str, says: str) -> None:
    topo = grid(SPLIT_CARE)
    inc = make_incident(topo, {"T1", "T2", "T3", "T4", "T5"}, feeder="F1")
    care = crew.care_list_context(topo, inc, "V3", T0, SHANGHAI, language,
                                  crew.DispatchParams(max_households=1))
    assert care["crew_has_list"] is False
    planner = LiaisonPlanner(topo, Renderer(language), SHANGHAI)
    (row,) = planner.care_rows(inc, "V3", care, {"sms": "sms"}, "马集抢修班")
    assert says in row.body and "马集抢修班" not in row.body
