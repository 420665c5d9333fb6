"""Names several nodes share (``912断路器`` on two lines, ``王庄村1号台区`` and the village
王庄村 in two townships: :func:`tests.test_ref_names.shared_bundle`) where an operator or a
file names them: a close-out's device, the command centre's device and scope steps, an
operator's restoration, ``locate`` evidence, a ``localisation fit`` history case, a region's
feeders. Each means the one the context points at (the incident, the case's other
references); when the context does not tell them apart, the step is refused naming every one
with its feeder, never a guess (the wrong village told, the crew sent to the wrong line) and
never "not a device of the topology" for a name the bundle has."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import HistoryError, solved_case
from outage_sentinel.incidents import Incident
from outage_sentinel.lifecycle import LifecycleError, StepInputError, confirmed_devices
from outage_sentinel.localise import Evidence, localise
from outage_sentinel.locate import locate_case
from outage_sentinel.processing import restore_event
from outage_sentinel.region import Region, RegionError, RegionScope, resolve_region
from outage_sentinel.topology import Topology
from tests.conftest import T0
from tests.test_ref_names import ev, quiet_load, shared_bundle
from tests.test_shared_areas import feed, make_daemon

BREAKERS = "'912断路器' is shared by BRK-MJ02 (feeder MJ02), BRK-LH04 (feeder LH04): give the id"
AREAS = ("'王庄村1号台区' is shared by T-MJ02-001 (feeder MJ02), T-LH04-017 (feeder LH04): "
         "give the id")
VILLAGES = "'王庄村' is shared by villages V037 (王庄乡), V073 (西山乡): give the id"


@pytest.fixture
def shared(tmp_path: Path) -> Topology:
    return quiet_load(shared_bundle(tmp_path))


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, quiet_load(shared_bundle(tmp_path)))
    yield d
    d.close()


@pytest.fixture
def steps(daemon: Daemon) -> CommandSteps:
    return CommandSteps(daemon.lifecycle, daemon.processor, daemon.clock)


def on_shimen(d: Daemon) -> Incident:
    """An outage of 王庄村1号台区 on 10kV石门线 (黄崖村's area T-LH04-017, feeder LH04)."""
    feed(d, 1, ev("王庄村1号台区", feeder="10kV石门线",
                  expected_restoration=T0 + timedelta(hours=4)))
    (row,) = d.store.load_incidents(open_only=False)
    inc = Incident.from_json(row["state"])
    assert inc.feeder == "LH04" and "T-LH04-017" in inc.off
    return inc


def escaped(message: str) -> str:
    return message.replace("(", r"\(").replace(")", r"\)")


# -- devices: the close-out and the command centre's device step -------------------------------

def test_a_shared_device_name_alone_is_refused_naming_each_with_its_feeder(
        shared: Topology) -> None:
    with pytest.raises(StepInputError, match=escaped(BREAKERS)):
        confirmed_devices(shared, "912断路器")
    assert confirmed_devices(shared, "BRK-LH04") == ["BRK-LH04"]


def test_the_device_step_takes_the_shared_name_on_the_incidents_line(
        daemon: Daemon, steps: CommandSteps) -> None:
    inc = on_shimen(daemon)
    after = steps.device(inc.id, "912断路器", "ops")
    assert after.device_set == ("BRK-LH04",)


def test_the_close_out_takes_the_shared_name_on_the_incidents_line(
        daemon: Daemon, steps: CommandSteps) -> None:
    inc = on_shimen(daemon)
    steps.cancel(inc.id, "误报", "ops")
    daemon.lifecycle.close(inc.id, "ops", "设备故障", device="912断路器")
    assert daemon.store.confirmed_devices()[inc.id] == ["BRK-LH04"]


# -- areas and villages: the command centre's scope steps --------------------------------------

def test_a_shared_area_or_village_name_without_an_incident_is_refused(
        steps: CommandSteps) -> None:
    with pytest.raises(StepInputError, match=escaped(AREAS)):
        steps.areas("王庄村1号台区")
    with pytest.raises(StepInputError, match=escaped(VILLAGES)):
        steps.areas("王庄村")
    assert steps.areas("V073") == ["T-LH04-017", "T-LH04-018"]


def test_a_shared_area_or_village_name_means_the_incidents(
        daemon: Daemon, steps: CommandSteps) -> None:
    inc = on_shimen(daemon)
    assert steps.areas("王庄村1号台区", inc) == ["T-LH04-017"]
    assert steps.areas("王庄村", inc) == ["T-LH04-017", "T-LH04-018"]
    after = steps.add(inc.id, "王庄村2号台区", "ops")
    assert "T-LH04-018" in after.off and "T-MJ02-002" not in after.off


def test_a_call_opened_on_a_line_places_a_shared_area_name_on_it(
        steps: CommandSteps) -> None:
    inc = steps.open("ops", feeder="10kV王庄线", transformers="王庄村1号台区")
    assert "T-MJ02-001" in inc.off and "T-LH04-017" not in inc.off


# -- the operator's restoration ------------------------------------------------------------------

def test_a_restoration_naming_a_shared_area_restores_the_incidents(daemon: Daemon) -> None:
    inc = on_shimen(daemon)
    event = restore_event(inc, daemon.topology, daemon.processor.tz, "ops", "王庄村1号台区",
                          None, "", daemon.clock())
    assert isinstance(event, OutageEvent) and event.transformers == ("T-LH04-017",)
    both = replace(inc, estimate=replace(inc.estimate, transformers=(
        *inc.estimate.transformers, "T-MJ02-001")))
    with pytest.raises(StepInputError, match=escaped(AREAS)):
        restore_event(both, daemon.topology, daemon.processor.tz, "ops", "王庄村1号台区",
                      None, "", daemon.clock())
    with pytest.raises(LifecycleError, match="'王庄村3号台区' is not an affected"):
        restore_event(inc, daemon.topology, daemon.processor.tz, "ops", "王庄村3号台区",
                      None, "", daemon.clock())


# -- locate evidence and history cases -------------------------------------------------------

def test_evidence_naming_a_shared_area_means_the_one_on_the_cases_line(
        shared: Topology) -> None:
    result = localise(shared, Evidence(dead=frozenset({"王庄村1号台区", "T-LH04-018"})))
    assert result.unknown == [] and result.ambiguous == []
    assert result.best is not None and result.best.feeders == ("LH04",)
    assert "T-LH04-017" in result.best.transformers


def test_evidence_a_shared_name_alone_cannot_place_is_reported_naming_both(
        shared: Topology) -> None:
    body = locate_case(shared, {"id": "c1", "dead": ["王庄村1号台区"],
                                "open_devices": ["912断路器"]}, 1)
    assert body["unknown"] == [] and body["hypotheses"] == []
    assert body["ambiguous"] == [AREAS, BREAKERS]
    assert "ambiguous" not in locate_case(shared, {"dead": ["T-LH04-017"]}, 2)


def test_a_history_case_places_shared_names_by_its_other_references(
        shared: Topology) -> None:
    case = solved_case(shared, Evidence(dead=frozenset({"T-LH04-017", "王庄村2号台区"})),
                       ["912断路器"], "h line 1")
    assert case.truth == ("BRK-LH04",) and case.dead == {"T-LH04-017", "T-LH04-018"}
    with pytest.raises(HistoryError, match="h line 2: truth device " + escaped(BREAKERS)):
        solved_case(shared, Evidence(dead=frozenset({"王庄村1号台区"})), ["912断路器"],
                    "h line 2")
    with pytest.raises(HistoryError, match="h line 3: area " + escaped(AREAS)):
        solved_case(shared, Evidence(dead=frozenset({"王庄村1号台区"}),
                                     alive=frozenset({"T-MJ02-002"})), ["FU-LH04-01"],
                    "h line 3")


# -- regions --------------------------------------------------------------------------------

def test_a_region_naming_a_feeder_name_two_lines_share_is_refused(tmp_path: Path) -> None:
    topo = quiet_load(shared_bundle(tmp_path, feeder_name=True))
    with pytest.raises(RegionError, match="'10kV王庄线' is the name of feeders MJ02, LH04"):
        resolve_region("east", [], ["10kV王庄线"], topo)
    assert resolve_region("east", [], ["LH04"], topo).feeders == frozenset({"LH04"})


def test_a_region_leaves_out_a_shared_area_name_none_of_whose_areas_it_serves(
        shared: Topology) -> None:
    scope = RegionScope(Region("east", frozenset({"CG01"})), shared)
    kept = scope.event(ev("T-CG01-001", "王庄村1号台区"))
    assert kept is not None and kept.transformers == ("T-CG01-001",)
    west = RegionScope(Region("west", frozenset({"LH04", "CG01"})), shared)
    kept = west.event(ev("T-CG01-001", "王庄村1号台区"))
    assert kept is not None and kept.transformers == ("T-CG01-001", "王庄村1号台区")
