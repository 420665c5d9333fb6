"""The ``outage-sentinel`` command as a user runs it: a subprocess, real files, exit codes."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from outage_sentinel import __version__
from outage_sentinel.logs import PHONE
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT, make_config


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(cwd or ROOT), timeout=120)


def test_version() -> None:
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"outage-sentinel {__version__}"


def test_no_verb_is_a_usage_error() -> None:
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2


def test_check_passes_on_the_default_config() -> None:
    r = cli("--config", str(ROOT / "config.yaml"), "check")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_topology_stats_of_the_demo_county() -> None:
    r = cli("topology", "stats", "--topology", str(ROOT / "topology"), "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    with open(ROOT / "topology" / "nodes.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert stats["nodes"] == len(rows)
    assert stats["transformer_areas"] == sum(1 for r in rows if r["kind"] == "transformer")
    assert stats["customers"] == sum(int(r["customers"] or 0) for r in rows
                                     if r["kind"] == "transformer")
    assert stats["feeders"] >= 12 and stats["substations"] == 3


def _broken_bundle(tmp: Path) -> Path:
    bundle = tmp / "broken"
    shutil.copytree(ROOT / "topology", bundle)
    nodes = (bundle / "nodes.csv").read_text("utf-8").splitlines()
    header = nodes[0].split(",")
    col = {name: i for i, name in enumerate(header)}
    # Row 3 (line 3): blank out a transformer's village; duplicate a node id at the end.
    for i, line in enumerate(nodes[1:], start=1):
        cells = line.split(",")
        if cells[col["kind"]] == "transformer":
            cells[col["village"]] = ""
            nodes[i] = ",".join(cells)
            bad_tx_line, bad_tx = i + 1, cells[0]
            break
    nodes.append(nodes[1])
    dup_line = len(nodes)
    (bundle / "nodes.csv").write_text("\n".join(nodes) + "\n", encoding="utf-8")
    edges = (bundle / "edges.csv").read_text("utf-8").splitlines()
    edges.append("BRK-CG01,NOWHERE")
    dangling_line = len(edges)
    (bundle / "edges.csv").write_text("\n".join(edges) + "\n", encoding="utf-8")
    liaisons = (bundle / "liaisons.csv").read_text("utf-8").splitlines()
    liaisons.append("V999,张三,village_liaison,13800000000,wecom,某群,")
    unknown_line = len(liaisons)
    (bundle / "liaisons.csv").write_text("\n".join(liaisons) + "\n", encoding="utf-8")
    (tmp / "expect.json").write_text(json.dumps({
        "tx": [bad_tx_line, bad_tx], "dup": dup_line, "dangling": dangling_line,
        "unknown": unknown_line}))
    return bundle


def test_check_lists_every_problem_with_file_and_row(tmp_path: Path) -> None:
    bundle = _broken_bundle(tmp_path)
    expect = json.loads((tmp_path / "expect.json").read_text())
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["topology"] = str(bundle)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1
    out = r.stderr
    tx_line, tx = expect["tx"]
    assert f"nodes.csv:{tx_line} ({tx}): transformer needs a village" in out
    assert f"nodes.csv:{expect['dup']} (S-CG01): duplicate node id" in out
    assert f"edges.csv:{expect['dangling']}" in out and "NOWHERE" in out
    assert f"liaisons.csv:{expect['unknown']}" in out and "V999" in out
    assert "problem(s)" in out


def test_run_refuses_a_broken_topology_with_exit_4(tmp_path: Path) -> None:
    bundle = _broken_bundle(tmp_path)
    cfg = make_config(tmp_path, topology=str(bundle))
    r = cli("--config", str(cfg), "run", "--once")
    assert r.returncode == 4
    assert "duplicate node id" in r.stderr


def test_bad_config_names_key_and_exits_3(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["sources"][0]["interval_seconds"] = -5
    data["delivery"]["colour"] = "blue"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 3
    assert "sources[0].interval_seconds: Input should be greater than 0" in r.stderr
    assert "delivery.colour: unknown key" in r.stderr


def test_check_reports_channels_the_topology_needs_but_config_lacks(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    del data["channels"]["dingtalk"]
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 1
    assert "channel 'dingtalk'" in r.stderr


def test_run_once_then_operator_verbs_read_the_same_database(tmp_path: Path) -> None:
    # The first cycle anchors the replay timeline (only the line at 0 s is due); at this speed
    # the rest of the scenario is due by the second cycle, as from a cron job.
    cfg = make_config(tmp_path, speed=1000.0)
    events = 0
    for _ in range(2):
        r = cli("--config", str(cfg), "run", "--once")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout.strip().splitlines()[-1])
        assert report["failed_polls"] == 0 and report["delivered"] > 0
        events += report["events"]
    assert events == 6

    r = cli("--config", str(cfg), "incidents", "list", "--all", "--json")
    assert r.returncode == 0, r.stderr
    incidents = json.loads(r.stdout)
    assert {i["status"] for i in incidents} == {"restored", "active"}
    assert len(incidents) == 3
    fault = next(i for i in incidents if i["estimate"]["devices"] == ["RC-LH01-2"])
    r = cli("--config", str(cfg), "incidents", "show", fault["id"], "--json")
    assert r.returncode == 0
    shown = json.loads(r.stdout)
    assert shown["status"] == "restored"
    # Every notice went out, but an outage notice the restoration overtook (superseded:
    # never sent after it; its recipient heard the restoration), and one whose outage was
    # over before it went out (both processed at one instant: withdrawn, and the recipient
    # hears no 恢复送电 of an outage it never heard of — the log says back_untold).
    notices = [(n["key"].split("/")[2], n["key"].rsplit("/", 1)[1], n["status"])
               for n in shown["notices"]]  # (recipient, purpose, status)
    assert {status for _, _, status in notices} <= {"sent", "superseded", "withdrawn"}
    for recipient, purpose, status in notices:
        if status == "superseded":
            assert purpose in ("outage", "update")
            assert (recipient, "restored", "sent") in notices
        if status == "withdrawn":
            assert purpose in ("outage", "update", "care")
            assert not any(r == recipient and s == "sent" for r, _, s in notices)
    if any(status == "withdrawn" for _, _, status in notices):
        said = cli("--config", str(cfg), "incidents", "show", fault["id"]).stdout
        assert "停电通知未发出即已恢复，未通知恢复送电" in said, said

    # An operator's screen masks the SMS recipients' numbers the outbox keys hold.
    shows = [cli("--config", str(cfg), "incidents", "show", i["id"], "--json").stdout
             for i in incidents]
    assert not any(PHONE.search(out) for out in shows + [r.stdout])
    assert any("****" in n["key"] for out in shows for n in json.loads(out)["notices"])
    r = cli("--config", str(cfg), "outbox", "list", "--status", "sent")
    assert r.returncode == 0 and "INC-" in r.stdout
    assert cli("--config", str(cfg), "incidents", "show", "INC-NOPE").returncode == 1


def test_operator_steps_while_the_daemon_runs(tmp_path: Path) -> None:
    """ack / dispatch / arrive / restore / close from the CLI against the running daemon's
    database; the daemon delivers the notices the steps queue."""
    from tests.e2e_helpers import sink_lines, start_daemon, stop, wait_for

    # Only the demo's first record: the feed must not re-state the outage while the steps run
    # (its revision 20 s later names three more areas, which would make the incident active
    # again between `restore` and `close` on a slow machine).
    first = (ROOT / "fixtures/scenarios/demo.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n", encoding="utf-8")
    cfg = make_config(tmp_path, sources=[{"name": "demo-feed", "type": "replay",
                                          "scenario": str(tmp_path / "one.jsonl"),
                                          "speed": 1.0, "interval_seconds": 0.5}])
    proc = start_daemon(cfg)
    try:
        assert wait_for(lambda: any(m["purpose"] == "outage" for m in sink_lines(tmp_path)), 30)
        inc = sink_lines(tmp_path)[0]["incident_id"]
        assert cli("--config", str(cfg), "incidents", "ack", inc, "--actor", "zhang").returncode == 0
        r = cli("--config", str(cfg), "incidents", "dispatch", inc, "--crew", "CR01")
        assert r.returncode == 0, r.stderr
        # SCADA names the recloser above 南谢庄村 (by its name): the crew gets new orders.
        r = cli("--config", str(cfg), "incidents", "device", inc, "马集线#78杆柱上重合器",
                "--note", "SCADA", "--actor", "zhang")
        assert r.returncode == 0, r.stderr
        bad = cli("--config", str(cfg), "incidents", "device", inc, "FU-NOPE")
        assert bad.returncode == 1 and "'FU-NOPE' is not a device" in bad.stderr
        assert cli("--config", str(cfg), "incidents", "arrive", inc).returncode == 0
        shown = json.loads(cli("--config", str(cfg), "incidents", "show", inc, "--json").stdout)
        assert shown["device_set"] == ["RC-MJ01-2"] and shown["device_set_by"] == "operator:zhang"
        first_area = shown["estimate"]["transformers"][0]
        r = cli("--config", str(cfg), "incidents", "restore", inc, "--transformers", first_area)
        assert r.returncode == 0 and "partially_restored" in r.stdout, r.stdout + r.stderr
        bad = cli("--config", str(cfg), "incidents", "close", inc, "--cause", "树线矛盾")
        assert bad.returncode == 1 and "still active" in bad.stderr
        assert cli("--config", str(cfg), "incidents", "restore", inc).returncode == 0
        r = cli("--config", str(cfg), "incidents", "close", inc, "--cause", "树线矛盾")
        assert r.returncode == 0 and "stage closed" in r.stdout
        unknown = cli("--config", str(cfg), "incidents", "dispatch", inc, "--crew", "NOPE")
        assert unknown.returncode == 1
        # The daemon delivers what the steps queued: the crew dispatch and the restorations.
        assert wait_for(lambda: any(m["purpose"] == "dispatch" and m["target"] and
                                    "CR01" in m["key"] for m in sink_lines(tmp_path)), 20)
        assert wait_for(lambda: any(m["purpose"] == "restored" and m["incident_id"] == inc
                                    for m in sink_lines(tmp_path)), 20)
        assert wait_for(lambda: any(m["purpose"] == "dispatch" and "CR01" in m["key"] and
                                    "运行人员确认" in json.dumps(m, ensure_ascii=False)
                                    for m in sink_lines(tmp_path)), 20)
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    log = json.loads(cli("--config", str(cfg), "incidents", "show", inc, "--json").stdout)
    assert log["stage"] == "closed"


def test_topology_without_an_action_is_a_usage_error() -> None:
    r = cli("topology")
    assert r.returncode == 2
    assert "usage: outage-sentinel topology" in r.stderr and r.stdout == ""


def _with_channel(tmp_path: Path, name: str, channel: dict[str, object]) -> Path:
    tmp_path.mkdir()
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["channels"][name] = channel
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_check_refuses_the_channels_run_would_refuse(tmp_path: Path) -> None:
    # what `check` accepts, `run` can start: a channel is built by `check` as `run` builds it
    cases = {
        "signed_wecom": ({"type": "wecom", "robots": {"g": {"key": "k", "secret": "s"}}},
                         "channels.signed_wecom.robots.g.secret: WeCom robots are not signed"),
        "plain_mail": ({"type": "email", "host": "127.0.0.1", "security": "none",
                        "username": "u", "password": "p", "sender": "a@b.cn"},
                       "channels.plain_mail.security: 'none' with a password"),
    }
    for name, (channel, message) in cases.items():
        cfg = _with_channel(tmp_path / name, name, channel)
        checked = cli("--config", str(cfg), "check")
        assert checked.returncode == 1 and message in checked.stderr, checked.stderr
        ran = cli("--config", str(cfg), "run", "--once")
        assert ran.returncode == 3 and message in ran.stderr, ran.stderr
        assert "Traceback" not in ran.stderr


def test_a_shutdown_grace_beyond_a_year_is_refused(tmp_path: Path) -> None:
    # it goes into a wait's timeout on SIGTERM, where 1e12 s overflows the platform's time_t
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["delivery"]["shutdown_grace_seconds"] = 1e12
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 3 and "delivery.shutdown_grace_seconds" in r.stderr, r.stderr


def _with_source(tmp_path: Path, source: dict[str, object]) -> Path:
    tmp_path.mkdir()
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["sources"].append(source)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_check_and_run_refuse_an_mqtt_source_whose_tls_files_do_not_load(
        tmp_path: Path) -> None:
    # run --once crashed with a FileNotFoundError traceback in paho's tls_set; check passed
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    mqtt = {"name": "ami", "type": "mqtt", "host": "127.0.0.1", "client_id": "os-test",
            "topics": ["ami/#"]}
    cases = {
        "missing": ({"tls": True, "ca_file": str(tmp_path / "nowhere.pem")},
                    f"ca_file: cannot load {tmp_path / 'nowhere.pem'} (No such file"),
        "garbage": ({"tls": True, "ca_file": str(tmp_path / "garbage.pem")},
                    f"ca_file: cannot load {tmp_path / 'garbage.pem'}"),
        "no_tls": ({"cert_file": str(tmp_path / "garbage.pem")},
                   "cert_file: only used with tls: true"),
    }
    for name, (extra, message) in cases.items():
        cfg = _with_source(tmp_path / name, {**mqtt, **extra})
        checked = cli("--config", str(cfg), "check")
        assert checked.returncode == 1, checked.stderr
        assert f"sources[1].{message}" in checked.stderr, checked.stderr
        ran = cli("--config", str(cfg), "run", "--once")
        assert ran.returncode == 3 and f"sources (ami).{message}" in ran.stderr, ran.stderr
        assert "Traceback" not in ran.stderr


def test_check_notes_retry_keys_that_nothing_reads(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["delivery"]["retry"]["max_attempts"] = 5
    data["sources"].append({"name": "feed", "type": "http_json", "url": "http://127.0.0.1:9/x",
                            "preset": "95598_list",
                            "retry": {"max_age_seconds": 60}})
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 0, r.stderr
    assert "note: delivery.retry.max_attempts: not used" in r.stdout
    assert "note: sources[1].retry.max_age_seconds: not used" in r.stdout
    (tmp_path / "plain").mkdir()
    plain = cli("--config", str(make_config(tmp_path / "plain")), "check")
    assert plain.returncode == 0 and "not used" not in plain.stdout


def test_impossible_times_dates_and_text_are_usage_errors_naming_the_option(
        tmp_path: Path) -> None:
    cfg = str(make_config(tmp_path))
    r = cli("--config", cfg, "incidents", "open", "--transformers", "T-CG01-001")
    assert r.returncode == 0, r.stderr
    iid = r.stdout.strip().splitlines()[-1].split(":")[0]
    for args, said in (
            (("incidents", "restore", iid, "--at", "2026-02-30 08:00"),
             "error: --at: expected a time like 2026-11-23 08:00:00, got '2026-02-30 08:00'"),
            (("incidents", "restore", iid, "--at", "2300-01-01 08:00"),
             "error: --at: 2300-01-01 is out of range (1970–2200)"),
            (("incidents", "etr", iid, "2026-02-30 08:00"),
             "error: time (the ETR): expected a time like"),
            # bytes of the command line that are not UTF-8: no database can store them
            (("incidents", "ack", iid, "--note", "a\udcffb"),
             "error: --note: contains a character the database cannot store"),
            (("quarantine", "retry", "1", "--actor", "a\udcffb"),
             "error: --actor: contains a character the database cannot store"),
            (("report", "daily", "--date", "9999-12-31"),
             "argument --date: 9999-12-31 is out of range: a day from 1970-01-01 to 2199-12-31"),
            (("report", "range", "--from", "0001-01-01", "--to", "0001-01-02"),
             "argument --from: 0001-01-01 is out of range: a day from 1970-01-01"),
            (("report", "weekly", "--week-of", "2026-02-30"),
             "argument --week-of: a date YYYY-MM-DD, not '2026-02-30'")):
        r = cli("--config", cfg, *args, cwd=tmp_path)
        assert r.returncode == 2 and said in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    shown = cli("--config", cfg, "incidents", "show", iid, "--json")
    assert json.loads(shown.stdout)["stage"] not in ("acknowledged", "restored")


def test_a_restoration_of_many_areas_is_one_step(tmp_path: Path) -> None:
    """An incident of 20 areas restored at once: the step's event id named every area and
    was refused by the store past 200 characters (about 15 areas); it now names how many
    and a digest, and the incident is restored."""
    cfg = str(make_config(tmp_path))
    areas = [n.id for n in load_bundle(ROOT / "topology").nodes.values()
             if n.kind == "transformer" and n.feeder == "CG06"][:20]
    assert len(areas) == 20
    r = cli("--config", cfg, "incidents", "open", "--feeder", "CG06",
            "--transformers", ",".join(areas))
    assert r.returncode == 0, r.stderr
    iid = r.stdout.strip().splitlines()[-1].split(":")[0]
    r = cli("--config", cfg, "incidents", "restore", iid)
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli("--config", cfg, "incidents", "show", iid, "--json").stdout)
    assert set(areas) <= set(shown["restored"])


def test_quarantine_list_masks_phone_numbers(tmp_path: Path) -> None:
    """A trouble call's number in a quarantined record is masked on the operator's screen,
    as the board masks it (a number cut at the end of the raw text is masked first)."""
    from datetime import UTC, datetime

    from outage_sentinel.config import load_config
    from outage_sentinel.events import Quarantined
    from outage_sentinel.store import Store

    cfg = make_config(tmp_path)
    (tmp_path / "state").mkdir()
    store = Store(load_config(cfg).database_url())
    store.migrate()
    try:
        raw = json.dumps({"caller": "13912345678", "note": "x" * 170, "tel": "0316-5551234"})
        store.quarantine(Quarantined("95598", "record 1: caller 13812345678 unknown line", raw),
                         datetime(2026, 11, 23, tzinfo=UTC))
    finally:
        store.close()
    listed = cli("--config", str(cfg), "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert "138****5678" in listed.stdout and "139****5678" in listed.stdout
    assert not PHONE.search(listed.stdout) and "5551234" not in listed.stdout


def test_check_notes_a_lease_that_makes_failover_slower_than_two_polls(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["ha"] = {"enabled": True, "lease_seconds": 30}
    data["database"] = {"url": "postgresql+psycopg2://postgres@127.0.0.1:5432/test"}
    data["sources"][0]["interval_seconds"] = 10
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = cli("--config", str(cfg), "check")
    assert r.returncode == 0, r.stderr
    assert "note: ha.lease_seconds 30: a standby may take 40 s to take over" in r.stdout


def test_every_verb_registers_the_secrets_written_in_the_config(
        tmp_path: Path, no_secrets: None) -> None:
    """A token written in the file as it is (not ``${ENV}``) was registered by the daemon
    alone: a standalone board or report process logged and printed it whole."""
    import argparse

    from outage_sentinel.cli import config_from_args
    from outage_sentinel.logs import redact

    config = make_config(tmp_path)
    data = yaml.safe_load(config.read_text("utf-8"))
    data["sources"][0] = {"name": "oms", "type": "http_json", "url": "http://127.0.0.1:9/x",
                          "preset": "95598_list", "headers": {"X-Token": "literal-token-9f3a"}}
    config.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    assert redact("token literal-token-9f3a") == "token literal-token-9f3a"
    assert config_from_args(argparse.Namespace(config=str(config))) is not None
    assert redact("token literal-token-9f3a") == "token ***"
