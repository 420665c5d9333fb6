"""`incidents show` names an area a record still open stopped naming as what it is — dropped
from the record (perhaps switched to another supply), its power not confirmed — not as an
area whose records ended."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from outage_sentinel.daemon import Daemon
from outage_sentinel.incident_view import incident_text
from tests.test_record_revisions import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_record_revisions import record
from tests.test_shared_areas import ev, feed, incident


def test_an_area_dropped_from_an_open_record_is_shown_as_dropped(daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("P7", "T1", "T2", "T3", **record()))
    feed(daemon, 26, ev("P7", "T1", "T2", **record()))
    inc = incident(daemon, "fault")
    (row,) = [r for r in daemon.store.load_incidents(open_only=False) if r["id"] == inc.id]
    text = incident_text(row, [], [], daemon.topology, ZoneInfo("Asia/Shanghai"))
    assert "恢复待确认（已移出停电记录，疑似转供，无来电证据） (1 个台区): 台区T3" in text, text
    assert "记录已结束" not in text
