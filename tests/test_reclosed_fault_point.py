"""A device re-energised with its own areas back on supply is no longer the fault point.

The audit's storm night: the feeder breaker trips, its areas go dark; 35 minutes later it
recloses — the meters of the areas directly under it (its own section) and of most branches
come back — while the areas under two fuses stay dark. "Restore first, repair after" keeps the
areas brought back by switching out of the fault's evidence (they say nothing of where it is),
so they were shown to the localiser as still dead, and the estimate, the command centre's
summary and the crew's patrol section kept naming the breaker (the whole feeder). A breaker
closed again with its own section on supply has no permanent fault in that section: the fault
is below a device still open. The areas back then count as alive, and the estimate falls to
the devices that explain the areas still dark.

Not so when the areas back were fed round the fault (a tie transfer): the breaker's own
section stays dark, the fault is there, the breaker stays the fault point. Through the real
daemon objects (``tests/reclose_support.py``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.reclose_support import (
    BREAKER,
    BREAKER_NAME,
    FAR_END,
    FUSE_NAMES,
    FUSES,
    OWN,
    SETTLE,
    Rig,
    trip,
)
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_incident_truth_folding import NOW


def reclosed(rig: Rig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """35 minutes after the trip the breaker recloses: its own section and every branch but
    the two fuses' come back on the meters' word. Returns the areas back and those dark."""
    every = rig.areas()
    dark = tuple(t for f in FUSES for t in rig.areas(f))
    back = tuple(t for t in every if t not in dark)
    assert set(OWN) <= set(back)
    reclose = NOW + timedelta(minutes=35)
    rig.terminals(reclose, back, on=True)
    rig.process(reclose + SETTLE)
    return back, dark


def test_a_reclosed_breaker_is_no_longer_the_fault_point(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The outage system's record of the trip stays open: it names the breaker operated,
    which it did; the fault point the crew is sent to is below it."""
    rig = Rig(tmp_path, store, demo)
    trip(rig)
    inc = rig.incident()
    assert inc.estimate.devices == (BREAKER,)
    assert rig.count("crew", "dispatch") == 1  # sent to the breaker's section
    every = rig.areas()
    back, dark = reclosed(rig)
    inc = rig.incident()
    assert inc.status == "active" and set(inc.off) == set(dark)
    devices = inc.estimate.devices
    assert devices and BREAKER not in devices, f"still the reclosed breaker: {devices}"
    assert all(demo.is_downstream(d, BREAKER) for d in devices)
    assert all(any(demo.is_downstream(t, d) for d in devices) for t in dark)
    assert set(devices) == set(FUSES)
    # The rest of the incident is as it was: the areas back stay in it, restored.
    assert set(inc.estimate.transformers) == set(every)
    assert set(back) <= set(inc.restored)
    assert inc.estimate.customers == demo.customers_of(every)
    # What the command centre and the crew read names the fuses, not the breaker.
    summary = rig.last("command", "summary").body
    assert all(name in summary for name in FUSE_NAMES), summary
    assert f"故障点：{BREAKER_NAME}" not in summary
    orders = rig.last("crew", "dispatch")
    assert rig.count("crew", "dispatch") >= 2, "no new orders for the moved fault point"
    assert all(name in orders.body for name in FUSE_NAMES), orders.body
    assert set(FUSES) <= set(orders.payload["covers"])
    # the latest orders name the fuses still open, none whose branch came back meanwhile
    assert set(orders.payload["operated"]) == set(FUSES)


def test_a_reclose_the_meters_alone_saw_names_the_fuses(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """No record at all: the meters' power-off, then their power-on below the breaker."""
    rig = Rig(tmp_path, store, demo)
    rig.terminals(NOW, rig.areas(), on=False)
    rig.process(NOW + timedelta(seconds=90))
    assert rig.incident().estimate.devices == (BREAKER,)
    _, dark = reclosed(rig)
    inc = rig.incident()
    assert set(inc.off) == set(dark) and set(inc.estimate.devices) == set(FUSES)
    summary = rig.last("command", "summary").body
    assert all(name in summary for name in FUSE_NAMES) and BREAKER_NAME not in summary
    orders = rig.last("crew", "dispatch").body  # sent once the outage was partly restored
    assert all(name in orders for name in FUSE_NAMES), orders
    assert f"{BREAKER_NAME}（疑似" not in orders


def test_a_tie_transfer_leaves_the_breaker_the_fault_point(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The far end fed round the fault from 城西线, the breaker's own section still dark:
    the fault is in it, the breaker stays."""
    rig = Rig(tmp_path, store, demo)
    trip(rig)
    fed = rig.areas(FAR_END)
    assert not set(OWN) & set(fed)
    transfer = NOW + timedelta(minutes=35)
    rig.terminals(transfer, fed, on=True)
    rig.process(transfer + SETTLE)
    inc = rig.incident()
    assert set(fed) <= set(inc.restored) and set(OWN) <= set(inc.off)
    assert inc.estimate.devices == (BREAKER,)
    assert f"故障点：{BREAKER_NAME}" in rig.last("command", "summary").body
    assert rig.count("crew", "dispatch") == 1


def test_half_the_breakers_own_section_back_leaves_it_the_fault_point(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """One of its own areas still dark: the breaker's section is not shown re-energised."""
    rig = Rig(tmp_path, store, demo)
    trip(rig)
    dark = (OWN[1], *(t for f in FUSES for t in rig.areas(f)))
    back = tuple(t for t in rig.areas() if t not in dark)
    later = NOW + timedelta(minutes=35)
    rig.terminals(later, back, on=True)
    rig.process(later + SETTLE)
    inc = rig.incident()
    assert set(inc.off) == set(dark)
    assert inc.estimate.devices == (BREAKER,)


def test_everything_back_a_record_still_open_keeps_the_breaker(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """A transient fault: the breaker recloses and every area is back, its record not ended
    yet (the incident is over on the meters' word). Nothing dark is left to place a fault
    below it: the breaker, which operated, is still what the incident names (its close-out
    and report read it)."""
    rig = Rig(tmp_path, store, demo)
    trip(rig)
    later = NOW + timedelta(minutes=35)
    rig.terminals(later, rig.areas(), on=True)
    rig.process(later + SETTLE)
    inc = rig.incident()
    assert not inc.off
    assert inc.estimate.devices == (BREAKER,)


def test_nothing_back_changes_nothing(tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    later = trip(rig)
    inc = rig.incident()
    assert inc.estimate.devices == (BREAKER,) and not inc.restored
    revision, estimate = inc.revision, inc.estimate
    rig.process(later + timedelta(minutes=35))
    inc = rig.incident()
    assert (inc.revision, inc.estimate) == (revision, estimate)
    assert rig.count("crew", "dispatch") == 1


def test_a_fuse_whose_areas_came_back_leaves_the_crew_s_orders(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The reclose seen a poll at a time: first every area but three fuses' (the orders
    name the three), then the third fuse's areas too. The crew's orders named a fuse
    whose areas are all back: it is told again, naming the two still open — the orders
    "covered" the new fault point, so it heard nothing and kept patrolling a live branch."""
    rig = Rig(tmp_path, store, demo)
    trip(rig)
    third = "FU-CG04-02"
    late = rig.areas(third)
    assert late and not set(late) & {t for f in FUSES for t in rig.areas(f)}
    dark = {t for f in FUSES for t in rig.areas(f)} | set(late)
    first = NOW + timedelta(minutes=35)
    rig.terminals(first, tuple(t for t in rig.areas() if t not in dark), on=True)
    rig.process(first + SETTLE)
    assert set(rig.incident().estimate.devices) == {*FUSES, third}
    told = rig.last("crew", "dispatch")
    assert set(told.payload["operated"]) == {*FUSES, third}
    second = first + SETTLE + timedelta(minutes=5)
    rig.terminals(second, late, on=True)
    rig.process(second + SETTLE)
    inc = rig.incident()
    assert set(inc.estimate.devices) == set(FUSES)
    orders = rig.last("crew", "dispatch")
    assert orders.id > told.id, "no new orders: a live branch patrolled"
    assert set(orders.payload["operated"]) == set(FUSES)
    assert demo.nodes[third].name not in orders.body  # 北关二支线跌落式熔断器: back
    assert all(name in orders.body for name in FUSE_NAMES)
