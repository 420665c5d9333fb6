"""Config: the shipped file loads; every error names the key path and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from outage_sentinel.config import (
    ConfigError,
    FileChannelConfig,
    HttpJsonSourceConfig,
    ReplaySourceConfig,
    SmsChannelConfig,
    WebhookChannelConfig,
    load_config,
    parse_config,
)
from tests.conftest import REPO

MINIMAL = """\
state_dir: state
topology: topo
sources:
  - name: demo
    type: replay
    scenario: scenarios/demo.jsonl
channels:
  sink:
    type: file
    path: out/notices.jsonl
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    assert str(path) in str(info.value)
    return info.value.problems


def with_minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL)
    data.update(overrides)
    return data


# -- the shipped config ------------------------------------------------------------------------


def test_repo_config_loads_as_is() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.timezone == "Asia/Shanghai"
    # Relative paths are resolved against the file's directory, and point at real things.
    assert config.topology == REPO / "topology" and config.topology.is_dir()
    assert config.state_dir == REPO / "state"
    source = config.sources[0]
    assert isinstance(source, ReplaySourceConfig)
    assert source.scenario.is_absolute() and source.scenario.is_file()
    assert {"wecom", "dingtalk", "feishu", "sms"} <= set(config.channels)
    for channel in config.channels.values():
        assert isinstance(channel, FileChannelConfig) and channel.path.is_absolute()
    assert config.database_url() == f"sqlite:///{REPO / 'state' / 'sentinel.db'}"


# -- key paths in errors -----------------------------------------------------------------------


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "delivery:\n  retyr: {}\n")
    assert problems(p) == ["delivery.retyr: unknown key"]


def test_unknown_key_inside_a_list_item(tmp_path: Path) -> None:
    text = MINIMAL.replace("    type: replay\n", "    type: replay\n    speeed: 2\n")
    assert problems(write(tmp_path, text)) == ["sources[0].speeed: unknown key"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(write(tmp_path, MINIMAL + "colour: blue\n")) == ["colour: unknown key"]


def test_wrong_type_is_named_with_what_was_expected(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "delivery:\n  batch_size: many\n")
    (line,) = problems(p)
    assert line.startswith("delivery.batch_size: ")
    assert "integer" in line


def test_out_of_range_value(tmp_path: Path) -> None:
    text = MINIMAL.replace("    type: replay\n", "    type: replay\n    interval_seconds: -5\n")
    (line,) = problems(write(tmp_path, text))
    assert line == "sources[0].interval_seconds: Input should be greater than 0"


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = MINIMAL + "delivery:\n  batch_size: 0\nmetrics:\n  port: http\n  colour: red\n"
    found = problems(write(tmp_path, text))
    assert len(found) == 3
    assert any(f.startswith("delivery.batch_size:") for f in found)
    assert any(f.startswith("metrics.port:") for f in found)
    assert "metrics.colour: unknown key" in found


def test_missing_required_key(tmp_path: Path) -> None:
    text = "sources:\n  - name: demo\n    type: replay\n"
    found = problems(write(tmp_path, text))
    assert "sources[0].scenario: required key is missing" in found
    assert "channels: required key is missing" in found


def test_channel_named_like_its_type_keeps_its_name_in_the_path(tmp_path: Path,
                                                                no_secrets: None) -> None:
    """config.yaml names its channels wecom/sms/...: the name must survive in error paths
    (whatever secrets other tests registered: one spelt "secret" hid "access_key_secret")."""
    text = MINIMAL + """\
  sms:
    type: sms
    access_key_id: a
    sign_name: x
    template_code: t
  wecom:
    type: wecom
    robots:
      group-1: {secret: s}
  file:
    type: file
"""
    found = problems(write(tmp_path, text))
    assert sorted(found) == [
        "channels.file.path: required key is missing",
        "channels.sms.access_key_secret: required key is missing",
        "channels.wecom.robots.group-1.key: required key is missing",
    ]


def test_bad_enum_value_names_the_key(tmp_path: Path) -> None:
    found = problems(write(tmp_path, MINIMAL + "notify:\n  language: fr\n"))
    assert len(found) == 1 and found[0].startswith("notify.language:")
    assert "'zh'" in found[0] and "'en'" in found[0]


def test_unknown_source_type(tmp_path: Path) -> None:
    text = MINIMAL.replace("type: replay", "type: carrier-pigeon")
    (line,) = problems(write(tmp_path, text))
    assert line.startswith("sources[0]") and "carrier-pigeon" in line


def test_duplicate_source_names_are_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace("channels:", textwrap.dedent("""\
          - name: demo
            type: replay
            scenario: other.jsonl
        channels:"""))
    (line,) = problems(write(tmp_path, text))
    assert "source names must be unique" in line and "demo" in line


def test_bad_timezone(tmp_path: Path) -> None:
    (line,) = problems(write(tmp_path, MINIMAL + "timezone: Mars/Olympus\n"))
    assert "Mars/Olympus" in line


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "- a\n- b\n")) == ["<root>: expected a mapping of keys"]


def test_missing_file(tmp_path: Path) -> None:
    found = problems(tmp_path / "absent.yaml")
    assert len(found) == 1 and found[0].startswith("<file>: cannot read")


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "state_dir: state\nsources: [\n  - name: x\n")
    (line,) = problems(p)
    assert line.startswith("line ") and "not valid YAML" in line
    bad = write(tmp_path, "a: 1\nb: 2\n  c: 3\n", "bad.yaml")
    (line,) = problems(bad)
    assert line.startswith("line 3,")


# -- environment interpolation -----------------------------------------------------------------

WEBHOOK = MINIMAL + """\
  hook:
    type: webhook
    url: ${HOOK_URL:-https://hooks.example.invalid/x}
    headers:
      Authorization: Bearer ${HOOK_TOKEN}
"""


def test_env_var_is_interpolated_into_a_secret(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, WEBHOOK), env={"HOOK_TOKEN": "s3cr3t-token"})
    hook = config.channels["hook"]
    assert isinstance(hook, WebhookChannelConfig)
    assert hook.headers["Authorization"].get_secret_value() == "Bearer s3cr3t-token"
    assert hook.url == "https://hooks.example.invalid/x"  # the default after ':-'


def test_env_var_overrides_the_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, WEBHOOK),
                         env={"HOOK_TOKEN": "t", "HOOK_URL": "https://real.example.invalid/h"})
    hook = config.channels["hook"]
    assert isinstance(hook, WebhookChannelConfig)
    assert hook.url == "https://real.example.invalid/h"


def test_empty_default_is_allowed(tmp_path: Path) -> None:
    data = with_minimal(timezone="${TZ_NAME:-}UTC")
    assert parse_config(data, env={}).timezone == "UTC"


def test_missing_env_var_is_named_with_the_key_path(tmp_path: Path) -> None:
    assert problems(write(tmp_path, WEBHOOK), env={}) == [
        "channels.hook.headers.Authorization: environment variable HOOK_TOKEN is not set"]


def test_missing_env_var_in_a_list_item(tmp_path: Path) -> None:
    text = MINIMAL.replace("scenarios/demo.jsonl", "${SCENARIO_DIR}/demo.jsonl")
    assert problems(write(tmp_path, text)) == [
        "sources[0].scenario: environment variable SCENARIO_DIR is not set"]


def test_process_environment_is_used_by_default(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "from-process-env")
    config = load_config(write(tmp_path, WEBHOOK))
    hook = config.channels["hook"]
    assert isinstance(hook, WebhookChannelConfig)
    assert hook.headers["Authorization"].get_secret_value() == "Bearer from-process-env"


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_are_secretstr_and_stay_out_of_repr(tmp_path: Path) -> None:
    text = MINIMAL + """\
  sms:
    type: sms
    access_key_id: ${SMS_ID}
    access_key_secret: ${SMS_SECRET}
    sign_name: 某供电公司
    template_code: SMS_1
database:
  url: postgresql+psycopg2://sentinel:${DB_PASSWORD}@127.0.0.1/sentinel
"""
    env = {"SMS_ID": "LTAIidvalue", "SMS_SECRET": "very-secret-key", "DB_PASSWORD": "pw-hunter2"}
    config = load_config(write(tmp_path, text), env=env)
    sms = config.channels["sms"]
    assert isinstance(sms, SmsChannelConfig)
    assert isinstance(sms.access_key_secret, SecretStr)
    assert sms.access_key_secret.get_secret_value() == "very-secret-key"
    dumped = repr(config) + str(config) + config.model_dump_json()
    for value in env.values():
        assert value not in dumped
    assert config.database_url() == "postgresql+psycopg2://sentinel:pw-hunter2@127.0.0.1/sentinel"


# -- paths -------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_dir_not_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc" / "sentinel"
    conf_dir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = MINIMAL + "log:\n  file: logs/sentinel.log\nnotify:\n  templates_dir: tpl\n"
    config = load_config(write(conf_dir, text))
    base = conf_dir.resolve()
    assert config.state_dir == base / "state"
    assert config.topology == base / "topo"
    source = config.sources[0]
    assert isinstance(source, ReplaySourceConfig)
    assert source.scenario == base / "scenarios" / "demo.jsonl"
    sink = config.channels["sink"]
    assert isinstance(sink, FileChannelConfig) and sink.path == base / "out" / "notices.jsonl"
    assert config.log.file == base / "logs" / "sentinel.log"
    assert config.notify.templates_dir == base / "tpl"
    assert config.database_url() == f"sqlite:///{base / 'state' / 'sentinel.db'}"


def test_absolute_paths_are_left_alone(tmp_path: Path) -> None:
    text = MINIMAL.replace("state_dir: state", f"state_dir: {tmp_path / 'abs-state'}")
    config = load_config(write(tmp_path / "", text))
    assert config.state_dir == tmp_path / "abs-state"


# -- defaults and presets ----------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.correlation.window_minutes == 30
    assert config.delivery.dry_run is False
    assert config.notify.language == "zh"
    assert config.database.url is None
    source = config.sources[0]
    assert isinstance(source, ReplaySourceConfig) and source.speed == 1.0 and not source.loop


def test_http_json_needs_a_preset_or_a_mapping(tmp_path: Path) -> None:
    data = with_minimal(sources=[{"name": "feed", "type": "http_json",
                                  "url": "https://feed.example.invalid/list"}])
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    (line,) = info.value.problems
    assert line.startswith("sources[0]") and "preset" in line
    data["sources"][0]["preset"] = "95598_list"
    source = parse_config(data, env={}).sources[0]
    assert isinstance(source, HttpJsonSourceConfig) and source.preset == "95598_list"


def test_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        config.timezone = "UTC"


def test_a_lease_longer_than_two_poll_intervals_is_noted() -> None:
    # a standby bids every third of the lease: a takeover can take 4/3 of it, and the design
    # bounds failover by two poll intervals of a source
    def note(lease: float, interval: float, enabled: bool = True) -> str | None:
        data = with_minimal(ha={"enabled": enabled, "lease_seconds": lease},
                            database={"url": "postgresql://u@127.0.0.1/x"})
        data["sources"][0]["interval_seconds"] = interval
        data["sources"].append({"name": "slow", "type": "replay", "scenario": "s.jsonl",
                                "interval_seconds": 600})
        return parse_config(data).failover_note()

    slow = note(10, 5)
    assert slow is not None and "13.3 s" in slow and "'demo' (5 s)" in slow
    assert note(7.5, 5) is None  # 10 s: two intervals exactly
    assert note(10, 5, enabled=False) is None
