"""The areas kept off against a record's end while the AMI screen holds their meters'
power-off (not released yet: :func:`held_disputes`, 电表仍报停电（暂未确认）) are shown in every
view the command centre reads, not only ``incidents show``: the ``meters_disagree`` log step
says the hold is unreleased, the command-centre summary names them, the board's incident card
and page list them, and the word to the command centre on a liaison's 已来电 says 暂未确认.

The audit's case (薛店村, fuse FU-CG04-05) through :class:`tests.test_held_dispute_board.County`
(the demo bundle, SQLite, the AMI screener and the processor as the daemon wires them, the
board as ``outage-sentinel board`` builds it); a dispute over a released outage (the meters'
word final) through the field board of :mod:`tests.test_evidence_conflicts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import BoardServer, build
from outage_sentinel.incidents import held_disputes
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.browser import screenshot_dir
from tests.e2e_helpers import free_port, wait_for
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_board_app import PASSWORD, signed_in
from tests.test_board_page import _up
from tests.test_evidence_conflicts import meters_dark, record
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)
from tests.test_field import links_of, sent_all
from tests.test_held_dispute_board import AREAS, NOW, VILLAGE, County, config
from tests.test_held_dispute_board import county as county  # noqa: F401  (the fixture)

HELD_ZH = "电表仍报停电（暂未确认），未按恢复处理："
RELEASED_ZH = "电表仍报停电，未按恢复处理："


def names(topology: Topology, areas: tuple[str, ...] | list[str]) -> list[str]:
    return [topology.nodes[t].name for t in areas]


def last_summary(store: Store, iid: str) -> str:
    return [m for m in store.messages(incident_id=iid)
            if m.audience == "command" and m.purpose == "summary"][-1].body


def test_the_log_step_says_the_meters_power_off_is_held_not_released(county: County) -> None:
    county.held_by_the_screen()
    (step,) = county.log("meters_disagree")
    assert step["details"]["unreleased"] == list(AREAS)
    assert "not released" in step["note"] and "电表仍报停电（暂未确认）" in step["note"]


def test_the_summary_after_the_records_end_lists_the_held_areas(county: County) -> None:
    inc = county.held_by_the_screen()
    assert set(held_disputes(inc)) == set(AREAS)
    body = last_summary(county.store, inc.id)
    (line,) = [x for x in body.splitlines() if x.startswith("电表仍报停电")]
    assert line.startswith(HELD_ZH), line
    assert all(n in line for n in names(county.topology, AREAS[:6]))
    assert RELEASED_ZH not in body


def test_the_summary_in_english_says_not_confirmed_yet(county: County) -> None:
    inc = county.held_by_the_screen()
    life = county.daemon.processor.lifecycle
    renderer = life.planner.renderer
    english = type(renderer)("en")
    life.planner.renderer = english
    try:
        body = life.render_summary(county.incident())
    finally:
        life.planner.renderer = renderer
    assert inc.id in body
    (line,) = [x for x in body.splitlines() if x.startswith("Meters still report off")]
    assert line.startswith("Meters still report off (not confirmed yet), not counted back: ")
    assert names(county.topology, AREAS[:1])[0] in line


def test_a_dispute_over_a_released_outage_is_listed_without_the_hold(field_board: Any) -> None:
    """The meters' outage released (their word final): 电表仍报停电, no 暂未确认."""
    board, store, clock, topology = field_board
    li = next(x for x in topology.liaisons if x.channel == "sms")
    area = topology.village_transformers(li.village)[0]
    start = clock.now - timedelta(minutes=5)
    record(store, board, clock.now, "oms", "R1", area, start, status="active")
    (row,) = store.load_incidents(open_only=True)
    iid = str(row["id"])
    clock.now += timedelta(minutes=1)
    meters_dark(store, board, clock.now, area, start + timedelta(minutes=1))
    sent_all(store, iid, clock.now)
    clock.now += timedelta(minutes=30)
    record(store, board, clock.now, "oms", "R1", area, start, status="restored", end=clock.now)
    body = last_summary(store, iid)
    (line,) = [x for x in body.splitlines() if x.startswith("电表仍报停电")]
    assert line == RELEASED_ZH + topology.nodes[area].name
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "meters_disagree"]
    assert "unreleased" not in step["details"] and step["note"] == ""
    store.add_user("ops", "operator", access.hash_password(PASSWORD), clock.now)
    client, _csrf = signed_in(create_app(board), "ops")
    card = client.get(f"/api/incidents/{iid}").json()
    assert card["disputed"] == [topology.nodes[area].name] and card["disputed_held"] == []


def test_the_boards_incident_detail_lists_the_held_areas(county: County) -> None:
    inc = county.held_by_the_screen()
    county.store.add_user("ops", "operator", access.hash_password(PASSWORD), NOW)
    client, _csrf = signed_in(create_app(county.board), "ops")
    card = client.get(f"/api/incidents/{inc.id}").json()
    assert card["disputed_held"] == names(county.topology, AREAS)
    assert card["disputed"] == []


def test_the_word_to_the_command_centre_on_a_liaisons_power_back_says_not_confirmed(
        county: County) -> None:
    inc = county.held_by_the_screen()
    token = links_of(county.store, inc.id)[VILLAGE]
    county.clock.now = NOW + timedelta(seconds=60)
    r = county.client.post(f"/f/{token}/answer", json={"area": AREAS[-1], "answer": "back"})
    assert r.status_code == 200, r.text
    (alert,) = [m for m in county.store.messages(incident_id=inc.id)
                if m.purpose == "field_conflict"]
    assert "电表仍报停电（暂未确认）" in alert.body


@pytest.fixture
def served(county: County, tmp_path: Path) -> Iterator[tuple[str, County]]:
    """A board of its own (real clock, on a port) over the county's store."""
    port = free_port()
    cfg = config(tmp_path / "served")
    cfg = cfg.model_copy(update={"board": cfg.board.model_copy(
        update={"enabled": True, "port": port})})
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    county.store.add_user("ops", "operator", access.hash_password(PASSWORD), datetime.now(UTC))
    server = BoardServer(build(cfg, county.store, lambda: county.topology))
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), 10)
        yield url, county
    finally:
        server.stop()


@pytest.mark.slow
def test_the_incident_page_shows_the_held_areas(browser: Any,
                                                served: tuple[str, County]) -> None:
    url, county = served
    inc = county.held_by_the_screen()
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=user]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#view .overview", timeout=15000)
    page.goto(f"{url}/#/incident/{inc.id}")
    page.wait_for_selector("#disputed-held", timeout=10000)
    said = page.text_content("#disputed-held") or ""
    assert "电表仍报停电（暂未确认），未按恢复处理" in said
    assert all(n in said for n in names(county.topology, AREAS))
    assert page.query_selector("#disputed") is None
    page.screenshot(path=str(screenshot_dir() / "held_dispute_incident.png"), full_page=True)
    page.context.close()
