"""What the incident core tells villages must be true: restoration only from evidence that supply
is back, reported areas never dropped, inferred areas marked as such and withdrawn quietly.

The network is the two-feeder grid from conftest::

    F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
                  │          └─ T3 (V2, 50)
                  ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
                  └─ TIE (normally open) ─ J3
    F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from outage_sentinel.incidents import (
    Estimate,
    Evidence,
    Incident,
    answers_to,
    apply_event,
    first_estimate,
    plan_notices,
    resolve_event,
    village_etr,
    village_records,
    village_scope_change,
    village_start,
)
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_grid
from tests.test_incidents import Core, ev

F1_AREAS = ("T1", "T2", "T3", "T4", "T5")


def fixed(topo: Topology, device: str, probability: float = 0.7) -> Estimate:
    areas = tuple(topo.downstream_transformers(device))
    return Estimate(devices=(device,), probability=probability, transformers=areas,
                    customers=topo.customers_of(areas), villages=tuple(topo.villages_of(areas)))


def hopping(sequence: Sequence[str]) -> object:
    """An estimator that names the next device of ``sequence`` on every call (a localiser whose
    single best device moves as storm evidence arrives)."""
    calls = {"n": 0}

    def estimate(topo: Topology, evidence: Evidence) -> Estimate:
        device = sequence[min(calls["n"], len(sequence) - 1)]
        calls["n"] += 1
        return fixed(topo, device)
    return estimate


def told(core: Core, purpose: str) -> list[str]:
    return [v for _, p, _, villages in core.sent if p == purpose for v in villages]


def test_a_hopping_estimate_never_tells_a_village_power_is_back() -> None:
    grid = build_grid()
    core = Core(grid, estimator=hopping(["FU1", "FU2", "R1", "FU1", "B1", "FU2"]))  # type: ignore[arg-type]
    for i, area in enumerate(["T1", "T4", "T3", "T2", "T5", "T1"]):
        inc, _ = core.feed(ev(f"E{i}", area), T0 + timedelta(minutes=i))
    assert told(core, "restored") == []
    # V3 was inferred under FU2 and dropped when the estimate moved to R1 (the command centre
    # hears of it); reported off later, it rejoins without a second outage notice.
    assert told(core, "withdrawn") == ["V3"]
    assert sorted(told(core, "outage")) == ["V1", "V2", "V3"]  # each once
    assert set(inc.off) == set(F1_AREAS) and inc.confirmed == inc.estimate.transformers


def test_reported_villages_are_always_told_and_inferred_ones_marked() -> None:
    grid = build_grid()
    # The feed names T1 (V1) and T4 (V2); the localiser prefers FU1, covering V1 only.
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    inc, notices = core.feed(ev("E1", "T1", "T4"), T0)
    assert notices[0].purpose == "outage" and set(notices[0].villages) == {"V1", "V2"}
    assert inc.mark("T1") == inc.mark("T4") == "reported"
    assert inc.mark("T2") == "inferred"  # under FU1, reported by nobody
    assert "T5" not in inc.estimate.transformers  # FU2 is not inferred
    assert set(inc.estimate.villages) == {"V1", "V2"}
    assert inc.estimate.customers == grid.customers_of(("T1", "T2", "T4"))


def test_a_village_only_inferred_is_withdrawn_quietly_when_the_estimate_moves() -> None:
    grid = build_grid()
    core = Core(grid, estimator=hopping(["R1", "FU1"]))  # type: ignore[arg-type]
    inc, _ = core.feed(ev("E1", "T1"), T0)
    assert set(inc.notified_villages) == {"V1", "V2"}  # T3 (V2) inferred under R1
    after, notices = core.feed(ev("E2", "T2"), T0 + timedelta(minutes=2))
    assert [(n.purpose, n.villages) for n in notices] == [("withdrawn", ("V2",))]
    assert after.notified_villages == ("V1",) and after.withdrawn_villages == ("V2",)
    assert "T3" not in after.estimate.transformers


def test_a_withdrawn_village_inferred_again_is_not_told_twice() -> None:
    grid = build_grid()
    core = Core(grid, estimator=hopping(["R1", "FU1", "R1"]))  # type: ignore[arg-type]
    core.feed(ev("E1", "T1"), T0)
    core.feed(ev("E2", "T2"), T0 + timedelta(minutes=1))
    back, notices = core.feed(ev("E3", "T1", "T2"), T0 + timedelta(minutes=2))
    assert notices == [] or all(n.purpose != "outage" for n in notices)
    assert set(back.notified_villages) == {"V1", "V2"} and back.withdrawn_villages == ()
    assert told(core, "outage").count("V2") == 1


def test_restored_once_after_the_last_area_of_the_village_is_back() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "B1"))
    core.feed(ev("E1", "T1"), T0)
    core.feed(ev("E2", "T2"), T0 + timedelta(minutes=1))
    core.feed(ev("E3", "T4"), T0 + timedelta(minutes=2))
    _, n1 = core.feed(ev("E1", "T1", status="restored"), T0 + timedelta(minutes=20))
    assert n1 == []  # T2 (V1) is still reported off
    inc, n2 = core.feed(ev("E2", "T2", status="restored"), T0 + timedelta(minutes=25))
    # V1's reported areas are back; V1 has no inferred area left off either? T1, T2 are all of
    # V1's areas, so V1 is told now, once.
    assert [(n.purpose, n.villages) for n in n2] == [("restored", ("V1",))]
    assert inc.status == "active"
    done, n3 = core.feed(ev("E3", "T4", status="restored"), T0 + timedelta(minutes=30))
    assert done.status == "restored"
    assert [(n.purpose, set(n.villages)) for n in n3] == [("restored", {"V2", "V3"})]
    assert sorted(told(core, "restored")) == ["V1", "V2", "V3"]


def test_possible_areas_are_in_scope_until_their_record_ends() -> None:
    grid = build_grid()
    core = Core(grid)
    inc, notices = core.feed(ev("E1"), T0)  # nothing placed yet
    from outage_sentinel.incidents import Resolved, apply_event, plan_notices
    resolved = Resolved(feeder="F1", transformers=(), device=None, unknown=(),
                        possible=("T4",))
    after = apply_event(None, ev("E9"), resolved, grid, first_estimate, T0, lambda: "I9")
    assert after.mark("T4") == "possible" and after.off == ("T4",)
    notices, after = plan_notices(None, after, grid)
    assert [(n.purpose, n.villages) for n in notices] == [("outage", ("V2",))]
    ended = apply_event(after, ev("E9", status="restored", end=T0 + timedelta(hours=1)),
                        resolved, grid, first_estimate, T0 + timedelta(hours=1), lambda: "x")
    assert ended.status == "restored"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_restored_notice_while_every_record_is_active(data: st.DataObject) -> None:
    """Property: however records arrive and whatever device the estimator names, while no
    record has ended no village is told power is back, and none hears "outage" twice. A
    record revised to fewer areas no longer says the ones it dropped are off: their village
    is asked whether power is back (every area of it counted back is unconfirmed), never
    told it is — and hears "outage" again if a record names one of those areas again."""
    grid = build_grid()
    devices = data.draw(st.lists(st.sampled_from(["FU1", "FU2", "R1", "B1"]), min_size=1,
                                 max_size=8))
    core = Core(grid, estimator=hopping(devices))  # type: ignore[arg-type]
    n = data.draw(st.integers(1, 8))
    for i in range(n):
        areas = data.draw(st.lists(st.sampled_from(F1_AREAS), min_size=1, max_size=3,
                                   unique=True))
        inc, notices = core.feed(ev(f"E{i % 4}", *areas), T0 + timedelta(minutes=i))
        for village in (v for x in notices if x.purpose == "restored" for v in x.villages):
            back = set(inc.restored) & set(grid.village_transformers(village))
            assert back and back <= set(inc.unconfirmed), (village, inc.restored)
    asked = set(told(core, "restored"))
    outage = [v for v in told(core, "outage") if v not in asked]
    assert len(outage) == len(set(outage))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000))
def test_records_ending_one_by_one_restore_each_village_once_after_its_last_area(
        seed: int) -> None:
    rng = random.Random(seed)
    grid = build_grid()
    core = Core(grid, estimator=hopping([rng.choice(["FU1", "FU2", "R1", "B1"])
                                         for _ in range(12)]))  # type: ignore[arg-type]
    records = {f"E{i}": tuple(rng.sample(F1_AREAS, rng.randint(1, 2))) for i in range(5)}
    for i, (rid, areas) in enumerate(records.items()):
        core.feed(ev(rid, *areas), T0 + timedelta(minutes=i))
    order = list(records)
    rng.shuffle(order)
    open_records = dict(records)
    inc: Incident | None = None
    for j, rid in enumerate(order):
        areas = open_records.pop(rid)
        before = len(core.sent)
        inc, _ = core.feed(ev(rid, *areas, status="restored",
                              end=T0 + timedelta(hours=1, minutes=j)),
                           T0 + timedelta(hours=1, minutes=j))
        still_named = {grid.nodes[t].village for a in open_records.values() for t in a}
        for _, purpose, _, villages in core.sent[before:]:
            if purpose == "restored":
                assert not set(villages) & still_named  # a village with a named area off
    restored = told(core, "restored")
    assert len(restored) == len(set(restored))
    assert inc is not None and inc.status == "restored"
    reported = {grid.nodes[t].village for a in records.values() for t in a}
    assert reported <= set(restored)  # every village with a reported area is told, once


def test_a_feed_restating_an_old_outage_does_not_undo_a_restoration_step() -> None:
    grid = build_grid()
    core = Core(grid)
    core.feed(ev("E1", "T1", "T2"), T0)
    step = T0 + timedelta(minutes=30)
    inc, _ = core.feed(ev("S1", "T1", "T2", source="operator", status="restored",
                          signal="alive", start=step, end=step), step)
    assert inc.status == "restored"
    # The feed lags: its record (outage since T0) is listed again, with a new ETR.
    again, notices = core.feed(ev("E1", "T1", "T2", expected_restoration=T0 + timedelta(hours=3)),
                               step + timedelta(minutes=1))
    assert again.off == () and all(n.purpose != "outage" for n in notices)
    # A new outage of T1, after the step, is news: T1 is off again and V1 is told.
    later = step + timedelta(minutes=10)
    off, notices = core.feed(ev("E2", "T1", start=later), later)
    assert "T1" in off.off and off.status == "active"


def test_another_villages_record_does_not_move_this_villages_etr() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "B1"))
    core.feed(ev("E1", "T1", expected_restoration=T0 + timedelta(hours=1)), T0)
    inc, notices = core.feed(ev("E2", "T5", expected_restoration=T0 + timedelta(hours=4)),
                             T0 + timedelta(minutes=1))
    assert inc.etr == T0 + timedelta(hours=4)  # the incident's latest
    # V3's own record says 4 h; V2 (inferred, named by no record) follows the incident; V1's
    # own record did not move, so V1 hears nothing.
    assert [(n.purpose, set(n.villages)) for n in notices] == [("update", {"V2", "V3"})]
    _, notices = core.feed(ev("E1", "T1", expected_restoration=T0 + timedelta(hours=2)),
                           T0 + timedelta(minutes=2))
    assert [(n.purpose, n.villages) for n in notices] == [("update", ("V1",))]


def test_small_etr_moves_are_not_news_until_they_add_up() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    etr = T0 + timedelta(hours=2)
    core.feed(ev("E1", "T1", expected_restoration=etr), T0)
    updates = []
    for i in range(1, 8):  # the feed nudges its ETR by 3 minutes at a time
        _, notices = core.feed(ev("E1", "T1", expected_restoration=etr + timedelta(minutes=3 * i)),
                               T0 + timedelta(minutes=i))
        updates += [i for n in notices if n.purpose == "update"]
    assert updates == [5]  # 15 minutes from what V1 was told, then 6 more: not yet again
    inc = next(iter(core.incidents.values()))
    assert inc.told_etr["V1"] == etr + timedelta(minutes=15)


def test_a_record_gone_from_a_snapshot_feed_brings_its_own_areas_back() -> None:
    """A 95598-style list without status says a record ended only by dropping it; the source
    infers "restored" naming no areas. Its village hears its power is back at once, not when
    the last record of the incident ends."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1", "T2", feeder="F1"), T0)
    inc, _ = core.feed(ev("N2", "T3", feeder="F1"), T0)
    assert set(inc.off) == {"T1", "T2", "T3"}
    gone = ev("N1", feeder="F1", status="restored", end=T0 + timedelta(minutes=60),
              raw={"inferred": "record left the feed"})
    inc, notices = core.feed(gone, T0 + timedelta(minutes=61))
    assert inc.status == "active" and inc.off == ("T3",)
    assert set(inc.restored) == {"T1", "T2"}
    assert [(n.purpose, n.villages) for n in notices] == [("restored", ("V1",))]


def test_a_villages_time_is_unknown_while_an_area_of_it_has_none() -> None:
    """V1's T1 is expected back at 10:00 by its record; T2's record gives no time: V1 is not
    promised 10:00 (the record says nothing of T2), unless the command centre sets a time."""
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    ten = T0 + timedelta(hours=2)
    inc, _ = core.feed(ev("N1", "T1", expected_restoration=ten), T0)
    assert inc.told_etr["V1"] == ten  # T2 inferred: no record speaks for it
    inc, notices = core.feed(ev("N2", "T2"), T0 + timedelta(minutes=1))
    assert [(n.purpose, n.villages) for n in notices] == [("update", ("V1",))]
    assert village_etr(inc, "V1", grid) is None and inc.told_etr["V1"] is None
    noon = T0 + timedelta(hours=4)
    assert village_etr(replace(inc, etr=noon, etr_set=noon), "V1", grid) == noon
    # T1's record ends: what is still off (T2) has no time; nothing new to tell.
    _, notices = core.feed(ev("N1", "T1", status="restored", end=ten), ten)
    assert notices == []


def test_each_village_gets_its_own_records_start() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "B1"))
    later = T0 + timedelta(hours=2)
    core.feed(ev("N1", "T1", device="FU1"), T0)
    inc, _ = core.feed(ev("N2", "T5", start=later, device="FU2",
                          expected_restoration=later + timedelta(hours=2)), later)
    assert inc.start == T0
    assert village_start(inc, "V1", grid) == T0
    assert village_start(inc, "V3", grid) == later  # its record began two hours later
    assert village_start(inc, "V2", grid) == later  # T4 is fed by FU2, which N2 names
    assert [m.key for m in village_records(inc, "V1", grid)] == ["feed|N1"]
    assert village_etr(inc, "V1", grid) is None  # N1 gives no time; N2's is V3's


def test_a_told_village_hears_of_an_area_a_report_adds() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU2"))
    inc, notices = core.feed(ev("E1", "T4"), T0)
    assert set(inc.notified_villages) == {"V2", "V3"}
    before = inc
    inc, notices = core.feed(ev("E2", "T3"), T0 + timedelta(minutes=5))  # V2's other area
    assert [(n.purpose, n.villages) for n in notices] == [("update", ("V2",))]
    assert village_scope_change(before, inc, "V2", grid) == (("T3",), ())


def test_an_inference_wobble_tells_a_told_village_nothing() -> None:
    grid = build_grid()
    # FU2 first (T4 reported, T5 inferred); then B1 infers T3 into V2, a village told.
    core = Core(grid, estimator=hopping(["FU2", "B1", "FU2"]))  # type: ignore[arg-type]
    core.feed(ev("E1", "T4"), T0)
    inc, notices = core.feed(ev("E2", "T5"), T0 + timedelta(minutes=1))
    assert "T3" in inc.estimate.transformers and inc.mark("T3") == "inferred"
    assert [(n.purpose, n.villages) for n in notices] == [("outage", ("V1",))]
    _, notices = core.feed(ev("E3", "T4", "T5"), T0 + timedelta(minutes=2))  # T3 dropped
    assert "update" not in [n.purpose for n in notices]
    # A report confirming an area the village was already told of is no news either.
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    core.feed(ev("E1", "T1"), T0)
    _, notices = core.feed(ev("E2", "T2"), T0 + timedelta(minutes=1))
    assert notices == []


def test_an_ended_records_words_are_not_the_outages_cause() -> None:
    """One record ends saying how ("已处理完毕恢复送电"); the outage goes on under another: the
    villages still off must not read that their power was restored as its cause."""
    core = Core(build_grid())
    core.feed(ev("N1", "T1", "T2", feeder="F1", cause="大风导致树线矛盾"), T0)
    core.feed(ev("N2", "T3", feeder="F1", cause=""), T0)
    inc, _ = core.feed(ev("N1", "T1", "T2", feeder="F1", status="restored", cause="已处理完毕恢复送电",
                          end=T0 + timedelta(minutes=30)), T0 + timedelta(minutes=31))
    assert inc.status == "active" and inc.off == ("T3",)
    assert inc.cause == "大风导致树线矛盾"


def test_a_record_reissued_with_a_later_start_keeps_the_villages_start() -> None:
    """The outage system re-issues the record under a new id whose start is the re-issue time,
    and drops the old one: the village has been off since the first record's start."""
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    core.feed(ev("N1", "T1", "T2", feeder="F1"), T0)
    reissued = T0 + timedelta(hours=2)
    core.feed(ev("N2", "T1", "T2", feeder="F1", start=reissued), reissued)
    inc, _ = core.feed(ev("N1", "T1", "T2", feeder="F1", status="restored",
                          end=reissued + timedelta(minutes=5)), reissued + timedelta(minutes=5))
    assert inc.status == "active"
    assert village_start(inc, "V1", grid) == T0


def test_an_area_no_record_named_is_not_confirmed_back_when_the_records_end() -> None:
    """The feed names T1; a call from T2 and the localiser put T2 (V1) in the outage too.
    T1's record ends: the incident is over, but nothing says T2's supply is back."""
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    core.feed(ev("E1", "T1"), T0)
    inc, _ = core.feed(ev("C1", "T2", signal="call", source="calls"), T0 + timedelta(minutes=1))
    assert inc.mark("T2") == "inferred" and inc.unconfirmed == ()
    done, notices = core.feed(ev("E1", "T1", status="restored", end=T0 + timedelta(minutes=30)),
                              T0 + timedelta(minutes=31))
    assert done.status == "restored" and set(done.restored) == {"T1", "T2"}
    assert done.unconfirmed == ("T2",)
    assert [(n.purpose, n.villages) for n in notices] == [("restored", ("V1",))]
    # A meter's power-restore for T2, folded in, confirms it: a revision, no second notice.
    resolved = resolve_event(grid, meter := ev("M1", "T2", signal="alive", status="restored",
                                               source="ami", end=T0 + timedelta(minutes=35)))
    assert answers_to(done, meter, resolved)
    after = apply_event(done, meter, resolved, grid, core.estimator,
                        T0 + timedelta(minutes=36), lambda: "X")
    assert after.status == "restored" and after.unconfirmed == ()
    assert after.revision == done.revision + 1
    assert plan_notices(done, after, grid)[0] == []
    # "Still dark" after the end is no confirmation: a new outage, not this incident's.
    dark = ev("F1", "T2", signal="dead", source="field")
    assert not answers_to(done, dark, resolve_event(grid, dark))


def test_a_restored_record_naming_the_device_brings_back_every_area_below_it() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    core.feed(ev("E1", "T1", device="FU1"), T0)
    done, _ = core.feed(ev("E1", "T1", device="FU1", status="restored"),
                        T0 + timedelta(minutes=30))
    assert done.status == "restored" and done.mark("T2") == "inferred"
    assert done.unconfirmed == ()


def test_an_outage_called_off_or_off_again_has_nothing_unconfirmed() -> None:
    grid = build_grid()
    core = Core(grid, estimator=lambda topo, e: fixed(topo, "FU1"))
    core.feed(ev("E1", "T1"), T0)
    off, _ = core.feed(ev("E1", "T1", status="cancelled"), T0 + timedelta(minutes=5))
    assert off.status == "cancelled" and off.unconfirmed == ()
    core.feed(ev("E2", "T1", start=T0 + timedelta(minutes=10)), T0 + timedelta(minutes=10))
    done, _ = core.feed(ev("E2", "T1", status="restored", start=T0 + timedelta(minutes=10)),
                        T0 + timedelta(minutes=40))
    assert done.unconfirmed == ("T2",)
    # The record re-activated: the outage is on again, T2 off again with it.
    again, _ = core.feed(ev("E2", "T1", start=T0 + timedelta(minutes=45)),
                         T0 + timedelta(minutes=45))
    assert again.status == "active" and again.unconfirmed == () and "T2" in again.off


def test_a_fault_record_withdrawn_while_others_stay_open_calls_its_village_off() -> None:
    """The outage system withdrawing the only record naming a village's area is no word that
    its power came back: the village hears 停电取消 (as when the whole incident is), while
    another record keeps the incident on."""
    grid = build_grid()
    core = Core(grid)
    core.feed(ev("E1", "T1"), T0)
    core.feed(ev("E2", "T5"), T0 + timedelta(minutes=1))
    inc, notices = core.feed(ev("E2", "T5", status="cancelled"), T0 + timedelta(minutes=10))
    assert inc.status == "active" and "T1" in inc.off
    back = [(n.purpose, n.villages) for n in notices if n.purpose in ("cancelled", "restored")]
    assert back == [("cancelled", ("V3",))]
    # The same record restored instead is the evidence a restoration is.
    core = Core(grid)
    core.feed(ev("E1", "T1"), T0)
    core.feed(ev("E2", "T5"), T0 + timedelta(minutes=1))
    _, notices = core.feed(ev("E2", "T5", status="restored"), T0 + timedelta(minutes=10))
    back = [(n.purpose, n.villages) for n in notices if n.purpose in ("cancelled", "restored")]
    assert back == [("restored", ("V3",))]


def test_a_withdrawn_fault_record_after_the_meters_saw_it_dark_is_a_restoration() -> None:
    grid = build_grid()
    core = Core(grid)
    core.feed(ev("E1", "T1"), T0)
    core.feed(ev("E2", "T5"), T0 + timedelta(minutes=1))
    core.feed(ev("M5", "T5", signal="dead", source="ami"), T0 + timedelta(minutes=2))
    inc, notices = core.feed(ev("E2", "T5", status="cancelled"), T0 + timedelta(minutes=10))
    assert notices == [] and "T5" in inc.off  # the meters still say it is dark
    # The meters' power-back, as the AMI screen issues it: the same event, signal alive.
    _, notices = core.feed(ev("M5", "T5", signal="alive", source="ami", status="restored",
                              end=T0 + timedelta(minutes=20)), T0 + timedelta(minutes=20))
    assert [(n.purpose, n.villages) for n in notices] == [("restored", ("V3",))]


def test_planned_work_edited_to_leave_an_area_out_tells_its_village_the_new_scope() -> None:
    """A record edited before its work began to name fewer of a village's areas (the village
    still in the work): the village hears an update naming what is still to go off."""
    grid = build_grid()
    core = Core(grid)
    start = T0 + timedelta(hours=20)
    before, _ = core.feed(ev("P", "T3", "T4", kind="planned", start=start), T0)
    inc, notices = core.feed(ev("P", "T3", kind="planned", start=start),
                             T0 + timedelta(minutes=30))
    assert ("update", ("V2",)) in [(n.purpose, n.villages) for n in notices]
    assert village_scope_change(before, inc, "V2", grid) == ((), ("T4",))
    assert "T4" not in inc.off and "T3" in inc.off
