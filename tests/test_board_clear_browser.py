"""The incident page's clear buttons in a real headless Chromium, against the board served
in-process over a real SQLite store: the fault device and the expected restoration time the
command centre set are shown beside a 清除 button; a click takes each back (the device to the
localiser's estimate, the time to the sources'), the step logged with the signed-in user, and
the button goes once there is nothing set. Screenshots go to ``test-screenshots/board/``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.store import Store
from tests.browser import screenshot_dir
from tests.e2e_helpers import wait_for
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


def clicked(page: Any, selector: str) -> str:
    """Click and return what the flash said (failing on a refusal)."""
    page.click(selector)
    page.wait_for_selector("#flash:not([hidden])", timeout=10000)
    said = page.text_content("#flash") or ""
    assert "flash bad" not in (page.get_attribute("#flash", "class") or ""), said
    return said


def test_the_command_centre_takes_back_its_device_and_its_time_from_the_page(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, store, holder = served
    actions = holder["board"].actions
    iid = actions.open_incident({"transformers": "T-MJ01-020,T-MJ01-021"}, "board:ops")
    localised = actions.core.processor.incident(iid).estimate.devices
    etr = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(hours=3)).strftime(
        "%Y-%m-%d %H:%M")
    actions.incident_step(iid, "device", {"devices": ["RC-MJ01-2"]}, "board:ops")
    actions.incident_step(iid, "etr", {"time": etr}, "board:ops")
    page = sign_in(browser, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#act-device-clear", timeout=10000)
    assert "马集线#78杆柱上重合器" in (page.text_content("#device-set") or "")
    assert etr in (page.text_content("#etr-set") or "")
    assert "清除" == page.text_content("#act-device-clear")
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "incident-clear.png"), full_page=True)
    page.fill("#actions input[name=note]", "SCADA 误报")
    clicked(page, "#act-device-clear")
    assert wait_for(lambda: actions.core.processor.incident(iid).device_set == (), 10)
    page.wait_for_selector("#act-device-clear", state="detached", timeout=10000)
    assert actions.core.processor.incident(iid).estimate.devices == localised
    clicked(page, "#act-etr-clear")
    assert wait_for(lambda: actions.core.processor.incident(iid).etr_set is None, 10)
    page.wait_for_selector("#act-etr-clear", state="detached", timeout=10000)
    steps = {e["stage"]: e for e in store.incident_log(iid)}
    assert steps["device_cleared"]["actor"] == "board:ops"
    assert steps["device_cleared"]["note"] == "SCADA 误报"
    assert steps["etr_cleared"]["actor"] == "board:ops"
    # The timeline on the page says what was taken back, in words.
    page.wait_for_selector("text=撤销更正的故障点", timeout=10000)
    assert errors == []
    page.context.close()
