"""``check`` catches what makes ``run`` fail or silently misbehave (audit "check accepts, run
fails"): a ``log.file`` or ``state_dir`` that cannot be created (``run`` then stopped with a
raw traceback, or ``cannot start: FileNotFoundError`` naming no key), a ``templates_dir`` that
does not exist or whose files are named so that no template is overridden (the built-in
wording went out without a word), a ``file_drop`` directory that cannot be made, the missing
topology directory printed twice; and two small ones: ``users role`` said "role done", and an
operator verb whose output was closed early (``| head``) ended in a traceback.

Every case runs the real command line as a subprocess, on a copy of the demo config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e_helpers import ROOT, make_config

PASSWORD = "a-long-enough-password-1"


def cli(config: Path, *args: str, stdout: Any = subprocess.PIPE
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(config),
                           *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          cwd=str(ROOT), timeout=180,
                          env={"PATH": "/usr/bin:/bin", "OUTAGE_SENTINEL_PASSWORD": PASSWORD})


def edit(config: Path, **changes: Any) -> Path:
    """``config`` with top-level keys replaced (``log={...}``, ``state_dir=...``)."""
    data = yaml.safe_load(config.read_text("utf-8"))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return config


def blocker(tmp_path: Path) -> Path:
    """A plain file where a directory would have to be."""
    path = tmp_path / "blocker"
    path.write_text("a file where a directory should go\n", encoding="utf-8")
    return path


# -- 1. log.file and state_dir ---------------------------------------------------------------


def test_a_log_file_that_cannot_be_created_is_a_problem_for_check_and_exit_3_for_run(
        tmp_path: Path) -> None:
    log_file = blocker(tmp_path) / "logs" / "daemon.log"
    config = edit(make_config(tmp_path), log={"file": str(log_file)})
    checked = cli(config, "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"log.file: {log_file}" in checked.stderr, checked.stderr
    assert "not a directory" in checked.stderr, checked.stderr
    ran = cli(config, "run", "--once")
    assert ran.returncode == 3, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    assert f"log.file: {log_file}" in ran.stderr, ran.stderr


def test_a_log_file_in_a_directory_yet_to_be_made_passes_and_check_leaves_nothing_behind(
        tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    config = edit(make_config(tmp_path), log={"file": str(fresh / "a" / "b" / "daemon.log")},
                  state_dir=str(fresh / "state"))
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert not fresh.exists(), list(fresh.rglob("*"))


def test_a_state_dir_that_is_a_file_is_a_problem_for_check_and_exit_3_for_run(
        tmp_path: Path) -> None:
    state = blocker(tmp_path)
    config = edit(make_config(tmp_path), state_dir=str(state))
    checked = cli(config, "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"state_dir: {state}" in checked.stderr, checked.stderr
    ran = cli(config, "run", "--once")
    assert ran.returncode == 3, ran.stderr
    assert f"state_dir: {state}" in ran.stderr, ran.stderr
    assert "cannot start" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr


def test_a_state_dir_under_a_file_is_a_problem_for_check_and_exit_3_for_run(
        tmp_path: Path) -> None:
    state = blocker(tmp_path) / "state"
    config = edit(make_config(tmp_path), state_dir=str(state))
    checked = cli(config, "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"state_dir: {state}" in checked.stderr, checked.stderr
    ran = cli(config, "run", "--once")
    assert ran.returncode == 3, ran.stderr
    assert f"state_dir: {state}" in ran.stderr, ran.stderr


# -- 2. notify.templates_dir -----------------------------------------------------------------


# run goes on with the built-in templates: a note, not a problem (a failing check keeps the
# whole unit down, as ExecStartPre and ExecReload).


def test_a_templates_dir_that_does_not_exist_is_a_note(tmp_path: Path) -> None:
    missing = tmp_path / "tpl_typo"
    config = edit(make_config(tmp_path), notify={"templates_dir": str(missing)})
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"note: notify.templates_dir: {missing}: does not exist" in checked.stdout


def test_override_files_that_match_no_template_are_notes_naming_the_closest(
        tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "liaison_outge.zh.j2").write_text("【自定义】{{ village_name }}停电\n", "utf-8")
    (tpl / "liaison_outage.j2").write_text("【自定义】停电\n", "utf-8")
    config = edit(make_config(tmp_path), notify={"templates_dir": str(tpl)})
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name in ("liaison_outge.zh.j2", "liaison_outage.j2"):
        line = next((x for x in checked.stdout.splitlines()
                     if f"note: notify.templates_dir: {tpl / name}: " in x), None)
        assert line is not None, checked.stdout
        assert "matches no template" in line and "liaison_outage.zh.j2" in line, line


def test_an_override_and_a_part_it_includes_pass(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    builtin = (ROOT / "outage_sentinel" / "templates" / "liaison_outage.zh.j2").read_text("utf-8")
    (tpl / "liaison_outage.zh.j2").write_text(builtin + "{% include 'footer.j2' %}\n", "utf-8")
    (tpl / "footer.j2").write_text("（本公司自定义）\n", "utf-8")
    config = edit(make_config(tmp_path), notify={"templates_dir": str(tpl)})
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert "templates_dir" not in checked.stdout, checked.stdout


# -- 3. file_drop directories ----------------------------------------------------------------


def _with_file_drop(tmp_path: Path, **keys: str) -> Path:
    config = make_config(tmp_path)
    data = yaml.safe_load(config.read_text("utf-8"))
    data["sources"].append({"name": "ami-files", "type": "file_drop", **keys})
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return config


# run goes on without that one source (started again at each poll): a note.


def test_a_file_drop_done_dir_that_cannot_be_made_is_a_note(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    done = blocker(tmp_path) / "done"
    config = _with_file_drop(tmp_path, directory=str(drop), done_dir=str(done))
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"note: sources[1].done_dir: {done}" in checked.stdout, checked.stdout
    assert "failed_dir" not in checked.stdout, checked.stdout
    assert not (drop / "failed").exists()  # check made nothing


def test_a_file_drop_directory_that_is_a_file_is_a_note(tmp_path: Path) -> None:
    drop = blocker(tmp_path)
    config = _with_file_drop(tmp_path, directory=str(drop))
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"note: sources[1].directory: {drop}" in checked.stdout, checked.stdout
    assert f"note: sources[1].done_dir: {drop / 'done'}" in checked.stdout, checked.stdout


def test_a_file_drop_directory_yet_to_be_made_passes(tmp_path: Path) -> None:
    config = _with_file_drop(tmp_path, directory=str(tmp_path / "drop"))
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / "drop").exists()


# -- 4. the missing topology directory -------------------------------------------------------


def test_a_missing_topology_directory_is_named_once(tmp_path: Path) -> None:
    missing = tmp_path / "topolgy"
    config = make_config(tmp_path, topology=str(missing))
    checked = cli(config, "check")
    assert checked.returncode == 1
    assert f"  {missing}: not a directory" in checked.stderr.splitlines(), checked.stderr
    assert checked.stderr.count(str(missing)) == 1, checked.stderr


# -- 5. users role, a closed output ----------------------------------------------------------


def test_users_role_says_what_was_done(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert cli(config, "users", "add", "wang").returncode == 0
    changed = cli(config, "users", "role", "wang", "operator")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "user wang: role viewer → operator", changed.stdout
    disabled = cli(config, "users", "disable", "wang")
    assert disabled.stdout.strip() == "user wang: disabled (signed out everywhere)"


def test_an_operator_verb_whose_output_is_closed_exits_quietly(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone: nothing will ever read
    try:
        r = cli(config, "storm", "status", stdout=write_end)
    finally:
        os.close(write_end)
    assert r.stderr == "", r.stderr
    assert r.returncode == 141  # as a command killed by SIGPIPE


def test_run_logs_override_files_it_will_never_use(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "liaison_outge.zh.j2").write_text("【自定义】{{ village_name }}停电\n", "utf-8")
    config = edit(make_config(tmp_path), notify={"templates_dir": str(tpl)})
    ran = cli(config, "run", "--once")
    assert ran.returncode == 0, ran.stderr
    log = (tmp_path / "daemon.log").read_text("utf-8")
    line = next((x for x in log.splitlines() if "templates_dir_ignored" in x), None)
    assert line is not None, log[:2000]
    assert str(tpl / "liaison_outge.zh.j2") in line and "liaison_outage.zh.j2" in line, line


def test_a_log_file_through_a_dangling_link_passes(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    link = tmp_path / "daemon-link.log"
    link.symlink_to(tmp_path / "logs" / "daemon.log")
    config = edit(make_config(tmp_path), log={"file": str(link)})
    checked = cli(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / "logs" / "daemon.log").exists()
