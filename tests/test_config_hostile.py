"""Hostile and hurried configs: every one a listed problem with file and line or key, exit 3.

Reproducers of issue 11 ("Files and configs that give a traceback instead of a problem list",
"Secrets"): not UTF-8, recursive aliases, a billion laughs, numbers the scheduler cannot hold,
a discriminator echoing a value read from the environment.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from apscheduler.triggers.interval import IntervalTrigger

from outage_sentinel import logs
from outage_sentinel.config import (
    MAX_HOURS,
    MAX_MINUTES,
    MAX_SECONDS,
    ConfigError,
    load_config,
    parse_config,
)
from tests.e2e_helpers import ROOT, log_text, make_config, start_daemon, stop, wait_for

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

# The 432-byte document of the finding: nine levels of nine aliases, 9^9 strings expanded.
BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n"
              for a, b in zip("abcdefgh", "bcdefghi", strict=True)))


@pytest.fixture(autouse=True)
def clean_secrets() -> Iterator[None]:
    logs.reset_secrets()
    yield
    logs.reset_secrets()


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    assert str(path) in str(info.value)
    return info.value.problems


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=120)


# -- the file itself ---------------------------------------------------------------------------


def test_a_config_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(MINIMAL.replace("topology: topo", "topology: café").encode("latin-1"))
    (problem,) = problems_of(path)
    assert problem.startswith("line 2, column 14: not UTF-8 (byte 0xe9)")


def test_a_recursive_alias_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "extra: &a [*a]\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith("line 11, column 8: not valid YAML")
    assert "recursive alias" in problem


def test_a_recursive_mapping_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("a: &a {b: *a}\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert "recursive alias" in problem


def test_a_billion_laughs_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) <= 432
    path = tmp_path / "config.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    (problem,) = problems_of(path)
    assert "aliases expand this document to more than 100,000 values" in problem
    assert problem.startswith("line ")


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = MINIMAL.replace("    path: out/notices.jsonl",
                           "    path: out/notices.jsonl\n    timeout_seconds: &t 7\n"
                           "  other: {type: file, path: out/b.jsonl, timeout_seconds: *t}")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={})
    assert config.channels["other"].timeout_seconds == 7


@pytest.mark.parametrize("text", [
    "a: " + "[" * 3000 + "]" * 3000 + "\n",      # nesting deeper than the parser's stack
    "a: 2026-02-30\n",                            # a date that does not exist
    "a: " + "9" * 5000 + "\n",                    # an integer Python refuses to convert
    "a: !!python/object:os.system {}\n",          # a tag the safe loader refuses
    "a: b\0c\n",                                  # a character YAML does not allow
])
def test_yaml_the_loader_chokes_on_is_a_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    (problem,) = problems_of(path)
    assert "not valid YAML" in problem


def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    """An operator adds a feed with a second ``sources:`` at the end: plain YAML keeps the last
    list and drops the first silently (``check`` said ok)."""
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "sources:\n  - {name: b, type: replay, scenario: b.jsonl}\n",
                    encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith("line 11, column 1: not valid YAML: duplicate key 'sources'")
    assert "first given on line 3" in problem
    nested = tmp_path / "nested.yaml"
    nested.write_text(MINIMAL.replace("    path: out/notices.jsonl",
                                      "    path: out/notices.jsonl\n    path: out/other.jsonl"),
                      encoding="utf-8")
    (problem,) = problems_of(nested)
    assert problem.startswith("line 11, column 5: not valid YAML: duplicate key 'path'")


def test_a_merged_key_may_still_be_overridden_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("    path: out/notices.jsonl",
                           "    path: out/notices.jsonl\n    timeout_seconds: 3\n"
                           "  other: {<<: *sink, timeout_seconds: 9}").replace(
                               "  sink:\n", "  sink: &sink\n")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path, env={}).channels["other"].timeout_seconds == 9


def test_a_params_file_giving_a_key_twice_is_refused(tmp_path: Path) -> None:
    from outage_sentinel.config import load_localisation

    params = tmp_path / "params.yaml"
    params.write_text("open_report_true: 0.5\nopen_report_true: 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_localisation(params)
    assert "line 2, column 1: not valid YAML: duplicate key 'open_report_true'" in str(info.value)


def test_check_exits_3_on_a_key_given_twice(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    scenario = ROOT / "fixtures" / "scenarios" / "demo.jsonl"
    cfg.write_text(cfg.read_text("utf-8") + "sources:\n- name: more\n  type: replay\n"
                   f"  scenario: {scenario}\n", encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 3, r.stdout
    assert "duplicate key 'sources'" in r.stderr and "Traceback" not in r.stderr


def test_a_directory_as_config_is_a_problem(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert problem.startswith("<file>: cannot read")


# -- numbers the scheduler and datetime must hold ----------------------------------------------


@pytest.mark.parametrize(("yaml_value", "key", "expected"), [
    ("1e400", "sources[0].interval_seconds", "finite number"),
    (".inf", "sources[0].interval_seconds", "finite number"),
    (".nan", "sources[0].interval_seconds", "finite number"),
    ("1e300", "sources[0].interval_seconds", "less than or equal to"),
])
def test_interval_seconds_out_of_range_names_the_key(tmp_path: Path, yaml_value: str, key: str,
                                                      expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL.replace("    scenario: scenarios/demo.jsonl",
                                    "    scenario: scenarios/demo.jsonl\n"
                                    f"    interval_seconds: {yaml_value}"), encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{key}: ") and expected in problem


@pytest.mark.parametrize(("section", "value"), [
    ({"correlation": {"window_minutes": 1e300}}, "correlation.window_minutes"),
    ({"lifecycle": {"reopen_window_minutes": 1e300}}, "lifecycle.reopen_window_minutes"),
    ({"delivery": {"retry": {"max_age_seconds": 1e300}}}, "delivery.retry.max_age_seconds"),
    ({"delivery": {"retry": {"multiplier": 1e300}}}, "delivery.retry.multiplier"),
    ({"delivery": {"batch_size": 10 ** 30}}, "delivery.batch_size"),
    ({"ami_screen": {"forget_after_hours": 1e300}}, "ami_screen.forget_after_hours"),
    ({"planned": {"reminder_hours": [24, 1e300]}}, "planned.reminder_hours[1]"),
    ({"dispatch": {"speed_kmh": {"rural": 1e-300}}}, "dispatch.speed_kmh.rural"),
    ({"dispatch": {"arrival_minutes": {"urban": 1e300}}}, "dispatch.arrival_minutes.urban"),
    ({"priority": {"special": 1e308}}, "priority.special"),
    ({"priority": {"extra_tags": {"cold": 1e308}}}, "priority.extra_tags.cold"),
    ({"localisation": {"call_rate_rate": 1e300}}, "localisation.call_rate_rate"),
])
def test_numbers_are_bounded_with_the_key_path(section: dict[str, object], value: str) -> None:
    data = yaml.safe_load(MINIMAL)
    data.update(section)
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert any(p.startswith(f"{value}: ") for p in info.value.problems), info.value.problems


def test_the_largest_accepted_durations_fit_the_scheduler_and_datetime() -> None:
    now = datetime.now(UTC)
    trigger = IntervalTrigger(seconds=MAX_SECONDS, timezone=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first is not None
    assert trigger.get_next_fire_time(first, first) is not None
    for delta in (timedelta(seconds=MAX_SECONDS), timedelta(minutes=MAX_MINUTES),
                  timedelta(hours=MAX_HOURS)):
        assert now - delta < now < now + delta


def test_the_daemon_starts_and_stops_with_every_duration_at_its_bound(tmp_path: Path) -> None:
    """What ``check`` accepts, ``run`` can start (1e400 once passed and stopped the start)."""
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["sources"][0]["interval_seconds"] = MAX_SECONDS
    data["sources"][0]["misfire_grace_seconds"] = MAX_SECONDS
    data["delivery"]["interval_seconds"] = MAX_SECONDS
    data["delivery"]["retry"]["max_age_seconds"] = MAX_SECONDS
    data["correlation"]["window_minutes"] = MAX_MINUTES
    data["lifecycle"] = {"check_interval_seconds": MAX_SECONDS,
                         "reopen_window_minutes": MAX_MINUTES}
    data["planned"] = {"reminder_hours": [MAX_HOURS]}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    check = cli("--config", str(cfg), "check")
    assert check.returncode == 0, check.stderr
    proc = start_daemon(cfg)
    log = tmp_path / "daemon.log"
    try:
        assert wait_for(lambda: log.exists() and '"running"' in log_text(log), 60), (
            log_text(log) if log.exists() else proc.stderr)
    finally:
        rc = stop(proc)
    assert rc == 0
    assert "Traceback" not in log_text(log)


# -- values from the environment are never echoed ----------------------------------------------


@pytest.mark.parametrize("secret", ["supersecret-value-123", "abc"])
def test_a_discriminator_error_does_not_echo_a_value_from_the_environment(
        tmp_path: Path, secret: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL.replace("    type: file", "    type: ${KIND}"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"KIND": secret})
    text = str(info.value)
    assert "channels.sink" in text
    assert f"'{secret}'" not in text and (len(secret) < 4 or secret not in text)


def test_a_timezone_from_the_environment_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "timezone: ${TZ_SECRET}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"TZ_SECRET": "Not/AZone-s3cret"})
    assert "Not/AZone-s3cret" not in str(info.value)
    assert "is not a known IANA zone" in str(info.value)


def test_a_url_with_a_key_from_the_environment_stays_out_of_repr(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + """\
  hook:
    type: webhook
    url: "http://127.0.0.1:9/hook/{target}?key=${HOOK_KEY}"
  files:
    type: file
    path: ${OUT_DIR}/n.jsonl
""", encoding="utf-8")
    env = {"HOOK_KEY": "k3y+with/odd=chars", "OUT_DIR": "/srv/private-dir"}
    config = load_config(path, env=env)
    hook = config.channels["hook"]
    assert hook.url.endswith("key=k3y+with/odd=chars")  # the value itself is intact
    shown = repr(config) + str(config) + repr(hook)
    for value in env.values():
        assert value not in shown
    assert logs.redact("GET /hook/x?key=k3y%2Bwith%2Fodd%3Dchars") == "GET /hook/x?key=***"


def test_default_values_are_not_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "timezone: ${TZ_NAME:-Asia/Shanghai}\n", encoding="utf-8")
    load_config(path, env={})
    assert logs.redact("Asia/Shanghai") == "Asia/Shanghai"


def test_a_long_problem_is_cut_with_a_count(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + f"timezone: {'Z' * 5000}\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert len(problem) < 700
    assert "more characters)" in problem


def test_check_exits_3_on_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    cfg.write_bytes(cfg.read_bytes() + "# \xff\n".encode("latin-1"))
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 3
    assert "not UTF-8" in r.stderr and "Traceback" not in r.stderr
