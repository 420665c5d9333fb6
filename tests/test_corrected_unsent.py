"""A village the command centre takes out of an incident hears 【更正】 only where the outage
notice reached it.

The correction says "the outage we told you of does not concern you": to a recipient the
outage notice never reached (it waited for quiet hours, a channel that was down, a rate limit,
a digest) it is itself false. What still waits for the village is withdrawn — kept, shown to
the command centre, never sent — and the correction goes per recipient: one channel of a
village may have delivered the notice and another not. A send whose outcome is unknown, or
one under way, may have reached its recipient: that one is corrected, to be safe.

The village (马集村, V1) has a WeCom group and an SMS phone; its areas are T1 and T2, the
outage also holds T3 (刘庄村, V2), so that the incident stays open once V1 is taken out.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.ordering import owed_correction
from outage_sentinel.store import OutboxRow
from tests.conftest import build_grid
from tests.e2e_helpers import ROOT, make_config, sink_lines
from tests.test_lifecycle import Recorder
from tests.test_shared_areas import CHANNELS, Clock, ev, feed

GROUP = "village:V1:wecom:group-v1"
PHONE = "village:V1:sms:13800000003"
DOWN = SendResult(Outcome.RETRY, "connection refused")  # the service certainly took nothing
LIMITED = SendResult(Outcome.RETRY, "flow control", retry_after=600, rate_limited=True)
LOST = SendResult(Outcome.RETRY, "timeout waiting for the reply", uncertain=True)


class Scripted(Recorder):
    """A recording channel whose answer to some targets is set by the test."""

    def __init__(self) -> None:
        super().__init__("all")
        self.answer: dict[str, SendResult] = {}

    def send(self, message: Message) -> SendResult:
        if message.target in self.answer:
            return self.answer[message.target]
        return super().send(message)


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    config = parse_config({
        "state_dir": str(tmp_path / "state"),
        "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
    })
    d = Daemon(config, topology=build_grid(), sources=[],
               channels={name: Scripted() for name in CHANNELS}, clock=Clock())
    d.start()
    yield d
    d.close()


def steps(d: Daemon) -> CommandSteps:
    return CommandSteps(d.lifecycle, d.processor, d.clock)


def deliver(d: Daemon) -> None:
    while d.deliverer.run_once(d.clock()):
        pass


def outage(d: Daemon) -> str:
    feed(d, 1, ev("F1", "T1", "T2", "T3"))
    (row,) = d.store.load_incidents(open_only=True)
    return str(row["id"])


def read(d: Daemon, recipient: str) -> list[str]:
    """The first lines the recipient's channel delivered to it, in order."""
    channel, target = recipient.split(":")[-2:]
    sent = d.channels[channel].sent  # type: ignore[attr-defined]
    return [m.text.splitlines()[0] for m in sent if m.target == target]


def rows_to(d: Daemon, inc: str, recipient: str) -> list[OutboxRow]:
    return [m for m in d.store.messages(incident_id=inc) if m.recipient == recipient]


def test_a_village_taken_out_before_anything_went_hears_nothing(daemon: Daemon) -> None:
    inc = outage(daemon)
    steps(daemon).remove(inc, "V1", "ops", "台区经理确认有电")
    mine = [m for m in daemon.store.messages(incident_id=inc) if m.recipient.startswith(
        "village:V1:")]
    assert {m.purpose for m in mine} == {"outage"}    # what waited for it: kept ...
    assert {m.status for m in mine} == {"withdrawn"}  # ... and taken back
    assert all("took the village out" in (m.last_error or "") for m in mine)
    deliver(daemon)
    assert read(daemon, GROUP) == [] and read(daemon, PHONE) == []
    assert read(daemon, "village:V2:dingtalk:group-v2")[0].startswith("【故障停电")
    assert any("停电范围更正" in line for line in read(daemon, "command:cc:指挥中心"))


@pytest.mark.parametrize("refusal", [DOWN, LIMITED], ids=["service down", "rate limited"])
def test_only_the_channel_that_delivered_hears_the_correction(daemon: Daemon,
                                                              refusal: SendResult) -> None:
    """The SMS service took nothing when the outage went out; the village's group got it."""
    daemon.channels["sms"].answer["13800000003"] = refusal  # type: ignore[attr-defined]
    inc = outage(daemon)
    deliver(daemon)
    assert read(daemon, GROUP)[0].startswith("【故障停电") and read(daemon, PHONE) == []
    steps(daemon).remove(inc, "V1", "ops")
    assert [m.purpose for m in rows_to(daemon, inc, PHONE) if m.status != "withdrawn"] == []
    assert [m.purpose for m in rows_to(daemon, inc, GROUP)
            if m.status == "pending"] == ["corrected"]
    # The SMS service is back an hour later: the phone never hears of this incident.
    daemon.channels["sms"].answer.clear()  # type: ignore[attr-defined]
    daemon.clock.now += timedelta(hours=1)  # type: ignore[attr-defined]
    deliver(daemon)
    assert read(daemon, PHONE) == []
    assert read(daemon, GROUP)[-1].startswith("【更正】马集村")
    assert Counter(read(daemon, GROUP))["【更正】马集村"] == 1


@pytest.mark.parametrize("how", ["outcome unknown", "in flight"])
def test_a_notice_that_may_have_arrived_is_corrected(daemon: Daemon, how: str) -> None:
    sms = daemon.channels["sms"]
    sms.answer["13800000003"] = LOST  # type: ignore[attr-defined]
    inc = outage(daemon)
    if how == "in flight":  # claimed by a sender, its send under way
        (first,) = [m for m in rows_to(daemon, inc, PHONE) if m.purpose == "outage"]
        assert daemon.store.mark_inflight(first.id, daemon.clock())
    else:
        deliver(daemon)
    steps(daemon).remove(inc, "V1", "ops")
    assert "corrected" in {m.purpose for m in rows_to(daemon, inc, PHONE)}
    # The group's notice went (its chain was not held up) or never did (nothing delivered).
    said = "corrected" in {m.purpose for m in rows_to(daemon, inc, GROUP)}
    assert said == (how == "outcome unknown")
    if how == "outcome unknown":  # it is not sent again: the correction follows it
        sms.answer.clear()  # type: ignore[attr-defined]
        daemon.clock.now += timedelta(hours=1)  # type: ignore[attr-defined]
        deliver(daemon)
        assert read(daemon, PHONE) == ["【更正】马集村"]


def test_a_correction_still_waiting_is_not_said_twice(daemon: Daemon) -> None:
    """Taken out (the 更正 not sent yet), put back, taken out again before either went: the
    village reads its outage and one correction."""
    inc = outage(daemon)
    deliver(daemon)
    s = steps(daemon)
    s.remove(inc, "V1", "ops")
    s.add(inc, "T1", "ops")
    assert [m.purpose for m in rows_to(daemon, inc, GROUP)
            if m.status == "pending"] == ["corrected", "outage"]
    s.remove(inc, "T1", "ops")
    deliver(daemon)
    for recipient in (GROUP, PHONE):
        heads = read(daemon, recipient)
        assert heads[0].startswith("【故障停电") and heads[-1] == "【更正】马集村", heads
        assert Counter(heads)["【更正】马集村"] == 1


@dataclass(frozen=True)
class Row:
    id: int
    purpose: str
    recipient: str = "r"
    incident_id: str = "I"
    status: str = "sent"


@pytest.mark.parametrize("heard, owed", [
    ([], set()),                                                      # never told
    ([Row(1, "outage")], {"r"}),
    ([Row(1, "outage"), Row(2, "care"), Row(3, "progress_on_site")], {"r"}),
    ([Row(1, "care")], {"r"}),                                        # the list says it too
    ([Row(1, "outage"), Row(2, "corrected", status="pending")], set()),  # said already
    ([Row(1, "outage"), Row(2, "restored")], set()),                  # told it was back
    ([Row(1, "outage"), Row(2, "restored"), Row(3, "update")], {"r"}),  # off again
    ([Row(2, "outage", "a"), Row(1, "cancelled", "b")], {"a"}),        # per recipient
])
def test_who_is_owed_a_correction(heard: list[Any], owed: set[str]) -> None:
    assert owed_correction(heard) == owed


# -- through the command line and the daemon ---------------------------------------------------

def cli(cfg: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), *args],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_the_command_line_corrects_only_a_village_that_was_told(tmp_path: Path) -> None:
    """The demo's first record (南谢庄村 V035); 前赵店村 (V036) added, then taken out before
    the daemon delivered: no 【更正】. Added again and told, then taken out: each of its
    recipients the outage notice reached hears the 【更正】 once."""
    first = (ROOT / "fixtures/scenarios/demo.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n", encoding="utf-8")
    cfg = make_config(tmp_path, sources=[{"name": "demo-feed", "type": "replay",
                                          "scenario": str(tmp_path / "one.jsonl"),
                                          "speed": 1000.0, "interval_seconds": 0.5}],
                      command_centre={"channel": "wecom", "target": "command"})
    cli(cfg, "run", "--once")
    inc = next(m["incident_id"] for m in sink_lines(tmp_path) if m["purpose"] == "outage")

    def v036(purpose: str) -> Counter[str]:
        return Counter(m["key"].split("/")[2] for m in sink_lines(tmp_path)
                       if m["purpose"] == purpose and "village:V036:" in m["key"])

    cli(cfg, "incidents", "scope", inc, "--add", "V036", "--actor", "zhang")
    cli(cfg, "incidents", "scope", inc, "--remove", "V036", "--actor", "zhang")
    cli(cfg, "run", "--once")
    assert v036("outage") == Counter() and v036("corrected") == Counter()
    db = sqlite3.connect(tmp_path / "state" / "sentinel.db")
    kept = db.execute("select purpose, status from outbox where recipient like 'village:V036:%'"
                      ).fetchall()
    db.close()
    assert kept and {status for _, status in kept} == {"withdrawn"}
    assert "withdrawn" in cli(cfg, "outbox", "list", "--status", "withdrawn")
    cli(cfg, "incidents", "scope", inc, "--add", "V036", "--actor", "zhang")
    cli(cfg, "run", "--once")
    told = v036("outage")
    assert told and set(told.values()) == {1}
    cli(cfg, "incidents", "scope", inc, "--remove", "V036", "--actor", "zhang")
    cli(cfg, "run", "--once")
    assert v036("corrected") == told
    assert all(m["text"].startswith("【更正】") for m in sink_lines(tmp_path)
               if m["purpose"] == "corrected")
