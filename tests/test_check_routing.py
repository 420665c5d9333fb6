"""``check`` validates routing: every recipient reaches a configured channel and robot.

Reproducer of issue 10 item 6: ``check`` said ok to a liaison routed to a robot that is not
configured; the notice was dead-lettered at outage time ("no robot configured for target …").
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e_helpers import ROOT, make_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=120,
                          env={"PATH": "/usr/bin:/bin", "ROBOT_KEY": "robot-key-0001"})


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, data: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)


def robot_config(tmp_path: Path, bundle: Path, leave_out: set[str]) -> Path:
    """The demo config with a real WeCom robot channel: one robot per group target of the
    bundle's WeCom recipients, except ``leave_out``."""
    targets = {r["target"] or r["phone"] for f in ("liaisons.csv", "crews.csv")
               for r in rows(bundle / f) if r["channel"] == "wecom"}
    cfg = make_config(tmp_path, topology=str(bundle))
    data: dict[str, Any] = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"]["wecom"] = {
        "type": "wecom", "base_url": "http://127.0.0.1:9",
        "robots": {t: {"key": "${ROBOT_KEY}"} for t in sorted(targets - leave_out)}}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def copy_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "topology", bundle)
    return bundle


def test_every_robot_configured_passes(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    r = cli("--config", str(robot_config(tmp_path, bundle, set())), "check")
    assert r.returncode == 0, r.stderr


def test_a_liaison_routed_to_an_unconfigured_robot_fails_naming_file_and_row(
        tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    liaisons = rows(bundle / "liaisons.csv")
    missing = next(r["target"] for r in liaisons if r["channel"] == "wecom")
    expected = [(i + 2, r["name"]) for i, r in enumerate(liaisons)
                if r["channel"] == "wecom" and r["target"] == missing]
    r = cli("--config", str(robot_config(tmp_path, bundle, {missing})), "check")
    assert r.returncode == 1
    for line, name in expected:
        assert (f"{bundle}/liaisons.csv:{line} ({name}): no robot for target {missing!r} "
                "in channels.wecom.robots") in r.stderr, r.stderr
    assert f"{len(expected)} problem(s)" in r.stderr


def test_a_crew_and_the_command_centre_without_a_robot_are_listed(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    crews = rows(bundle / "crews.csv")
    crew = next(c for c in crews if c["channel"] == "wecom")
    cfg = robot_config(tmp_path, bundle, {crew["target"]})
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["command_centre"] = {"channel": "wecom", "target": "指挥中心"}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1
    row = crews.index(crew) + 2
    assert f"crews.csv:{row} ({crew['id']}): no robot for target {crew['target']!r}" in r.stderr
    assert "command_centre.target: no robot for target '指挥中心'" in r.stderr


def test_malformed_phone_numbers_are_listed_masked_with_file_and_row(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    liaisons = rows(bundle / "liaisons.csv")
    sms = next(i for i, r in enumerate(liaisons) if r["channel"] == "sms")
    liaisons[sms]["phone"] = "1380000123"      # ten digits
    liaisons[sms]["target"] = ""
    liaisons[0]["phone"] = "+8613800001234"    # well formed with +86: fine
    write_rows(bundle / "liaisons.csv", liaisons)
    crews = rows(bundle / "crews.csv")
    c = next(i for i, r in enumerate(crews) if r["channel"] == "sms")
    crews[c]["target"] = "12345678901"         # not a mobile prefix
    write_rows(bundle / "crews.csv", crews)
    r = cli("--config", str(make_config(tmp_path, topology=str(bundle))), "check")
    assert r.returncode == 1
    assert (f"liaisons.csv:{sms + 2} ({liaisons[sms]['name']}): phone '1380000123' is not a "
            "mainland mobile number") in r.stderr
    # The demo routes "sms" to a file channel: the target is free text there, the phone not.
    assert f"crews.csv:{c + 2}" not in r.stderr
    assert "liaisons.csv:2 " not in r.stderr

    cfg = make_config(tmp_path, topology=str(bundle))
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"]["sms"] = {"type": "sms", "access_key_id": "id-0001",
                               "access_key_secret": "secret-0001", "sign_name": "供电",
                               "template_code": "SMS_1"}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1
    assert (f"crews.csv:{c + 2} ({crews[c]['id']}): SMS target '12345678901' is not a mainland "
            "mobile number") in r.stderr
