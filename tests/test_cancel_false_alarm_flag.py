"""``incidents cancel --false-alarm``: whether the power was off at all is the operator's
explicit word, kept in the ``cancelled`` step's details, and the reports read it before the
reason's words (which read "重复工单，非误报" as a false alarm, and an English reason in any
way its words happened to fall). A cancel without the flag is one for another reason (a
duplicate work order): the areas a source saw off still count. Steps stored before the flag
existed are still read by their words.

The CLI runs as a subprocess against the demo county's SQLite database (an outage system
record of 南谢庄村 off two hours before), the board as served in-process, and the report is
built on the same real store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import load_config
from outage_sentinel.reports import Report, build_report
from outage_sentinel.store import Store
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT, make_config, wait_for
from tests.shared_setup import h as h  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from tests.test_board_app import PASSWORD, post, signed_in
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)
from tests.test_lifecycle import T0, TZ, Harness, ev

TOPOLOGY = load_bundle(ROOT / "topology")
AREAS = ("T-MJ01-020", "T-MJ01-021")  # 南谢庄村2#, 3#公变: 139 + 82 customers


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=120)


def county_incident(tmp: Path) -> tuple[Path, str]:
    """The demo county's config and the incident of one outage system record naming both
    南谢庄村 areas, begun two hours ago (folded by ``run --once``)."""
    scenario = tmp / "one.jsonl"
    scenario.write_text(json.dumps({
        "at": 0, "event_id": "F1", "kind": "fault", "status": "active", "start_offset": -7200,
        "feeder": "MJ01", "transformers": list(AREAS)}) + "\n", encoding="utf-8")
    cfg = make_config(tmp, sources=[{"name": "feed", "type": "replay",
                                     "scenario": str(scenario), "speed": 1.0}])
    assert cli(cfg, "run", "--once").returncode == 0
    (inc,) = json.loads(cli(cfg, "incidents", "list", "--json").stdout)
    return cfg, str(inc["id"])


def county_report(cfg: Path) -> tuple[Report, Store]:
    store = Store(load_config(cfg).database_url())
    now = datetime.now(UTC)
    tz = ZoneInfo("Asia/Shanghai")
    return build_report(store, TOPOLOGY, now - timedelta(days=1), now + timedelta(hours=1),
                        tz, now), store


def cancel_step(store: Store, iid: str) -> dict[str, Any]:
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "cancelled"]
    return dict(step["details"] or {})


def test_a_duplicate_whose_reason_says_no_false_alarm_still_counts_what_was_seen_off(
        tmp_path: Path) -> None:
    """The reason "重复工单，非误报" holds the word 误报: read by its words, the two hours the
    outage system had 南谢庄村 off counted nothing. Without --false-alarm the cancel is for
    another reason: 221 customers × 2 hours count."""
    cfg, iid = county_incident(tmp_path)
    r = cli(cfg, "incidents", "cancel", iid, "--reason", "重复工单，非误报")
    assert r.returncode == 0, r.stderr
    report, store = county_report(cfg)
    try:
        s = report.summary.iloc[0]
        assert s["customer_hours"] == pytest.approx((139 + 82) * 2, rel=0.02)
        assert report.incidents.loc[0, "interruption"] == "sustained"
        assert cancel_step(store, iid) == {"reason": "重复工单，非误报", "false_alarm": False}
    finally:
        store.close()


def test_false_alarm_flag_counts_nothing_whatever_the_reason_says(tmp_path: Path) -> None:
    """``--false-alarm``: nothing was off, though the reason ("duplicate work order") says
    nothing of it."""
    cfg, iid = county_incident(tmp_path)
    r = cli(cfg, "incidents", "cancel", iid, "--reason", "duplicate work order",
            "--false-alarm")
    assert r.returncode == 0, r.stderr
    report, store = county_report(cfg)
    try:
        assert cancel_step(store, iid) == {"reason": "duplicate work order",
                                           "false_alarm": True}
        assert report.summary.iloc[0]["customer_hours"] == 0
        assert report.incidents.loc[0, "interruption"] == "none"
    finally:
        store.close()


def test_a_cancel_stored_without_the_flag_is_read_by_its_words(h: Harness) -> None:  # noqa: F811
    """History written before the flag: its ``cancelled`` step has no ``false_alarm``; the
    reason's words still decide (误报: nothing counts; 重复工单: the areas seen off count)."""
    steps = CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now)
    h.feed(ev("A", "T4", "T5", feeder="F2"))
    alarm = h.only_incident()
    h.at(30)
    steps.cancel(alarm, "误报：线路未停电", "operator:li")
    assert "false_alarm" not in cancel_step(h.daemon.store, alarm)
    h.feed(ev("B", "T1", feeder="F1"))
    dup = next(str(r["id"]) for r in h.daemon.store.load_incidents(open_only=False)
               if r["id"] != alarm)
    h.at(90)
    steps.cancel(dup, "重复工单", "operator:li")
    h.at(300)
    r = build_report(h.daemon.store, h.topology, T0 - timedelta(hours=2),
                     T0 + timedelta(hours=24), TZ, h.now)
    lines = r.incidents.set_index("id")
    assert lines.loc[alarm, "interruption"] == "none"
    assert lines.loc[dup, "interruption"] == "sustained"


def test_the_board_api_takes_the_false_alarm_flag(board_env: Any, demo: Any) -> None:  # noqa: F811
    app, store, _clock = board_env
    client, csrf = signed_in(app, "ops", PASSWORD)
    iid = str(post(client, csrf, "/api/incidents",
                   {"transformers": list(AREAS)}).json()["result"])
    r = post(client, csrf, f"/api/incidents/{iid}/cancel",
             {"reason": "用户内部开关跳闸", "false_alarm": "yes"})
    assert r.status_code == 400 and "false_alarm" in r.text
    r = post(client, csrf, f"/api/incidents/{iid}/cancel",
             {"reason": "用户内部开关跳闸", "false_alarm": True})
    assert r.status_code == 200, r.text
    assert cancel_step(store, iid) == {"reason": "用户内部开关跳闸", "false_alarm": True}


@pytest.mark.slow
def test_the_board_cancels_as_a_false_alarm_only_when_ticked(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    """The cancel row offers "误报（未停电）", unticked: ticked, the step says no supply was
    lost; left unticked, that it was cancelled for another reason."""
    url, store, holder = served
    actions = holder["board"].actions
    first = actions.open_incident({"transformers": "T-CG01-001"}, "board:ops")
    second = actions.open_incident({"transformers": "T-LH01-014"}, "board:ops")
    assert first != second
    page = sign_in(browser, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for iid, tick in ((first, True), (second, False)):
        page.goto(f"{url}/#/incident/{iid}")
        page.wait_for_selector("#cancel-false-alarm", timeout=10000)
        assert not page.is_checked("#cancel-false-alarm")
        if tick:
            page.check("#cancel-false-alarm")
        page.fill("#actions input[name=reason]", "客户来电核实")
        page.click("#act-cancel")
        assert wait_for(lambda i=iid: actions.core.processor.incident(i).status == "cancelled",
                        10)
    assert cancel_step(store, first)["false_alarm"] is True
    assert cancel_step(store, second)["false_alarm"] is False
    assert errors == []
    page.context.close()
