"""A false alarm's summary says it was called off, not that power came back: the command
centre's summary of a cancelled incident read 「…2026-12-07 23:47已恢复」 and, once its areas
were cleared, 「当前停电0个台区0户」 where the summary before said 9 areas (the audit's
walk-through, messages 57 and 58). Through the daemon's real processing and command steps."""

from __future__ import annotations

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.lifecycle import step_outcome
from tests.test_lifecycle import ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import feed


def test_a_cancelled_incidents_summary_says_called_off_never_restored(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(iid, "误报", "li")
    summaries = [m.body for m in daemon.store.messages(incident_id=iid)
                 if m.audience == "command"]
    last = summaries[-1]
    assert last.startswith("【已取消】"), last
    assert "已恢复" not in last and "当前停电" not in last, last
    assert "已取消" in last.split("\n", 2)[2], last


def test_a_steps_outcome_line_names_no_areas_off_once_called_off(
        daemon: Daemon) -> None:  # noqa: F811
    """The CLI's output, the board's answer and the audit's outcome: "cancelled, cancelled,
    2 area(s) off" read as areas still dark after the false alarm was called off."""
    feed(daemon, 1, ev("N1", "T4"))
    (row,) = daemon.store.load_incidents(open_only=True)
    iid = str(row["id"])
    assert step_outcome(daemon.processor.incident(iid)).endswith(" area(s) off")
    inc = CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock).cancel(iid, "误报", "li")
    assert step_outcome(inc) == f"{iid}: cancelled"
