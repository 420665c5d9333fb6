"""The command centre's summary states the incident's expected restoration; when a village
still off has none of its own (its records give no time), "预计09:00恢复" is no promise for it
and the summary says which villages are 待定, as their notices do."""

from __future__ import annotations

from datetime import timedelta

from outage_sentinel.daemon import Daemon
from tests.conftest import T0
from tests.test_record_revisions import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_record_revisions import summaries
from tests.test_shared_areas import ev, feed, incident


def test_a_village_whose_records_give_no_time_is_named_pending(daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("A", "T1", device="FU1", expected_restoration=T0 + timedelta(hours=2)),
         ev("B", "T3", device="FU2"))
    inc = incident(daemon, "fault")
    assert inc.etr is not None and {"T1", "T3"} <= set(inc.off)
    last = summaries(daemon)[-1]
    v2 = daemon.topology.villages["V2"].name
    assert "恢复（" in last and f"{v2}待定）" in last, last
    assert daemon.topology.villages["V1"].name + "待定" not in last


def test_no_pending_villages_when_every_village_has_its_time(daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("A", "T1", "T3", device="R1", expected_restoration=T0 + timedelta(hours=2)))
    assert "待定）" not in summaries(daemon)[-1]
