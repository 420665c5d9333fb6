"""A village told it may be affected (可能受影响, an inference) whose inference the estimate
later dropped (withdrawn: its liaisons are not told) hears an update when it rejoins on news:
a source reporting off an area of it it was not told of, or its expected restoration time
moved. Inferred again with nothing new, or an area it was told of confirmed, it rejoins
quietly, as a village still in the outage would hear nothing of that.

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

from outage_sentinel.daemon import Daemon
from outage_sentinel.events import PollResult
from outage_sentinel.incidents import Incident
from tests.conftest import T0, build_grid
from tests.test_incident_truth import hopping
from tests.test_incidents import Core, ev
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev as feed_ev
from tests.test_shared_areas import feed


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def heard(core: Core, village: str) -> list[str]:
    return [p for _, p, _, villages in core.sent if village in villages]


def withdrawn_v2(core: Core, etr: datetime | None = None) -> Incident:
    """E1 names T1: under R1, V2's T3 is inferred and V2 told; E2 names T2: under FU1, V2's
    inference is dropped (withdrawn)."""
    core.feed(ev("E1", "T1", expected_restoration=etr), m(0))
    inc, _ = core.feed(ev("E2", "T2", expected_restoration=etr), m(1))
    assert inc.withdrawn_villages == ("V2",) and inc.withdrawn_areas == {"V2": ("T3",)}
    assert heard(core, "V2") == ["outage", "withdrawn"]
    return inc


def test_a_rejoining_village_hears_of_an_area_a_source_reports_off_it_was_not_told_of() -> None:
    core = Core(build_grid(), estimator=hopping(["R1", "FU1", "R1"]))  # type: ignore[arg-type]
    withdrawn_v2(core)
    inc, notices = core.feed(ev("E3", "T4"), m(2))  # V2's T4, reported by the outage system
    assert ("update", ("V2",)) in [(n.purpose, n.villages) for n in notices]
    assert "V2" in inc.notified_villages and inc.withdrawn_villages == ()
    assert inc.withdrawn_areas == {} and heard(core, "V2").count("outage") == 1


def test_a_rejoining_village_inferred_again_or_confirmed_where_it_was_told_stays_quiet(
        ) -> None:
    core = Core(build_grid(), estimator=hopping(["R1", "FU1", "R1"]))  # type: ignore[arg-type]
    withdrawn_v2(core)
    inc, notices = core.feed(ev("E3", "T3"), m(2))  # T3 confirmed: V2 was told of it
    assert notices == [] and "V2" in inc.notified_villages
    assert heard(core, "V2") == ["outage", "withdrawn"]


def test_a_rejoining_village_hears_its_expected_restoration_moved() -> None:
    core = Core(build_grid(), estimator=hopping(["R1", "FU1", "R1"]))  # type: ignore[arg-type]
    inc = withdrawn_v2(core, etr=m(120))
    assert inc.told_etr["V2"] == m(120)  # what it was told, kept while withdrawn
    inc, notices = core.feed(ev("E3", "T1", "T2", expected_restoration=m(240)), m(2))
    assert "V2" in [v for n in notices if n.purpose == "update" for v in n.villages]
    assert inc.told_etr["V2"] == m(240)


def test_what_a_withdrawn_village_was_told_survives_storage() -> None:
    core = Core(build_grid(), estimator=hopping(["R1", "FU1", "R1"]))  # type: ignore[arg-type]
    inc = withdrawn_v2(core, etr=m(120))
    again = Incident.from_json(inc.to_json())
    assert again.withdrawn_areas == {"V2": ("T3",)} and again.told_etr["V2"] == m(120)
    assert "withdrawn_areas" not in replace(inc, withdrawn_areas={}).to_json()


def test_through_the_daemon_the_rejoining_village_reads_the_area_reported(
        daemon: Daemon) -> None:  # noqa: F811
    """N1 names V3's T5 (V2's T4 inferred under FU2: V2 told 可能受影响); the meters read T4
    alive (V2 withdrawn); the outage system names V2's T3: V2 hears an update naming T3."""
    d = daemon
    feed(d, 1, feed_ev("N1", "T5"))
    deliver(d)  # told: a notice still queued would be taken back, the village never told
    d.clock.now = m(5)  # type: ignore[attr-defined]
    d.store.ingest("ami", PollResult(events=[feed_ev("A1", "T4", source="ami",
                                                     signal="alive")]), m(5))
    d.process()
    (row,) = d.store.load_incidents(open_only=False)
    assert Incident.from_json(row["state"]).withdrawn_villages == ("V2",)
    feed(d, 10, feed_ev("N2", "T3"))
    mine = [(msg.purpose, msg.body) for msg in d.store.messages()
            if msg.recipient.startswith("village:V2:") and msg.purpose != "care"]
    assert [p for p, _ in mine] == ["outage", "update"]
    assert "已确认停电：台区T3" in mine[1][1] and "本村停电范围有变化" in mine[1][1]


def deliver(d: Daemon) -> None:
    while d.deliverer.run_once(d.clock()):
        pass
