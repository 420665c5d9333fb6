"""A village's expected restoration time gone by is followed up (the lifecycle clock).

The audit: 王庄村 was told "预计恢复：20:10" and heard nothing until "已于21:19恢复送电" 70
minutes later; the command centre was not alerted either. Now, ``notify.overrun_grace_minutes``
after the time it was last told, a village still off hears once that the time has passed and
the new one is not known, and the command centre is alerted naming the incident, the villages
and the time; once per time told, never after its 恢复送电, across restarts.

The daemon's real processing, store (SQLite), lifecycle clock and deliverer under a hand-set
clock (:class:`tests.test_lifecycle.Harness`; T0 is 10:00 in Shanghai).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.channels.base import Message
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import ConfigError, parse_config
from tests.test_lifecycle import T0, Harness, ev

ETR = T0 + timedelta(minutes=10)  # 10:10 local
FAULT_OVERRUN = "原预计2026-11-23 10:10恢复，已超时，恢复时间待定"


def make(tmp_path: Path, **notify: Any) -> Harness:
    return Harness(tmp_path, notify=notify) if notify else Harness(tmp_path)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = make(tmp_path)
    yield harness
    harness.daemon.close()


def at(h: Harness, minutes: float) -> list[Message]:
    """The clock set to ``minutes`` after T0, the lifecycle's checks run and all that is due
    delivered: what went out."""
    h.at(minutes)
    return h.deliver()


def liaison(sent: list[Message], target: str = "V1群") -> list[Message]:
    return [m for m in sent if m.audience == "liaison" and m.target == target]


def command(sent: list[Message]) -> list[Message]:
    """The command centre's overrun alerts among ``sent`` (its summaries, escalations and
    the rest apart)."""
    return [m for m in sent if m.audience == "command" and m.purpose == "overrun"]


def news(sent: list[Message]) -> list[Message]:
    """What ``sent`` told a village or alerted the command centre of an overrun."""
    return [m for m in sent if m.audience == "liaison"] + command(sent)


def test_a_passed_time_is_followed_up_once_and_restoration_still_told(h: Harness) -> None:
    h.feed(ev("F-1", "T1", "T2", etr=ETR))
    assert "预计恢复：2026-11-23 10:10" in liaison(h.sent("outage"))[0].text
    inc = h.only_incident()

    assert not news(at(h, 20))  # 10 minutes past: within the grace

    sent = at(h, 25)
    told = liaison(sent)
    assert [m.purpose for m in told] == ["update"], [m.text for m in told]
    assert FAULT_OVERRUN in told[0].text
    assert "预计恢复时间调整为" not in told[0].text
    alert = command(sent)
    assert len(alert) == 1 and alert[0].purpose == "overrun"
    assert inc in alert[0].text and "东村" in alert[0].text
    assert "2026-11-23 10:10" in alert[0].text and "已超时15分钟" in alert[0].text
    assert not liaison(sent, "V2群")  # V2 is not in this outage

    assert not news(at(h, 40))  # once per time told
    assert not news(at(h, 60))

    h.at(79)
    h.feed(ev("F-1", "T1", "T2", etr=ETR, status="restored"))
    back = liaison(h.sent("restored"))
    assert len(back) == 1 and "恢复送电" in back[0].text
    assert not news(at(h, 120))
    assert len(liaison(h.sent("update"))) == 1


def test_a_new_time_told_that_passes_is_followed_up_again(h: Harness) -> None:
    h.feed(ev("F-1", "T1", "T2", etr=ETR))
    assert FAULT_OVERRUN in liaison(at(h, 25))[0].text

    h.at(30)
    h.feed(ev("F-1", "T1", "T2", etr=T0 + timedelta(minutes=60)))  # 11:00
    new = liaison(h.sent("update"))[-1]
    assert "11:00" in new.text and "已超时" not in new.text

    assert not news(at(h, 70))  # 11:00 + 10 minutes: within the grace
    sent = at(h, 75)
    again = liaison(sent)
    assert len(again) == 1
    assert "原预计2026-11-23 11:00恢复，已超时，恢复时间待定" in again[0].text
    alerts = command(sent)
    assert len(alerts) == 1 and "11:00" in alerts[0].text
    assert not news(at(h, 120))
    assert len(h.sent("overrun")) == 2


def test_grace_zero_switches_it_off(tmp_path: Path) -> None:
    h = make(tmp_path, overrun_grace_minutes=0)
    try:
        h.feed(ev("F-1", "T1", "T2", etr=ETR))
        for minutes in (25, 60, 300):
            assert not news(at(h, minutes))
    finally:
        h.daemon.close()


def test_planned_work_overrunning_its_stop(h: Harness) -> None:
    h.feed(ev("P-1", "T1", "T2", kind="planned", start=T0 - timedelta(hours=1), etr=ETR))
    assert liaison(h.sent())  # announced while the work is on
    sent = at(h, 25)
    told = liaison(sent)
    assert len(told) == 1
    assert "超出计划时间仍停电（原计划2026-11-23 10:10恢复），恢复时间待定" in told[0].text
    alert = command(sent)
    assert len(alert) == 1 and "超出计划时间" in alert[0].text
    assert "原计划2026-11-23 10:10恢复，已超出15分钟" in alert[0].text
    assert not news(at(h, 40))


def test_restoration_supersedes_an_overrun_update_not_sent_yet(h: Harness) -> None:
    h.feed(ev("F-1", "T1", "T2", etr=ETR))
    h.at(25)
    h.daemon.lifecycle.check(h.now)  # queued, not delivered yet
    queued = [r for r in h.daemon.store.messages(incident_id=h.only_incident())
              if r.purpose in ("update", "overrun")]
    assert [(r.purpose, r.status) for r in queued] == [("update", "pending"),
                                                       ("overrun", "pending")]
    h.at(26)
    h.feed(ev("F-1", "T1", "T2", etr=ETR, status="restored"))
    told = liaison(h.channel.sent)
    assert [m.purpose for m in told if m.purpose != "care"] == ["outage", "restored"]
    rows = [r for r in h.daemon.store.messages(incident_id=h.only_incident())
            if r.purpose == "update"]
    assert [r.status for r in rows] == ["superseded"]


def test_followed_up_once_across_a_restart(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.feed(ev("F-1", "T1", "T2", etr=ETR))
    assert liaison(at(h, 25))
    h.daemon.close()
    again = make(tmp_path)
    try:
        again.at(30)
        assert not news(again.deliver())
        assert not news(at(again, 90))
    finally:
        again.daemon.close()


def test_the_command_centres_own_time_passing_is_told_too(h: Harness) -> None:
    h.feed(ev("F-1", "T1", "T2"))  # no time from the source
    inc = h.only_incident()
    h.at(5)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).etr(
        inc, "2026-11-23 10:30", "operator:li")
    h.deliver()
    assert "10:30" in liaison(h.sent("update"))[-1].text
    assert not news(at(h, 40))
    sent = at(h, 45)
    told = liaison(sent)
    assert len(told) == 1
    assert "原预计2026-11-23 10:30恢复，已超时，恢复时间待定" in told[0].text
    assert "指挥中心设定" in command(sent)[0].text


def test_a_village_still_off_in_part_is_followed_up(h: Harness) -> None:
    h.feed(ev("F-1", "T1", "T2", "T3", etr=ETR))
    h.at(5)
    h.feed(ev("R-1", "T3", signal="alive", status="restored", start=T0 + timedelta(minutes=5)))
    assert liaison(h.sent("restored"), "V2群")
    sent = at(h, 25)
    assert len(liaison(sent)) == 1 and not liaison(sent, "V2群")
    assert "东村" in command(sent)[0].text and "西村" not in command(sent)[0].text


def test_the_grace_is_a_bounded_notify_key(tmp_path: Path) -> None:
    base = {"sources": [{"name": "f", "type": "replay", "scenario": str(tmp_path / "s.jsonl")}],
            "channels": {"w": {"type": "file", "path": str(tmp_path / "sink.jsonl")}}}
    assert parse_config(base).notify.overrun_grace_minutes == 15
    assert parse_config({**base, "notify": {"overrun_grace_minutes": 0}}
                        ).notify.overrun_grace_minutes == 0
    with pytest.raises(ConfigError, match="overrun_grace_minutes"):
        parse_config({**base, "notify": {"overrun_grace_minutes": -1}})


def test_a_notice_of_the_time_going_only_after_it_is_not_followed_by_another(
        h: Harness) -> None:
    """The update giving 10:30 waits for the group's robot (down until 10:50): it goes late,
    saying under its heading that its time has passed (the deliverer's late line); the
    village is not told so twice. The command centre is alerted all the same."""
    from tests.test_planned_truth_c import down_until

    h.feed(ev("F-1", "T1", "T2", etr=ETR))
    down_until(h, T0 + timedelta(minutes=50))
    h.at(5)
    h.feed(ev("F-1", "T1", "T2", etr=T0 + timedelta(minutes=30)))
    assert not liaison(h.sent("update"))  # queued, the robot down
    sent = at(h, 45)
    assert not liaison(sent) and len(command(sent)) == 1
    later = [m for minutes in range(50, 125, 5) for m in at(h, minutes)]
    told = liaison(later)
    assert [m.purpose for m in told] == ["update"]
    assert "已过预计恢复时间2026-11-23 10:30" in told[0].text
    assert not command(later)


def test_an_outage_of_unclassified_kind_is_followed_up_as_a_fault_not_planned_work(
        h: Harness) -> None:
    """A record the source could not classify (announced as a neutral 停电) is handled as a
    fault: its time gone by is 原预计…已超时, never 超出计划时间 (there was no plan)."""
    from dataclasses import replace

    from outage_sentinel.events import UNCLASSIFIED_KIND

    h.feed(replace(ev("F-1", "T1", "T2", etr=ETR), raw={UNCLASSIFIED_KIND: "未知"}))
    sent = at(h, 25)
    (told,) = liaison(sent)
    assert FAULT_OVERRUN in told.text and "超出计划时间" not in told.text, told.text
    (alert,) = command(sent)
    assert alert.text.startswith("【超时未恢复】"), alert.text
