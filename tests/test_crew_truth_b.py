"""What the command centre and a crew are told once a crew holds an incident (a crew audit):

* an at-risk or overdue warning names the crew on its way (it read 暂无可派抢修班组), with no
  ETA once the one it was given has passed;
* a warning is given once per outage episode: an outage off again after it was over, still
  without a crew, is warned of again (every warning was keyed to the incident, once for all);
* a crew told 请按原任务查明故障原因并在现场进度中报告 after the power came back by other hands
  can report (its page refused every step: the device it found was lost to the close-out).

The network is test_lifecycle's county: 东村 T1/T2 (rural), 西村 T3, the hospital's T4/T5.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.lifecycle import LifecycleError
from tests.test_lifecycle import T0, Harness, ev
from tests.test_lifecycle import h as h  # noqa: F401  (the fixture)


def warnings_about(h: Harness, incident: str) -> list[str]:  # noqa: F811
    return [m.text for m in h.deliver() if m.incident_id == incident
            and m.purpose.startswith(("escalation", "waiting_for_crew"))]


def test_a_late_crew_is_named_in_the_warnings_not_said_missing(h: Harness) -> None:  # noqa: F811
    h.feed(ev("F1", "T1", "T2", "T3"))
    inc = h.only_incident()
    assert h.incident(inc)["crew_id"] == "C1"
    said = []
    for minute in (76, 91):
        h.at(minute)
        said += warnings_about(h, inc)
    assert len(said) == 2, said
    for text in said:
        assert "抢修班组：抢修一班" in text and "暂无可派" not in text
        # The ETA it was given has passed: no new one is made up.
        assert "预计" not in text.split("抢修班组：", 1)[1].splitlines()[0]


def test_an_outage_off_again_without_a_crew_is_warned_of_again(h: Harness) -> None:  # noqa: F811
    h.feed(ev("X", "T1", "T2", "T3"))  # C1 goes there and stays on site
    x = h.only_incident()
    h.at(5)
    h.daemon.lifecycle.arrive(x, "operator:crew1")
    h.at(6)
    h.feed(ev("A", "T4", "T5", start=T0 + timedelta(minutes=6)))  # no crew free
    a = next(r["id"] for r in h.daemon.store.load_incidents() if r["id"] != x)
    first = []
    for minute in (70, 83, 97):
        h.at(minute)
        first += warnings_about(h, a)
    assert any("到达超时" in t or "已超" in t for t in first)
    h.at(100)
    h.feed(ev("A", "T4", "T5", status="restored", start=T0 + timedelta(minutes=6)))
    h.at(110)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, lambda: h.now).reopen(
        a, None, "operator:cc", "仍停电")
    h.deliver()
    again = []
    for minute in (150, 186, 200, 215):
        h.at(minute)
        again += [m.purpose for m in h.deliver() if m.incident_id == a
                  and m.purpose.startswith("escalation")]
    assert "escalation_overdue" in again and "escalation_no_crew" in again


def test_a_crew_reports_on_an_incident_back_by_other_hands_until_the_close_out(
        h: Harness) -> None:  # noqa: F811
    h.feed(ev("F1", "T3"))
    inc = h.only_incident()
    life = h.daemon.lifecycle
    h.at(20)
    h.feed(ev("F1", "T3", status="restored"))
    assert h.incident(inc)["status"] == "restored"
    power_back = h.sent("crew_power_back")
    assert power_back and "在现场进度中报告" in power_back[-1].text
    h.at(40)
    assert life.arrive(inc, "crew:C1").stage == "restored"
    life.crew_note(inc, "crew:C1", "fault_found", "熔断器熔断", {"device": "FU2"})
    log = [(e["stage"], e["actor"]) for e in h.daemon.store.incident_log(inc)]
    assert ("on_site", "crew:C1") in log and ("fault_found", "crew:C1") in log
    # The villages are back: no "crew on site" progress notice goes to them.
    assert not [m for m in h.deliver() if m.audience == "liaison"]
    life.close(inc, "operator:cc", "设备故障", device="FU2")
    with pytest.raises(LifecycleError, match="closed"):
        life.crew_note(inc, "crew:C1", "fault_found", "", {"device": "FU2"})
