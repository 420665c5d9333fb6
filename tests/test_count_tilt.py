"""How many devices operate together on a feeder, learnt from close-outs beyond what the
window's Beta can say (outage_sentinel/storm_rate.py ``fit_count_tilts``; docs/localisation.md,
"How many devices")."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from outage_sentinel.config import ConfigError, load_localisation
from outage_sentinel.fitting import downstream, fit
from outage_sentinel.localise import (
    Evidence,
    FaultContext,
    LocaliserParams,
    count_tilt,
    devices_per_feeder,
    fault_regimes,
    localise,
)
from outage_sentinel.storm_rate import fit_count_tilts, log_count_given_one
from tests.test_fitting import TOPOLOGY, cli, solved
from tests.test_storm_rate import storm_history

STORM = FaultContext(storm=True)
BASE = LocaliserParams()


def truths(cases: list[dict[str, object]]) -> list[list[str]]:
    return [list(c["truth"]["devices"]) for c in cases]  # type: ignore[index]


def tilts_of(params: LocaliserParams, window: str) -> tuple[float, ...]:
    return dict(params.count_tilts)[window]


def test_storms_that_always_take_two_devices_make_two_the_likeliest_count() -> None:
    history = storm_history(40, 2, seed=1)
    tilts = dict(fit_count_tilts(TOPOLOGY, truths(history), [STORM] * 40, BASE))
    assert set(tilts) == {"storm"}  # no calm close-out, no calm tilt
    one, two, three, more = tilts["storm"]
    assert two > 0 > one and three < 0 and more < 0
    # the tilted shares are the close-outs' frequencies, smoothed towards the Beta's shares:
    # on a feeder of the history, 40 of 40 named two devices make two ~95 % likely
    feeder = TOPOLOGY.feeder_of(str(history[0]["truth"]["devices"][0]))  # type: ignore[index]
    devices = devices_per_feeder(TOPOLOGY)[feeder]
    shares = [math.exp(log_count_given_one(k, devices, BASE.storm_fault_prior,
                                           BASE.storm_rate_shape)) for k in (1, 2)]
    assert math.exp(two) * shares[1] > 0.8
    assert math.exp(one) * shares[0] < 0.05


def test_more_close_outs_move_the_shares_further_and_none_leave_them() -> None:
    small = dict(fit_count_tilts(TOPOLOGY, truths(storm_history(10, 2, 2)), [STORM] * 10, BASE))
    big = dict(fit_count_tilts(TOPOLOGY, truths(storm_history(200, 2, 3)), [STORM] * 200,
                               BASE))
    assert big["storm"][0] < small["storm"][0] < 0
    assert big["storm"][1] >= small["storm"][1] > 0
    assert fit_count_tilts(TOPOLOGY, [], [], BASE) == ()


def test_calm_close_outs_naming_one_device_each_make_a_second_rarer_in_calm_only() -> None:
    history = storm_history(60, 1, seed=4)
    params = fit(TOPOLOGY, solved(history), BASE, [None] * 60).params
    calm = tilts_of(params, "calm")
    assert calm[1] < -2 and calm[0] > 0
    assert "storm" not in dict(params.count_tilts)
    assert count_tilt(params, "storm", 2) == 0.0 and count_tilt(params, "calm", 2) == calm[1]
    assert count_tilt(params, "calm", 9) == calm[-1]  # four and more share one factor


def two_fuses() -> Evidence:
    """One fuse's areas all dead and one of another's four: two faults (the other three
    reports lost), or one and a false report?"""
    first, second = downstream(TOPOLOGY, "FU-CG01-01"), downstream(TOPOLOGY, "FU-CG01-02")
    return Evidence(dead=[*first, *second[:1]])


def mass_on(params: LocaliserParams, size: int, context: FaultContext = STORM) -> float:
    hyps = localise(TOPOLOGY, two_fuses(), params, context).hypotheses
    return sum(h.probability for h in hyps if len(h.devices) == size)


def test_a_tilt_learnt_from_storms_of_two_moves_the_answer_to_two_devices() -> None:
    history = storm_history(60, 2, seed=5)
    learnt = fit(TOPOLOGY, solved(history), BASE, [STORM] * 60).params
    untilted = replace(learnt, count_tilts=())
    assert mass_on(learnt, 2) > mass_on(untilted, 2) + 0.2
    assert mass_on(learnt, 1) < mass_on(untilted, 1)
    # the storm's tilt says nothing of a calm window
    assert mass_on(learnt, 2, FaultContext()) == pytest.approx(
        mass_on(untilted, 2, FaultContext()))


def test_the_fit_reports_the_tilt_and_a_caller_keeping_the_rates_keeps_no_tilt() -> None:
    cases = solved(storm_history(40, 2, seed=6))
    fitted = fit(TOPOLOGY, cases, BASE, [STORM] * 40)
    assert any(c.startswith("devices per feeder in a storm window") for c in fitted.changes)
    kept = fit(TOPOLOGY, cases, BASE, [STORM] * 40, window_rates=False)
    assert kept.params.count_tilts == ()
    assert fault_regimes(kept.params, STORM) == fault_regimes(BASE, STORM)


def test_the_cli_writes_the_tilt_and_locate_reads_it_back(tmp_path: Path) -> None:
    hist = tmp_path / "history.jsonl"
    hist.write_text("".join(json.dumps(c) + "\n" for c in storm_history(40, 2, seed=7)),
                    encoding="utf-8")
    out = tmp_path / "params.yaml"
    r = cli("localisation", "fit", "--topology", "topology", "--history", str(hist),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "devices per feeder in a storm window" in r.stdout
    written = yaml.safe_load(out.read_text(encoding="utf-8"))["count_tilts"]
    assert set(written) == {"storm"} and len(written["storm"]) == 4
    params = load_localisation(out).to_params()
    assert tilts_of(params, "storm") == pytest.approx(written["storm"])


@pytest.mark.parametrize("tilts, key", [
    ({"storm": [0.1, 0.2, 0.3, 0.4, 0.5]}, "count_tilts.storm"),
    ({"storm": []}, "count_tilts.storm"),
    ({"windy": [0.1]}, "count_tilts.windy"),
    ({"calm": [float("nan")]}, "count_tilts.calm[0]"),
])
def test_a_bad_tilt_in_a_parameters_file_names_its_key(tmp_path: Path, tilts: dict,
                                                       key: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"count_tilts": tilts}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_localisation(bad)
    assert key in str(info.value) and str(bad) in str(info.value)
