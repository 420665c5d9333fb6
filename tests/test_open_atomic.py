"""An operator's report and its log line commit together (``incidents open``, ``scope --add``,
``reopen``): the incident, its notices and its ``opened`` (``scope_added``,
``restoration_undone``) step land in one transaction, so a database failure leaves either all
of them or none — never an incident nobody opened, nor areas added by nobody. On SQLite and
PostgreSQL; the failure is the database refusing the log line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.lifecycle import LifecycleError
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed
from tests.test_stand_down import one_incident


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def failing_log(monkeypatch: pytest.MonkeyPatch, d: Daemon, stage: str) -> None:
    """The database refuses the log line of ``stage`` (a full disk, a lost connection)."""
    log_in = d.store.log_in

    def refusing(conn: Any, incident_id: str, at: Any, step: str, *args: Any) -> None:
        if step == stage:
            raise OperationalError("INSERT INTO incident_log", {}, OSError("disk full"))
        log_in(conn, incident_id, at, step, *args)

    monkeypatch.setattr(d.store, "log_in", refusing)


def operator_records(d: Daemon) -> list[Any]:
    return [s for s in d.store.events() if s.event.source == "operator"]


def test_an_incident_opened_from_a_call_lands_with_its_notices_and_its_step(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    inc = steps.open("ops", feeder=None, transformers="T4", caller="王村长 13800001111",
                     note="全村停电")
    (opened,) = [e for e in daemon.store.incident_log(inc.id) if e["stage"] == "opened"]
    assert (opened["actor"], opened["details"]) == ("ops", {"transformers": ["T4"],
                                                            "feeder": None})
    assert opened["note"].startswith("来电：王村长 138") and "13800001111" not in opened["note"]
    assert opened["at"] == inc.created_at
    assert {m.payload.get("village") for m in daemon.store.messages(incident_id=inc.id)
            if m.purpose == "outage"} == {"V2", "V3"}
    (record,) = operator_records(daemon)
    assert record.incident_id == inc.id  # folded in the same transaction: nothing waits
    assert daemon.store.unprocessed_events() == []


def test_a_call_whose_step_cannot_be_logged_opens_nothing(
        daemon: Daemon, steps: CommandSteps, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    failing_log(monkeypatch, daemon, "opened")
    with pytest.raises(OperationalError, match="disk full"):
        steps.open("ops", feeder="F1", transformers="T4", caller="王村长", note="全村停电")
    assert daemon.store.load_incidents(open_only=False) == []
    assert daemon.store.messages() == [] and daemon.store.incident_log() == []
    assert operator_records(daemon) == []  # not left for the daemon to fold without a step
    daemon.process()
    assert daemon.store.load_incidents(open_only=False) == []
    monkeypatch.undo()
    # Taken again, it opens under the number the failed one never used.
    inc = steps.open("ops", feeder="F1", transformers="T4", caller="王村长", note="全村停电")
    assert inc.id == "INC-20260301-0001"
    assert [e["stage"] for e in daemon.store.incident_log(inc.id)].count("opened") == 1


def test_areas_added_whose_step_cannot_be_logged_are_not_added(
        daemon: Daemon, steps: CommandSteps, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    was = daemon.processor.incident(iid)
    queued = len(daemon.store.messages())
    failing_log(monkeypatch, daemon, "scope_added")
    with pytest.raises(OperationalError):
        steps.add(iid, "T1", "ops", "村委会来电")
    now = daemon.processor.incident(iid)
    assert (now.revision, now.estimate.transformers) == (was.revision, was.estimate.transformers)
    assert len(daemon.store.messages()) == queued and operator_records(daemon) == []
    monkeypatch.undo()
    added = steps.add(iid, "T1", "ops", "村委会来电")
    assert "T1" in added.off and added.mark("T1") == "reported"
    (entry,) = [e for e in daemon.store.incident_log(iid) if e["stage"] == "scope_added"]
    assert entry["details"] == {"transformers": ["T1"]}


def test_a_restoration_undone_whose_step_cannot_be_logged_stays_restored(
        daemon: Daemon, steps: CommandSteps, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T2"))
    feed(daemon, 30, ev("N1", "T1", "T2", status="restored", end=T0 + timedelta(minutes=30)))
    iid = one_incident_any(daemon)
    queued = len(daemon.store.messages())
    daemon.clock.now = T0 + timedelta(minutes=40)  # type: ignore[attr-defined]
    failing_log(monkeypatch, daemon, "restoration_undone")
    with pytest.raises(OperationalError):
        steps.reopen(iid, "T1", "ops", "仍停电")
    assert daemon.processor.incident(iid).status == "restored"
    assert len(daemon.store.messages()) == queued and operator_records(daemon) == []
    monkeypatch.undo()
    assert steps.reopen(iid, "T1", "ops", "仍停电").off == ("T1",)


def test_the_same_step_at_the_same_moment_is_refused_as_recorded_already(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    """The step finds its record by its own key, never as the source's newest row (another
    writer's, committed meanwhile, would have been taken for it); the same record stored
    again (the same call at the same moment) is refused as recorded, nothing changed."""
    first = steps.open("ops", feeder=None, transformers="T4")
    (record,) = operator_records(daemon)
    with pytest.raises(LifecycleError, match=r"this report is recorded already \(call:"):
        steps.open("ops", feeder=None, transformers="T4")
    assert [r["id"] for r in daemon.store.load_incidents(open_only=False)] == [first.id]
    assert operator_records(daemon) == [record]
    daemon.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    second = steps.open("ops", feeder=None, transformers="T6")
    assert second.id != first.id and len(operator_records(daemon)) == 2


def one_incident_any(d: Daemon) -> str:
    (row,) = d.store.load_incidents(open_only=False)
    return str(row["id"])
