"""What the board's audit found, fixed: the report's CSV export masks the dead letters'
numbers; the board's actions run on the topology bundle in use after a reload; the overview
counts down to the deadline the daemon holds the crew to; a scope correction is refused whole
or applied whole; stored errors shown without their secrets; the CLI masks what the board
masks; the status codes, audit fields and field names of the board's refusals; a wrong
current password is audited and throttled like a failed sign-in."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from starlette.testclient import TestClient

from outage_sentinel.board import access
from outage_sentinel.board.actions import request_fields
from outage_sentinel.board.app import Board, create_app
from outage_sentinel.board.serve import build
from outage_sentinel.cli import EXIT_USAGE, main
from outage_sentinel.config import load_config, parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.logs import register_secret
from outage_sentinel.store import Store
from outage_sentinel.store.schema import outbox_t
from outage_sentinel.topology import Topology, load_bundle
from tests.e2e_helpers import sign_in_form
from tests.test_board_app import PASSWORD, Clock, post, signed_in
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in as page_sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
#: A whole mainland mobile number.
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
TZ = ZoneInfo("Asia/Shanghai")
SECRET = "hookkey-SECRET-abcdef123456"
#: A new crew in the bundle reloaded (crews.csv's columns).
NEW_CREW = "CR99,新抢修班,15000009999,wecom,新抢修班群,CG01;CG02;CG03,36.49,115.50,城关供电所,张三\n"

Env = tuple[Any, Store, Clock, Board]


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


@pytest.fixture
def env(store: Store, demo: Topology, tmp_path: Path) -> Iterator[Env]:
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    for name, role in (("ops", "operator"), ("watch", "viewer")):
        assert store.add_user(name, role, access.hash_password(PASSWORD), clock())
    board = build(config, store, lambda: demo, clock)
    yield create_app(board), store, clock, board


def open_village(client: TestClient, csrf: str, village: str = "V003") -> str:
    r = post(client, csrf, "/api/incidents", {"transformers": village})
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def kill_every_message(store: Store, now: datetime, error: str) -> None:
    """Every queued message given up (a dead letter) with ``error``."""
    with store.engine.begin() as conn:
        conn.execute(sa.update(outbox_t).values(status="dead", dead_at=now, last_error=error))


# -- 1. the report's CSV export ---------------------------------------------------------------


def test_a_viewers_csv_export_masks_the_dead_letters_numbers_and_secrets(
        env: Env, no_secrets: None) -> None:
    app, store, clock, _ = env
    ops, csrf = signed_in(app, "ops")
    iid = open_village(ops, csrf)
    register_secret(SECRET)
    kill_every_message(store, clock(), f"POST https://hook/send?key={SECRET}: 13912345678 busy")
    recipients = {m.recipient for m in store.messages(incident_id=iid)}
    assert any(PHONE.search(r) for r in recipients)  # what the export used to show whole
    watch, _ = signed_in(app, "watch")
    day = clock().astimezone(TZ).date().isoformat()
    r = watch.get(f"/reports/view?period=range&from={day}&to={day}&format=csv")
    assert r.status_code == 200, r.text
    files = zipfile.ZipFile(io.BytesIO(r.content))
    texts = {name: files.read(name).decode("utf-8-sig") for name in files.namelist()}
    for name, text in texts.items():
        assert not PHONE.search(text) and SECRET not in text, name
    dead = pd.read_csv(io.StringIO(next(t for n, t in texts.items()
                                        if n.endswith("_dead_letters.csv"))))
    # The columns stay (machines read them): the values are masked, one row per message.
    assert len(dead) == len(store.messages())
    assert set(dead["last_error"]) == {"POST https://hook/send?key=***: 139****5678 busy"}
    assert any("****" in str(r) for r in dead["recipient"])


def test_the_reports_masked_columns_hide_secrets_for_people_too(
        env: Env, no_secrets: None) -> None:
    app, store, clock, _ = env
    ops, csrf = signed_in(app, "ops")
    open_village(ops, csrf)
    register_secret(SECRET)
    kill_every_message(store, clock(), f"POST https://hook/send?key={SECRET}: 500")
    day = clock().astimezone(TZ).date().isoformat()
    page = ops.get(f"/reports/view?period=range&from={day}&to={day}&format=html")
    assert page.status_code == 200 and "key=***" in page.text and SECRET not in page.text


# -- 2. the board's actions after a topology reload --------------------------------------------


def test_the_boards_actions_run_on_the_bundle_reloaded(store: Store, tmp_path: Path) -> None:
    """``outage-sentinel board``'s SIGHUP swaps the bundle the board reads: a crew the new
    bundle adds is listed on the page and may be sent (it was refused "unknown crew")."""
    old = load_bundle(ROOT / "topology")
    new_dir = Path(shutil.copytree(ROOT / "topology", tmp_path / "topo"))
    with (new_dir / "crews.csv").open("a", encoding="utf-8") as f:
        f.write(NEW_CREW)
    new = load_bundle(new_dir)
    current = [old]
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    store.add_user("ops", "operator", access.hash_password(PASSWORD), clock())
    board = build(config, store, lambda: current[0], clock)
    client, csrf = signed_in(create_app(board), "ops")
    iid = open_village(client, csrf)
    current[0] = new  # what the board's reload does
    assert "CR99" in [c["id"] for c in client.get(f"/api/incidents/{iid}").json()["crews"]]
    r = post(client, csrf, f"/api/incidents/{iid}/dispatch", {"crew": "CR99"})
    assert r.status_code == 200, r.text
    assert store.get_incident(iid)["crew_id"] == "CR99"  # type: ignore[index]
    core = board.actions.core
    assert core.lifecycle.topology is new and core.planner.topology is new
    assert core.processor.topology is new and core.lifecycle.planner is core.planner


def test_the_board_inside_run_follows_the_daemons_reload(tmp_path: Path) -> None:
    """Inside ``outage-sentinel run`` the board reads the daemon's bundle: after
    :meth:`Daemon.reload_topology` its actions run on the new one too."""
    bundle = Path(shutil.copytree(ROOT / "topology", tmp_path / "topology"))
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "topology": str(bundle),
        "sources": [{"name": "unused", "type": "replay", "scenario": "none.jsonl"}],
        "channels": {"wecom": {"type": "file", "path": str(tmp_path / "sink.jsonl")},
                     "sms": {"type": "file", "path": str(tmp_path / "sms.jsonl")}}})
    clock = Clock()
    daemon = Daemon(config, sources=[], channels={}, clock=clock)
    store = Store(config.database_url())  # the board's own, as serve_board opens it
    try:
        store.add_user("ops", "operator", access.hash_password(PASSWORD), clock())
        board = build(config, store, lambda: daemon.topology, clock)
        client, csrf = signed_in(create_app(board), "ops")
        iid = open_village(client, csrf)
        with (bundle / "crews.csv").open("a", encoding="utf-8") as f:
            f.write(NEW_CREW)
        assert daemon.reload_topology()
        r = post(client, csrf, f"/api/incidents/{iid}/dispatch", {"crew": "CR99"})
        assert r.status_code == 200, r.text
        assert board.actions.core.lifecycle.topology is daemon.topology
    finally:
        store.close()
        daemon.close()


# -- 3. the overview's countdown is the daemon's deadline --------------------------------------


def test_a_revived_incidents_countdown_is_the_deadline_the_daemon_holds(env: Env) -> None:
    """Restored, then off again three hours later: the daemon sends the crew with a deadline
    counted from when it went off again; the card counted from the incident's creation and
    showed it long missed."""
    app, store, clock, board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    clock.now += timedelta(minutes=20)
    assert post(client, csrf, f"/api/incidents/{iid}/arrive", {}).status_code == 200
    clock.now += timedelta(minutes=20)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    clock.now += timedelta(hours=3)
    r = post(client, csrf, f"/api/incidents/{iid}/reopen", {"transformers": "V003"})
    assert r.status_code == 200, r.text
    clock.now += timedelta(minutes=1)
    life = board.actions.core.lifecycle
    life.check(clock.now)  # the daemon's clock check sends the crew again
    with store.transaction() as conn:
        inc, row = life.load_in(conn, iid)
        held, area, _ = life.dispatcher.deadline_in(conn, inc, row, clock.now)
    assert held > clock.now  # hours away, not missed
    card = next(c for c in client.get("/api/overview").json()["incidents"] if c["id"] == iid)
    assert (card["deadline"], card["deadline_area"]) == (held.isoformat(), area)
    assert card["deadline_state"] in ("ok", "amber")
    page = client.get(f"/api/incidents/{iid}").json()
    assert page["deadline"] == held.isoformat()


# -- 4. a scope correction is refused whole ----------------------------------------------------


def test_a_scope_correction_adding_and_removing_at_once_changes_nothing(
        env: Env, demo: Topology) -> None:
    app, store, _clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    detail = client.get(f"/api/incidents/{iid}").json()
    inside = {a["id"] for a in detail["areas"]}
    other, stray = [t for t in demo.transformers
                    if t not in inside and demo.nodes[t].feeder == detail["feeder"]][:2]
    log, queued = len(store.incident_log(iid)), len(store.messages(incident_id=iid))
    r = post(client, csrf, f"/api/incidents/{iid}/scope", {"add": [other], "remove": [stray]})
    assert r.status_code == 400 and "add, remove:" in r.json()["error"]
    assert other not in {a["id"] for a in client.get(f"/api/incidents/{iid}").json()["areas"]}
    assert len(store.incident_log(iid)) == log
    assert len(store.messages(incident_id=iid)) == queued  # no village told
    (entry,) = [a for a in store.audit_trail(10) if a["action"] == "scope"]
    assert not entry["ok"] and other in entry["detail"] and stray in entry["detail"]
    # Each on its own still goes (or is refused) as before.
    assert post(client, csrf, f"/api/incidents/{iid}/scope", {"add": [other]}).status_code == 200
    r = post(client, csrf, f"/api/incidents/{iid}/scope", {"remove": [stray]})
    assert r.status_code == 409 and stray in r.text


# -- 5. stored errors shown without their secrets ----------------------------------------------


def test_the_incident_page_and_the_sources_show_no_stored_secret(
        env: Env, no_secrets: None) -> None:
    app, store, clock, _ = env
    ops, csrf = signed_in(app, "ops")
    iid = open_village(ops, csrf)
    register_secret(SECRET)  # as loading the config does for every ${VAR}
    kill_every_message(store, clock(), f"POST https://qyapi/send?key={SECRET}: 500")
    store.kv_set("health:feed", {"ok": False, "last_ok": None,
                                 "error": f"GET https://feed/?token={SECRET}: 401"}, clock())
    watch, _ = signed_in(app, "watch")
    page = watch.get(f"/api/incidents/{iid}").json()
    errors = [n["error"] for n in page["notices"]]
    assert errors and all(e == "POST https://qyapi/send?key=***: 500" for e in errors)
    (source,) = [s for s in watch.get("/api/overview").json()["sources"] if s["name"] == "feed"]
    assert source["error"] == "GET https://feed/?token=***: 401"


# -- 6. and 7. the CLI masks what the board masks; the CLI's words stay its own ----------------


@pytest.fixture
def cli_config(tmp_path: Path) -> str:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["state_dir"] = str(tmp_path / "state")
    data["topology"] = str(ROOT / "topology")
    for source in data["sources"]:
        if "scenario" in source:
            source["scenario"] = str(ROOT / source["scenario"])
    for channel in data["channels"].values():
        if channel.get("type") == "file":
            channel["path"] = str(tmp_path / "notices.jsonl")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def cli_open(config: str, capsys: Any) -> str:
    assert main(["--config", config, "incidents", "open", "--transformers", "V003"]) == 0
    found = re.search(r"INC-[\w-]+", capsys.readouterr().out)
    assert found
    return found.group(0)


def test_storm_status_and_silence_list_mask_numbers(cli_config: str, capsys: Any) -> None:
    assert main(["--config", cli_config, "storm", "declare", "--note", "台风预警，值班 13812345678",
                 "--actor", "wang"]) == 0
    assert main(["--config", cli_config, "silence", "add", "--feeder", "CG01", "--until",
                 "2099-01-01 00:00", "--reason", "检修，联系 13912345678", "--actor", "wang"]) == 0
    capsys.readouterr()
    assert main(["--config", cli_config, "storm", "status"]) == 0
    assert main(["--config", cli_config, "silence", "list"]) == 0
    out = capsys.readouterr().out
    assert not PHONE.search(out)
    assert "值班 138****5678" in out and "联系 139****5678" in out


def test_the_cli_report_csv_masks_the_dead_letters(cli_config: str, capsys: Any,
                                                   tmp_path: Path) -> None:
    cli_open(cli_config, capsys)
    store = Store(load_config(Path(cli_config)).database_url())
    try:
        kill_every_message(store, datetime.now(UTC), "refused: 13912345678")
    finally:
        store.close()
    day = datetime.now(TZ).date().isoformat()
    out = tmp_path / "r.csv"
    assert main(["--config", cli_config, "report", "range", "--from", day, "--to", day,
                 "--format", "csv", "--out", str(out)]) == 0
    dead = (tmp_path / "r_dead_letters.csv").read_text(encoding="utf-8-sig")
    assert len(dead.splitlines()) > 1 and "refused: 139****5678" in dead
    assert not PHONE.search(dead)


def test_the_cli_refuses_a_scope_adding_and_removing_at_once(cli_config: str, capsys: Any,
                                                            demo: Topology) -> None:
    iid = cli_open(cli_config, capsys)
    other = next(t for t in demo.transformers if demo.nodes[t].feeder == "CG01"
                 and demo.nodes[t].village != "V003")
    stray = next(t for t in demo.transformers if demo.nodes[t].feeder == "CG01"
                 and demo.nodes[t].village != "V003" and t != other)
    assert main(["--config", cli_config, "incidents", "scope", iid, "--add", other,
                 "--remove", stray]) == EXIT_USAGE
    assert "one at a time" in capsys.readouterr().err
    store = Store(load_config(Path(cli_config)).database_url())
    try:
        assert "scope_added" not in [e["stage"] for e in store.incident_log(iid)]
    finally:
        store.close()


def test_the_cli_still_names_its_options(cli_config: str, capsys: Any) -> None:
    """The board's refusals name its fields; the CLI's name its options, as they did."""
    iid = cli_open(cli_config, capsys)
    assert main(["--config", cli_config, "incidents", "restore", iid, "--at",
                 "2099-01-01 00:00"]) != 0
    assert "--at 2099-01-01 00:00 is in the future" in capsys.readouterr().err


# -- 7. status codes, audit fields, and the fields the board's refusals name -------------------


def test_the_boards_refusals_name_its_fields_with_the_right_status(env: Env) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    r = post(client, csrf, f"/api/incidents/{iid}/device", {})
    assert (r.status_code, r.json()["error"]) == (400, "devices: choose or type the fault device")
    r = post(client, csrf, f"/api/incidents/{iid}/restore", {"at": "2099-01-01 00:00"})
    assert (r.status_code, r.json()["error"]) == (400, "at: 2099-01-01 00:00 is in the future")
    past = (clock() - timedelta(days=1)).astimezone(TZ).replace(second=0, microsecond=0)
    r = post(client, csrf, "/api/silences", {"matcher": "feeder", "value": "CG01",
                                             "until": past.strftime("%Y-%m-%d %H:%M"),
                                             "reason": "检修"})
    assert (r.status_code, r.json()["error"]) == (  # the local time typed (it was UTC ISO)
        400, f"until: {past.strftime('%Y-%m-%d %H:%M')} has passed")
    entries = [a for a in store.audit_trail(10) if a["action"] in ("restore", "silence")]
    assert all("--" not in a["detail"] for a in entries) and len(entries) == 2


def test_a_close_outs_audit_entry_keeps_unconfirmed_ok() -> None:
    assert request_fields("close", {"cause": "树障", "unconfirmed_ok": True}) == {
        "cause": "树障", "unconfirmed_ok": True}


# -- the password change: audited and throttled as a sign-in -----------------------------------


def test_a_wrong_current_password_is_audited_and_throttled_like_a_sign_in(env: Env) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    change = {"current": "not my password", "new": "a brand new password"}
    clock.now += timedelta(seconds=1)  # failures count after the last sign-in
    for _ in range(5):  # board.max_failed_sign_ins
        r = post(client, csrf, "/api/password", change)
        assert (r.status_code, r.json()["error"]) == (400, "the current password is wrong")
    failed = [a for a in store.audit_trail(20) if a["kind"] == "sign_in_failed"]
    assert len(failed) == 5 and all(a["actor"] == "ops" and a["action"] == "password"
                                    for a in failed)
    r = post(client, csrf, "/api/password", {**change, "current": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # not even tried
    assert store.audit_trail(1)[0]["kind"] == "sign_in_throttled"
    # One count with the sign-in page's: no more guesses there either.
    other = TestClient(app, base_url="http://127.0.0.1")
    r = other.post("/login", data=sign_in_form(other, "ops", PASSWORD), follow_redirects=False)
    assert "error=wait" in r.headers["location"]
    clock.now += timedelta(minutes=6)
    r = post(client, csrf, "/api/password", {**change, "current": PASSWORD})
    assert r.status_code == 200, r.text


# == the second audit ===========================================================================
# A silenced notice retried while its silence holds; the live stream and the outbox's status
# changes; a released notice's age; deadlines only where a crew is held to one; times in local
# time; a storm request without ``declare``; unknown keys; forcing from the page; CSRF
# refusals audited; ``--force`` named as the board's field.


def file_channels(path: Path) -> dict[str, Any]:
    from outage_sentinel.channels.file import FileChannel

    return {n: FileChannel(n, path=path) for n in ("wecom", "dingtalk", "feishu", "sms")}


def refused_channels() -> dict[str, Any]:
    """Every channel a webhook to a local port nothing listens on: each send fails (and is
    retried, or dead-lettered once too old)."""
    from outage_sentinel.channels.webhook import WebhookChannel
    from tests.e2e_helpers import free_port

    url = f"http://127.0.0.1:{free_port()}/hook/{{target}}"
    return {n: WebhookChannel(n, url=url, timeout=2.0)
            for n in ("wecom", "dingtalk", "feishu", "sms")}


def deliverer_of(board: Board, store: Store, demo: Topology, channels: dict[str, Any]) -> Any:
    """The daemon's deliverer over the board's store: its retry policy, its silences."""
    from outage_sentinel.delivery import Deliverer
    from outage_sentinel.metrics import Metrics
    from outage_sentinel.retry import RetryPolicy
    from outage_sentinel.silencing import Silencing

    config = load_config(ROOT / "config.yaml")
    return Deliverer(store, channels, RetryPolicy.from_config(config.delivery.retry), Metrics(),
                     tz=TZ, muter=Silencing(store, lambda: demo), rand=lambda: 0.5)


def silenced_notice(env: Env, demo: Topology, tmp_path: Path) -> tuple[TestClient, str, int,
                                                                        int, Any]:
    """An incident silenced (till tomorrow) and one of its notices muted by the deliverer:
    the client, its token, the notice, the silence and the deliverer."""
    app, store, clock, board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    until = (clock() + timedelta(days=1)).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    r = post(client, csrf, "/api/silences", {"matcher": "incident", "value": iid,
                                             "until": until, "reason": "村里要求", "force": True})
    assert r.status_code == 200, r.text
    deliver = deliverer_of(board, store, demo, file_channels(tmp_path / "sent.jsonl"))
    deliver.run_once(clock())
    muted = [m for m in store.messages(incident_id=iid) if m.status == "silenced"]
    assert muted, [(m.id, m.status, m.audience) for m in store.messages(incident_id=iid)]
    (silence,) = store.silences(holding_at=clock())
    return client, csrf, muted[0].id, silence.id, deliver


def test_a_silenced_notice_retried_while_its_silence_holds_is_refused_unless_forced(
        env: Env, demo: Topology, tmp_path: Path) -> None:
    """It was answered "requeued" and muted again at the next delivery, never sent."""
    _app, store, clock, _board = env
    client, csrf, mid, sid, deliver = silenced_notice(env, demo, tmp_path)
    (silence,) = store.silences(holding_at=clock())
    end = silence.ends_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    r = post(client, csrf, "/api/outbox/retry", {"ids": [mid]})
    assert r.status_code == 409, r.text
    assert f"silence {sid} in force until {end}; end it or force" in r.json()["error"]
    assert "--force" not in r.json()["error"]
    assert store.messages(ids=[mid])[0].status == "silenced"
    r = post(client, csrf, "/api/outbox/retry", {"ids": [mid], "force": True})
    assert r.status_code == 200, r.text
    clock.now += timedelta(seconds=1)
    deliver.run_once(clock())
    assert store.messages(ids=[mid])[0].status == "sent"  # not muted again


def test_a_forced_retry_past_a_silence_is_for_that_retry_only(
        env: Env, demo: Topology, tmp_path: Path) -> None:
    """Withdrawn and retried again later, without force, the silence decides again."""
    _app, store, clock, _board = env
    client, csrf, mid, sid, deliver = silenced_notice(env, demo, tmp_path)
    assert post(client, csrf, "/api/outbox/retry", {"ids": [mid], "force": True}
                ).status_code == 200
    # Dead before it went (a failing group), then retried without force: refused again.
    kill_every_message(store, clock(), "HTTP 500")
    r = post(client, csrf, "/api/outbox/retry", {"ids": [mid]})
    assert r.status_code == 409 and f"silence {sid} in force" in r.json()["error"], r.text
    # Once the silence is ended, a plain retry goes (and is not muted).
    assert post(client, csrf, "/api/silences", {"expire": sid}).status_code == 200
    assert post(client, csrf, "/api/outbox/retry", {"ids": [mid]}).status_code == 200
    clock.now += timedelta(seconds=1)
    deliver.run_once(clock())
    assert store.messages(ids=[mid])[0].status == "sent"


def test_a_retry_forced_past_two_silences_goes_past_both(
        env: Env, demo: Topology, tmp_path: Path) -> None:
    _app, store, clock, _board = env
    client, csrf, mid, sid, deliver = silenced_notice(env, demo, tmp_path)
    until = (clock() + timedelta(hours=5)).astimezone(TZ)
    r = post(client, csrf, "/api/silences", {"matcher": "village", "value": "V003",
                                             "until": until.strftime("%Y-%m-%d %H:%M"),
                                             "reason": "检修", "force": True})
    assert r.status_code == 200, r.text
    other = next(s.id for s in store.silences(holding_at=clock()) if s.id != sid)
    r = post(client, csrf, "/api/outbox/retry", {"ids": [mid]})
    said = r.json()["error"]
    assert r.status_code == 409 and said.endswith("; end them or force"), r.text
    assert f"silence {other} in force until {until:%Y-%m-%d %H:%M}" in said
    assert f"silence {sid} in force until " in said
    assert post(client, csrf, "/api/outbox/retry", {"ids": [mid], "force": True}
                ).status_code == 200
    clock.now += timedelta(seconds=1)
    deliver.run_once(clock())
    assert store.messages(ids=[mid])[0].status == "sent"


def test_the_live_stream_sees_every_status_change_of_the_outbox(env: Env, demo: Topology
                                                              ) -> None:
    """Hold, release, withdraw, retry and a dead letter change no row count and no sent count:
    another page never heard of them."""
    app, store, clock, board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    # A care list (a liaison's outage notice is out of date once its care list is queued),
    # and the crew's orders (the care lists wait for the outage notices they follow).
    first = next(m.id for m in store.messages(incident_id=iid) if m.purpose == "care")
    second = next(m.id for m in store.messages(incident_id=iid) if m.purpose == "dispatch")
    seen = [store.change_marker()]

    def moved() -> bool:
        seen.append(store.change_marker())
        return seen[-1] != seen[-2]

    for action, body in (("hold", {"ids": [first], "reason": "先核实"}),
                         ("release", {"ids": [first]}),
                         ("withdraw", {"ids": [first], "reason": "错村"})):
        r = post(client, csrf, f"/api/outbox/{action}", body)
        assert r.status_code == 200, (action, r.text)
        assert moved(), action
    clock.now += timedelta(hours=7)  # past delivery.retry.max_age_seconds: the first failure kills
    deliverer_of(board, store, demo, refused_channels()).run_once(clock())
    assert store.messages(ids=[second])[0].status == "dead"
    assert moved(), "dead letter"
    r = post(client, csrf, "/api/outbox/retry", {"ids": [second]})
    assert r.status_code == 200, r.text
    assert moved(), "retry"


def test_a_released_notice_gets_its_own_retry_window(env: Env, demo: Topology) -> None:
    """Held for longer than delivery.retry.max_age_seconds and released: its first failure
    dead-lettered it (the hold counted as time failing), unlike a retry."""
    app, store, clock, board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    mid = next(m.id for m in store.messages(incident_id=iid) if m.purpose == "dispatch")
    assert post(client, csrf, "/api/outbox/hold", {"ids": [mid], "reason": "先核实"}
                ).status_code == 200
    clock.now += timedelta(hours=7)
    assert post(client, csrf, "/api/outbox/release", {"ids": [mid]}).status_code == 200
    assert store.messages(ids=[mid])[0].age_from == clock.now
    deliverer_of(board, store, demo, refused_channels()).run_once(clock())
    m = store.messages(ids=[mid])[0]
    assert (m.status, m.attempts) == ("pending", 1), (m.status, m.last_error)


def ingest_planned(board: Board, store: Store, now: datetime) -> str:
    from outage_sentinel.events import OutageEvent, PollResult

    store.ingest("feed", PollResult(events=[OutageEvent(
        source="feed", event_id="P1", kind="planned", status="active",
        start=now + timedelta(days=1), expected_restoration=now + timedelta(days=1, hours=4),
        feeder="CG05", device="SW-CG05-1", transformers=("T-CG05-011", "T-CG05-012"),
        area_text="城关镇谢官庄村部分区域", cause="计划检修")]), now)
    board.actions.core.processor.process(now)
    (row,) = [r for r in store.load_incidents(open_only=True) if r["kind"] == "planned"]
    return str(row["id"])


def test_planned_work_counts_down_to_no_arrival_deadline(env: Env) -> None:
    """Planned for tomorrow, it showed a crew's arrival deadline, red (超时) two hours on."""
    app, store, clock, board = env
    client, _csrf = signed_in(app, "ops")
    iid = ingest_planned(board, store, clock())
    clock.now += timedelta(hours=2)
    (card,) = [c for c in client.get("/api/overview").json()["planned"] if c["id"] == iid]
    assert (card["deadline"], card["deadline_local"], card["deadline_area"]) == (None, None, None)
    assert card["deadline_state"] != "red"
    detail = client.get(f"/api/incidents/{iid}").json()
    assert detail["deadline"] is None and detail["deadline_state"] != "red"


def test_a_cancelled_fault_counts_down_to_no_arrival_deadline(env: Env) -> None:
    """A false alarm, the crew stood down: its page showed the deadline missed, red."""
    app, _store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    assert client.get(f"/api/incidents/{iid}").json()["deadline"]  # a fault: held to one
    assert post(client, csrf, f"/api/incidents/{iid}/cancel", {"reason": "误报"}
                ).status_code == 200
    clock.now += timedelta(hours=3)
    detail = client.get(f"/api/incidents/{iid}").json()
    assert detail["stage"] == "cancelled"
    assert (detail["deadline"], detail["deadline_state"]) == (None, "ok")


def test_the_timeline_shows_times_in_local_time_and_rounded_numbers(env: Env) -> None:
    app, _store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    assert post(client, csrf, f"/api/incidents/{iid}/dispatch", {}).status_code == 200
    etr = (clock() + timedelta(days=1)).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    assert post(client, csrf, f"/api/incidents/{iid}/etr", {"time": etr}).status_code == 200
    timeline = client.get(f"/api/incidents/{iid}").json()["timeline"]
    said = {e["stage"]: e["details"] for e in timeline}
    assert said["etr_set"] == f"预计恢复：{etr}"
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", e["details"]) for e in timeline), \
        said
    km = re.search(r"距离（公里）：([\d.]+)", said["dispatched"])
    assert km is not None and len(km.group(1).partition(".")[2]) <= 1, said["dispatched"]


def test_a_past_etr_or_silence_end_is_a_bad_value_in_the_time_typed(env: Env) -> None:
    """A past ETR was a 409 (a past ``at`` a 400), and both echoed the time in UTC ISO."""
    app, _store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    past = (clock() - timedelta(days=1)).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    r = post(client, csrf, f"/api/incidents/{iid}/etr", {"time": past})
    assert (r.status_code, r.json()["error"]) == (400, f"time: {past} has passed")
    r = post(client, csrf, "/api/silences", {"matcher": "feeder", "value": "CG01",
                                             "until": past, "reason": "检修"})
    assert (r.status_code, r.json()["error"]) == (400, f"until: {past} has passed")


def test_a_storm_request_without_declare_changes_nothing(env: Env) -> None:
    app, store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    assert post(client, csrf, "/api/storm", {"declare": True, "hours": 6}).status_code == 200
    for body in ({}, {"hours": 12}):
        r = post(client, csrf, "/api/storm", body)
        assert r.status_code == 400 and r.json()["error"].startswith("declare: "), r.text
    from outage_sentinel.triage import STORM_KEY, storm_declared
    assert storm_declared(store.kv_get(STORM_KEY), clock())


def test_an_unknown_key_in_an_action_is_refused_naming_it(env: Env) -> None:
    """A close-out posted with ``devices`` (the correction's key) closed without the device."""
    app, store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    clock.now += timedelta(minutes=5)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    r = post(client, csrf, f"/api/incidents/{iid}/close",
             {"cause": "设备故障", "devices": "FU-CG05-01", "note": "换保险"})
    assert r.status_code == 400 and r.json()["error"].startswith("devices: unknown field"), \
        r.text
    assert "device" in r.json()["error"].partition("(")[2]  # the fields it takes
    assert store.get_incident(iid)["stage"] != "closed"  # type: ignore[index]
    r = post(client, csrf, "/api/storm", {"declared": True})
    assert r.status_code == 400 and r.json()["error"].startswith("declared: unknown field")
    r = post(client, csrf, "/api/outbox/hold", {"ids": [1], "reason": "x", "force": True})
    assert r.status_code == 400 and r.json()["error"].startswith("force: unknown field")


#: Every body the board's page posts (board.js), by action: each is taken.
PAGE_BODIES: dict[str, list[dict[str, Any]]] = {
    "open": [{"feeder": "", "transformers": "V003", "caller": ""}],
    "storm": [{"declare": True}],
    "silence": [{"matcher": "feeder", "value": "CG01", "until": "2099-01-01 08:00",
                 "reason": "检修", "force": False}, {"expire": 1}],
    "retry": [{"ids": [1], "partial": True}, {"ids": [1], "force": True}],
    "release": [{"ids": [1], "force": False}],
    "hold": [{"ids": [1], "reason": ""}], "withdraw": [{"ids": [1], "reason": "x"}],
    "ack": [{"note": ""}], "dispatch": [{"crew": "", "note": ""}], "arrive": [{"note": ""}],
    "restore": [{"transformers": ["T1"], "note": ""}],
    "scope": [{"remove": ["T1"], "note": ""}, {"add": "T1", "note": ""}],
    "device": [{"devices": "D1", "note": ""}, {"clear": True, "note": ""}],
    "etr": [{"time": "2099-01-01 08:00", "note": ""}, {"clear": True, "note": ""}],
    "cancel": [{"reason": "x"}, {"reason": "x", "false_alarm": True}],
    "reopen": [{"transformers": ["T1"], "note": ""},
               {"transformers": ["T1"], "note": "", "again": True}],
    "close": [{"cause": "x", "device": "D1", "note": "", "unconfirmed_ok": True,
               "device_anyway": True},
              {"cause": "x", "device": "D1", "note": "", "amend": True, "device_anyway": True}],
}


def test_every_body_the_page_posts_has_only_keys_its_action_takes() -> None:
    from outage_sentinel.board.actions import unknown_key

    for action, bodies in PAGE_BODIES.items():
        for body in bodies:
            assert unknown_key(action, body) is None, (action, body)
    script = (ROOT / "outage_sentinel" / "board" / "static" / "board.js").read_text("utf-8")
    for key in re.findall(r"\b(\w+): [^,}]*\.(?:value|checked)\b", script):
        assert any(key in b for bs in PAGE_BODIES.values() for b in bs) or key in (
            "class", "id", "href", "name", "title", "placeholder", "type", "src"), key


def test_csrf_refusals_are_audited(env: Env) -> None:
    app, store, _clock, _board = env
    client, csrf = signed_in(app, "ops")
    r = client.post("/api/storm", json={"declare": True}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert client.post("/api/outbox/withdraw", json={"ids": [1], "reason": "x"}
                       ).status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    denied = [(a["actor"], a["kind"], a["action"], a["detail"]) for a in store.audit_trail(10)
              if a["kind"] == "denied"]
    assert denied == [("ops", "denied", "/logout", "csrf"),
                      ("ops", "denied", "/api/outbox/withdraw", "csrf"),
                      ("ops", "denied", "/api/storm", "csrf")]


def test_the_boards_refusals_name_force_as_its_field() -> None:
    from outage_sentinel.board.actions import refusal
    from outage_sentinel.silencing import SilenceError

    said = refusal(SilenceError("open faults with special-care households in 马集村 would be "
                                "silenced; they are never muted without --force"))
    assert said.endswith("never muted without force")


@pytest.mark.slow
def test_the_page_forces_a_retry_the_refusal_says_force_sends(
        browser: Any, served: tuple[str, Store, Any], tmp_path: Path) -> None:
    """The refusal said "force" sends it anyway, but the page had no way to force."""
    url, store, holder = served
    board = holder["board"]
    actions = board.actions
    iid = actions.open_incident({"transformers": "V003"}, "board:ops")
    until = (datetime.now(UTC) + timedelta(days=1)).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    actions.silence({"matcher": "incident", "value": iid, "until": until, "reason": "村里要求",
                     "force": True}, "board:ops")
    deliver = deliverer_of(board, store, board.topology(), file_channels(tmp_path / "s.jsonl"))
    deliver.run_once(datetime.now(UTC))
    mid = next(m.id for m in store.messages(incident_id=iid) if m.status == "silenced")
    page = page_sign_in(browser, url)
    page.goto(f"{url}/#/incident/{iid}")
    retry = f'button.retry[data-message="{mid}"]'
    page.wait_for_selector(retry, timeout=10000)
    page.click(retry)
    page.wait_for_selector("#flash.bad", timeout=10000)
    assert "end it or force" in (page.text_content("#flash") or "")
    assert store.messages(ids=[mid])[0].status == "silenced"
    page.check("#outbox-force")
    page.click(retry)
    page.wait_for_selector("#flash:not(.bad):not([hidden])", timeout=10000)
    assert "requeued 1" in (page.text_content("#flash") or "")
    m = store.messages(ids=[mid])[0]
    assert m.status == "pending" and (m.payload or {}).get("past_silences")
    page.context.close()
