"""Late meters' reports after an outage was closed out (销号), through the real path: the
demo bundle, a real SQLite store, the processor and lifecycle built as the daemon builds them.

- A finished outage (off 02:01, on 02:29) inside the closed incident's span is recorded in
  that incident's log (no village notice: it is over); it was dropped.
- Meters reporting off since 02:02, no power back yet, are news of now: a new incident, but
  timed when the report arrived (its stamp in the log), not inside the span the village was
  told its power was back.
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

AREAS = ("T-CG01-008", "T-CG01-009", "T-CG01-010")
VILLAGE = "V002"


def rec(event_id: str, status: str, start: Any, end: Any = None, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": status, "signal": "notice", "start": start, "end": end,
                          "feeder": "CG01", "transformers": AREAS, **kw})


def meter(event_id: str, area: str, status: str, start: Any, end: Any = None) -> OutageEvent:
    signal = "alive" if status == "restored" else "dead"
    return OutageEvent(source="meters", event_id=event_id, kind="fault", status=status,
                       signal=signal, start=start, end=end, transformers=(area,))


def closed_out(rig: Rig) -> str:
    """The outage 02:00–02:30, restored on its record and closed out at 02:40."""
    rig.feed(NOW, rec("R1", "active", NOW))
    end = NOW + timedelta(minutes=30)
    rig.feed(end, rec("R1", "restored", NOW, end))
    (inc,) = rig.incidents()
    assert inc.status == "restored"
    rig.core.lifecycle.close(inc.id, "operator:cc", "设备故障", device="FU-CG01-02",
                             unconfirmed_ok=True)
    return inc.id


def test_a_finished_late_outage_is_recorded_against_the_closed_incident(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    iid = closed_out(rig)
    outages = rig.told(VILLAGE, "outage")
    late = NOW + timedelta(hours=1)
    rig.feed(late, meter("M1", AREAS[0], "restored", NOW + timedelta(minutes=1),
                         NOW + timedelta(minutes=29)), source="meters")
    assert [i.id for i in rig.incidents()] == [iid]
    logged = [e for e in store.incident_log(iid) if e["stage"] == "late_report"]
    assert len(logged) == 1 and logged[0]["details"]["transformers"] == [AREAS[0]]
    assert logged[0]["details"]["customers"] > 0
    assert rig.told(VILLAGE, "outage") == outages
    (closed,) = rig.incidents()
    assert closed.stage == "closed"


def test_meters_dark_since_before_the_closeout_open_a_new_outage_timed_by_arrival(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    iid = closed_out(rig)
    arrived = NOW + timedelta(hours=1)
    stamp = NOW + timedelta(minutes=2)
    rig.feed(arrived, meter("M2", AREAS[1], "active", stamp), source="meters")
    (new,) = [i for i in rig.incidents() if i.id != iid]
    # Not begun inside 02:00–02:30, the span the village was told its power was back.
    assert new.start == arrived
    (noted,) = [e for e in store.incident_log(new.id) if e["stage"] == "late_stamp"]
    assert noted["details"]["closed_incident"] == iid
    assert noted["details"]["stamped_start"] == stamp.isoformat()
    # Its power back later: the record's restoration keeps the time it was given.
    back = arrived + timedelta(minutes=20)
    rig.feed(back, meter("M2", AREAS[1], "restored", stamp, back), source="meters")
    (new,) = [i for i in rig.incidents() if i.id != iid]
    assert new.start == arrived and new.status == "restored"


def test_a_finished_late_outage_is_recorded_against_a_restored_incident_not_closed_yet(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The same late report before the close-out: the incident is restored, not closed; the
    outage it reports is over inside its span. It was dropped (no incident had it at all)."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, rec("R1", "active", NOW))
    end = NOW + timedelta(minutes=30)
    rig.feed(end, rec("R1", "restored", NOW, end))
    (inc,) = rig.incidents()
    assert inc.status == "restored" and inc.stage != "closed"
    outages, restored = rig.told(VILLAGE, "outage"), rig.told(VILLAGE, "restored")
    late = NOW + timedelta(minutes=50)
    rig.feed(late, meter("M1", AREAS[0], "restored", NOW + timedelta(minutes=1),
                         NOW + timedelta(minutes=29)), source="meters")
    assert [i.id for i in rig.incidents()] == [inc.id]
    logged = [e for e in store.incident_log(inc.id) if e["stage"] == "late_report"]
    assert len(logged) == 1 and logged[0]["details"]["transformers"] == [AREAS[0]]
    assert rig.told(VILLAGE, "outage") == outages
    assert rig.told(VILLAGE, "restored") == restored
