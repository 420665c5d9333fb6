"""An override that renders no text (its conditions leave nothing: ``{% if false %}…``) is a
failed template, not a notice: at run time the village gets the built-in text and the
failure is reported as any other (it sent an empty message to a liaison, unseen), and
``check`` lists it before an outage does."""

from __future__ import annotations

from pathlib import Path

from outage_sentinel.config import load_config
from outage_sentinel.liaison import Renderer, TemplateFailure
from outage_sentinel.template_check import sample_contexts, template_problems
from tests.test_templates import cli, config_with_templates

BLANK = "{% if false %}【停电】{{ village.name }}{% endif %}\n  \n"


def test_a_blank_override_falls_back_to_the_built_in_text_and_is_reported(
        tmp_path: Path) -> None:
    (tmp_path / "liaison_outage.zh.j2").write_text(BLANK, encoding="utf-8")
    failures: list[TemplateFailure] = []
    renderer = Renderer("zh", tmp_path, on_failure=failures.append)
    cfg = load_config(config_with_templates(tmp_path, {}))
    [context] = [c for name, c in sample_contexts(cfg, "zh") if name == "liaison_outage"][:1]
    text = renderer.render("liaison_outage", **context)
    assert text and text == Renderer("zh").render("liaison_outage", **context)  # built-in
    assert len(failures) == 1 and "rendered no text" in failures[0].error
    assert failures[0].where.endswith("liaison_outage.zh.j2")


def test_check_lists_an_override_that_renders_no_text(tmp_path: Path) -> None:
    cfg = config_with_templates(tmp_path, {"liaison_restored.en.j2": BLANK})
    problems = template_problems(load_config(cfg))
    assert any("liaison_restored.en.j2" in p and "rendered no text" in p for p in problems), \
        problems
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1 and "rendered no text" in r.stderr
