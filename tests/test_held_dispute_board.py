"""What the AMI screen holds dark is a dispute the command centre sees, and no process that
runs without the screen (the board, the CLI) counts it back.

The audit's case (薛店村, fuse FU-CG04-05, areas T-CG04-023…028): the terminals' power-off
arrives 65 minutes late (a backlog, held ``backlog_hold_seconds``) and the outage system ends
its record. The daemon keeps the areas off on the screen's word (``Incident.held``), but

- the command centre saw no dispute: :func:`disputed_areas` named no area, no
  ``meters_disagree`` step, nothing in ``incidents show``;
- a liaison's 已来电 from the field page, folded by the board's own processor (it runs no
  screen), counted every area back on the record's end and told the village 【恢复送电】
  while the meters said dark.

Through the real objects: the demo bundle, SQLite, the AMI screener and the processor as the
daemon wires them, and the board as ``outage-sentinel board`` builds it (its own core), over
one store.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from outage_sentinel.assembly import build_core
from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import CommandCentreConfig, Config, FieldConfig, load_config
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incident_view import incident_text
from outage_sentinel.incidents import Incident, disputed_areas
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AmiScreener
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import ROOT, terminal_reports
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_evidence_conflicts import HOOK, sms_reply
from tests.test_field import Clock, links_of, sent_all

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("UTC"))
VILLAGE = "V020"  # 薛店村
FUSE = "FU-CG04-05"
AREAS = tuple(f"T-CG04-{i:03d}" for i in range(23, 29))
OFF = NOW - timedelta(minutes=65)  # the terminals' power-off, uploaded 65 min late


def config(tmp: Path) -> Config:
    return load_config(ROOT / "config.yaml").model_copy(update={
        "state_dir": tmp,
        "field": FieldConfig(base_url="http://board.example.cn:8088"),
        "command_centre": CommandCentreConfig(channel="wecom")})


class County:
    """The daemon (screener and processor, as the daemon wires them) and the board (its own
    core, no screen) over one store, on one clock."""

    def __init__(self, tmp: Path, store: Store, topology: Topology) -> None:
        cfg = config(tmp)
        self.store, self.topology = store, topology
        self.clock = Clock()
        self.clock.now = NOW
        self.screen = AmiScreener(store, topology, cfg, Metrics(), {"ami-mqtt"},
                                  threading.Lock())
        self.screen.load(NOW)
        self.daemon = build_core(cfg, store, topology, metrics=Metrics(), clock=self.clock,
                                 screen=self.screen)
        self.board = build(cfg, store, lambda: topology, self.clock)
        self.client = TestClient(create_app(self.board), base_url="http://127.0.0.1")

    def terminals(self, now: datetime, areas: tuple[str, ...], on: bool, at: datetime) -> None:
        """The terminals of ``areas`` report power off (on) at ``at``, received at ``now``."""
        self.screen.ingest("ami-mqtt", PollResult(events=terminal_reports(areas, on, at)), now)
        self.process(now)

    def record(self, now: datetime, status: str, end: datetime | None = None) -> None:
        """The outage system's record C1 of the fuse, polled at ``now``."""
        event = OutageEvent(source="feed", event_id="C1", kind="fault", status=status,
                            signal="notice", start=OFF, end=end, device=FUSE,
                            transformers=AREAS, cause="薛店支线熔断器熔断")
        self.store.ingest("feed", PollResult(events=[event]), now)
        self.process(now)

    def process(self, now: datetime) -> None:
        self.clock.now = now
        self.screen.run_once(now)
        self.daemon.processor.run_once(now)

    def held_by_the_screen(self) -> Incident:
        """The outage told, its record ended while the screen holds every area's power-off."""
        self.record(NOW, "active")
        self.terminals(NOW, AREAS, on=False, at=OFF)  # 65 min old: held as a backlog
        sent_all(self.store, self.incident().id, NOW)
        self.record(NOW + timedelta(seconds=40), "restored", end=OFF + timedelta(minutes=30))
        inc = self.incident()
        assert inc.status == "active" and set(inc.held) == set(AREAS) == set(inc.off)
        return inc

    def incident(self) -> Incident:
        (row,) = self.store.load_incidents(open_only=False)
        return Incident.from_json(row["state"])

    def told(self, purpose: str) -> int:
        return sum(1 for m in self.store.messages() if m.audience == "liaison"
                   and m.purpose == purpose and m.payload.get("village") == VILLAGE)

    def log(self, stage: str) -> list[dict[str, Any]]:
        return [e for e in self.store.incident_log(self.incident().id) if e["stage"] == stage]


@pytest.fixture
def county(tmp_path: Path, store: Store, demo: Topology) -> County:
    return County(tmp_path, store, demo)


def test_a_record_ended_while_the_screen_holds_the_areas_is_a_dispute_shown(
        county: County) -> None:
    inc = county.held_by_the_screen()
    assert county.told("restored") == 0
    # The command centre sees the record said back and the meters (not yet released) say off.
    assert disputed_areas(inc) == {t: ("feed|C1",) for t in AREAS}
    (step,) = county.log("meters_disagree")
    assert step["details"]["transformers"] == list(AREAS)
    assert step["details"]["records"] == ["feed|C1"]
    row = county.store.get_incident(inc.id)
    text = incident_text(row, county.store.messages(incident_id=inc.id),
                         county.store.incident_log(inc.id), county.topology,
                         ZoneInfo("Asia/Shanghai"))
    (line,) = [x for x in text.splitlines() if x.startswith("电表仍报停电")]
    assert "暂未确认" in line and "C1" in line
    assert all(county.topology.nodes[t].name in line for t in AREAS)


def test_a_liaisons_power_back_taken_by_the_board_keeps_a_held_area_off(
        county: County) -> None:
    inc = county.held_by_the_screen()
    token = links_of(county.store, inc.id)[VILLAGE]
    county.clock.now = NOW + timedelta(seconds=60)
    area = AREAS[-1]
    r = county.client.post(f"/f/{token}/answer", json={"area": area, "answer": "back"})
    assert r.status_code == 200, r.text
    after = county.board.actions.core.processor.incident(inc.id)
    assert after.status == "active" and set(after.off) == set(AREAS), \
        "the board counted areas back that the screen holds dark"
    assert county.told("restored") == 0, "told 恢复送电 while the meters' power-off was held"
    assert next(a for a in r.json()["areas"] if a["id"] == area)["state"] == "off"
    # The answer is kept and shown as the dispute it is.
    assert [a["answer"] for a in county.store.answers(inc.id)] == ["back"]
    assert "feed|C1" in disputed_areas(after)[area]
    assert any(k.startswith("field|") for k in disputed_areas(after)[area])
    (step,) = county.log("evidence_conflict")
    assert step["details"]["transformers"] == [area]
    (alert,) = [m for m in county.store.messages(incident_id=inc.id)
                if m.purpose == "field_conflict"]
    assert alert.audience == "command" and "电表仍报停电" in alert.body
    # The meters' power-on before the hold expired (the screen drops the outage, no output):
    # the daemon derives the incident again and the village hears 恢复送电, once.
    county.terminals(NOW + timedelta(seconds=90), AREAS, on=True,
                     at=OFF + timedelta(minutes=30))
    assert county.screen.held_dark(AREAS) == set()
    assert county.incident().status == "restored"
    recipients = len(county.daemon.processor.planner.village_recipients(VILLAGE))
    assert county.told("restored") == recipients
    assert county.told("corrected") == 0


def test_the_board_knows_what_the_screen_holds_as_its_outputs_commit(county: County) -> None:
    """The held set the board's processor folds with is the screen's, written with the
    screen's outputs: held while the screen holds, empty once it released the outage."""
    board = county.board.actions.core.processor
    assert board.held.now() == frozenset()
    county.record(NOW, "active")
    county.terminals(NOW, AREAS, on=False, at=OFF)
    assert board.held.now() == frozenset(AREAS) == frozenset(county.screen.held_dark())
    county.process(NOW + timedelta(seconds=200))  # the hold expires: released, dead output
    assert county.screen.held_dark() == set() and board.held.now() == frozenset()


def test_the_command_centres_step_still_restores_an_area_the_screen_holds(
        county: County) -> None:
    """The command centre settles a dispute by its own step: the board's processor, knowing
    what the screen holds, still takes it."""
    inc = county.held_by_the_screen()
    board = county.board.actions.core.processor
    now = NOW + timedelta(seconds=60)
    county.clock.now = now
    after = board.operator_restore(inc.id, "operator:li", ",".join(AREAS), None, "村委电话确认",
                                   now=now)
    assert after.status == "restored" and not after.held and disputed_areas(after) == {}
    recipients = len(county.daemon.processor.planner.village_recipients(VILLAGE))
    assert county.told("restored") == recipients


def test_a_keyword_reply_of_power_back_keeps_the_held_areas_off(county: County) -> None:
    """The same by SMS (1 = 已来电, answering for every area of the village told): no area
    the screen holds comes back, each answer is a dispute shown once."""
    inc = county.held_by_the_screen()
    county.board.field_desk.sms_token = HOOK
    phone = next(m.target for m in county.store.messages(incident_id=inc.id)
                 if m.channel == "sms" and m.audience == "liaison"
                 and m.payload.get("village") == VILLAGE)
    county.clock.now = NOW + timedelta(seconds=60)
    assert sms_reply(county.board, county.client, phone, "1", county.clock.now, 1)["accepted"]
    after = county.incident()
    assert after.status == "active" and set(after.off) == set(AREAS)
    assert county.told("restored") == 0
    assert sorted(t for e in county.log("evidence_conflict")
                  for t in e["details"]["transformers"]) == sorted(AREAS)


def test_a_daemon_left_with_no_ami_source_keeps_no_held_areas(county: County) -> None:
    """The AMI sources taken out of the config: what the last screen held is held no more
    (the board would keep those areas off against every liaison's 已来电 for good)."""
    county.held_by_the_screen()
    board = county.board.actions.core.processor
    assert board.held.now() == frozenset(AREAS)
    cfg = config(Path(county.board.field_desk.photos).parent)
    AmiScreener(county.store, county.topology, cfg, Metrics(), set(),
                threading.Lock()).load(NOW + timedelta(minutes=1))
    assert board.held.now() == frozenset()


@pytest.mark.parametrize("step", ["remove", "clear_device"])
def test_a_correction_on_the_board_keeps_the_held_areas_off(county: County, step: str) -> None:
    """The command centre takes one area out of the scope (or takes back a fault device it
    set): the incident is derived again from its records — with what the screen holds, so the
    ended record does not count the other areas back, and the village is not told 恢复送电."""
    from outage_sentinel.command_steps import CommandSteps
    inc = county.held_by_the_screen()
    core = county.board.actions.core
    now = NOW + timedelta(seconds=60)
    county.clock.now = now
    steps = CommandSteps(core.lifecycle, core.processor, county.clock)
    if step == "remove":
        after = steps.remove(inc.id, AREAS[0], "operator:li", "台区误报")
        kept = set(AREAS[1:])
    else:
        steps.device(inc.id, FUSE, "operator:li")
        after = steps.clear_device(inc.id, "operator:li")
        kept = set(AREAS)
    assert after.status == "active" and kept <= set(after.off), (after.status, after.off)
    assert kept <= set(after.held)
    assert county.told("restored") == 0
