"""The outage-information system's records as villages hear them, through the daemon's own
processing on a real store: planned work re-issued under a new id, a record whose type no
mapping classifies, planned work first seen after its stop, and a finished planned record a
feed still lists that must not hold another incident's "power back"."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed, incident, told

H = timedelta(hours=1)


def check(d: Daemon, minutes: int) -> None:
    """The clock's check at ``minutes`` (held notices are released there)."""
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    d.clock_stage.run_once(d.clock())


# -- a finished planned record still listed -------------------------------------------------


def fault_ends_beside_finished_work(d: Daemon, *, work_end: bool = False) -> Incident:
    """刘庄村 (V2): planned work on T4 (behind FU2) 08:00–10:00, still listed after; a fault
    on T3 (behind R1) from 09:00, which ends at 11:00. Returns the fault incident."""
    work = {"kind": "planned", "expected_restoration": T0 + 2 * H}
    if work_end:
        work["end"] = T0 + 2 * H  # the record gives its actual end, status still active
    feed(d, 1, ev("P1", "T4", **work))
    feed(d, 61, ev("F1", "T3", start=T0 + H))
    feed(d, 180, ev("F1", "T3", start=T0 + H, status="restored", end=T0 + 3 * H))
    return incident(d, "fault")


def test_finished_work_with_no_word_of_its_areas_still_holds_the_fault_s_power_back(
        daemon: Daemon) -> None:
    """Nothing says T4 is back: the work may have overrun; silence is the honest answer."""
    fault = fault_ends_beside_finished_work(daemon)
    check(daemon, 181)
    assert ("V2", "restored", fault.id) not in told(daemon)


@pytest.mark.parametrize("evidence", ["meters", "record_end"])
def test_finished_work_whose_area_is_known_back_holds_no_power_back(
        daemon: Daemon, evidence: str) -> None:
    """The planned stop has passed and the meters said T4 came back (or the record gives its
    actual end): the fault's "power back" is true for 刘庄村 and goes out."""
    if evidence == "meters":
        feed(daemon, 1, ev("P1", "T4", kind="planned", expected_restoration=T0 + 2 * H))
        feed(daemon, 61, ev("F1", "T3", start=T0 + H))
        # The area's power-restore from the AMI screen, after the work (joins the fault).
        feed(daemon, 126, ev("A-T4", "T4", source="ami", signal="dead", status="restored",
                             start=T0 + timedelta(minutes=5), end=T0 + timedelta(minutes=125)))
        feed(daemon, 180, ev("F1", "T3", start=T0 + H, status="restored", end=T0 + 3 * H))
        fault = incident(daemon, "fault")
    else:
        fault = fault_ends_beside_finished_work(daemon, work_end=True)
    check(daemon, 181)
    assert ("V2", "restored", fault.id) in told(daemon)

