"""Issue 10, acceptance 2, through the daemon's real processing with the Bayesian localiser: the
outage system names areas in two villages, the localiser prefers a device covering one of them;
both villages are told (the reported one as 已确认停电), and a third village the device's
inferred section reaches is told as 可能受影响 — never the other way round."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from tests.conftest import T0, build_grid
from tests.test_lifecycle import Recorder


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Daemon:
    config = parse_config({
        "state_dir": str(tmp_path / "state"),
        "database": {"url": db_url},
        "sources": [{"name": "unused", "type": "replay", "scenario": str(tmp_path / "x.jsonl")}],
        "channels": {name: {"type": "file", "path": str(tmp_path / "sink.jsonl")}
                     for name in ("wecom", "sms", "dingtalk", "feishu", "cc")},
        "command_centre": {"channel": "cc", "target": "指挥中心"},
    })
    rec = Recorder("all")
    d = Daemon(config, topology=build_grid(), sources=[],
               channels={name: rec for name in ("wecom", "sms", "dingtalk", "feishu", "cc")},
               clock=lambda: T0 + timedelta(minutes=1))
    d.start()
    d.recorder = rec  # type: ignore[attr-defined]
    yield d
    d.close()


def event(event_id: str, *areas: str, signal: str = "notice", status: str = "active"
          ) -> OutageEvent:
    return OutageEvent(source="feed", event_id=event_id, kind="fault", status=status,  # type: ignore[arg-type]
                       signal=signal, start=T0, transformers=areas)  # type: ignore[arg-type]


def village_of(key: str) -> str:
    """The village of an outbox key ``incident/revision/village:V1:channel:target/purpose``."""
    return key.split("/")[2].split(":")[1]


def test_reported_villages_told_as_confirmed_inferred_as_possible(daemon: Daemon) -> None:
    rec: Recorder = daemon.recorder  # type: ignore[attr-defined]
    now = T0 + timedelta(minutes=1)
    # The outage system names T1 (马集村) and T4 (刘庄村); meters say T2 and T3 have power.
    daemon.store.ingest("feed", PollResult(events=[
        event("N1", "T1", "T4"), event("A1", "T2", "T3", signal="alive")]), now)
    daemon.process()
    while daemon.deliverer.run_once(now):
        pass
    (row,) = daemon.store.load_incidents(open_only=False)
    inc = Incident.from_json(row["state"])
    assert inc.fault_device == "FU2"  # T4 and T5: the localiser's preference
    assert inc.estimate.probability is not None and inc.estimate.probability < 1
    assert inc.mark("T1") == inc.mark("T4") == "reported" and inc.mark("T5") == "inferred"
    told = [m for m in rec.sent if m.purpose == "outage" and m.audience == "liaison"]
    outage = {village_of(m.key): m.text for m in told}
    assert set(outage) == {"V1", "V2", "V3"}  # the village FU2 does not cover is told too
    assert len(told) == len({(village_of(m.key), m.target) for m in told})  # once each
    assert not [m for m in rec.sent if m.purpose in ("restored", "withdrawn")]
    # Told the round's final state: the meters' word came in the same round (T2 has power),
    # so T2 is not said to be possibly off, as it was at revision 1 (B1 the estimate then).
    assert "已确认停电：台区T1，本村" in outage["V1"] and "台区T2" not in outage["V1"]
    assert "已确认停电：台区T4" in outage["V2"]
    assert "可能受影响：台区T5" in outage["V3"] and "已确认停电" not in outage["V3"]
    assert all("马集2号熔断器" not in text for text in outage.values())  # inferred device
    summary = [m.text for m in rec.sent if m.purpose == "summary"][-1]
    assert "推断故障点：马集2号熔断器（概率" in summary
    assert "已确认2个台区，其余为推断" in summary
