"""A village hears its outage end truthfully whichever record ends the incident: a village
whose every record was cancelled (a fault record withdrawn: no word that power came back)
hears 停电取消, not 恢复送电, also when that cancellation is the incident's last ending.

The network is the two-feeder grid from conftest::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
                  │          └─ T3 (V2, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
                  └─ TIE (normally open) ─ J3
    F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import back_notices, called_off
from tests.conftest import T0, build_grid
from tests.test_incidents import Core, ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev as feed_ev
from tests.test_shared_areas import feed


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def heard(core: Core, village: str) -> list[str]:
    return [p for _, p, _, villages in core.sent if village in villages]


@pytest.mark.parametrize("cancelled_last", [True, False])
def test_a_village_whose_only_record_was_cancelled_hears_it_cancelled(
        cancelled_last: bool) -> None:
    """N1 names T1 (V1), N2 T4 (V2). N1 is restored and N2 cancelled, in either order: V1
    hears 恢复送电, V2 停电取消, never 恢复送电."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1"), m(1))
    core.feed(ev("N2", "T4"), m(1))
    endings = [ev("N1", "T1", status="restored", end=m(30)), ev("N2", "T4", status="cancelled")]
    for event, now in zip(endings if cancelled_last else endings[::-1], (m(30), m(31)),
                          strict=True):
        inc, _ = core.feed(event, now)
    assert inc.status == "restored"
    assert "cancelled" in heard(core, "V2") and "restored" not in heard(core, "V2")
    assert "restored" in heard(core, "V1") and "cancelled" not in heard(core, "V1")
    assert inc.notified_villages == () and {"V1", "V2"} <= set(inc.restored_villages)


def test_a_cancelled_last_record_whose_area_the_meters_saw_back_is_a_restoration() -> None:
    """Power seen back there first (the meters' power-restore): the record's cancellation
    ending the incident is a restoration for V2, as it is while others keep it on."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1"), m(1))
    core.feed(ev("N2", "T4"), m(1))
    core.feed(ev("A", "T4", signal="alive", status="restored", start=m(20), end=m(20),
                 source="ami"), m(20))
    core.feed(ev("N1", "T1", status="restored", end=m(30)), m(30))
    inc, _ = core.feed(ev("N2", "T4", status="cancelled"), m(31))
    assert inc.status == "restored" and "cancelled" not in heard(core, "V2")
    assert "restored" in heard(core, "V2")


def test_back_notices_split_a_restored_incident_and_cancel_a_cancelled_one() -> None:
    grid = build_grid()
    core = Core(grid)
    core.feed(ev("N1", "T1"), m(1))
    core.feed(ev("N2", "T4"), m(1))
    core.feed(ev("N1", "T1", status="restored", end=m(30)), m(30))
    inc, _ = core.feed(ev("N2", "T4", status="cancelled"), m(31))
    assert called_off(inc, "V2", grid) and not called_off(inc, "V1", grid)
    assert [(n.purpose, n.villages) for n in back_notices(inc, ["V1", "V2"], grid)] == [
        ("restored", ("V1",)), ("cancelled", ("V2",))]
    off = replace(inc, status="cancelled")
    assert [(n.purpose, n.villages) for n in back_notices(off, ["V1", "V2"], grid)] == [
        ("cancelled", ("V1", "V2"))]


def test_through_the_daemon_the_cancelled_village_reads_停电取消(daemon: Daemon) -> None:  # noqa: F811
    d = daemon
    feed(d, 1, feed_ev("N1", "T1"), feed_ev("N2", "T4"))
    feed(d, 30, feed_ev("N1", "T1", status="restored", end=m(30)))
    feed(d, 31, feed_ev("N2", "T4", status="cancelled"))
    (row,) = d.store.load_incidents(open_only=False)
    assert row["status"] == "restored"
    ends = [(msg.purpose, msg.body) for msg in d.store.messages()
            if msg.recipient.startswith("village:V2:") and msg.purpose in ("restored",
                                                                          "cancelled")]
    assert [p for p, _ in ends] == ["cancelled"]
    assert ends[0][1].startswith("【停电取消】") and "恢复送电" not in ends[0][1]
    v1 = {msg.purpose for msg in d.store.messages() if msg.recipient.startswith("village:V1:")}
    assert "restored" in v1 and "cancelled" not in v1


@pytest.mark.parametrize("signal", ["dead", "alive"])
def test_a_report_called_off_is_no_word_that_power_came_back(signal: str) -> None:
    """The outage system keeps T1 off; a trouble call about it (or a power-on report) the
    source then withdrew — a caller's "never mind", a duplicate closed — used to count as a
    restoration step: V1 heard 恢复送电 while the record still had it dark."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1"), m(1))
    core.feed(ev("C1", "T1", signal=signal, source="calls", start=m(5)), m(5))
    inc, _ = core.feed(ev("C1", "T1", signal=signal, source="calls", start=m(5),
                          status="cancelled", end=m(10)), m(10))
    assert inc.status == "active" and "T1" not in inc.restored
    assert "restored" not in heard(core, "V1")
    # The record's own restoration still brings it back.
    inc, _ = core.feed(ev("N1", "T1", status="restored", end=m(40)), m(40))
    assert inc.status == "restored" and inc.restored["T1"] == m(40)
    assert "restored" in heard(core, "V1")


def test_through_the_daemon_a_withdrawn_call_leaves_the_village_dark(daemon: Daemon) -> None:  # noqa: F811
    """N1 names T4 (V2) and T5 (V3, its only area); a call about T5 is withdrawn."""
    d = daemon
    feed(d, 1, feed_ev("N1", "T4", "T5"))
    feed(d, 5, feed_ev("C1", "T5", source="calls", signal="dead", start=m(5)))
    feed(d, 10, feed_ev("C1", "T5", source="calls", signal="dead", start=m(5),
                        status="cancelled", end=m(10)))
    (row,) = d.store.load_incidents(open_only=False)
    assert row["status"] == "active"
    v3 = [msg.purpose for msg in d.store.messages() if msg.recipient.startswith("village:V3:")]
    assert "outage" in v3 and "restored" not in v3
