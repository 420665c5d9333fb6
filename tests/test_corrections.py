"""The pure parts of the command centre's corrections and silences, table by table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from outage_sentinel.corrections import (
    CorrectionError,
    cancel_incident,
    exclude_areas,
    set_devices,
    set_etr,
)
from outage_sentinel.incidents import Estimate, Incident, plan_notices
from outage_sentinel.silences import Addressed, Silence, matching
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
TOPO = load_bundle(ROOT / "topology")
AREAS = ("T-MJ01-020", "T-MJ01-021", "T-MJ01-030")  # V035, V035, V036


def incident(**kw: object) -> Incident:
    est = Estimate(devices=(), probability=None, transformers=AREAS,
                   customers=TOPO.customers_of(AREAS), villages=tuple(TOPO.villages_of(AREAS)))
    inc = Incident(id="INC-1", feeder="MJ01", kind="fault", status="active", revision=3,
                   start=T0, etr=None, end=None, cause="", area_text="", members={},
                   estimate=est, notified_villages=("V035", "V036"), stage="confirmed",
                   scope={t: "reported" for t in AREAS})
    return replace(inc, **kw)  # type: ignore[arg-type]


def test_etr_set_wins_and_every_told_village_hears_it() -> None:
    before = incident()
    after = set_etr(before, T0 + timedelta(hours=3), T0 + timedelta(minutes=5))
    assert (after.etr, after.etr_set, after.revision) == (T0 + timedelta(hours=3),) * 2 + (4,)
    notices, _ = plan_notices(before, after, TOPO, timedelta(0))
    assert [(n.purpose, sorted(n.villages)) for n in notices] == [("update", ["V035", "V036"])]
    assert Incident.from_json(after.to_json()) == after


@pytest.mark.parametrize("etr, now, why", [
    (T0 - timedelta(hours=1), T0 - timedelta(hours=2), "before the outage started"),
    (T0 + timedelta(minutes=1), T0 + timedelta(hours=1), "has passed")])
def test_an_impossible_etr_is_refused(etr: datetime, now: datetime, why: str) -> None:
    with pytest.raises(CorrectionError, match=why):
        set_etr(incident(), etr, now)


def test_removed_village_hears_a_correction_and_stays_out() -> None:
    before = incident()
    after = exclude_areas(before, TOPO, ["T-MJ01-030"], T0)
    assert "T-MJ01-030" not in after.estimate.transformers and after.excluded == ("T-MJ01-030",)
    assert "V036" not in after.estimate.villages
    notices, after = plan_notices(before, after, TOPO, timedelta(0), "corrected")
    assert [(n.purpose, n.villages) for n in notices] == [("corrected", ("V036",))]
    with pytest.raises(CorrectionError, match="no area"):
        exclude_areas(after, TOPO, ["T-MJ01-020", "T-MJ01-021"], T0)
    with pytest.raises(CorrectionError, match="not in"):
        exclude_areas(after, TOPO, ["T-MJ01-001"], T0)


def test_a_village_that_keeps_an_area_off_hears_its_areas_now() -> None:
    """T-MJ01-021 taken out, T-MJ01-020 still off: V035 was told both, so it hears an update
    (its areas and households now), not a correction and not nothing."""
    before = incident()
    after = exclude_areas(before, TOPO, ["T-MJ01-021"], T0)
    notices, _ = plan_notices(before, after, TOPO, timedelta(0), "corrected")
    assert [(n.purpose, n.villages) for n in notices] == [("update", ("V035",))]


def test_a_device_set_names_the_fault_point_keeps_the_areas_and_tells_no_village() -> None:
    before = incident()
    after = set_devices(before, TOPO, ["RC-MJ01-2"], "board:alice", T0)
    assert (after.estimate.devices, after.estimate.probability) == (("RC-MJ01-2",), None)
    assert after.estimate.section[0] == "RC-MJ01-2" and after.revision == 4
    assert after.estimate.transformers == AREAS and after.device_set_by == "board:alice"
    assert plan_notices(before, after, TOPO, timedelta(0))[0] == []
    assert Incident.from_json(after.to_json()) == after
    # 前赵店村4# (reported off) is not below 南谢庄支线's fuse: the crew would miss its fault.
    with pytest.raises(CorrectionError, match="not below FU-MJ01-05: T-MJ01-030"):
        set_devices(before, TOPO, ["FU-MJ01-05"], "ops", T0)
    both = set_devices(before, TOPO, ["FU-MJ01-05", "FU-MJ01-06"], "ops", T0)
    assert both.fault_device == "FU-MJ01-05" and len(both.estimate.devices) == 2
    with pytest.raises(CorrectionError, match="planned work"):
        set_devices(incident(kind="planned"), TOPO, ["RC-MJ01-2"], "ops", T0)


def test_cancel_tells_everyone_told_and_needs_a_reason() -> None:
    before = incident()
    with pytest.raises(CorrectionError, match="reason"):
        cancel_incident(before, " ", T0)
    after = cancel_incident(before, "误报", T0)
    notices, _ = plan_notices(before, after, TOPO)
    assert [(n.purpose, set(n.villages)) for n in notices] == [("cancelled", {"V035", "V036"})]
    with pytest.raises(CorrectionError, match="cancelled"):
        set_etr(after, T0 + timedelta(hours=1), T0)


def silence(matcher: str = "feeder", value: str = "MJ01", force: bool = False,
            expired: datetime | None = None) -> Silence:
    return Silence(1, matcher, value, T0, T0 + timedelta(hours=2), "检修", "li",  # type: ignore[arg-type]
                   force, expired)


MSG = Addressed("liaison", "INC-1", "MJ01", "fault", "V035")


@pytest.mark.parametrize("s, msg, care, at, muted", [
    (silence(), MSG, False, T0 + timedelta(hours=1), True),
    (silence("village", "V035"), MSG, False, T0, True),
    (silence("incident", "INC-1"), MSG, False, T0, True),
    (silence("village", "V036"), MSG, False, T0, False),            # another village
    (silence(), MSG, False, T0 + timedelta(hours=2), False),        # ended
    (silence(expired=T0), MSG, False, T0 + timedelta(minutes=1), False),  # expired early
    (silence(), replace(MSG, audience="command"), False, T0, False),  # never the command centre
    (silence(), replace(MSG, audience="crew"), False, T0, False),     # nor crews
    (silence(), MSG, True, T0, False),                              # special care: not muted
    (silence(force=True), MSG, True, T0, True),                     # unless forced
    (silence(), replace(MSG, kind="planned"), True, T0, True),      # planned work: muted
])
def test_what_a_silence_mutes(s: Silence, msg: Addressed, care: bool, at: datetime,
                              muted: bool) -> None:
    assert (matching([s], msg, at, lambda _: care) is not None) is muted
