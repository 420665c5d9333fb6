"""A village its meters hold off after the outage system's records of it ended or were called
off is not told the ending record's closing words as the cause of its outage.

A record (cause 线路故障, a time to be back) cancelled with cause 误报 while the meters saw the
area dark sent 「恢复时间待定 … 已确认停电：… 原因：误报。」; a record ending with cause 已恢复
while the meters still report off sent 「原因：已恢复。」. The area is rightly kept off; the
words now say the outage system reports it over (or called off) while the meters show it
still off, being checked — and the SMS ``cause`` says so too.

Over the demo bundle and a real store (SQLite, and PostgreSQL when reachable), the board's
core folding as the daemon's processor does (:mod:`tests.test_evidence_conflicts`' rig).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board.serve import build
from outage_sentinel.config import CommandCentreConfig, FieldConfig, load_config
from outage_sentinel.store import Store
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_evidence_conflicts import meters_dark, record
from tests.test_field import Clock, sent_all

H = timedelta(hours=1)


def board_in(store: Store, tmp_path: Path, language: str) -> tuple[Any, Store, Clock, Any]:
    """The field board's core (as :func:`tests.test_field.field_board`) notifying in
    ``language``."""
    config = load_config(ROOT / "config.yaml")
    config = config.model_copy(update={
        "state_dir": tmp_path,
        "field": FieldConfig(base_url="http://board.example.cn:8088"),
        "command_centre": CommandCentreConfig(channel="wecom"),
        "notify": config.notify.model_copy(update={"language": language})})
    topology = load_bundle(ROOT / "topology")
    clock = Clock()
    return build(config, store, lambda: topology, clock), store, clock, topology


@pytest.fixture(params=["zh", "en"])
def rig(request: pytest.FixtureRequest, store: Store, tmp_path: Path  # noqa: F811
        ) -> tuple[tuple[Any, Store, Clock, Any], str]:
    return board_in(store, tmp_path, request.param), request.param


class Outage:
    """An SMS liaison's village: the record R1 of its first area (cause 线路故障, back in 2 h),
    the area's meters dark a minute later, the outage notices delivered."""

    def __init__(self, rig: tuple[tuple[Any, Store, Clock, Any], str]) -> None:
        (self.board, self.store, self.clock, self.topology), self.lang = rig
        li = next(x for x in self.topology.liaisons if x.channel == "sms")
        self.village = li.village
        self.area = self.topology.village_transformers(li.village)[0]
        self.start = self.clock.now - timedelta(minutes=5)
        self.etr = self.clock.now + 2 * H
        self.record("active", cause="线路故障")
        (row,) = self.store.load_incidents(open_only=True)
        self.iid = str(row["id"])
        self.clock.now += timedelta(minutes=1)
        meters_dark(self.store, self.board, self.clock.now, self.area,
                    self.start + timedelta(minutes=1))
        sent_all(self.store, self.iid, self.clock.now)

    def record(self, status: str, **kw: Any) -> None:
        record(self.store, self.board, self.clock.now, "oms", "R1", self.area, self.start,
               status=status, expected_restoration=self.etr, **kw)

    def later(self, status: str, end: datetime | None = None, **kw: Any) -> None:
        self.clock.now += timedelta(minutes=30)
        self.record(status, end=end, **kw)

    def updates(self) -> list[Any]:
        return [m for m in self.store.messages(incident_id=self.iid)
                if m.audience == "liaison" and m.purpose == "update"
                and m.payload.get("village") == self.village]

    def language(self) -> str:
        return self.lang


def assert_told_over(outage: Outage, word_zh: str, word_en: str, closing: str) -> None:
    inc = outage.board.actions.core.processor.incident(outage.iid)
    assert inc.status == "active" and outage.area in inc.off  # rightly held off
    updates = outage.updates()
    assert updates, "the village hears its update"
    for m in updates:
        if outage.language() == "zh":
            assert f"停电信息系统报{word_zh}，但电表显示仍停电，正在核实。" in m.body, m.body
            assert "原因：" not in m.body, m.body
        else:
            assert (f"The outage system reports the outage {word_en}, but the meters still "
                    "show no power") in m.body, m.body
            assert "Cause:" not in m.body, m.body
        assert f"原因：{closing}" not in m.body and f"Cause: {closing}" not in m.body, m.body
        sms = m.payload["params"]["sms"]
        assert sms["cause"] != closing, sms
        assert sms["cause"] == ("待查（停电信息系统报" + word_zh + "，电表仍显示停电）"
                                if outage.language() == "zh"
                                else "records " + ("cancelled" if word_en == "called off"
                                                   else word_en) + ", meters still off"), sms


def test_a_record_called_off_as_a_false_alarm_while_the_meters_are_dark(rig: Any) -> None:
    outage = Outage(rig)
    outage.later("cancelled", cause="误报")
    assert_told_over(outage, "已取消", "called off", "误报")


def test_a_record_ending_as_restored_while_the_meters_still_report_off(rig: Any) -> None:
    outage = Outage(rig)
    outage.later("restored", end=outage.clock.now + timedelta(minutes=30), cause="已恢复")
    assert_told_over(outage, "已恢复", "over", "已恢复")


def test_while_the_record_is_open_its_cause_is_still_the_cause(rig: Any) -> None:
    """Guard: a new time from the open record still states its cause."""
    outage = Outage(rig)
    outage.etr += H
    outage.later("active", cause="线路故障，树线矛盾")
    (m, *_) = outage.updates()
    said = "原因：线路故障，树线矛盾。" if outage.language() == "zh" else "Cause: 线路故障，树线矛盾."
    assert said in m.body and "电表" not in m.body and "meters" not in m.body, m.body
    assert m.payload["params"]["sms"]["cause"] == "线路故障，树线矛盾"



def test_a_record_ending_with_no_word_of_its_own_keeps_the_cause_it_gave(rig: Any) -> None:
    """The record ends restating nothing: the cause it gave while open is the outage's (the
    village is told it, as before), beside the word that the meters still say off."""
    outage = Outage(rig)
    outage.later("restored", end=outage.clock.now + timedelta(minutes=30), cause="")
    (m, *_) = outage.updates()
    if outage.language() == "zh":
        assert "原因：线路故障。停电信息系统报已恢复，但电表显示仍停电，正在核实。" in m.body, m.body
    else:
        assert "Cause: 线路故障. The outage system reports the outage over" in m.body, m.body
    assert m.payload["params"]["sms"]["cause"] == "线路故障"
