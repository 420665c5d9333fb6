"""A scope removal (``incidents scope --remove``) that leaves an outage nothing off tells the
crew sent to it what the end of any outage tells it.

Taking out the last areas still off, the others back on their records, ends the incident as
restored: the crew on its way hears the power is back (``crew_power_back``), as when a source
ends it — it used to hear nothing and drive on to patrol for an outage the command centre
had just said was over. Taking out every area a source reported, so that the areas left were
only inferred from them and go with them, calls the outage off as a cancel does: the crew
stands down told why (the step's words, else that every area was taken out). The incident
used to stay open with no area at all and the crew on its orders.

The test grid (``tests/conftest.py``): T4 (刘庄村 V2) and T5 (王楼村 V3) are both below
马集2号熔断器 FU2; a record naming T1 (马集村 V1) and T5 is estimated at 马集出线开关 B1,
inferring T2, T3 and T4 off."""

from __future__ import annotations

from datetime import timedelta

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from tests.conftest import T0
from tests.test_clear_corrections import log_of, messages
from tests.test_scope_removal_estimate import steps as steps  # noqa: F401  (the fixture)
from tests.test_scope_removal_estimate import two_branches
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed
from tests.test_stand_down import crew_messages, deliver, one_incident


def one_back_one_off(d: Daemon) -> str:
    """An outage of T4 and T5 (two records), its crew told, T4 back on its record at 00:18."""
    feed(d, 1, ev("N1", "T4"), ev("N2", "T5"))
    iid = one_incident(d)
    deliver(d)
    feed(d, 20, ev("N1", "T4", status="restored", end=T0 + timedelta(minutes=18)),
         ev("N2", "T5"))
    deliver(d)
    inc = d.processor.incident(iid)
    assert inc.status == "active" and inc.off == ("T5",) and "T4" in inc.restored
    assert crew_messages(d, iid) == [("CR1", "dispatch", "sent")]  # a part back: no word
    return iid


def test_taking_out_the_last_area_off_tells_the_crew_the_power_is_back(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = one_back_one_off(daemon)
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.remove(iid, "王楼村", "ops", "SCADA: 王楼村有电")
    deliver(daemon)
    assert after.status == "restored" and not after.off
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "crew_power_back", "sent")]
    (msg,) = messages(daemon, iid, "crew_power_back")
    assert msg.revision == after.revision and msg.target == "crew-1"
    # When, and on whose word: T4's record's end, not the command centre's correction.
    assert "已于2026-03-01 08:18恢复送电（据停电信息系统）" in msg.body and "派工未撤回" in msg.body
    assert msg.payload["params"]["sms"]["summary"] == "已恢复送电（据停电信息系统）；派工未撤回"
    # The village the command centre took out hears its correction, not "power restored".
    assert [m.purpose for m in messages(daemon, iid) if m.recipient.startswith("village:V3")
            ] == ["outage", "corrected"]
    (entry,) = log_of(daemon, iid, "scope_removed")
    assert entry["details"]["crew"] == "CR1" and entry["details"]["crew_told"] == "power_back"


def test_a_crew_whose_orders_are_still_queued_hears_it_after_them(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"), ev("N2", "T5"))
    iid = one_incident(daemon)
    feed(daemon, 20, ev("N1", "T4", status="restored", end=T0 + timedelta(minutes=18)),
         ev("N2", "T5"))
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "pending")]
    steps.remove(iid, "T5", "ops")
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "crew_power_back", "sent")]


def test_a_removal_that_leaves_areas_off_tells_the_crew_no_power_back(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """T4 still off: the outage goes on, and so do the crew's orders (FU2 it still is)."""
    feed(daemon, 1, ev("N1", "T4", "T5"))
    iid = one_incident(daemon)
    deliver(daemon)
    after = steps.remove(iid, "T5", "ops")
    deliver(daemon)
    assert after.status == "active" and after.off == ("T4",)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent")]
    assert "crew_told" not in log_of(daemon, iid, "scope_removed")[0]["details"]


def test_taking_out_every_area_reported_calls_the_outage_off_and_stands_the_crew_down(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """T1 and T5 taken out: T2, T3 and T4 were only inferred from their reports and go with
    them. Nothing is left off: the command centre has said the outage was never there."""
    iid = two_branches(daemon)
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.remove(iid, "T1,T5", "ops", "SCADA: 全线有电")
    deliver(daemon)
    # Called off as a cancel calls it off: a later poll of its record does not reopen it.
    assert (after.status, after.stage, after.cancel_reason) == (
        "cancelled", "cancelled", "SCADA: 全线有电")
    assert not after.off
    # The crew stands down, told by whom and why (it used to hear nothing and keep its
    # orders for an open outage with no area).
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "stand_down", "sent")]
    (down,) = messages(daemon, iid, "stand_down")
    assert "已由指挥中心取消（SCADA: 全线有电）" in down.body and "不必前往" in down.body
    (entry,) = log_of(daemon, iid, "stood_down")
    assert entry["details"]["reason"] == "cancelled" and entry["details"]["told"] is True
    (step,) = log_of(daemon, iid, "scope_removed")
    assert step["details"]["cancelled"] == "SCADA: 全线有电"
    # Every village told hears something that ends what it was told, none that its power is
    # back: 王楼村 (T5 taken out) its correction, the others the outage called off.
    heard = {(m.recipient.split(":")[1], m.purpose) for m in messages(daemon, iid)
             if m.audience == "liaison" and m.status == "sent" and m.purpose != "outage"}
    assert ("V3", "corrected") in heard and ("V2", "cancelled") in heard
    assert not any(p == "restored" for _, p in heard)
    feed(daemon, 30, ev("N1", "T1", "T5"))  # polled again, still open at the source
    assert daemon.processor.incident(iid).status == "cancelled"
    assert crew_messages(daemon, iid)[-1] == ("CR1", "stand_down", "sent")


def test_with_no_words_the_crew_is_told_the_scope_was_taken_out(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = two_branches(daemon)
    after = steps.remove(iid, "T1,T5", "ops")
    deliver(daemon)
    assert after.cancel_reason == "指挥中心已将全部停电台区移出停电范围"
    (down,) = messages(daemon, iid, "stand_down")
    assert "（指挥中心已将全部停电台区移出停电范围）" in down.body
