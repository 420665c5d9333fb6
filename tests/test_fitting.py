"""Learning from close-outs: the fit recovers the rates a history was drawn from, leaves a
source's rates alone when the history has no data from it, and the calibration map makes an
overconfident localiser honest. The CLI end to end: close with the confirmed device, export
the history, fit, locate with the fitted parameters, the daemon's config key."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from outage_sentinel.config import ConfigError, load_config, load_localisation
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import (
    calibration_map,
    choose_map,
    count,
    downstream,
    expected_calibration_error,
    fit,
    solved_case,
)
from outage_sentinel.incidents import apply_event, resolve_event
from outage_sentinel.lifecycle import incident_columns
from outage_sentinel.localise import Evidence, LocaliserParams, calibrated
from outage_sentinel.refit_job import RefitJob
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.e2e_helpers import ROOT, make_config

TOPOLOGY = load_bundle(ROOT / "topology")
DEVICES = [n for n in TOPOLOGY.ids if TOPOLOGY.nodes[n].kind in ("fuse", "breaker", "recloser")
           and TOPOLOGY.tin[TOPOLOGY.pos[n]] >= 0 and downstream(TOPOLOGY, n)]


def history(n: int, seed: int, *, detect: float = 0.6, false_rate: float = 0.03,
            alive_rate: float = 0.1, call_rate: float = 0.03, alive: bool = True,
            calls: bool = True, lv_rate: float = 0.0) -> list[dict[str, object]]:
    """Cases drawn from a known evidence model, one operated device each; ``lv_rate``: per
    customer of an energised area, a low-voltage fault whose customers call in (30 %)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        device = rng.choice(DEVICES)
        dead = downstream(TOPOLOGY, device)
        feeder = downstream(TOPOLOGY, TOPOLOGY.ids[TOPOLOGY.root[TOPOLOGY.pos[device]]])
        up = [a for a in feeder if a not in dead]
        case = {"id": f"h{k}",
                "dead": [a for a in dead if rng.random() < detect]
                + [a for a in up if rng.random() < false_rate],
                "alive": [a for a in up if rng.random() < alive_rate] if alive else [],
                "calls": [a for a in dead for _ in range(TOPOLOGY.customers_of([a]))
                          if rng.random() < call_rate]
                + [a for a in up if lv_rate and rng.random() < lv_rate * TOPOLOGY.customers_of([a])
                   for _ in range(2 + int(0.3 * TOPOLOGY.customers_of([a])))]
                if calls else [],
                "truth": {"devices": [device]}}
        out.append(case)
    return out


def solved(cases: list[dict[str, object]], topology: Topology = TOPOLOGY) -> list:
    out = []
    for c in cases:
        ev = Evidence.from_call_list(c["calls"], dead=c["dead"], alive=c["alive"])  # type: ignore[arg-type]
        out.append(solved_case(topology, ev, c["truth"]["devices"], str(c["id"])))  # type: ignore[index]
    return out


def detect_mean(p: LocaliserParams) -> float:
    return p.dead_detect_a / (p.dead_detect_a + p.dead_detect_b)


def test_the_fit_recovers_the_rates_the_history_was_drawn_from() -> None:
    base = LocaliserParams()
    p = fit(TOPOLOGY, solved(history(2000, 1)), base).params
    assert detect_mean(p) == pytest.approx(0.6, abs=0.02)
    assert p.false_dead_per_area == pytest.approx(0.03, abs=0.005)
    assert p.alive_report_a / (p.alive_report_a + p.alive_report_b) == pytest.approx(
        0.1, abs=0.02)
    assert p.call_rate_shape / p.call_rate_rate == pytest.approx(0.03, abs=0.005)


def test_the_fit_learns_how_often_an_energised_area_calls_in_for_a_low_voltage_fault() -> None:
    base = LocaliserParams()
    p = fit(TOPOLOGY, solved(history(2000, 4, lv_rate=2e-4)), base).params
    assert p.lv_fault_rate == pytest.approx(2e-4, rel=0.25)
    assert p.spurious_call_rate < 1e-5  # the bursts are not read as lone stray calls
    quiet = fit(TOPOLOGY, solved(history(2000, 4)), base).params
    assert quiet.lv_fault_rate < base.lv_fault_rate


def test_twenty_cases_already_move_the_rates_and_more_cases_move_them_further() -> None:
    base = LocaliserParams()  # detection mean 2/3
    errors = [abs(detect_mean(fit(TOPOLOGY, solved(history(n, 2, detect=0.3)), base).params)
                  - 0.3) for n in (0, 20, 2000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.03


def test_a_short_history_without_a_rare_event_does_not_rule_the_event_out() -> None:
    # no stray call, no low-voltage fault, no false report in 20 close-outs: they say only
    # that each is rarer than about one in their trials; the rates stay within that, not at
    # the floor (a stray call among 50,000 customers was priced at 1e-8 after 20 such
    # close-outs, and the next one read as a second fault); 2,000 push them well below
    base = LocaliserParams()
    cases = solved(history(20, 7, false_rate=0.0))
    short = fit(TOPOLOGY, cases, base).params
    counts = count(TOPOLOGY, cases)
    for key in ("spurious_call_rate", "lv_fault_rate", "alive_false_rate"):
        assert getattr(base, key) / 10 < getattr(short, key) <= getattr(base, key), key
    assert 0.2 / counts.false_dead[1] < short.false_dead_per_area
    long = fit(TOPOLOGY, solved(history(2000, 7, false_rate=0.0)), base).params
    for key in ("spurious_call_rate", "lv_fault_rate", "false_dead_per_area"):
        assert getattr(long, key) < getattr(short, key) / 10, key
    # and one that does happen is learnt from few close-outs: false reports at 3 % an area,
    # low-voltage faults at 30 times the default
    seen = fit(TOPOLOGY, solved(history(20, 8, false_rate=0.03, lv_rate=1e-4)), base).params
    assert seen.false_dead_per_area == pytest.approx(0.03, rel=0.5)
    assert seen.lv_fault_rate > 10 * base.lv_fault_rate


def test_a_fault_found_on_a_line_stands_for_the_device_that_operated() -> None:
    # The crew's "fault found" may name the pole where the line broke, not the fuse that blew.
    ev = Evidence(dead=["T-CG01-002"])
    case = solved_case(TOPOLOGY, ev, ["J-CG01-B01-1", "FU-CG01-01"], "c1")
    assert case.truth == ("FU-CG01-01",)
    assert solved_case(TOPOLOGY, ev, ["建设路支线#3杆"], "c2").truth == ("FU-CG01-01",)
    assert solved_case(TOPOLOGY, ev, ["RC-CG01-1"], "c3").truth == ("RC-CG01-1",)


def test_the_fit_learns_how_often_an_area_own_transformer_is_the_fault() -> None:
    # A county where a third of the faults the crews find are an area's own transformer
    # (its drop-out fuse): the kind factor rises from the default; a history without any
    # brings it down, so the hypothesis stops competing where it never comes true.
    areas = [a for a in TOPOLOGY.ids if TOPOLOGY.nodes[a].kind == "transformer"
             and TOPOLOGY.tin[TOPOLOGY.pos[a]] >= 0]
    rng = random.Random(7)
    cases = history(600, 7)
    for c in cases:
        if rng.random() < 1 / 3:
            c["truth"] = {"devices": [rng.choice(areas)]}
    base = LocaliserParams()
    own = dict(fit(TOPOLOGY, solved(cases), base).params.kind_factors)["transformer"]
    none = dict(fit(TOPOLOGY, solved(history(600, 7)), base).params.kind_factors)["transformer"]
    assert 0 < none < base.transformer_prior_factor < own  # never 0: the config needs > 0
    # switched off and never found, it stays off (a factor of 0 is no parameter to write)
    off = replace(base, transformer_prior_factor=0.0)
    assert "transformer" not in dict(fit(TOPOLOGY, solved(history(100, 7)), off).params
                                     .kind_factors)
    # the truth stays the transformer (not the protective device above it)
    tx_case = next(c for c in cases if c["truth"]["devices"][0] in areas)  # type: ignore[index]
    assert solved([tx_case])[0].truth == tuple(tx_case["truth"]["devices"])  # type: ignore[index]


def test_a_source_the_history_never_had_is_left_alone() -> None:
    """No alive reports, no calls, no device reported open in any case: those sources did not
    exist, their rates are not "nobody reported"."""
    base = LocaliserParams()
    p = fit(TOPOLOGY, solved(history(300, 3, alive=False, calls=False)), base).params
    for name in ("alive_report_a", "alive_report_b", "alive_false_rate", "call_rate_rate",
                 "spurious_call_rate", "lv_fault_rate", "open_report_true",
                 "open_report_false"):
        assert getattr(p, name) == getattr(base, name), name
    assert detect_mean(p) != detect_mean(base)


def test_a_small_calibrated_history_keeps_what_the_localiser_states() -> None:
    # 300 histories of 30 answers from a calibrated localiser: picking the better of two maps
    # on halves of 15 kept one in 48 of them (each making new answers worse); two standard
    # errors below 100 answers keep almost none, and a clearly overconfident history of 200
    # still gets its map
    def answers(n: int, rng: random.Random, right_at_top: float | None = None
                ) -> list[tuple[float, bool]]:
        out = []
        for _ in range(n):
            p = rng.choice([0.55, 0.7, 0.85, 0.95, 0.99])
            q = right_at_top if right_at_top is not None and p > 0.9 else p
            out.append((p, rng.random() < q))
        return out

    rng = random.Random(1)
    assert sum(bool(choose_map(answers(30, rng))) for _ in range(300)) < 15
    knots = choose_map(answers(200, random.Random(2), right_at_top=0.6))
    assert knots and calibrated(knots, 0.99) < 0.8


def test_calibration_map_makes_an_overconfident_localiser_honest() -> None:
    rng = random.Random(4)
    pairs = []
    for _ in range(3000):
        stated = rng.uniform(0.5, 1.0)
        pairs.append((stated, rng.random() < 0.5 + (stated - 0.5) * 0.6))  # claims too much
    knots = calibration_map(pairs)
    fixed = [(calibrated(knots, p), ok) for p, ok in pairs]
    assert expected_calibration_error(pairs) > 0.08
    assert expected_calibration_error(fixed) < 0.03
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(knots, knots[1:], strict=False))
    assert knots[0] == (0.0, 0.0) and calibrated(knots, 1.0) < 0.95  # no longer claims 1
    assert calibration_map(pairs[:5]) == ()  # too few to learn from


def test_a_calibrated_localiser_states_the_mapped_probability() -> None:
    from outage_sentinel.localise import localise

    ev = Evidence(dead=frozenset(downstream(TOPOLOGY, DEVICES[3])))
    raw = localise(TOPOLOGY, ev).best
    knots = ((0.0, 0.0), (1.0, 0.5))
    mapped = localise(TOPOLOGY, ev, LocaliserParams(calibration=knots)).best
    assert raw is not None and mapped is not None and mapped.devices == raw.devices
    assert mapped.probability == pytest.approx(raw.probability * 0.5)


# -- CLI ----------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", *args], capture_output=True,
                          text=True, cwd=str(cwd), timeout=300)


def test_fit_writes_parameters_that_locate_and_the_daemon_use(tmp_path: Path) -> None:
    hist = tmp_path / "history.jsonl"
    cases = history(300, 5)
    hist.write_text("".join(json.dumps(c) + "\n" for c in cases) + "{broken\n"
                    + json.dumps({"id": "x", "dead": ["T-MJ01-020"]}) + "\n", encoding="utf-8")
    out = tmp_path / "params.yaml"
    r = cli("localisation", "fit", "--topology", "topology", "--history", str(hist),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "fitted on 300 case(s)" in r.stdout and "false_dead_per_area" in r.stdout
    assert "line 301" in r.stderr and "truth" in r.stderr  # the bad lines are named, skipped
    fitted = load_localisation(out).to_params()
    assert fitted.false_dead_per_area == pytest.approx(0.03, abs=0.01)
    assert dict(fitted.kind_factors)["fuse"] > 0  # the fault rate per kind is written too
    evidence = tmp_path / "case.json"
    evidence.write_text(json.dumps({"id": "c", "dead": cases[0]["dead"]}), encoding="utf-8")
    r = cli("locate", "--topology", "topology", "--evidence", str(evidence), "--params", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["hypotheses"], r.stderr
    # The daemon's config takes the file (its own keys win).
    cfg = make_config(tmp_path, localisation={"params_file": str(out), "open_report_true": 0.5})
    loc = load_config(cfg).localisation.to_params()
    assert loc.false_dead_per_area == fitted.false_dead_per_area
    assert loc.open_report_true == 0.5


def test_a_bad_parameters_file_names_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"false_dead_per_aera": 0.1, "calibration": [[0.5, 0.9],
                                                                             [0.6, 0.2]]}))
    with pytest.raises(ConfigError) as info:
        load_localisation(bad)
    assert "false_dead_per_aera: unknown key" in str(info.value)
    evidence = tmp_path / "c.json"
    evidence.write_text("{}", encoding="utf-8")
    r = cli("locate", "--topology", "topology", "--evidence", str(evidence), "--params", str(bad))
    assert r.returncode == 3 and "false_dead_per_aera" in r.stderr


def test_close_with_the_device_then_export_the_history(tmp_path: Path) -> None:
    scenario = tmp_path / "one.jsonl"
    scenario.write_text(json.dumps({
        "at": 0, "event_id": "F1", "kind": "fault", "status": "active", "start_offset": -60,
        "feeder": "MJ01", "transformers": ["T-MJ01-020", "T-MJ01-021"]}) + "\n",
        encoding="utf-8")
    cfg = make_config(tmp_path, sources=[{"name": "feed", "type": "replay",
                                          "scenario": str(scenario), "speed": 1.0}])
    assert cli("--config", str(cfg), "run", "--once").returncode == 0
    (inc,) = json.loads(cli("--config", str(cfg), "incidents", "list", "--json").stdout)
    assert cli("--config", str(cfg), "incidents", "restore", inc["id"]).returncode == 0
    bad = cli("--config", str(cfg), "incidents", "close", inc["id"], "--cause", "设备故障",
              "--device", "NOPE")
    assert bad.returncode == 1 and "NOPE" in bad.stderr
    bad = cli("--config", str(cfg), "incidents", "close", inc["id"], "--cause", "设备故障",
              "--device", "FU-MJ01-05,NOPE2")
    assert bad.returncode == 1 and "NOPE2" in bad.stderr  # nothing closed on half a list
    # a storm's incident: the crews found two fuses (by id and by name, in any separator)
    r = cli("--config", str(cfg), "incidents", "close", inc["id"], "--cause", "设备故障",
            "--device", "FU-MJ01-05， 南谢庄支线跌落式熔断器、FU-MJ01-06")
    assert r.returncode == 0, r.stderr
    r = cli("--config", str(cfg), "localisation", "history")
    assert r.returncode == 0, r.stderr
    (case,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert case["truth"] == {"devices": ["FU-MJ01-05", "FU-MJ01-06"]}
    assert case["id"] == inc["id"]
    assert {"T-MJ01-020", "T-MJ01-021"} <= set(case["dead"])


def test_the_scheduled_refit_learns_from_the_close_outs_in_the_database(store: Store) -> None:
    """The daemon's refit stage: below 20 close-outs it waits; from 20 on the estimator
    localises with the fitted parameters (a calibration map only where the history shows one
    helps out of sample: 25 close-outs rarely do)."""
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    estimator = BayesEstimator()
    job = RefitJob(store, lambda: TOPOLOGY, estimator, LocaliserParams())
    rng = random.Random(6)
    for k in range(25):
        if k == 19:
            assert job.run_once(now) is None and estimator.params == LocaliserParams()
        device = rng.choice(DEVICES)
        reported = [a for a in downstream(TOPOLOGY, device) if rng.random() < 0.4] or \
            downstream(TOPOLOGY, device)[:1]
        event = OutageEvent(source="feed", event_id=f"E{k}", kind="fault", status="active",
                            start=now, transformers=tuple(reported))
        inc = apply_event(None, event, resolve_event(TOPOLOGY, event), TOPOLOGY, estimator,
                          now, lambda k=k: f"INC-{k}")
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, now))
            store.log_in(conn, inc.id, now, "closed", "zhang", "", {"device": device})
    report = job.run_once(now)
    assert report is not None and report.cases == 20 + 5
    assert estimator.params != LocaliserParams()
    assert detect_mean(estimator.params) < detect_mean(LocaliserParams())  # 40 % reported
    assert any(c.startswith("dead_detect_a") for c in report.changes)


def test_the_spread_of_detection_between_cases_is_not_the_noise_of_small_regions() -> None:
    # Every case reports each dead area with the same 70 %: regions of one to four areas make
    # the per-case rates scatter, but only by binomial noise, so the fitted Beta is narrow.
    steady = fit(TOPOLOGY, solved(history(300, 21, detect=0.7)), LocaliserParams()).params
    conc = steady.dead_detect_a + steady.dead_detect_b
    assert detect_mean(steady) == pytest.approx(0.7, abs=0.05) and conc > 30
    # Half the windows report 95 %, half 25 %: the same mean, a wide Beta.
    mixed = history(150, 22, detect=0.95) + history(150, 23, detect=0.25)
    wide = fit(TOPOLOGY, solved(mixed), LocaliserParams()).params
    assert wide.dead_detect_a + wide.dead_detect_b < 5
