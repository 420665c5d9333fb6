"""A bad record a feed keeps listing is kept once, with its repeats: ``quarantine list`` and
the board's overview say it is still coming and when last, not only when it first came."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from outage_sentinel.config import load_config
from outage_sentinel.events import PollResult, Quarantined
from outage_sentinel.store import Store
from tests.e2e_helpers import make_config
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_app import signed_in
from tests.test_time_fixes_a import cli

FIRST = datetime(2026, 12, 7, 1, 15, tzinfo=UTC)  # 09:15 in Beijing


def test_quarantine_list_says_a_record_keeps_coming(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    (tmp_path / "state").mkdir()
    store = Store(load_config(cfg).database_url())
    store.migrate()
    try:
        bad = Quarantined("feed", "record 7: startTime: bad", "{\"startTime\": \"x\"}")
        for minutes in (0, 1, 2, 360):
            store.ingest("feed", PollResult(quarantined=[bad]),
                         FIRST + timedelta(minutes=minutes))
        (row,) = store.quarantined()
        assert row["repeats"] == 3
    finally:
        store.close()
    listed = cli("--config", str(cfg), "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert "2026-12-07 09:15:00+08:00" in listed.stdout
    assert "(again 3 times, last 2026-12-07 15:15:00+08:00)" in listed.stdout, listed.stdout


def test_the_board_overview_says_a_record_keeps_coming(board_env: Any) -> None:  # noqa: F811
    app, store, clock = board_env
    bad = Quarantined("feed95598", "record 3: start (startTime): expected a time", {"x": 1})
    store.quarantine(bad, clock())
    viewer, _ = signed_in(app, "watch")
    (q,) = viewer.get("/api/overview").json()["quarantine"]["latest"]
    assert q["repeats"] == 0 and q["last_seen"] is None
    store.quarantine(bad, clock() + timedelta(minutes=5))
    (q,) = viewer.get("/api/overview").json()["quarantine"]["latest"]
    assert q["repeats"] == 1 and q["last_seen"] not in (None, q["at"])
