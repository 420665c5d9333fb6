"""``topology stats --config FILE`` reads the config's bundle as the daemon does: the tags the
operator weighs (``priority.extra_tags``) are known, not warned about; a tag nobody knows is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e_helpers import ROOT, make_config
from tests.test_cli import cli
from tests.test_input_audit_fixes import set_field


def bundle_with_a_fish_pond(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    set_field(bundle, "customers.csv", "C00033", "tags", "life_support;fish_pond")
    return bundle


def test_stats_of_the_configured_bundle_know_the_weighed_tags(tmp_path: Path) -> None:
    bundle = bundle_with_a_fish_pond(tmp_path)
    weighed = make_config(tmp_path, topology=str(bundle),
                          priority={"extra_tags": {"Fish-Pond": 20}})
    r = cli("--config", str(weighed), "topology", "stats", "--json")
    assert r.returncode == 0, r.stderr
    assert "fish_pond" not in r.stdout + r.stderr
    assert json.loads(r.stdout)["customers"] > 0


def test_stats_still_warn_about_a_tag_nobody_weighs(tmp_path: Path) -> None:
    bundle = bundle_with_a_fish_pond(tmp_path)
    r = cli("--config", str(make_config(tmp_path, topology=str(bundle))), "topology", "stats")
    assert r.returncode == 0, r.stderr
    assert "fish_pond" in r.stderr
    r = cli("topology", "stats", "--topology", str(bundle))  # a bundle alone: no config
    assert r.returncode == 0, r.stderr
    assert "fish_pond" in r.stderr
