"""The command centre sets the fault device (SCADA, a crew's call): later estimates name it,
the crew sent gets new orders, the log says who set what, and no village hears of it (its
areas are what they were). The test grid's fault is T4 off (under 马集2号熔断器 FU2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.lifecycle import LifecycleError
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed
from tests.test_stand_down import crew_messages, deliver, one_incident


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def liaison_count(d: Daemon, incident_id: str) -> int:
    return sum(1 for m in d.store.messages(incident_id=incident_id) if m.audience == "liaison")


def test_the_device_set_is_the_fault_point_from_now_on_and_the_crew_gets_new_orders(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    before = daemon.processor.incident(iid)
    assert before.estimate.devices != ("B1",) and crew_messages(daemon, iid) == [
        ("CR1", "dispatch", "sent")]
    told = liaison_count(daemon, iid)
    after = steps.device(iid, "马集出线开关", "board:alice", "SCADA: 911 tripped")
    assert (after.estimate.devices, after.estimate.probability) == (("B1",), None)
    assert (after.device_set, after.device_set_by) == (("B1",), "board:alice")
    assert after.estimate.transformers == before.estimate.transformers  # the areas stay
    assert after.revision == before.revision + 1
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent"),
                                          ("CR1", "dispatch", "sent")]
    update = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    lines = update.body.splitlines()
    assert lines[0].startswith("【抢修派工·更新】") and "指挥中心已更正故障点为马集出线开关" in lines[1]
    assert "- 马集出线开关（运行人员确认）" in lines and "疑似" not in update.body
    assert liaison_count(daemon, iid) == told  # no village hears of a device
    (summary,) = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "device_set"]
    assert summary.subject.startswith("【故障点更正】") and "推断故障点" not in summary.body
    assert "故障点（运行人员确认）：马集出线开关" in summary.body
    (entry,) = [e for e in daemon.store.incident_log(iid) if e["stage"] == "device_set"]
    assert (entry["actor"], entry["note"]) == ("board:alice", "SCADA: 911 tripped")
    assert entry["details"] == {"devices": ["B1"], "was": list(before.estimate.devices),
                                "crew": "CR1"}
    # Later evidence (another area of the line off) never undoes the command centre's word.
    feed(daemon, 10, ev("N2", "T5"))
    later = daemon.processor.incident(iid)
    assert "T5" in later.estimate.transformers and later.estimate.devices == ("B1",)
    assert later.device_set == ("B1",) and later.estimate.probability is None


def test_a_dispatch_not_sent_yet_is_replaced_by_the_new_orders(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    steps.device(iid, "B1", "ops")
    deliver(daemon)
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "withdrawn"),
                                          ("CR1", "dispatch", "sent")]
    # The crew never had the first: the one it gets is its orders, not an update of them.
    orders = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    assert orders.subject.startswith("【抢修派工】") and "作废" not in orders.body
    assert "- 马集出线开关（运行人员确认）" in orders.body.splitlines()


@pytest.mark.parametrize(("refs", "why"), [
    ("NOPE", "'NOPE' is not a device or transformer of the topology"),
    ("J1", "'J1' is not a device or transformer of the topology"),
    ("FU3", "FU3 is on feeder F2, not on INC-.*'s feeder F1"),
    ("TIE", "TIE is not energised"),
    ("R1", "reported off but not below R1: T4 \\(台区T4\\).*incidents scope --remove"),
    (" , ", "no device given"),
])
def test_a_device_that_cannot_be_the_fault_point_is_refused_naming_it(
        daemon: Daemon, steps: CommandSteps, refs: str, why: str) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    revision = daemon.processor.incident(iid).revision
    with pytest.raises(LifecycleError, match=why):
        steps.device(iid, refs, "ops")
    assert daemon.processor.incident(iid).revision == revision
    assert not [e for e in daemon.store.incident_log(iid) if e["stage"] == "device_set"]


def test_only_an_open_fault_takes_a_device(daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    steps.device(iid, "FU2", "ops")
    with pytest.raises(LifecycleError, match="already FU2"):
        steps.device(iid, "FU2", "ops")
    steps.cancel(iid, "误报", "ops")
    with pytest.raises(LifecycleError, match="only an open incident"):
        steps.device(iid, "B1", "ops")


def test_an_outage_grown_past_the_device_set_is_the_localisers_again(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """FU2 is set for T4; then a record reports T1 off (under FU1, not FU2). The set device no
    longer explains the outage: the estimate is the localiser's again (推断, with its
    probability), the log says the set point was dropped, and the crew gets new orders."""
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    deliver(daemon)
    steps.device(iid, "FU2", "board:alice", "SCADA")
    deliver(daemon)
    feed(daemon, 10, ev("N2", "T1"))
    later = daemon.processor.incident(iid)
    assert later.device_set == () and later.device_set_by == ""
    assert later.estimate.probability is not None and "FU2" != later.estimate.devices
    (entry,) = [e for e in daemon.store.incident_log(iid) if e["stage"] == "device_set_dropped"]
    assert entry["details"] == {"was": ["FU2"], "by": "board:alice"}
    deliver(daemon)
    summary = [m for m in daemon.store.messages(incident_id=iid)
               if m.audience == "command"][-1].body
    assert "运行人员确认" not in summary and "推断故障点" in summary
    orders = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    assert "（运行人员确认）" not in orders.body


def test_the_area_own_transformer_can_be_set_as_the_fault_point(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    # T4 alone reported off under FU2 (T4, T5): the command centre learns that T4's drop-out
    # fuse blew. The fault point is T4 itself, its section T4 alone (the areas are the
    # scope's business: ``incidents scope --remove T5``).
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    steps.device(iid, "T4", "ops")
    inc = daemon.processor.incident(iid)
    assert inc.estimate.devices == ("T4",) and inc.device_set == ("T4",)
    assert inc.estimate.section == ("T4",)
    deliver(daemon)
    orders = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    assert "- 台区T4（运行人员确认）" in orders.body.splitlines()
    # the command centre's summary says the area itself is the fault point
    summary = [m for m in daemon.store.messages(incident_id=iid)
               if m.audience == "command"][-1]
    assert "故障点（运行人员确认）：台区T4（台区自身故障：配变或跌落式熔断器）" in summary.body
