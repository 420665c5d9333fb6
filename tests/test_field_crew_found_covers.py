"""A crew's "fault found" on its page must feed the areas the incident confirmed off, as a
close-out's devices must (``lifecycle.unfed_areas``): a close-out naming no device keeps the
crew's finding as what the localiser learns (``Store.confirmed_devices``), so a device on
another branch named there taught it a case that never happened. The page refuses it naming
the areas the device does not feed; the crew may send it anyway (设备不符也上报,
``device_anyway``), and the log step then names those areas (``not_fed``) for the command
centre, as ``close --device-anyway`` does.

The demo county (南谢庄村's 2# and 3# areas, T-MJ01-020/021, below 南谢庄支线跌落式熔断器
FU-MJ01-05; the suspected section also holds the branch's other areas, 4#…8#), a real store
and the board's crew page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.store import Store
from tests.e2e_helpers import wait_for
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)
from tests.test_field import crew_token
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)

AREAS = ("T-MJ01-020", "T-MJ01-021")  # 南谢庄村2#公变, 3#公变: confirmed off
OTHER = "T-MJ01-022"  # 南谢庄村4#公变: in the suspected section, feeds neither


def crew_page(field_board: Any) -> tuple[Any, Store, Any, str, str, TestClient]:  # noqa: F811
    """The incident of both areas (a call naming them), its crew sent, the crew's link."""
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": ",".join(AREAS)}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    inc = board.actions.core.processor.incident(iid)
    assert set(AREAS) == set(inc.confirmed) and OTHER in inc.estimate.section
    return board, store, clock, iid, token, client


def found_steps(store: Store, iid: str) -> list[dict[str, Any]]:
    return [e for e in store.incident_log(iid) if e["stage"] == "fault_found"]


def test_a_device_feeding_none_of_the_areas_off_is_refused_naming_them(
        field_board: Any) -> None:  # noqa: F811
    board, store, clock, iid, token, client = crew_page(field_board)
    clock.now += timedelta(minutes=20)
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": OTHER,
                                              "cause": "树线矛盾"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert "南谢庄村2#公变" in error and "南谢庄村3#公变" in error
    assert "南谢庄村4#公变" in error  # the device named, by its name
    assert "设备不符也上报" in error  # how to send it anyway
    assert found_steps(store, iid) == []
    assert not [m for m in store.messages(incident_id=iid) if m.purpose == "crew_fault_found"]
    (audit,) = [a for a in store.audit_trail() if a["kind"] == "field"]
    assert audit["action"] == "fault_found" and not audit["ok"]
    # One of the two areas' own transformer: the other area is named, it alone.
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": AREAS[0]})
    assert r.status_code == 409 and "南谢庄村3#公变" in r.json()["error"]
    assert "南谢庄村2#公变" not in r.json()["error"].split("不在台区")[1]
    assert found_steps(store, iid) == []
    # Not a yes or no: refused as such.
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": OTHER,
                                              "device_anyway": "yes"})
    assert r.status_code == 400 and "device_anyway" in r.text
    assert found_steps(store, iid) == []


def test_sent_anyway_it_is_kept_with_the_areas_it_does_not_feed(
        field_board: Any) -> None:  # noqa: F811
    board, store, clock, iid, token, client = crew_page(field_board)
    clock.now += timedelta(minutes=20)
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": OTHER,
                                              "cause": "树线矛盾", "note": "4#变跌落保险熔断",
                                              "device_anyway": True})
    assert r.status_code == 200, r.text
    (step,) = found_steps(store, iid)
    assert step["details"]["device"] == OTHER
    assert step["details"]["not_fed"] == list(AREAS)
    assert step["note"].startswith("4#变跌落保险熔断")
    # The command centre's word says so, naming the areas.
    (told,) = [m for m in store.messages(incident_id=iid) if m.purpose == "crew_fault_found"]
    assert "南谢庄村2#公变" in told.body and "南谢庄村3#公变" in told.body
    # Closed with no device: the crew's finding is what the localiser learns.
    clock.now += timedelta(minutes=30)
    board.actions.incident_step(iid, "restore", {}, "operator:x")
    board.actions.incident_step(iid, "close", {"cause": "树线矛盾"}, "operator:x")
    assert store.confirmed_devices() == {iid: [OTHER]}


@pytest.mark.parametrize("device", ["FU-MJ01-05", ",".join(AREAS)])
def test_devices_feeding_every_area_off_are_taken_as_before(
        field_board: Any, device: str) -> None:  # noqa: F811
    """The branch fuse above both; or each area's own transformer (a double fault)."""
    board, store, clock, iid, token, client = crew_page(field_board)
    clock.now += timedelta(minutes=20)
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": device})
    assert r.status_code == 200, r.text
    (step,) = found_steps(store, iid)
    assert step["details"]["device"] == device.split(",")[0]
    assert "not_fed" not in step["details"]
    (told,) = [m for m in store.messages(incident_id=iid) if m.purpose == "crew_fault_found"]
    assert "南谢庄村" not in told.body


def test_the_crew_page_holds_the_send_anyway_box_out_of_sight(
        field_board: Any) -> None:  # noqa: F811
    _board, _store, _clock, _iid, token, client = crew_page(field_board)
    page = client.get(f"/c/{token}").text
    box = re.search(r'<label[^>]*id="crew-anyway"[^>]*>.*?</label>', page, re.S)
    assert box is not None and " hidden" in box.group(0).split(">")[0]
    assert 'id="crew-device-anyway"' in box.group(0) and "设备不符也上报" in box.group(0)


@pytest.mark.slow
def test_on_a_phone_the_refusal_offers_sending_it_anyway(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, store, holder = served
    board = holder["board"]
    iid = board.actions.open_incident({"transformers": ",".join(AREAS)}, "board:ops")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "board:ops")
    message = [m for m in store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    token = re.search(r"/c/(\S+)", message.body).group(1)  # type: ignore[union-attr]
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/c/{token}")
    assert not page.is_visible("#crew-device-anyway")
    page.select_option("#crew-device", value=[OTHER])
    page.click("#crew-found")
    page.wait_for_selector("#crew-failed:not([hidden])", timeout=10000)
    assert "南谢庄村2#公变" in (page.text_content("#crew-failed") or "")
    assert page.is_visible("#crew-device-anyway") and not page.is_checked("#crew-device-anyway")
    assert found_steps(store, iid) == []
    page.check("#crew-device-anyway")
    page.click("#crew-found")
    page.wait_for_selector("#crew-done:has-text('找到故障')", timeout=10000)
    assert wait_for(lambda: len(found_steps(store, iid)) == 1, 10)
    assert found_steps(store, iid)[0]["details"]["not_fed"] == list(AREAS)
    # Taken: the box goes back out of sight, unticked, for the next report.
    assert not page.is_visible("#crew-device-anyway")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert errors == []
    page.context.close()
