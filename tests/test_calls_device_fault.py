"""A fault its record names by a device alone (a switch tripped, no area named yet) is where
calls place the fault: a call from an area an earlier incident restored, placed after that
restoration, is about the new darkness and must not be dropped as about an outage over."""

from __future__ import annotations

from datetime import UTC, datetime

from outage_sentinel.earlier_calls import called_after_return
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Resolved

BACK = [(frozenset({"T-A", "T-B"}), datetime(2026, 3, 1, 9, 0, tzinfo=UTC))]


def call_at(hour: int) -> OutageEvent:
    return OutageEvent(source="calls", event_id="C1", kind="fault", status="active",
                       signal="call", start=datetime(2026, 3, 1, hour, 0, tzinfo=UTC),
                       transformers=("T-A",))


def test_a_call_is_kept_for_a_fault_named_by_its_device_alone() -> None:
    outage = Resolved("F1", (), "SW-1", ())
    assert not called_after_return(call_at(11), Resolved("F1", ("T-A",), None, ()),
                                   outage, BACK)


def test_a_call_about_an_area_back_is_dropped_for_another_areas_outage() -> None:
    outage = Resolved("F1", ("T-C",), None, ())
    assert called_after_return(call_at(11), Resolved("F1", ("T-A",), None, ()),
                               outage, BACK)
    assert not called_after_return(call_at(8), Resolved("F1", ("T-A",), None, ()),
                                   outage, BACK)  # placed before the area came back
