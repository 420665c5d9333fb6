"""Audit: only the processor's revision guarded its command-centre summary.

A summary that could not be rendered — a bug raising in the built-in summary's context, or
the configured renderer failing — was rendered from the built-in template, else sent as a
plain text naming the incident, only for a revision the processor wrote. Every other step
that queues a summary rendered it unguarded, inside its transaction: a crew dispatch (the
daemon's, retried at each clock check and failing each time, ``auto_dispatch_failed``; the
command centre's), a correction (``incidents etr``), a close-out — each rolled back whole,
the crew never sent, the villages never told, because of the command centre's own summary.

Now one guarded render serves them all: the step completes, its other notices queued, the
summary queued as the built-in's text or the plain text, logged, and counted by
``outage_sentinel_summaries_unrendered_total{fallback="builtin"|"plain"}``.

Through the real path: the demo bundle, a real SQLite store, the incident core built as the
daemon builds it (:class:`tests.test_summary_render_failure.Rig`); the renderer made to fail
on ``command_summary`` (every renderer, or only the one configured). ``outage-sentinel check``
still renders the summary unguarded: a summary that fails is reported, never hidden.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.liaison import Renderer
from outage_sentinel.store import Store
from outage_sentinel.summaries import Summaries
from outage_sentinel.template_check import template_problems
from outage_sentinel.topology import Topology
from tests.test_summary_render_failure import (
    NOW,
    VILLAGE,
    Rig,
    assert_revision_written,
    config,
)
from tests.test_summary_render_failure import demo as demo  # noqa: F401  (the fixture)

ERROR = "cannot convert float NaN to integer"


def break_summary(monkeypatch: pytest.MonkeyPatch, only: Renderer | None = None) -> None:
    """``command_summary`` raises when rendered: by ``only`` (the renderer configured; the
    built-in template still renders it), or by every renderer (not even the built-in)."""
    real = Renderer.render

    def render(self: Renderer, name: str, **context: Any) -> str:
        if name == "command_summary" and (only is None or self is only):
            raise ValueError(ERROR)
        return real(self, name, **context)

    monkeypatch.setattr(Renderer, "render", render)


def unrendered(rig: Rig) -> dict[str, float]:
    """``summaries_unrendered_total`` by fallback."""
    return {f: rig.metrics.summaries_unrendered.labels(f)._value.get()
            for f in ("builtin", "plain")}


def assert_plain(rig: Rig, purpose: str, incident: str) -> None:
    """The command centre's row of ``purpose`` is the plain text naming ``incident``."""
    (row,) = rig.rows(purpose, "command")
    first = row.body.splitlines()[0]
    assert incident in first and "无法生成" in first, row.body
    assert ERROR in row.body and row.payload["params"]["incident"] == incident


def logged(logs: list[dict[str, Any]], event: str, purpose: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event and e.get("purpose") == purpose]


def test_auto_dispatch_goes_out_when_no_summary_renders(
        tmp_path: Path, sqlite_store: Store, demo: Topology,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, sqlite_store, demo, {})
    break_summary(monkeypatch)
    with capture_logs() as logs:
        rig.fold()
    incident = assert_revision_written(rig)
    # The crew went: its orders queued, the incident holds it.
    (orders,) = rig.rows("dispatch")
    assert orders.recipient.startswith("crew:") and orders.incident_id == incident
    row = sqlite_store.get_incident(incident)
    assert row is not None and row["stage"] == "dispatched"
    assert row["crew_id"] == orders.recipient.removeprefix("crew:")
    assert not [e for e in logs if e["event"] == "auto_dispatch_failed"]
    # The command centre reads the plain text for the revision and for the dispatch.
    assert_plain(rig, "summary", incident)
    assert_plain(rig, "dispatched", incident)
    assert logged(logs, "summary_unrendered", "dispatched")
    assert unrendered(rig) == {"builtin": 0, "plain": 2}


def test_a_crew_sent_by_the_command_centre_goes_with_the_builtin_summary(
        tmp_path: Path, sqlite_store: Store, demo: Topology,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, sqlite_store, demo, {}, lifecycle={"auto_dispatch": False})
    rig.fold()
    incident = assert_revision_written(rig)
    assert not rig.rows("dispatch")
    break_summary(monkeypatch, only=rig.core.renderer)
    with capture_logs() as logs:
        inc = rig.core.lifecycle.dispatch(incident, "operator:wang")
    assert inc.stage == "dispatched"
    (orders,) = rig.rows("dispatch")
    assert orders.recipient.startswith("crew:") and orders.incident_id == incident
    row = sqlite_store.get_incident(incident)
    assert row is not None and row["stage"] == "dispatched"
    assert row["crew_id"] == orders.recipient.removeprefix("crew:")
    (said,) = rig.rows("dispatched", "command")
    assert said.body.startswith(f"【故障停电】{incident} 第1版"), said.body
    failed = logged(logs, "summary_render_failed", "dispatched")
    assert failed and failed[0]["fallback"] == "built-in" and ERROR in failed[0]["error"]
    assert unrendered(rig) == {"builtin": 1, "plain": 0}


def test_an_etr_correction_is_made_when_no_summary_renders(
        tmp_path: Path, sqlite_store: Store, demo: Topology,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, sqlite_store, demo, {})
    rig.fold()
    incident = assert_revision_written(rig)
    told = len(rig.rows("update", "liaison"))
    break_summary(monkeypatch)
    steps = CommandSteps(rig.core.lifecycle, rig.core.processor, lambda: rig.now)
    with capture_logs() as logs:
        after = steps.etr(incident, "2026-11-23 18:00", "operator:wang")
    assert after.etr is not None
    row = sqlite_store.get_incident(incident)
    assert row is not None and row["revision"] == after.revision and row["etr"] is not None
    # The villages hear the new time; the step is in the incident's log.
    updates = [m for m in rig.rows("update", "liaison")
               if m.recipient.startswith(f"village:{VILLAGE}:")]
    assert len(updates) > told and all("18:00" in m.body for m in updates[told:])
    assert [s for s in sqlite_store.incident_log(incident) if s["stage"] == "etr_set"]
    assert_plain(rig, "etr_set", incident)
    assert logged(logs, "summary_unrendered", "etr_set")
    assert unrendered(rig) == {"builtin": 0, "plain": 1}


def test_a_close_out_is_made_when_no_summary_renders(
        tmp_path: Path, sqlite_store: Store, demo: Topology,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, sqlite_store, demo, {}, lifecycle={"auto_dispatch": False})
    rig.fold()
    incident = assert_revision_written(rig)
    rig.fold(restored_at=NOW + timedelta(hours=1))
    break_summary(monkeypatch)
    with capture_logs() as logs:
        inc = rig.core.lifecycle.close(incident, "operator:wang", cause_category="外力破坏")
    assert inc.stage == "closed"
    row = sqlite_store.get_incident(incident)
    assert row is not None and row["stage"] == "closed"
    assert row["cause_category"] == "外力破坏"
    assert [s for s in sqlite_store.incident_log(incident) if s["stage"] == "closed"]
    assert_plain(rig, "closed", incident)
    assert logged(logs, "summary_unrendered", "closed")
    assert unrendered(rig) == {"builtin": 0, "plain": 1}


def test_check_still_sees_a_summary_that_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``outage-sentinel check`` renders the summary unguarded: an override that fails is
    reported, and a context that raises is not hidden behind the daemon's fallback."""
    broken = config(tmp_path, {"command_summary.zh.j2": "{{ incident.id | no_such_filter }}\n"})
    problems = template_problems(broken)
    assert any("command_summary.zh.j2" in p and "no_such_filter" in p for p in problems), \
        problems

    def chokes(self: Summaries, inc: Any) -> dict[str, Any]:
        raise ValueError(ERROR)

    monkeypatch.setattr(Summaries, "fault_point_context", chokes)
    with pytest.raises(ValueError, match="NaN"):
        template_problems(config(tmp_path, {}))
