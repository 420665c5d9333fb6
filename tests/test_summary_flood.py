"""Audit: in a storm the command centre's group got a summary per incident revision — one
incident ~67 in 2.5 minutes, each differing by one area — and a channel nobody can read is
muted, and then the one that matters is missed. Now a summary not sent yet is replaced by a
newer one of the same incident (kept, ``superseded``, naming the newer row), and a summary
of an incident whose previous summary went less than ``command_centre.
summary_min_interval_seconds`` ago waits for the interval (pending, its time in
``next_attempt_at``), so the group reads at most one per incident per interval, saying the
latest state. The first summary of an incident, and one whose state changed (restored,
cancelled, reopened), go at once; the command centre's steps and escalations are other
purposes and never wait.

Everything runs through the real path: the demo bundle, a real store (SQLite, and PostgreSQL
when it is reachable), the processor built as the daemon builds it, and the real deliverer
sending to the real file channel.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.assembly import Core, build_channels, build_core
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import Config, parse_config
from outage_sentinel.delivery import Deliverer
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.metrics import Metrics
from outage_sentinel.ordering import WHOLE_SUMMARIES
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VILLAGE = "V037"  # 王庄村: nine transformer areas on 10kV 王庄线 (MJ02)
CHANNELS = ("cc", "wecom", "sms", "dingtalk", "feishu")


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


def config(tmp: Path, **cc: Any) -> Config:
    return parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "feed", "type": "replay", "scenario": str(tmp / "feed.jsonl")}],
        "channels": {n: {"type": "file", "path": str(tmp / f"{n}.jsonl")} for n in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心", **cc}})


class Rig:
    """The processor and the real deliverer over one store, each step at a time given."""

    def __init__(self, tmp: Path, store: Store, topology: Topology, **cc: Any) -> None:
        self.cfg = config(tmp, **cc)
        self.tmp, self.store, self.topology = tmp, store, topology
        self.now = NOW
        self.core: Core = build_core(self.cfg, store, topology, metrics=Metrics(),
                                     clock=lambda: self.now)
        self.channels = build_channels(self.cfg)

    def areas(self, village: str = VILLAGE) -> list[str]:
        return sorted(t for t, n in self.topology.nodes.items()
                      if n.kind == "transformer" and n.village == village)

    def poll(self, at: datetime, *events: OutageEvent) -> None:
        """One poll of the outage system at ``at``, folded at once (one round)."""
        self.now = at
        self.store.ingest("feed", PollResult(events=list(events)), at)
        self.core.processor.run_once(at)

    def deliver(self, at: datetime) -> None:
        """Everything due at ``at`` sent by a deliverer as the daemon's (a fresh one: what
        waits is read from the store alone, as after a restart)."""
        deliverer = Deliverer(self.store, self.channels,
                              RetryPolicy(initial_seconds=10, max_seconds=300, jitter=0.0,
                                          max_age_seconds=3600),
                              clock=lambda: at, workers_per_channel=1)
        try:
            while deliverer.run_once(at):
                pass
        finally:
            deliverer.close(5)

    def summaries_sent(self) -> list[dict[str, Any]]:
        """The command centre's whole summaries of an incident (a revision's, or a dispatch's,
        which says the same with the crew) as the file channel wrote them, in order."""
        path = self.tmp / "cc.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        return [m for m in lines if m["purpose"] in WHOLE_SUMMARIES]


def record(event_id: str, area: str, status: str = "active",
           at: datetime = NOW) -> OutageEvent:
    """An outage system's record of one area (a storm's records come one area each)."""
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       start=NOW, end=at if status == "restored" else None,
                       transformers=(area,), signal="notice" if status == "active" else "alive")


def summaries(store: Store) -> list[Any]:
    return [m for m in store.messages() if m.purpose == "summary"]


def storm(rig: Rig, areas: list[str], step: timedelta = timedelta(seconds=6)) -> datetime:
    """One area more off every ``step``, each poll folded and delivered at once; returns the
    time of the last."""
    at = NOW
    for i, area in enumerate(areas):
        at = NOW + i * step
        rig.poll(at, record(f"N{i}", area))
        rig.deliver(at)
    return at


def test_a_storm_of_revisions_sends_the_command_centre_the_first_and_then_the_latest(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    assert len(areas) >= 9
    last = storm(rig, areas[:9])  # nine revisions of one incident in 48 s
    [row] = store.load_incidents(open_only=False)
    revision = row["state"]["revision"]
    assert revision >= 9
    # The first went at once: a new outage is urgent (with the crew's dispatch, its own
    # purpose). Before: one per revision.
    sent = rig.summaries_sent()
    assert [m["purpose"] for m in sent] == ["summary", "dispatched"], [
        m["text"].splitlines()[0] for m in sent]
    assert "第1版" in sent[0]["text"] and "当前停电1个台区" in sent[0]["text"]
    # The board and the log keep every revision: nothing accepted is lost.
    rows = summaries(store)
    assert len(rows) == revision
    waiting = [r for r in rows if r.status == "pending"]
    assert len(waiting) == 1 and waiting[0].revision == revision
    assert waiting[0].next_attempt_at == NOW + timedelta(seconds=60)
    assert "waits for the summary interval" in (waiting[0].last_error or "")
    superseded = [r for r in rows if r.status == "superseded"]
    assert len(superseded) == revision - 2
    for r in superseded:  # each names the row that replaced it
        assert r.last_error and "superseded by #" in r.last_error
    # Still within the interval: nothing more.
    rig.deliver(last + timedelta(seconds=5))
    assert len(rig.summaries_sent()) == 2
    # After the interval the latest goes, saying the latest state.
    rig.deliver(NOW + timedelta(seconds=60))
    sent = rig.summaries_sent()
    assert len(sent) == 3 and sent[2]["purpose"] == "summary"
    assert f"第{revision}版" in sent[2]["text"]
    assert "当前停电9个台区" in sent[2]["text"]
    assert {r.status for r in summaries(store)} == {"sent", "superseded"}
    assert summaries(store)[-1].status == "sent"


def test_ten_revisions_in_a_minute_send_at_most_two_and_the_last_is_the_latest(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = [t for v in ("V037", "V038") for t in rig.areas(v)][:10]
    assert len({demo.nodes[t].feeder for t in areas}) == 1  # one line's storm
    storm(rig, areas, step=timedelta(seconds=5))  # 0 s … 45 s
    rig.deliver(NOW + timedelta(seconds=59))
    rig.deliver(NOW + timedelta(seconds=61))
    rig.deliver(NOW + timedelta(seconds=90))
    per_incident: dict[str, list[dict[str, Any]]] = {}
    for m in rig.summaries_sent():
        per_incident.setdefault(m["incident_id"], []).append(m)
    assert per_incident
    for inc_id, every in per_incident.items():
        sent = [m for m in every if m["purpose"] == "summary"]
        assert 1 <= len(sent) <= 2, [m["text"].splitlines()[0] for m in sent]
        assert len(every) - len(sent) <= 1  # and the crew's dispatch
        latest = max(r.revision for r in summaries(store) if r.incident_id == inc_id)
        assert f"第{latest}版" in sent[-1]["text"]


def test_power_back_goes_at_once_and_takes_the_place_of_the_waiting_summary(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()[:3]
    last = storm(rig, areas, step=timedelta(seconds=5))
    assert [m["purpose"] for m in rig.summaries_sent()] == ["summary", "dispatched"]
    [waiting] = [r for r in summaries(store) if r.status == "pending"]
    # Every record ends 20 s later, well within the interval: the restoration is urgent.
    back = last + timedelta(seconds=10)
    rig.poll(back, *(record(f"N{i}", t, "restored", back) for i, t in enumerate(areas)))
    rig.deliver(back)
    sent = rig.summaries_sent()
    assert len(sent) == 3
    assert sent[-1]["text"].startswith("【已恢复】"), sent[-1]["text"]
    [row] = store.load_incidents(open_only=False)
    assert f"第{row['state']['revision']}版" in sent[-1]["text"]
    [gone] = store.messages(ids=[waiting.id])
    assert gone.status == "superseded" and "superseded by #" in (gone.last_error or "")
    assert not [r for r in summaries(store) if r.status == "pending"]


def test_a_summary_waiting_never_holds_up_the_command_centre_s_other_messages(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """A step of the command centre (its own purpose, a summary with a headline) goes at
    once even while a summary waits, and — carrying the whole summary of a later revision —
    takes that summary's place."""
    rig = Rig(tmp_path, store, demo)
    storm(rig, rig.areas()[:3], step=timedelta(seconds=5))
    [row] = store.load_incidents(open_only=False)
    [waiting] = [r for r in summaries(store) if r.status == "pending"]
    at = NOW + timedelta(seconds=20)
    rig.now = at
    CommandSteps(rig.core.lifecycle, rig.core.processor, lambda: at).etr(
        row["id"], "2026-11-23 14:00", "operator:li")
    rig.deliver(at)
    path = tmp_path / "cc.jsonl"
    purposes = [json.loads(line)["purpose"] for line in path.read_text("utf-8").splitlines()]
    assert purposes[-1] == "etr_set", purposes
    [gone] = store.messages(ids=[waiting.id])
    assert gone.status == "superseded" and "(etr_set)" in (gone.last_error or "")
    rig.deliver(NOW + timedelta(seconds=120))
    after = [m["purpose"] for m in rig.summaries_sent()]
    assert after[after.index("etr_set"):] == ["etr_set"], after  # nothing older after it


def test_interval_zero_sends_every_summary_as_before(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo, summary_min_interval_seconds=0)
    storm(rig, rig.areas()[:4], step=timedelta(seconds=5))
    [row] = store.load_incidents(open_only=False)
    sent = [m for m in rig.summaries_sent() if m["purpose"] == "summary"]
    assert len(sent) == row["state"]["revision"]


def test_two_nodes_at_the_end_of_the_interval_send_the_waiting_summary_once(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The wait is in the outbox alone: two deliverers (two nodes after a takeover, or a
    restart) reading it at the same instant claim the summary once."""
    rig = Rig(tmp_path, store, demo)
    storm(rig, rig.areas()[:4], step=timedelta(seconds=5))
    due = NOW + timedelta(seconds=60)
    threads = [threading.Thread(target=rig.deliver, args=(due,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [m for m in rig.summaries_sent() if m["purpose"] == "summary"]
    assert len(sent) == 2 and "第4版" in sent[-1]["text"]


def test_a_superseded_summary_cannot_be_sent_again_nor_held_up_the_latest_can(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The command centre cannot resend a summary the pacing replaced (it would read an old
    state after the latest): retry, hold and withdraw are refused naming why, even forced;
    the summary waiting for the interval is the one it may hold."""
    from outage_sentinel.outbox_control import OutboxControl, OutboxError
    rig = Rig(tmp_path, store, demo)
    storm(rig, rig.areas()[:4])
    rows = summaries(store)
    gone = [r for r in rows if r.status == "superseded"]
    [waiting] = [r for r in rows if r.status == "pending"]
    assert gone
    control = OutboxControl(store, lambda: demo)
    for action, reason in (("retry", ""), ("hold", "核实"), ("withdraw", "核实")):
        with pytest.raises(OutboxError, match="superseded by a later notice"):
            control.take(action, [gone[0].id], "board:wang", rig.now, reason=reason,
                         force=True)
    done, problems = control.take_some("retry", [r.id for r in gone], "cli:wang", rig.now,
                                       force=True)
    assert not done.ids and "superseded by a later notice" in problems
    control.take("hold", [waiting.id], "board:wang", rig.now, reason="核实")
    assert {r.id: r.status for r in summaries(store)}[waiting.id] == "held"
    assert all(r.status == "superseded" for r in summaries(store) if r.id in {g.id for g in gone})
