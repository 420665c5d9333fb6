"""``incidents reopen --again``: whether supply was lost again after a real return (another
spell off) or the restoration recorded was a mistake (the outage carried on) is the
operator's explicit word, kept in the ``restoration_undone`` step's details, and the reports
read it before the note's words (which read "customer called again" as a re-trip). A reopen
without the flag undoes the restoration. Steps stored before the flag existed are still read
by their words.

The CLI runs as a subprocess against the demo county's SQLite database (an outage system
record of 南谢庄村 off two hours before, recorded back by the command centre and reopened),
the board as served in-process, and the report is built on the same real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import load_config
from outage_sentinel.reports import Report, build_report
from outage_sentinel.store import Store
from tests.e2e_helpers import wait_for
from tests.shared_setup import h as h  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from tests.test_board_app import PASSWORD, post, signed_in
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)
from tests.test_cancel_false_alarm_flag import AREAS, TOPOLOGY, cli, county_incident
from tests.test_close_device_covers import restored_on_the_board
from tests.test_lifecycle import T0, TZ, Harness, ev


def spells_of(report: Report, area: str) -> int:
    a = report.areas
    return int(((a["transformer"] == area) & (a["mark"] == "confirmed")).sum())


def county_report(cfg: Path) -> tuple[Report, Store]:
    """The report an hour on: a spell still open runs to then."""
    store = Store(load_config(cfg).database_url())
    now = datetime.now(UTC) + timedelta(hours=1)
    return build_report(store, TOPOLOGY, now - timedelta(days=1), now, ZoneInfo("Asia/Shanghai"),
                        now), store


def undone_step(store: Store, iid: str) -> dict[str, Any]:
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "restoration_undone"]
    return dict(step["details"] or {})


def restored_then_reopened(tmp: Path, *reopen: str) -> tuple[Path, str]:
    cfg, iid = county_incident(tmp)
    r = cli(cfg, "incidents", "restore", iid)
    assert r.returncode == 0, r.stderr
    r = cli(cfg, "incidents", "reopen", iid, *reopen)
    assert r.returncode == 0, r.stderr
    return cfg, iid


def test_a_note_saying_again_does_not_make_a_mistaken_restoration_a_new_spell(
        tmp_path: Path) -> None:
    """"customer called again, never came back": read by its words (again), the restoration
    was real and 南谢庄村 was off twice. Without --again the restoration was the mistake:
    one spell, off all along."""
    cfg, iid = restored_then_reopened(tmp_path, "--note", "customer called again, never "
                                                          "came back")
    report, store = county_report(cfg)
    try:
        assert [spells_of(report, t) for t in AREAS] == [1, 1]
        hours = report.areas.set_index("transformer").loc[AREAS[0], "hours"]
        assert hours == pytest.approx(3.0, rel=0.02)  # two hours before, one after: no gap
        step = undone_step(store, iid)
        assert step["again"] is False and set(AREAS) <= set(step["transformers"])
    finally:
        store.close()


def test_again_flag_starts_another_spell_whatever_the_note_says(tmp_path: Path) -> None:
    """``--again`` (the note "误恢复" says otherwise): supply was lost again, another spell."""
    cfg, iid = restored_then_reopened(tmp_path, "--again", "--note", "误恢复")
    report, store = county_report(cfg)
    try:
        step = undone_step(store, iid)
        assert step["again"] is True and set(AREAS) <= set(step["transformers"])
        assert [spells_of(report, t) for t in AREAS] == [2, 2]
    finally:
        store.close()


def test_a_reopen_stored_without_the_flag_is_read_by_its_words(h: Harness) -> None:  # noqa: F811
    """History written before the flag: its ``restoration_undone`` step has no ``again``; the
    note's words still decide (又跳: two spells)."""
    steps = CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now)
    h.feed(ev("A", "T1", device="FU1"))
    iid = h.only_incident()
    h.at(30)
    h.daemon.processor.operator_restore(iid, "operator:crew", "T1", "2026-11-23 10:30", "",
                                        now=h.now)
    h.at(40)
    steps.reopen(iid, "T1", "operator:li", "10:40又跳")
    assert "again" not in undone_step(h.daemon.store, iid)
    h.at(60)
    h.feed(ev("A", "T1", device="FU1", status="restored"))
    h.at(300)
    r = build_report(h.daemon.store, h.topology, T0 - timedelta(hours=2),
                     T0 + timedelta(hours=24), TZ, h.now)
    a = r.areas[(r.areas["transformer"] == "T1") & (r.areas["mark"] == "confirmed")]
    assert float(a["hours"].sum()) == pytest.approx(0.5 + 20 / 60)


def test_the_board_api_takes_the_again_flag(board_env: Any, demo: Any) -> None:  # noqa: F811
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops", PASSWORD)
    iid = restored_on_the_board(client, csrf, clock)
    r = post(client, csrf, f"/api/incidents/{iid}/reopen",
             {"transformers": [AREAS[0]], "again": 1})
    assert r.status_code == 400 and "again" in r.text
    r = post(client, csrf, f"/api/incidents/{iid}/reopen",
             {"transformers": [AREAS[0]], "again": True})
    assert r.status_code == 200, r.text
    assert undone_step(store, iid) == {"transformers": [AREAS[0]], "again": True}


@pytest.mark.slow
def test_the_board_reopens_as_lost_again_only_when_ticked(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    """The reopen row offers "恢复后再次失电", unticked: ticked, the step says supply was
    lost again; left unticked, that the restoration was a mistake."""
    url, store, holder = served
    actions = holder["board"].actions
    first = actions.open_incident({"transformers": "T-CG01-001"}, "board:ops")
    second = actions.open_incident({"transformers": "T-LH01-014"}, "board:ops")
    assert first != second
    page = sign_in(browser, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for iid, tick in ((first, True), (second, False)):
        actions.incident_step(iid, "restore", {}, "board:ops")
        page.goto(f"{url}/#/incident/{iid}")
        page.wait_for_selector("#reopen-again", timeout=10000)
        assert not page.is_checked("#reopen-again")
        page.check("#reopen-row input[name=back]")
        if tick:
            page.check("#reopen-again")
        page.click("#act-reopen")
        assert wait_for(lambda i=iid: actions.core.processor.incident(i).status == "active", 10)
    assert undone_step(store, first)["again"] is True
    assert undone_step(store, second)["again"] is False
    assert errors == []
    page.context.close()
