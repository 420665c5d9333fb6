"""Audit H9: in an AMI storm the reports for the areas of one village arrive together, are
folded one by one, and each made a revision with news for the village: its liaisons heard
【故障停电通知】 and then an update per area within a second. A round of processing now queues
a village's outage and update notices once, saying what the last revision says — while a
"power back" still goes, a crew's messages are never merged, and a round that fails is still
redone one event at a time.

Everything runs through the real path: the demo bundle, a real SQLite store, the AMI screen,
the processor built as the daemon builds it, and the deliverer sending to recording channels.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.ami import compact_time, device_ref
from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config, parse_config
from outage_sentinel.delivery import Deliverer
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.metrics import Metrics
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.screening import AmiScreener
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.test_lifecycle import Recorder

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VILLAGE = "V037"  # 王庄村: nine transformer areas on 10kV 王庄线 (MJ02)
CHANNELS = ("cc", "wecom", "sms", "dingtalk", "feishu")
#: What a village is told of an outage.
NOTICES = ("outage", "update", "restored", "cancelled")


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.migrate()
    yield s
    s.close()


def config(tmp: Path) -> Config:
    return parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "ami-mqtt", "type": "mqtt", "topics": ["ami/#"],
                     "client_id": "flood-test"}],
        "channels": {n: {"type": "file", "path": str(tmp / "sink.jsonl")} for n in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        "ami_screen": {"min_meters": 3, "min_duration_seconds": 60}})


class Rig:
    """The processor, the AMI screen and a deliverer over one store, on a fixed clock."""

    def __init__(self, tmp: Path, store: Store, topology: Topology, **kw: Any) -> None:
        cfg = config(tmp)
        self.store, self.topology = store, topology
        self.core: Core = build_core(cfg, store, topology, metrics=Metrics(),
                                     clock=lambda: NOW, **kw)
        self.screen = AmiScreener(store, topology, cfg, Metrics(), {"ami-mqtt"},
                                  threading.Lock())
        self.screen.load(NOW)
        self.core.processor.screen = self.screen
        self.channels = {n: Recorder(n) for n in CHANNELS}

    def areas(self, village: str = VILLAGE) -> list[str]:
        return [t for t, n in self.topology.nodes.items()
                if n.kind == "transformer" and n.village == village]

    def meters_off(self, areas: list[str], at: datetime) -> None:
        """Four meters of each area report power off (one poll: one batch)."""
        reports = []
        for i, t in enumerate(areas):
            when = at + timedelta(seconds=i)
            meters = [m.id for m in self.topology.meters if m.transformer == t
                      and m.kind == "meter"][:4]
            reports += [OutageEvent(
                source="ami-mqtt", event_id=f"{m}:off:{compact_time(when)}", kind="fault",
                status="active", signal="dead", start=when, transformers=(t,),
                area_text=device_ref("meter", m)) for m in meters]
        self.screen.ingest("ami-mqtt", PollResult(events=reports), at)

    def process(self, now: datetime) -> int:
        self.screen.run_once(now)
        return self.core.processor.run_once(now).processed

    def deliver(self, now: datetime) -> list[Any]:
        """Send everything due; returns the villages' notices sent (a special-care list that
        follows a crew's dispatch is not one)."""
        deliverer = Deliverer(self.store, self.channels,
                              RetryPolicy(initial_seconds=10, max_seconds=300, jitter=0.0,
                                          max_age_seconds=3600),
                              clock=lambda: now, workers_per_channel=1)
        try:
            while deliverer.run_once(now):
                pass
        finally:
            deliverer.close(5)
        return [m for m in self.channels["wecom"].sent
                if m.key.split("/")[2].startswith("village:") and m.purpose in NOTICES]


def sent_per_recipient(sent: list[Any], village: str = VILLAGE) -> Counter[tuple[str, str]]:
    """(recipient, incident) -> liaison messages sent to one of the village's recipients."""
    return Counter((m.key.split("/")[2], m.key.split("/")[0]) for m in sent
                   if m.key.split("/")[2].startswith(f"village:{village}:"))


def names_all(text: str, topology: Topology, areas: list[str]) -> bool:
    """Whether a notice's words name every one of ``areas`` off (by name, or the first few
    and how many there are)."""
    names = [topology.nodes[t].name for t in areas]
    return "已确认停电" in text and (
        all(name in text for name in names) or f"等{len(areas)}个台区" in text)


def test_a_storm_of_meter_reports_for_one_village_sends_each_liaison_one_notice(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    rig.meters_off(areas, NOW)
    later = NOW + timedelta(minutes=3)
    assert rig.process(later) == len(areas)  # nine per-area events, folded in one round
    [row] = store.load_incidents(open_only=False)
    assert row["state"]["revision"] > 2  # one revision per event: the log of the fold
    sent = rig.deliver(later)
    per = sent_per_recipient(sent)
    recipients = {r for r, _ in per}
    assert len(recipients) == 3  # the village's liaison, grid manager, transformer manager
    # Before: 【故障停电通知】 then an update per area, five to each within a second.
    assert set(per.values()) == {1}, per
    assert {m.purpose for m in sent} == {"outage"}
    for m in sent:  # the one notice says what the last revision with news for it says
        assert names_all(m.text, demo, areas), m.text
        assert int(m.key.split("/")[1]) > 1
    # The command centre still hears every revision (its summaries are not gathered).
    summaries = [m for m in store.messages() if m.purpose == "summary"]
    assert len(summaries) == row["state"]["revision"]
    assert {m.status for m in store.messages() if m.audience == "liaison"} == {"sent"}


def test_a_village_told_already_hears_one_update_for_a_storm_round(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    rig.meters_off(areas[:1], NOW)
    first = NOW + timedelta(minutes=3)
    rig.process(first)
    told = rig.deliver(first)
    assert set(sent_per_recipient(told).values()) == {1}
    assert {m.purpose for m in told} == {"outage"}
    # The rest of the village's meters go dark in the next poll: one round of eight events.
    rig.meters_off(areas[1:], first)
    second = first + timedelta(minutes=3)
    assert rig.process(second) == len(areas) - 1
    sent = rig.deliver(second)[len(told):]
    per = sent_per_recipient(sent)
    assert len(per) == 3 and set(per.values()) == {1}, per
    assert {m.purpose for m in sent} == {"update"}
    for m in sent:  # against what the village was told: every area now off
        assert names_all(m.text, demo, areas), m.text


def feed(event_id: str, area: str, status: str = "active", at: datetime = NOW) -> OutageEvent:
    """An outage system's record of one area (a storm's records come one area each)."""
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       start=NOW, end=at if status == "restored" else None,
                       transformers=(area,), signal="notice" if status == "active" else "alive")


def test_power_back_in_the_same_round_is_never_swallowed(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    store.ingest("feed", PollResult(events=[feed(f"N{i}", t) for i, t in
                                            enumerate(areas[:3])]), NOW)
    rig.process(NOW)
    told = rig.deliver(NOW)
    assert set(sent_per_recipient(told).values()) == {1}
    # One poll: two more areas reported off, then every record ends (power back).
    later = NOW + timedelta(hours=1)
    store.ingest("feed", PollResult(events=[
        feed("N3", areas[3]), feed("N4", areas[4]),
        *(feed(f"N{i}", t, "restored", later) for i, t in enumerate(areas[:5]))]), later)
    rig.process(later)
    [row] = store.load_incidents(open_only=False)
    assert row["status"] == "restored"
    sent = rig.deliver(later)[len(told):]
    per = sent_per_recipient(sent)
    assert len(per) == 3 and set(per.values()) == {1}, per
    assert {m.purpose for m in sent} == {"restored"}  # the last word is the true one
    # The updates decided on the way were queued before it, and made moot by it.
    moot = [m for m in store.messages() if m.audience == "liaison" and m.status != "sent"]
    assert all(m.purpose == "update" and m.status == "superseded" for m in moot), moot


def test_a_crews_orders_are_never_gathered(tmp_path: Path, store: Store, demo: Topology
                                           ) -> None:
    rig = Rig(tmp_path, store, demo)
    store.ingest("feed", PollResult(events=[feed("N0", rig.areas()[0])]), NOW)
    rig.process(NOW)
    [row] = store.load_incidents(open_only=True)
    rig.core.lifecycle.dispatch(row["id"], "operator:王工")
    rig.deliver(NOW)
    before = [m for m in store.messages() if m.audience == "crew"]
    # One poll names areas of three more villages of the line, one record each.
    others = [rig.areas(v)[0] for v in ("V038", "V039", "V040")]
    later = NOW + timedelta(minutes=5)
    store.ingest("feed", PollResult(events=[feed(f"M{i}", t) for i, t in enumerate(others)]),
                 later)
    rig.process(later)
    crew = [m for m in store.messages() if m.audience == "crew"][len(before):]
    revisions = {m.revision for m in crew}
    assert len(revisions) == len(crew) >= 2, [(m.purpose, m.revision) for m in crew]
    # Each new village's outage notice is queued before its special-care list.
    liaison = [m for m in store.messages() if m.audience == "liaison"
               and m.recipient.split(":")[1] in ("V038", "V039", "V040")]
    for village in ("V038", "V039", "V040"):
        mine = [m.purpose for m in liaison if m.recipient.split(":")[1] == village]
        assert mine and mine[0] == "outage" and mine.count("outage") == len(
            {m.recipient for m in liaison if m.recipient.split(":")[1] == village}), mine


def test_a_failed_round_is_redone_one_event_at_a_time_with_its_notices(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    bad = rig_area = "T-MJ02-020"  # 大蔡楼村

    def estimator(topology: Topology, evidence: Any) -> Any:
        if bad in evidence.dead:
            raise RuntimeError("estimator bug")
        return real(topology, evidence)

    real = build_core(config(tmp_path), store, demo, metrics=Metrics(),
                      clock=lambda: NOW).processor.estimator
    rig = Rig(tmp_path, store, demo, estimator=estimator)
    areas = rig.areas()
    store.ingest("feed", PollResult(events=[
        *(feed(f"N{i}", t) for i, t in enumerate(areas[:3])), feed("B", rig_area)]), NOW)
    assert rig.process(NOW) == 3  # the round failed; the three good events went one by one
    sent = rig.deliver(NOW)
    per = sent_per_recipient(sent)
    assert len(per) == 3 and {m.purpose for m in sent} >= {"outage"}
    assert [s.event.event_id for s in store.unprocessed_events()] == ["B"]  # retried later


def test_an_area_off_and_back_within_one_poll_is_no_news_to_its_village(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    store.ingest("feed", PollResult(events=[feed("N0", areas[0])]), NOW)
    rig.process(NOW)
    told = rig.deliver(NOW)
    assert {m.purpose for m in told} == {"outage"}
    # One poll: another area of the village reported off, and its record already ended.
    later = NOW + timedelta(minutes=10)
    store.ingest("feed", PollResult(events=[
        feed("N1", areas[1]), feed("N1", areas[1], "restored", later)]), later)
    rig.process(later)
    [row] = store.load_incidents(open_only=False)
    assert row["status"] == "active" and areas[1] in row["state"]["restored"]
    # Before: 【停电信息更新】 naming it off, read while its power was back.
    assert rig.deliver(later)[len(told):] == []
