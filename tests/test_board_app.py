"""The board's application over a real store (SQLite and PostgreSQL) and the demo topology:
sign-in, sessions, CSRF, roles, the sign-in throttle, the audit trail, and every action running
the same lifecycle step as the operator verbs, with the signed-in user as actor."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build, first_admin
from outage_sentinel.config import load_config
from outage_sentinel.events import Quarantined
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from outage_sentinel.triage import STORM_KEY, storm_declared
from tests.e2e_helpers import sign_in_form

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


class Clock:
    """A settable clock (the throttle is tested without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


@pytest.fixture
def board_env(store: Store, demo: Topology, tmp_path: Path) -> Iterator[tuple[Any, Store,
                                                                              Clock]]:
    config = load_config(ROOT / "config.yaml")
    config = config.model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    for name, role in (("ops", "operator"), ("watch", "viewer"), ("boss", "admin")):
        assert store.add_user(name, role, access.hash_password(PASSWORD), clock())
    app = create_app(build(config, store, lambda: demo, clock))
    yield app, store, clock


def signed_in(app: Any, user: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://127.0.0.1")
    r = client.post("/login", data=sign_in_form(client, user, password), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    me = client.get("/api/me").json()
    assert me["user"] == user
    return client, me["csrf"]


def post(client: TestClient, csrf: str, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf})


def open_incident(client: TestClient, csrf: str, demo: Topology) -> str:
    areas = demo.transformers[:2]
    r = post(client, csrf, "/api/incidents", {"transformers": areas, "caller": "13812345678"})
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def test_pages_need_a_session_and_the_api_says_so(board_env: Any) -> None:
    app, _store, _clock = board_env
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/overview").status_code == 401
    assert client.post("/api/storm", json={"declare": True}).status_code == 401
    assert client.get("/healthz").text == "ok"
    assert "登录" in client.get("/login").text


def test_an_operator_runs_the_whole_lifecycle_and_each_step_is_recorded(
        board_env: Any, demo: Topology) -> None:
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    overview = client.get("/api/overview").json()
    assert [c["id"] for c in overview["incidents"]] == [iid]
    card = overview["incidents"][0]
    assert card["deadline"] and card["deadline_state"] in ("ok", "amber")
    first = client.get(f"/api/incidents/{iid}").json()["areas"][0]["id"]
    for action, body in (("ack", {"note": "seen"}), ("dispatch", {}), ("arrive", {}),
                         ("restore", {"transformers": [first]})):
        clock.now += timedelta(minutes=5)
        r = post(client, csrf, f"/api/incidents/{iid}/{action}", body)
        assert r.status_code == 200, (action, r.text)
    detail = client.get(f"/api/incidents/{iid}").json()
    assert detail["stage"] == "partially_restored"
    # Any crew may be sent: those covering the feeder are listed first.
    assert {k["id"] for k in detail["crews"]} == {c.id for c in demo.crews}
    covers = [k["covers"] for k in detail["crews"]]
    assert covers == sorted(covers, reverse=True) and any(covers)
    # Exactly what each notice says, as queued for its channel.
    queued = {m.id: m for m in store.messages(incident_id=iid)}
    shown = {n["id"]: n for n in detail["notices"]}
    assert shown and set(shown) == set(queued)
    for mid, n in shown.items():
        assert n["text"] == queued[mid].body and n["subject"] == queued[mid].subject
    assert any("停电" in n["text"] for n in shown.values() if n["purpose"] == "outage")
    assert [a["id"] for a in detail["areas"] if a["restored"]] == [first]
    clock.now += timedelta(minutes=5)
    r = post(client, csrf, f"/api/incidents/{iid}/restore", {})
    assert r.status_code == 200
    device = "BRK-CG01"  # what feeds both areas called in (no fuse of the list does)
    r = post(client, csrf, f"/api/incidents/{iid}/close", {"cause": "树线矛盾", "device": device})
    assert r.status_code == 200, r.text
    closed = client.get(f"/api/incidents/{iid}").json()
    assert [d["id"] for d in closed["found"]] == [device]  # the finding, not the estimate
    assert any(device in e["details"] for e in closed["timeline"] if e["stage"] == "closed")
    log = store.incident_log(iid)
    stages = [e["stage"] for e in log]
    for stage in ("confirmed", "dispatched", "on_site", "partially_restored", "restored",
                  "closed"):
        assert stage in stages
    board_steps = [e for e in log if e["stage"] in ("confirmed", "on_site", "closed")]
    assert {e["actor"] for e in board_steps} == {"board:ops"}
    # Opening a fault auto-dispatches (the daemon's rule); the board's dispatch is logged too.
    assert "board:ops" in {e["actor"] for e in log if e["stage"] == "dispatched"}
    # The notices the steps queued are in the outbox, like the CLI's.
    purposes = {m.purpose for m in store.messages(incident_id=iid)}
    assert {"outage", "dispatch", "restored"} <= purposes
    audited = [(r["action"], r["ok"]) for r in store.audit_trail() if r["kind"] == "action"]
    assert ("close", True) in audited and ("open", True) in audited
    # The caller's number never reaches the page.
    assert "13812345678" not in client.get(f"/api/incidents/{iid}").text


def test_a_refused_step_answers_404_400_or_409_by_whose_fault_it_is(
        board_env: Any, demo: Topology) -> None:
    """404: the request names nothing there is (an incident, an action, a message, a
    silence); 400: a value that cannot be used whatever the state; 409: a valid request the
    state refuses. Each refusal is audited."""
    app, store, _ = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    r = post(client, csrf, f"/api/incidents/{iid}/close", {"cause": "雷击"})
    assert r.status_code == 409 and "restore it first" in r.json()["error"]
    r = post(client, csrf, f"/api/incidents/{iid}/dispatch", {"crew": "nobody"})
    assert r.status_code == 400 and "unknown crew" in r.json()["error"]
    # Every box unticked is no "restore everything" (it told every village power was back).
    r = post(client, csrf, f"/api/incidents/{iid}/restore", {"transformers": []})
    assert r.status_code == 400 and "none ticked" in r.json()["error"]
    assert client.get(f"/api/incidents/{iid}").json()["status"] == "active"
    # A time the system cannot read is the operator's error, not the board's.
    r = post(client, csrf, f"/api/incidents/{iid}/etr", {"time": "unknown"})
    assert r.status_code == 400 and "ETR" in r.json()["error"]
    r = post(client, csrf, f"/api/incidents/{iid}/cancel", {})
    assert r.status_code == 400 and r.json()["error"] == "reason: required"
    r = post(client, csrf, f"/api/incidents/{iid}/fly", {})
    assert r.status_code == 404 and "unknown action" in r.json()["error"]
    for action, body in (("ack", {}), ("etr", {"time": "2030-01-01 10:00"}),
                         ("restore", {})):
        r = post(client, csrf, f"/api/incidents/INC-NOPE/{action}", body)
        assert r.status_code == 404 and "no incident 'INC-NOPE'" in r.json()["error"], action
    r = post(client, csrf, "/api/silences", {"expire": 424242})
    assert r.status_code == 404 and "no silence 424242" in r.json()["error"]
    r = client.post(f"/api/incidents/{iid}/ack", content=b"[1,", headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert [r["ok"] for r in store.audit_trail() if r["action"] == "close"] == [False]
    assert [r["ok"] for r in store.audit_trail() if r["action"] == "fly"] == [False]


def test_without_the_csrf_token_or_with_another_sessions_nothing_changes(
        board_env: Any, demo: Topology) -> None:
    app, store, _ = board_env
    client, csrf = signed_in(app, "ops")
    other, other_csrf = signed_in(app, "boss")
    assert csrf != other_csrf
    for headers in ({}, {"X-CSRF-Token": other_csrf}, {"X-CSRF-Token": ""}):
        r = client.post("/api/storm", json={"declare": True}, headers=headers)
        assert r.status_code == 403
    assert store.kv_get(STORM_KEY) is None
    r = client.post("/logout", data={}, follow_redirects=False)
    assert r.status_code == 403  # sign-out is a state change too


def test_a_viewer_sees_but_cannot_act_and_sees_no_phone(board_env: Any, demo: Topology) -> None:
    app, store, clock = board_env
    ops, ops_csrf = signed_in(app, "ops")
    iid = open_incident(ops, ops_csrf, demo)
    viewer, csrf = signed_in(app, "watch")
    assert viewer.get("/api/me").json()["may_act"] is False
    assert viewer.get("/api/overview").status_code == 200
    before = len(store.incident_log(iid))
    r = post(viewer, csrf, f"/api/incidents/{iid}/arrive", {})
    assert r.status_code == 403
    assert store.get_incident(iid)["stage"] == "dispatched"
    assert len(store.incident_log(iid)) == before
    assert any(r["kind"] == "denied" and r["actor"] == "watch" for r in store.audit_trail())
    assert viewer.get("/api/audit").status_code == 403
    phones = re.compile(r"(?<![\d.])1[3-9]\d{9}(?!\d)")
    text = viewer.get(f"/api/incidents/{iid}").text
    found = phones.search(text)
    assert not found, text[max(0, found.start() - 80):found.end() + 20]
    assert not phones.search(viewer.get("/api/outbox?status=pending").text)


def test_numbers_typed_into_notes_and_reasons_are_masked_on_every_page(
        board_env: Any, demo: Topology) -> None:
    """A storm note, a silence reason and a cancel reason are free text an operator types; a
    caller's number in them, however grouped, is no viewer's to read."""
    app, store, clock = board_env
    ops, ops_csrf = signed_in(app, "ops")
    iid = open_incident(ops, ops_csrf, demo)
    until = (clock() + timedelta(hours=1)).astimezone(ZoneInfo("Asia/Shanghai")).strftime(
        "%Y-%m-%d %H:%M")
    for path, body in (
            ("/api/storm", {"declare": True, "hours": 2, "note": "王站长 139 1111 0011"}),
            ("/api/silences", {"matcher": "feeder", "value": demo.feeders[0], "until": until,
                               "reason": "联系 139-1111-0012"}),
            (f"/api/incidents/{iid}/cancel", {"reason": "用户+86 138 0000 9698 报错"})):
        r = post(ops, ops_csrf, path, body)
        assert r.status_code == 200, (path, r.text)
    viewer, _ = signed_in(app, "watch")
    pages = "".join(viewer.get(p).text for p in (
        "/api/overview", "/api/silences", f"/api/incidents/{iid}"))
    for number in ("1111 0011", "1111-0012", "0000 9698", "11110011", "00009698"):
        assert number not in pages, number
    assert "139****0011" in pages and "138****9698" in pages


def test_a_sign_in_not_posted_from_the_boards_own_page_is_refused(board_env: Any) -> None:
    """Login CSRF: another site's page posting the form (right credentials, an attacker's own
    account) must not sign the browser in; the form's token must match the page's cookie."""
    app, store, _ = board_env
    elsewhere = TestClient(app, base_url="http://127.0.0.1")
    r = elsewhere.post("/login", data={"user": "ops", "password": PASSWORD},
                       follow_redirects=False)
    assert r.headers["location"] == "/login?error=expired" and "set-cookie" not in r.headers
    # a token copied from a page, without the cookie that page set in *its* browser
    fields = sign_in_form(TestClient(app, base_url="http://127.0.0.1"), "ops", PASSWORD)
    r = elsewhere.post("/login", data=fields, follow_redirects=False)
    assert r.headers["location"] == "/login?error=expired"
    assert elsewhere.get("/api/me").status_code == 401
    assert "登录页已过期" in elsewhere.get("/login?error=expired").text
    # from the board's own page it works, and the form's token is spent with the sign-in
    r = elsewhere.post("/login", data=sign_in_form(elsewhere, "ops", PASSWORD),
                       follow_redirects=False)
    assert r.headers["location"] == "/" and "sentinel_login=\"\"" in r.headers["set-cookie"]
    assert elsewhere.get("/api/me").json()["user"] == "ops"
    assert not [a for a in store.audit_trail() if a["kind"] == "sign_in_failed"]


def test_wrong_passwords_are_slowed_down_then_a_right_one_after_the_wait_works(
        board_env: Any) -> None:
    app, store, clock = board_env
    client = TestClient(app, base_url="http://127.0.0.1")
    for _ in range(5):
        r = client.post("/login", data=sign_in_form(client, "ops", "wrong"),
                        follow_redirects=False)
        assert r.headers["location"] == "/login?error=wrong"
    r = client.post("/login", data=sign_in_form(client, "ops", PASSWORD),
                    follow_redirects=False)
    assert "error=wait" in r.headers["location"] and int(r.headers["Retry-After"]) >= 1
    # Refused without the password being tried, however right; the wait announced holds.
    clock.now += timedelta(seconds=int(r.headers["Retry-After"]))
    r = client.post("/login", data=sign_in_form(client, "ops", PASSWORD),
                    follow_redirects=False)
    assert r.headers["location"] == "/"
    kinds = [r["kind"] for r in store.audit_trail() if r["actor"] == "ops"]
    assert kinds.count("sign_in_failed") == 5 and kinds.count("sign_in_throttled") == 1
    assert kinds[0] == "sign_in"


def test_a_disabled_user_or_a_new_password_ends_the_session(board_env: Any) -> None:
    app, store, clock = board_env
    client, _ = signed_in(app, "ops")
    store.update_user("ops", clock(), disabled=True)
    assert client.get("/api/me").status_code == 401
    store.update_user("ops", clock(), disabled=False)
    client, _ = signed_in(app, "ops")
    store.update_user("ops", clock(), password_hash=access.hash_password("another password"))
    assert client.get("/api/me").status_code == 401


def test_the_first_admin_must_change_the_one_time_password(store: Store, demo: Topology,
                                                           tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    password = first_admin(store, datetime.now(UTC), out)
    assert password and password in out.getvalue()
    assert first_admin(store, datetime.now(UTC), io.StringIO()) is None  # once only
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    app = create_app(build(config, store, lambda: demo))
    client, csrf = signed_in(app, "admin", password)
    assert client.get("/", follow_redirects=False).headers["location"] == "/password"
    r = post(client, csrf, "/api/password", {"current": password, "new": "short"})
    assert r.status_code == 400 and "10" in r.json()["error"]
    r = post(client, csrf, "/api/password", {"current": password, "new": "a much longer one"})
    assert r.status_code == 200
    assert client.get("/api/me").status_code == 401  # signed out by the change
    client, _ = signed_in(app, "admin", "a much longer one")
    assert client.get("/", follow_redirects=False).status_code == 200


def test_storm_retry_and_silence_run_the_operator_steps(board_env: Any, demo: Topology) -> None:
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    assert post(client, csrf, "/api/storm", {"declare": True, "hours": 2,
                                             "note": "台风"}).status_code == 200
    assert storm_declared(store.kv_get(STORM_KEY), clock())
    assert client.get("/api/overview").json()["storm"]["by"] == "board:ops"
    assert post(client, csrf, "/api/storm", {"declare": True, "hours": -1}).status_code == 400
    assert post(client, csrf, "/api/storm", {"declare": False}).status_code == 200
    assert not storm_declared(store.kv_get(STORM_KEY), clock())
    r = post(client, csrf, "/api/outbox/retry", {"ids": [999999]})
    assert r.status_code == 404 and "999999" in r.json()["error"]
    feeder = demo.feeders[0]
    until = (clock() + timedelta(hours=1)).astimezone(ZoneInfo("Asia/Shanghai")).strftime(
        "%Y-%m-%d %H:%M")  # local time of the config's zone, as the page sends it
    r = post(client, csrf, "/api/silences", {"matcher": "feeder", "value": feeder,
                                             "until": until, "reason": "检修联调"})
    assert r.status_code == 200, r.text
    assert [s["value"] for s in client.get("/api/silences").json()] == [feeder]
    assert post(client, csrf, "/api/silences", {"matcher": "feeder", "value": feeder,
                                                "until": until}).status_code == 400


def test_a_dead_outage_notice_of_an_incident_since_ended_is_not_resent_unforced(
        board_env: Any, demo: Topology) -> None:
    """The village heard the outage was cancelled (or its power is back); resending the dead
    故障停电通知 after that would tell it its power is off again."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    outage = next(m for m in store.messages(incident_id=iid) if m.purpose == "outage")
    store.mark_dead(outage.id, clock(), "HTTP 500")
    r = post(client, csrf, f"/api/incidents/{iid}/cancel", {"reason": "误报"})
    assert r.status_code == 200, r.text
    r = post(client, csrf, "/api/outbox/retry", {"ids": [outage.id]})
    assert r.status_code == 409
    assert f"{outage.id}: out of date (outage of {iid}: overtaken by message" in r.text  # the cancellation
    assert next(m for m in store.messages() if m.id == outage.id).status == "dead"
    r = post(client, csrf, "/api/outbox/retry", {"ids": [outage.id], "force": True})
    assert r.status_code == 200
    assert next(m for m in store.messages() if m.id == outage.id).status == "pending"


def test_retrying_every_dead_letter_sends_those_that_may_go_and_names_the_rest(
        board_env: Any, demo: Topology) -> None:
    """The overview's 重发 (every dead letter, ``partial``): after a storm some are always
    out of date; the others, a village never told of its outage, go all the same."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    ended = open_incident(client, csrf, demo)
    clock.now += timedelta(minutes=1)  # a second call, on another line
    r = post(client, csrf, "/api/incidents", {"transformers": demo.transformers[-2:]})
    assert r.status_code == 200, r.text
    still = str(r.json()["result"])
    dead = [next(m for m in store.messages(incident_id=i) if m.purpose == "outage")
            for i in (ended, still)]
    for m in dead:
        store.mark_dead(m.id, clock(), "HTTP 500")
    assert post(client, csrf, f"/api/incidents/{ended}/cancel", {"reason": "误报"}
                ).status_code == 200
    ids = [m.id for m in dead]
    r = post(client, csrf, "/api/outbox/retry", {"ids": ids})  # all or nothing: nothing
    assert r.status_code == 409
    r = post(client, csrf, "/api/outbox/retry", {"ids": ids, "partial": True})
    assert r.status_code == 200, r.text
    said = r.json()["result"]
    assert said.startswith(f"requeued 1: {dead[1].id}") and f"{dead[0].id}: out of date" in said
    status = {m.id: m.status for m in store.messages()}
    assert (status[dead[0].id], status[dead[1].id]) == ("dead", "pending")


def test_a_held_notice_the_incident_moved_past_is_not_resent_unforced(
        board_env: Any, demo: Topology) -> None:
    """A "power back" notice held while the restoration was undone (the village is off
    again), or an expected time overtaken by a newer one, would leave the village reading what
    is no longer so."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    later = (clock() + timedelta(hours=2)).astimezone(ZoneInfo("Asia/Shanghai"))
    for hours in (2, 3):
        r = post(client, csrf, f"/api/incidents/{iid}/etr",
                 {"time": (later + timedelta(hours=hours - 2)).strftime("%Y-%m-%d %H:%M")})
        assert r.status_code == 200, r.text
    updates = [m for m in store.messages(incident_id=iid) if m.purpose == "update"]
    assert len({m.revision for m in updates}) == 2
    old = min(updates, key=lambda m: m.id)
    store.mark_dead(old.id, clock(), "HTTP 500")
    r = post(client, csrf, "/api/outbox/retry", {"ids": [old.id]})
    assert r.status_code == 409 and f"{old.id}: out of date (update of {iid}: overtaken by message" in r.text

    clock.now += timedelta(minutes=5)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    back = [m for m in store.messages(incident_id=iid) if m.purpose == "restored"]
    assert back
    for m in back:
        store.mark_dead(m.id, clock(), "HTTP 500")
    clock.now += timedelta(minutes=5)
    r = post(client, csrf, f"/api/incidents/{iid}/reopen",
             {"transformers": demo.transformers[:2]})
    assert r.status_code == 200, r.text
    r = post(client, csrf, "/api/outbox/retry", {"ids": [back[0].id]})
    assert r.status_code == 409 and f"{back[0].id}: out of date (restored of {iid}:" in r.text
    assert ("overtaken" in r.text) or ("off again" in r.text)
    assert {m.status for m in store.messages(ids={m.id for m in back})} == {"dead"}


def test_a_refused_scope_correction_changes_nothing(board_env: Any, demo: Topology) -> None:
    """An area to add and an unknown one to remove: refused as a whole, nothing added and
    nobody told (the add used to go through before the remove was read)."""
    app, store, _clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    before = store.get_incident(iid)
    queued = len(store.messages(incident_id=iid))
    extra = next(t for t in demo.transformers if t not in before["state"]["estimate"][
        "transformers"] and demo.nodes[t].village)
    r = post(client, csrf, f"/api/incidents/{iid}/scope", {"add": [extra], "remove": ["T-NOPE"]})
    assert r.status_code in (400, 409) and "T-NOPE" in r.text
    after = store.get_incident(iid)
    assert after["state"]["estimate"]["transformers"] == before["state"]["estimate"][
        "transformers"]
    assert len(store.messages(incident_id=iid)) == queued


def test_a_village_added_after_the_dispatch_hears_of_its_special_care_households(
        board_env: Any, demo: Topology) -> None:
    """The crew was sent to 南谢庄村's outage; the command centre then adds 小卢堤村 3#, where
    a household lives on a ventilator. Its liaisons hear of it as they would have at the
    dispatch (the care list was built only then)."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/incidents", {"transformers": ["T-MJ01-020", "T-MJ01-021"]})
    iid = str(r.json()["result"])
    assert any(m.purpose == "dispatch" for m in store.messages(incident_id=iid))
    assert not [m for m in store.messages(incident_id=iid)
                if m.purpose == "care" and m.payload.get("village") == "V034"]
    clock.now += timedelta(minutes=5)
    r = post(client, csrf, f"/api/incidents/{iid}/scope", {"add": ["T-MJ01-018"]})
    assert r.status_code == 200, r.text
    care = [m for m in store.messages(incident_id=iid)
            if m.purpose == "care" and m.payload.get("village") == "V034"]
    assert care  # a group hears the count; a liaison reached in person, the names
    assert all("郭淑荣" in m.body for m in care if m.channel == "sms")
    clock.now += timedelta(minutes=5)
    assert post(client, csrf, f"/api/incidents/{iid}/etr", {"time": (clock.now + timedelta(
        hours=3)).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")}
                ).status_code == 200
    assert len([m for m in store.messages(incident_id=iid) if m.purpose == "care"
                and m.payload.get("village") == "V034"]) == len(care)  # once per liaison


def test_the_fault_device_set_from_the_board_is_shown_as_the_operators(
        board_env: Any, demo: Topology) -> None:
    """南谢庄村's outage: the page offers the estimate's devices with the localiser's words;
    the operator sets 马集线#78杆柱上重合器 (above both areas): the page says who set it and
    the close-out starts from it. A bad body is refused naming its key."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/incidents", {"transformers": ["T-MJ01-020", "T-MJ01-021"]})
    iid = str(r.json()["result"])
    page = client.get(f"/api/incidents/{iid}").json()
    assert page["certainty"]["basis"] == "inferred" and page["device_set"] == []
    assert "疑似动作" in page["certainty"]["label"] and "100%" not in page["certainty"]["label"]
    for body, status, said in (({"devices": 5}, 400, "devices:"),
                               ({"devices": [1]}, 400, "devices:"),
                               ({"devices": []}, 400, "devices: choose"),  # none given
                               ({"devices": ["FU-NOPE"]}, 400, "FU-NOPE"),
                               ({"devices": "BRK-CG01"}, 409, "feeder CG01")):
        r = post(client, csrf, f"/api/incidents/{iid}/device", body)
        assert (r.status_code, said in r.text) == (status, True), (body, r.text)
    clock.now += timedelta(minutes=2)
    r = post(client, csrf, f"/api/incidents/{iid}/device",
             {"devices": ["RC-MJ01-2"], "note": "SCADA"})
    assert r.status_code == 200, r.text
    page = client.get(f"/api/incidents/{iid}").json()
    assert (page["certainty"]["basis"], page["certainty"]["set_by"]) == ("set", "board:ops")
    assert page["certainty"]["label"] == "运行人员确认" and page["probability"] is None
    assert [d["id"] for d in page["device_set"]] == ["RC-MJ01-2"]
    assert page["closable"][0]["id"] == "RC-MJ01-2" and page["devices"][0]["id"] == "RC-MJ01-2"
    assert any(e["stage"] == "device_set" and e["actor"] == "board:ops" and "RC-MJ01-2" in
               e["details"] for e in page["timeline"])


def test_the_event_stream_announces_a_commit_by_anyone(board_env: Any, demo: Topology) -> None:
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    got: list[str] = []

    def listen() -> None:
        with client.stream("GET", "/api/events") as stream:
            for line in stream.iter_lines():
                got.append(line)
                if line.startswith("event: change"):
                    return

    with client:  # runs the lifespan: the change watcher
        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not any(line.startswith("event: hello") for line in got):
            assert datetime.now(UTC) < deadline
            threading.Event().wait(0.05)
        store.kv_set(STORM_KEY, {"declared": True, "by": "operator:cli"}, clock())  # the CLI
        reader.join(10)
    assert any(line.startswith("event: change") for line in got), got


def test_the_map_is_drawn_from_the_bundle(board_env: Any, demo: Topology) -> None:
    app, _, _ = board_env
    client, _ = signed_in(app, "watch")
    data = client.get("/api/map").json()
    assert data["mode"] == "geo"
    assert len(data["areas"]) == len(demo.transformers)
    assert {f["id"] for f in data["feeders"]} <= set(demo.feeders)
    assert len(client.get("/api/map").content) < 1_000_000


def test_reports_are_viewed_and_downloaded_from_the_board(board_env: Any,
                                                         demo: Topology) -> None:
    import io
    import zipfile

    import openpyxl

    app, _store, clock = board_env
    client, csrf = signed_in(app, "watch")
    ops, ops_csrf = signed_in(app, "ops")
    iid = open_incident(ops, ops_csrf, demo)
    clock.now += timedelta(minutes=30)
    assert post(ops, ops_csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    today = clock().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert "报表" in client.get("/reports").text
    base = f"/reports/view?period=range&from={today}&to={today}"
    page = client.get(base + "&format=html")
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    assert iid in page.text
    xlsx = client.get(base + "&format=xlsx")
    assert "attachment" in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert len(book.sheetnames) >= 3
    csvs = zipfile.ZipFile(io.BytesIO(client.get(base + "&format=csv").content))
    names = csvs.namelist()
    assert any(n.endswith("_by_feeder.csv") for n in names)
    assert any(iid in csvs.read(n).decode("utf-8-sig") for n in names)
    bad = client.get("/reports/view?period=range&from=2026-13-01", follow_redirects=False)
    assert bad.status_code == 303 and "from" in bad.headers["location"]
    assert client.get("/reports/view?period=hourly", follow_redirects=False).status_code == 303


def test_the_language_switch_stays_on_this_site(board_env: Any) -> None:
    app, _store, _clock = board_env
    client, _ = signed_in(app, "watch")
    for referer, back in (("http://127.0.0.1/reports", "/reports"),
                          ("https://evil.example/x", "/x"), ("//evil.example/", "/")):
        r = client.get("/language?to=en", headers={"referer": referer},
                       follow_redirects=False)
        assert r.headers["location"] == back
    assert client.get("/api/me").json()["language"] == "en"
    english = TestClient(app, base_url="http://127.0.0.1")
    english.cookies.set("sentinel_language", "en")
    assert "Sign in" in english.get("/login").text
    overview = client.get("/api/overview").json()
    assert overview["incidents"] == []


def test_every_response_carries_the_security_headers(board_env: Any) -> None:
    app, _store, _clock = board_env
    client = TestClient(app, base_url="http://127.0.0.1")
    for path in ("/login", "/healthz", "/static/board.js"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy


def test_the_overview_lists_what_awaits_close_out_and_what_was_quarantined(
        board_env: Any, demo: Topology) -> None:
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    assert post(client, csrf, f"/api/incidents/{iid}/cancel", {"reason": "误报"}).status_code == 200
    store.quarantine(Quarantined("feed95598", "record 3: start (startTime): expected a time, "
                                 "call 13912345678", {"x": 1}), clock())
    viewer, _ = signed_in(app, "watch")
    data = viewer.get("/api/overview").json()
    assert [t["id"] for t in data["to_close"]] == [iid] and data["to_close"][0]["status"] == \
        "cancelled"
    assert data["quarantine"]["total"] == 1
    (q,) = data["quarantine"]["latest"]
    assert q["source"] == "feed95598" and "startTime" in q["reason"]
    assert "13912345678" not in json.dumps(data)
    # Closed out, it leaves the list.
    assert post(client, csrf, f"/api/incidents/{iid}/close", {"cause": "其他"}).status_code == 200
    data = client.get("/api/overview").json()
    assert data["to_close"] == [] and data["to_close_total"] == 0


def test_the_close_out_list_says_how_many_await_beyond_what_it_lists(
        board_env: Any, demo: Topology) -> None:
    """The list shows the latest of a week; one ended eight days ago is still counted."""
    app, store, clock = board_env
    client, csrf = signed_in(app, "ops")
    old = open_incident(client, csrf, demo)
    assert post(client, csrf, f"/api/incidents/{old}/cancel", {"reason": "误报"}).status_code == 200
    clock.now += timedelta(days=8)
    client, csrf = signed_in(app, "ops")  # a new shift
    recent = open_incident(client, csrf, demo)
    assert post(client, csrf, f"/api/incidents/{recent}/cancel", {"reason": "误报"}
                ).status_code == 200
    data = client.get("/api/overview").json()
    assert [t["id"] for t in data["to_close"]] == [recent] and data["to_close_total"] == 2


# -- text the database cannot store (PostgreSQL refuses NUL; a lone surrogate is no UTF-8) ------


def raw_post(client: TestClient, csrf: str, path: str, body: dict[str, Any]) -> Any:
    """``body`` as ASCII JSON: a lone surrogate travels as its ``\\ud800`` escape."""
    return client.post(path, content=json.dumps(body), headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/json"})


def test_a_nul_in_a_sign_in_is_refused_naming_the_field_and_audited(board_env: Any) -> None:
    app, store, _clock = board_env
    client = TestClient(app, base_url="http://127.0.0.1")
    r = client.post("/login", data=sign_in_form(client, "op\x00s", PASSWORD),
                    follow_redirects=False)
    assert r.status_code == 400 and "user：含有无法保存的字符" in r.text
    [failed] = [a for a in store.audit_trail() if a["kind"] == "sign_in_failed"]
    assert failed["actor"] == "op\\x00s" and failed["detail"].startswith("user: contains")
    signed_in(app, "ops")  # the board still answers


def test_an_action_with_text_the_database_cannot_store_changes_nothing(
        board_env: Any, demo: Topology) -> None:
    app, store, _clock = board_env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    before = (store.get_incident(iid)["revision"], len(store.messages()))
    asked = [("/api/incidents", {"transformers": demo.transformers[2:3], "caller": "x\x00"},
              "caller"),
             (f"/api/incidents/{iid}/ack", {"note": "a\x00b"}, "note"),
             (f"/api/incidents/{iid}/ack", {"note": "a\ud800b"}, "note"),
             (f"/api/incidents/{iid}/etr", {"time": "2026-12-01 08:00", "note": ["\x00"]},
              "note[0]"),
             (f"/api/incidents/{iid}/ack", {"no\x00te": "x"}, "the key 'no\\x00te'"),
             ("/api/silences", {"matcher": "feeder", "value": "CG01", "until": "x",
                                "reason": "\udc80"}, "reason")]
    for path, body, key in asked:
        r = raw_post(client, csrf, path, body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == (f"{key}: contains a character the database cannot "
                                     "store (NUL or a lone surrogate)")
    assert (store.get_incident(iid)["revision"], len(store.messages())) == before
    assert len(store.load_incidents(open_only=False)) == 1
    refused = [a for a in store.audit_trail() if a["kind"] == "action" and not a["ok"]]
    assert len(refused) == len(asked) and all("cannot store" in a["detail"] for a in refused)
    assert raw_post(client, csrf, "/api/password", {"current": PASSWORD,
                                                    "new": "\x00" * 12}).status_code == 400


def test_a_parameter_the_database_cannot_store_is_refused_naming_it(board_env: Any) -> None:
    app, _store, _clock = board_env
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/incidents/INC%00/ack", {})
    assert r.status_code == 400 and r.json()["error"].startswith("incident_id: contains")
    r = client.get("/api/outbox?status=%00")
    assert r.status_code == 400 and r.json()["error"].startswith("status: contains")
    assert client.get("/f/abc%00def").status_code == 400  # a field link, before its lookup


def test_a_report_day_out_of_range_is_the_pages_error_naming_the_parameter(
        board_env: Any) -> None:
    app, _store, _clock = board_env
    client, _csrf = signed_in(app, "watch")
    for query, key, day in (("period=daily&from=9999-12-31", "from", "9999-12-31"),
                            ("period=weekly&from=9999-12-31", "from", "9999-12-31"),
                            ("period=range&from=2026-01-01&to=0001-01-02", "to", "0001-01-02"),
                            ("period=range&from=0001-01-01", "from", "0001-01-01")):
        r = client.get(f"/reports/view?{query}", follow_redirects=False)
        assert r.status_code == 303, (query, r.status_code)
        error = parse_qs(urlparse(r.headers["location"]).query)["error"][0]
        assert error == f"{key}: {day} is out of range: a day from 1970-01-01 to 2199-12-31"
        assert error in client.get(r.headers["location"]).text
