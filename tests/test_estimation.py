"""The daemon's estimator: which inferred areas join an incident (and whose villages hear of it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.incidents import Evidence
from outage_sentinel.topology import Topology, load_bundle
from tests.e2e_helpers import ROOT, make_config


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


def test_a_lone_report_on_the_main_line_infers_no_village_elsewhere(demo: Topology) -> None:
    """T-CG01-012 hangs off the main line. One report from it is best explained (at ~25 %) by
    a silent fuse on another branch and a false report: a guess, whose areas must not become
    the incident's, nor their village (V001) hear it may be off."""
    est = BayesEstimator()(demo, Evidence(dead=frozenset({"T-CG01-012"})))
    assert est.probability is not None and est.probability < 0.5
    assert est.devices  # the command centre still sees the localiser's best guess
    assert "V001" not in est.villages
    assert not set(est.transformers) & {"T-CG01-006", "T-CG01-007"}


def test_areas_the_localiser_is_sure_of_join_the_estimate(demo: Topology) -> None:
    est = BayesEstimator()(demo, Evidence(dead=frozenset({"T-CG01-008", "T-CG01-009",
                                                           "T-CG01-010"})))
    assert est.devices == ("FU-CG01-02",) and est.probability is not None
    assert est.probability > 0.9
    assert set(est.transformers) == {"T-CG01-008", "T-CG01-009", "T-CG01-010", "T-CG01-011"}
    assert est.villages == ("V002",)
    assert est.customers == demo.customers_of(est.transformers)


def test_the_threshold_is_the_operators(demo: Topology) -> None:
    # one report under FU-CG01-01 (four areas, 0.38): its neighbours join at 0.2, not at 0.5
    ev = Evidence(dead=frozenset({"T-CG01-002"}))
    assert "T-CG01-003" in BayesEstimator(area_min_probability=0.2)(demo, ev).transformers
    assert "T-CG01-003" not in BayesEstimator()(demo, ev).transformers


@pytest.mark.parametrize("threshold", [0.5, 0.2, 0.01])
def test_no_village_hears_of_an_outage_nothing_from_its_region_reported(
        demo: Topology, threshold: float) -> None:
    # the silent-fuse guess for a lone report on the main line (FU-CG01-01-1, T-CG01-006/007,
    # nothing heard from them): whatever the operator's threshold, its areas are not told
    ev = Evidence(dead=frozenset({"T-CG01-012"}))
    est = BayesEstimator(area_min_probability=threshold)(demo, ev)
    assert est.devices == ("FU-CG01-01-1",)  # the command centre still sees the guess
    assert not set(est.transformers) & {"T-CG01-006", "T-CG01-007"} and "V001" not in est.villages


def test_a_lone_area_off_beside_one_on_does_not_alarm_a_silent_fuse_elsewhere() -> None:
    # a 5-area feeder: T1 reported off, T2 (same fuse) read on. The localiser's best answer is
    # FU2 (T4, T5: nothing heard) at 0.99 with T1's report false; V2 and V3 are not told.
    from tests.conftest import build_grid

    grid = build_grid()
    est = BayesEstimator()(grid, Evidence(dead=frozenset({"T1"}), alive=frozenset({"T2"})))
    assert est.devices == ("FU2",) and est.probability is not None and est.probability > 0.9
    assert not set(est.transformers) & {"T4", "T5"}
    assert not set(est.villages) & {"V2", "V3"}


def test_the_daemon_tells_only_the_village_that_reported(tmp_path: Path) -> None:
    record = {"at": 0, "event_id": "ONE", "kind": "fault", "status": "active",
              "start_offset": -120, "etr_offset": None, "feeder": "CG01", "device": None,
              "transformers": ["T-CG01-012"], "area_text": "", "cause": ""}
    (tmp_path / "one.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    cfg = make_config(tmp_path, sources=[{"name": "f", "type": "replay",
                                          "scenario": str(tmp_path / "one.jsonl"),
                                          "speed": 1000.0, "interval_seconds": 0.5}])
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg),
                            "run", "--once"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
    sent = [json.loads(line) for line in (tmp_path / "state" / "notifications.jsonl")
            .read_text(encoding="utf-8").splitlines()]
    villages = {m["key"].split("/")[2].split(":")[1] for m in sent
                if m["key"].split("/")[2].startswith("village:")}
    assert villages == {"V003"}
