"""The daemon's own crew and command-centre texts state no time only a flagged AMI source gives
(:func:`outage_sentinel.liaison.checked_start`): the dispatch, the crew's power-back and the
escalation go through the callers in crew_dispatch, crew_notices and clock_checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_ami_clock_offset import Stream
from tests.test_clock_flag_texts import meters_back
from tests.test_clock_offset_notice import flag_the_source, incidents, meters_off
from tests.test_lifecycle import T0, Harness, ev


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stream]:
    r = Stream(tmp_path)
    yield r
    r.daemon.close()


def test_the_daemons_crew_texts_state_no_time_only_the_meters_give(run: Stream) -> None:
    flag_the_source(run)
    meters_off(run, zone_hours=0)
    (inc,) = incidents(run)
    run.daemon.lifecycle.dispatch(inc.id, "operator:test")
    (dispatch,) = [m for m in run.daemon.store.messages() if m.purpose == "dispatch"]
    assert "停电：停电时间待核实（表计时钟疑有偏差），" in dispatch.body
    assert "02:30" not in dispatch.body
    meters_back(run)
    backs = [m for m in run.daemon.store.messages() if m.purpose == "crew_power_back"]
    assert backs
    assert all("已恢复送电（恢复时间待核实）" in m.body and "03:30" not in m.body for m in backs)


def test_an_escalation_states_no_start_only_the_meters_give(tmp_path: Path, db_url: str
                                                            ) -> None:
    h = Harness(tmp_path, db_url)
    try:
        h.daemon.planner.clock_flags = lambda: {"ami-files": -8.0}
        h.feed(ev("m1", "T1", "T2", "T3", signal="dead", source="ami"))
        inc = h.only_incident()
        h.daemon.lifecycle.dispatch(inc, "operator:test")
        h.deliver()
        h.at(76)
        h.deliver()
        assert {m.purpose for m in h.channel.sent} >= {"dispatch", "escalation_at_risk"}
        texts = [m.text for m in h.channel.sent
                 if m.purpose in ("dispatch", "escalation_at_risk", "summary")]
        start = T0.astimezone(h.daemon.planner.tz).strftime("%H:%M")
        assert all("待核实" in t and start not in t.split("到达时限")[0] for t in texts), texts
    finally:
        h.daemon.close()
