"""A flapping area (its meters off a few minutes, on a few minutes, again and again) is one
outage: the AMI screen holds a released outage's restoration until the area has stayed on for
``ami_screen.restore_settle_seconds`` (rule 6, outage_sentinel/ami.py), so its village hears
one outage and one restoration, timed at the last "on" — not a pair per flicker. A re-trip
after the area stayed on longer is a new outage, as before; the settling restoration survives
a restart of the daemon, and is released once.

The screen is driven as the daemon drives it: reports fed as they arrive, and a tick every
15 s in between (the daemon ticks at :meth:`AmiScreen.next_due`)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from outage_sentinel.ami import AmiScreen, ScreenPolicy, ScreenResult
from outage_sentinel.config import AmiScreenConfig
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.metrics import Metrics
from outage_sentinel.screening import AMI_SOURCE, AmiScreener
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_ami import T, at, meters_off, meters_on, obs, registry
from tests.test_incident_truth_folding import NOW, Rig, config, meter_reports

SETTLE = 300.0
POLICY = ScreenPolicy(restore_settle_seconds=SETTLE)


class Driven:
    """A pure screen fed and ticked every 15 s, as the daemon would; outputs collected."""

    def __init__(self, screen: AmiScreen) -> None:
        self.screen = screen
        self.clock = T
        self.outputs: list[tuple[OutageEvent, datetime]] = []  # (output, when emitted)
        self.flapped = 0

    def take(self, result: ScreenResult, now: datetime) -> None:
        self.outputs.extend((e, now) for e in result.events)
        self.flapped += len(result.flapped)

    def until(self, seconds: float) -> None:
        """Tick every 15 s up to ``T + seconds``."""
        while self.clock + timedelta(seconds=15) <= at(seconds):
            self.clock += timedelta(seconds=15)
            self.take(self.screen.tick(self.clock), self.clock)

    def feed(self, events: list[OutageEvent], seconds: float) -> None:
        """``events`` arriving at ``T + seconds`` (ticks up to then first)."""
        self.until(seconds)
        self.clock = at(seconds)
        self.take(self.screen.feed(events, self.clock), self.clock)

    def signals(self) -> list[tuple[str, str, datetime | None]]:
        return [(e.signal, e.event_id, e.end) for e, _ in self.outputs]


def flap(run: Driven, times: int, off: float = 180.0, on: float = 120.0) -> None:
    """Area TX0's ten meters off ``off`` seconds, then on ``on`` seconds, ``times`` times."""
    t = 0.0
    for _ in range(times):
        run.feed(meters_off(0, 10, at=t), t + 2)
        back = t + off
        run.feed(meters_on(0, 10, at=back), back + 12)
        t = back + on


def test_a_flapping_area_is_one_outage_restored_once_at_its_last_on() -> None:
    run = Driven(AmiScreen(registry(), POLICY))
    flap(run, 3)
    run.until(3600)
    (dead, _), (alive, released) = run.outputs
    assert (dead.signal, dead.start) == ("dead", T)
    assert (alive.signal, alive.event_id) == ("alive", dead.event_id)
    # Restored at the last close (the sixth of ten meters on: five still off would hold the
    # area out, rule 3), released once the area had stayed on for the settle time.
    last_close = at(2 * 300 + 180 + 5)
    assert alive.end == last_close and alive.start == T
    assert last_close + timedelta(seconds=SETTLE) <= released
    assert released <= last_close + timedelta(seconds=SETTLE + 30)
    assert run.flapped == 2
    assert run.screen.outages() == {}


def test_an_area_back_for_longer_than_the_settle_time_is_restored_and_a_retrip_is_new() -> None:
    run = Driven(AmiScreen(registry(), POLICY))
    flap(run, 2, on=SETTLE + 120)
    run.until(3600)
    signals = [(s, e) for s, e, _ in run.signals()]
    first, second = "TX0@20260701T080000Z", "TX0@20260701T081000Z"
    assert signals == [("dead", first), ("alive", first), ("dead", second), ("alive", second)]
    assert run.flapped == 0
    # The first restoration went out once the area had been on for the settle time, before
    # the re-trip: the village heard it (a real re-trip is a new, linked outage).
    (_, alive_at), = [(e, w) for e, w in run.outputs if e.signal == "alive" and e.event_id == first]
    assert alive_at < at(180 + SETTLE + 120)


def test_an_outage_over_before_it_was_released_is_not_held() -> None:
    """Both ends in one batch (an upload): nobody was told of it, so its end goes with it and
    the outage notice is never sent (tests/test_daemon_ami_truth.py, the reconnecting
    concentrator)."""
    screen = AmiScreen(registry(), POLICY)
    r = screen.feed(meters_off(0, 10, at=0) + meters_on(0, 10, at=600), at(3600))
    assert [e.signal for e in r.events] == ["dead", "alive"]


def test_a_settle_of_zero_restores_at_the_first_on() -> None:
    screen = AmiScreen(registry(), ScreenPolicy(restore_settle_seconds=0))
    screen.feed(meters_off(0, 10), at(2))
    screen.tick(at(90))
    r = screen.feed(meters_on(0, 10, at=180), at(192))
    assert [e.signal for e in r.events] == ["alive"]


def test_a_screen_restarted_while_a_restoration_settles_loses_nothing_nor_says_it_twice(
) -> None:
    run = Driven(AmiScreen(registry(), POLICY))
    run.feed(meters_off(0, 10), 2)
    run.feed(meters_on(0, 10, at=180), 192)
    run.until(300)
    assert run.signals() == [("dead", "TX0@20260701T080000Z", None)]
    # Restarted in the settle window: the closing outage is in the saved state ...
    run.screen = AmiScreen.from_state(run.screen.to_state(), registry(), POLICY)
    assert run.screen.next_due() is not None
    # ... and a re-trip within it still carries the outage on.
    run.feed(meters_off(0, 10, at=330), 332)
    run.feed(meters_on(0, 10, at=500), 512)
    run.screen = AmiScreen.from_state(run.screen.to_state(), registry(), POLICY)
    run.until(3600)
    assert run.signals() == [("dead", "TX0@20260701T080000Z", None),
                             ("alive", "TX0@20260701T080000Z", at(505))]
    assert run.flapped == 1


def test_the_terminal_s_word_carries_a_settling_outage_on() -> None:
    run = Driven(AmiScreen(registry(), POLICY))
    run.feed([obs("TX0-T", "off", 0, kind="terminal")], 2)
    run.feed([obs("TX0-T", "on", 180, kind="terminal")], 182)
    run.feed([obs("TX0-T", "off", 240, kind="terminal")], 242)
    run.feed([obs("TX0-T", "on", 400, kind="terminal")], 402)
    run.until(3600)
    assert run.signals() == [("dead", "TX0@20260701T080000Z", None),
                             ("alive", "TX0@20260701T080000Z", at(400))]
    assert run.flapped == 1


# -- the setting ----------------------------------------------------------------------------------


def test_the_setting_defaults_to_five_minutes_and_reaches_the_screen() -> None:
    cfg = AmiScreenConfig()
    assert cfg.restore_settle_seconds == 300.0
    assert ScreenPolicy.from_config(cfg).restore_settle_seconds == 300.0
    assert AmiScreenConfig(restore_settle_seconds=0).restore_settle_seconds == 0
    with pytest.raises(ValidationError):
        AmiScreenConfig(restore_settle_seconds=-1)


# -- through the store and the processor ---------------------------------------------------------


def test_a_flapping_village_hears_one_outage_and_one_restoration_at_the_last_on(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """The folding test's flapping area, with the screen ticked every 15 s between reports
    (as the daemon does): one incident, one outage notice and one restoration notice per
    liaison, the restoration at the last "on"."""
    rig = Rig(tmp_path, store, demo)
    area = "T-LH04-022"
    village = demo.nodes[area].village
    recipients = len(rig.core.processor.planner.village_recipients(village))
    clock = NOW

    def until(when: datetime) -> None:
        nonlocal clock
        while clock + timedelta(seconds=15) <= when:
            clock += timedelta(seconds=15)
            rig.process(clock)

    t, back = NOW, NOW
    for _ in range(3):  # off 3 minutes, on 2 minutes, three times
        until(t)
        rig.screen.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, False, t)), t)
        back = t + timedelta(minutes=3)
        until(back)
        rig.screen.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, True, back)),
                          back)
        t = back + timedelta(minutes=2)
    until(back + timedelta(minutes=15))
    (inc,) = rig.incidents()
    assert inc.status == "restored" and inc.end == back
    assert rig.told(village, "outage") == recipients
    assert rig.told(village, "restored") == recipients


def test_the_screener_keeps_a_settling_restoration_across_a_restart(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    """Saved with the screen's state (the daemon's ``save`` on shutdown) and loaded again: the
    restoration is released once, after the settle time, by the restarted screener."""
    cfg = config(tmp_path)
    area = "T-LH04-022"

    def screener() -> AmiScreener:
        s = AmiScreener(store, demo, cfg, Metrics(), {"ami-mqtt"}, threading.Lock())
        s.load(NOW)
        return s

    first = screener()
    first.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, False, NOW)), NOW)
    first.run_once(NOW + timedelta(minutes=2))
    back = NOW + timedelta(minutes=3)
    first.ingest("ami-mqtt", PollResult(events=meter_reports(demo, area, True, back)), back)
    first.run_once(back + timedelta(minutes=1))
    first.save(back + timedelta(minutes=1))
    second = screener()
    second.run_once(back + timedelta(minutes=4))  # not settled yet
    assert [e.signal for e in outputs(store)] == ["dead"]
    t = back + timedelta(minutes=10)
    while t > NOW and second.run_once(t) == 0 and t < back + timedelta(hours=1):
        t += timedelta(seconds=15)
    second.save(t)
    screener().run_once(t + timedelta(hours=1))  # restarted again: nothing said twice
    alive = [e for e in outputs(store) if e.signal == "alive"]
    assert [(e.end, e.event_id) for e in alive] == [(back, f"{area}@20261123T020000Z")]


def outputs(store: Store) -> list[OutageEvent]:
    return [s.event for s in store.events() if s.event is not None
            and s.event.source == AMI_SOURCE]
