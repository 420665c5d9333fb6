"""The command centre's corrections end to end: the daemon runs as a subprocess (SQLite and
PostgreSQL), the verbs run as the CLI, and the notices each causes are read from the file
sink the daemon delivers to — who hears what, exactly once.

The scenario is the demo's first record: a fault on 10kV马集线 off in 南谢庄村 (V035).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.config import load_config
from outage_sentinel.silencing import Silencing
from outage_sentinel.store import Store
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT, make_config, sink_lines, start_daemon, stop, wait_for

TZ = ZoneInfo("Asia/Shanghai")
TOPOLOGY = load_bundle(ROOT / "topology")


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=120)


def ok(cfg: Path, *args: str) -> str:
    r = cli(cfg, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def local(hours: float) -> str:
    return (datetime.now(TZ) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")


def told(tmp: Path, inc: str, purpose: str, village: str | None = None) -> list[dict[str, Any]]:
    return [m for m in sink_lines(tmp) if m["incident_id"] == inc and m["purpose"] == purpose
            and (village is None or f"village:{village}:" in m["key"])]


def heard(tmp: Path, inc: str, purpose: str, village: str) -> Counter[str]:
    """How many times each recipient of ``village`` got a ``purpose`` notice of ``inc``."""
    return Counter(m["key"].split("/")[2] for m in told(tmp, inc, purpose, village))


def each_once(tmp: Path, inc: str, purpose: str, village: str, times: int = 1) -> bool:
    """Every recipient the village's outage notice reached heard ``purpose`` ``times`` times
    (and nobody else did)."""
    people = set(heard(tmp, inc, "outage", village))
    got = heard(tmp, inc, purpose, village)
    return bool(people) and set(got) == people and set(got.values()) == {times}


def care_free_village(exclude: str) -> str:
    """A village of 马集线 without special-care households (a silence needs no --force)."""
    silencing = Silencing(Store("sqlite://"), lambda: TOPOLOGY)
    villages = {TOPOLOGY.nodes[t].village for t in TOPOLOGY.transformers
                if TOPOLOGY.feeder_of(t) == "MJ01"}
    return sorted(v for v in villages if v != exclude and not silencing.has_care(v))[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    first = (ROOT / "fixtures/scenarios/demo.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n", encoding="utf-8")
    extra: dict[str, Any] = {"command_centre": {"channel": "wecom", "target": "command"}}
    if request.param == "postgresql":
        extra["database"] = {"url": request.getfixturevalue("pg_url")}
    return make_config(tmp_path, sources=[{"name": "demo-feed", "type": "replay",
                                           "scenario": str(tmp_path / "one.jsonl"),
                                           "speed": 1.0, "interval_seconds": 0.5}], **extra)


def test_every_correction_against_the_running_daemon(config: Path) -> None:
    tmp = config.parent
    proc = start_daemon(config)
    try:
        assert wait_for(lambda: any(m["purpose"] == "outage" for m in sink_lines(tmp)), 30)
        inc = sink_lines(tmp)[0]["incident_id"]
        _etr_and_scope(config, tmp, inc)
        _silence_and_retry(config, tmp, inc)
        _cancel_and_open(config, tmp, inc)
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    # Nothing went twice: each (incident, revision, recipient, purpose) once in the sink.
    keys = Counter(m["key"] for m in sink_lines(tmp))
    assert [k for k, n in keys.items() if n > 1] == []
    shown = ok(config, "incidents", "show", inc)
    for step in ("etr_set", "scope_added", "scope_removed", "cancelled"):
        assert step in shown or _label(step) in shown, (step, shown)
    _audited(config, inc)


def _audited(cfg: Path, inc: str) -> None:
    """Every step the command line took or was refused is in the audit trail the board
    shows: who, what was asked, the outcome, the caller's number masked."""
    store = Store(load_config(cfg).database_url())
    try:
        trail = [e for e in reversed(store.audit_trail()) if e["kind"] == "cli"]
    finally:
        store.close()
    seen = [(e["action"], e["ok"]) for e in trail]
    assert seen[:4] == [("etr", True), ("scope", True), ("scope", True), ("scope", False)]
    assert ("silence", False) in seen and seen.count(("silence", True)) == 4
    assert seen[-2:] == [("cancel", True), ("open", True)], seen
    etr, refused = trail[0], trail[3]
    assert etr["actor"] == "operator:zhang" and etr["target"] == inc
    assert '"time"' in etr["detail"] and "stage" in etr["detail"]
    assert "T-NOPE" in refused["detail"] and refused["target"] == inc
    forced = next(e for e in trail if e["action"] == "silence" and "MJ01" in e["detail"])
    assert "--force" in forced["detail"] and not forced["ok"]
    opened = trail[-1]
    assert opened["target"] not in ("", inc) and "13800001111" not in opened["detail"]
    assert "138****1111" in opened["detail"]


def _label(step: str) -> str:
    from outage_sentinel.labels import STAGE_LABELS, label

    return label(STAGE_LABELS, "zh", step)


def _etr_and_scope(cfg: Path, tmp: Path, inc: str) -> None:
    # ETR: every told village hears the new time once; the command centre gets a summary.
    ok(cfg, "incidents", "etr", inc, local(3), "--actor", "zhang")
    assert wait_for(lambda: each_once(tmp, inc, "update", "V035"), 20)
    assert wait_for(lambda: any("预计恢复时间调整" in m["text"]
                                for m in told(tmp, inc, "etr_set")), 20)
    # Scope: an added village hears of the outage; removed, it hears it was a mistake.
    extra = care_free_village("V035")
    ok(cfg, "incidents", "scope", inc, "--add", extra, "--actor", "zhang")
    assert wait_for(lambda: bool(heard(tmp, inc, "outage", extra)), 20)
    ok(cfg, "incidents", "scope", inc, "--remove", extra, "--actor", "zhang")
    assert wait_for(lambda: each_once(tmp, inc, "corrected", extra), 20)
    assert all("更正" in m["text"] for m in told(tmp, inc, "corrected", extra))
    assert not told(tmp, inc, "restored", extra)
    state = json.loads(ok(cfg, "incidents", "show", inc, "--json"))
    assert not any(TOPOLOGY.nodes[t].village == extra for t in state["estimate"]["transformers"])
    bad = cli(cfg, "incidents", "scope", inc, "--remove", "T-NOPE")
    assert bad.returncode == 1 and "T-NOPE" in bad.stderr


def _silence_and_retry(cfg: Path, tmp: Path, inc: str) -> None:
    out = ok(cfg, "silence", "add", "--village", "V035", "--until", local(1),
             "--reason", "计划检修配合", "--actor", "li")
    silence_id = out.split()[1].rstrip(":")
    assert "V035" in ok(cfg, "silence", "list")
    ok(cfg, "incidents", "etr", inc, local(4), "--actor", "zhang")
    # Muted for the village, kept in the outbox, and the command centre still told.
    assert wait_for(lambda: "silenced" in ok(cfg, "outbox", "list", "--status", "silenced"), 20)
    assert wait_for(lambda: len(told(tmp, inc, "etr_set")) == 2, 20)
    assert each_once(tmp, inc, "update", "V035")
    muted = ok(cfg, "outbox", "list", "--status", "silenced").splitlines()
    assert muted and all(f"silence {silence_id}" in line for line in muted)
    ok(cfg, "silence", "expire", silence_id)
    assert silence_id not in ok(cfg, "silence", "list").split()
    ids = [line.split()[0] for line in muted]
    ok(cfg, "outbox", "retry", *ids, "--actor", "li")
    assert wait_for(lambda: each_once(tmp, inc, "update", "V035", times=2), 20)
    again = cli(cfg, "outbox", "retry", ids[0])
    assert again.returncode == 1  # sent now: a retry would be a duplicate


def _cancel_and_open(cfg: Path, tmp: Path, inc: str) -> None:
    # A village with special-care households in the fault: no silence without --force.
    ok(cfg, "incidents", "scope", inc, "--add", "马集村")
    assert wait_for(lambda: bool(heard(tmp, inc, "outage", "V032")), 20)
    refused = cli(cfg, "silence", "add", "--feeder", "MJ01", "--until", local(1),
                  "--reason", "检修")
    assert refused.returncode == 1 and "--force" in refused.stderr and "马集村" in refused.stderr
    forced = ok(cfg, "silence", "add", "--feeder", "MJ01", "--until", local(1),
                "--reason", "检修", "--force")
    ok(cfg, "silence", "expire", forced.split()[1].rstrip(":"))
    # Cancel: every village told hears it once, and the incident stays cancelled.
    ok(cfg, "incidents", "cancel", inc, "--reason", "误报：用户内部故障", "--actor", "zhang")
    for village in ("V035", "V032"):
        assert wait_for(lambda v=village: each_once(tmp, inc, "cancelled", v), 20)
    state = json.loads(ok(cfg, "incidents", "show", inc, "--json"))
    assert state["status"] == "cancelled" and state["cancel_reason"].startswith("误报")
    # Open from a phone call: a new incident, its village told, the caller's phone masked.
    out = ok(cfg, "incidents", "open", "--transformers", "T-MJ01-030",
             "--caller", "王村长 13800001111", "--actor", "zhang")
    new = out.strip().splitlines()[-1].split(":")[0]
    assert new != inc
    assert wait_for(lambda: bool(heard(tmp, new, "outage", "V036")), 20)
    shown = ok(cfg, "incidents", "show", new)
    assert "13800001111" not in shown and "138****1111" in shown
