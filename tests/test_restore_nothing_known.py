"""A call's incident placed on a line with no area known off cannot be "restored": the step
said it succeeded (exit 0, the board's 200, an audit entry marked ok) while nothing changed —
the incident stayed active, kept its crew and its whole-line priority, and ``close`` then
said "restore it first". It is refused now, saying what to do (the audit's finding 3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.lifecycle import LifecycleError
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)


def test_restoring_a_line_incident_with_no_area_known_off_is_refused_saying_what_to_do(
        daemon: Daemon) -> None:  # noqa: F811
    steps = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)
    inc = steps.open("ops", feeder="F1", transformers=None, caller="王村长 13800001111")
    assert inc.status == "active" and not inc.off
    log_before = daemon.store.incident_log(inc.id)
    with pytest.raises(LifecycleError, match=rf"no transformer area known off.*scope {inc.id} "
                                             r"--add"):
        daemon.processor.operator_restore(inc.id, "ops", None, None, "来电确认已来电",
                                          now=daemon.clock())
    assert daemon.store.incident_log(inc.id) == log_before
    # Named, the areas can be brought back, and the incident ends.
    steps.add(inc.id, "T4", "ops", "来电村T4停电")
    daemon.clock.now += timedelta(minutes=30)  # type: ignore[attr-defined]
    after = daemon.processor.operator_restore(inc.id, "ops", None, None, "", now=daemon.clock())
    assert after.status == "restored"
