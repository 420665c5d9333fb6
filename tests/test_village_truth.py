"""What a village's notice says is true of that village, through the daemon's processing: its
own outage start, expected restoration time and operated devices (not another record's on the
same feeder), the time its own areas came back, and — when the command centre corrects which
of its areas are off — its areas and households now."""

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


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def notices(d: Daemon, village: str, purpose: str, channel: str = "") -> list[OutboxMessage]:
    return [m for m in d.store.messages() if m.audience == "liaison" and m.purpose == purpose
            and m.recipient.startswith(f"village:{village}:{channel}")]


def only_incident(d: Daemon) -> str:
    (row,) = d.store.load_incidents(open_only=False)
    return str(row["id"])


def test_each_village_hears_its_own_start_time_and_devices(daemon: Daemon) -> None:  # noqa: F811
    """N1 (T1, 马集村, FU1, no time) at 08:00; N2 (T5, 王楼村, FU2, back by 12:00) at 10:00
    joins the same incident."""
    feed(daemon, 1, ev("N1", "T1", device="FU1"))
    later = T0 + timedelta(hours=2)
    feed(daemon, 121, ev("N2", "T5", start=later, device="FU2",
                         expected_restoration=T0 + timedelta(hours=4)))
    (v3,) = notices(daemon, "V3", "outage")
    assert "停电时间：2026-03-01 10:00；预计恢复：2026-03-01 12:00" in v3.body
    assert "马集2号熔断器" in v3.body and "马集1号熔断器" not in v3.body
    assert v3.payload["params"]["sms"]["start"] == "2026-03-01 10:00"
    # 马集村's own record gives no time: it is not told N2's.
    assert notices(daemon, "V1", "update") == []
    (v1,) = notices(daemon, "V1", "outage", "sms")
    assert "马集1号熔断器" in v1.body and "马集2号熔断器" not in v1.body
    assert (v1.payload["params"]["sms"]["start"], v1.payload["params"]["sms"]["etr"]) == (
        "2026-03-01 08:00", "待定")


def test_a_partially_restored_village_hears_when_its_areas_came_back(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T2"), ev("N2", "T3"))
    # N1 ended at 08:30 local; the feed publishes it at 09:30. T3 is still off.
    feed(daemon, 90, ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=30)))
    (group,) = notices(daemon, "V1", "restored", "wecom")
    assert "已于2026-03-01 08:30恢复送电" in group.body
    (sms,) = notices(daemon, "V1", "restored", "sms")
    assert sms.payload["params"]["sms"]["restored"] == "2026-03-01 08:30"


def test_a_told_village_hears_when_the_command_centre_takes_an_area_out_or_adds_one(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T2"))
    iid = only_incident(daemon)
    assert len(notices(daemon, "V1", "outage", "wecom")) == 1
    daemon.clock.now = T0 + timedelta(minutes=5)  # type: ignore[attr-defined]
    steps.remove(iid, "T2", "ops", "台区经理确认该台区有电")
    (update,) = notices(daemon, "V1", "update", "wecom")
    assert "台区T2经供电指挥中心核实不在停电范围" in update.body
    assert "已确认停电：台区T1，本村40户" in update.body
    (sms,) = notices(daemon, "V1", "update", "sms")
    assert sms.payload["params"]["sms"]["households"] == "40"
    assert not notices(daemon, "V1", "corrected")  # the village is still off
    daemon.clock.now = T0 + timedelta(minutes=10)  # type: ignore[attr-defined]
    steps.add(iid, "T2", "ops", "95598来电")
    latest = notices(daemon, "V1", "update", "wecom")[-1]
    assert len(notices(daemon, "V1", "update", "wecom")) == 2
    assert "本村停电范围有变化" in latest.body
    assert "已确认停电：台区T1、台区T2，本村70户" in latest.body


def test_an_area_added_outside_the_scope_is_news_to_its_told_village(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = only_incident(daemon)
    assert "T3" not in daemon.processor.incident(iid).estimate.transformers
    assert len(notices(daemon, "V2", "outage")) == 1
    daemon.clock.now = T0 + timedelta(minutes=5)  # type: ignore[attr-defined]
    steps.add(iid, "T3", "ops", "95598来电")
    (update,) = notices(daemon, "V2", "update")
    assert "本村停电范围有变化，以本通知为准；" in update.body
    assert "台区T3" in update.body and "本村70户" in update.body
