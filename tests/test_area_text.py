"""Scope from words (issue 10 items 3 and 5): area text naming villages, transformer areas and
lines resolves to areas with the precision the words allow, and a record nobody can place still
reaches the command centre. Real demo bundle, real SQLite, a real local HTTP feed server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outage_sentinel.area_text import normalise, resolve_area_text, split_fragments
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import resolve_event
from outage_sentinel.topology import TopologyError, load_bundle

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_bundle(ROOT / "topology")
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def village_id(name: str) -> str:
    return next(v.id for v in DEMO.villages.values() if v.name == name)


def areas_of(name: str, feeder: str | None = None) -> set[str]:
    vid = village_id(name)
    return {t for t in DEMO.transformers if DEMO.nodes[t].village == vid
            and (feeder is None or DEMO.feeder_of(t) == feeder)}


def area(name: str) -> str:
    hit = DEMO.resolve(name)
    assert hit is not None, name
    return hit


NXZ = "南谢庄村"  # V035, 8 areas on MJ01 (named "南谢庄村N#公变")
WZ = "王庄村"  # V037, 9 areas on MJ02 (named "王庄村N号台区")

# -- the wording table --------------------------------------------------------------------------

#: (text, event feeder, confirmed, possible, text feeder, unplaced)
WORDINGS: list[tuple[str, str | None, set[str], set[str], str | None, list[str]]] = [
    # a whole village
    ("南谢庄村全村", None, areas_of(NXZ), set(), None, []),
    ("清河县马集镇；南谢庄村全村", None, areas_of(NXZ), set(), None, []),
    ("马集镇王庄村全村", None, areas_of(WZ), set(), None, []),
    ("王庄村全部用户", None, areas_of(WZ), set(), None, []),
    ("南谢庄村委会全村", None, areas_of(NXZ), set(), None, []),
    ("南谢庄村全村等", None, areas_of(NXZ), set(), None, []),
    # transformer areas by name, "#公变", "#变", "台区", id, full-width
    ("南谢庄村2#公变", None, {"T-MJ01-020"}, set(), None, []),
    ("南谢庄村2号台区", None, {"T-MJ01-020"}, set(), None, []),
    ("南谢庄村#2变", None, {"T-MJ01-020"}, set(), None, []),
    ("南谢庄村＃３公变", None, {"T-MJ01-021"}, set(), None, []),
    ("王庄村1#公变、王庄村2号台区", None, {"T-MJ02-001", "T-MJ02-002"}, set(), None, []),
    ("王庄村1号、2号台区", None, {"T-MJ02-001", "T-MJ02-002"}, set(), None, []),
    ("王庄村1号台区及3号台区", None, {"T-MJ02-001", "T-MJ02-003"}, set(), None, []),
    ("T-MJ01-020", None, {"T-MJ01-020"}, set(), None, []),
    ("建设路社区1号台区、建设路社区2号台区供电的全部用户", None,
     {area("建设路社区1号台区"), area("建设路社区2号台区")}, set(), None, []),
    # part of a village, nearby, a bare village name: 可能受影响
    ("南谢庄村部分用户", None, set(), areas_of(NXZ), None, []),
    ("南谢庄村部分", None, set(), areas_of(NXZ), None, []),
    ("南谢庄村附近", None, set(), areas_of(NXZ), None, []),
    ("南谢庄村", None, set(), areas_of(NXZ), None, []),
    ("人民路社区部分用户", "CG02", set(), areas_of("人民路社区", "CG02"), None, []),
    ("郑屯村、傅楼村", "CG05", set(), areas_of("郑屯村", "CG05") | areas_of("傅楼村", "CG05"),
     None, []),
    # a named feeder narrows partial wording; the line itself is reported
    ("10kV马集线；南谢庄村部分用户", None, set(), areas_of(NXZ, "MJ01"), "MJ01", []),
    ("10KV马集线南谢庄村全村", None, areas_of(NXZ), set(), "MJ01", []),
    ("马集线", None, set(), set(), "MJ01", []),
    # confirmed wins over possible for the same area
    ("南谢庄村2#公变、南谢庄村部分用户", None, {"T-MJ01-020"}, areas_of(NXZ) - {"T-MJ01-020"},
     None, []),
    # a name with a conjunction in it is not split ("和平社区")
    ("和平社区全村和南谢庄村全村", None, areas_of("和平社区") | areas_of(NXZ), set(), None, []),
    # nothing known
    ("张三李四村全村", None, set(), set(), None, ["张三李四村全村"]),
    ("清河县马集镇；张三李四村全村、王五村", None, set(), set(), None,
     ["张三李四村全村", "王五村"]),
    ("", None, set(), set(), None, []),
]


@pytest.mark.parametrize(("text", "feeder", "confirmed", "possible", "named", "unplaced"),
                         WORDINGS, ids=[w[0] or "empty" for w in WORDINGS])
def test_wording(text: str, feeder: str | None, confirmed: set[str], possible: set[str],
                 named: str | None, unplaced: list[str]) -> None:
    scope = resolve_area_text(DEMO, text, feeder)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible
    assert scope.feeder == named
    assert list(scope.unplaced) == unplaced
    assert len(scope.confirmed) == len(set(scope.confirmed))


def test_normalise_reads_the_usual_spellings_alike() -> None:
    assert normalise("南谢庄村２＃公变") == normalise("南谢庄村2号台区") == normalise("南谢庄村#2变")
    assert normalise(" 10kV 马集线 ") == normalise("马集线") == normalise("10KV马集线")
    assert normalise("南谢庄村委会") == "南谢庄村"


def test_split_on_separators_and_conjunctions_outside_names() -> None:
    assert split_fragments("甲村、乙村，丙村;丁村/戊村 己村及庚村和辛村") == [
        "甲村", "乙村", "丙村", "丁村", "戊村", "己村", "庚村", "辛村"]
    assert split_fragments("和平社区及东村", ["和平社区"]) == ["和平社区", "东村"]


# -- aliases.csv --------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return Path(shutil.copytree(ROOT / "topology", tmp_path / "topology"))


def test_aliases_resolve_villages_areas_and_feeders(bundle: Path) -> None:
    (bundle / "aliases.csv").write_text(
        "alias,kind,id\n"
        "南谢庄,village,V035\n"
        "老马集线,feeder,MJ01\n"
        "南谢庄村老公变,transformer,T-MJ01-019\n", encoding="utf-8")
    topo = load_bundle(bundle)
    assert [a.alias for a in topo.aliases] == ["南谢庄", "老马集线", "南谢庄村老公变"]
    scope = resolve_area_text(topo, "南谢庄全村；老马集线")
    assert set(scope.confirmed) == areas_of(NXZ) and scope.feeder == "MJ01"
    assert resolve_area_text(topo, "南谢庄村老公变").confirmed == ("T-MJ01-019",)
    assert set(resolve_area_text(topo, "南谢庄部分用户").possible) == areas_of(NXZ)


def test_bad_aliases_are_every_one_reported_with_file_and_row(bundle: Path) -> None:
    (bundle / "aliases.csv").write_text(
        "alias,kind,id\n"
        "南谢庄,village,V999\n"
        ",village,V035\n"
        "老线,line,MJ01\n"
        "老马集线,feeder,XX99\n"
        "老公变,transformer,BRK-CG01\n"
        "甲,village,V035\n"
        "甲,village,V036\n", encoding="utf-8")
    with pytest.raises(TopologyError) as err:
        load_bundle(bundle)
    text = [str(p) for p in err.value.problems]
    assert text == [
        "aliases.csv:2 (南谢庄): unknown village id 'V999'",
        "aliases.csv:3 (V035): alias is empty",
        "aliases.csv:4 (老线): kind must be one of village|transformer|feeder, got 'line'",
        "aliases.csv:5 (老马集线): unknown feeder id 'XX99'",
        "aliases.csv:6 (老公变): unknown transformer id 'BRK-CG01'",
        "aliases.csv:8 (甲): duplicate alias (first at row 7)",
    ]


def test_aliases_file_needs_its_columns(bundle: Path) -> None:
    (bundle / "aliases.csv").write_text("name,id\n南谢庄,V035\n", encoding="utf-8")
    with pytest.raises(TopologyError, match=r"aliases.csv:1: header lacks column\(s\): alias, kind"):
        load_bundle(bundle)


# -- never raises, only real ids ----------------------------------------------------------------

NAMES = sorted({v.name for v in DEMO.villages.values()} | {DEMO.nodes[t].name
                                                           for t in DEMO.transformers[:60]}
               | set(DEMO.feeder_by_name) | {"清河县", "马集镇"})
WORDS = ["全村", "部分用户", "附近", "台区", "#公变", "号", "等", "、", "，", "及", "和", " ", "；",
         "10kV", "０", "３", "村委会", "全部", "#", "变"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(NAMES + WORDS) | st.text(max_size=3),
                          max_size=12).map("".join)),
       st.sampled_from([None, *sorted(DEMO.feeder_ids)]))
def test_resolver_never_raises_and_returns_only_existing_ids(text: str, feeder: str | None
                                                             ) -> None:
    scope = resolve_area_text(DEMO, text, feeder)
    transformers = set(DEMO.transformers)
    assert set(scope.confirmed) <= transformers
    assert set(scope.possible) <= transformers
    assert not set(scope.confirmed) & set(scope.possible)
    assert scope.feeder is None or scope.feeder in DEMO.feeder_ids
    assert all(isinstance(f, str) and f for f in scope.unplaced)


# -- resolve_event --------------------------------------------------------------------------------


def record(event_id: str, area_text: str = "", feeder: str | None = None,
           transformers: tuple[str, ...] = (), kind: str = "fault") -> OutageEvent:
    return OutageEvent(source="feed", event_id=event_id, kind=kind,  # type: ignore[arg-type]
                       status="active", start=NOW, feeder=feeder, transformers=transformers,
                       area_text=area_text)


def test_partial_wording_puts_the_villages_feeder_areas_in_possible() -> None:
    r = resolve_event(DEMO, record("E1", "南谢庄村部分用户", "10kV马集线"))
    assert r.transformers == () and r.feeder == "MJ01"
    assert set(r.possible) == areas_of(NXZ, "MJ01") and r.unknown == ()


def test_text_areas_join_the_named_ones_without_duplicates() -> None:
    r = resolve_event(DEMO, record("E1", "南谢庄村2#公变、南谢庄村3#公变、南谢庄村部分用户",
                                   "MJ01", ("T-MJ01-020",)))
    assert r.transformers == ("T-MJ01-020", "T-MJ01-021")
    assert set(r.possible) == areas_of(NXZ) - {"T-MJ01-020", "T-MJ01-021"}


def test_whole_village_text_without_a_feeder_takes_the_feeder_from_the_areas() -> None:
    r = resolve_event(DEMO, record("E1", "南谢庄村全村"))
    assert set(r.transformers) == areas_of(NXZ) and r.feeder == "MJ01" and r.possible == ()


def test_feeder_from_text_when_the_event_named_none() -> None:
    r = resolve_event(DEMO, record("E1", "10kV马集线 张三村"))
    assert r.feeder == "MJ01" and r.transformers == () and r.unknown == ("张三村",)


def test_unplaced_fragments_are_unknown_only_when_nothing_was_placed() -> None:
    r = resolve_event(DEMO, record("E1", "南谢庄村全村、张三村全村"))
    assert set(r.transformers) == areas_of(NXZ) and r.unknown == ()
    r = resolve_event(DEMO, record("E2", "张三村全村", "10kV不存在线"))
    assert r.feeder is None and r.unknown == ("10kV不存在线", "张三村全村")


def test_a_feeder_spelled_differently_still_resolves() -> None:
    assert resolve_event(DEMO, record("E1", "", "10KV马集线")).feeder == "MJ01"
    assert resolve_event(DEMO, record("E1", "", "马集线")).feeder == "MJ01"


# -- the daemon, a real local feed, real SQLite ---------------------------------------------------


class Feed:
    """A local HTTP server answering every GET with ``body``."""

    def __init__(self) -> None:
        self.body = b"{}"
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(feed.body)))
                self.end_headers()
                self.wfile.write(feed.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/powercut"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, records: list[dict[str, Any]] | bytes) -> None:
        self.body = records if isinstance(records, bytes) else json.dumps(
            {"code": "1", "data": {"powerCutList": records}}, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def feed() -> Iterator[Feed]:
    f = Feed()
    yield f
    f.server.shutdown()
    f.server.server_close()


def config_file(tmp: Path, url: str, summaries: bool = True, db: str | None = None) -> Path:
    sink = str(tmp / "state" / "notifications.jsonl")
    data = {
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "database": {"url": db},
        "sources": [{"name": "county-95598", "type": "http_json", "url": url,
                     "preset": "95598_powercut", "interval_seconds": 60,
                     "retry": {"max_attempts": 1}}],
        "channels": {name: {"type": "file", "path": sink}
                     for name in ("wecom", "dingtalk", "feishu", "sms", "cc")},
        "command_centre": {"channel": "cc", "target": "指挥中心", "summaries": summaries},
        "metrics": {"enabled": False},
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def run_daemon(tmp: Path, url: str, summaries: bool = True, db: str | None = None) -> Daemon:
    path = config_file(tmp, url, summaries, db)
    daemon = Daemon(parse_config(json.loads(path.read_text("utf-8"))), clock=lambda: NOW)
    daemon.run_once()
    return daemon


def liaison_villages(daemon: Daemon) -> dict[str, set[str]]:
    """Incident id -> the villages whose liaisons got a row in the outbox."""
    out: dict[str, set[str]] = {}
    for m in daemon.store.messages():
        if m.audience == "liaison":
            out.setdefault(m.incident_id, set()).add(m.recipient.split(":")[1])
    return out


def test_demo_powercut_fixture_notifies_exactly_the_named_villages(tmp_path: Path,
                                                                  feed: Feed) -> None:
    feed.serve((ROOT / "fixtures/feeds/95598_powercut.json").read_bytes())
    daemon = run_daemon(tmp_path, feed.url)
    try:
        incidents = daemon.store.load_incidents(open_only=False)
        assert len(incidents) == 4  # every record is an incident: none dropped
        told = set().union(*liaison_villages(daemon).values())
        # Precise wording (areas by name, "王庄村全村"): these villages are always told ...
        assert {village_id("建设路社区"), village_id(WZ)} <= told
        # ... and nobody outside what the records name ("部分用户", bare names: 可能受影响).
        named = {village_id(n) for n in ("建设路社区", WZ, "人民路社区", "郑屯村", "傅楼村")}
        assert told == named, named ^ told  # imprecise wording: told as 可能受影响
        possible = [m.body for m in daemon.store.messages() if m.audience == "liaison"
                    and m.recipient.split(":")[1] == village_id("人民路社区")]
        assert possible and all("可能受影响" in body and "已确认停电" not in body
                                for body in possible)
        # "王庄村全村": every area of the village stays in scope, whatever device is preferred.
        wz_state = next(r["state"] for r in incidents
                        if "county-95598|PC2026112300042" in r["state"]["members"])
        assert areas_of(WZ) <= set(wz_state["estimate"]["transformers"])
        by_event = {m: r["id"] for r in incidents for m in r["state"]["members"]}
        wz = by_event["county-95598|PC2026112300042"]
        assert liaison_villages(daemon)[wz] == {village_id(WZ)}
        # "王庄村全村": every area of the village is reported (the estimate is the lead's).
        state = next(r["state"] for r in incidents if r["id"] == wz)
        assert set(state["members"]["county-95598|PC2026112300042"]["transformers"]) == \
            areas_of(WZ)
    finally:
        daemon.close()


TEXT_ONLY = [
    {"poweroffId": "T1", "powerType": "故障停电", "startTime": "2026-11-23 09:40:00",
     "stopTime": "2026-11-23 13:00:00", "powerRange": "南谢庄村全村", "powerArea": "清河县马集镇",
     "powerCircuit": "10kV马集线", "powerCause": "线路故障"},
    {"poweroffId": "T2", "powerType": "故障停电", "startTime": "2026-11-23 09:45:00",
     "stopTime": "2026-11-23 13:00:00", "powerRange": "高庙村3号台区、高庙村4号台区",
     "powerArea": "清河县高庙乡", "powerCircuit": "", "powerCause": "台区故障"},
]


def test_text_only_scopes_notify_exactly_the_named_villages(tmp_path: Path, feed: Feed) -> None:
    feed.serve(TEXT_ONLY)
    daemon = run_daemon(tmp_path, feed.url)
    try:
        incidents = {next(iter(r["state"]["members"])): r for r in
                     daemon.store.load_incidents(open_only=False)}
        told = liaison_villages(daemon)
        t1, t2 = incidents["county-95598|T1"], incidents["county-95598|T2"]
        assert t1["feeder"] == "MJ01" and told[t1["id"]] == {village_id(NXZ)}
        assert set(t1["state"]["members"]["county-95598|T1"]["transformers"]) == areas_of(NXZ)
        gm = {area("高庙村3号台区"), area("高庙村4号台区")}
        assert t2["feeder"] == DEMO.feeder_of(area("高庙村3号台区"))
        assert gm <= set(t2["state"]["estimate"]["transformers"])
        assert told[t2["id"]] == set(DEMO.villages_of(t2["state"]["estimate"]["transformers"]))
        assert told[t2["id"]] == {village_id("高庙村")}
        assert daemon.store.quarantined() == []  # everything was placed
    finally:
        daemon.close()


UNPLACEABLE = [
    {"poweroffId": "U1", "powerType": "故障停电", "startTime": "2026-11-23 09:40:00",
     "stopTime": "2026-11-23 13:00:00", "powerRange": "张三李四村全村", "powerArea": "",
     "powerCircuit": "10kV马集线", "powerCause": "线路故障"},
    {"poweroffId": "U2", "powerType": "故障停电", "startTime": "2026-11-23 09:41:00",
     "stopTime": "2026-11-23 13:00:00", "powerRange": "王五村部分用户", "powerArea": "",
     "powerCircuit": "10kV不存在线", "powerCause": "线路故障"},
]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120,
                          cwd=str(config.parent))


def test_an_unplaceable_record_reaches_the_command_centre_and_quarantine(
        tmp_path: Path, feed: Feed, db_url: str) -> None:
    feed.serve(UNPLACEABLE)
    daemon = run_daemon(tmp_path, feed.url, db=db_url)
    try:
        rows = {next(iter(r["state"]["members"])): r for r in
                daemon.store.load_incidents(open_only=False)}
        u1, u2 = rows["county-95598|U1"], rows["county-95598|U2"]
        assert u1["feeder"] == "MJ01" and u2["feeder"] == "?"
        messages = daemon.store.messages()
        assert not [m for m in messages if m.audience == "liaison"]
        for inc, text in ((u1, "张三李四村全村"), (u2, "王五村部分用户")):
            command = [m for m in messages if m.incident_id == inc["id"]
                       and m.audience == "command"]
            assert command, inc["id"]
            assert f"无法定位到台区，请人工核实：{text}" in command[0].body
        # A crew goes only where there is a line to send it to.
        crews = {m.incident_id for m in messages if m.audience == "crew"}
        assert u1["id"] in crews and u2["id"] not in crews
        reasons = " | ".join(q["reason"] for q in daemon.store.quarantined())
        assert "record U1: unknown references" in reasons and "'张三李四村全村' (area text)" in reasons
        assert "'10kV不存在线' (line)" in reasons and "'王五村部分用户' (area text)" in reasons
    finally:
        daemon.close()
    config = tmp_path / "config.yaml"
    listed = cli(config, "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert "unknown references" in listed.stdout and "张三李四村全村" in listed.stdout
    listed = cli(config, "incidents", "list", "--all")
    assert listed.returncode == 0 and u2["id"] in listed.stdout, listed.stderr
    shown = cli(config, "incidents", "show", u2["id"])
    assert shown.returncode == 0 and "王五村部分用户" in shown.stdout, shown.stderr
    # The operator can still send a crew by hand once a person has placed it.
    sent = cli(config, "incidents", "dispatch", u2["id"], "--crew", "CR03")
    assert sent.returncode == 0 and "stage dispatched" in sent.stdout, sent.stderr


def test_an_unplaceable_record_is_told_even_with_summaries_off(tmp_path: Path,
                                                               feed: Feed) -> None:
    feed.serve(UNPLACEABLE[1:])
    daemon = run_daemon(tmp_path, feed.url, summaries=False)
    try:
        command = [m for m in daemon.store.messages() if m.audience == "command"]
        assert [m.purpose for m in command] == ["unplaced"]
        assert "无法定位到台区，请人工核实：王五村部分用户" in command[0].body
        assert "线路：未知" in command[0].body
    finally:
        daemon.close()
