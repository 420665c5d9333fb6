"""Trouble calls count callers, not work orders: the localiser's call model reads the calls of
an area as how many of its customers called (Poisson in its customers), so one customer
phoning twice (two work orders) is one caller. Audit H3: a second work order from the same
customer of a lit area took the fault point's stated probability from 87 % to 98 %.

A work order without a customer (or meter) number the bundle knows (placed by its area or
address) counts as its own caller: nothing says two such orders are one person."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.incidents import (
    Member,
    evidence_of,
    member_of,
    resolve_event,
    stated_percent,
)
from outage_sentinel.sources.mapping import RecordMapper
from tests.test_call_truth import (
    CUSTOMERS_011,
    FIELDS,
    TOPOLOGY,
    TZ,
    calls_in,
    dark_002,
    incident,
    order,
)
from tests.test_daemon_ami_truth import NOW, Run

AREA_011 = "T-CG01-011"  # village V002; customers C00127, C00149


def members(*orders: dict[str, Any]) -> list[Member]:
    """The incident records of ``orders`` (work orders), as the daemon folds them."""
    mapper = RecordMapper("orders", FIELDS, TZ)
    out = []
    for i, record in enumerate(orders):
        event = mapper.map(record)
        assert event is not None
        out.append(member_of(event, resolve_event(TOPOLOGY, event),
                             NOW + timedelta(minutes=i)))
    return out


def test_two_work_orders_of_one_customer_are_one_caller() -> None:
    calls = evidence_of(members(order("W1", NOW, custNo=CUSTOMERS_011[0]),
                                order("W2", NOW + timedelta(minutes=3),
                                      custNo=CUSTOMERS_011[0]))).calls
    assert calls == {AREA_011: 1}


def test_two_customers_of_an_area_are_two_callers() -> None:
    calls = evidence_of(members(*(order(f"W{i}", NOW, custNo=c)
                                  for i, c in enumerate(CUSTOMERS_011)),
                                order("W9", NOW, custNo=CUSTOMERS_011[0]))).calls
    assert calls == {AREA_011: 2}


def test_work_orders_without_a_customer_each_count() -> None:
    """Placed by the area the work order names alone: each its own caller."""
    calls = evidence_of(members(order("W1", NOW, tgNo=AREA_011),
                                order("W2", NOW, tgNo=AREA_011))).calls
    assert calls == {AREA_011: 2}


def test_the_caller_is_kept_with_the_stored_record() -> None:
    (call,) = members(order("W1", NOW, custNo=CUSTOMERS_011[0], tgNo=AREA_011))
    assert call.caller == CUSTOMERS_011[0]
    assert Member.from_json(call.to_json()) == call
    (by_area,) = members(order("W2", NOW, tgNo=AREA_011))
    assert by_area.caller == "" and "caller" not in by_area.to_json()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def test_a_repeat_call_from_the_same_customer_adds_no_confidence(run: Run) -> None:
    """Area 002's meters dark; a customer of lit area 011 calls, then calls again."""
    mapper = RecordMapper("orders", FIELDS, TZ)
    dark_002(run)
    at = NOW + timedelta(minutes=2)
    calls_in(run, [mapper.map(order("W0", at, custNo=CUSTOMERS_011[0]))], at)
    once = incident(run).estimate
    again = NOW + timedelta(minutes=6)
    calls_in(run, [mapper.map(order("W-again", again, custNo=CUSTOMERS_011[0]))], again)
    twice = incident(run)
    assert sorted(m.key.split("|")[1] for m in twice.members.values()
                  if m.signal == "call") == ["W-again", "W0"]  # both work orders kept
    assert evidence_of(twice.members.values()).calls == {AREA_011: 1}
    assert twice.estimate.devices == once.devices
    assert stated_percent(twice.estimate.probability) == stated_percent(once.probability)
