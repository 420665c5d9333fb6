"""Every area an incident's open records name brought back by the command centre: the outage
is over, and the localiser does not invent another one from those records.

The demo county's 北岭线 (LH02): 卢官庄支线 has two fuses side by side, FU-LH02-01 (卢官庄村
1号, 马堤村1号/2号) and FU-LH02-02 (卢官庄村2号/3号, 马堤村...). An operator's ``incidents
open`` (or an outage-system record) names T-LH02-001..003; the operator restores all three.
Before, the fold read the still-open record's areas (all back) as "dead" beside a reclosed
FU-LH02-01, moved the fault to FU-LH02-02 at ~56 % with 卢官庄村2号/3号 "possibly affected",
kept the incident open (partially restored), gave the crew new orders there, and never told
卢官庄村 its power was back. (The crew hears no "power back" from a restoration the command
centre recorded, as for any: :meth:`RevisionWriter._tell_crew_power_back`.)

A later revision of an outage-system record still open, the same areas and the same start,
keeps them back (the restoration came after the outage it reports began: the feed lags the
field); a record re-issued with a start after the restoration, or naming an area that never
came back, is an outage again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import load_bundle
from tests.conftest import T0
from tests.shared_setup import ROOT
from tests.test_shared_areas import make_daemon

AREAS = ("T-LH02-001", "T-LH02-002", "T-LH02-003")
#: The villages of those areas (卢官庄村, 马堤村).
VILLAGES = {"V059", "V060"}


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, load_bundle(ROOT / "topology"))
    yield d
    d.close()


def at(d: Daemon, minutes: float) -> datetime:
    d.clock.now = T0 + timedelta(minutes=minutes)  # type: ignore[attr-defined]
    return d.clock()


def deliver(d: Daemon) -> None:
    while d.deliverer.run_once(d.clock()):
        pass


def queued(d: Daemon, incident_id: str, after: int) -> list[tuple[str, str, str]]:
    """(purpose, audience, recipient) of the messages queued since ``after`` rows."""
    return [(m.purpose, m.audience, m.recipient)
            for m in d.store.messages(incident_id=incident_id)[after:]]


def villages_told(rows: list[tuple[str, str, str]], purpose: str) -> set[str]:
    return {r.split(":")[1] for p, a, r in rows
            if p == purpose and a == "liaison" and r.startswith("village:")}


def record(status: str = "active", start: datetime = T0, *areas: str) -> OutageEvent:
    return OutageEvent(source="feed", event_id="PMS-1", kind="fault", status=status,  # type: ignore[arg-type]
                       signal="notice", start=start, transformers=areas or AREAS,
                       feeder="LH02", cause="线路故障")


def assert_over(inc: Incident) -> None:
    assert (inc.status, inc.stage) == ("restored", "restored")
    assert inc.off == ()
    assert not [t for t, mark in inc.scope.items() if mark == "inferred"]
    assert set(inc.estimate.transformers) <= set(AREAS)
    assert "FU-LH02-02" not in inc.estimate.devices


def restore_all(d: Daemon, inc: Incident, minutes: float) -> tuple[Incident, list]:
    before = len(d.store.messages(incident_id=inc.id))
    inc = d.processor.operator_restore(inc.id, "ops", None, None, now=at(d, minutes))
    return inc, queued(d, inc.id, before)


def test_the_operator_restoring_every_area_it_opened_ends_the_incident(
        daemon: Daemon) -> None:
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    at(daemon, 1)
    inc = steps.open("ops", feeder="LH02", transformers=",".join(AREAS))
    crew = daemon.store.get_incident(inc.id)["crew_id"]
    assert inc.status == "active" and crew
    deliver(daemon)  # the crew and the villages were told
    inc, rows = restore_all(daemon, inc, 11)
    assert_over(inc)
    # The operator's own open record ends with it: nothing it named is off.
    (opened,) = [m for m in inc.members.values() if m.key.startswith("operator|call:")]
    assert opened.status == "restored"
    assert not [r for r in rows if r[0] == "dispatch"]  # no new orders anywhere
    assert villages_told(rows, "restored") == VILLAGES
    assert not [r for r in rows if r[1] == "crew"]  # no new orders: nowhere else to go
    stages = [e["stage"] for e in daemon.store.incident_log(inc.id)]
    assert "partially_restored" not in stages


def test_an_outage_system_record_still_open_whose_areas_were_all_restored(
        daemon: Daemon) -> None:
    at(daemon, 1)
    daemon.store.ingest("feed", PollResult(events=[record()]), daemon.clock())
    daemon.process()
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = daemon.processor.incident(row["id"])
    assert inc.status == "active"
    crew = daemon.store.get_incident(inc.id)["crew_id"]
    deliver(daemon)
    inc, rows = restore_all(daemon, inc, 11)
    assert_over(inc)
    # The record is the outage system's: still open there, it is kept as it came.
    assert inc.members["feed|PMS-1"].status == "active"
    assert not [r for r in rows if r[0] == "dispatch"]
    assert villages_told(rows, "restored") == VILLAGES
    # The crew hears nothing new: no orders elsewhere, and the power back is the command
    # centre's word (as any restoration it records: often the crew's own).
    assert crew and not [r for r in rows if r[1] == "crew"]

    # The feed sends the record again, still open, the same areas and start: a feed lags
    # the field, the areas stay back and nobody hears of the outage again.
    deliver(daemon)
    before = len(daemon.store.messages(incident_id=inc.id))
    at(daemon, 20)
    daemon.store.ingest("feed", PollResult(events=[record()]), daemon.clock())
    daemon.process()
    again = daemon.processor.incident(inc.id)
    assert_over(again)
    assert queued(daemon, inc.id, before) == []

    # Re-issued with a start after the restoration: off again.
    daemon.store.ingest("feed", PollResult(events=[record("active", T0 + timedelta(minutes=15))]),
                        daemon.clock())
    daemon.process()
    revived = daemon.processor.incident(inc.id)
    assert revived.status == "active" and set(AREAS) <= set(revived.off)


def test_a_record_naming_an_area_never_restored_keeps_the_outage_on(daemon: Daemon) -> None:
    at(daemon, 1)
    daemon.store.ingest("feed", PollResult(events=[record()]), daemon.clock())
    daemon.process()
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = daemon.processor.incident(row["id"])
    inc = daemon.processor.operator_restore(inc.id, "ops", ",".join(AREAS[:2]), None,
                                            now=at(daemon, 11))
    assert inc.status == "active" and "T-LH02-003" in inc.off
    assert inc.stage == "partially_restored"


def test_a_restoration_undone_after_it_is_an_outage_again(daemon: Daemon) -> None:
    """The command centre's reopen of an area its own restoration ended the incident on:
    the area is off again in the same incident, and only it (nothing infers the others)."""
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    at(daemon, 1)
    inc = steps.open("ops", feeder="LH02", transformers=",".join(AREAS))
    inc, _ = restore_all(daemon, inc, 11)
    assert_over(inc)
    at(daemon, 15)
    inc = steps.reopen(inc.id, "T-LH02-003", "ops", note="仍停电", again=False)
    assert inc.status == "active" and inc.off == ("T-LH02-003",)


def test_the_record_revised_to_name_another_area_is_an_outage_again(daemon: Daemon) -> None:
    at(daemon, 1)
    daemon.store.ingest("feed", PollResult(events=[record()]), daemon.clock())
    daemon.process()
    (row,) = daemon.store.load_incidents(open_only=False)
    inc, _ = restore_all(daemon, daemon.processor.incident(row["id"]), 11)
    assert_over(inc)
    at(daemon, 20)
    daemon.store.ingest("feed", PollResult(events=[record("active", T0, *AREAS, "T-LH02-004")]),
                        daemon.clock())
    daemon.process()
    inc = daemon.processor.incident(inc.id)
    assert inc.status == "active" and "T-LH02-004" in inc.off
    assert not set(AREAS) & set(inc.off)  # the restored areas stay back


def test_an_area_inferred_below_a_fuse_not_all_back_stays_off_and_nothing_new_is_inferred(
        daemon: Daemon) -> None:
    """The record names 卢官庄村1号 and 马堤村2号 (T-LH02-001, -003); the localiser infers
    T-LH02-002 below FU-LH02-01. The command centre restores the two areas named: the fuse's
    own section is not all back, so T-LH02-002 stays off as it was — and FU-LH02-02's other
    areas, which nothing ever put off, are not taken on."""
    at(daemon, 1)
    named = ("T-LH02-001", "T-LH02-003")
    daemon.store.ingest("feed", PollResult(events=[record("active", T0, *named)]),
                        daemon.clock())
    daemon.process()
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = daemon.processor.incident(row["id"])
    assert inc.scope.get("T-LH02-002") == "inferred"
    inc = daemon.processor.operator_restore(inc.id, "ops", ",".join(named), None,
                                            now=at(daemon, 11))
    assert (inc.status, inc.off) == ("active", ("T-LH02-002",))
    assert inc.estimate.devices == ("FU-LH02-01",)
    assert set(inc.scope) == {*named, "T-LH02-002"}
