"""A fault point of several devices states its probability as the set's, in words that read
right in either language: "两处同时动作" / "both together" for two, "all 3 together" for more."""

from __future__ import annotations

from outage_sentinel.crew import joint_label
from tests.conftest import build_grid

GRID = build_grid()


def test_two_devices_read_as_both_and_more_as_all() -> None:
    assert joint_label(GRID, ("FU1", "FU2"), 0.55, "en") == "both together, about 55%"
    assert joint_label(GRID, ("FU1", "FU2", "FU3"), 0.55, "en") == "all 3 together, about 55%"
    assert joint_label(GRID, ("FU1", "FU2"), 0.55, "zh") == "两处同时动作的可能性约55%"
    assert joint_label(GRID, ("FU1",), 0.55, "en") == ""
