"""The board's quarantine list had no way to do what ``outage-sentinel quarantine retry ID``
does: an event whose processing kept failing (a bug in our code) stayed quarantined until
someone reached a terminal. Now each entry that may be put back has a button (a processing
failure's stored event not put back yet); any other says why not (a payload refused as it
came was never stored; one put back already says when and by whom). The button posts to
``/api/quarantine/retry`` (CSRF, the operator or admin role, as the outbox's retry), which
calls the store function the CLI calls (``Store.requeue_quarantined``), keeps the same audit
entry (action ``quarantine retry``, the ids as target and request), and answers a refusal
naming the id and why.

The incident page's timeline also showed the details of some steps as their stored keys
(``again: True``, ``false_alarm: True``, ``not_fed: T-MJ01-020、…``, ``unreleased: …``): now
in the viewer's words, areas by name, numbers masked.

Real SQLite (and PostgreSQL when reachable), the repo's config and demo bundle, the board
through Starlette's TestClient; a real headless Chromium for the button.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.app import create_app
from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.failures import MAX_PROCESSING_FAILURES, ProcessingFailures
from outage_sentinel.logs import get_logger
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.e2e_helpers import wait_for
from tests.test_board_app import PASSWORD, post, signed_in
from tests.test_board_app import board_env as board_env  # noqa: F401  (the fixture)
from tests.test_board_app import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_page import served as served  # noqa: F401  (the fixture)
from tests.test_board_page import sign_in
from tests.test_board_page import tile_server as tile_server  # noqa: F401  (the fixture)
from tests.test_cancel_false_alarm_flag import AREAS
from tests.test_held_dispute_board import AREAS as HELD_AREAS
from tests.test_held_dispute_board import County
from tests.test_held_dispute_board import county as county  # noqa: F401  (the fixture)


def failed_processing(store: Store, topology: Topology, now: datetime,
                      event_id: str = "R1") -> int:
    """A stored event the processor failed to fold until it gave up (as the processor's
    :class:`ProcessingFailures` quarantines it); returns its quarantine row's id."""
    area = topology.transformers[0]
    event = OutageEvent(source="demo-feed", event_id=event_id, kind="fault", status="active",
                        start=now, transformers=(area,), signal="notice")
    store.ingest("demo-feed", PollResult(events=[event]), now)
    (stored,) = [s for s in store.unprocessed_events() if s.event.event_id == event_id]
    failures = ProcessingFailures(store, Metrics(), get_logger(component="test"))
    for _ in range(MAX_PROCESSING_FAILURES):
        failures.failed(stored, ZeroDivisionError("division by zero in the localiser"), now)
    assert not [s for s in store.unprocessed_events() if s.event.event_id == event_id]
    (row,) = [q for q in store.quarantined() if f'"event_id": "{event_id}"' in (q["raw"] or "")]
    return int(row["id"])


def refused_payload(store: Store, now: datetime) -> int:
    """A record refused by validation as it came (never stored as an event)."""
    store.quarantine(Quarantined("feed95598", "record 3: start (startTime): expected a time, "
                                 "call 13912345678", {"x": 1}), now)
    return int(store.quarantined(1)[0]["id"])


def shown(client: Any) -> dict[int, dict[str, Any]]:
    return {q["id"]: q for q in client.get("/api/overview").json()["quarantine"]["latest"]}


def test_an_operator_puts_a_processing_failure_back_from_the_board(
        board_env: Any, demo: Topology) -> None:  # noqa: F811
    app, store, clock = board_env
    failed = failed_processing(store, demo, clock())
    refused = refused_payload(store, clock())
    client, csrf = signed_in(app, "ops")
    rows = shown(client)
    assert rows[failed]["retry"] is True and rows[failed]["not_retried"] is None
    assert rows[refused]["retry"] is False
    assert "校验未通过" in rows[refused]["not_retried"]
    assert "13912345678" not in json.dumps(rows)

    r = post(client, csrf, "/api/quarantine/retry", {"ids": [failed]})
    assert r.status_code == 200, r.text
    assert f"#{failed}" in r.json()["result"] and "demo-feed/R1" in r.json()["result"]
    # Back for the daemon to fold, the row saying when and by whom.
    assert [s.event.event_id for s in store.unprocessed_events()] == ["R1"]
    (row,) = [q for q in store.quarantined() if q["id"] == failed]
    assert "re-queued" in row["reason"] and "board:ops" in row["reason"]
    # Put back, its button goes and it says so.
    again = shown(client)[failed]
    assert again["retry"] is False and "已重新排队" in again["not_retried"]
    assert "board:ops" in again["not_retried"]
    # The audit entry the CLI's ``quarantine retry`` writes: the action, target and request.
    (entry,) = [a for a in store.audit_trail() if a["action"] == "quarantine retry"]
    assert (entry["kind"], entry["actor"], entry["ok"]) == ("action", "ops", True)
    assert entry["target"] == str(failed)
    assert entry["detail"].endswith(f'request {json.dumps({"ids": [failed]})}')


def test_a_refused_retry_names_the_id_and_why_and_changes_nothing(
        board_env: Any, demo: Topology) -> None:  # noqa: F811
    app, store, clock = board_env
    failed = failed_processing(store, demo, clock())
    refused = refused_payload(store, clock())
    client, csrf = signed_in(app, "ops")
    r = post(client, csrf, "/api/quarantine/retry", {"ids": [refused]})
    assert r.status_code == 409, r.text
    assert f"#{refused}" in r.json()["error"] and "not a processing failure" in r.json()["error"]
    assert post(client, csrf, "/api/quarantine/retry", {"ids": [failed]}).status_code == 200
    r = post(client, csrf, "/api/quarantine/retry", {"ids": [failed]})
    assert r.status_code == 409 and f"#{failed}: re-queued already" in r.json()["error"], r.text
    assert [s.event.event_id for s in store.unprocessed_events()] == ["R1"]  # once
    r = post(client, csrf, "/api/quarantine/retry", {"ids": ["1"]})
    assert r.status_code == 400 and "ids" in r.json()["error"]
    audited = [(a["target"], a["ok"]) for a in store.audit_trail()
               if a["action"] == "quarantine retry"]
    assert (str(refused), False) in audited and (str(failed), False) in audited


def test_only_an_operator_with_the_sessions_token_may_put_one_back(
        board_env: Any, demo: Topology) -> None:  # noqa: F811
    app, store, clock = board_env
    failed = failed_processing(store, demo, clock())
    viewer, viewer_csrf = signed_in(app, "watch")
    assert shown(viewer)[failed]["retry"] is True  # shown; the page offers no button
    assert post(viewer, viewer_csrf, "/api/quarantine/retry", {"ids": [failed]}
                ).status_code == 403
    ops, _csrf = signed_in(app, "ops")
    assert ops.post("/api/quarantine/retry", json={"ids": [failed]}).status_code == 403
    assert store.unprocessed_events() == []
    assert "re-queued" not in store.quarantined(1)[0]["reason"]


# -- the timeline's details in words ------------------------------------------------------------


def timeline(client: Any, iid: str) -> dict[str, str]:
    return {e["stage"]: e["details"] for e in client.get(f"/api/incidents/{iid}").json()[
        "timeline"]}


def test_the_timeline_says_the_operators_flags_and_areas_in_words(
        board_env: Any, demo: Topology) -> None:  # noqa: F811
    app, _store, clock = board_env
    client, csrf = signed_in(app, "ops")
    names = [demo.nodes[t].name for t in AREAS]
    iid = str(post(client, csrf, "/api/incidents", {"transformers": list(AREAS)}
                   ).json()["result"])
    clock.now += timedelta(minutes=1)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    clock.now += timedelta(minutes=1)
    assert post(client, csrf, f"/api/incidents/{iid}/reopen",
                {"transformers": [AREAS[0]], "again": True}).status_code == 200
    clock.now += timedelta(minutes=1)
    assert post(client, csrf, f"/api/incidents/{iid}/restore", {}).status_code == 200
    r = post(client, csrf, f"/api/incidents/{iid}/close",
             {"cause": "设备故障", "device": "FU-MJ01-06", "device_anyway": True})
    assert r.status_code == 200, r.text
    said = timeline(client, iid)
    assert said["restoration_undone"] == f"台区：{names[0]}；恢复后再次失电（另计一次停电）"
    closed = said["closed"]
    assert f"所确认设备不供电的已停电台区（运行人员确认仍按此销号）：{'、'.join(names)}" in closed
    assert "前赵店支线跌落式熔断器（FU-MJ01-06）" in closed and "not_fed" not in closed

    other = str(post(client, csrf, "/api/incidents", {"transformers": [AREAS[0]]}
                     ).json()["result"])
    r = post(client, csrf, f"/api/incidents/{other}/cancel",
             {"reason": "误报，来电 13812345678 核实", "false_alarm": True})
    assert r.status_code == 200, r.text
    cancelled = timeline(client, other)["cancelled"]
    assert cancelled == "原因：误报，来电 138****5678 核实；误报：未停电（不计停电）"
    assert "13812345678" not in json.dumps(client.get(f"/api/incidents/{other}").json())


def test_the_meters_disagree_step_names_the_areas_the_screen_holds(
        county: County) -> None:  # noqa: F811
    inc = county.held_by_the_screen()
    county.store.add_user("ops", "operator", access.hash_password(PASSWORD), county.clock())
    client, _csrf = signed_in(create_app(county.board), "ops")
    said = timeline(client, inc.id)["meters_disagree"]
    names = "、".join(county.topology.nodes[t].name for t in HELD_AREAS)
    assert f"电表停电暂未确认（AMI筛查未放行）的台区：{names}" in said, said
    assert "unreleased" not in said and "records" not in said


# -- the button in a real browser ---------------------------------------------------------------


@pytest.mark.slow
def test_the_retry_button_puts_the_event_back(
        browser: Any, served: tuple[str, Store, Any], tmp_path: Path) -> None:  # noqa: F811
    url, store, holder = served
    topology = holder["board"].topology()
    now = datetime.now(UTC)
    failed = failed_processing(store, topology, now)
    refused = refused_payload(store, now)
    page = sign_in(browser, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    button = f"#quarantine button[data-quarantine='{failed}']"
    page.wait_for_selector(button, timeout=10000)
    assert page.query_selector(f"#quarantine button[data-quarantine='{refused}']") is None
    assert "不能重新处理" in (page.text_content(f"#quarantine li[data-quarantine='{refused}']")
                         or "")
    page.click(button)
    assert wait_for(lambda: [s.event.event_id for s in store.unprocessed_events()] == ["R1"],
                    10)
    page.wait_for_selector(button, state="detached", timeout=10000)
    assert "已重新排队" in (page.text_content(f"#quarantine li[data-quarantine='{failed}']")
                       or "")
    assert "flash bad" not in (page.get_attribute("#flash", "class") or "")
    assert errors == []
    page.context.close()
