"""The meters' report, uploaded late, that an area went dark before the outage it was in
ended and never came back: the village was told 恢复送电, so the notice it gets now corrects
that (the same outage, on again), rather than a plain outage notice of a new one timed before
the power back it just read. A meters' report of an outage that began after the restoration
is a new outage, as before.

The network is the tests' two-feeder grid (tests/conftest.py): 王楼村 (V3) is T5, under FU2
with 刘庄村's T4."""

from __future__ import annotations

from datetime import datetime, timedelta

from outage_sentinel.daemon import Daemon
from outage_sentinel.events import PollResult
from outage_sentinel.incidents import Incident
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def deliver(d: Daemon, minutes: float) -> None:
    """Every due message sent, at ``T0 + minutes``."""
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    while d.deliverer.run_once(d.clock()):
        pass


def meters_report(d: Daemon, minutes: float, event_id: str, area: str, start: datetime) -> None:
    """The meters' report (the AMI screen's output) that ``area`` went dark at ``start`` and
    is still dark, received at ``T0 + minutes`` and processed."""
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    d.store.ingest("ami", PollResult(events=[ev(event_id, area, source="ami", signal="dead",
                                                start=start)]), d.clock())
    d.process()


def heard(d: Daemon, village: str) -> list[tuple[str, str, str]]:
    """(purpose, incident, body) of every notice sent to the village's first recipient."""
    rows = [m for m in d.store.messages() if m.audience == "liaison" and m.status == "sent"
            and m.recipient.startswith(f"village:{village}:") and m.purpose != "care"]
    first = rows[0].recipient if rows else ""
    return [(m.purpose, m.incident_id, m.body) for m in rows if m.recipient == first]


def incidents(d: Daemon) -> list[Incident]:
    return [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]


def restored_n1(d: Daemon) -> Incident:
    """N1 (T5) from 08:00, ended at 08:30; 王楼村 has read 恢复送电."""
    feed(d, 1, ev("N1", "T5", start=at(0)))
    deliver(d, 2)
    feed(d, 30, ev("N1", "T5", start=at(0), status="restored", end=at(30)))
    deliver(d, 31)
    (inc,) = incidents(d)
    assert inc.status == "restored"
    assert [p for p, _, _ in heard(d, "V3")] == ["outage", "restored"]
    return inc


def test_meters_reporting_the_area_still_dark_correct_the_power_back_it_was_told(
        daemon: Daemon) -> None:  # noqa: F811
    d = daemon
    n1 = restored_n1(d)
    meters_report(d, 35, "T5@0802", "T5", start=at(2))
    deliver(d, 36)
    (inc,) = incidents(d)  # the same outage: no new incident
    assert inc.id == n1.id and inc.status == "active" and "T5" in inc.off
    told = heard(d, "V3")
    assert [(p, i) for p, i, _ in told] == [("outage", n1.id), ("restored", n1.id),
                                            ("outage", n1.id)]
    assert "更正：此前通知本村已恢复送电" in told[-1][2], told[-1][2]


def test_meters_reporting_an_outage_begun_after_the_restoration_open_a_new_one(
        daemon: Daemon) -> None:  # noqa: F811
    d = daemon
    n1 = restored_n1(d)
    meters_report(d, 45, "T5@0840", "T5", start=at(40))
    deliver(d, 46)
    old, new = sorted(incidents(d), key=lambda i: i.id)
    assert old.id == n1.id and old.status == "restored"
    assert new.status == "active" and "T5" in new.off and new.parent_id == n1.id
    purpose, iid, body = heard(d, "V3")[-1]
    assert (purpose, iid) == ("outage", new.id) and "更正" not in body, body


def test_a_meters_report_older_than_the_meters_power_restore_reopens_nothing(
        daemon: Daemon) -> None:  # noqa: F811
    """Restored by the meters' own power-restore at 08:30; a meters' report that T5 went
    dark at 08:02, uploaded after that, is of the outage the power-restore ended (as an
    outage-system record published late is: tests/test_shared_areas.py): 王楼村 is not told
    its power is off again."""
    d = daemon
    meters_report(d, 1, "T5@0800", "T5", start=at(0))
    deliver(d, 2)
    d.clock.now = at(30)  # type: ignore[attr-defined]
    d.store.ingest("ami", PollResult(events=[ev("T5@0800", "T5", source="ami", signal="alive",
                                                start=at(0), status="restored",
                                                end=at(30))]), d.clock())
    d.process()
    deliver(d, 31)
    assert [p for p, _, _ in heard(d, "V3")] == ["outage", "restored"]
    meters_report(d, 35, "T5@0802", "T5", start=at(2))
    deliver(d, 36)
    (inc,) = incidents(d)  # no new outage
    assert "ami|T5@0802" in inc.members and "T5" not in inc.off
    assert [p for p, _, _ in heard(d, "V3")] == ["outage", "restored"]
