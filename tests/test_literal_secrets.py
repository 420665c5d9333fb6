"""A secret written in the config file rather than taken from the environment is named by its
key path — by ``check`` as a note, by ``run`` in its log — and its value never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from outage_sentinel.config import parse_config
from tests.e2e_helpers import ROOT, make_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=300,
                          env={**os.environ, "SMS_ID": "LTAIenv"})

SMS = {"type": "sms", "access_key_id": "${SMS_ID}", "access_key_secret": "qZ8vLiteral77",
       "sign_name": "清河供电", "templates": {"outage": "SMS_1"}, "template_code": "SMS_0"}


def demo(**changes: object) -> dict[str, object]:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return data


def test_the_secrets_written_in_the_file_are_named_by_key() -> None:
    data = demo(channels={**demo()["channels"], "text": SMS},  # type: ignore[dict-item]
                database={"url": "postgresql://os:pw0rdLiteral@db/os"})
    config = parse_config(data, env={"SMS_ID": "LTAIenv"})
    assert config.literal_secrets() == ("channels.text.access_key_secret", "database.url")
    from_env = demo(database={"url": "postgresql://os:${DB_PW}@db/os"})
    assert parse_config(from_env, env={"DB_PW": "x9"}).literal_secrets() == ()
    assert parse_config(demo(), env={}).literal_secrets() == ()


def test_check_notes_and_run_logs_a_literal_secret_without_its_value(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, channels={**demo()["channels"], "text": SMS})  # type: ignore[dict-item]
    r = cli("--config", str(cfg), "check")
    out = r.stdout + r.stderr
    assert "channels.text.access_key_secret: a secret written in the config file" in out, out
    assert "qZ8vLiteral77" not in out
    r = cli("--config", str(cfg), "run", "--once")
    lines = [json.loads(x) for x in (tmp_path / "daemon.log").read_text().splitlines() if x]
    (warned,) = [x for x in lines if x.get("event") == "config_secret_literal"]
    assert warned["keys"] == ["channels.text.access_key_secret"]
    assert "qZ8vLiteral77" not in (tmp_path / "daemon.log").read_text()
