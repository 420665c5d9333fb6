"""A close-out's devices must feed the areas the incident confirmed off (a source reported
them off, not inferred): the localiser's history (``localisation history``, the refit) learns
the device as the one that took those areas off, so a fuse on another branch taught it a case
that never happened. Several devices (a double fault) are taken when together they feed every
such area. The crew may know better than the records: the board's "设备不符也销号"
(``device_anyway``) keeps the devices anyway, the close-out step naming the areas they do not
feed.

The CLI runs as a subprocess against the demo county's SQLite database (an outage system
record of 南谢庄村's two areas, below 南谢庄支线跌落式熔断器 FU-MJ01-05; FU-MJ01-06 is
前赵店's branch fuse), the board as served in-process."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.store import Store
from tests.e2e_helpers import wait_for
from tests.test_board_app import PASSWORD, post, signed_in
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)
from tests.test_cancel_false_alarm_flag import AREAS, cli, county_incident


def history(cfg: Path) -> list[dict[str, Any]]:
    r = cli(cfg, "localisation", "history")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_device_on_another_branch_is_refused_naming_the_areas_it_does_not_feed(
        tmp_path: Path) -> None:
    cfg, iid = county_incident(tmp_path)
    assert cli(cfg, "incidents", "restore", iid).returncode == 0
    bad = cli(cfg, "incidents", "close", iid, "--cause", "设备故障", "--device", "FU-MJ01-06")
    assert bad.returncode == 1, bad.stderr
    assert "前赵店支线跌落式熔断器" in bad.stderr
    assert "南谢庄村2#公变" in bad.stderr and "南谢庄村3#公变" in bad.stderr
    assert "--device-anyway" in bad.stderr
    assert history(cfg) == []  # nothing closed, nothing learnt
    # A double fault: both fuses, together above every area confirmed off.
    ok = cli(cfg, "incidents", "close", iid, "--cause", "设备故障", "--device",
             "FU-MJ01-06,FU-MJ01-05")
    assert ok.returncode == 0, ok.stderr
    (case,) = history(cfg)
    assert case["truth"] == {"devices": ["FU-MJ01-06", "FU-MJ01-05"]}


def test_a_correction_of_the_close_out_is_checked_too(tmp_path: Path) -> None:
    cfg, iid = county_incident(tmp_path)
    assert cli(cfg, "incidents", "restore", iid).returncode == 0
    assert cli(cfg, "incidents", "close", iid, "--cause", "设备故障", "--device",
               "南谢庄支线跌落式熔断器").returncode == 0
    bad = cli(cfg, "incidents", "close", iid, "--cause", "设备故障", "--device", "FU-MJ01-06",
              "--amend")
    assert bad.returncode == 1 and "南谢庄村2#公变" in bad.stderr
    (case,) = history(cfg)
    assert case["truth"] == {"devices": ["FU-MJ01-05"]}


def restored_on_the_board(client: Any, csrf: str, clock: Any) -> str:
    """An incident of both 南谢庄村 areas opened from a call, back a minute later."""
    iid = str(post(client, csrf, "/api/incidents",
                   {"transformers": list(AREAS)}).json()["result"])
    clock.now += timedelta(minutes=1)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    return iid


def test_the_board_refuses_it_and_keeps_it_when_told_anyway(board_env: Any,
                                                           demo: Any) -> None:  # noqa: F811
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops", PASSWORD)
    iid = restored_on_the_board(client, csrf, clock)
    close = {"cause": "设备故障", "device": "FU-MJ01-06"}
    r = post(client, csrf, f"/api/incidents/{iid}/close", close)
    assert r.status_code == 409 and "南谢庄村2#公变" in r.text, r.text
    assert store.confirmed_devices() == {}
    r = post(client, csrf, f"/api/incidents/{iid}/close", {**close, "device_anyway": True})
    assert r.status_code == 200, r.text
    assert store.confirmed_devices() == {iid: ["FU-MJ01-06"]}
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "closed"]
    assert step["details"]["not_fed"] == list(AREAS)
    # Correcting the cause alone (the form sends the devices it said again) is not refused
    # again; naming another device that feeds neither is.
    r = post(client, csrf, f"/api/incidents/{iid}/close", {**close, "cause": "外力破坏",
                                                           "amend": True})
    assert r.status_code == 200, r.text
    r = post(client, csrf, f"/api/incidents/{iid}/close", {**close, "device": "FU-MJ01-04",
                                                           "amend": True})
    assert r.status_code == 409 and "南谢庄村3#公变" in r.text, r.text
    closes = [e["details"] for e in store.incident_log(iid) if e["stage"] == "closed"]
    assert closes[-1]["not_fed"] == list(AREAS) and closes[-1]["amended"] is True
    assert store.confirmed_devices() == {iid: ["FU-MJ01-06"]}


@pytest.mark.slow
def test_the_close_out_form_offers_the_device_anyway(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, store, holder = served
    actions = holder["board"].actions
    iid = actions.open_incident({"transformers": ",".join(AREAS)}, "board:ops")
    actions.incident_step(iid, "restore", {}, "board:ops")
    page = sign_in(browser, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#close-device-anyway", timeout=10000)
    assert not page.is_checked("#close-device-anyway")
    page.fill("#actions input[name=device_other]", "FU-MJ01-06")
    page.click("#act-close")
    page.wait_for_selector("#flash.bad", timeout=10000)
    assert "南谢庄村2#公变" in (page.text_content("#flash") or "")
    assert store.confirmed_devices() == {}
    page.check("#close-device-anyway")
    page.click("#act-close")
    assert wait_for(lambda: store.confirmed_devices() == {iid: ["FU-MJ01-06"]}, 10)
    assert errors == []
    page.context.close()


def test_the_cli_keeps_the_device_anyway(tmp_path: Path) -> None:
    cfg, iid = county_incident(tmp_path)
    assert cli(cfg, "incidents", "restore", iid).returncode == 0
    r = cli(cfg, "incidents", "close", iid, "--cause", "设备故障", "--device", "FU-MJ01-06",
            "--device-anyway")
    assert r.returncode == 0, r.stderr
    (case,) = history(cfg)
    assert case["truth"] == {"devices": ["FU-MJ01-06"]}
