"""While an AMI source is flagged as read in the wrong zone, no text states as fact a time only
its meters give — not the village's alone (tests/test_clock_offset_notice.py), but also:

* a crew's orders (crew_dispatch), its stand-down and power-back, the command centre's
  escalations (command_escalation) and summaries (command_summary): the outage's start is
  停电时间待核实 / "to be confirmed" when only the meters give it
  (:func:`outage_sentinel.liaison.checked_start`), and stated when another record gives one;
* the time power came back (liaison_restored 已恢复送电（恢复时间待核实）, its SMS
  ``restored``; the crew's power-back; the summary's end) when only the meters' power-on
  gives it (:func:`outage_sentinel.liaison.stated_restored`), and stated when an
  outage-system record's end gives it;
* ``check`` renders every template with its times to be confirmed, so an override printing
  them unguarded is noted.

Through the daemon (in process: demo topology, a ``file_drop`` AMI source, SQLite), as in
tests/test_clock_offset_notice.py: a concentrator stamps its meters' events in UTC while the
county is read in Asia/Shanghai, so an outage at 10:30 is read as 02:30, and power back at
11:30 as 03:30. The crews' and command centre's texts are built by the crew context builders
with the daemon's own planner's flag (:meth:`LiaisonPlanner.clock_flagged`) and rendered by
its renderer; the summary by the daemon's lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from outage_sentinel import crew as crews
from outage_sentinel.clock_offset import OffsetChange, offset_fields
from outage_sentinel.config import load_config
from outage_sentinel.incidents import Incident, Notice, villages_off
from outage_sentinel.liaison import LiaisonPlanner, Renderer
from outage_sentinel.template_check import (
    LANGUAGES,
    sample_contexts,
    unverified_start_notes,
    unverified_starts,
)
from tests.e2e_helpers import ROOT, make_config
from tests.test_ami_clock_offset import ON, Stream, stamp
from tests.test_clock_offset_notice import (
    AS_READ_LOCAL,
    OUTAGE,
    REAL_LOCAL,
    flag_the_source,
    incidents,
    meters_off,
)
from tests.test_daemon_ami_truth import METERS

TZ = ZoneInfo("Asia/Shanghai")
#: Power back at 11:30 Beijing, read by the flagged source as 03:30.
BACK = OUTAGE + timedelta(minutes=60)
BACK_LOCAL, BACK_AS_READ = "2026-11-23 11:30", "2026-11-23 03:30"
UNSURE = {"zh": "待核实", "en": "to be confirmed"}


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stream]:
    r = Stream(tmp_path)
    yield r
    r.daemon.close()


def planners(run: Stream) -> list[LiaisonPlanner]:
    """The daemon's planner (zh), and one in English on its flags."""
    p: LiaisonPlanner = run.daemon.planner
    return [p, LiaisonPlanner(p.topology, Renderer("en"), TZ, p.roles,
                              clock_flags=p.clock_flags)]


def crew_texts(run: Stream, p: LiaisonPlanner, inc: Incident, now: datetime) -> dict[str, str]:
    """What a crew and the command centre would read of ``inc`` at ``now``: its dispatch,
    the escalations, stand-down and power-back, rendered with the planner's flag."""
    life, topo, lang = run.daemon.lifecycle, p.topology, p.renderer.language
    flagged = p.clock_flagged()
    pr = life.priority(inc, now)
    deadline, area = crews.arrival_deadline(topo, villages_off(inc, topo), now,
                                            life.params.commitments)
    location = crews.incident_location(topo, inc.estimate.devices, inc.off)
    choice = crews.choose_crew(topo, inc.feeder, location, pr.score, {}, now, life.params,
                               area_type=area)
    assert choice is not None
    crew = choice.crew
    contexts: dict[str, tuple[str, dict[str, Any]]] = {
        "dispatch": ("crew_dispatch", crews.dispatch_context(
            topo, inc, pr, choice, deadline, area, now, TZ, lang, life.params,
            clock_flagged=flagged)),
        "stand_down": ("crew_stand_down", crews.stand_down_context(
            topo, inc, crew, "cancelled", now, TZ, clock_flagged=flagged)),
        "power_back": ("crew_power_back", crews.power_back_context(
            topo, inc, crew, "ami", now, TZ, clock_flagged=flagged)),
        **{reason: ("command_escalation", crews.escalation_context(
            topo, inc, pr, reason, deadline, area, now, TZ, choice, {}, lang, life.params,
            clock_flagged=flagged)) for reason in ("at_risk", "no_crew")}}
    return {k: p.renderer.render(name, **ctx) for k, (name, ctx) in contexts.items()}


def meters_back(run: Stream) -> None:
    """The area's ten meters back at 11:30, stamped in UTC (read as 03:30)."""
    run.step(BACK + timedelta(seconds=12), [
        {"device_id": m, "code": ON, "time": stamp(BACK + timedelta(seconds=i), 0)}
        for i, m in enumerate(METERS)])
    run.step(BACK + timedelta(minutes=3))


def with_oms_record(inc: Incident, end: datetime | None = None) -> Incident:
    """``inc`` with the outage system's record of the same area beside the meters': begun at
    10:30, ended at ``end`` (open without)."""
    (ami,) = inc.members.values()
    oms = replace(ami, key="oms|F1", signal="notice", start=OUTAGE, end=end,
                  status="restored" if end else "active", seen_at=end or OUTAGE)
    return replace(inc, members={**inc.members, oms.key: oms})


def test_crews_and_the_command_centre_are_not_told_the_meters_start(run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    (inc,) = incidents(run)
    now = OUTAGE + timedelta(minutes=5)
    for p in planners(run):
        assert p.clock_flagged()
        for what, text in crew_texts(run, p, inc, now).items():
            assert "02:30" not in text and "None" not in text, (what, text)
            assert UNSURE[p.renderer.language] in text, (what, text)
    zh = crew_texts(run, run.daemon.planner, inc, now)
    assert "停电：停电时间待核实（表计时钟疑有偏差），" in zh["dispatch"]
    assert "故障停电，停电时间待核实（表计时钟疑有偏差），" in zh["at_risk"]
    assert "（停电时间待核实）" in zh["stand_down"].splitlines()[0]


def test_the_command_centres_summary_states_no_start_only_the_meters_give(
        run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    (inc,) = incidents(run)
    summary = run.daemon.lifecycle.render_summary(inc)
    assert "时间：停电时间待核实（表计时钟疑有偏差）" in summary, summary
    assert "02:30" not in summary and "None" not in summary
    # With the outage system's record of it, its start is stated.
    joint = with_oms_record(inc)
    assert f"时间：{REAL_LOCAL}起" in run.daemon.lifecycle.render_summary(joint)


def test_a_start_another_record_gives_is_stated_to_the_crew(run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    (inc,) = incidents(run)
    joint = with_oms_record(inc)
    texts = crew_texts(run, run.daemon.planner, joint, OUTAGE + timedelta(minutes=5))
    assert f"停电：{REAL_LOCAL}起，" in texts["dispatch"]
    assert f"故障停电，{REAL_LOCAL}起，" in texts["at_risk"]
    assert all(AS_READ_LOCAL not in t for t in texts.values())


def test_the_meters_start_is_stated_to_the_crew_when_no_source_is_flagged(
        run: Stream) -> None:
    """Meters read right (no flag): the dispatch states the start they give."""
    meters_off(run, zone_hours=8)
    (inc,) = incidents(run)
    p: LiaisonPlanner = run.daemon.planner
    assert not p.clock_flagged()
    texts = crew_texts(run, p, inc, OUTAGE + timedelta(minutes=5))
    assert f"停电：{REAL_LOCAL}起，" in texts["dispatch"]
    assert f"（{REAL_LOCAL}起停电）" in texts["power_back"].splitlines()[0]


def test_power_back_only_the_meters_time_is_told_as_to_be_confirmed(run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    meters_back(run)
    rows = [m for m in run.daemon.store.messages()
            if m.audience == "liaison" and ":V001:" in m.key and m.purpose == "restored"]
    assert rows
    for row in rows:
        assert "已恢复送电（恢复时间待核实）" in row.body, row.body
        assert "03:30" not in row.body and "None" not in row.body
        assert row.payload["params"]["sms"]["restored"] == "待核实"
    (inc,) = [Incident.from_json(r["state"]) for r in run.daemon.store.load_incidents(open_only=False)]
    assert inc.status == "restored"
    summary = run.daemon.lifecycle.render_summary(inc)
    assert "已恢复（时间待核实）" in summary and "03:30" not in summary, summary
    for p in planners(run):
        text = crew_texts(run, p, inc, BACK + timedelta(minutes=5))["power_back"]
        assert "03:30" not in text and "None" not in text, text
    back = crew_texts(run, run.daemon.planner, inc, BACK + timedelta(minutes=5))["power_back"]
    assert "已恢复送电（恢复时间待核实）（据ami）" in back, back
    en = planners(run)[1]
    (told, *_) = en.rows(inc, [Notice("restored", ("V001",))], BACK + timedelta(minutes=5))
    assert "power restored (time of restoration: to be confirmed)" in told.body, told.body
    assert told.payload["params"]["sms"]["restored"] == "to be confirmed"


def test_power_back_an_outage_system_record_times_is_stated(run: Stream) -> None:
    """The outage system's record of the area ended at 11:30: that time is stated, not the
    meters' (read as 03:30)."""
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    meters_back(run)
    (inc,) = [Incident.from_json(r["state"]) for r in run.daemon.store.load_incidents(open_only=False)]
    joint = with_oms_record(inc, end=BACK)
    now = BACK + timedelta(minutes=5)
    (row, *_) = run.daemon.planner.rows(joint, [Notice("restored", ("V001",))], now)
    assert f"已于{BACK_LOCAL}恢复送电" in row.body, row.body
    assert row.payload["params"]["sms"]["restored"] == BACK_LOCAL
    assert f"已于{BACK_LOCAL}恢复送电（据ami）" in crew_texts(
        run, run.daemon.planner, joint, now)["power_back"]
    assert f"{BACK_LOCAL}已恢复" in run.daemon.lifecycle.render_summary(joint)


def test_the_restored_notice_states_the_meters_time_with_no_flag(run: Stream) -> None:
    meters_off(run, zone_hours=8)
    run.step(BACK + timedelta(seconds=12), [
        {"device_id": m, "code": ON, "time": stamp(BACK + timedelta(seconds=i), 8)}
        for i, m in enumerate(METERS)])
    run.step(BACK + timedelta(minutes=6))  # the area stayed on (restore_settle_seconds)
    rows = [m for m in run.daemon.store.messages()
            if m.audience == "liaison" and ":V001:" in m.key and m.purpose == "restored"]
    assert rows and all(f"已于{BACK_LOCAL}恢复送电" in r.body for r in rows)


def test_the_flags_hint_says_what_is_told() -> None:
    """The warning of a flag (and the board's record of it) says what villages, crews and
    the command centre are told meanwhile: not that restored times are still as read."""
    change = OffsetChange("ami-files", -8.0, None, 25, -8 * 3600.0)
    hint = offset_fields(change, [], "Asia/Shanghai", OUTAGE)["hint"]
    assert "still as read" not in hint
    assert "starts and restored times only it gives as 待核实" in hint and "crews" in hint


def test_every_builtin_template_reads_right_with_its_times_to_be_confirmed(
        tmp_path: Path) -> None:
    """``check``'s contexts with their start (and end, and restored time) to be confirmed:
    every built-in template that states a start — the crews' and the command centre's too —
    renders without "None"."""
    config = load_config(make_config(tmp_path))
    for language in LANGUAGES:
        renderer = Renderer(language)
        seen = unverified_starts(sample_contexts(config, language))
        names = {name for name, _ in seen}
        assert {"crew_dispatch", "command_escalation", "command_summary", "crew_stand_down",
                "crew_power_back", "liaison_restored"} <= names, names
        for name, ctx in seen:
            text = renderer.render(name, **ctx)
            assert "None" not in text, (language, name, text)


def test_check_notes_a_crew_template_printing_the_start_unguarded(tmp_path: Path) -> None:
    builtin = (ROOT / "outage_sentinel" / "templates" / "crew_dispatch.zh.j2").read_text("utf-8")
    guarded = "{% if start_local %}{{ start_local }}起{% else %}停电时间待核实（表计时钟疑有偏差）" \
        "{% endif %}"
    assert guarded in builtin
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "crew_dispatch.zh.j2").write_text(builtin.replace(guarded, "{{ start_local }}起"),
                                              "utf-8")
    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["notify"]["templates_dir"] = str(tpl)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (note,) = unverified_start_notes(load_config(cfg))
    assert note.startswith(f"{tpl / 'crew_dispatch.zh.j2'}: prints None"), note
    assert "start_local" in note
