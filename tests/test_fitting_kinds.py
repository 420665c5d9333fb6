"""The fault rate per device kind, fitted from close-outs (relative to the mean protective
device: close-outs carry no exposure for the absolute rate), and the localiser using it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from outage_sentinel.fitting import fit, solved_case
from outage_sentinel.localise import Evidence, LocaliserParams, kind_factor, localise
from tests.localise_fixture import build
from tests.test_fitting import DEVICES, TOPOLOGY, solved


def kind_history(n: int, seed: int, fuse_weight: float) -> list[dict[str, object]]:
    """Cases whose device is drawn with a fuse ``fuse_weight`` times as likely as a breaker
    or recloser; evidence: every area below reported dead."""
    rng = random.Random(seed)
    weights = [fuse_weight if TOPOLOGY.nodes[d].kind == "fuse" else 1.0 for d in DEVICES]
    out = []
    for k in range(n):
        device = rng.choices(DEVICES, weights)[0]
        out.append({"id": f"k{k}", "dead": [], "alive": [], "calls": [],
                    "truth": {"devices": [device]}})
    return out


def factor(p: LocaliserParams, kind: str) -> float:
    return kind_factor(p, kind)


def test_the_fit_finds_fuses_operate_more_often_than_reclosers() -> None:
    params = fit(TOPOLOGY, solved(kind_history(2000, 1, 3.0)), LocaliserParams()).params
    assert factor(params, "fuse") > 1.0 > factor(params, "recloser")
    assert factor(params, "fuse") / factor(params, "recloser") == pytest.approx(3.0, rel=0.3)


def test_kinds_found_equally_often_get_equal_factors() -> None:
    # fuses, breakers and reclosers found per device alike; the sectionalizers of this
    # topology never are, so they fall below and the others rise above the mean
    params = fit(TOPOLOGY, solved(kind_history(2000, 2, 1.0)), LocaliserParams()).params
    fuse = factor(params, "fuse")
    for kind in ("recloser", "breaker"):
        assert factor(params, kind) == pytest.approx(fuse, rel=0.25)
    assert factor(params, "sectionalizer") < 0.1 < 1.0 < fuse


def test_twenty_close_outs_move_the_factors_less_than_two_thousand() -> None:
    few = fit(TOPOLOGY, solved(kind_history(20, 3, 3.0)), LocaliserParams()).params
    many = fit(TOPOLOGY, solved(kind_history(2000, 3, 3.0)), LocaliserParams()).params
    assert 1.0 <= factor(few, "fuse") < factor(many, "fuse")
    assert any("fault rate of a fuse" in c for c in
               fit(TOPOLOGY, solved(kind_history(200, 4, 3.0)), LocaliserParams()).changes)


def test_a_history_without_a_kind_leaves_its_factor_alone() -> None:
    # the source bus is never the device found: its factor moves down, never up
    params = fit(TOPOLOGY, solved(kind_history(300, 5, 1.0)), LocaliserParams()).params
    assert factor(params, "source") <= LocaliserParams().source_prior_factor
    assert factor(params, "switch") <= LocaliserParams().switch_prior_factor


def test_the_localiser_uses_the_kind_factors() -> None:
    topo = build()
    ev = Evidence(dead={"T1", "T2"})

    def f1(params: LocaliserParams) -> float:
        return sum(h.probability for h in localise(topo, ev, params).hypotheses
                   if h.devices == ("F1",))

    rare_fuses = LocaliserParams(kind_factors=(("fuse", 0.01),))
    assert f1(rare_fuses) < f1(LocaliserParams())


def test_solved_case_keeps_the_truth_kind() -> None:
    case = solved_case(TOPOLOGY, Evidence(), [DEVICES[0]], "x")
    assert TOPOLOGY.nodes[case.truth[0]].kind in ("fuse", "breaker", "recloser")


def test_fit_reads_each_case_weather_and_names_a_bad_one(tmp_path: Path) -> None:
    from tests.test_fitting import cli, history

    cases = history(40, 9)
    for c in cases[:20]:
        c.update({"storm": False, "faults_elsewhere": 30, "devices_elsewhere": 1500})
    cases[20]["storm"] = "yes"
    hist = tmp_path / "history.jsonl"
    hist.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    out = tmp_path / "params.yaml"
    r = cli("localisation", "fit", "--topology", "topology", "--history", str(hist),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "fitted on 39 case(s)" in r.stdout
    assert "line 21" in r.stderr and "storm" in r.stderr


def test_platt_map_bends_over_and_under_confidence_together() -> None:
    from outage_sentinel.fitting import expected_calibration_error, platt_map
    from outage_sentinel.localise import calibrated

    rng = random.Random(11)
    pairs = []
    for _ in range(3000):
        stated = rng.uniform(0.05, 0.99)
        # right at a flatter rate than stated: under-confident low, over-confident high
        pairs.append((stated, rng.random() < 0.3 + 0.4 * stated))
    knots = platt_map(pairs)
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(knots, knots[1:], strict=False))
    fixed = [(calibrated(knots, p), ok) for p, ok in pairs]
    assert expected_calibration_error(pairs) > 0.1
    assert expected_calibration_error(fixed) < 0.03
    assert platt_map(pairs[:5]) == ()


def test_platt_map_of_a_history_wrong_most_at_its_surest_is_no_cliff() -> None:
    # Answers stated at 1.0 were wrong 13 times in 110, those at 0.9998 never: an undamped
    # Newton step overshot to beta ~1,800, and the map's sigmoid overflowed (the benchmark's
    # fit and the daemon's nightly refit died of it).
    from outage_sentinel.fitting import choose_map, expected_calibration_error, platt_map
    from outage_sentinel.localise import calibrated

    pairs = ([(1.0, True)] * 97 + [(1.0, False)] * 13 + [(0.9998351, True)] * 53
             + [(0.5, False)] * 10 + [(0.5, True)] * 6 + [(0.3333, False)] * 6
             + [(0.3333, True)] * 2 + [(0.2, False), (0.25, True), (0.25, False)])
    knots = platt_map(pairs)
    assert all(0.0 <= q <= 1.0 for _, q in knots)
    assert all(b[1] >= a[1] for a, b in zip(knots, knots[1:], strict=False))
    # a gentle bend, not a step: 0.9 and 0.5 stated map to different, moderate values
    assert 0.3 < calibrated(knots, 0.5) < calibrated(knots, 0.9) < 0.9
    fixed = [(calibrated(knots, p), ok) for p, ok in pairs]
    assert expected_calibration_error(fixed) <= expected_calibration_error(pairs)
    choose_map(pairs)  # and the choice between maps runs through it


def test_choose_map_keeps_a_calibrated_localiser_calibrated() -> None:
    from outage_sentinel.fitting import choose_map, expected_calibration_error
    from outage_sentinel.localise import calibrated

    rng = random.Random(12)
    pairs = [(p, rng.random() < p) for p in (rng.uniform(0.3, 1.0) for _ in range(2000))]
    knots = choose_map(pairs)
    assert expected_calibration_error([(calibrated(knots, p), ok) for p, ok in pairs]) < 0.03


def test_a_calibrated_localiser_keeps_what_it_states_unless_the_history_shows_otherwise(
) -> None:
    from outage_sentinel.fitting import choose_map, expected_calibration_error
    from outage_sentinel.localise import calibrated

    # An honest localiser and a small history: most draws keep no map at all (a map learnt on
    # a few dozen cases would move stated probabilities by noise).
    kept = 0
    for seed in range(20):
        rng = random.Random(seed)
        pairs = [(p, rng.random() < p) for p in (rng.uniform(0.3, 1.0) for _ in range(60))]
        kept += choose_map(pairs) == ()
    assert kept >= 15
    # An overconfident one (says 0.9, right 60 %) is corrected from 200 close-outs.
    rng = random.Random(3)
    pairs = [(p, rng.random() < p - 0.3) for p in (rng.uniform(0.85, 0.95) for _ in range(200))]
    knots = choose_map(pairs)
    assert knots and calibrated(knots, 0.9) == pytest.approx(0.6, abs=0.1)
    assert expected_calibration_error([(calibrated(knots, p), ok) for p, ok in pairs]) < 0.05
