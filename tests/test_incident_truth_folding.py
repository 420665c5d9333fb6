"""How incidents fold evidence, through the real path: the demo bundle, a real SQLite store,
the AMI screen and the processor built as the daemon builds it (``assembly.build_core``).

- An area only inferred (below the operated device, reported by nothing) that the outage's
  end brought back is never put off again by an inference: a late record of the same outage
  reopens what it reports, not the villages told their power is back.
- An area whose meters flap (off / on / off / on within minutes) tells its village of one
  outage, not one per flap: the AMI screen holds an area's restoration until the area stayed
  on (``ami_screen.restore_settle_seconds``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from outage_sentinel.ami import compact_time, device_ref
from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config, parse_config
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AmiScreener
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import ROOT
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
#: 10kV 石门线 (LH04): recloser RC-LH04-2 feeds 松树沟村 (V074: T-LH04-019..021) and 柏岭村
#: (V075: T-LH04-022, 023).
RECLOSER = "RC-LH04-2"
REPORTED = "T-LH04-019"
INFERRED_VILLAGE = "V075"


def config(tmp: Path) -> Config:
    return parse_config({
        "state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
        "sources": [{"name": "ami-mqtt", "type": "mqtt", "topics": ["ami/#"],
                     "client_id": "folding-test"}],
        "channels": {"cc": {"type": "file", "path": str(tmp / "sink.jsonl")}},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
        "ami_screen": {"min_meters": 3, "min_duration_seconds": 60}})


class Rig:
    """The processor and the AMI screen over one store, as the daemon wires them."""

    def __init__(self, tmp: Path, store: Store, topology: Topology, **kw: Any) -> None:
        cfg = config(tmp)
        self.store, self.topology = store, topology
        self.core: Core = build_core(cfg, store, topology, metrics=Metrics(),
                                     clock=lambda: NOW, **kw)
        self.screen = AmiScreener(store, topology, cfg, Metrics(), {"ami-mqtt"},
                                  threading.Lock())
        self.screen.load(NOW)
        self.core.processor.screen = self.screen

    def feed(self, now: datetime, *events: OutageEvent, source: str = "feed") -> None:
        """``events`` polled from ``source`` at ``now``, stored and folded."""
        self.store.ingest(source, PollResult(events=list(events)), now)
        self.process(now)

    def process(self, now: datetime) -> None:
        self.screen.run_once(now)
        self.core.processor.run_once(now)

    def incidents(self) -> list[Incident]:
        return [Incident.from_json(r["state"])
                for r in self.store.load_incidents(open_only=False)]

    def told(self, village: str, purpose: str) -> int:
        """How many liaison messages of ``purpose`` were queued for ``village``."""
        return sum(1 for m in self.store.messages() if m.audience == "liaison"
                   and m.purpose == purpose and m.payload.get("village") == village)


def record(event_id: str, status: str, start: datetime, end: datetime | None = None,
           **kw: Any) -> OutageEvent:
    """An outage-system record of the recloser operating, naming the one area it knows."""
    return OutageEvent(**{
        "source": "feed", "event_id": event_id, "kind": "fault", "status": status,
        "signal": "notice", "start": start, "end": end, "device": RECLOSER,
        "transformers": (REPORTED,), **kw})


# -- (a) an inference never reopens what evidence closed ----------------------------------------


def test_a_late_record_does_not_reopen_a_village_only_inferred(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, record("R1", "active", NOW))
    (inc,) = rig.incidents()
    below = [t for t in inc.off if demo.nodes[t].village == INFERRED_VILLAGE]
    assert below and all(inc.mark(t) == "inferred" for t in below)
    outages = rig.told(INFERRED_VILLAGE, "outage")
    assert outages > 0
    end = NOW + timedelta(minutes=30)
    rig.feed(end, record("R1", "restored", NOW, end=end))
    (inc,) = rig.incidents()
    assert inc.status == "restored" and INFERRED_VILLAGE in inc.restored_villages
    # A second record of the same outage, begun before the end, published late: it reports
    # 松树沟村's area off again (an open record), and says nothing of 柏岭村.
    later = end + timedelta(minutes=5)
    rig.feed(later, record("R2", "active", NOW + timedelta(minutes=1)))
    (inc,) = rig.incidents()
    assert inc.status == "active" and REPORTED in inc.off
    assert not set(below) & set(inc.off), "inferred areas put off again by inference alone"
    assert INFERRED_VILLAGE in inc.restored_villages
    assert rig.told(INFERRED_VILLAGE, "outage") == outages


def test_an_inferred_area_a_source_reports_off_again_is_off_again(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The other side of the rule: a report of the inferred area itself is evidence."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, record("R1", "active", NOW))
    end = NOW + timedelta(minutes=30)
    rig.feed(end, record("R1", "restored", NOW, end=end))
    (inc,) = rig.incidents()
    area = next(t for t in inc.estimate.transformers
                if demo.nodes[t].village == INFERRED_VILLAGE)
    later = end + timedelta(minutes=5)
    rig.feed(later, record("R2", "active", NOW + timedelta(minutes=1),
                           transformers=(REPORTED, area)))
    (inc,) = rig.incidents()
    assert area in inc.off and inc.mark(area) == "reported"
    assert INFERRED_VILLAGE in inc.notified_villages


# -- (b) a flapping area -------------------------------------------------------------------------


def meter_reports(topology: Topology, area: str, on: bool, at: datetime) -> list[OutageEvent]:
    """Four meters of ``area`` reporting power off (or on) at ``at``."""
    meters = [m.id for m in topology.meters if m.transformer == area and m.kind == "meter"][:4]
    word = "on" if on else "off"
    return [OutageEvent(source="ami-mqtt", event_id=f"{m}:{word}:{compact_time(at)}",
                        kind="fault", status="restored" if on else "active",
                        signal="alive" if on else "dead", start=at, end=at if on else None,
                        transformers=(area,), area_text=device_ref("meter", m))
            for m in meters]


def test_an_area_flapping_for_minutes_tells_its_village_of_one_outage(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    area = "T-LH04-022"
    village = demo.nodes[area].village
    recipients = len(rig.core.processor.planner.village_recipients(village))
    t = NOW
    for _ in range(3):  # off 3 minutes, on 2 minutes, three times
        rig.screen.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, False, t)), t)
        rig.process(t + timedelta(minutes=2))
        back = t + timedelta(minutes=3)
        rig.screen.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, True, back)),
                          back)
        rig.process(back + timedelta(seconds=30))
        t = back + timedelta(minutes=2)
    assert len(rig.incidents()) == 1
    assert rig.told(village, "outage") == recipients


# -- (d) the cause: the latest stated, never dropped for none ------------------------------------


def summaries(store: Store, incident: Incident) -> list[str]:
    """The command centre's texts of ``incident``'s current revision."""
    return [m.body for m in store.messages(incident_id=incident.id)
            if m.audience == "command" and m.revision == incident.revision]


def test_a_second_record_of_the_same_outage_corrects_the_cause_it_does_not_blank_it(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, record("R1", "active", NOW, cause="树线矛盾"))
    # The outage system's second record of the same outage (the same recloser, the same
    # area), with the cause the crew found, and then a time for the restoration.
    later = NOW + timedelta(minutes=10)
    etr = NOW + timedelta(hours=3)
    rig.feed(later, record("R2", "active", NOW, cause="雷击", expected_restoration=etr))
    (inc,) = rig.incidents()
    assert inc.cause == "雷击"
    said = summaries(store, inc)
    assert said and all("原因：雷击" in b for b in said), said
    # Its next update leaves the field blank, and so does the first record's: the cause
    # stated stays, and the older word does not come back as the latest.
    rig.feed(later + timedelta(minutes=5), record("R2", "active", NOW, cause="",
                                                  expected_restoration=etr))
    rig.feed(later + timedelta(minutes=6), record("R1", "active", NOW, cause=""))
    (inc,) = rig.incidents()
    assert inc.cause == "雷击"


def test_records_of_different_areas_still_state_no_one_cause_for_the_outage(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """Kept: in a storm each record's word is its own area's (and each village hears its
    own record's)."""
    rig = Rig(tmp_path, store, demo)
    rig.feed(NOW, record("R1", "active", NOW, cause="树线矛盾"),
             record("R2", "active", NOW, cause="雷击", transformers=("T-LH04-022",)))
    (inc,) = rig.incidents()
    assert inc.cause == ""
