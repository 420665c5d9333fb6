"""An AMI source flagged as read in the wrong zone is shown on the command-centre board.

The daemon logs ``ami_clock_offset`` and sets a gauge, neither of which the command centre's
board reads: an operator watching the board saw the source "ok" while its outage times (in
village notices too) were eight hours off. Each flagged source now has a record in the store
(kv ``clock_offset:<source>``: :func:`clock_offset.offset_records`), and the board's source
list shows it with the offset, the zones and the key to set (``…ami.timezone``).

Here the flag is raised by the real core (:class:`ClockOffsets`, as the AMI screen runs it),
its records written to and read back from a real store, and the overview built from them
(:func:`board.views.overview`, the pure function behind ``/api/overview``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board.views import Viewer, overview, source_health
from outage_sentinel.clock_offset import CLOCK_OFFSET_PREFIX, ClockOffsets, offset_records
from outage_sentinel.config import parse_config
from outage_sentinel.store import Store
from tests.test_board_browser import running as running  # noqa: F401  (the fixture)
from tests.test_board_browser import sign_in

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
SOURCE = "ami-files"
VIEWER = Viewer("zh", UTC, phones=False)
CONFIG = parse_config({
    "timezone": "Asia/Shanghai",
    "sources": [{"name": "feed", "type": "replay", "scenario": "x.jsonl"},
                {"name": SOURCE, "type": "file_drop", "directory": "/tmp/unused",
                 "format": "jsonl"}],
    "channels": {"file": {"type": "file", "path": "/tmp/unused.jsonl"}}})


def stream(offsets: ClockOffsets, offset: timedelta, start: datetime, n: int = 30) -> None:
    """A report a minute for ``n`` minutes, each timed ``offset`` from its arrival."""
    for k in range(n):
        arrival = start + timedelta(minutes=k)
        offsets.observe(SOURCE, arrival + offset, arrival)


def keep(store: Store, offsets: ClockOffsets, now: datetime) -> None:
    """Write the records of the flags ``offsets`` raises or clears now, as the screen keeps
    them with its state (one transaction)."""
    writes = offset_records(offsets.review(now), CONFIG.sources, CONFIG.timezone, now)
    with store.transaction() as conn:
        for key, record in writes.items():
            if record is None:
                store.kv_delete_in(conn, key)
            else:
                store.kv_set_in(conn, key, record, now)


def board_sources(store: Store, now: datetime) -> dict[str, dict[str, Any]]:
    data = overview([], [], now, storm=None, health=store.kv_prefixed("health:"),
                    outbox={}, viewer=VIEWER,
                    clock_offsets=store.kv_prefixed(CLOCK_OFFSET_PREFIX))
    return {s["name"]: s for s in data["sources"]}


def test_a_flagged_source_shows_its_offset_and_the_key_to_set(store: Store) -> None:
    store.kv_set(f"health:{SOURCE}", {"ok": True, "last_ok": NOW.isoformat(), "error": ""}, NOW)
    store.kv_set("health:feed", {"ok": True, "last_ok": NOW.isoformat(), "error": ""}, NOW)
    offsets = ClockOffsets()
    stream(offsets, timedelta(hours=-8, seconds=-20), NOW)  # stamped in UTC, read in +8
    flagged_at = NOW + timedelta(minutes=30)
    keep(store, offsets, flagged_at)
    shown = board_sources(store, flagged_at)
    assert shown[SOURCE]["ok"] is True  # polling is fine: the times are not
    offset = shown[SOURCE]["clock_offset"]
    assert offset is not None, shown[SOURCE]
    assert offset["hours"] == -8.0
    assert offset["config_key"] == f"sources ({SOURCE}).ami.timezone"
    assert (offset["read_in"], offset["stamped_in"]) == ("Asia/Shanghai", "UTC")
    assert offset["reports"] == 30 and offset["since"] == flagged_at.isoformat()
    assert shown["feed"]["clock_offset"] is None

    # The times read right again (the zone set, the daemon restarted): the flag clears,
    # and with it the board's line.
    stream(offsets, timedelta(seconds=-20), NOW + timedelta(hours=7))
    keep(store, offsets, NOW + timedelta(hours=7, minutes=30))
    assert store.kv_prefixed(CLOCK_OFFSET_PREFIX) == {}
    assert board_sources(store, NOW + timedelta(hours=8))[SOURCE]["clock_offset"] is None


def test_a_flag_is_shown_even_for_a_source_with_no_health_record(store: Store) -> None:
    offsets = ClockOffsets()
    stream(offsets, timedelta(hours=-8), NOW)
    keep(store, offsets, NOW + timedelta(minutes=30))
    (only,) = board_sources(store, NOW + timedelta(minutes=30)).values()
    assert only["name"] == SOURCE and only["clock_offset"]["hours"] == -8.0


def test_a_record_the_board_cannot_read_shows_no_offset_and_no_error() -> None:
    for record in (None, "garbage", {}, {"offset_hours": "x"}, {"offset_hours": float("nan")},
                   {"offset_hours": 0}):
        assert source_health(SOURCE, {"ok": True}, VIEWER, record)["clock_offset"] is None
    bare = source_health(SOURCE, {"ok": True}, VIEWER, {"offset_hours": 5.5})["clock_offset"]
    assert bare is not None and bare["config_key"] == "ami.timezone" and bare["hours"] == 5.5


@pytest.mark.slow
def test_the_page_says_the_offset_and_the_key_beside_the_source(
        browser: Any, running: tuple[Path, str]) -> None:
    """The overview page (a real Chromium on the demo daemon) writes the flag under its
    source: the overview's JSON is given a flagged source as the board builds one."""
    _, url = running
    offsets = ClockOffsets()
    stream(offsets, timedelta(hours=-8), NOW)
    (record,) = offset_records(offsets.review(NOW + timedelta(minutes=30)), CONFIG.sources,
                               CONFIG.timezone, NOW + timedelta(minutes=30)).values()
    flagged = source_health(SOURCE, {"ok": True, "last_ok": NOW.isoformat()}, VIEWER, record)

    def with_flag(route: Any) -> None:
        data = route.fetch().json()
        data["sources"] = [*data["sources"], flagged]
        route.fulfill(json=data)

    page = sign_in(browser, url, "watch")
    page.route("**/api/overview*", with_flag)
    page.reload()
    note = page.wait_for_selector(f'li[data-source="{SOURCE}"] .clock-offset', timeout=15000)
    text = note.text_content() or ""
    assert "早8小时" in text and f"sources ({SOURCE}).ami.timezone" in text, text
    assert "UTC" in text and "Asia/Shanghai" in text, text
    page.context.close()
    assert page.errors == []
