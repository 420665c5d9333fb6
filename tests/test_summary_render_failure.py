"""Audit: a command-centre summary that could not be rendered aborted the whole revision.

An override of ``command_summary`` that renders no text at all (``{% if false %}…{% endif %}``:
the renderer's fallback only catches a template that raises) made
``Lifecycle.command_rows_for`` raise ``IndexError`` (``body.splitlines()[0]``) inside the
revision's transaction: the incident, the villages' outage notices and the crew queued for it
were rolled back with it, the event was retried and, three failures later, quarantined — the
villages never heard of their outage because the command centre's template was wrong.

Now the revision is written whatever its summary does: a summary that fails is rendered from
the built-in template (counted as a failed template and alerted, as a liaison override that
fails is), and one not even the built-in renders is a short plain text naming the incident
and saying the summary could not be rendered (logged ``summary_unrendered``).

Through the real path: the demo bundle, a real SQLite store, the incident core built as the
daemon builds it, the clock stage that counts and alerts failed templates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config, parse_config
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.liaison import Renderer
from outage_sentinel.lifecycle_clock import LifecycleClock
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import Store
from outage_sentinel.summaries import Summaries
from outage_sentinel.topology import Topology, load_bundle

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VILLAGE = "V037"  # 王庄村 on 10kV 王庄线 (MJ02)
CHANNELS = ("cc", "wecom", "sms", "dingtalk", "feishu")
#: An override that renders to nothing: it compiles, it raises nothing, it says nothing.
SAYS_NOTHING = "{% if false %}{{ incident.id }}{% endif %}\n"


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


def config(tmp: Path, templates: dict[str, str], **extra: Any) -> Config:
    tpl = tmp / "tpl"
    tpl.mkdir(exist_ok=True)
    for name, text in templates.items():
        (tpl / name).write_text(text, encoding="utf-8")
    return parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "feed", "type": "replay", "scenario": str(tmp / "feed.jsonl")}],
        "channels": {n: {"type": "file", "path": str(tmp / f"{n}.jsonl")} for n in CHANNELS},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        "notify": {"templates_dir": str(tpl)}, **extra})


class Rig:
    """The incident core and the clock stage as the daemon wires them: a failed template is
    counted by the clock stage and alerted to the command centre at its next run."""

    def __init__(self, tmp: Path, store: Store, topology: Topology,
                 templates: dict[str, str], **extra: Any) -> None:
        self.cfg, self.store, self.topology = config(tmp, templates, **extra), store, topology
        self.metrics = Metrics()
        self.now = NOW
        self.core: Core = build_core(self.cfg, store, topology, metrics=self.metrics,
                                     clock=lambda: self.now,
                                     on_template_failure=lambda f: self.clock.template_failed(f))
        self.clock = LifecycleClock(self.core.lifecycle, store, self.metrics)

    def area(self) -> str:
        return sorted(t for t, n in self.topology.nodes.items()
                      if n.kind == "transformer" and n.village == VILLAGE)[0]

    def fold(self, restored_at: datetime | None = None) -> None:
        """One outage-system record of an area of 王庄村, stored and folded (``restored_at``:
        its record ending then, the clock moved there)."""
        if restored_at is not None:
            self.now = restored_at
        event = OutageEvent(source="feed", event_id="R1", kind="fault",
                            status="active" if restored_at is None else "restored",
                            start=NOW, end=restored_at, transformers=(self.area(),),
                            signal="notice", revision="" if restored_at is None else "2")
        self.store.ingest("feed", PollResult(events=[event]), self.now)
        self.core.processor.run_once(self.now)

    def rows(self, purpose: str, audience: str | None = None) -> list[Any]:
        return [m for m in self.store.messages()
                if m.purpose == purpose and (audience is None or m.audience == audience)]

    def failed_templates(self, name: str) -> float:
        return float(self.metrics.template_failures.labels(name)._value.get())

    def unrendered(self) -> dict[str, float]:
        """``summaries_unrendered_total`` by fallback."""
        return {f: self.metrics.summaries_unrendered.labels(f)._value.get()
                for f in ("builtin", "plain")}


def assert_revision_written(rig: Rig) -> str:
    """The revision went in whole: the event folded (not failed, not quarantined), the
    incident stored, every liaison of 王庄村 queued its outage notice. Returns the id."""
    store = rig.store
    assert store.unprocessed_events() == []
    assert store.quarantined() == []
    assert rig.core.processor.failures.counts == {}
    (row,) = store.load_incidents(open_only=True)
    village_rows = [m for m in rig.rows("outage", "liaison")
                    if m.recipient.startswith(f"village:{VILLAGE}:")]
    assert village_rows, [(m.purpose, m.recipient) for m in store.messages()]
    assert all(row["id"] in m.body or "王庄村" in m.body for m in village_rows)
    return str(row["id"])


def test_a_summary_override_that_says_nothing_leaves_the_villages_told(
        tmp_path: Path, sqlite_store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, sqlite_store, demo, {"command_summary.zh.j2": SAYS_NOTHING})
    with capture_logs() as logs:
        rig.fold()
    incident = assert_revision_written(rig)
    # The command centre reads the built-in summary of the revision.
    (summary,) = rig.rows("summary")
    assert summary.body.startswith(f"【故障停电】{incident} 第1版"), summary.body
    assert summary.subject == summary.body.splitlines()[0]
    # ... and is told its template failed, as for a liaison template: counted, alerted once.
    assert rig.failed_templates("command_summary") >= 1
    assert rig.clock.alert_templates(NOW) == 1
    (alert,) = rig.rows("template_failed")
    assert alert.audience == "command" and "command_summary.zh.j2" in alert.body, alert.body
    # Logged with the incident (by the writer's fallback, or by the renderer should it come
    # to count a template that renders nothing as failed itself).
    failed = [e for e in logs if e["event"] in ("summary_render_failed", "template_failed")]
    assert failed and failed[0]["incident_id"] == incident
    assert failed[0]["fallback"] == "built-in"
    assert not [e for e in logs if e["event"] == "processing_failed"]


def test_a_summary_not_even_the_builtin_renders_is_a_plain_text_naming_the_incident(
        tmp_path: Path, sqlite_store: Store, demo: Topology,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the summary's facts raises (a value neither template can be given): the
    revision is written, and the command centre still hears of the outage."""
    def chokes(self: Summaries, inc: Any) -> dict[str, Any]:
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(Summaries, "fault_point_context", chokes)
    rig = Rig(tmp_path, sqlite_store, demo, {})
    with capture_logs() as logs:
        rig.fold()
    incident = assert_revision_written(rig)
    (summary,) = rig.rows("summary")
    first = summary.body.splitlines()[0]
    assert incident in first and "汇总" in first and "无法生成" in first, summary.body
    assert "ValueError" in summary.body
    assert summary.payload["params"]["incident"] == incident
    # No override failed: nothing to fix in a template, nothing counted as one.
    assert rig.failed_templates("command_summary") == 0
    unrendered = [e for e in logs if e["event"] == "summary_unrendered"]
    assert unrendered and unrendered[0]["incident_id"] == incident
    assert "NaN" in unrendered[0]["error"]
    assert not [e for e in logs if e["event"] == "processing_failed"]
    # Counted: the revision's summary, and the one of the crew it sent (auto-dispatch).
    assert [m.purpose for m in rig.store.messages() if m.audience == "command"] == [
        "summary", "dispatched"]
    assert rig.unrendered() == {"builtin": 0, "plain": 2}


def test_a_summary_the_configured_renderer_fails_on_is_the_builtins_and_counted(
        tmp_path: Path, sqlite_store: Store, demo: Topology,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The renderer in use raises for the summary (its failure callback raising, an override
    directory it cannot read): the built-in template's summary goes, logged and counted."""
    rig = Rig(tmp_path, sqlite_store, demo, {}, lifecycle={"auto_dispatch": False})
    real = Renderer.render

    def render(self: Renderer, name: str, **context: Any) -> str:
        if name == "command_summary" and self is rig.core.renderer:
            raise PermissionError(13, "Permission denied", "/etc/outage-sentinel/templates")
        return real(self, name, **context)

    monkeypatch.setattr(Renderer, "render", render)
    with capture_logs() as logs:
        rig.fold()
    incident = assert_revision_written(rig)
    (summary,) = rig.rows("summary")
    assert summary.body.startswith(f"【故障停电】{incident} 第1版"), summary.body
    failed = [e for e in logs if e["event"] == "summary_render_failed"]
    assert failed and failed[0]["incident_id"] == incident and failed[0]["purpose"] == "summary"
    assert "PermissionError" in failed[0]["error"]
    assert rig.unrendered() == {"builtin": 1, "plain": 0}
