"""The board's word on one message (withdraw, hold, release, retry) over a real store and the
demo topology, and what the audit keeps of every action: who asked what, with the request's
fields. A retry goes to the liaison's address in the contact directory now."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import load_config
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology, load_bundle
from tests.test_board_app import PASSWORD, ROOT, Clock, demo, open_incident, post, signed_in

__all__ = ["demo"]  # the module's fixture, shared


@pytest.fixture
def env(store: Store, demo: Topology, tmp_path: Path) -> Iterator[tuple[Any, Store, Clock,
                                                                         list[Topology]]]:
    """The board over a topology that can be swapped (a reload of the bundle)."""
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    for name, role in (("ops", "operator"), ("watch", "viewer")):
        assert store.add_user(name, role, access.hash_password(PASSWORD), clock())
    current = [demo]
    yield create_app(build(config, store, lambda: current[0], clock)), store, clock, current


def liaison_notice(store: Store, iid: str, role: str = "village_liaison") -> OutboxRow:
    return next(m for m in store.messages(incident_id=iid)
                if m.purpose == "outage" and m.payload.get("roles") == [role])


def audited(store: Store, action: str) -> list[dict[str, Any]]:
    return [a for a in store.audit_trail(1000) if a["action"] == action]


def test_a_wrong_notice_is_withdrawn_and_kept_with_who_and_why(env: Any, demo: Topology
                                                                ) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    m = liaison_notice(store, iid)
    assert post(client, csrf, "/api/outbox/withdraw", {"ids": [m.id]}).status_code == 400
    viewer, vcsrf = signed_in(app, "watch")
    assert post(viewer, vcsrf, "/api/outbox/withdraw",
                {"ids": [m.id], "reason": "x"}).status_code == 403
    r = post(client, csrf, "/api/outbox/withdraw",
             {"ids": [m.id], "reason": "村名错了，王站长 13912345678 核实"})
    assert r.status_code == 200 and r.json()["result"] == f"withdrew 1: {m.id}"
    (got,) = store.messages(ids=[m.id])
    assert got.status == "withdrawn"
    assert got.last_error == "withdrawn by board:ops: 村名错了，王站长 139****5678 核实 (was pending)"
    assert m.id not in {d.id for d in store.due_messages(clock() + timedelta(days=1))}
    shown = next(n for n in client.get(f"/api/incidents/{iid}").json()["notices"]
                 if n["id"] == m.id)
    assert shown["status"] == "withdrawn" and "board:ops" in shown["error"]
    # Withdrawn is final: not again, not retried, not released.
    for path in ("withdraw", "retry", "release", "hold"):
        r = post(client, csrf, f"/api/outbox/{path}", {"ids": [m.id], "reason": "again"})
        assert r.status_code == 409 and f"{m.id}: withdrawn" in r.json()["error"], path
    r = post(client, csrf, "/api/outbox/withdraw", {"ids": [987654], "reason": "x"})
    assert r.status_code == 404 and "no message 987654" in r.json()["error"]
    (entry, *_) = [a for a in audited(store, "withdraw") if a["ok"]]
    assert entry["actor"] == "ops" and str(m.id) in entry["detail"]
    assert "139****5678" in entry["detail"] and "13912345678" not in json.dumps(
        audited(store, "withdraw"), default=str, ensure_ascii=False)


def test_sent_and_being_sent_messages_are_refused_with_a_409(env: Any, demo: Topology) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    sent, sending = liaison_notice(store, iid), liaison_notice(store, iid, "grid_manager")
    assert store.mark_inflight(sent.id, clock()) and store.mark_inflight(sending.id, clock())
    store.mark_sent(sent.id, clock(), "errcode 0")
    for ids, why in (([sent.id], "already sent"), ([sending.id], "being sent right now")):
        for action in ("withdraw", "hold"):
            r = post(client, csrf, f"/api/outbox/{action}", {"ids": ids, "reason": "wrong"})
            assert r.status_code == 409 and why in r.json()["error"], (action, r.text)
    assert {m.id: m.status for m in store.messages(ids=[sent.id, sending.id])} == {
        sent.id: "sent", sending.id: "inflight"}
    # one refused, none done: the pending one asked with it stays pending
    other = liaison_notice(store, iid, "transformer_manager")
    r = post(client, csrf, "/api/outbox/hold", {"ids": [other.id, sent.id]})
    assert r.status_code == 409 and store.messages(ids=[other.id])[0].status == "pending"


def test_a_held_notice_is_released_unless_the_incident_moved_past_it(env: Any, demo: Topology
                                                                       ) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    a, b = liaison_notice(store, iid), liaison_notice(store, iid, "grid_manager")
    r = post(client, csrf, "/api/outbox/hold", {"ids": [a.id, b.id], "reason": "核实中"})
    assert r.status_code == 200 and r.json()["result"] == "held 2: " + ", ".join(
        map(str, sorted((a.id, b.id))))
    assert {m.status for m in store.messages(ids=[a.id, b.id])} == {"held"}
    assert not {a.id, b.id} & {d.id for d in store.due_messages(clock())}
    clock.now += timedelta(minutes=3)
    r = post(client, csrf, "/api/outbox/release", {"ids": [a.id]})
    assert r.status_code == 200, r.text
    (got,) = store.messages(ids=[a.id])
    assert (got.status, got.next_attempt_at, got.last_error) == (
        "pending", clock(), "released by board:ops")
    assert post(client, csrf, "/api/outbox/release", {"ids": [a.id]}).status_code == 409
    # The incident is called off while b is held: b is taken back with the rest.
    assert post(client, csrf, f"/api/incidents/{iid}/cancel",
                {"reason": "误报"}).status_code == 200
    assert store.messages(ids=[b.id])[0].status == "withdrawn"


def test_a_stale_held_notice_needs_force_to_be_released(env: Any, demo: Topology) -> None:
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    a = liaison_notice(store, iid)
    assert post(client, csrf, "/api/outbox/hold", {"ids": [a.id]}).status_code == 200
    clock.now += timedelta(minutes=5)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    r = post(client, csrf, "/api/outbox/release", {"ids": [a.id]})
    assert r.status_code == 409 and "out of date" in r.json()["error"]
    assert store.messages(ids=[a.id])[0].status == "held"
    r = post(client, csrf, "/api/outbox/release", {"ids": [a.id], "force": True})
    assert r.status_code == 200 and store.messages(ids=[a.id])[0].status == "pending"


def bundle_with(tmp_path: Path, edit: Any) -> Topology:
    """The demo bundle with its liaisons' rows edited (the contact directory corrected)."""
    out = tmp_path / "bundle"
    shutil.copytree(ROOT / "topology", out)
    lines = (out / "liaisons.csv").read_text(encoding="utf-8").splitlines()
    (out / "liaisons.csv").write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    return load_bundle(out)


def test_a_retry_goes_to_the_liaisons_address_now(env: Any, demo: Topology, tmp_path: Path
                                                    ) -> None:
    """The transformer manager's group of 城东 was re-created after the notice died: the
    retry goes to the new group, @-mentioning the new number, and says so."""
    app, store, clock, current = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    m = liaison_notice(store, iid, "transformer_manager")
    store.mark_dead(m.id, clock(), "HTTP 500")
    old = "V001,袁云,transformer_manager,15900007707,wecom,城东街道第一网格台区经理群"
    new = "V001,袁云,transformer_manager,15900007708,wecom,城东街道台区经理新群"
    current[0] = bundle_with(tmp_path, lambda ls: [ln.replace(old, new) for ln in ls])
    r = post(client, csrf, "/api/outbox/retry", {"ids": [m.id]})
    assert r.status_code == 200, r.text
    assert "re-addressed" in r.json()["result"] and "城东街道台区经理新群" in r.json()["result"]
    (got,) = store.messages(ids=[m.id])
    assert (got.status, got.target, got.recipient) == (
        "pending", "城东街道台区经理新群", m.recipient)
    assert got.payload["mentions"] == ["15900007708"]
    (moved,) = got.payload["readdressed"]
    assert (moved["from"], moved["to"]) == ("城东街道第一网格台区经理群", "城东街道台区经理新群")
    assert "re-addressed" in got.last_error
    (entry,) = [a for a in audited(store, "retry") if a["ok"]]
    assert "re-addressed" in entry["detail"]


def test_a_retry_to_a_recipient_no_longer_in_the_directory_is_refused(
        env: Any, demo: Topology, tmp_path: Path) -> None:
    app, store, clock, current = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    m = liaison_notice(store, iid, "transformer_manager")
    store.mark_dead(m.id, clock(), "HTTP 500")
    current[0] = bundle_with(tmp_path, lambda ls: [
        ln for ln in ls if not ln.startswith("V001,袁云,")])
    r = post(client, csrf, "/api/outbox/retry", {"ids": [m.id]})
    assert r.status_code == 409
    assert "transformer_manager of village V001 on wecom are no longer in the contact " \
           "directory" in r.json()["error"]
    assert store.messages(ids=[m.id])[0].status == "dead"


def test_every_action_is_audited_with_what_was_asked(env: Any, demo: Topology) -> None:
    """The ETR set, the areas, a silence's matcher, the ids retried, the restore note: each
    in the audit entry, numbers masked; the restore note on the incident's timeline too."""
    app, store, clock, _ = env
    client, csrf = signed_in(app, "ops")
    iid = open_incident(client, csrf, demo)
    tz = ZoneInfo("Asia/Shanghai")
    etr = (clock() + timedelta(hours=3)).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    until = (clock() + timedelta(hours=1)).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    first = client.get(f"/api/incidents/{iid}").json()["areas"][0]["id"]
    steps: list[tuple[str, dict[str, Any], str]] = [
        (f"/api/incidents/{iid}/etr", {"time": etr}, "etr"),
        ("/api/silences", {"matcher": "feeder", "value": demo.feeders[0], "until": until,
                           "reason": "检修"}, "silence"),
        ("/api/outbox/retry", {"ids": [424242]}, "retry"),
        (f"/api/incidents/{iid}/restore",
         {"transformers": [first], "note": "张师傅 13800138000 电话确认已送电"}, "restore"),
    ]
    for path, body, _action in steps:
        clock.now += timedelta(minutes=2)
        post(client, csrf, path, body)
    detail = {action: audited(store, action)[0]["detail"] for _p, _b, action in steps}
    assert f'"time": "{etr}"' in detail["etr"]
    assert '"matcher": "feeder"' in detail["silence"] and demo.feeders[0] in detail["silence"]
    assert '"ids": [424242]' in detail["retry"]
    assert first in detail["restore"] and "138****8000 电话确认已送电" in detail["restore"]
    assert "13800138000" not in json.dumps(store.audit_trail(), default=str,
                                           ensure_ascii=False)
    timeline = client.get(f"/api/incidents/{iid}").json()["timeline"]
    assert any("138****8000 电话确认已送电" in (e["note"] or "") for e in timeline
               if e["actor"] == "board:ops")
