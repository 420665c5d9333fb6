"""The command centre confirms an area the daemon only inferred: it becomes a reported area
(it stays off until a restoration says it is back, whatever the estimate does next), and the
step is in the incident's log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
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
