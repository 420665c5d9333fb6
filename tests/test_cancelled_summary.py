"""A false alarm's summary says it was called off, not that power came back: the command
centre's summary of a cancelled incident read 「…2026-12-07 23:47已恢复」 and, once its areas
were cleared, 「当前停电0个台区0户」 where the summary before said 9 areas (the audit's
walk-through, messages 57 and 58). Through the daemon's real processing and command steps."""

from __future__ import annotations

from datetime import timedelta

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.liaison import Renderer
from outage_sentinel.lifecycle import step_outcome
from tests.conftest import T0
from tests.test_lifecycle import ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev as record_ev
from tests.test_shared_areas import feed


def test_a_cancelled_incidents_summary_says_called_off_never_restored(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(iid, "误报", "li")
    summaries = [m.body for m in daemon.store.messages(incident_id=iid)
                 if m.audience == "command"]
    last = summaries[-1]
    assert last.startswith("【已取消】"), last
    assert "已恢复" not in last and "当前停电" not in last, last
    assert "已取消" in last.split("\n", 2)[2], last


def test_a_steps_outcome_line_names_no_areas_off_once_called_off(
        daemon: Daemon) -> None:  # noqa: F811
    """The CLI's output, the board's answer and the audit's outcome: "cancelled, cancelled,
    2 area(s) off" read as areas still dark after the false alarm was called off."""
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    assert step_outcome(daemon.processor.incident(iid)).endswith(" area(s) off")
    inc = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(iid, "误报", "li")
    assert step_outcome(inc) == f"{iid}: cancelled"


# -- a cancelled incident's cause and expected restoration ----------------------------------------
# After the record was cancelled with cause 误报，经核实线路正常, the summary still said
# 「预计…恢复，…已取消 … 原因：线路故障，正在排查」: the fault's cause and a restoration time
# of an outage called off. It now gives the cancellation's word and no expected restoration.

FAULT = {"device": "R1", "cause": "线路故障，正在排查"}


def fault_record(**kw: object) -> OutageEvent:
    """The outage system's record P7 of 马集村's T1 and T2 (recloser R1)."""
    return record_ev("P7", "T1", "T2", **{**FAULT, "expected_restoration": T0 + timedelta(hours=2),
                                          **kw})


def last_summary(d: Daemon) -> str:
    return [m.body for m in d.store.messages() if m.audience == "command"][-1]


def test_a_record_cancelled_with_its_reason_is_summarised_with_that_reason(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, fault_record())
    assert "原因：线路故障，正在排查" in last_summary(daemon)
    feed(daemon, 20, fault_record(status="cancelled", cause="误报，经核实线路正常"))
    last = last_summary(daemon)
    assert last.startswith("【已取消】"), last
    assert "取消原因：误报，经核实线路正常" in last, last
    assert "线路故障" not in last, last
    assert "预计" not in last and "恢复" not in last.split("\n", 3)[3], last


def test_a_record_cancelled_without_a_reason_keeps_the_cause_as_first_reported(
        daemon: Daemon) -> None:  # noqa: F811
    """No cancellation word: the cause is what the record had reported, said as such."""
    feed(daemon, 1, fault_record())
    feed(daemon, 20, fault_record(status="cancelled", cause=""))
    last = last_summary(daemon)
    assert "原报原因：线路故障，正在排查" in last, last
    assert "取消原因" not in last and "预计" not in last, last


def test_the_command_centres_cancellation_gives_its_reason_not_the_faults_cause(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, fault_record())
    (row,) = daemon.store.load_incidents(open_only=True)
    CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(
        str(row["id"]), "误报", "li")
    last = last_summary(daemon)
    assert "取消原因：误报" in last and "线路故障" not in last, last
    assert "预计" not in last, last


def test_in_english_the_cancelled_summary_gives_the_reason_and_no_etr(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, fault_record())
    feed(daemon, 20, fault_record(status="cancelled", cause="误报，经核实线路正常"))
    (row,) = daemon.store.load_incidents(open_only=False)
    life = daemon.lifecycle
    renderer = life.planner.renderer
    life.planner.renderer = Renderer("en")
    try:
        body = life.render_summary(daemon.processor.incident(str(row["id"])))
    finally:
        life.planner.renderer = renderer
    assert "cancelled because: 误报，经核实线路正常" in body, body
    assert "线路故障" not in body and "expected back" not in body, body
