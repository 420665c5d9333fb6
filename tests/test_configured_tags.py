"""The tags an operator weighs (``priority.extra_tags``) are known wherever the config's bundle
is loaded: ``check`` notes a tag nobody knows, never one the config weighs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e_helpers import ROOT, make_config
from tests.test_check_routing import cli
from tests.test_input_audit_fixes import set_field


def test_check_notes_an_unknown_tag_but_not_one_the_config_weighs(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    set_field(bundle, "customers.csv", "C00033", "tags", "life_support;fish_pond")
    plain = cli("--config", str(make_config(tmp_path, topology=str(bundle))), "check")
    assert "fish_pond" in plain.stdout + plain.stderr
    weighed = make_config(tmp_path, topology=str(bundle),
                          priority={"extra_tags": {"Fish-Pond": 20}})
    r = cli("--config", str(weighed), "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fish_pond" not in r.stdout + r.stderr
