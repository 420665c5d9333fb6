"""Notice templates: sandboxed, checked before an outage, never the reason a notice is lost.

Reproducers of issue 11 ("Templates"): an override with ``{{ no_such_var }}`` or ``{% if %}``
passed ``check`` and at run time every event was quarantined, 0 notices out; an override ran
``cycler.__init__.__globals__.os.popen('id')``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jinja2 import Environment, meta
from jinja2.exceptions import SecurityError

from outage_sentinel.config import load_config
from outage_sentinel.liaison import Renderer
from outage_sentinel.template_check import (
    LANGUAGES,
    rendered_names,
    sample_contexts,
    template_problems,
    unverified_start_notes,
)
from tests.e2e_helpers import (
    ROOT,
    free_port,
    log_text,
    make_config,
    scrape,
    sink_lines,
    start_daemon,
    stop,
    wait_for,
)

BUILTIN = ROOT / "outage_sentinel" / "templates"


def escape(marker: Path) -> str:
    return ("{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=120)


def config_with_templates(tmp_path: Path, templates: dict[str, str], **overrides: object) -> Path:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    for name, text in templates.items():
        (tpl / name).write_text(text, encoding="utf-8")
    cfg = make_config(tmp_path, **overrides)  # type: ignore[arg-type]
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["notify"]["templates_dir"] = str(tpl)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_check_renders_every_builtin_template_in_every_language(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path))
    assert template_problems(config) == []
    # Every template shipped is rendered by the check (a new one needs a context there).
    assert rendered_names(config) == {p.name for p in BUILTIN.glob("*.j2")}
    assert {n.split(".")[1] for n in rendered_names(config)} == set(LANGUAGES)


def test_zh_and_en_templates_use_the_same_facts() -> None:
    """A fact one language states the other does not lose (liaison_update.en.j2 never said
    the cause that liaison_update.zh.j2 ends with)."""
    env = Environment()
    for zh in sorted(BUILTIN.glob("*.zh.j2")):
        en = zh.with_name(zh.name.replace(".zh.", ".en."))
        used = [meta.find_undeclared_variables(env.parse(f.read_text("utf-8"))) for f in (zh, en)]
        assert used[0] == used[1], (zh.name, used[0] ^ used[1])


def test_an_update_says_the_cause_in_every_language(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path))
    for language, said in (("zh", "原因：雷击。"), ("en", "Cause: 雷击.")):
        updates = [ctx for name, ctx in sample_contexts(config, language)
                   if name == "liaison_update" and ctx["cause"]]
        assert updates, language
        for ctx in updates:
            assert said in Renderer(language).render("liaison_update", **ctx), language


@pytest.mark.parametrize(("template", "text", "line", "expected"), [
    ("liaison_outage.zh.j2", "第一行\n{{ no_such_var }}\n", 2, "'no_such_var' is undefined"),
    ("liaison_care.en.j2", "{% for h in households %}{{ h.nope }}{% endfor %}", 1,
     "has no attribute 'nope'"),
    ("crew_dispatch.zh.j2", "{% if %}x{% endif %}", 1, "TemplateSyntaxError"),
    ("command_summary.en.j2", "{{ incident.etr.isoformat() }}", 1, "has no attribute"),
])
def test_check_fails_naming_the_template_file_line_and_error(
        tmp_path: Path, template: str, text: str, line: int, expected: str) -> None:
    cfg = config_with_templates(tmp_path, {template: text})
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1, r.stdout + r.stderr
    path = tmp_path / "tpl" / template
    lines = [ln for ln in r.stderr.splitlines() if str(path) in ln]
    assert lines, r.stderr
    assert all(f"notify.templates_dir: {path}:{line}: " in ln for ln in lines)
    assert any(expected in ln for ln in lines)
    assert "Traceback" not in r.stderr


def test_a_template_that_breaks_only_without_an_etr_is_caught(tmp_path: Path) -> None:
    cfg = config_with_templates(tmp_path, {"liaison_update.en.j2": "back {{ etr_local[11:] }}"})
    problems = template_problems(load_config(cfg))
    assert any("liaison_update.en.j2:1" in p and "NoneType" in p for p in problems), problems


def test_a_good_override_passes_check(tmp_path: Path) -> None:
    cfg = config_with_templates(tmp_path, {
        "liaison_outage.zh.j2": "【停电】{{ village.name }} {{ start_local }} {{ incident_id }}"})
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 0, r.stderr


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "liaison_outage.zh.j2").write_text(escape(marker), encoding="utf-8")
    renderer = Renderer("zh", tmp_path)
    with pytest.raises(SecurityError):
        renderer.env.get_template("liaison_outage.zh.j2").render()
    with pytest.raises(SecurityError):
        renderer.env.from_string("{{ 'x' * 10 ** 9 }}").render()
    assert not marker.exists()


def test_check_lists_a_sandbox_escape_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cfg = config_with_templates(tmp_path, {"liaison_restored.zh.j2": escape(marker)})
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1
    assert "liaison_restored.zh.j2:1: SecurityError" in r.stderr
    assert not marker.exists()


def test_a_broken_override_at_run_time_falls_back_and_alerts_the_command_centre(
        tmp_path: Path) -> None:
    """The daemon as a subprocess: an override that fails for every notice (and one that tries
    to run a command): liaisons get the built-in text, the command centre is told once per
    incident, the failure is logged and counted, nothing is executed."""
    marker = tmp_path / "pwned"
    port = free_port()
    cfg = config_with_templates(
        tmp_path, {"liaison_outage.zh.j2": "{{ no_such_var }}",
                   "liaison_restored.zh.j2": escape(marker)},
        speed=50.0, metrics_port=port,
        command_centre={"channel": "wecom", "target": "command-centre", "summaries": False})
    proc = start_daemon(cfg)
    try:
        def told() -> bool:
            lines = sink_lines(tmp_path)
            return (any(ln["purpose"] == "template_failed" for ln in lines)
                    and any(ln["purpose"] == "outage" and ln["audience"] == "liaison"
                            for ln in lines)
                    and any(ln["purpose"] == "restored" for ln in lines))
        assert wait_for(told, 90), sink_lines(tmp_path)
        metrics = scrape(port)
    finally:
        rc = stop(proc)
    assert rc == 0
    lines = sink_lines(tmp_path)
    outage = [ln for ln in lines if ln["purpose"] == "outage" and ln["audience"] == "liaison"]
    assert all("已确认停电" in ln["text"] for ln in outage)  # the built-in outage text
    alerts = [ln for ln in lines if ln["purpose"] == "template_failed"]
    assert all(ln["audience"] == "command" and "【模板错误】" in ln["text"] for ln in alerts)
    assert any("liaison_outage.zh.j2:1" in ln["text"] for ln in alerts)
    assert any("liaison_restored.zh.j2:1" in ln["text"] and "SecurityError" in ln["text"]
               for ln in alerts)
    keys = [(ln["incident_id"], ln["text"].split("：")[0]) for ln in alerts]
    assert len(keys) == len(set(keys))  # once per incident and template
    assert 'outage_sentinel_template_failures_total{template="liaison_outage"}' in metrics
    log = log_text(tmp_path / "daemon.log")
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "template_failed" in events
    assert "processing_failed" not in events and "Traceback" not in log
    assert not marker.exists()


def test_check_notes_an_override_printing_a_start_that_may_be_unset(tmp_path: Path) -> None:
    """While an AMI source is flagged as read in the wrong zone, a start only its meters give
    is not stated (``start_local`` None, 待核实): an override printing it unguarded would tell
    the village 停电时间：None. ``check`` renders that case and notes the file (a note: the
    daemon still starts — a case this rare must not keep it down)."""
    builtin = (BUILTIN / "liaison_outage.zh.j2").read_text("utf-8")
    text = builtin.replace('{{ start_local or "待核实" }}', "{{ start_local }}")
    assert text != builtin
    cfg = config_with_templates(tmp_path, {"liaison_outage.zh.j2": text})
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "tpl" / "liaison_outage.zh.j2"
    (note,) = [ln for ln in r.stdout.splitlines() if str(path) in ln]
    assert note.startswith(f"note: notify.templates_dir: {path}: prints None"), note
    assert "start_local" in note, note
    # An override that guards it (the built-in text itself) is noted for nothing.
    plain = tmp_path / "plain"
    plain.mkdir()
    guarded = config_with_templates(plain, {"liaison_outage.zh.j2": builtin})
    assert unverified_start_notes(load_config(guarded)) == []
