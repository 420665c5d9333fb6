"""What a trouble call (a 95598 work order) may and may not do, through the daemon core.

A call is one customer's word: it places one household in one area and is evidence for the
localiser. It is never a village's notice (the agent's text names the caller and a number to
ring back), a household's own fault (单户无电, 表后开关跳闸) is no evidence that its area is
off, and a work order whose area disagrees with its customer is placed by the customer alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from outage_sentinel.config import FieldMap
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident, resolve_event
from outage_sentinel.sources.mapping import PRESETS, RecordMapper
from outage_sentinel.topology import load_bundle
from tests.test_daemon_ami_truth import NOW, ROOT, Run, report

TZ = ZoneInfo("Asia/Shanghai")
TOPOLOGY = load_bundle(ROOT / "topology")
FIELDS = PRESETS["95598_workorder"].fields
CALLER = "苏勇家无电，回电13800001707"  # what an agent types: a name, a number to ring back
AREA_002 = "T-CG01-002"  # village V001, fuse FU-CG01-01
CUSTOMERS_002 = ("C00209", "C00305")
CUSTOMERS_011 = ("C00127", "C00149")  # area T-CG01-011, village V002, fuse FU-CG01-02


def order(no: str, at: datetime, **kw: Any) -> dict[str, Any]:
    return {"orderNo": no, "acceptTime": at.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S"),
            "faultType": "无电", "content": "家中无电", **kw}


def meters_off(area: str, at: datetime) -> list[dict[str, Any]]:
    return [report(f"M-{area}-{i:03d}", "3.26.0.85", at + timedelta(seconds=i))
            for i in range(1, 11)]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def dark_002(run: Run) -> None:
    """Area 002's meters off at NOW; V001 told three minutes later."""
    run.step(NOW + timedelta(seconds=12), meters_off(AREA_002, NOW))
    run.step(NOW + timedelta(minutes=3))


def calls_in(run: Run, events: list[OutageEvent | None], at: datetime) -> None:
    run.daemon.store.ingest("calls", PollResult(events=[e for e in events if e]), at)
    run.step(at)


def villages_told(run: Run) -> set[str]:
    return {m.key.split("/")[2].split(":")[1] for m in run.daemon.store.messages()
            if m.audience == "liaison"}


def incident(run: Run) -> Incident:
    (row,) = run.daemon.store.load_incidents(open_only=False)
    return Incident.from_json(row["state"])


# --- a caller's words are no village's notice ------------------------------------------


def test_a_work_orders_cause_is_its_category_the_agents_text_stays_raw() -> None:
    ev = RecordMapper("orders", FIELDS, TZ).map(order("W1", NOW, custNo="C00209",
                                                      content=CALLER))
    assert ev is not None and ev.cause == "无电"
    assert ev.raw["content"] == CALLER  # the command centre can still read it


def test_a_callers_words_never_reach_another_villages_group(run: Run) -> None:
    """A field map that maps the agent's text into ``cause`` (as the preset did) still puts
    no caller's name or number in any notice: V002's group read "因无电；苏勇家无电，回电
    13800001707" when area 008 went dark after a V001 customer's call."""
    dark_002(run)
    call = OutageEvent(source="calls", event_id="W0", kind="fault", status="active",
                       start=NOW + timedelta(minutes=4), signal="call",
                       transformers=("C00209",), cause=f"无电；{CALLER}")
    calls_in(run, [call], NOW + timedelta(minutes=5))
    run.step(NOW + timedelta(minutes=6, seconds=12),
             meters_off("T-CG01-008", NOW + timedelta(minutes=6)))
    run.step(NOW + timedelta(minutes=9))
    assert villages_told(run) == {"V001", "V002"}
    for m in run.daemon.store.messages():
        if m.audience in ("liaison", "crew"):
            assert "苏勇" not in m.body and "13800001707" not in m.body, (m.key, m.body)
            assert "因无电" not in m.body, (m.key, m.body)
    assert incident(run).cause == ""  # meters and a call say where, not why


# --- one household's own fault is no evidence of its area --------------------------------


@pytest.mark.parametrize("category", ["单户无电", "低压故障-单户停电", "入户线故障", "表后线故障",
                                      "客户内部故障", "计量故障-电能表无电", "欠费停电"])
def test_a_single_household_fault_is_no_outage_evidence(category: str) -> None:
    mapper = RecordMapper("orders", FIELDS, TZ)
    assert mapper.map(order("W1", NOW, custNo="C00127", faultType=category)) is None


@pytest.mark.parametrize("category", [
    "无电", "停电", "低压故障-多户停电", "台区停电", "高压故障-停电",
    # wider than one household, though a word of one household's fault is in it (a review
    # found these dropped as single-household faults)
    "配变内部故障-全部停电", "台区变压器内部故障停电", "表计箱烧毁导致片区停电", "计量自动化终端停电",
    "电能计量装置故障导致整个台区停电", "多户无电（表后开关正常）", "停电（非单户）"])
def test_an_area_outage_call_is_evidence(category: str) -> None:
    mapper = RecordMapper("orders", FIELDS, TZ)
    assert mapper.map(order("W1", NOW, custNo="C00127", faultType=category)) is not None


def test_the_exclusion_words_are_configurable_and_checked() -> None:
    lenient = RecordMapper("orders", FIELDS.model_copy(update={"not_outage_categories": []}), TZ)
    assert lenient.map(order("W1", NOW, custNo="C00127", faultType="单户无电")) is not None
    with pytest.raises(ValidationError, match="empty word"):
        FieldMap(event_id="id", start="t", not_outage_categories=["单户", " "])
    with pytest.raises(ValidationError, match="'单户停电' can never match"):
        FieldMap(event_id="id", start="t", outage_categories=["停电", "单户停电"])


def test_single_household_calls_move_no_fault_and_tell_no_village(run: Run) -> None:
    """Two households of area 011 (V002, lit) phone about their own service drop while area
    002 (V001) is dark: the estimate moved to FU-CG01-02 at p=0.98 and V002 heard 可能受影响
    940户."""
    dark_002(run)
    before = incident(run).estimate
    mapper = RecordMapper("orders", FIELDS, TZ)
    at = NOW + timedelta(minutes=4)
    calls_in(run, [mapper.map(order(f"W{i}", at, custNo=c, faultType=ft, content="表后开关跳闸"))
                   for i, (c, ft) in enumerate(zip(CUSTOMERS_011, ["单户无电", "低压故障-单户停电"],
                                                   strict=True))], NOW + timedelta(minutes=5))
    after = incident(run).estimate
    assert after.devices == before.devices and "FU-CG01-02" not in after.devices
    assert villages_told(run) == {"V001"}


# --- one call, one place ---------------------------------------------------------------


def call(*refs: str) -> OutageEvent:
    return OutageEvent(source="calls", event_id="W9", kind="fault", status="active",
                       start=NOW, signal="call", transformers=refs)


def test_a_call_is_placed_by_its_customer_not_also_by_its_work_orders_area() -> None:
    ev = RecordMapper("orders", FIELDS, TZ).map(order("W9", NOW, custNo="C00213",
                                                      tgNo="T-CG01-010"))
    assert ev is not None
    resolved = resolve_event(TOPOLOGY, ev)
    assert resolved.transformers == ("T-MJ01-025",) and resolved.feeder == "MJ01"
    assert resolved.set_aside == ("T-CG01-010",)
    # a call stored with its area first (as the mapper listed them) is placed the same way
    assert resolve_event(TOPOLOGY, call("T-CG01-010", "C00213")).transformers == ("T-MJ01-025",)


def test_a_call_falls_back_to_its_meter_then_its_area() -> None:
    by_meter = resolve_event(TOPOLOGY, call("T-CG01-010", "NOBODY", "M-T-MJ01-026-001"))
    assert by_meter.transformers == ("T-MJ01-026",) and by_meter.unknown == ("NOBODY",)
    by_area = resolve_event(TOPOLOGY, call("T-CG01-010", "NOBODY"))
    assert by_area.transformers == ("T-CG01-010",) and by_area.set_aside == ()
    agreeing = resolve_event(TOPOLOGY, call("C00213", "T-MJ01-025"))
    assert agreeing.transformers == ("T-MJ01-025",) and agreeing.set_aside == ()


def test_an_outage_notice_still_names_every_area() -> None:
    notice = OutageEvent(source="feed", event_id="N1", kind="fault", status="active",
                         start=NOW, transformers=("T-CG01-010", "T-CG01-011"))
    assert resolve_event(TOPOLOGY, notice).transformers == ("T-CG01-010", "T-CG01-011")


def test_calls_whose_work_order_names_another_area_tell_no_other_village(run: Run) -> None:
    """Three callers of dark area 002 phone (its two registered customers, and one by meter
    number); their work orders name area 011 (the agent picked it from the address): V002 was
    told 可能受影响 and the estimate dragged to 002's neighbours. The command centre hears the
    work orders' area is wrong. (A customer phoning twice is one caller: three orders of two
    customers no longer say as much as three callers do.)"""
    dark_002(run)
    mapper = RecordMapper("orders", FIELDS, TZ)
    at = NOW + timedelta(minutes=4)
    callers = [*({"custNo": c} for c in CUSTOMERS_002), {"meterNo": "M-T-CG01-002-003"}]
    orders = [mapper.map(order(f"W{i}", at + timedelta(seconds=i), tgNo="T-CG01-011",
                               lineName="CG01", **caller))
              for i, caller in enumerate(callers)]
    with capture_logs() as logs:
        calls_in(run, orders, NOW + timedelta(minutes=5))
    assert villages_told(run) == {"V001"}
    assert set(incident(run).estimate.transformers) == {AREA_002}
    disagree = [e for e in logs if e["event"] == "call_references_disagree"]
    assert len(disagree) == 3
    assert all(e["set_aside"] == ["T-CG01-011"] and e["placed"] == [AREA_002] for e in disagree)
