"""The fault rate of a window without a storm declared, learnt from how many devices the
close-outs found per feeder (outage_sentinel/storm_rate.py ``fit_calm_rate``;
docs/localisation.md, session 18): a history of cases without any context whose truths name
two devices a feeder (the ``locate`` contract's storm history) must teach the localiser that a
second fault is not rare."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from outage_sentinel.config import load_localisation
from outage_sentinel.fitting import downstream, fit
from outage_sentinel.localise import Evidence, FaultContext, LocaliserParams, localise
from outage_sentinel.storm_rate import fit_calm_rate, log_count_given_one, window_counts
from tests.test_fitting import TOPOLOGY, cli, solved
from tests.test_storm_rate import storm_history

BASE = LocaliserParams()
CALM = FaultContext()


def undeclared(history: list[dict[str, object]]) -> list[dict[str, object]]:
    """The same close-outs as plain ``locate`` cases: no window, no storm."""
    return [{k: v for k, v in case.items() if k != "storm"} for case in history]


def test_a_rate_near_zero_does_not_make_a_count_certain() -> None:
    """log P(K >= 1) of a rate near 0 was a difference of log-Beta functions of ~1e10 lost
    in rounding: P(K = 2 | K >= 1) came out e^+690, and the search chose the rate nearest 0."""
    for devices, mean, shape in ((5, 1e-7, 50.0), (53, 1e-7, 0.02), (264, 3e-6, 50.0),
                                 (53, 1e-6, 0.1), (264, 4e-7, 0.04)):
        probs = [math.exp(log_count_given_one(k, devices, mean, shape))
                 for k in range(1, devices + 1)]
        assert max(probs) <= 1.0 + 1e-9
        assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    doubles = [(2, 5, CALM)] * 20
    mean, _ = fit_calm_rate(doubles, BASE)
    assert mean > 100 * BASE.fault_prior


def test_close_outs_naming_two_devices_a_feeder_raise_the_calm_rate_and_lone_ones_lower_it(
) -> None:
    assert fit_calm_rate([], BASE) == (BASE.fault_prior, BASE.fault_rate_shape)
    means = [fit_calm_rate([(2, 53, CALM)] * n, BASE)[0] for n in (20, 100, 400)]
    assert BASE.fault_prior < means[0] <= means[1] <= means[2]
    lone, _ = fit_calm_rate([(1, 53, CALM)] * 200, BASE)
    assert lone < BASE.fault_prior


def test_windows_with_devices_operated_elsewhere_are_left_to_the_storm_regime() -> None:
    """Doubles in windows where 40 of 1,000 devices operated elsewhere are the storm's as
    much as the calm window's (scored under the mixture, they taught the calm rate the
    storm's); a window with the county's figures and nothing operated elsewhere is calm."""
    busy = FaultContext(faults_elsewhere=40, devices_elsewhere=1000)
    quiet = FaultContext(faults_elsewhere=0, devices_elsewhere=1000)
    assert fit_calm_rate([(2, 53, busy)] * 100, BASE) == (BASE.fault_prior,
                                                          BASE.fault_rate_shape)
    with_figures, _ = fit_calm_rate([(2, 53, quiet)] * 100, BASE)
    without, _ = fit_calm_rate([(2, 53, CALM)] * 100, BASE)
    assert math.log(with_figures / BASE.fault_prior) > 4.0
    assert math.log(without / BASE.fault_prior) > 4.0


def test_declared_storms_teach_the_storm_rate_and_the_other_windows_the_calm_one() -> None:
    history = storm_history(60, 3, seed=3)
    truths = [case["truth"]["devices"] for case in history]  # type: ignore[index]
    mixed = [FaultContext(storm=True) if i % 2 else None for i in range(len(truths))]
    calm = window_counts(TOPOLOGY, truths, mixed, storm=False)
    storms = window_counts(TOPOLOGY, truths, mixed, storm=True)
    assert len(calm) == len(storms) == 30
    assert all(k == 3 and not ctx.storm for k, _, ctx in calm)
    cases = solved(undeclared(history))
    learnt = fit(TOPOLOGY, cases, BASE).params
    assert learnt.fault_prior > 10 * BASE.fault_prior
    assert learnt.storm_fault_prior == BASE.storm_fault_prior
    kept = fit(TOPOLOGY, cases, BASE, window_rates=False).params
    assert (kept.fault_prior, kept.fault_rate_shape) == (BASE.fault_prior,
                                                          BASE.fault_rate_shape)


def test_a_history_of_plain_doubles_makes_locate_find_both(tmp_path: Path) -> None:
    """The contract's protocol: close-outs as ``locate`` cases plus their truth, no window
    (the county's storm history, as a benchmark would write it), then ``locate --params`` on
    a new case without a window either."""
    hist = tmp_path / "history.jsonl"
    hist.write_text("".join(json.dumps(c) + "\n"
                            for c in undeclared(storm_history(80, 2, seed=4))),
                    encoding="utf-8")
    out = tmp_path / "params.yaml"
    r = cli("localisation", "fit", "--topology", "topology", "--history", str(hist),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "fault_prior" in r.stdout
    learnt = load_localisation(out).to_params()
    assert learnt.fault_prior > 100 * BASE.fault_prior
    # One fuse's areas all dead and two of another's four: two false reports, or a second
    # fault? In a county whose close-outs name two devices a feeder, a second fault.
    first, second = downstream(TOPOLOGY, "FU-CG01-01"), downstream(TOPOLOGY, "FU-CG01-02")
    evidence = Evidence(dead=[*first, *second[:2]])
    truth = {"FU-CG01-01", "FU-CG01-02"}
    assert set(localise(TOPOLOGY, evidence).hypotheses[0].devices) != truth
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"id": "c", "dead": sorted(evidence.dead)}), encoding="utf-8")
    r = cli("locate", "--topology", "topology", "--evidence", str(case), "--params", str(out))
    assert r.returncode == 0, r.stderr
    top = json.loads(r.stdout.splitlines()[0])["hypotheses"][0]
    assert set(top["devices"]) == truth
