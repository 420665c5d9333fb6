"""A storm night on one feeder, through the daemon (in process: the demo bundle, SQLite, a
``file_drop`` AMI source of meters' reports, the outage system's records): each village is
told what concerns it — its own records' cause, time and devices — never another branch's.

10kV马集线 (MJ01): breaker BRK-MJ01 feeds 马集村 (T-MJ01-001..008), 北董寨村 (009..015, below
fuse FU-MJ01-03), 小卢堤村 (016..018), 南谢庄村 (019..026; 020..026 below fuse FU-MJ01-05)
and 前赵店村 (027..031)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Incident, off_since_back
from tests.test_daemon_ami_truth import NOW, Run, report

OFF, ON = "3.26.0.85", "3.26.0.216"
BREAKER_CAUSE = "大风，马集线911断路器跳闸"
FUSE_CAUSE = "南谢庄支线熔断器熔断"
#: The villages the breaker's record alone concerns (none of their areas is below the fuse).
BREAKER_ONLY = {"V032": "马集村", "V033": "北董寨村", "V034": "小卢堤村", "V036": "前赵店村"}


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def areas(first: int, last: int) -> list[str]:
    return [f"T-MJ01-{i:03d}" for i in range(first, last + 1)]


def meters(code: str, areas_: list[str], when: datetime) -> list[dict[str, Any]]:
    """Five meters of each area reporting power off (``OFF``) or on (``ON``) at ``when``."""
    return [report(f"M-{a}-{i:03d}", code, when) for a in areas_ for i in range(1, 6)]


def record(event_id: str, device: str, areas_: list[str], cause: str, start: datetime,
           etr: datetime, status: str = "active", end: datetime | None = None) -> OutageEvent:
    return OutageEvent(source="oms", event_id=event_id, kind="fault", status=status,
                       signal="notice", start=start, end=end, expected_restoration=etr,
                       device=device, transformers=tuple(areas_), cause=cause)


def breaker(status: str = "active", end: datetime | None = None) -> OutageEvent:
    return record("A1", "BRK-MJ01", areas(1, 31), BREAKER_CAUSE, at(0), at(120), status, end)


def fuse(status: str = "active", end: datetime | None = None) -> OutageEvent:
    return record("A2", "FU-MJ01-05", areas(20, 26), FUSE_CAUSE, at(2), at(150), status, end)


class Night(Run):
    """The daemon on the test's clock; every due message sent after each step."""

    def go(self, minutes: float, records: list[dict[str, Any]] | None = None,
           oms: list[OutageEvent] | None = None) -> int:
        """One step at ``NOW + minutes``, its messages sent; returns how many messages there
        were before it (:meth:`heard` since then)."""
        before = len(self.daemon.store.messages())
        self.step(at(minutes), records, oms)
        while self.daemon.deliverer.run_once(self.now):
            pass
        return before

    def settle(self, minutes: float) -> None:
        """A step once the AMI screen released the power-ons it had at ``NOW + minutes``
        (it holds one until the area stayed on: ``restore_settle_seconds``)."""
        screen = self.daemon.config.ami_screen
        held = getattr(screen, "restore_settle_seconds", 0) + screen.lateness_seconds
        self.go(minutes + held / 60 + 1)

    def heard(self, village: str, since: int = 0) -> list[tuple[str, str]]:
        """(purpose, body) of the notices sent to ``village``'s first recipient."""
        rows = [m for m in self.daemon.store.messages()[since:]
                if m.audience == "liaison" and m.status == "sent"
                and m.recipient.startswith(f"village:{village}:") and m.purpose != "care"]
        first = rows[0].recipient if rows else ""
        return [(m.purpose, m.body) for m in rows if m.recipient == first]


@pytest.fixture
def night(tmp_path: Path) -> Iterator[Night]:
    n = Night(tmp_path)
    yield n
    n.daemon.close()


def storm(night: Night) -> None:
    """The breaker trips and, below it, the 南谢庄 fuse blows; every village is told."""
    night.go(0.2, meters(OFF, areas(1, 31), at(0)), oms=[breaker(), fuse()])
    night.go(3)
    for village in (*BREAKER_ONLY, "V035"):
        assert [p for p, _ in night.heard(village)] == ["outage"], village


def test_a_village_whose_record_ended_is_not_told_another_branchs_cause(night: Night) -> None:
    """The breaker's record closes one poll before the meters' power-on arrives: the villages
    it alone concerns may hear that their time is void (恢复时间待定: the record's promise
    ended with it, and their meters still say dark), never the fuse's cause; then that their
    power is back."""
    storm(night)
    mark = night.go(30, oms=[breaker("restored", at(30)), fuse()])
    night.go(30.5, meters(ON, areas(1, 19) + areas(27, 31), at(30)))
    night.settle(30.5)
    for village in BREAKER_ONLY:
        heard = night.heard(village, mark)
        assert all(FUSE_CAUSE not in body for _, body in heard), (village, heard)
        assert all(f"原因：{BREAKER_CAUSE}" in body for p, body in heard if p == "update")
        assert [p for p, _ in heard][-1] == "restored", (village, heard)


def test_a_village_told_of_a_new_time_after_its_record_ended_hears_its_own_cause(
        night: Night) -> None:
    """The breaker's record closed, the meters not back yet, the command centre sets a time
    for the incident: every village hears it, each with its own record's cause — the
    villages the breaker alone concerns never the fuse's."""
    storm(night)
    mark = night.go(30, oms=[breaker("restored", at(30)), fuse()])
    steps = CommandSteps(night.daemon.lifecycle, night.daemon.processor, night.daemon.clock)
    (iid,) = {m.incident_id for m in night.daemon.store.messages()}
    steps.etr(iid, "2026-11-23 13:00", "ops")
    night.go(31)
    for village in BREAKER_ONLY:
        updates = [body for p, body in night.heard(village, mark) if p == "update"]
        assert updates and "13:00" in updates[-1], (village, updates)
        assert all(f"原因：{BREAKER_CAUSE}" in u for u in updates), (village, updates)
    updates = [body for p, body in night.heard("V035", mark) if p == "update"]
    assert updates and "13:00" in updates[-1]
    assert all(f"原因：{FUSE_CAUSE}" in u for u in updates), updates


def second_fault(night: Night) -> tuple[Incident, Incident, int]:
    """After the storm, the breaker's record ended and its villages' meters back, a fuse
    blows under 北董寨村 an hour later: the incident before and after, and the mark."""
    storm(night)
    night.go(30, oms=[breaker("restored", at(30)), fuse()])
    night.go(30.5, meters(ON, areas(1, 19) + areas(27, 31), at(30)))
    night.settle(30.5)
    assert [p for p, _ in night.heard("V033")][-1] == "restored"
    (before,) = incidents(night)
    a3 = record("A3", "FU-MJ01-03", areas(9, 15), "北董寨支线熔断器熔断", at(65), at(180))
    mark = night.go(65.2, meters(OFF, areas(9, 15), at(65)), oms=[a3])
    night.go(68)
    (after,) = incidents(night)
    return before, after, mark


def incidents(night: Night) -> list[Incident]:
    return [Incident.from_json(r["state"])
            for r in night.daemon.store.load_incidents(open_only=False)]


def test_a_second_fault_names_its_own_device_not_the_breaker_that_reclosed(
        night: Night) -> None:
    """The devices a village is told are its open records' (the estimate's fault point
    among them): the breaker's record ended 35 minutes before and its meters came back."""
    _, after, mark = second_fault(night)
    assert "BRK-MJ01" not in after.told_devices["V033"]
    (outage,) = [body for p, body in night.heard("V033", mark) if p == "outage"]
    assert "因北董寨支线熔断器熔断" in outage
    assert "马集线911断路器" not in outage, outage


def test_a_second_fault_after_a_true_restoration_is_a_new_outage_not_a_correction(
        night: Night) -> None:
    """The village's power came back (its meters said so) before the fuse blew: what it
    hears is of another outage (再次停电), not a correction (更正) of a mistake."""
    before, after, mark = second_fault(night)
    assert off_since_back(before, after, "V033", night.daemon.topology)


def test_a_second_fault_after_a_true_restoration_is_not_told_as_a_correction(
        night: Night) -> None:
    _, _, mark = second_fault(night)
    (outage,) = [body for p, body in night.heard("V033", mark) if p == "outage"]
    assert "更正" not in outage, outage
