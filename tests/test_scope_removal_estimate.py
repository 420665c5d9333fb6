"""An area the command centre takes out of an incident (``incidents scope --remove``) takes
its reports out of the fault point too: the incident is estimated again from its records
without them, as the processor folds now, unless the command centre set the fault device
itself. The board, the summary and the crew otherwise went on naming a device only the
removed village's reports argued for, and the crew patrolled a branch known to have power.

A village only the old estimate inferred is withdrawn quietly (the command centre never said
it has power: no 【更正】 for it); the crew sent gets new orders when the fault point moved,
and none when it did not. The removal stays against the records it overruled.

The test grid (``tests/conftest.py``): a record naming T1 (马集村 V1, below 马集1号熔断器 FU1)
and T5 (王楼村 V3, below 马集2号熔断器 FU2) is estimated at 马集出线开关 B1, which infers T2,
T3 and T4 (刘庄村 V2) off too; T1 alone is FU1's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from tests.test_clear_corrections import last_id, log_of, messages
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed
from tests.test_stand_down import crew_messages, deliver, one_incident


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def two_branches(d: Daemon) -> str:
    """The incident of a record naming T1 and T5, its crew told and its villages too."""
    feed(d, 1, ev("N1", "T1", "T5"))
    iid = one_incident(d)
    deliver(d)
    inc = d.processor.incident(iid)
    assert inc.estimate.devices == ("B1",) and set(inc.off) == {"T1", "T2", "T3", "T4", "T5"}
    assert crew_messages(d, iid) == [("CR1", "dispatch", "sent")]
    return iid


def test_a_village_taken_out_takes_the_fault_point_only_its_reports_argued_for(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = two_branches(daemon)
    was = daemon.processor.incident(iid)
    since = last_id(daemon)
    daemon.clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.remove(iid, "王楼村", "ops", "SCADA: 王楼村有电")
    # Estimated from T1's report alone: FU1, and below it T2; 刘庄村's T3 and T4 are no
    # longer inferred, and T5 stays out.
    assert after.estimate.devices == ("FU1",) and after.estimate.probability
    assert set(after.off) == {"T1", "T2"} and after.excluded == ("T5",)
    assert after.revision == was.revision + 1
    assert daemon.processor.incident(iid).to_json() == after.to_json()  # as written
    deliver(daemon)
    # 王楼村, which the command centre took out, hears the correction; 刘庄村, only inferred,
    # is withdrawn: nobody tells it it has power on a word nobody gave for it.
    liaison = [(m.recipient.split(":")[1], m.purpose) for m in messages(daemon, iid, since=since)
               if m.audience == "liaison"]
    assert liaison == [("V3", "corrected")]
    assert after.withdrawn_villages == ("V2",) and "V2" not in after.notified_villages
    # The command centre's summary names the new fault point, as inferred.
    (summary,) = messages(daemon, iid, "scope_removed")
    assert summary.subject.startswith("【停电范围更正】")
    assert "推断故障点：马集1号熔断器" in summary.body and "马集出线开关" not in summary.body
    # The crew gets new orders: patrol from FU1, as an inference, not B1's section.
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent")] * 2
    orders = messages(daemon, iid, "dispatch")[-1]
    assert orders.revision == after.revision
    assert orders.subject.startswith("【抢修派工·更新】")
    assert "指挥中心已将部分台区移出停电范围，系统推断故障点为马集1号熔断器（疑似动作" in orders.body
    assert "巡视区段：自马集1号熔断器" in orders.body and "马集出线开关（疑似动作" not in orders.body
    assert "已更正故障点" not in orders.body  # the command centre set no device
    (entry,) = log_of(daemon, iid, "scope_removed")
    assert entry["details"] == {"transformers": ["T5"], "was": ["B1"], "now": ["FU1"],
                                "crew": "CR1"}


def test_the_removal_and_its_estimate_stand_when_the_record_is_polled_again(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = two_branches(daemon)
    steps.remove(iid, "王楼村", "ops")
    deliver(daemon)
    orders = len(messages(daemon, iid, "dispatch"))
    # The same record, with a time now: T5 is what the correction overruled.
    feed(daemon, 20, ev("N1", "T1", "T5", expected_restoration=daemon.clock()
                        + timedelta(hours=3)))
    deliver(daemon)
    inc = daemon.processor.incident(iid)
    assert inc.excluded == ("T5",) and "T5" not in inc.off
    assert inc.estimate.devices == ("FU1",)
    assert len(messages(daemon, iid, "dispatch")) == orders  # nothing moved for the crew


def test_a_fault_point_that_does_not_move_gives_the_crew_no_new_orders(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """T4 and T5 are both below FU2: without T5, FU2 it still is."""
    feed(daemon, 1, ev("N1", "T4", "T5"))
    iid = one_incident(daemon)
    deliver(daemon)
    assert daemon.processor.incident(iid).estimate.devices == ("FU2",)
    after = steps.remove(iid, "T5", "ops")
    deliver(daemon)
    assert after.estimate.devices == ("FU2",) and set(after.off) == {"T4"}
    assert crew_messages(daemon, iid) == [("CR1", "dispatch", "sent")]
    (entry,) = log_of(daemon, iid, "scope_removed")
    assert entry["details"] == {"transformers": ["T5"]}


def test_a_fault_device_the_command_centre_set_stands_when_an_area_goes(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = two_branches(daemon)
    steps.device(iid, "B1", "ops", "SCADA: 911 tripped")
    deliver(daemon)
    orders = len(messages(daemon, iid, "dispatch"))
    after = steps.remove(iid, "王楼村", "ops")
    deliver(daemon)
    # Its word, not the localiser's: the device and the areas below it it left stay.
    assert (after.device_set, after.estimate.devices) == (("B1",), ("B1",))
    assert "T5" not in after.off and {"T1", "T2", "T3", "T4"} <= set(after.off)
    assert len(messages(daemon, iid, "dispatch")) == orders
