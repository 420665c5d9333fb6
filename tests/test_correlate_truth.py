"""Which open incident a new fault record joins, through the real path: the demo bundle, a
real SQLite store and the processor built as the daemon builds it (``assembly.build_core``).

An open incident's correlation window does not stay open until it ends: an outage on a line
open since yesterday took in a fault elsewhere on the line today (one incident of 28.77 h,
the new village counted in the old days' reports and the old outage's close-out). A record
joins an open incident when it began within the window of the incident's latest onset, or
when it is the same outage seen again (an area the incident holds off, a device above or
below them), however late.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from outage_sentinel.events import OutageEvent
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_incident_truth_folding import NOW, Rig

#: 10kV 城关I线 (CG01): FU-CG01-01 feeds V001 (T-CG01-001, 002, ...); FU-CG01-02 feeds V002
#: (T-CG01-008..011).
OLD_AREAS = ("T-CG01-001", "T-CG01-002")
NEW_AREAS = ("T-CG01-008", "T-CG01-009", "T-CG01-010")


def fault(event_id: str, areas: tuple[str, ...], start: Any, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": "active", "signal": "notice", "start": start,
                          "feeder": "CG01", "transformers": areas, **kw})


def by_member(rig: Rig) -> dict[str, str]:
    return {k: inc.id for inc in rig.incidents() for k in inc.members}


def test_an_outage_open_since_yesterday_does_not_absorb_a_new_fault_on_its_line(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The audit's case: HA open since 28 h, LE begun 1 h ago on other areas of the line,
    in one poll."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, fault("HA", OLD_AREAS, NOW - timedelta(hours=28)),
             fault("LE", NEW_AREAS, NOW - timedelta(hours=1)))
    owner = by_member(rig)
    assert owner["feed|HA"] != owner["feed|LE"]
    incs = {i.id: i for i in rig.incidents()}
    old, new = incs[owner["feed|HA"]], incs[owner["feed|LE"]]
    assert old.start == NOW - timedelta(hours=28) and not set(NEW_AREAS) & set(old.off)
    assert new.start == NOW - timedelta(hours=1) and set(NEW_AREAS) <= set(new.off)
    assert "V002" not in old.estimate.villages and "V002" in new.estimate.villages


def test_a_later_fault_elsewhere_on_the_line_is_its_own_incident(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The same across polls: a fault 3 h into an outage, on areas it does not hold."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, fault("HA", OLD_AREAS, NOW))
    later = NOW + timedelta(hours=3)
    rig.feed(later, fault("LE", NEW_AREAS, later))
    owner = by_member(rig)
    assert owner["feed|HA"] != owner["feed|LE"]


def test_the_same_outage_seen_again_late_still_joins(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """A record hours later naming an area the incident holds off (inferred below its fuse),
    or the fuse itself, or the breaker above it, is that outage: one incident, its village
    told once."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, fault("LE", NEW_AREAS, NOW))
    (inc,) = rig.incidents()
    assert inc.mark("T-CG01-011") == "inferred"
    told = rig.told("V002", "outage")
    later = NOW + timedelta(hours=3)
    rig.feed(later, fault("L2", ("T-CG01-011",), later),
             fault("L3", (), later, device="FU-CG01-02"),
             fault("L4", (), later + timedelta(minutes=5), device="BRK-CG01"))
    assert set(by_member(rig).values()) == {inc.id}
    assert rig.told("V002", "outage") == told


def test_records_of_one_growing_outage_fold_within_the_window_of_the_latest(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """A storm's records on one line, each begun within the window of the one before though
    the last begins long after the first: one incident, as before."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, fault("S1", OLD_AREAS, NOW))
    step = timedelta(minutes=25)
    rig.feed(NOW + step, fault("S2", ("T-CG01-008",), NOW + step))
    rig.feed(NOW + 2 * step, fault("S3", ("T-CG01-013",), NOW + 2 * step))
    assert len(set(by_member(rig).values())) == 1
