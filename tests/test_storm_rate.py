"""The storm's fault rate learnt from how many devices its close-outs found per feeder
(outage_sentinel/storm_rate.py; docs/localisation.md, "Learning from close-outs", the storm's
fault rate)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outage_sentinel.config import load_localisation
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import downstream, fit, fit_with_calibration
from outage_sentinel.incidents import apply_event, resolve_event
from outage_sentinel.lifecycle import incident_columns
from outage_sentinel.localise import Evidence, FaultContext, LocaliserParams, localise
from outage_sentinel.refit_job import RefitJob
from outage_sentinel.store import Store
from outage_sentinel.storm_rate import fit_storm_rate, log_count_given_one, storm_counts
from tests.test_fitting import DEVICES, TOPOLOGY, cli, solved

STORM = FaultContext(storm=True)
BASE = LocaliserParams()
NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def unrelated(devices: list[str]) -> bool:
    t = TOPOLOGY
    pos = [t.pos[d] for d in devices]
    return all(not (t.tin[i] <= t.tin[j] <= t.tout[i]) for i in pos for j in pos if i != j)


def storm_history(n: int, per_feeder: int, seed: int) -> list[dict[str, object]]:
    """Close-outs of storms that took ``per_feeder`` unrelated devices of one feeder each,
    every area below them reported dead."""
    rng = random.Random(seed)
    by_root: dict[int, list[str]] = {}
    for d in DEVICES:
        by_root.setdefault(TOPOLOGY.root[TOPOLOGY.pos[d]], []).append(d)
    out: list[dict[str, object]] = []
    while len(out) < n:
        devices = rng.sample(by_root[rng.choice(sorted(by_root))], per_feeder)
        if not unrelated(devices):
            continue
        dead = sorted({a for d in devices for a in downstream(TOPOLOGY, d)})
        out.append({"id": f"s{len(out)}", "dead": dead, "alive": [], "calls": [],
                    "storm": True, "truth": {"devices": devices}})
    return out


def test_the_count_given_one_fault_is_a_distribution() -> None:
    for devices, mean, shape in ((12, 5e-3, 0.1), (53, 0.03, 8.0), (264, 0.2, 1.0)):
        total = sum(math.exp(log_count_given_one(k, devices, mean, shape))
                    for k in range(1, devices + 1))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_storms_that_took_several_devices_a_feeder_raise_the_rate_and_lone_ones_lower_it(
) -> None:
    mean, shape = BASE.storm_fault_prior, BASE.storm_rate_shape
    assert fit_storm_rate([], mean, shape) == (mean, shape)
    doubles = [fit_storm_rate([(2, 53)] * n, mean, shape) for n in (20, 100, 400)]
    lone = fit_storm_rate([(1, 53)] * 100, mean, shape)
    assert lone[0] < mean
    # more close-outs move it further, towards two devices of 53 (~0.038 per device)
    assert mean < doubles[0][0] < doubles[1][0] <= doubles[2][0] < 0.06
    m, a = doubles[2]
    p1, p2 = (math.exp(log_count_given_one(k, 53, m, a)) for k in (1, 2))
    q1, q2 = (math.exp(log_count_given_one(k, 53, mean, shape)) for k in (1, 2))
    assert p2 / p1 > 2 * (q2 / q1)  # a second device is much less of a surprise now


def test_only_declared_storms_count_and_a_device_below_another_adds_nothing() -> None:
    a, b = next((x, y) for x in DEVICES for y in DEVICES
                if x != y and TOPOLOGY.root[TOPOLOGY.pos[x]] == TOPOLOGY.root[TOPOLOGY.pos[y]]
                and unrelated([x, y]))
    below = next(d for d in DEVICES if d != a and set(downstream(TOPOLOGY, d))
                 < set(downstream(TOPOLOGY, a)))
    truths = [[a, b], [a, below], [a, b]]
    counts = storm_counts(TOPOLOGY, truths, [STORM, STORM, None])
    feeder_devices = counts[0][1]
    assert counts == [(2, feeder_devices), (1, feeder_devices)]


def test_the_fit_learns_the_storm_only_from_its_windows(tmp_path: Path) -> None:
    cases = solved(storm_history(60, 3, seed=1))
    storms = [STORM] * len(cases)
    learnt = fit(TOPOLOGY, cases, BASE, storms).params
    assert learnt.storm_fault_prior > 3 * BASE.storm_fault_prior
    # the same close-outs in calm windows, or without their windows, say nothing of storms
    calm = fit(TOPOLOGY, cases, BASE, [None] * len(cases)).params
    assert calm.storm_fault_prior == BASE.storm_fault_prior
    assert fit(TOPOLOGY, cases, BASE).params.storm_fault_prior == BASE.storm_fault_prior
    # a caller whose history may name fewer devices than operated can keep the rate
    pairs = [(Evidence(dead=sorted(c.dead)), c) for c in cases]
    kept, _ = fit_with_calibration(TOPOLOGY, pairs, BASE, storms, storm_rate=False)
    assert kept.params.storm_fault_prior == BASE.storm_fault_prior


def test_a_storm_rate_learnt_by_the_cli_makes_the_second_fault_likelier(tmp_path: Path
                                                                      ) -> None:
    hist = tmp_path / "history.jsonl"
    hist.write_text("".join(json.dumps(c) + "\n" for c in storm_history(80, 3, seed=2)),
                    encoding="utf-8")
    out = tmp_path / "params.yaml"
    r = cli("localisation", "fit", "--topology", "topology", "--history", str(hist),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "storm_fault_prior" in r.stdout and "storm_rate_shape" in r.stdout
    learnt = load_localisation(out).to_params()
    assert learnt.storm_fault_prior > BASE.storm_fault_prior
    # One fuse's areas all dead, and two of another's four: a second fault, or two false
    # reports? In a storm whose close-outs took three devices a feeder, far likelier a fault.
    # The storm's rate alone, every other parameter the defaults (the fitted false-report
    # rate of a history without false reports would make the second fault likely anyway)
    first, second = downstream(TOPOLOGY, "FU-CG01-01"), downstream(TOPOLOGY, "FU-CG01-02")
    evidence = Evidence(dead=[*first, *second[:2]])
    plain = BASE
    learnt = replace(BASE, storm_fault_prior=learnt.storm_fault_prior,
                     storm_rate_shape=learnt.storm_rate_shape)

    def two(params: LocaliserParams) -> float:
        hyps = localise(TOPOLOGY, evidence, params, STORM).hypotheses
        return sum(h.probability for h in hyps if len(h.devices) == 2)
    assert two(learnt) > two(plain) + 0.2


def test_the_daemon_refit_learns_the_storm_from_close_outs_naming_every_device(store: Store
                                                                               ) -> None:
    """Storm incidents closed through the lifecycle with the two or three devices the crews
    found (one close-out each): the scheduled refit raises the storm's rate."""
    topology = TOPOLOGY
    job_estimator = BayesEstimator()
    job = RefitJob(store, lambda: topology, job_estimator, LocaliserParams())
    estimator = BayesEstimator().within(STORM)
    for k, case in enumerate(storm_history(30, 3, seed=4)):
        event = OutageEvent(source="feed", event_id=f"E{k}", kind="fault", status="active",
                            start=NOW, transformers=tuple(case["dead"]))  # type: ignore[arg-type]
        inc = apply_event(None, event, resolve_event(topology, event), topology, estimator,
                          NOW, lambda k=k: f"INC-{k}")
        devices = case["truth"]["devices"]  # type: ignore[index]
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, NOW))
            store.log_in(conn, inc.id, NOW, "closed", "zhang", "",
                         {"device": devices[0], "devices": devices})
    assert all(len(d) == 3 for d in store.confirmed_devices().values())
    report = job.run_once(NOW)
    assert report is not None and report.figures["storm_cases"] == 30
    assert any(c.startswith("storm_fault_prior") for c in report.changes)
    assert job_estimator.params.storm_fault_prior > 3 * BASE.storm_fault_prior
