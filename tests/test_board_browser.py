"""The board in a real headless Chromium, served by the daemon running as a subprocess on the
demo scenario: sign in, an incident committed by another process appears without a reload,
confirm / dispatch / on site / restore / close from the page (the database, the lifecycle log
and the outbox show each step with the user as actor), a viewer cannot act, a POST without the
CSRF token is refused, and wrong passwords are slowed down. Screenshots of the overview, the
map and the incident page are written to ``test-screenshots/board/``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from outage_sentinel.store import Store
from outage_sentinel.topology.bundle import load_bundle
from tests.browser import screenshot_dir
from tests.e2e_helpers import ROOT, listening, log_text, make_config, start_daemon, stop, wait_for

pytestmark = pytest.mark.slow
PASSWORD = "board test password"


def cli(config: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env["OUTAGE_SENTINEL_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                           *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("board")
    config = make_config(tmp, speed=10.0, interval=0.5)
    for name, role in (("ops", "operator"), ("watch", "viewer"), ("slow", "viewer")):
        r = cli(config, "users", "add", name, "--role", role, password=PASSWORD)
        assert r.returncode == 0, r.stderr
    listed = cli(config, "users", "list").stdout
    assert "ops" in listed and "operator" in listed and "watch" in listed
    port = yaml.safe_load(config.read_text("utf-8"))["board"]["port"]
    proc = start_daemon(config)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: (tmp / "daemon.log").exists() and "running" in
                        log_text(tmp / "daemon.log"), 30)
        # The board may start listening a moment after the daemon says it runs.
        assert wait_for(lambda: listening(port), 30)
        yield config, url
    finally:
        assert stop(proc) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert f"board: {url}/" in out
        assert "one-time password" not in out  # users existed: no first admin


def sign_in(browser: Any, url: str, user: str, password: str = PASSWORD) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # checked by the tests once they are done with the page
    page.goto(f"{url}/")
    assert page.url.endswith("/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("#sign-in")
    page.wait_for_selector("#view table, #view .overview", timeout=15000)
    return page


def commit_incident(config: Path, inc: Any, now: Any) -> None:
    """``inc`` written to the daemon's database as another process would."""
    from outage_sentinel.lifecycle import incident_columns

    store = store_of(config)
    try:
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, now))
    finally:
        store.close()


def store_of(config: Path) -> Store:
    state = yaml.safe_load(config.read_text("utf-8"))["state_dir"]
    return Store(f"sqlite:///{state}/sentinel.db")


def stage_of(config: Path, iid: str) -> str:
    store = store_of(config)
    try:
        row = store.get_incident(iid)
        return str(row["stage"]) if row else ""
    finally:
        store.close()


def test_staff_see_an_incident_arrive_live_and_take_it_through_to_close_out(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    config, url = running
    page = sign_in(browser, url, "ops")
    page.wait_for_selector("#connection.up", timeout=10000)
    page.evaluate("window.__noReload = 1")
    shots = screenshot_dir() / "board"
    shots.mkdir(exist_ok=True)
    # Another process (the operator CLI) opens an incident: the page shows it without reload.
    r = cli(config, "incidents", "open", "--transformers", "T-CG01-001,T-CG01-002",
            "--note", "电话报修")
    assert r.returncode == 0, r.stderr
    found = re.search(r"^(INC-\S+): stage", r.stdout, re.M)
    assert found, r.stdout
    iid = found.group(1)
    page.wait_for_selector(f"tr[data-incident='{iid}']", timeout=5000)
    assert page.evaluate("window.__noReload") == 1
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    page.click("a[href='#/map']")
    page.wait_for_selector("#map-svg circle.area.off", timeout=15000)
    page.screenshot(path=str(shots / "map.png"))

    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#actions", timeout=10000)
    for button, stage in (("#act-ack", None), ("#act-dispatch", "dispatched"),
                          ("#act-arrive", "on_site"), ("#act-restore", "restored")):
        # The flash then shown is this action's word, not the one before's.
        page.evaluate("document.getElementById('flash').hidden = true")
        page.click(button)
        page.wait_for_selector("#flash:not([hidden])", timeout=10000)
        assert "flash bad" not in (page.get_attribute("#flash", "class") or ""), \
            page.text_content("#flash")
        if stage:
            assert wait_for(lambda s=stage: stage_of(config, iid) == s, 10)  # type: ignore[misc]
    page.wait_for_selector("#act-close", timeout=10000)
    # What each notice said is on the page: its first line, the whole text on a click.
    page.click("#notices details summary")
    page.wait_for_selector("#notices details[open] pre.said-text", timeout=5000)
    assert "编号：" in (page.text_content("#notices details[open] pre.said-text") or "")
    page.screenshot(path=str(shots / "incident.png"), full_page=True)
    page.select_option("select[name=cause]", index=1)
    options = page.eval_on_selector_all("select[name=device] option", "os => os.map(o => o.value)")
    assert len(options) >= 2, options
    # Two devices found in a storm: one the page offers, one it does not (typed by its name).
    topology = load_bundle(ROOT / "topology")
    other = next(d for d, n in topology.nodes.items()
                 if d.startswith("FU-CG01") and d not in options)
    page.select_option("select[name=device]", options[:1])
    page.fill("#actions input[name=device_other]", topology.nodes[other].name)
    page.fill("#actions input[name=note]", "两处熔断器均已更换")
    # Another incident opens meanwhile: the page re-renders live and keeps what was entered.
    before = page.get_attribute("body", "data-rendered")
    assert cli(config, "incidents", "open", "--transformers", "T-LH01-014").returncode == 0
    assert wait_for(lambda: page.get_attribute("body", "data-rendered") != before, 10)
    assert page.input_value("#actions input[name=note]") == "两处熔断器均已更换"
    assert page.eval_on_selector("select[name=device]", "s => [...s.selectedOptions]"
                                 ".map(o => o.value)") == options[:1]
    assert page.input_value("#actions input[name=device_other]") == topology.nodes[other].name
    # ... and the notice text opened before stays open (it used to snap shut on every update).
    assert page.query_selector("#notices details[open] pre.said-text") is not None
    page.check("#close-device-anyway")  # the two fuses do not feed 建设路社区1号台区
    page.click("#act-close")
    page.wait_for_selector("#flash:not([hidden])", timeout=10000)
    assert "flash bad" not in (page.get_attribute("#flash", "class") or ""), \
        (options, other, page.text_content("#flash"))
    store = store_of(config)
    try:
        assert wait_for(lambda: store.get_incident(iid)["stage"] == "closed", 10)  # type: ignore[index]
        log = store.incident_log(iid)
        by_stage = {e["stage"]: e["actor"] for e in log}
        assert store.confirmed_devices()[iid] == [options[0], other]
        assert [e["note"] for e in log if e["stage"] == "closed"] == ["两处熔断器均已更换"]
        for stage in ("confirmed", "on_site", "restored", "closed"):
            assert by_stage.get(stage) == "board:ops", (stage, by_stage)
        assert "board:ops" in {e["actor"] for e in log if e["stage"] == "dispatched"}
        purposes = {m.purpose for m in store.messages(incident_id=iid)}
        assert {"outage", "dispatch", "restored"} <= purposes
        actions = [(a["actor"], a["action"]) for a in store.audit_trail()
                   if a["kind"] == "action" and a["target"] == iid]
        assert {("ops", "ack"), ("ops", "dispatch"), ("ops", "arrive"), ("ops", "restore"),
                ("ops", "close")} <= set(actions)
    finally:
        store.close()
    # A close-out is corrected from the same page (the latest counts: reports, the localiser).
    page.wait_for_selector("#act-amend-close", timeout=10000)
    causes = page.eval_on_selector("select[name=cause]", "s => [...s.options].map(o => o.value)")
    page.select_option("select[name=cause]", causes[-1])
    page.click("#act-amend-close")
    store = store_of(config)
    try:
        assert wait_for(lambda: store.get_incident(iid)["cause_category"] == causes[-1], 10)  # type: ignore[index]
        closes = [e["details"] for e in store.incident_log(iid) if e["stage"] == "closed"]
        assert len(closes) == 2 and closes[-1]["amended"] is True
        # The form held what the close-out said: the devices found stand as they were.
        assert store.confirmed_devices()[iid] == [options[0], other]
    finally:
        store.close()
    assert page.errors == []
    page.context.close()


def flashed(page: Any, before: str) -> str:
    """The flash message an action showed (once it differs from ``before``)."""
    assert wait_for(lambda: (page.text_content("#flash") or "") != before, 10)
    return page.text_content("#flash") or ""


def test_a_live_update_between_press_and_release_does_not_swallow_the_click(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """In a storm the page re-renders every few seconds; a click whose button was replaced
    between the press and the release used to vanish (nothing done, nothing said)."""
    config, url = running
    r = cli(config, "incidents", "open", "--transformers", "T-CG01-003")
    assert r.returncode == 0, r.stderr
    iid = re.search(r"^(INC-\S+): stage", r.stdout, re.M).group(1)  # type: ignore[union-attr]
    page = sign_in(browser, url, "ops")
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#act-ack", timeout=10000)
    page.hover("#act-ack")
    page.mouse.down()
    before = page.get_attribute("body", "data-rendered")
    # A live update arrives while the button is held down.
    page.evaluate("render()")
    page.mouse.up()
    page.wait_for_selector("#flash:not([hidden])", timeout=10000)
    assert "flash bad" not in (page.get_attribute("#flash", "class") or ""), \
        page.text_content("#flash")
    store = store_of(config)
    try:
        assert wait_for(lambda: ("confirmed", "board:ops") in {
            (e["stage"], e["actor"]) for e in store.incident_log(iid)}, 10)
    finally:
        store.close()
    # ... and the update held back is shown once the click is done.
    assert wait_for(lambda: page.get_attribute("body", "data-rendered") != before, 10)
    assert page.errors == []


def test_the_command_centre_sets_the_fault_device_from_the_incident_page(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """SCADA says 河口线913断路器 tripped: typed on the incident page (a device of another line
    refused, naming it), the crew gets new orders, the page says who set it, the close-out's
    device field starts from it."""
    config, url = running
    r = cli(config, "incidents", "open", "--transformers", "T-MJ03-002,T-MJ03-003")
    assert r.returncode == 0, r.stderr
    iid = re.search(r"^(INC-\S+): stage", r.stdout, re.M).group(1)  # type: ignore[union-attr]
    page = sign_in(browser, url, "ops")
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#device-row #act-device", timeout=10000)
    assert "运行人员确认" not in (page.text_content("#certainty") or "")
    assert wait_for(lambda: stage_of(config, iid) == "dispatched", 10)  # sent on its own
    page.fill("#device-row input[name=fault_device_other]", "BRK-CG01")
    page.click("#act-device")
    assert "BRK-CG01" in flashed(page, "")
    assert "flash bad" in (page.get_attribute("#flash", "class") or "")
    page.fill("#device-row input[name=fault_device_other]", "河口线913断路器")
    page.fill("#actions input[name=note]", "SCADA：913跳闸")
    before = page.text_content("#flash") or ""
    page.click("#act-device")
    said = flashed(page, before)
    assert "flash bad" not in (page.get_attribute("#flash", "class") or ""), said
    page.wait_for_selector("#certainty:has-text('运行人员确认')", timeout=10000)
    assert "board:ops" in (page.text_content("#certainty") or "")
    store = store_of(config)
    try:
        state = store.get_incident(iid)["state"]  # type: ignore[index]
        assert (state["device_set"], state["estimate"]["devices"]) == (["BRK-MJ03"],) * 2
        (entry,) = [e for e in store.incident_log(iid) if e["stage"] == "device_set"]
        assert (entry["actor"], entry["note"]) == ("board:ops", "SCADA：913跳闸")
        assert entry["details"]["devices"] == ["BRK-MJ03"]
        orders = [m for m in store.messages(incident_id=iid) if m.purpose == "dispatch"]
        assert orders[-1].subject.startswith("【抢修派工·更新】")
        assert "河口线913断路器（运行人员确认）" in orders[-1].body
        assert ("ops", "device") in [(a["actor"], a["action"]) for a in store.audit_trail()
                                     if a["kind"] == "action" and a["target"] == iid]
    finally:
        store.close()
    page.click("#act-restore")
    page.wait_for_selector("#act-close", timeout=10000)
    assert page.eval_on_selector("select[name=device]", "s => [...s.selectedOptions]"
                                 ".map(o => o.value)") == ["BRK-MJ03"]
    page.screenshot(path=str(screenshot_dir() / "board" / "device-set.png"), full_page=True)
    # The refused device is the one error the browser logs (its 409 answer).
    assert [e for e in page.errors if "409" not in e] == [] and len(page.errors) == 1
    page.context.close()


def test_a_viewer_cannot_act_and_a_post_without_csrf_is_refused(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    config, url = running
    page = sign_in(browser, url, "watch")
    page.wait_for_selector("tr[data-incident] a", timeout=20000)  # the demo's incidents
    iid = page.text_content("tr[data-incident] a")
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector(".incident", timeout=10000)
    assert page.query_selector("#actions") is None
    status = page.evaluate(
        """async ([iid, csrf]) => (await fetch(`/api/incidents/${iid}/ack`, {method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: "{}"})).status""",
        [iid, page.evaluate("document.body.dataset.csrf")])
    assert status == 403
    page.context.close()
    ops = sign_in(browser, url, "ops")
    no_token = ops.evaluate(
        """async (iid) => (await fetch(`/api/incidents/${iid}/ack`, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: "{}"})).status""", iid)
    assert no_token == 403
    ops.context.close()


def test_wrong_passwords_five_times_slow_the_next_attempt(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    _config, url = running
    context = browser.new_context()
    page = context.new_page()
    for _ in range(5):
        page.goto(f"{url}/login")
        page.fill("input[name=user]", "slow")
        page.fill("input[name=password]", "not the password")
        page.click("#sign-in")
        page.wait_for_selector("#login-error")
    page.fill("input[name=user]", "slow")
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#login-error")
    assert "error=wait" in page.url
    context.close()


def test_a_burst_on_one_field_link_is_throttled_while_the_daemon_delivers(
        tmp_path: Path) -> None:
    import concurrent.futures
    import urllib.error
    import urllib.request

    from tests.e2e_helpers import sink_lines

    config = make_config(tmp_path, speed=4.0, interval=0.5)
    proc = start_daemon(config)
    try:
        def link() -> str | None:
            for m in sink_lines(tmp_path):
                found = re.search(r"(http://127\.0\.0\.1:\d+/f/\S+)", m.get("text", ""))
                if found:
                    return found.group(1)
            return None

        assert wait_for(lambda: link() is not None, 30)
        url = link()
        before = len(sink_lines(tmp_path))

        def hit(_: int) -> int:
            try:
                with urllib.request.urlopen(url, timeout=10) as r:  # type: ignore[arg-type]
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(hit, range(1000)))
        assert codes.count(429) >= 960 and codes.count(200) <= 30, codes.count(200)
        # The daemon went on delivering the scenario's notices meanwhile and after.
        assert wait_for(lambda: len(sink_lines(tmp_path)) > before, 30)
    finally:
        assert stop(proc) == 0


def test_an_operator_withdraws_one_held_back_notice_from_the_page(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """A village's notices are muted by a silence (so the running daemon cannot send them
    first); the operator withdraws one from the incident page with a reason: it is withdrawn,
    with who and why, never sent after the silence ends, and the audit keeps what was asked."""
    config, url = running
    topology = load_bundle(ROOT / "topology")
    area = "T-CG05-010"
    village = topology.nodes[area].village
    assert cli(config, "silence", "add", "--village", village, "--until", "2099-01-01 00:00",
               "--reason", "联调", "--force").returncode == 0
    r = cli(config, "incidents", "open", "--transformers", area)
    assert r.returncode == 0, r.stderr
    iid = re.search(r"^(INC-\S+): stage", r.stdout, re.M).group(1)  # type: ignore[union-attr]
    store = store_of(config)
    try:
        def muted() -> list[Any]:
            return [m for m in store.messages(incident_id=iid)
                    if m.status == "silenced" and m.purpose == "outage"]
        assert wait_for(lambda: bool(muted()), 20)
        target = muted()[0]
        page = sign_in(browser, url, "ops")
        page.goto(f"{url}/#/incident/{iid}")
        button = f"#notices button.withdraw[data-message='{target.id}']"
        page.wait_for_selector(button, timeout=10000)
        page.click(button)  # no reason: refused, nothing changes
        page.wait_for_selector("#flash.bad:not([hidden])", timeout=10000)
        assert "reason" in (page.text_content("#flash") or "")
        page.fill("#outbox-reason", "台区名错，待核实")
        page.click(button)
        page.wait_for_selector(f"tr.status-withdrawn[data-message='{target.id}']", timeout=10000)
        assert page.query_selector(button) is None
        (got,) = store.messages(ids=[target.id])
        assert got.status == "withdrawn"
        assert got.last_error and got.last_error.startswith("withdrawn by board:ops: 台区名错")
        cli(config, "silence", "expire", str(store.silences()[0].id))
        assert cli(config, "outbox", "retry", str(target.id)).returncode == 1
        (got,) = store.messages(ids=[target.id])
        assert got.status == "withdrawn" and got.sent_at is None
        (entry,) = [a for a in store.audit_trail() if a["action"] == "withdraw" and a["ok"]]
        assert entry["actor"] == "ops" and "台区名错" in entry["detail"]
        assert str(target.id) in entry["detail"]
        assert page.errors == [] or all("409" in e or "400" in e for e in page.errors)
        page.context.close()
    finally:
        store.close()


def test_the_incident_page_warns_of_a_report_the_fault_point_does_not_explain(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """An incident (committed by another process) whose estimated fault is a fuse while an
    area elsewhere on the feeder is reported off: the page says so, beside the fault point."""
    from datetime import UTC, datetime

    from outage_sentinel.incidents import Estimate, Incident

    config, url = running
    topology = load_bundle(ROOT / "topology")
    fuse = next(n for n in topology.ids if topology.nodes[n].kind == "fuse"
                and topology.downstream_transformers(n))
    below = topology.downstream_transformers(fuse)
    feeder = topology.feeder_of(fuse)
    stray = next(t for t in topology.ids if topology.nodes[t].kind == "transformer"
                 and topology.feeder_of(t) == feeder and t not in below)
    areas = (stray, *below)
    now = datetime.now(UTC)
    inc = Incident(id="INC-STRAY-0001", feeder=feeder, kind="fault", status="active",
                   revision=1, start=now, etr=None, end=None, cause="", area_text="",
                   members={}, estimate=Estimate((fuse,), 0.97, areas,
                                                 topology.customers_of(areas),
                                                 tuple(topology.villages_of(areas))),
                   scope={stray: "reported", **{t: "inferred" for t in below}}, created_at=now)
    commit_incident(config, inc, now)
    page = sign_in(browser, url, "watch")
    page.goto(f"{url}/#/incident/{inc.id}")
    page.wait_for_selector("#unexplained", timeout=10000)
    said = page.text_content("#unexplained") or ""
    assert "不在故障点下游" in said and (topology.nodes[stray].name or stray) in said
    assert page.errors == []
    page.context.close()


def test_the_command_centre_confirms_a_restoration_nobody_confirmed(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """An incident over (committed by another process) that counted a fuse's second area back
    when the record naming the first ended: the page marks it 恢复待确认, and an operator's
    确认已恢复 records the restoration (the state, then the page, no longer list it)."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from outage_sentinel.incidents import Estimate, Incident, Member

    config, url = running
    topology = load_bundle(ROOT / "topology")
    fuse = next(n for n in topology.ids if topology.nodes[n].kind == "fuse"
                and len(topology.downstream_transformers(n)) >= 2)
    named, unsure = topology.downstream_transformers(fuse)[:2]
    areas = (named, unsure)
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    record = Member(key="feed|R-UNSURE", kind="fault", status="restored", signal="notice",
                    start=start, etr=None, end=now, device=None, transformers=(named,),
                    unknown=(), area_text="", cause="", seen_at=now)
    inc = Incident(id="INC-UNSURE-0001", feeder=topology.feeder_of(fuse), kind="fault",
                   status="restored", revision=2, start=start, etr=None, end=now, cause="",
                   area_text="", members={record.key: record},
                   estimate=Estimate((fuse,), 0.9, areas, topology.customers_of(areas),
                                     tuple(topology.villages_of(areas))),
                   scope={named: "reported", unsure: "inferred"}, created_at=start,
                   restored={named: now, unsure: now}, stage="restored",
                   unconfirmed=(unsure,))
    commit_incident(config, inc, now)
    page = sign_in(browser, url, "ops")
    page.goto(f"{url}/#/incident/{inc.id}")
    page.wait_for_selector("#confirm-row #act-confirm", timeout=10000)
    row = page.text_content("tr.unconfirmed") or ""
    assert "恢复待确认" in row and (topology.nodes[unsure].name or unsure) in row
    page.fill("#actions input[name=note]", "村委电话确认已来电")
    page.click("#act-confirm")
    page.wait_for_selector("#confirm-row", state="detached", timeout=10000)
    assert page.query_selector("tr.unconfirmed") is None
    store = store_of(config)
    try:
        state = store.get_incident(inc.id)["state"]  # type: ignore[index]
        assert state["status"] == "restored" and not state.get("unconfirmed")
        assert ("ops", "restore") in [(a["actor"], a["action"]) for a in store.audit_trail()
                                      if a["kind"] == "action" and a["target"] == inc.id]
    finally:
        store.close()
    # the incident's own log says who confirmed it, with the note
    page.wait_for_selector("li:has-text('确认已恢复送电')", timeout=10000)
    # An area a liaison said was still off: a new outage has it, linked from the row.
    later = replace(inc, id="INC-UNSURE-0002", unconfirmed=(),
                    continued={unsure: "INC-UNSURE-0003"})
    commit_incident(config, later, now)
    page.goto(f"{url}/#/incident/{later.id}")
    page.wait_for_selector("tr.unconfirmed a[href='#/incident/INC-UNSURE-0003']", timeout=10000)
    assert "仍停电，转入" in (page.text_content("tr.unconfirmed") or "")
    assert page.query_selector("#confirm-row") is None
    assert page.errors == []
    # ... and that new outage's page names the one it reopens, linked.
    child = replace(inc, id="INC-UNSURE-0003", status="active", stage="detected",
                    restored={}, unconfirmed=(), parent_id=later.id)
    commit_incident(config, child, now)
    page.goto(f"{url}/#/incident/{child.id}")
    page.wait_for_selector(f"#reopens a[href='#/incident/{later.id}']", timeout=10000)
    assert "再次停电，接续" in (page.text_content("#reopens") or "")
    # Closing out one with an area still unconfirmed takes the box ticked.
    third = replace(inc, id="INC-UNSURE-0004")
    commit_incident(config, third, now)
    page.goto(f"{url}/#/incident/{third.id}")
    page.wait_for_selector("#close-unconfirmed-ok", timeout=10000)
    page.click("#act-close")
    page.wait_for_selector("#flash.bad:has-text('--unconfirmed-ok')", timeout=10000)
    page.check("#close-unconfirmed-ok")
    page.click("#act-close")
    page.wait_for_selector("#close-unconfirmed-ok", state="detached", timeout=10000)
    store = store_of(config)
    try:
        closed = [e for e in store.incident_log(third.id) if e["stage"] == "closed"]
        assert [e["details"]["unconfirmed"] for e in closed] == [[unsure]]
    finally:
        store.close()
    assert [e for e in page.errors if "409" not in e] == [] and len(page.errors) == 1
    page.context.close()


def test_the_outbox_page_lists_a_dead_letter_of_no_incident_and_retries_it(
        browser: Any, running: tuple[Path, str]) -> None:  # noqa: F811
    """A daily report that could not be sent belongs to no incident page: the outbox page
    lists it with its buttons, and the operator's retry queues it again."""
    from datetime import UTC, datetime

    from outage_sentinel.outgoing import OutboxMessage

    config, url = running
    cc = {"channel": "wecom", "target": "指挥中心群"}  # a channel of the demo's config
    store = store_of(config)
    try:
        now = datetime.now(UTC)
        with store.transaction() as conn:
            store.enqueue_in(conn, [OutboxMessage(
                incident_id="REPORT-20991231", revision=0, recipient=f"command:{cc['target']}",
                purpose="daily_report", channel=cc["channel"], target=cc["target"],
                audience="command", subject="【日报】测试", body="【日报】测试\n停电0起",
                payload={})], now)
        (report,) = store.messages(incident_id="REPORT-20991231")
        store.mark_dead(report.id, now, "HTTP 500")
        page = sign_in(browser, url, "ops")
        page.click("#outbox-link")
        row = f"#outbox-view tr[data-message='{report.id}']"
        page.wait_for_selector(row, timeout=10000)
        assert "REPORT-20991231" in (page.text_content(row) or "")
        page.click(f"{row} button.retry")
        assert wait_for(lambda: store.messages(ids=[report.id])[0].status != "dead", 10)
        assert page.errors == []
        page.context.close()
    finally:
        store.close()
