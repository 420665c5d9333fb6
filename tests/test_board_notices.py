"""What the board shows of the messages it sent, over a real store (SQLite and PostgreSQL) and
the demo topology: the personal links a viewer must not hold, what an SMS really carried, and
the outbox read page by page, daily reports and alerts included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import load_config
from outage_sentinel.field_links import redact_links
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.test_board_app import PASSWORD, Clock, post, signed_in

ROOT = Path(__file__).resolve().parents[1]
#: A personal link in a text (a crew's /c/, a liaison's /f/), with its 24-character token.
LINK = re.compile(r"/([cf])/([A-Za-z0-9_-]{24})")


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


@pytest.fixture
def board_env(store: Store, demo: Topology, tmp_path: Path) -> Iterator[tuple[Any, Store,
                                                                              Clock]]:
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    clock = Clock()
    for name, role in (("ops", "operator"), ("watch", "viewer")):
        assert store.add_user(name, role, access.hash_password(PASSWORD), clock())
    yield create_app(build(config, store, lambda: demo, clock)), store, clock


def open_in(client: TestClient, csrf: str, areas: Any) -> str:
    r = post(client, csrf, "/api/incidents", {"transformers": list(areas)})
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def test_a_viewer_never_reads_a_crews_or_liaisons_personal_link(
        board_env: Any, demo: Topology) -> None:
    """A link's token lets whoever holds it act as the crew (restore the incident, every
    village told its power is back) or the liaison: a read-only role must not get it from
    the notices' texts."""
    app, store, _clock = board_env
    ops, csrf = signed_in(app, "ops")
    iid = open_in(ops, csrf, demo.village_transformers("V001")[:2])
    tokens = {t for m in store.messages(incident_id=iid) for _, t in LINK.findall(m.body)}
    kinds = {k for m in store.messages(incident_id=iid) for k, _ in LINK.findall(m.body)}
    assert tokens and kinds == {"c", "f"}  # the crew's dispatch and the liaisons' notices
    viewer, _ = signed_in(app, "watch")
    pages = [viewer.get(f"/api/incidents/{iid}").text, viewer.get("/api/outbox").text,
             viewer.get("/api/overview").text]
    for token in tokens:
        assert not any(token in page for page in pages), token
    notices = viewer.get(f"/api/incidents/{iid}").json()["notices"]
    assert any("/c/…" in n["text"] for n in notices)
    assert any("/f/…" in n["text"] for n in notices)
    # Operators act: they see the links whole, as sent.
    shown = ops.get(f"/api/incidents/{iid}").text + ops.get("/api/outbox").text
    assert all(token in shown for token in tokens)


def test_redacting_cuts_short_and_long_tokens_and_leaves_the_public_page() -> None:
    text = ("现场进度：http://b:8088/c/Ngd3rLo1esRxIE4Dua3no8K1\n"
            "反馈：http://b:8088/f/eyJhIjoxfQ.c2lnbmF0dXJl-_x，进度：http://b:8088/p/AbCdEf")
    assert redact_links(text) == ("现场进度：http://b:8088/c/…\n"
                                  "反馈：http://b:8088/f/…，进度：http://b:8088/p/AbCdEf")
