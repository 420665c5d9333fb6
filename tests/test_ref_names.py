"""Transformer areas, devices and lines a record names by reference (``pubTranName``,
``transformers``, ``device``, ``lineName``): written as the source writes them (full-width
digits, spaces, "1#公变") they mean the same area as the bundle's name, and a name several
areas, devices or feeders share means the one on the record's line, never the first in the
bundle: a guess tells the wrong village and sends the crew to the wrong line."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Incident, record_lines, resolve_event
from outage_sentinel.topology import Topology, load_bundle
from outage_sentinel.topology.bundle import TopologyWarning
from tests.conftest import T0
from tests.e2e_helpers import make_config
from tests.test_cli import cli
from tests.test_shared_areas import feed, make_daemon, told

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = ROOT / "topology"


def ev(*areas: str, **kw: object) -> OutageEvent:
    fields: dict[str, object] = {"source": "feed", "event_id": "R1", "kind": "fault",
                                 "status": "active", "start": T0, "transformers": areas, **kw}
    return OutageEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(DEMO_BUNDLE)


def shared_bundle(tmp: Path, *, feeder_name: bool = False) -> Path:
    """The demo bundle with 黄崖村 (V073, 西山乡, on 10kV石门线 LH04) renamed 王庄村 like V037
    (王庄乡, on 10kV王庄线 MJ02): 王庄村1号台区 and 2号台区 are two areas each; the lines'
    breakers are both called 912断路器; with ``feeder_name`` LH04 is shown as 10kV王庄线 too."""
    out = tmp / "bundle"
    shutil.copytree(DEMO_BUNDLE, out)
    nodes = (out / "nodes.csv").read_text(encoding="utf-8")
    for old, new in [("黄崖村1#公变", "王庄村1号台区"), ("黄崖村2#公变", "王庄村2号台区"),
                     ("王庄线912断路器", "912断路器"), ("石门线914断路器", "912断路器")]:
        assert old in nodes
        nodes = nodes.replace(old, new)
    if feeder_name:
        nodes = nodes.replace("LH04,0,,,36.427928,115.343550,柳河变,10kV石门线,",
                              "LH04,0,,,36.427928,115.343550,柳河变,10kV王庄线,")
    (out / "nodes.csv").write_text(nodes, encoding="utf-8")
    villages = (out / "villages.csv").read_text(encoding="utf-8")
    (out / "villages.csv").write_text(villages.replace("V073,黄崖村,", "V073,王庄村,"),
                                      encoding="utf-8")
    return out


def quiet_load(bundle: Path) -> Topology:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TopologyWarning)
        return load_bundle(bundle)


@pytest.fixture
def shared(tmp_path: Path) -> Topology:
    return quiet_load(shared_bundle(tmp_path))


# -- names written the source's way ------------------------------------------------------------

@pytest.mark.parametrize("ref", ["建设路社区１号台区", "建设路社区 1号台区", "建设路社区1#公变",
                                 "10kV建设路社区1号台区", "建设路社区１＃公变"])
def test_an_area_reference_is_read_in_its_normalised_form(demo: Topology, ref: str) -> None:
    r = resolve_event(demo, ev(ref, feeder="10kV城东线"))
    assert r.transformers == ("T-CG01-001",)
    assert r.unknown == () and r.possible == () and r.feeder == "CG01"


def test_areas_in_one_reference_separated_by_spaces_are_each_placed(demo: Topology) -> None:
    r = resolve_event(demo, ev("建设路社区1号台区 T-CG01-002  建设路社区３号台区"))
    assert r.transformers == ("T-CG01-001", "T-CG01-002", "T-CG01-003")
    assert r.unknown == ()


def test_a_reference_naming_nothing_known_stays_unknown(demo: Topology) -> None:
    r = resolve_event(demo, ev("不存在村9号台区", "建设路社区２号台区", feeder="10kV城东线"))
    assert r.transformers == ("T-CG01-002",)
    assert r.unknown == ("不存在村9号台区",)


def test_a_reference_is_never_placed_by_a_prefix_of_it(demo: Topology) -> None:
    # "建设路社区1号台区9" is not 建设路社区1号台区 with a word after it: it names no area.
    r = resolve_event(demo, ev("建设路社区1号台区9", "T-CG01-0019 建设路社区２号台区"))
    assert r.transformers == ("T-CG01-002",) and r.possible == ()
    assert r.unknown == ("建设路社区1号台区9", "T-CG01-0019")


# -- names several areas, devices or lines share ----------------------------------------------

def test_a_shared_area_name_means_the_one_on_the_records_line(shared: Topology) -> None:
    r = resolve_event(shared, ev("王庄村1号台区", feeder="10kV石门线"))
    assert r.transformers == ("T-LH04-017",) and r.feeder == "LH04"
    r = resolve_event(shared, ev("王庄村1号台区", feeder="10kV王庄线"))
    assert r.transformers == ("T-MJ02-001",) and r.feeder == "MJ02"


def test_a_shared_area_name_without_a_line_is_only_possibly_off(shared: Topology) -> None:
    r = resolve_event(shared, ev("王庄村1号台区"))
    assert r.transformers == ()
    assert set(r.possible) == {"T-MJ02-001", "T-LH04-017"}
    assert r.feeder is None and r.unknown == ()


def test_a_shared_device_name_means_the_one_on_the_records_line(shared: Topology) -> None:
    assert shared.resolve("912断路器") is None
    assert shared.named("912断路器") == ("BRK-MJ02", "BRK-LH04")
    r = resolve_event(shared, ev(device="912断路器", feeder="10kV石门线"))
    assert r.device == "BRK-LH04" and r.feeder == "LH04" and r.unknown == ()
    r = resolve_event(shared, ev(device="912断路器"))
    assert r.device is None and r.unknown == ("912断路器",)


def test_a_shared_line_name_is_settled_by_the_records_areas(tmp_path: Path) -> None:
    topo = quiet_load(shared_bundle(tmp_path, feeder_name=True))
    assert record_lines(topo, "10kV王庄线") == ("MJ02", "LH04")
    assert record_lines(topo, "10KV王庄线") == ("MJ02", "LH04")
    # Only the line: no line is guessed.
    r = resolve_event(topo, ev(feeder="10kV王庄线"))
    assert r.feeder is None and r.unknown == ()
    # An area of one of the lines places the record on it.
    r = resolve_event(topo, ev("T-LH04-001", feeder="10kV王庄线"))
    assert r.feeder == "LH04" and r.transformers == ("T-LH04-001",)
    # A name both lines have: each area only possibly off.
    r = resolve_event(topo, ev("王庄村1号台区", feeder="10kV王庄线"))
    assert r.transformers == () and set(r.possible) == {"T-MJ02-001", "T-LH04-017"}


# -- the bundle check --------------------------------------------------------------------------

def test_loading_warns_naming_shared_area_and_feeder_names(tmp_path: Path) -> None:
    with pytest.warns(TopologyWarning) as caught:
        load_bundle(shared_bundle(tmp_path, feeder_name=True))
    texts = [str(w.message) for w in caught]
    assert any("(王庄村1号台区)" in t and "T-MJ02-001 (row 498)" in t
               and "T-LH04-017 (row 924)" in t for t in texts)
    assert any("(10kV王庄线)" in t and "MJ02 (row 480)" in t and "LH04 (row 872)" in t
               for t in texts)


def test_check_warns_about_shared_names_and_still_passes(tmp_path: Path) -> None:
    bundle = shared_bundle(tmp_path, feeder_name=True)
    r = cli("--config", str(make_config(tmp_path, topology=str(bundle))), "check")
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stdout.splitlines() if line.startswith("note: ")]
    assert any("王庄村1号台区" in n and "T-MJ02-001" in n for n in notes), r.stdout
    assert any("10kV王庄线" in n for n in notes), r.stdout


# -- through the daemon's processing ----------------------------------------------------------

@pytest.fixture
def demo_daemon(tmp_path: Path, db_url: str, demo: Topology) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, demo)
    yield d
    d.close()


@pytest.fixture
def shared_daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, quiet_load(shared_bundle(tmp_path)))
    yield d
    d.close()


def only_incident(d: Daemon) -> Incident:
    (row,) = d.store.load_incidents(open_only=False)
    return Incident.from_json(row["state"])


def test_the_village_is_told_of_an_area_named_with_a_full_width_digit(
        demo_daemon: Daemon) -> None:
    feed(demo_daemon, 1, ev("建设路社区１号台区", feeder="10kV城东线",
                            expected_restoration=T0 + timedelta(hours=4)))
    inc = only_incident(demo_daemon)
    assert ("V001", "outage", inc.id) in told(demo_daemon)
    assert inc.feeder == "CG01" and "T-CG01-001" in inc.off


def test_a_shared_area_name_tells_the_village_on_the_records_line(
        shared_daemon: Daemon) -> None:
    feed(shared_daemon, 1, ev("王庄村1号台区", feeder="10kV石门线",
                              expected_restoration=T0 + timedelta(hours=4)))
    inc = only_incident(shared_daemon)
    assert inc.feeder == "LH04" and "T-LH04-017" in inc.off and "T-MJ02-001" not in inc.off
    villages = {v for v, purpose, _ in told(shared_daemon) if purpose == "outage"}
    assert villages == {"V073"}


@pytest.mark.parametrize("line", ["马集变10kV马集线", "10kV马集线（马集变）", "10kV马集线911"])
def test_a_records_line_with_its_substation_or_switch_number_is_placed(demo: Topology,
                                                                       line: str) -> None:
    """Outage systems write the line as the dispatcher's log does; the record's line was
    unknown (quarantined as an unknown reference) unless spelt as the bundle spells it."""
    assert record_lines(demo, line) == ("MJ01",)
    resolved = resolve_event(demo, ev(feeder=line, area_text="前赵店村全村"))
    assert resolved.feeder == "MJ01" and line not in resolved.unknown
    # Another substation's line of that name is none of this one's.
    assert record_lines(demo, "柳河变10kV马集线") == ()
