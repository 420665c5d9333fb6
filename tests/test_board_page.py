"""The board's page in a real headless Chromium against the board served in-process (uvicorn
in a thread) over a real SQLite store: a lost connection says so and recovers by itself, the
page switches to English, silences and retries work from the page, and a 390 px phone shows the
overview without horizontal scrolling. Screenshots go to ``test-screenshots/board/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.serve import BoardServer, build
from outage_sentinel.config import load_config
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import Store
from outage_sentinel.topology import load_bundle
from tests.browser import screenshot_dir
from tests.e2e_helpers import free_port, make_config, wait_for

pytestmark = pytest.mark.slow
PASSWORD = "page test password"


class Tiles:
    """An intranet tile server on loopback: every request answered with a 1x1 PNG."""

    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201ab2a5b"
                        "ad0000000049454e44ae426082")

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[str] = []
        self.requested = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(Tiles.PNG)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def tile_server() -> Iterator[Tiles]:
    tiles = Tiles()
    yield tiles
    tiles.server.shutdown()


@pytest.fixture
def served(tmp_path: Path, tile_server: Tiles) -> Iterator[tuple[str, Store, Any]]:
    port = free_port()
    config = load_config(make_config(tmp_path, board={
        "enabled": True, "port": port, "tile_url": tile_server.url + "/{z}/{x}/{y}.png"}))
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url())
    store.migrate()
    store.add_user("ops", "operator", access.hash_password(PASSWORD), datetime.now(UTC))
    topology = load_bundle(config.topology)
    board = build(config, store, lambda: topology)
    server = BoardServer(board)
    server.start()
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _up(url), 10)
    holder = {"server": server, "board": board, "tiles": tile_server}
    try:
        yield url, store, holder
    finally:
        holder["server"].stop()
        store.close()


def _up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def sign_in(browser: Any, url: str, **context: Any) -> Any:  # noqa: F811
    page = browser.new_context(**context).new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=user]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#view .overview", timeout=15000)
    page.wait_for_selector("#connection.up", timeout=10000)
    return page


def test_a_lost_connection_is_shown_and_the_page_recovers_by_itself(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, store, holder = served
    page = sign_in(browser, url)
    holder["server"].stop()
    page.wait_for_selector("#connection.down", timeout=15000)
    assert "连接中断" in page.text_content("#connection")
    holder["server"] = BoardServer(holder["board"])
    holder["server"].start()
    page.wait_for_selector("#connection.up", timeout=20000)
    # ...and it is live again: a storm declared by another writer shows up.
    store.kv_set("storm", {"declared": True, "by": "operator:cli", "note": "台风"},
                 datetime.now(UTC))
    page.wait_for_selector("#storm-banner:not([hidden])", timeout=10000)
    page.context.close()


def test_english_silences_and_retry_from_the_page(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, store, _ = served
    page = sign_in(browser, url)
    page.click("#language")
    page.wait_for_selector("#view .overview", timeout=10000)
    assert "Active fault outages" in page.text_content("#view")
    page.fill("#silence-form input[name=value]", "CG01")
    page.fill("#silence-form input[name=until]", "2099-01-01T08:00")
    page.fill("#silence-form input[name=reason]", "switching work")
    page.click("#silence-form button[type=submit]")
    page.wait_for_selector("#silences li", timeout=10000)
    assert [s.value for s in store.silences(holding_at=datetime.now(UTC))] == ["CG01"]
    page.click("#silences li button")
    assert wait_for(lambda: store.silences(holding_at=datetime.now(UTC)) == [], 10)
    # A dead letter is retried from the overview.
    now = datetime.now(UTC)
    with store.transaction() as conn:
        store.enqueue_in(conn, [OutboxMessage(
            incident_id="INC-X", revision=1, recipient="village:V1:sms:13800001111",
            purpose="outage", channel="sms", target="13800001111", audience="liaison",
            subject="停电通知", body="停电通知")], now)
    message = store.messages()[0]
    store.mark_dead(message.id, now, "HTTP 500")
    page.reload()
    page.wait_for_selector("#retry-dead", timeout=10000)
    page.click("#retry-dead")
    assert wait_for(lambda: store.messages()[0].status == "pending", 10)
    page.context.close()


def test_the_overview_fits_a_phone(browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    url, _store, holder = served
    holder["board"].actions.open_incident({"transformers": "T-LH01-014,T-LH01-015"},
                                          "board:ops")
    page = sign_in(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True)
    page.wait_for_selector("tr[data-incident]", timeout=10000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
    page.context.close()


def test_the_map_draws_the_intranet_tiles_under_the_network(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    import re

    url, _store, holder = served
    page = sign_in(browser, url)
    page.click("a[href='#/map']")
    page.wait_for_selector("#map-svg image.tile", timeout=15000)
    page.wait_for_selector("#map-svg circle.area", timeout=15000)
    tiles = holder["tiles"]
    assert wait_for(lambda: len(tiles.requested) > 0, 10)
    assert all(re.fullmatch(r"/\d+/\d+/\d+\.png", p) for p in tiles.requested)
    assert len(tiles.requested) <= 64  # a county's worth, not the world
    page.context.close()


def test_a_liaison_on_a_phone_says_an_area_is_still_dark(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    import re
    import threading

    url, store, holder = served
    board = holder["board"]
    iid = board.actions.open_incident({"transformers": "T-LH01-014,T-LH01-015"}, "board:ops")
    link = next(m for m in store.messages(incident_id=iid)
                if m.audience == "liaison" and "/f/" in m.body)
    token = re.search(r"/f/(\S+)", link.body).group(1)  # type: ignore[union-attr]
    village = link.payload["village"]
    processor = board.actions.core.processor
    area = next(t for t in processor.incident(iid).off
                if board.topology().nodes[t].village == village)
    processor.operator_restore(iid, "board:ops", area, None, "", now=datetime.now(UTC))
    assert area in processor.incident(iid).restored
    threading.Event().wait(1.0)  # the liaison answers after the restoration
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    page.goto(f"{url}/f/{token}")
    item = f"li[data-area='{area}']"
    assert "已恢复" in page.text_content(f"{item} .state")
    page.click(f"{item} button[data-answer=dark]")
    page.wait_for_selector("#field-done:not([hidden])", timeout=10000)
    assert "停电" in page.text_content(f"{item} .state")
    assert area in processor.incident(iid).off  # reopened by the liaison's word
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "field-phone.png"), full_page=True)
    page.context.close()


def test_a_crew_on_a_phone_goes_from_accept_to_restored(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    import re

    url, store, holder = served
    board = holder["board"]
    iid = board.actions.open_incident({"transformers": "T-CG01-002,T-CG01-003"}, "board:ops")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "board:ops")
    message = [m for m in store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    token = re.search(r"/c/(\S+)", message.body).group(1)  # type: ignore[union-attr]
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    page.goto(f"{url}/c/{token}")
    for button in ("#crew-accept", "#crew-way", "#crew-arrive"):
        label = page.text_content(button)
        page.click(button)
        page.wait_for_selector(f"#crew-done:has-text('{label}')", timeout=10000)
    from tests.test_field import jpeg_with_gps

    page.set_input_files("#crew-photo-file", files=[{"name": "site.jpg", "mimeType": "image/jpeg",
                                                     "buffer": jpeg_with_gps()}])
    page.click("#crew-photo")
    page.wait_for_selector("#crew-done:has-text('现场照片')", timeout=10000)
    page.select_option("#crew-device", index=[0, 1])  # two blown fuses in a storm
    page.fill("#crew-cause", "树线矛盾")
    page.click("#crew-found")
    page.wait_for_selector("#crew-done:has-text('找到故障')", timeout=10000)
    page.check("#crew-areas input >> nth=0")
    page.click("#crew-restore")
    page.wait_for_selector("#crew-stage b:text-is('partially_restored')", timeout=10000)
    for box in page.query_selector_all("#crew-areas input"):
        box.check()
    page.click("#crew-restore")
    page.wait_for_selector("#crew-stage b:text-is('restored')", timeout=10000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "crew-phone.png"), full_page=True)
    stages = [e["stage"] for e in store.incident_log(iid) if e["actor"] == "crew:CR01"]
    assert stages[:5] == ["accepted", "on_the_way", "on_site", "photo", "fault_found"]
    found = [e for e in store.incident_log(iid) if e["stage"] == "fault_found"][0]
    assert len(found["details"]["devices"]) == 2
    assert store.confirmed_devices()[iid] == found["details"]["devices"]
    page.context.close()


def thumbnails_loaded(page: Any, timeout: float = 10.0) -> list[list[Any]]:
    """Each thumbnail's [complete, naturalWidth] once all have loaded (or the timeout passed).

    The thumbnails load lazily and after the figures appear, so they are scrolled into view
    and waited for; the page's CSP forbids wait_for_function's eval, hence the polling here.
    """
    page.eval_on_selector("#photos", "grid => grid.scrollIntoView()")
    deadline = time.monotonic() + timeout
    while True:
        loaded = page.eval_on_selector_all(
            "#photos img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        if all(done and width for done, width in loaded) or time.monotonic() > deadline:
            return list(loaded)
        page.wait_for_timeout(100)


def test_the_incident_page_shows_the_fields_photos_to_staff(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    import re

    from tests.test_field import jpeg_with_gps

    url, store, holder = served
    board = holder["board"]
    iid = board.actions.open_incident({"transformers": "T-CG01-001,T-CG01-002"}, "board:ops")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "board:ops")
    crew = re.search(r"/c/(\S+)", [m for m in store.messages(incident_id=iid)
                                   if m.purpose == "dispatch"][-1].body).group(1)  # type: ignore[union-attr]
    link = next(m for m in store.messages(incident_id=iid)
                if m.audience == "liaison" and "/f/" in m.body)
    liaison = re.search(r"/f/(\S+)", link.body).group(1)  # type: ignore[union-attr]
    photo = [{"name": "site.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}]
    # The crew and the liaison each send one from their phone page.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    page.goto(f"{url}/c/{crew}")
    page.set_input_files("#crew-photo-file", files=photo)
    page.click("#crew-photo")
    page.wait_for_selector("#crew-done:has-text('现场照片')", timeout=10000)
    page.goto(f"{url}/f/{liaison}")
    page.select_option("#field-photo-area", index=1)
    area = page.eval_on_selector("#field-photo-area", "s => s.options[s.selectedIndex].text")
    page.set_input_files("#field-photo-file", files=photo)
    page.click("#field-photo")
    page.wait_for_selector("#field-done:not([hidden])", timeout=10000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()
    # Staff see both on the incident page: thumbnails, who, which area; a click opens one.
    staff = sign_in(browser, url)
    staff.goto(f"{url}/#/incident/{iid}")
    staff.wait_for_selector("#photos figure >> nth=1", timeout=10000)
    captions = [c.text_content() for c in staff.query_selector_all("#photos figcaption")]
    assert "城关供电所抢修一班" in captions[0]  # the crew by name
    assert area in captions[1] and "联络人" in captions[1]
    loaded = thumbnails_loaded(staff)
    assert all(done and 0 < width <= 320 for done, width in loaded), loaded
    with staff.context.expect_page() as opened:
        staff.click("#photos a >> nth=1")
    full = opened.value
    full.wait_for_load_state()
    assert f"/api/incidents/{iid}/photos/" in full.url and "size=thumb" not in full.url
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    staff.screenshot(path=str(shots / "incident-photos.png"), full_page=True)
    staff.context.close()
    # Without a session the same address gives no photo.
    stranger = browser.new_context().new_page()
    response = stranger.goto(f"{url}{full.url.split(url, 1)[1]}")
    assert response is not None and response.headers.get("content-type") != "image/jpeg"
    stranger.context.close()


def test_an_sms_notice_shows_its_template_and_the_parameters_sent(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    """An SMS carries no text of ours: the page shows the template of its purpose and the
    parameters the recipient got (the liaison's link as its token), not a rendered text."""
    url, store, holder = served
    iid = holder["board"].actions.open_incident({"transformers": "T-LH01-014,T-LH01-015"},
                                                "board:ops")
    sms = next(m for m in store.messages(incident_id=iid)
               if m.channel == "sms" and m.purpose == "outage")
    token = sms.payload["params"]["sms"]["link"]
    page = sign_in(browser, url)
    page.goto(f"{url}/#/incident/{iid}")
    row = page.locator("#notices tr", has=page.locator("td", has_text="sms")).first
    row.locator("details summary").click()
    said = row.locator("pre.said-text").text_content() or ""
    assert said.startswith("短信模板（实际发送的参数） outage"), said
    assert f"${{link}}: {token}" in said and "${village}: " in said
    assert sms.body.splitlines()[1] not in said  # the rendered text went to no one
    page.context.close()


def test_a_restoration_recorded_by_mistake_is_undone_from_the_page(
        browser: Any, served: tuple[str, Store, Any]) -> None:  # noqa: F811
    """A restored incident offers its areas, none ticked; the ticked one is off again and its
    village is told (its 恢复送电, never sent here, is taken back: the outage notice corrects
    nothing)."""
    url, store, holder = served
    actions = holder["board"].actions
    iid = actions.open_incident({"transformers": "T-CG01-001,T-CG01-002"}, "board:ops")
    actions.incident_step(iid, "restore", {}, "board:ops")
    page = sign_in(browser, url)
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#reopen-row", timeout=10000)
    boxes = page.query_selector_all("#reopen-row input[type=checkbox]")
    assert boxes and not any(b.is_checked() for b in boxes)
    page.click("#act-reopen")  # nothing ticked: refused, nothing changes
    page.wait_for_selector("#flash.bad", timeout=10000)
    assert holder["board"].actions.core.processor.incident(iid).status == "restored"
    boxes[0].check()
    page.click("#act-reopen")
    page.wait_for_selector("#act-restore", timeout=10000)  # active again: restore offered
    inc = holder["board"].actions.core.processor.incident(iid)
    assert inc.status == "active" and len(inc.off) == 1
    mine = store.messages(incident_id=iid)
    back_at = min(m.revision for m in mine if m.purpose == "restored")
    again = [m for m in mine if m.purpose == "outage" and m.revision > back_at]
    assert again and not any("此前通知本村已恢复送电" in m.body for m in again)
    assert {m.status for m in mine if m.purpose == "restored"} == {"withdrawn"}
    page.context.close()
