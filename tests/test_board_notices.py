"""What the board shows of the messages it sent, over a real store (SQLite and PostgreSQL) and
the demo topology: the personal links a viewer must not hold, what an SMS really carried, and
the outbox read page by page, daily reports and alerts included."""

from __future__ import annotations

import json
import re
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.board.views import Viewer, notice_row
from outage_sentinel.channels.sms import SmsChannel, message_purpose
from outage_sentinel.config import Config, load_config
from outage_sentinel.delivery import message_of
from outage_sentinel.field_links import redact_links
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.test_board_app import PASSWORD, Clock, post, signed_in

ROOT = Path(__file__).resolve().parents[1]
#: A personal link in a text (a crew's /c/, a liaison's /f/), with its 24-character token.
LINK = re.compile(r"/([cf])/([A-Za-z0-9_-]{24})")
PHONE = re.compile(r"(?<![\d.])1[3-9]\d{9}(?!\d)")


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


def make_board(store: Store, demo: Topology, config: Config) -> tuple[Any, Store, Clock]:
    clock = Clock()
    for name, role in (("ops", "operator"), ("watch", "viewer")):
        assert store.add_user(name, role, access.hash_password(PASSWORD), clock())
    return create_app(build(config, store, lambda: demo, clock)), store, clock


@pytest.fixture
def board_env(store: Store, demo: Topology, tmp_path: Path) -> tuple[Any, Store, Clock]:
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": tmp_path})
    return make_board(store, demo, config)


@pytest.fixture
def sms_board(store: Store, demo: Topology, tmp_path: Path) -> tuple[Any, Store, Clock]:
    """The demo's config with its ``sms`` channel a real Aliyun SMS channel (never reached):
    liaisons reached one by one get the care list by SMS."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["topology"] = str(ROOT / "topology")
    data["sources"][0]["scenario"] = str(ROOT / data["sources"][0]["scenario"])
    data["channels"]["sms"] = {"type": "sms", "endpoint": "http://127.0.0.1:9/",
                               "access_key_id": "AKIDfake0001",
                               "access_key_secret": "secretfake0001",
                               "sign_name": "县供电公司", "template_code": "SMS_000001"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_config(path).model_copy(update={"state_dir": tmp_path})
    return make_board(store, demo, config)


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


def test_an_sms_shows_what_it_carried_its_template_and_parameters(
        sms_board: Any, demo: Topology) -> None:
    """An SMS is a registered template and its parameters: the recipient never got the text
    the board renders (a care list cut to "…等3户", a crew's link as a bare token). The board
    shows what was sent, numbers masked and the link cut for a viewer."""
    app, store, _clock = sms_board
    ops, csrf = signed_in(app, "ops")
    iid = open_in(ops, csrf, demo.village_transformers("V054"))
    sms = SmsChannel("sms", access_key_id="k" * 8, access_key_secret="s" * 8,
                     sign_name="县供电公司", template_code="SMS_1")
    rows = {m.id: m for m in store.messages(incident_id=iid)}
    notices = ops.get(f"/api/incidents/{iid}").json()["notices"]
    texting = [n for n in notices if n["channel"] == "sms"]
    assert {n["sms"]["template"] for n in texting} >= {"outage", "care", "dispatch"}
    for n in notices:
        if n["channel"] != "sms":
            assert n["sms"] is None
            continue
        sent = sms.build_params(message_of(rows[n["id"]]))
        assert n["sms"]["params"] == json.loads(sent["TemplateParam"])
        assert n["sms"]["template"] == message_purpose(message_of(rows[n["id"]]))
    care = next(n["sms"]["params"] for n in texting if n["purpose"] == "care")
    assert PHONE.search(care["households"]) and "等" in care["households"]  # as cut
    links = [n["sms"]["params"]["link"] for n in texting if "link" in n["sms"]["params"]]
    assert links and all(len(t) == 24 for t in links)
    # On /api/outbox the same, and for a viewer: no number, no token.
    outbox = {m["id"]: m for m in ops.get("/api/outbox").json()["messages"]}
    assert all(outbox[n["id"]]["sms"] == n["sms"] for n in texting)
    viewer, _ = signed_in(app, "watch")
    for page in (viewer.get(f"/api/incidents/{iid}"), viewer.get("/api/outbox")):
        assert not PHONE.search(page.text) and not any(t in page.text for t in links)
    seen = [n["sms"] for n in viewer.get(f"/api/incidents/{iid}").json()["notices"]
            if n["channel"] == "sms"]
    assert any(s["params"].get("link") == "…" for s in seen)
    assert any("****" in s["params"].get("households", "") for s in seen)


def queue(store: Store, clock: Clock, incident: str, purpose: str, n: int = 1) -> list[int]:
    """``n`` messages of ``incident`` to the command centre; their ids."""
    with store.transaction() as conn:
        store.enqueue_in(conn, [OutboxMessage(
            incident_id=incident, revision=i, recipient="command:wecom:centre", purpose=purpose,
            channel="wecom", target="centre", audience="command", subject=purpose,
            body=f"{purpose} {i}", payload={}) for i in range(n)], clock())
    return [m.id for m in store.messages(incident_id=incident) if m.purpose == purpose]


def test_the_outbox_is_read_page_by_page_and_filtered(board_env: Any) -> None:
    """Once a busy morning has sent more than a page, the daily report (a message of no
    incident) is still found: by paging back, or by its purpose or id."""
    app, store, clock = board_env
    (report,) = queue(store, clock, "REPORT-20261204", "daily_report")
    busy = queue(store, clock, "INC-20261204-0001", "summary", 260)
    for mid in (report, *busy):
        store.mark_sent(mid, clock())
    (dead,) = queue(store, clock, "INC-20261204-0002", "summary")
    store.mark_dead(dead, clock(), "HTTP 500")
    client, _ = signed_in(app, "watch")
    first = client.get("/api/outbox?status=sent").json()
    assert len(first["messages"]) == 200 and report not in [m["id"] for m in first["messages"]]
    seen, before = [], None
    while True:
        page = client.get("/api/outbox", params={"status": "sent", "limit": 100,
                                                 **({"before": before} if before else {})})
        assert page.status_code == 200, page.text
        seen += [m["id"] for m in page.json()["messages"]]
        before = page.json()["next_before"]
        if before is None:
            break
    assert seen == sorted([report, *busy], reverse=True)  # each once, newest first
    for query in ("purpose=daily_report", "incident=REPORT-20261204",
                  f"status=sent&before={busy[0]}"):
        data = client.get(f"/api/outbox?{query}").json()
        assert [m["id"] for m in data["messages"]] == [report], query
        assert data["next_before"] is None
    data = client.get("/api/outbox?status=dead,silenced").json()
    assert [m["id"] for m in data["messages"]] == [dead]
    assert len(client.get("/api/outbox").json()["messages"]) == 200  # every status


def test_an_outbox_query_the_board_cannot_use_is_a_400_naming_it(board_env: Any) -> None:
    app, _store, _clock = board_env
    client, _ = signed_in(app, "watch")
    for query, named in (
            ("before=abc", "before"), ("before=0", "before"), (f"before={2**63}", "before"),
            ("before=-1", "before"), ("before=１２", "before"), ("limit=0", "limit"),
            ("limit=501", "limit"), ("limit=1.5", "limit"), ("status=lost", "status"),
            ("status=sent,lost", "status"), ("offset=0", "offset"), ("page=2", "page"),
            (f"purpose={'x' * 41}", "purpose"), (f"incident={'x' * 41}", "incident")):
        r = client.get(f"/api/outbox?{query}")
        assert r.status_code == 400 and r.json()["error"].startswith(f"{named}:"), (query,
                                                                                  r.text)


def test_an_operator_reads_a_number_in_an_sms_only_where_it_must_be_called() -> None:
    """A care list's and a crew's numbers are there to be called; any other SMS parameter
    (a summary quoting a caller) is masked, for operators too."""
    operator = Viewer("zh", UTC, phones=True, links=True)

    def row(purpose: str, audience: str, sms: dict[str, str]) -> Any:
        return SimpleNamespace(
            id=1, incident_id="INC-1", status="sent", purpose=purpose, audience=audience,
            channel="sms", target="13800001111", attempts=1, created_at=None, sent_at=None,
            last_error=None, subject="", body="",
            payload={"params": {"sms_template": purpose, "sms": sms}})

    command = notice_row(row("command", "command", {"summary": "来电13912345678称停电"}),
                         operator)["sms"]
    assert command == {"template": "command", "params": {"summary": "来电139****5678称停电"}}
    care = notice_row(row("care", "liaison", {"households": "王秀英13800001111等3户"}),
                      operator)["sms"]
    assert care["params"]["households"] == "王秀英13800001111等3户"


def test_an_sms_channel_of_any_name_shows_its_template_and_parameters() -> None:
    """The board shows what a carrier channel keyed ``aliyun`` sent as the planner built it
    (template and parameters), not as a text SMS never carries."""
    row = SimpleNamespace(
        id=1, incident_id="INC-1", status="sent", purpose="outage", audience="liaison",
        channel="aliyun", target="13800001111", attempts=1, created_at=None, sent_at=None,
        last_error=None, subject="", body="正文",
        payload={"params": {"sms_template": "outage", "sms": {"village": "东村"}}})
    by_name = Viewer("zh", UTC, phones=True, links=True)
    by_type = Viewer("zh", UTC, phones=True, links=True, sms=frozenset({"aliyun"}))
    assert notice_row(row, by_name)["sms"] is None
    assert notice_row(row, by_type)["sms"] == {"template": "outage",
                                               "params": {"village": "东村"}}


def test_an_operator_reads_recipients_numbers_masked() -> None:
    """Whom a notice went to is masked for every role (the operator's screen is a screen a
    person reads); the numbers in a care list or a crew's dispatch text stay whole for an
    operator, who may have to call them."""
    operator = Viewer("zh", UTC, phones=True, links=True)

    def row(purpose: str, audience: str, body: str) -> Any:
        return SimpleNamespace(
            id=1, incident_id="INC-1", status="sent", purpose=purpose, audience=audience,
            channel="wecom", target="13800001111", attempts=1, created_at=None, sent_at=None,
            last_error=None, subject="", body=body,
            payload={"mentions": ["13800002222"],
                     "readdressed": [{"from": "13800003333", "to": "13800004444"}]})

    outage = notice_row(row("outage", "liaison", "联系人13800005555"), operator)
    assert outage["target"] == "138****1111" and outage["mentions"] == ["138****2222"]
    assert outage["readdressed"] == [{"from": "138****3333", "to": "138****4444"}]
    assert outage["text"] == "联系人138****5555"
    care = notice_row(row("care", "liaison", "王秀英13800005555"), operator)
    assert care["text"] == "王秀英13800005555" and care["target"] == "138****1111"
    dispatch = notice_row(row("dispatch", "crew", "镇卫生院13800005555"), operator)
    assert dispatch["text"] == "镇卫生院13800005555"
