"""A restoration recorded by mistake (or supply lost again) is undone by the command centre:
the areas are off again in the same incident, their villages hear so in words that say they
were told otherwise, a later report of the same restoration does not undo the correction, and
the next real restoration tells them again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.lifecycle import LifecycleError
from tests.conftest import T0
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_app import open_incident, post, signed_in
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


def village_notices(d: Daemon, iid: str, village: str) -> list[tuple[str, str]]:
    """(purpose, body) of ``iid``'s notices to the village's first recipient, in order."""
    mine = [m for m in d.store.messages(incident_id=iid)
            if m.recipient.startswith(f"village:{village}:") and m.purpose != "care"]
    return [(m.purpose, m.body) for m in mine if m.recipient == mine[0].recipient]


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def restored_incident(d: Daemon, sent: bool = True) -> str:
    """An incident of T1, T2 whose record ended at T0 + 30 min; its notices delivered
    (``sent``) or left waiting in the outbox."""
    feed(d, 1, ev("N1", "T1", "T2"))
    feed(d, 30, ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=30)))
    while sent and d.deliverer.run_once(d.clock()):
        pass
    (row,) = d.store.load_incidents(open_only=False)
    assert row["status"] == "restored"
    return str(row["id"])


def test_an_area_wrongly_recorded_back_is_off_again_and_its_village_hears_it(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = restored_incident(daemon)
    assert [p for p, _ in village_notices(daemon, iid, "V1")] == ["outage", "restored"]
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    inc = steps.reopen(iid, "T1", "ops", "村委会来电：仍停电")
    assert (inc.status, inc.off, list(inc.restored)) == ("active", ("T1",), ["T2"])
    purpose, body = village_notices(daemon, iid, "V1")[-1]
    assert purpose == "outage" and "此前通知本村已恢复送电" in body
    log = [e for e in daemon.store.incident_log(iid) if e["stage"] == "restoration_undone"]
    assert log[0]["actor"] == "ops" and log[0]["details"] == {"transformers": ["T1"]}
    # The outage system lists its record as restored again: the correction stands.
    feed(daemon, 50, ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=30)))
    assert daemon.processor.incident(iid).off == ("T1",)
    # Power really comes back: the village hears it, once more.
    daemon.processor.operator_restore(iid, "ops", "T1", None, now=T0 + timedelta(minutes=70))
    assert daemon.processor.incident(iid).status == "restored"
    assert [p for p, _ in village_notices(daemon, iid, "V1")] == [
        "outage", "restored", "outage", "restored"]


def test_a_village_whose_power_back_never_went_out_is_not_told_of_a_correction(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """The 恢复送电 still waiting in the outbox (a channel down, quiet hours) when the
    restoration is undone: it is taken back, and the outage notice says no "更正：此前通知本村
    已恢复送电" of a word the village never had."""
    iid = restored_incident(daemon, sent=False)
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    steps.reopen(iid, "T1", "ops", "村委会来电：仍停电")
    purpose, body = village_notices(daemon, iid, "V1")[-1]
    assert purpose == "outage" and "此前通知" not in body and "更正" not in body
    back = {m.status for m in daemon.store.messages(incident_id=iid)
            if m.purpose == "restored" and m.recipient.startswith("village:V1:")}
    assert back == {"withdrawn"}


def test_reopening_every_area_by_default_and_the_refusals(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    iid = restored_incident(daemon)
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    with pytest.raises(LifecycleError, match="T4: not recorded back"):
        steps.reopen(iid, "T4", "ops")
    inc = steps.reopen(iid, None, "ops")
    assert sorted(inc.off) == ["T1", "T2"] and inc.status == "active"
    with pytest.raises(LifecycleError, match="no area: not recorded back"):
        steps.reopen(iid, None, "ops")  # nothing is recorded back now
    daemon.processor.operator_restore(iid, "ops", None, None, now=T0 + timedelta(minutes=60))
    daemon.lifecycle.close(iid, "ops", "树线矛盾")
    with pytest.raises(LifecycleError, match="closed; open a new incident"):
        steps.reopen(iid, None, "ops")


def test_the_board_undoes_a_restoration_of_the_ticked_areas(
        board_env: Any, demo: Any) -> None:  # noqa: F811
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    clock.now += timedelta(minutes=5)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    detail = client.get(f"/api/incidents/{iid}").json()
    assert detail["status"] == "restored"
    r = post(client, csrf, f"/api/incidents/{iid}/reopen", {"transformers": []})
    assert r.status_code == 400 and "none ticked" in r.json()["error"]
    first = detail["areas"][0]["id"]
    clock.now += timedelta(minutes=5)
    r = post(client, csrf, f"/api/incidents/{iid}/reopen", {"transformers": [first],
                                                            "note": "联络人：仍停电"})
    assert r.status_code == 200, r.text
    after = client.get(f"/api/incidents/{iid}").json()
    assert after["status"] == "active"
    assert [a["id"] for a in after["areas"] if not a["restored"]] == [first]
    assert ("reopen", True) in [(a["action"], a["ok"]) for a in store.audit_trail()
                                if a["kind"] == "action"]
    assert any(e["stage"] == "restoration_undone" for e in after["timeline"])


def test_off_again_drops_the_command_centres_time_for_the_outage_that_ended(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T2"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    daemon.clock.now = T0 + timedelta(minutes=10)  # type: ignore[attr-defined]
    steps.etr(iid, "2026-03-01 10:00", "ops")  # local (UTC+8)
    feed(daemon, 90, ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=90)))
    feed(daemon, 180, ev("N1", "T1", "T2", start=T0 + timedelta(minutes=175)))
    inc = daemon.processor.incident(iid)
    assert inc.status == "active" and inc.etr is None and inc.etr_set is None
    purpose, body = village_notices(daemon, iid, "V1")[-1]
    assert purpose == "outage" and "恢复时间待定" in body and "10:00" not in body


def test_a_restoration_time_before_the_outage_began_is_refused(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 60, ev("N1", "T1", "T2", start=T0 + timedelta(minutes=60)))
    (row,) = daemon.store.load_incidents(open_only=True)
    with pytest.raises(LifecycleError, match="before the outage began"):
        daemon.processor.operator_restore(str(row["id"]), "ops", None, "2026-03-01 07:30",
                                          now=T0 + timedelta(minutes=70))
    assert daemon.processor.incident(str(row["id"])).status == "active"


def test_an_area_taken_out_comes_back_on_news_not_on_the_record_overruled(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T3"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    while daemon.deliverer.run_once(daemon.clock()):  # 刘庄村 told: a correction is owed
        pass
    daemon.clock.now = T0 + timedelta(minutes=5)  # type: ignore[attr-defined]
    steps.remove(iid, "T3", "ops", "刘庄村未停电")
    assert "T3" not in daemon.processor.incident(iid).estimate.transformers
    # The record the command centre overruled, re-stated with a new time: T3 stays out.
    feed(daemon, 10, ev("N1", "T1", "T3", expected_restoration=T0 + timedelta(hours=3)))
    assert "T3" not in daemon.processor.incident(iid).estimate.transformers
    # Another record reports T3 off: that is news, and 刘庄村 hears of the outage again.
    feed(daemon, 20, ev("N2", "T3", start=T0 + timedelta(minutes=18)))
    inc = daemon.processor.incident(iid)
    assert "T3" in inc.off and "T3" not in inc.excluded
    assert [p for p, _ in village_notices(daemon, iid, "V2")] == [
        "outage", "corrected", "outage"]


def test_a_reopened_fault_gets_a_crew_again_with_a_deadline_from_now(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    while daemon.deliverer.run_once(daemon.clock()):
        pass
    feed(daemon, 30, ev("N1", "T4", status="restored", end=T0 + timedelta(minutes=30)))
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    steps.reopen(iid, None, "ops", "仍停电")
    dispatches = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"]
    assert len(dispatches) == 2 and dispatches[1].revision > dispatches[0].revision
    assert daemon.store.get_incident(iid)["crew_id"] == "CR1"  # type: ignore[index]
    log = daemon.store.incident_log(iid)
    again = [e for e in log if e["stage"] == "off_again"]
    assert again and again[0]["details"] == {"crew": "CR1"}
    deadline = [e for e in log if e["stage"] == "dispatched"][-1]["details"]["deadline"]
    assert deadline > (T0 + timedelta(minutes=40)).isoformat()
    assert not [m for m in daemon.store.messages(incident_id=iid)
                if m.purpose.startswith("escalation")]


@pytest.mark.parametrize("how", ["same record", "new record"])
def test_a_restoration_after_the_reopen_ends_it_and_the_village_hears(
        daemon: Daemon, steps: CommandSteps, how: str) -> None:  # noqa: F811
    iid = restored_incident(daemon)
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    steps.reopen(iid, "T1", "ops")
    if how == "same record":  # the outage system lists it again, then restores it
        feed(daemon, 45, ev("N1", "T1", "T2", start=T0))
        feed(daemon, 90, ev("N1", "T1", "T2", status="restored",
                            end=T0 + timedelta(minutes=90)))
    else:
        feed(daemon, 45, ev("N5", "T1", start=T0 + timedelta(minutes=44)))
        feed(daemon, 90, ev("N5", "T1", start=T0 + timedelta(minutes=44), status="restored",
                            end=T0 + timedelta(minutes=90)))
    inc = daemon.processor.incident(iid)
    assert inc.status == "restored", (inc.off, inc.members.keys())
    assert [p for p, _ in village_notices(daemon, iid, "V1")][-2:] == ["outage", "restored"]
