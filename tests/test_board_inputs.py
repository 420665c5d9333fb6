"""Bodies the board's actions cannot use, over a real store (SQLite and PostgreSQL): each is a
400 naming the key (never a 500, never a value quietly truncated), and each refusal is in the
audit trail like every other."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import load_config
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from outage_sentinel.triage import STORM_KEY, storm_declaration
from tests.test_board_app import PASSWORD, Clock, post, signed_in

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


@pytest.fixture
def board_env(store: Store, demo: Topology, tmp_path: Path) -> tuple[Any, Store, Clock]:
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    assert store.add_user("ops", "operator", access.hash_password(PASSWORD), clock())
    return create_app(build(config, store, lambda: demo, clock)), store, clock


def refusals(store: Store, action: str) -> list[dict[str, Any]]:
    return [a for a in store.audit_trail(1000) if a["action"] == action and not a["ok"]]


def test_a_value_of_the_wrong_kind_or_out_of_range_is_a_400_naming_its_key(
        board_env: Any) -> None:
    app, store, _clock = board_env
    client, csrf = signed_in(app, "ops")
    cases: list[tuple[str, dict[str, Any], str]] = [
        *(("/api/silences", {"expire": v}, "expire")
          for v in ([1], {"id": 1}, 1.5, True, "1", 0, -3, 2**63)),
        *(("/api/storm", {"declare": True, "hours": v}, "hours")
          for v in (1e12, 10**30, True, "2", -1, 0)),
        ("/api/storm", {"declare": "yes"}, "declare"),
        *(("/api/outbox/retry", {"ids": v}, "ids")
          for v in ([2**63], [True], [1.0], [-1], "1", [[1]], [])),
        ("/api/outbox/retry", {"ids": [1], "force": "no"}, "force"),
        ("/api/silences", {"matcher": ["feeder"], "value": "x", "until": "x", "reason": "x"},
         "matcher"),
    ]
    for path, body, key in cases:
        r = post(client, csrf, path, body)
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["error"].startswith(key), (path, body, r.text)
    assert store.kv_get(STORM_KEY) is None  # nothing declared, nothing retried or ended
    assert len(refusals(store, "silence")) == 9 and len(refusals(store, "storm")) == 7
    assert len(refusals(store, "retry")) == 8
    # Infinity is no number of hours either (Python's JSON reads it).
    r = client.post("/api/storm", content=b'{"declare": true, "hours": Infinity}',
                    headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("hours")
    # What the values name may still be unknown to the store (404).
    assert post(client, csrf, "/api/silences", {"expire": 2**63 - 1}).status_code == 404
    assert post(client, csrf, "/api/outbox/retry", {"ids": [2**63 - 1]}).status_code == 404
    assert post(client, csrf, "/api/storm", {"declare": True, "hours": 1.5}).status_code == 200


def test_a_storm_is_declared_for_a_month_at_most() -> None:
    """The CLI's ``--hours 1e12`` overflowed the clock (a traceback, not a usage error)."""
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert storm_declaration(True, "operator:li", now, hours=720)["until"]
    for hours in (720.5, 1e12, float("inf"), float("nan"), 0, -1):
        with pytest.raises(ValueError, match="^hours must be greater than 0 and at most 720"):
            storm_declaration(True, "operator:li", now, hours=hours)


def test_a_body_that_is_no_json_object_is_refused_and_audited(board_env: Any,
                                                              demo: Topology) -> None:
    """Every refusal is in the audit trail, a broken body's too: who tried what, on which
    incident, and why it was refused."""
    app, store, _clock = board_env
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/incidents", {"transformers": list(demo.transformers[:1])})
    iid = r.json()["result"]
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for path, raw in ((f"/api/incidents/{iid}/cancel", b'["reason"]'),
                      (f"/api/incidents/{iid}/cancel", b'{"reason": "x"'),
                      ("/api/storm", b"true"), ("/api/outbox/retry", b"\xff")):
        r = client.post(path, content=raw, headers=headers)
        assert r.status_code == 400 and "JSON object" in r.json()["error"], (path, r.text)
    cancels = refusals(store, "cancel")
    assert len(cancels) == 2 and {a["target"] for a in cancels} == {iid}
    assert all(a["actor"] == "ops" and "JSON object" in a["detail"] for a in cancels)
    assert len(refusals(store, "storm")) == 1 and len(refusals(store, "retry")) == 1
    assert store.get_incident(iid)["status"] == "active"
