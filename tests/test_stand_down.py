"""A crew told to go is told when it is no longer wanted: the incident cancelled (by the
command centre or by the outage system), or given to another crew; and a crew sent back to an
incident after that hears the new dispatch (the same revision's keys used to drop it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.outgoing import OutboxMessage
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


def crew_messages(d: Daemon, incident_id: str) -> list[tuple[str, str, str]]:
    """(crew, purpose, status) of the incident's crew messages, in the order queued."""
    return [(m.recipient.split(":")[1], m.purpose, m.status)
            for m in d.store.messages(incident_id=incident_id) if m.audience == "crew"]


def deliver(d: Daemon) -> list[OutboxMessage]:
    while d.deliverer.run_once(d.clock()):
        pass
    return d.store.messages()


def one_incident(d: Daemon) -> str:
    (row,) = d.store.load_incidents(open_only=True)
    return str(row["id"])


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def test_a_cancel_stands_down_the_crew_that_was_told(daemon: Daemon,  # noqa: F811
                                                     steps: CommandSteps) -> None:
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent")]
    steps.cancel(iid, "误报：用户内部故障 13912345678", "ops")
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "stand_down", "sent")]
    (msg,) = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "stand_down"]
    assert msg.subject.startswith("【抢修撤回】" + iid) and "已由指挥中心取消" in msg.body
    assert "误报" in msg.body and msg.target == "crew-1"
    assert msg.payload["params"]["sms_template"] == "command"  # an SMS crew reads it too
    log = [e for e in daemon.store.incident_log(iid) if e["stage"] == "stood_down"]
    assert log[0]["details"] == {"crew": "CR1", "reason": "cancelled", "to": None, "told": True}


def test_a_cancel_before_the_dispatch_went_withdraws_it_and_says_nothing_more(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    steps.cancel(iid, "误报", "ops")
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "withdrawn")]
    (entry,) = [e for e in daemon.store.incident_log(iid) if e["stage"] == "stood_down"]
    assert entry["details"]["told"] is False


def test_the_outage_system_cancelling_its_record_stands_the_crew_down(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    feed(daemon, 20, ev("N1", "T4", status="cancelled", end=T0 + timedelta(minutes=20)))
    deliver(daemon)
    assert daemon.processor.incident(iid).status == "cancelled"
    assert crew_messages(daemon, iid)[-1] == ("CR1", "stand_down", "sent")
    (entry,) = [e for e in daemon.store.incident_log(iid) if e["stage"] == "stood_down"]
    assert entry["actor"] == "source:feed"


def test_reassigning_stands_the_first_crew_down_and_sending_it_back_reaches_it(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    life = daemon.lifecycle
    life.dispatch(iid, "ops", crew_id="CR2", note="马集班车辆故障")
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "stand_down", "sent"),
                                          ("CR2", "dispatch", "sent")]
    (down,) = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "stand_down"]
    assert "改派城关抢修班" in down.body and "车辆故障" in down.body
    # Sent back the same hour, nothing new known: CR1 hears the new dispatch, CR2 stands down.
    life.dispatch(iid, "ops", crew_id="CR1")
    deliver(daemon)
    assert crew_messages(daemon, iid)[3:] == [("CR2", "stand_down", "sent"),
                                              ("CR1", "dispatch", "sent")]
    # Each dispatch told the command centre too.
    summaries = [m for m in daemon.store.messages(incident_id=iid)
                 if m.audience == "command" and m.purpose == "dispatched"]
    assert len(summaries) == 3
    # The village's group (no liaison reached in person) never gets the list, only who holds
    # it: each crew that took it over in turn, once each.
    care = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "care"]
    assert {m.recipient for m in care} == {"village:V2:dingtalk:group-v2"}
    assert [(m.status, "马集抢修班" in m.body, "城关抢修班" in m.body) for m in care] == [
        ("sent", True, False), ("sent", False, True), ("sent", True, False)]
    assert not any("居民甲" in m.body for m in care)


def test_a_care_notice_not_sent_yet_names_the_crew_sent_now_not_the_one_stood_down(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    # Nothing delivered yet (a slow channel): the group's notice naming 马集抢修班 waits.
    daemon.lifecycle.dispatch(iid, "ops", crew_id="CR2", note="马集班车辆故障")
    deliver(daemon)
    care = [(m.status, m.body.splitlines()[1]) for m in daemon.store.messages(incident_id=iid)
            if m.purpose == "care"]
    said = "本村有1户特殊关怀用户，名单已发送给{}，请与其联系，不在群内公布。"
    assert care == [("withdrawn", said.format("马集抢修班")), ("sent", said.format("城关抢修班"))]
    # The same crew sent again says nothing new to the village.
    daemon.lifecycle.dispatch(iid, "ops", crew_id="CR2")
    assert len([m for m in daemon.store.messages(incident_id=iid) if m.purpose == "care"]) == 2


def test_a_crew_on_its_way_hears_the_power_is_back_unless_it_brought_it_back(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    feed(daemon, 20, ev("N1", "T4", status="restored", end=T0 + timedelta(minutes=18)))
    deliver(daemon)
    assert crew_messages(daemon, iid)[-1] == ("CR1", "crew_power_back", "sent")
    (msg,) = [m for m in daemon.store.messages(incident_id=iid)
              if m.purpose == "crew_power_back"]
    assert "已于" in msg.body and "据停电信息系统" in msg.body and "派工未撤回" in msg.body
    # 台区T5 only inferred: nothing says it is back. By SMS the crew reads the summary alone,
    # which used to be the first line cut ("已恢复送电 INC-…：马集I线（2026…").
    assert msg.subject.startswith("【已恢复送电·部分未确认】")
    assert msg.payload["params"]["sms"]["summary"] == \
        "已恢复送电（据停电信息系统），台区T5来电未确认；派工未撤回"
    # The crew's own restoration step tells the crew nothing.
    feed(daemon, 30, ev("N2", "T5", start=T0 + timedelta(minutes=30)))
    other = next(r["id"] for r in daemon.store.load_incidents(open_only=True))
    deliver(daemon)
    assert crew_messages(daemon, other) == [("CR1", "dispatch", "sent")]
    daemon.processor.operator_restore(other, "crew:CR1", None, None,
                                      now=T0 + timedelta(minutes=40))
    assert not [m for m in daemon.store.messages(incident_id=other)
                if m.purpose == "crew_power_back"]


def test_a_crew_whose_orders_are_still_queued_hears_the_power_is_back_after_them(
        daemon: Daemon) -> None:  # noqa: F811
    """Power back before the dispatch was sent (the daemon was killed in between, a channel
    slow): the orders still go out, so the crew must hear after them that the power is back
    (it used to get the orders alone and drive to a line already on)."""
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "pending")]
    feed(daemon, 20, ev("N1", "T4", status="restored", end=T0 + timedelta(minutes=18)))
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "crew_power_back", "sent")]
    sent = [m for m in daemon.store.messages(incident_id=iid) if m.audience == "crew"]
    assert sent[0].sent_at is not None and sent[1].sent_at is not None
    assert sent[0].id < sent[1].id


def tried_once(d: Daemon, incident_id: str, purpose: str) -> None:
    """The incident's ``purpose`` message was tried, failed, and waits to be tried again."""
    (m,) = [m for m in d.store.messages(incident_id=incident_id) if m.purpose == purpose]
    assert d.store.mark_inflight(m.id, d.clock())
    now = d.clock()
    assert d.store.settle_interrupted(m.id, now + timedelta(minutes=8), now, allowed=1,
                                      resend_note="timeout: outcome unknown",
                                      dead_note="delivery uncertain") == "resend"


@pytest.mark.parametrize("change", ["cancel", "reassign"])
def test_a_dispatch_waiting_to_be_retried_is_withdrawn_and_the_crew_stood_down(
        daemon: Daemon, steps: CommandSteps, change: str) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    tried_once(daemon, iid, "dispatch")
    if change == "cancel":
        steps.cancel(iid, "误报", "ops")
    else:
        daemon.lifecycle.dispatch(iid, "ops", crew_id="CR2")
    daemon.clock.now += timedelta(minutes=10)  # type: ignore[attr-defined]
    deliver(daemon)
    cr1 = [(p, s) for c, p, s in crew_messages(daemon, iid) if c == "CR1"]
    # It may have reached the crew: it hears the stand-down, and the dispatch is not resent.
    assert cr1 == [("dispatch", "withdrawn"), ("stand_down", "sent")]


def test_the_outage_system_cancelling_says_so_and_a_finished_job_is_not_stood_down(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    feed(daemon, 20, ev("N1", "T4", status="cancelled", end=T0 + timedelta(minutes=20)))
    (msg,) = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "stand_down"]
    assert "已由停电信息系统取消" in msg.body and "指挥中心" not in msg.body
    # Restored, then the record is listed cancelled: the crew's job was done; no stand-down.
    feed(daemon, 30, ev("N2", "T5", start=T0 + timedelta(minutes=30)))
    other = next(r["id"] for r in daemon.store.load_incidents(open_only=True))
    deliver(daemon)
    feed(daemon, 40, ev("N2", "T5", start=T0 + timedelta(minutes=30), status="restored",
                        end=T0 + timedelta(minutes=40)))
    feed(daemon, 45, ev("N2", "T5", start=T0 + timedelta(minutes=30), status="cancelled",
                        end=T0 + timedelta(minutes=40)))
    assert not [m for m in daemon.store.messages(incident_id=other) if m.purpose == "stand_down"]


def test_a_care_notice_taken_back_unsent_is_queued_again_when_a_crew_is_sent_again(
        daemon: Daemon) -> None:  # noqa: F811
    """The record cancelled before anything went out (the care notice taken back), then
    listed on again: the crew sent now has the list, and the village's group must hear who
    holds it (the new notice had the taken-back one's key and was dropped as a duplicate)."""
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    feed(daemon, 5, ev("N1", "T4", status="cancelled", end=T0 + timedelta(minutes=5)))
    feed(daemon, 8, ev("N1", "T4"))
    assert daemon.processor.incident(iid).status == "active"
    deliver(daemon)
    assert ("CR1", "dispatch", "sent") in crew_messages(daemon, iid)
    care = [(m.status, m.revision) for m in daemon.store.messages(incident_id=iid)
            if m.purpose == "care"]
    assert care[0] == ("withdrawn", 0) and [s for s, _ in care[1:]] == ["sent"]


def test_a_care_notice_the_command_centre_withdrew_is_not_queued_again_by_a_new_dispatch(
        daemon: Daemon) -> None:  # noqa: F811
    """The command centre withdrew the group's care notice (its word: this group gets none);
    the crew given to another is no reason to send it one after all. The daemon's own
    take-back (a crew stood down before it went) still makes way for a new one (above)."""
    from outage_sentinel.outbox_control import OutboxControl

    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    (care,) = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "care"]
    assert care.status == "pending"
    OutboxControl(daemon.store, lambda: daemon.topology).take(
        "withdraw", [care.id], "board:ops", daemon.clock(), reason="名单待核实")
    daemon.lifecycle.dispatch(iid, "ops", crew_id="CR2", note="马集班车辆故障")
    deliver(daemon)
    assert [(m.status, m.last_error) for m in daemon.store.messages(incident_id=iid)
            if m.purpose == "care"] == [
        ("withdrawn", "withdrawn by board:ops: 名单待核实 (was pending)")]
    assert ("CR2", "dispatch", "sent") in crew_messages(daemon, iid)
