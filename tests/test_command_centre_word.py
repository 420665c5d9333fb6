"""The command centre's word on an incident's areas reaches what the daemon infers: an area it
confirms becomes a reported area (it stays off until a restoration says it is back, whatever
the estimate does next), and a dead report it overruled is no longer evidence for the
localiser, nor in the close-out history the localiser learns from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.fitting import history_case
from outage_sentinel.lifecycle import LifecycleError
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


@pytest.fixture
def steps(daemon: Daemon) -> Iterator[CommandSteps]:  # noqa: F811
    yield CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def test_an_inferred_area_confirmed_by_the_command_centre_is_reported(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", device="FU1"))
    (row,) = daemon.store.load_incidents(open_only=False)
    iid = str(row["id"])
    inc = daemon.processor.incident(iid)
    inferred = [t for t, mark in inc.scope.items() if mark == "inferred"]
    assert inferred, inc.scope
    area = inferred[0]
    daemon.clock.now = T0 + timedelta(minutes=5)  # type: ignore[attr-defined]
    after = steps.add(iid, area, "ops", "台区经理确认停电")
    assert after.scope[area] == "reported"
    assert area in after.off
    log = [r["stage"] for r in daemon.store.incident_log(iid)]
    assert log[-1] == "scope_added"
    with pytest.raises(LifecycleError, match="already confirmed off"):
        steps.add(iid, area, "ops", "again")


def test_a_dead_report_the_command_centre_overruled_is_no_longer_evidence(
        daemon: Daemon, steps: CommandSteps) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T1", "T2"))  # both areas of FU1 reported off
    (row,) = daemon.store.load_incidents(open_only=False)
    iid = str(row["id"])
    before = daemon.processor.incident(iid).estimate
    assert before.devices == ("FU1",) and before.probability is not None
    daemon.clock.now = T0 + timedelta(minutes=5)  # type: ignore[attr-defined]
    steps.remove(iid, "T2", "ops", "台区经理确认该台区有电")
    feed(daemon, 10, ev("M1", "T1", signal="dead", source="ami"))  # the next round
    after = daemon.processor.incident(iid)
    # FU1 is now borne out by one area of its two, not two: the localiser says so
    assert after.estimate.devices == ("FU1",)
    assert after.estimate.probability is not None
    assert after.estimate.probability < before.probability - 0.1
    assert "T2" not in after.off
    case = history_case(iid, daemon.store.load_incidents(open_only=False)[0]["state"], ["FU1"])
    assert case["dead"] == ["T1"]
