"""Meters and the terminal (concentrator) of one area do not overrule each other's clear word
(docs/ami.md): a few meters reporting on do not restore an area whose terminal still says off;
and a terminal whose "on" was lost when the meters restored its area still reports the next
re-trip — its new "off" is off anew, not a repeat of the old one."""

from __future__ import annotations

import json

from outage_sentinel.ami import AmiScreen
from outage_sentinel.events import OutageEvent
from tests.test_ami import at, meters_off, meters_on, obs, registry


def terminal(action: str, seconds: float) -> OutageEvent:
    return obs("TX0-T", action, seconds, kind="terminal")


def test_fewer_meters_on_than_the_threshold_do_not_restore_an_area_whose_terminal_says_off(
        ) -> None:
    """Terminal off and 6 of 200 meters off (threshold 5); 3 meters on — half of those off,
    but fewer than the threshold — while the terminal still says off: the area stays out."""
    screen = AmiScreen(registry(meters=200))
    screen.feed([terminal("off", 0)] + meters_off(0, 6), at(10))
    assert [e.signal for e in screen.tick(at(120)).events] == ["dead"]
    assert screen.feed(meters_on(0, 3, at=600), at(605)).events == []
    assert screen.outages() == {"TX0": at(0)}
    # The threshold reached (5 meters on), the meters' word stands against the terminal's.
    back = screen.feed([obs("TX0-M3", "on", 700), obs("TX0-M4", "on", 701)], at(705)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(701))]
    assert screen.outages() == {}


def test_the_terminal_on_restores_an_area_few_meters_already_said_was_back() -> None:
    screen = AmiScreen(registry(meters=200))
    screen.feed([terminal("off", 0)] + meters_off(0, 6), at(10))
    screen.tick(at(120))
    screen.feed(meters_on(0, 3, at=600), at(605))
    back = screen.feed([terminal("on", 650)], at(651)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(650))]


def restored_by_meters_terminal_on_lost() -> AmiScreen:
    """Terminal and 10 meters off at 08:00; at 08:30 half the meters say on (the area is
    restored); the terminal's own "on" never comes."""
    screen = AmiScreen(registry(meters=200))
    screen.feed([terminal("off", 0)] + meters_off(0, 10), at(10))
    assert [e.signal for e in screen.tick(at(120)).events] == ["dead"]
    back = screen.feed(meters_on(0, 6, at=1800), at(1806)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(1805))]
    return screen


def test_a_retrip_the_terminal_alone_reports_after_a_meter_restoration_is_an_outage() -> None:
    screen = restored_by_meters_terminal_on_lost()
    r = screen.feed([terminal("off", 2100)], at(2101))  # 08:35: the line trips again
    assert r.merged == 0
    out = screen.tick(at(2400)).events
    assert [(e.signal, e.start, e.raw["basis"]) for e in out] == [("dead", at(2100), "terminal")]
    assert screen.outages() == {"TX0": at(2100)}


def test_a_copy_of_the_old_terminal_off_after_the_close_is_still_a_repeat() -> None:
    screen = restored_by_meters_terminal_on_lost()
    r = screen.feed([terminal("off", 0)], at(2101))  # the 08:00 report, redelivered
    assert r.merged == 1
    assert screen.tick(at(2400)).events == [] and screen.outages() == {}


def test_the_terminal_s_stale_off_does_not_hold_back_the_next_meter_restoration() -> None:
    """After the close, a meter re-trip (5 meters) comes back with 3 meters on (the restore
    share): the terminal's "off" from before the close is no word on this outage."""
    screen = restored_by_meters_terminal_on_lost()
    screen.feed(meters_off(0, 5, at=2100), at(2105))
    assert [e.signal for e in screen.tick(at(2400)).events] == ["dead"]
    back = screen.feed(meters_on(0, 3, at=2700), at(2705)).events
    assert [(e.signal, e.end) for e in back] == [("alive", at(2702))]


def test_the_retrip_rule_survives_a_restart() -> None:
    screen = restored_by_meters_terminal_on_lost()
    reg = registry(meters=200)
    again = AmiScreen.from_state(json.loads(json.dumps(screen.to_state())), reg)
    again.feed([terminal("off", 2100)], at(2101))
    assert [e.signal for e in again.tick(at(2400)).events] == ["dead"]
