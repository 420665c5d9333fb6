"""The weather of a close-out: the daemon keeps the window an estimate was made in, the history
carries it, and the fit learns the storm windows' calibration apart from the calm ones'
(docs/localisation.md: "calibration per window")."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from outage_sentinel.config import ConfigError, load_localisation
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import (
    MIN_MAP_CASES,
    calibration_map,
    downstream,
    expected_calibration_error,
    history_case,
    keyed_maps,
)
from outage_sentinel.incidents import Incident, apply_event, resolve_event
from outage_sentinel.lifecycle import incident_columns
from outage_sentinel.localise import (
    Evidence,
    FaultContext,
    LocaliserParams,
    calibrated,
    calibration_for,
    localise,
    window_of,
)
from outage_sentinel.locate import context_of
from outage_sentinel.refit_job import RefitJob
from outage_sentinel.store import Store
from tests.test_fitting import DEVICES, TOPOLOGY

STORM = FaultContext(storm=True)
NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def honest(rng: random.Random, n: int, key: str) -> list[tuple[str, float, bool]]:
    """Answers whose stated probability is how often they are right."""
    out = []
    for _ in range(n):
        p = rng.uniform(0.3, 1.0)
        out.append((key, p, rng.random() < p))
    return out


def test_the_storm_calibration_is_learnt_apart_from_the_calm_one() -> None:
    # Calm answers are honest; in storms a one-device answer stated at ~0.85 is right 30 % of
    # the time (a second fault whose reports were all lost). One pooled map would drag the
    # calm answers down with it; a map per window and answer size leaves them alone.
    rng = random.Random(3)
    keyed = honest(rng, 600, "calm/one") + honest(rng, 200, "storm/several")
    keyed += [("storm/one", p, rng.random() < 0.3)
              for p in (rng.uniform(0.8, 0.9) for _ in range(200))]
    rng.shuffle(keyed)
    pooled = calibration_map([(p, ok) for _, p, ok in keyed])
    params = LocaliserParams(calibration=pooled, calibration_maps=keyed_maps(keyed, pooled))
    storm_one = calibration_for(params, "storm/one")
    assert calibrated(storm_one, 0.85) == pytest.approx(0.3, abs=0.1)
    after = [(calibrated(calibration_for(params, k), p), ok) for k, p, ok in keyed]
    calm = [(calibrated(calibration_for(params, k), p), ok) for k, p, ok in keyed
            if k.startswith("calm")]
    assert expected_calibration_error(after) < 0.05
    assert expected_calibration_error(calm) < 0.05
    assert calibrated(calibration_for(params, "calm/one"), 0.85) > 0.75  # not dragged down


def test_a_window_the_history_barely_saw_keeps_the_pooled_map() -> None:
    rng = random.Random(4)
    keyed = honest(rng, 400, "calm/one")
    keyed += [("storm/one", 0.85, False)] * (MIN_MAP_CASES - 1)
    pooled = calibration_map([(p, ok) for _, p, ok in keyed])
    maps = dict(keyed_maps(keyed, pooled))
    assert "storm" not in maps and "storm/one" not in maps


def test_the_localiser_states_the_map_of_its_window() -> None:
    ev = Evidence(dead=frozenset(downstream(TOPOLOGY, DEVICES[3])))
    halve = ((0.0, 0.0), (1.0, 0.5))
    params = LocaliserParams(calibration_maps=(("storm", halve),))
    for context, factor in ((None, 1.0), (STORM, 0.5)):
        raw = localise(TOPOLOGY, ev, None, context).best
        mapped = localise(TOPOLOGY, ev, params, context).best
        assert raw is not None and mapped is not None and mapped.devices == raw.devices
        assert mapped.probability == pytest.approx(raw.probability * factor)
    # Without a declaration the county's own count decides the window.
    base = LocaliserParams()
    assert window_of(base, FaultContext(faults_elsewhere=40, devices_elsewhere=1000)) == "storm"
    assert window_of(base, FaultContext(faults_elsewhere=0, devices_elsewhere=5000)) == "calm"
    assert window_of(base, FaultContext()) == "calm"


def _incident(k: int, device: str, estimator: BayesEstimator, rng: random.Random) -> Incident:
    reported = [a for a in downstream(TOPOLOGY, device) if rng.random() < 0.5] or \
        downstream(TOPOLOGY, device)[:1]
    event = OutageEvent(source="feed", event_id=f"E{k}", kind="fault", status="active",
                        start=NOW, transformers=tuple(reported))
    return apply_event(None, event, resolve_event(TOPOLOGY, event), TOPOLOGY, estimator, NOW,
                       lambda: f"INC-{k}")


def test_a_close_out_keeps_the_weather_its_estimate_was_made_in() -> None:
    county = FaultContext(storm=True, faults_elsewhere=12, devices_elsewhere=300)
    inc = _incident(1, DEVICES[2], BayesEstimator().within(county), random.Random(1))
    state = Incident.from_json(inc.to_json()).to_json()  # as stored and read back
    case = history_case(inc.id, state, [DEVICES[2]])
    assert context_of(case, 1) == county
    calm = _incident(2, DEVICES[2], BayesEstimator(), random.Random(1))
    case = history_case(calm.id, calm.to_json(), [DEVICES[2]])
    assert context_of(case, 1) == FaultContext() and "storm" not in case
    # An incident stored before the estimate kept its weather reads as a calm window.
    old = calm.to_json()
    del old["estimate"]["context"]
    assert Incident.from_json(old).estimate.context == {}


def test_the_refit_localises_each_close_out_in_its_own_window(store: Store) -> None:
    rng = random.Random(8)
    job_estimator = BayesEstimator()
    job = RefitJob(store, lambda: TOPOLOGY, job_estimator, LocaliserParams())
    storms = 0
    for k in range(30):
        in_storm = k % 3 == 0
        storms += in_storm
        estimator = BayesEstimator().within(STORM) if in_storm else BayesEstimator()
        device = rng.choice(DEVICES)
        inc = _incident(k, device, estimator, rng)
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, NOW))
            store.log_in(conn, inc.id, NOW, "closed", "zhang", "", {"device": device})
    report = job.run_once(NOW)
    assert report is not None and report.figures["storm_cases"] == storms == 10


def test_a_parameters_file_carries_the_maps_per_window(tmp_path: Path) -> None:
    good = tmp_path / "p.yaml"
    good.write_text(yaml.safe_dump({"calibration_maps": {"storm/one": [[0.0, 0.0],
                                                                        [0.9, 0.4]]}}))
    params = load_localisation(good).to_params()
    assert calibrated(calibration_for(params, "storm/one"), 0.9) == pytest.approx(0.4)
    assert calibration_for(params, "calm/one") == ()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"calibration_maps": {"storm": [[0.5, 0.9], [0.6, 0.2]]}}))
    with pytest.raises(ConfigError) as info:
        load_localisation(bad)
    assert "calibration_maps.storm" in str(info.value)
