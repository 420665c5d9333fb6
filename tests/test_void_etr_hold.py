"""A village whose only news is that its expected restoration time is no longer known (the
outage-system record that carried it ended, the meters still dark) is not told so at once:
the update (恢复时间待定) waits ``notify.void_etr_hold_seconds``. Its 恢复送电, or any other news
of it, within the hold supersedes it; otherwise it goes once, at the end of the hold.

Through the daemon, in process, on the storm night of :mod:`tests.test_storm_village_truth`
(the breaker's record closes one poll before the meters' power-on arrives), with the AMI
screen's restoration settle off so that the power-on is a restoration at once (as in the
audited replay: 恢复送电 20 s after the update)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.ordering import order
from tests.test_daemon_ami_truth import CHANNELS
from tests.test_lifecycle import Recorder
from tests.test_storm_village_truth import (
    BREAKER_ONLY,
    ON,
    Night,
    areas,
    at,
    breaker,
    fuse,
    meters,
    storm,
)

VOID = "恢复时间待定"
#: The breaker's record ends at this minute of the night.
ENDS = 30.0
#: 20 s later, the meters of the breaker's villages report power on.


def night_with(tmp: Path, hold: float) -> Night:
    """The storm night with ``notify.void_etr_hold_seconds`` = ``hold`` and a power-on
    counted at once (``ami_screen.restore_settle_seconds`` 0)."""
    night = Night(tmp)
    config = night.daemon.config
    night.daemon.close()
    config = config.model_copy(update={
        "notify": config.notify.model_copy(update={"void_etr_hold_seconds": hold}),
        "ami_screen": config.ami_screen.model_copy(update={"restore_settle_seconds": 0.0})})
    night.daemon = Daemon(config, channels={n: Recorder(n) for n in CHANNELS},
                          clock=lambda: night.now)
    night.daemon.start()
    return night


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Night]:
    n = night_with(tmp_path, 120)
    yield n
    n.daemon.close()


@pytest.fixture
def unheld(tmp_path: Path) -> Iterator[Night]:
    n = night_with(tmp_path, 0)
    yield n
    n.daemon.close()


def record_ends(night: Night, ends: float = ENDS) -> int:
    """Every village told of the storm; the breaker's record ends at ``ends``. Returns the
    mark."""
    storm(night)
    return night.go(ends, oms=[breaker("restored", at(ends)), fuse()])


def power_on(night: Night, ends: float = ENDS) -> None:
    """The breaker's villages' meters report power on 20 s after the record ended; the
    deliverer runs every few seconds after it (as the daemon's job does)."""
    night.go(ends + 20 / 60, meters(ON, areas(1, 19) + areas(27, 31), at(ends)))
    for seconds in range(25, 90, 5):
        night.go(ends + seconds / 60)


def voids(night: Night, village: str) -> list[str]:
    """The statuses of the village's updates saying its time is no longer known."""
    return [m.status for m in night.daemon.store.messages()
            if m.recipient.startswith(f"village:{village}:") and m.purpose == "update"
            and VOID in m.body]


def test_power_on_within_the_hold_tells_only_that_power_is_back(held: Night) -> None:
    """The record ends, the meters' power-on 20 s later: each village the breaker alone
    concerns reads 恢复送电 and nothing else — the update saying its time is unknown, queued
    when the record ended, is superseded by it, never sent."""
    mark = record_ends(held)
    power_on(held)
    for village in BREAKER_ONLY:
        assert [p for p, _ in held.heard(village, mark)] == ["restored"], village
        assert voids(held, village) and set(voids(held, village)) == {"superseded"}, village


def test_meters_dark_past_the_hold_the_update_goes_once_after_it(held: Night) -> None:
    """The record ends and the meters stay dark: nothing within the hold; at its end the
    update goes, once, saying the time is unknown (and the record's cause, not the fuse's)."""
    mark = record_ends(held)
    for minute in (ENDS + 0.5, ENDS + 1, ENDS + 1.9):
        held.go(minute)
        for village in BREAKER_ONLY:
            assert held.heard(village, mark) == [], (minute, village)
    held.go(ENDS + 2.1)
    for minute in (ENDS + 3, ENDS + 10):
        held.go(minute)
    for village in BREAKER_ONLY:
        heard = held.heard(village, mark)
        assert [p for p, _ in heard] == ["update"], village
        assert VOID in heard[0][1] and "原因：大风，马集线911断路器跳闸" in heard[0][1]
    sent = [m for m in held.daemon.store.messages()
            if m.purpose == "update" and m.status == "sent" and VOID in m.body]
    assert sent and all(m.sent_at is not None and m.sent_at >= at(ENDS + 2) for m in sent)


def test_other_news_within_the_hold_supersedes_the_void_update(held: Night) -> None:
    """Within the hold the command centre sets a time for the incident: the villages read
    that time, not first that their time is unknown; the held update never goes."""
    mark = record_ends(held)
    steps = CommandSteps(held.daemon.lifecycle, held.daemon.processor, held.daemon.clock)
    (iid,) = {m.incident_id for m in held.daemon.store.messages()}
    held.go(ENDS + 0.5)
    steps.etr(iid, "2026-11-23 13:00", "ops")
    for minute in (ENDS + 1, ENDS + 3, ENDS + 10):
        held.go(minute)
    for village in BREAKER_ONLY:
        heard = held.heard(village, mark)
        assert [p for p, _ in heard] == ["update"], (village, heard)
        assert "13:00" in heard[0][1] and VOID not in heard[0][1], village
        assert set(voids(held, village)) == {"superseded"}, village


def test_hold_zero_tells_the_village_at_once_as_before(unheld: Night) -> None:
    """``notify.void_etr_hold_seconds: 0``: the update goes when the record ends, 恢复送电
    after it."""
    mark = record_ends(unheld)
    for village in BREAKER_ONLY:
        heard = unheld.heard(village, mark)
        assert [p for p, _ in heard] == ["update"] and VOID in heard[0][1], village
    power_on(unheld)
    for village in BREAKER_ONLY:
        assert [p for p, _ in unheld.heard(village, mark)] == ["update", "restored"], village


def test_a_time_told_that_has_passed_goes_void_under_the_same_hold(held: Night) -> None:
    """The record's time (12:00) passed while the meters stayed dark; the record ends at
    12:05 and the power-on comes 20 s later: the same rule — the village's time went void
    with the record — and the village reads only 恢复送电."""
    mark = record_ends(held, ends=125)
    power_on(held, ends=125)
    for village in BREAKER_ONLY:
        assert [p for p, _ in held.heard(village, mark)] == ["restored"], village
        assert set(voids(held, village)) == {"superseded"}, village


@dataclass(frozen=True)
class Row:
    """An outbox row as ordering reads it."""

    id: int
    purpose: str
    status: str = "pending"
    revision: int = 1
    incident_id: str = "INC-1"
    recipient: str = "village:V1:wecom:g1"


def test_a_held_update_holds_up_nothing_and_only_a_notice_of_state_supersedes_it() -> None:
    """The held update (latest-only, waiting) lets a later care list or progress notice go
    and is not superseded by them; a later update or 恢复送电 supersedes it."""
    held = Row(1, "update")
    care, progress = Row(2, "care", revision=2), Row(3, "progress_on_site", revision=2)
    plan = order([care, progress], [held, care, progress], {held.id})
    assert plan.ready == (2, 3) and plan.superseded == {}
    for later in (Row(4, "update", revision=3), Row(4, "restored", revision=3)):
        plan = order([later], [held, Row(2, "care", "sent", 2), later], {held.id})
        assert plan.ready == (4,) and plan.superseded == {1: 4}, later.purpose
    assert order([held], [held], {held.id}).ready == (1,)  # at the end of its hold
