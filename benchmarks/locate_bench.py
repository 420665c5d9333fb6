"""Localisation benchmark: the localiser vs the naive common-ancestor baseline vs a Bayes-optimal
single-fault oracle, on imported public feeders, a synthetic ~10k-node feeder, small urban feeders
(a breaker per area), small rural feeders (fused branches) and a province-size (1,000,000-node)
topology.

Run from the repository root::

    .venv/bin/python benchmarks/locate_bench.py --quick     # ~16 minutes
    .venv/bin/python benchmarks/locate_bench.py             # full run

Evidence model (the oracle knows these exact numbers; the localiser runs on its default
parameters):

* every protective device with areas below it operates once per scenario (single faults);
  double faults pick two unrelated devices at random;
* single faults are calm windows: the localiser gets no context (its calm defaults). Double
  faults are storm windows: the feeder is one of a county of 20 like it, all hit by the same
  weather (every device of the county operates at the rate this feeder did, 2 / D for D
  devices), and the localiser gets what the daemon would see of it, a
  ``FaultContext(faults_elsewhere=k, devices_elsewhere=19 D)`` with k ~ Binomial(19 D, 2 / D)
  (about 38 devices operated elsewhere), no storm declared (see :class:`Storm`). Every case is
  also localised the other way round (doubles without the context, singles with a storm
  context drawn the same way), on the same evidence, so that the cost of each is printed;
* each dead area is reported dead with probability ``1 - missing`` (missing 0 %, 30 %, 60 %);
* "false" scenarios: each energised area of the feeder is reported dead with probability
  ``1 / N`` (N areas on the feeder; one false report per case on average), as the localiser's
  defaults assume; two scenarios draw them instead at 0.3 % of areas whatever the feeder's
  size (many on a large feeder, almost none on a small one), which they do not;
* each energised area sends an alive report with probability 5 %; a dead one with 0.02 %;
* each customer of a dead area calls with probability 10 %; of an energised area 0.001 %;
* breakers and reclosers are telemetered: an operated one is reported open with probability 90 %.

The doubles draw exactly two faults while their context states a rate (2 / D per device), so
a feeder of that county has 0, 1, 2, 3 ... faults; the "storm world" scenario draws the faults
at that rate (each device independently, cases with nothing reported left out) and is
localised with the same context, so that the calibration of the storm answers is also judged
in the world their context describes. The doubles' reliability is printed per answer size.
They are also fitted and localised as the ``locate`` contract has them, with no window at all
in the history or the case ("no window"), on the scenario's history and on 20 and 50
close-outs (three draws each).

Every scenario is also fitted on 20 close-outs of its own, without any window, three draws,
and its new cases localised with each fit and with the defaults: the contract says a history
of 20 cases must already help and never hurt, and each fit that does worse than the
defaults is marked and counted.

A top-1 answer is correct when its devices have the same downstream areas as the operated
ones; a double fault is "both found" when the top answer includes both downstream sets
("exact" when it has nothing else). F1 is over affected customers. Times are per case, in this
process. The oracle (single faults) is Bayes-optimal under the exact model knowing there is
one fault: its posterior of a downstream set sums over the devices that have it, exact ties are
credited 1/m, and a case with nothing reported is not answered (as for the localiser). The
oracle-2 (double faults) is the same knowing there are exactly two unrelated faults. Neither is
reachable by a localiser that must also decide how many faults there are.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synth import feeder_records, rural_records, urban_records, write_province  # noqa: E402

from outage_sentinel.fitting import (  # noqa: E402
    expected_calibration_error,
    fit_with_calibration,
    reliability,
    solved_case,
)
from outage_sentinel.localise import (  # noqa: E402
    Evidence,
    FaultContext,
    LocaliserParams,
    localise,
    naive_common_ancestor,
)
from outage_sentinel.topology import PROTECTIVE_KINDS, Topology, load_bundle, topology_from_records  # noqa: E402

FEEDERS = ROOT.parent / "shared" / "data" / "feeders"
TELEMETERED = frozenset({"breaker", "recloser"})
BIG = 1e6  # stands in for log(0) so that sums stay finite


@dataclass(frozen=True)
class Model:
    """The evidence model the cases are drawn from."""

    missing: float
    false_per_feeder: float  # expected false dead reports per case (rate = this / N)
    alive_rate: float = 0.05
    alive_false: float = 2e-4
    call_rate: float = 0.10
    spurious_call: float = 1e-5
    open_report: float = 0.9
    # Evidence models the localiser does not assume (the oracle still assumes the above):
    #: calls per dead area, Poisson, whatever its customers (0 = per customer, above)
    calls_per_area: float = 0.0
    #: per-area false rates: one area in 20 is flaky and makes 80 % of the false reports
    false_heavy: bool = False
    #: false dead reports at this rate per area whatever the feeder's size (replaces
    #: ``false_per_feeder / N``: a large feeder then sends many, a small one almost none)
    false_per_area: float = 0.0
    #: missing decided per concentrator of this many consecutive areas (0 = per area)
    cluster: int = 0
    #: the true region sends nothing at all, and one false dead report comes from elsewhere
    silent: bool = False
    #: double faults: the operator declared a storm and the localiser gets only that, not
    #: the county's counts (the window is otherwise the same storm)
    declared_storm: bool = False
    #: this share of areas (fixed by id) have their meters and customers registered under the
    #: next area of the feeder in the GIS: their reports and calls name the wrong area
    mislabel: float = 0.0
    #: with ``mislabel``: the wrong area is any area of the feeder (fixed by id), not the next
    mislabel_anywhere: bool = False
    #: expected low-voltage faults per case: an energised area (each alike) whose own
    #: customers lost supply below its transformer and call in as from a dead area, while its
    #: terminal, on the medium-voltage side, stays alive
    lv_faults: float = 0.0
    #: the chance per case that telemetry reports one telemetered device open that did not
    #: operate (a glitch, a device opened by hand and not logged, a stale SCADA point)
    false_open: float = 0.0
    #: the share of single-fault cases whose fault is a transformer area's own (its drop-out
    #: fuse, the transformer): one area off, no device of the feeder operated
    own_faults: float = 0.0


@dataclass(frozen=True)
class Storm:
    """The weather of the double-fault cases, and what the daemon sees of it.

    The feeder is one of a county of ``county_feeders`` feeders like it, all hit by the same
    weather: in the window every protective device of the county operates with the rate at
    which this feeder lost its devices (``faults / D``, D its devices). The daemon sees the
    other feeders' operated devices as open incidents: ``faults_elsewhere`` ~ Binomial(n, r)
    of ``devices_elsewhere`` = n = (county_feeders - 1) * D. No storm is declared (that is an
    operator's call; the counts are what the daemon knows by itself).
    """

    county_feeders: int = 20
    faults: int = 2
    declared: bool = False
    #: whether the localiser gets the county's counts (else only the declaration)
    counts: bool = True

    def context(self, feeder: Feeder, draw: Any) -> FaultContext:
        if not self.counts:
            return FaultContext(storm=self.declared)
        d = len(feeder.devices)
        n = (self.county_feeders - 1) * d
        k = int(draw.binomial(n, min(1.0, self.faults / d)))
        return FaultContext(storm=self.declared, faults_elsewhere=k, devices_elsewhere=n)


STORM = Storm()
DECLARED = Storm(declared=True, counts=False)


def storm_of(model: Model) -> Storm:
    """The weather the localiser is told of in the double-fault cases of ``model``."""
    return DECLARED if model.declared_storm else STORM


@dataclass
class Case:
    devices: list[int]
    dead: list[str]
    alive: list[str]
    calls: dict[str, int]
    open_devices: list[str]


class Feeder:
    """A feeder (one energised component) of a topology, with the arrays the sampler needs."""

    def __init__(self, topology: Topology, root: int) -> None:
        self.t = topology
        self.root = root
        tins = topology.transformer_tins
        self.lo = bisect.bisect_left(tins, topology.tin[root])
        self.hi = bisect.bisect_right(tins, topology.tout[root])
        self.areas = [topology.transformer_by_tin[r] for r in range(self.lo, self.hi)]
        #: per mislabelled share (and whether anywhere): the areas the GIS registers under
        #: another area
        self.gis_wrong: dict[tuple[float, bool], dict[str, str]] = {}
        self.devices = [i for i in range(len(topology.ids))
                        if topology.root[i] == root and topology.tin[i] >= 0
                        and topology.nodes[topology.ids[i]].kind in PROTECTIVE_KINDS
                        and self.range(i)[1] > self.range(i)[0]]

    def range(self, i: int) -> tuple[int, int]:
        t = self.t
        return (bisect.bisect_left(t.transformer_tins, t.tin[i]),
                bisect.bisect_right(t.transformer_tins, t.tout[i]))

    def related(self, a: int, b: int) -> bool:
        tin, tout = self.t.tin, self.t.tout
        return tin[a] <= tin[b] <= tout[a] or tin[b] <= tin[a] <= tout[b]


def feeders_of(topology: Topology) -> list[Feeder]:
    roots = [i for i, nid in enumerate(topology.ids)
             if topology.nodes[nid].kind == "source" and topology.root[i] == i]
    return [Feeder(topology, r) for r in roots]


def sample(feeder: Feeder, devices: Sequence[int], model: Model, rng: random.Random) -> Case:
    """Draw one case's evidence when ``devices`` operated (or, with ``model.own_faults``,
    sometimes a random area's own transformer instead)."""
    t = feeder.t
    if model.own_faults and len(devices) == 1 and rng.random() < model.own_faults:
        devices = [rng.choice(feeder.areas)]
    dead_ranks: set[int] = set()
    for d in devices:
        lo, hi = feeder.range(d)
        dead_ranks.update(range(lo, hi))
    n = feeder.hi - feeder.lo
    false_rate = false_rate_of(model, n)
    dead: list[str] = []
    alive: list[str] = []
    calls: dict[str, int] = {}
    ids, nodes = t.ids, t.nodes
    missed: dict[int, bool] = {}
    for r in range(feeder.lo, feeder.hi):
        i = t.transformer_by_tin[r]
        nid = ids[i]
        if r in dead_ranks:
            key = (r - feeder.lo) // model.cluster if model.cluster else r
            if key not in missed:
                missed[key] = model.silent or rng.random() < model.missing
            if not missed[key]:
                dead.append(nid)
            if rng.random() < model.alive_false:
                alive.append(nid)
            p_call = 0.0 if model.silent else model.call_rate
        else:
            if false_rate and rng.random() < _area_false_rate(model, nid, false_rate):
                dead.append(nid)
            if rng.random() < model.alive_rate:
                alive.append(nid)
            p_call = model.spurious_call
        if model.calls_per_area and r in dead_ranks and not model.silent:
            k = _poisson(rng, model.calls_per_area)
        else:
            k = _binomial(rng, nodes[nid].customers, p_call)
        if model.lv_faults and r not in dead_ranks and \
                rng.random() < model.lv_faults / (feeder.hi - feeder.lo):
            k += _binomial(rng, nodes[nid].customers, model.call_rate)
        if k:
            calls[nid] = k
    up = [ids[t.transformer_by_tin[r]] for r in range(feeder.lo, feeder.hi)
          if r not in dead_ranks]
    if model.silent and up:
        dead.append(rng.choice(up))
    opened = [ids[d] for d in devices
              if nodes[ids[d]].kind in TELEMETERED and rng.random() < model.open_report]
    if model.false_open and rng.random() < model.false_open:
        others = [ids[d] for d in feeder.devices
                  if d not in devices and nodes[ids[d]].kind in TELEMETERED]
        if others:
            opened.append(rng.choice(others))
    if model.mislabel:
        return mislabelled(feeder, Case(list(devices), dead, alive, calls, opened), model)
    return Case(list(devices), dead, alive, calls, opened)


def mislabelled(feeder: Feeder, case: Case, model: Model) -> Case:
    """The case as a GIS with wrong customer-area links reports it: an area chosen by its id
    (``model.mislabel`` of them) reports under the next area of the feeder, or under any area
    of it (``model.mislabel_anywhere``, also fixed by id)."""
    key = (model.mislabel, model.mislabel_anywhere)
    wrong = feeder.gis_wrong.get(key)
    if wrong is None:
        areas = [feeder.t.ids[i] for i in feeder.areas]

        def other(k: int, a: str) -> str:
            if not model.mislabel_anywhere:
                return areas[(k + 1) % len(areas)]
            step = 1 + zlib.crc32(b"far:" + a.encode()) % max(len(areas) - 1, 1)
            return areas[(k + step) % len(areas)]

        wrong = feeder.gis_wrong[key] = {
            a: other(k, a) for k, a in enumerate(areas)
            if zlib.crc32(b"gis:" + a.encode()) % 1000 < model.mislabel * 1000}
    calls: dict[str, int] = {}
    for a, k in case.calls.items():
        calls[wrong.get(a, a)] = calls.get(wrong.get(a, a), 0) + k
    return Case(case.devices, list(dict.fromkeys(wrong.get(a, a) for a in case.dead)),
                list(dict.fromkeys(wrong.get(a, a) for a in case.alive)), calls,
                case.open_devices)


def evidence_of(case: Case) -> Evidence:
    return Evidence(dead=case.dead, alive=case.alive, calls=case.calls,
                    open_devices=case.open_devices)


def closed_out(topology: Topology, case: Case) -> tuple[Evidence, Any]:
    """A case as a close-out: its evidence and the truth the sampler drew."""
    ev = evidence_of(case)
    return ev, solved_case(topology, ev, [topology.ids[d] for d in case.devices], "h")


def false_rate_of(model: Model, n: int) -> float:
    """The false dead rate of an area of a feeder of ``n`` areas under ``model``."""
    if model.false_per_area:
        return model.false_per_area
    return min(1.0, model.false_per_feeder / n) if model.false_per_feeder else 0.0


def _area_false_rate(model: Model, nid: str, rate: float) -> float:
    """The false dead rate of one area: ``rate``, or under ``false_heavy`` 16x for one area
    in 20 (fixed by its id) and a fifth of it for the others (the same mean)."""
    if not model.false_heavy:
        return rate
    return min(1.0, rate * (16.0 if zlib.crc32(nid.encode()) % 20 == 0 else 0.2 / 0.95))


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if p <= 0 or n <= 0:
        return 0
    if n * p < 0.05:
        return 1 if rng.random() < 1 - (1 - p) ** n else 0
    return sum(1 for _ in range(n) if rng.random() < p)


def device_scores(feeder: Feeder, case: Case, model: Model) -> tuple[dict[int, float], set[int]]:
    """log P(evidence | exactly the areas below d are dead), up to a constant common to every
    hypothesis, for each device d, including d's own open report (not the other devices');
    and the devices reported open. Exact under ``model``."""
    t = feeder.t
    n = feeder.hi - feeder.lo
    false_rate = false_rate_of(model, n)

    def lg(x: float) -> float:
        return math.log(x) if x > 0 else -BIG

    # per-area log-likelihood ratio dead vs alive: w(t) = base + per_customer * customers,
    # corrected for the areas that have evidence
    base = lg(model.missing) - lg(1 - false_rate) + lg(1 - model.alive_false) \
        - lg(1 - model.alive_rate)
    per_c = lg(1 - model.call_rate) - lg(1 - model.spurious_call)
    dead_set, alive_set = set(case.dead), set(case.alive)
    corr: dict[int, float] = {}
    pos = t.pos
    for nid in dead_set | alive_set | set(case.calls):
        i = pos[nid]
        r = bisect.bisect_left(t.transformer_tins, t.tin[i])
        w = 0.0
        if nid in dead_set:
            w += lg(1 - model.missing) - lg(false_rate) - (lg(model.missing) - lg(1 - false_rate))
        if nid in alive_set:
            w += lg(model.alive_false) - lg(model.alive_rate) \
                - (lg(1 - model.alive_false) - lg(1 - model.alive_rate))
        k = case.calls.get(nid, 0)
        if k:
            w += k * (lg(model.call_rate) - lg(model.spurious_call)
                      - lg(1 - model.call_rate) + lg(1 - model.spurious_call))
        corr[r] = w
    ranks = sorted(corr)
    prefix = [0.0]
    for r in ranks:
        prefix.append(prefix[-1] + corr[r])
    cust = t.transformer_customer_prefix
    opened = {pos[d] for d in case.open_devices}
    out: dict[int, float] = {}
    for d in feeder.devices:
        lo, hi = feeder.range(d)
        ll = base * (hi - lo) + per_c * (cust[hi] - cust[lo])
        ll += prefix[bisect.bisect_left(ranks, hi)] - prefix[bisect.bisect_left(ranks, lo)]
        if t.nodes[t.ids[d]].kind in TELEMETERED:
            ll += lg(model.open_report) if d in opened else lg(1 - model.open_report)
        out[d] = ll
    return out, opened


def _logsumexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def _tied_best(post: dict[Any, float]) -> list[Any]:
    """The keys of highest posterior. Exact ties (e.g. several devices without any evidence
    when every report is missing) are split evenly: a Bayes-optimal guess among them is right
    1/m of the time, and the oracle is not credited with a lucky tie-break."""
    top = max(post.values())
    return [k for k, v in post.items() if v >= top - 1e-9]


def oracle(feeder: Feeder, case: Case, model: Model) -> list[tuple[int, int]]:
    """Bayes-optimal single fault under the exact model and the benchmark's prior (each device
    equally likely): the downstream sets (ranges) with the highest posterior, which sums over
    the devices that have that set. A device reported open that did not operate is impossible
    (the model has no false open reports)."""
    scores, opened = device_scores(feeder, case, model)
    post: dict[tuple[int, int], float] = {}
    for d, ll in scores.items():
        ll -= BIG * len(opened - {d})
        key = feeder.range(d)
        post[key] = _logsumexp(post.get(key, -math.inf), ll)
    return _tied_best(post) if post else []


def pair_oracle(feeder: Feeder, case: Case, model: Model
                ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Bayes-optimal answer for a double fault, knowing that exactly two unrelated devices
    operated (each such pair equally likely, as drawn): the pair of downstream sets with the
    highest posterior. O(devices^2): the exhaustive reference for the double-fault scenario."""
    scores, opened = device_scores(feeder, case, model)
    devs = list(scores)
    rng_of = {d: feeder.range(d) for d in devs}
    n_open = len(opened)
    post: dict[tuple[tuple[int, int], tuple[int, int]], float] = {}
    for x, a in enumerate(devs):
        ra, sa = rng_of[a], scores[a] - BIG * (n_open - (a in opened))
        for b in devs[x + 1:]:
            rb = rng_of[b]
            if not (rb[0] >= ra[1] or ra[0] >= rb[1]):
                continue  # related (nested downstream sets): not a double fault
            ll = sa + scores[b] + BIG * (b in opened)
            key = (ra, rb) if ra < rb else (rb, ra)
            post[key] = _logsumexp(post.get(key, -math.inf), ll)
    return _tied_best(post) if post else []


def ranges_of(feeder: Feeder, ids: Sequence[str]) -> set[tuple[int, int]]:
    return {feeder.range(feeder.t.pos[d]) for d in ids}


def customers_f1(feeder: Feeder, truth: set[tuple[int, int]],
                 pred: set[tuple[int, int]]) -> float:
    cust = feeder.t.transformer_customer_prefix

    def ranks(spans: set[tuple[int, int]]) -> set[int]:
        out: set[int] = set()
        for lo, hi in spans:
            out.update(range(lo, hi))
        return out

    a, b = ranks(truth), ranks(pred)

    def weight(rs: set[int]) -> int:
        return sum(cust[r + 1] - cust[r] for r in rs)

    inter, wa, wb = weight(a & b), weight(a), weight(b)
    return 2 * inter / (wa + wb) if wa + wb else 1.0


@dataclass
class Tally:
    correct: float = 0.0  # top answer has exactly the true downstream sets
    both: float = 0.0  # top answer includes every true downstream set (double faults)
    n: int = 0
    f1: float = 0.0
    prob: float = 0.0
    times: list[float] | None = None
    #: (stated probability of the top answer, right) per answered case: the calibration
    pairs: list[tuple[float, bool]] = field(default_factory=list)
    #: double faults: cases where one true region sent nothing at all (no dead report, no
    #: call, not reported open): no localiser can find that device but by a guess
    silent: int = 0
    #: the calibration pairs per number of devices in the top answer
    by_size: dict[int, list[tuple[float, bool]]] = field(default_factory=dict)

    def add(self, ok: float, both: float, f1: float, ms: float, prob: float = 0.0,
            size: int = 0) -> None:
        if prob:
            self.pairs.append((prob, bool(ok)))
            self.by_size.setdefault(size, []).append((prob, bool(ok)))
        self.n += 1
        self.correct += ok
        self.both += both
        self.f1 += f1
        self.prob += prob
        if self.times is None:
            self.times = []
        self.times.append(ms)

    def pct(self, double: bool) -> float:
        return 100.0 * (self.both if double else self.correct) / max(self.n, 1)

    def median(self) -> float:
        return statistics.median(self.times or [0.0])

    def line(self, label: str, double: bool) -> str:
        ts = sorted(self.times or [0.0])
        med = statistics.median(ts)
        p99 = ts[min(len(ts) - 1, int(math.ceil(0.99 * len(ts))) - 1)]
        extra = f"  mean p(top)={self.prob / max(self.n, 1):.2f}" if self.prob else ""
        if double:
            what = (f"both found {self.pct(True):5.1f}%  exact "
                    f"{100.0 * self.correct / max(self.n, 1):5.1f}%")
            if self.silent:
                extra += (f"  one true region sent nothing in "
                          f"{100.0 * self.silent / max(self.n, 1):.1f}% of cases")
        else:
            what = f"top-1 {self.pct(False):5.1f}%"
        return (f"    {label:<9} {what}  F1 {self.f1 / max(self.n, 1):.3f}  "
                f"median {med:6.3f} ms  p99 {p99:6.3f} ms{extra}")


def run_scenario(feeders: list[Feeder], model: Model, double: bool, max_cases: int,
                 rng: random.Random, params: LocaliserParams | None = None,
                 storm: Storm = STORM, fitted: LocaliserParams | None = None,
                 plain: LocaliserParams | None = None) -> dict[str, Tally]:
    """``max_cases`` cases per scenario, spread over the feeders. Single faults: every device
    once (in random order), then again until the cases are used up, so that small feeders
    are not judged on one draw per device.

    Every case is localised twice on the same evidence: calm (no context, the defaults) and
    with the storm context of ``storm`` (drawn from its own generator, so the evidence is the
    same as in a calm-only run). Double faults are storm cases: "localiser" is the storm
    answer and "calm" the cost of not knowing; single faults are calm cases: "localiser" is
    the calm answer and "storm" the cost of a storm context on a lone fault. ``plain``:
    parameters fitted on a history without any window, used without one ("no window", the
    ``locate`` contract's view of a storm: a case has no weather)."""
    main, other = ("storm", "calm") if double else ("calm", "storm")
    storm = storm_of(model) if storm is STORM else storm
    tallies = {"localiser": Tally(), other: Tally(), "naive": Tally(), "oracle": Tally()}
    if fitted is not None:
        tallies["fitted"] = Tally()
    if plain is not None:
        tallies["no window"] = Tally()
    draw = np.random.default_rng(rng.randrange(2**32))
    for f, devices in make_jobs(feeders, double, max_cases, rng):
        case = sample(f, devices, model, rng)
        ctx = {"calm": None, "storm": storm.context(f, draw)}
        _localise_case(f, case, tallies, main, other, ctx, params, (fitted, plain))
        _oracle_case(f, case, model, double, tallies["oracle"])
        if double and any(_sent_nothing(f, case, d) for d in devices):
            tallies["oracle"].silent += 1
    return tallies


def make_jobs(feeders: list[Feeder], double: bool, max_cases: int, rng: random.Random
              ) -> list[tuple[Feeder, list[int]]]:
    """The operated devices of ``max_cases`` cases: single faults cycle through every
    device of every feeder (in random order); double faults are random unrelated pairs."""
    jobs: list[tuple[Feeder, list[int]]] = []
    per_feeder = max(1, max_cases // len(feeders))
    for f in feeders:
        if double:
            if len(f.devices) < 3:
                continue
            for _ in range(per_feeder):
                for _try in range(50):
                    a, b = rng.sample(f.devices, 2)
                    if not f.related(a, b):
                        jobs.append((f, [a, b]))
                        break
        else:
            picked: list[int] = []
            while len(picked) < per_feeder:
                devs = list(f.devices)
                rng.shuffle(devs)
                picked.extend(devs[:per_feeder - len(picked)])
            jobs.extend((f, [d]) for d in picked)
    rng.shuffle(jobs)
    return jobs[:max_cases]


def _localise_case(f: Feeder, case: Case, tallies: dict[str, Tally], main: str, other: str,
                   contexts: dict[str, FaultContext | None], params: LocaliserParams | None,
                   fits: tuple[LocaliserParams | None, LocaliserParams | None]) -> None:
    """Localise one case every way (main and other context, the fit, naive) and tally it."""
    truth = {f.range(d) for d in case.devices}
    ev = evidence_of(case)

    def run_localiser(which: str, p: LocaliserParams | None = params) -> Any:
        return lambda t, e: localise(t, e, p, contexts[which])

    runs: list[tuple[str, Any]] = [("localiser", run_localiser(main)),
                                   (other, run_localiser(other)),
                                   ("naive", naive_common_ancestor)]
    fitted, plain = fits
    if fitted is not None:
        runs.append(("fitted", run_localiser(main, fitted)))
    if plain is not None:
        runs.append(("no window", run_localiser("calm", plain)))
    for label, fn in runs:
        t0 = time.perf_counter()
        res = fn(f.t, ev)
        if res.hypotheses:
            res.hypotheses[0].to_json()  # the best answer, fully described
        ms = (time.perf_counter() - t0) * 1000
        top = res.hypotheses[0] if res.hypotheses else None
        pred = ranges_of(f, top.devices) if top else set()
        ok = pred == truth
        both = truth <= pred
        tallies[label].add(ok, both, customers_f1(f, truth, pred), ms,
                           top.probability if top and label != "naive" else 0.0,
                           len(top.devices) if top else 0)


def _sent_nothing(f: Feeder, case: Case, device: int) -> bool:
    """Whether nothing at all came from the region of ``device``: no dead report, no call,
    and the device not reported open."""
    lo, hi = f.range(device)
    ids, by_tin = f.t.ids, f.t.transformer_by_tin
    region = {ids[by_tin[r]] for r in range(lo, hi)}
    return (ids[device] not in case.open_devices and not region & set(case.dead)
            and not any(case.calls.get(a) for a in region))


def _oracle_case(f: Feeder, case: Case, model: Model, double: bool, tally: Tally) -> None:
    """The oracle's (or oracle-2's) answer to one case, tallied."""
    truth = {f.range(d) for d in case.devices}
    t0 = time.perf_counter()
    if not (case.dead or case.calls or case.open_devices):
        # nothing reported: no incident to localise, for the oracle as for the localiser
        # (the oracle would otherwise "know" there is a fault and guess its prior mode)
        answers: list[set[tuple[int, int]]] = [set()]
    else:
        answers = ([set(p) for p in pair_oracle(f, case, model)] if double
                   else [{o} for o in oracle(f, case, model)]) or [set()]
    ms = (time.perf_counter() - t0) * 1000
    m = len(answers)  # tied answers: each is the oracle's guess 1/m of the time
    tally.add(sum(p == truth for p in answers) / m, sum(truth <= p for p in answers) / m,
              sum(customers_f1(f, truth, p) for p in answers) / m, ms)


def scenarios() -> list[tuple[str, Model, bool]]:
    out: list[tuple[str, Model, bool]] = []
    for missing in (0.0, 0.3, 0.6):
        out.append((f"single, {int(missing * 100)}% missing, no false reports",
                    Model(missing, 0.0), False))
        out.append((f"single, {int(missing * 100)}% missing, false reports",
                    Model(missing, 1.0), False))
    out.append(("double, 30% missing, false reports", Model(0.3, 1.0), True))
    return out + HARDER


#: Evidence models the localiser does not assume (the oracle is the base model's, so its
#: figures there are a yardstick, not a bound). Every one is reported.
HARDER: list[tuple[str, Model, bool]] = [
    ("single, 30% missing, flat 2 calls per dead area", Model(0.3, 1.0, calls_per_area=2.0),
     False),
    ("single, 30% missing, no calls at all", Model(0.3, 1.0, call_rate=0.0, spurious_call=0.0),
     False),
    ("single, 30% missing, per-area false rates", Model(0.3, 2.0, false_heavy=True), False),
    ("single, 40% missing by concentrator of 8", Model(0.4, 1.0, cluster=8), False),
    ("single, silent true region + 1 false report", Model(0.0, 0.0, silent=True), False),
    ("double, 30% missing, false reports, storm declared, no county counts",
     Model(0.3, 1.0, declared_storm=True), True),
    ("single, 30% missing, low-voltage faults calling in (1 a feeder)",
     Model(0.3, 1.0, lv_faults=1.0), False),
    ("single, 30% missing, 10% of areas under the wrong area in the GIS",
     Model(0.3, 1.0, mislabel=0.1), False),
    ("single, 30% missing, stale alive readings (1% of dead areas read alive)",
     Model(0.3, 1.0, alive_false=0.01), False),
    ("single, 30% missing, telemetry glitches (70% of openings seen, a false open in 1 case "
     "of 10)", Model(0.3, 1.0, open_report=0.7, false_open=0.1), False),
    ("single, no meters or terminals: calls and telemetry only",
     Model(1.0, 0.0, alive_rate=0.0, alive_false=0.0), False),
    ("single, 30% missing, one fault in 3 is an area's own transformer (drop-out fuse)",
     Model(0.3, 1.0, own_faults=1 / 3), False),
    ("single, 30% missing, 10% of areas under a random other area of the feeder in the GIS",
     Model(0.3, 1.0, mislabel=0.1, mislabel_anywhere=True), False),
    ("single, 30% missing, false reports at 0.3% of areas whatever the feeder's size",
     Model(0.3, 0.0, false_per_area=0.003), False),
    ("double, 30% missing, false reports at 0.3% of areas whatever the feeder's size",
     Model(0.3, 0.0, false_per_area=0.003), True),
]


@dataclass
class Summary:
    """The figures the targets are judged on, per topology."""

    name: str
    worst_ratio: float = math.inf  # min over single scenarios of localiser / oracle accuracy
    worst_scenario: str = ""
    gap_30_false: float = math.nan  # localiser - naive, points, single 30 % missing, false
    double_both: float = math.nan  # localiser with the storm context, both found
    double_oracle: float = math.nan  # the two-fault oracle, same cases
    double_calm: float = math.nan  # the same cases localised without the context (calm)
    double_silent: float = math.nan  # % of double cases where one true region sent nothing
    storm_worst_ratio: float = math.inf  # single faults localised with a storm context
    median_ms: float = 0.0  # worst median time per case of the localiser over scenarios
    p99_ms: float = 0.0
    worst_ece: float = 0.0  # expected calibration error of the top answer, worst scenario
    worst_ece_fitted: float = 0.0  # the same with parameters fitted on the scenario's history
    worst_ratio_fitted: float = math.inf  # min single-fault localiser / oracle, fitted
    double_both_fitted: float = math.nan
    #: doubles fitted and localised without any window: (label, both found % defaults
    #: without a window, fitted, ECE fitted)
    plain: list[tuple[str, float, float, float]] = field(default_factory=list)
    #: the same doubles fitted on few close-outs without a window: (size, both %, ECE)
    plain_curve: list[tuple[int, float, float]] = field(default_factory=list)
    #: per scenario: the defaults' and each small-history fit's (top-1 or both %, ECE)
    small: list[tuple[str, list[tuple[float, float]]]] = field(default_factory=list)
    #: per scenario: (label, ECE defaults, ECE fitted, top-1 or both % defaults, fitted,
    #: the ECE fitted that calibrated answers stay under 19 times in 20)
    calibration: list[tuple[str, float, float, float, float, float]] = field(
        default_factory=list)
    fitted: str = ""  # the fit-on-history result line
    #: doubles in a declared storm without county counts: both found % defaults, fitted,
    #: ECE defaults, fitted
    declared: tuple[float, float, float, float] = (math.nan,) * 4
    #: the storm world (faults at the county's rate): exact top-1 %, ECE, on the defaults
    storm_world: tuple[float, float] = (math.nan, math.nan)
    #: the learning curve: (close-outs, loc/oracle, ECE), 0 close-outs for the defaults
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    #: the evidence models the localiser does not assume: (scenario, localiser %, naive %,
    #: oracle of the base model %, calibration error)
    harder: list[tuple[str, float, float, float, float]] = field(default_factory=list)


def print_calibration(pairs: list[tuple[float, bool]], label: str = "calibration") -> float:
    """The expected calibration error of the stated top probabilities and a reliability
    diagram (stated vs right, per probability bin); returns the error."""
    ece = expected_calibration_error(pairs)
    bins = reliability(pairs, 5)
    cells = "  ".join(f"{lo:.1f}+: {stated:.2f}->{right:.2f} (n={n})"
                      for lo, stated, right, n in bins)
    typical, high = calibrated_ece(pairs)
    print(f"    {label} ECE {ece:.3f} (honest answers would score {typical:.3f}, 19 times in 20 "
          f"under {high:.3f}); stated->right per bin: {cells}")
    return ece


def calibrated_ece(pairs: Sequence[tuple[float, bool]], draws: int = 200) -> tuple[float, float]:
    """The ECE that perfectly calibrated answers stating the same probabilities would score on
    this many cases, each right with the probability it states: (median, 95th percentile) of
    ``draws`` such samples. An ECE above the percentile is more than the sample's noise."""
    if not pairs:
        return 0.0, 0.0
    rng = random.Random(len(pairs))
    scores = sorted(expected_calibration_error([(p, rng.random() < p) for p, _ in pairs])
                    for _ in range(draws))
    return scores[draws // 2], scores[int(draws * 0.95)]


#: The county the fit-on-history scenario stands for: not the localiser's defaults.
FIELD = Model(0.35, 2.0, alive_rate=0.15, call_rate=0.03, false_heavy=True)


def fit_on_history(name: str, feeders: list[Feeder], topology: Topology, cases: int,
                   rng: random.Random) -> str:
    """Fit the reliabilities and calibration on ``cases`` close-outs of the FIELD model, then
    localise as many new cases with the defaults and with the fit."""
    hist: list[tuple[Evidence, Any]] = []
    for f, devices in _single_jobs(feeders, cases, rng):
        c = sample(f, devices, FIELD, rng)
        hist.append(closed_out(topology, c))
    t0 = time.perf_counter()
    fitted, _ = fit_with_calibration(topology, hist, LocaliserParams())
    fit_s = time.perf_counter() - t0
    results = {}
    for label, params in (("defaults", None), ("fitted", fitted.params)):
        tallies = run_scenario(feeders, FIELD, False, cases, random.Random(rng.random()),
                               params)
        loc, ora = tallies["localiser"], tallies["oracle"]
        ratio = loc.correct / ora.correct if ora.correct else 1.0
        results[label] = (ratio, expected_calibration_error(loc.pairs), loc.pct(False))
        print(f"    {label:<9} top-1 {loc.pct(False):5.1f}%  loc/oracle {ratio:.3f}  "
              f"ECE {results[label][1]:.3f}")
    d, f = results["defaults"], results["fitted"]
    return (f"{name}: loc/oracle {d[0]:.3f} -> {f[0]:.3f}, ECE {d[1]:.3f} -> {f[1]:.3f} "
            f"(fit on {len(hist)} close-outs in {fit_s:.1f} s)")


def fit_scenario(feeders: list[Feeder], topology: Topology, model: Model, double: bool,
                 cases: int, seed: int, label: str, plain: bool = False
                 ) -> tuple[LocaliserParams, float]:
    """Fitted parameters (reliabilities and calibration map) from ``cases`` close-outs of a
    county whose evidence follows ``model``: the scenario's own history, drawn apart from
    its test cases (doubles in their storm context, as the daemon saw them; ``plain``: no
    window at all, as a ``locate`` history has none). Returns the parameters and the seconds
    the fit took."""
    rng = random.Random(f"{seed}/{label}/history")
    draw = np.random.default_rng(zlib.crc32(f"{seed}/{label}".encode()))
    hist: list[tuple[Evidence, Any]] = []
    contexts: list[FaultContext | None] = []
    for f, devices in make_jobs(feeders, double, cases, rng):
        c = sample(f, devices, model, rng)
        hist.append(closed_out(topology, c))
        contexts.append(storm_of(model).context(f, draw) if double else None)
    t0 = time.perf_counter()
    fitted, _ = fit_with_calibration(topology, hist, LocaliserParams(),
                                     None if plain else contexts)
    return fitted.params, time.perf_counter() - t0


def print_by_size(tally: Tally, label: str) -> None:
    """Stated vs right per number of devices in the top answer."""
    cells = []
    for size, pairs in sorted(tally.by_size.items()):
        stated = sum(p for p, _ in pairs) / len(pairs)
        right = sum(ok for _, ok in pairs) / len(pairs)
        cells.append(f"{size}: {stated:.2f}->{right:.2f} (n={len(pairs)})")
    print(f"    {label} stated->right by devices in the answer: {'  '.join(cells)}")


def storm_world_jobs(feeders: list[Feeder], model: Model, n: int, rng: random.Random,
                     storm: Storm = STORM) -> list[tuple[Feeder, Case]]:
    """``n`` cases of the world the storm context describes: every device of the feeder
    operates independently at the county's rate (``storm.faults / D``), so a feeder has
    0, 1, 2, 3 ... faults (a device below another operated one adds nothing and is dropped).
    A case where nothing was reported never reaches the localiser and is not drawn."""
    out: list[tuple[Feeder, Case]] = []
    feeders = [f for f in feeders if len(f.devices) >= 3]
    while feeders and len(out) < n:
        f = rng.choice(feeders)
        rate = min(1.0, storm.faults / len(f.devices))
        ops = [d for d in f.devices if rng.random() < rate]
        ops = [d for d in ops if not any(o != d and f.related(o, d)
                                         and f.t.tin[o] < f.t.tin[d] for o in ops)]
        case = sample(f, ops, model, rng) if ops else None
        if case and (case.dead or case.calls or case.open_devices):
            out.append((f, case))
    return out


def storm_world(feeders: list[Feeder], n: int, rng: random.Random) -> tuple[float, float]:
    """The storm scenario as the context states it (faults per device at the county's
    rate, not exactly two): the localiser with the context and without it, exact top-1 and
    calibration. Returns (exact %, ECE) with the context."""
    cases = storm_world_jobs(feeders, Model(0.3, 1.0), n, rng)
    if not cases:
        return math.nan, math.nan
    draw = np.random.default_rng(rng.randrange(2**32))
    tallies = {"localiser": Tally(), "calm": Tally(), "naive": Tally()}
    counts: dict[int, int] = {}
    for f, case in cases:
        counts[len(case.devices)] = counts.get(len(case.devices), 0) + 1
        ctx = {"calm": None, "storm": STORM.context(f, draw)}
        _localise_case(f, case, tallies, "storm", "calm", ctx, None, (None, None))
    print(f"  storm world, 30% missing, false reports ({len(cases)} cases; faults per case "
          f"{dict(sorted(counts.items()))}; localiser storm context, 'calm' without it)")
    for key in ("localiser", "calm", "naive"):
        print(tallies[key].line(key, False))
    loc = tallies["localiser"]
    ece = print_calibration(loc.pairs)
    print_by_size(loc, "calibration")
    print_calibration(tallies["calm"].pairs, "calm: calibration")
    return loc.pct(False), ece


#: History sizes of the learning curve (the contract: 20 must already help and never hurt,
#: 2,000 should converge); sizes under 200 are drawn three times.
CURVE_SIZES = (20, 50, 200, 1000)


def learning_curve(feeders: list[Feeder], topology: Topology, cases: int, rng: random.Random,
                   full: bool) -> list[tuple[int, float, float]]:
    """Fit on histories of the FIELD county of growing size and localise the same ``cases``
    new cases with each fit: (size, loc/oracle, ECE) per fit, size 0 for the defaults."""
    pool: list[tuple[Evidence, Any]] = []
    for f, devices in _single_jobs(feeders, max(CURVE_SIZES) if full else 400, rng):
        c = sample(f, devices, FIELD, rng)
        pool.append(closed_out(topology, c))
    test_seed = rng.random()
    out: list[tuple[int, float, float]] = []
    for size in (0, *(n for n in CURVE_SIZES if n <= len(pool))):
        for draw in range(3 if 0 < size < 200 else 1):
            params = None
            if size:
                hist = random.Random(f"{size}/{draw}").sample(pool, size)
                params = fit_with_calibration(topology, hist, LocaliserParams())[0].params
            tallies = run_scenario(feeders, FIELD, False, cases, random.Random(test_seed), params)
            loc, ora = tallies["localiser"], tallies["oracle"]
            out.append((size, loc.correct / ora.correct if ora.correct else 1.0,
                        expected_calibration_error(loc.pairs)))
    cells = "  ".join(f"{'defaults' if n == 0 else n}: {r:.3f}/{e:.3f}" for n, r, e in out)
    print(f"  learning curve (FIELD county; close-outs: loc/oracle / ECE on {cases} new "
          f"cases): {cells}")
    return out


#: History sizes of the doubles' learning curve without any window (each drawn three times).
PLAIN_SIZES = (20, 50)


def plain_doubles_curve(feeders: list[Feeder], topology: Topology, cases: int, seed: int
                        ) -> list[tuple[int, float, float]]:
    """The doubles (30 % missing, false reports) as the ``locate`` contract sees them: no
    window in the history nor in the new cases. Fitted on ``PLAIN_SIZES`` close-outs (three
    draws each): (size, both found %, ECE) on the same ``cases`` new cases, size 0 for the
    defaults."""
    model = Model(0.3, 1.0)
    rng = random.Random(f"{seed}/plain doubles/test")
    tests = [(f, sample(f, d, model, rng)) for f, d in make_jobs(feeders, True, cases, rng)]
    out: list[tuple[int, float, float]] = []
    for size in (0, *PLAIN_SIZES):
        for draw in range(3 if size else 1):
            params = None
            if size:
                hrng = random.Random(f"{seed}/plain doubles/{size}/{draw}")
                hist = [closed_out(topology, sample(f, d, model, hrng))
                        for f, d in make_jobs(feeders, True, size, hrng)]
                params = fit_with_calibration(topology, hist, LocaliserParams())[0].params
            out.append((size, *score_without_window(tests, params, True)))
    return out


def score_without_window(tests: Sequence[tuple[Feeder, Case]],
                         params: LocaliserParams | None, double: bool) -> tuple[float, float]:
    """(top-1 %, or both found % for doubles; ECE) of ``tests`` localised without a window."""
    tally = Tally()
    for f, case in tests:
        top = next(iter(localise(f.t, evidence_of(case), params).hypotheses), None)
        truth = {f.range(d) for d in case.devices}
        pred = ranges_of(f, top.devices) if top else set()
        tally.add(pred == truth, truth <= pred, customers_f1(f, truth, pred), 0.0,
                  top.probability if top else 0.0, len(top.devices) if top else 0)
    return tally.pct(double), expected_calibration_error(tally.pairs)


#: The contract: a history of 20 close-outs must already help and never hurt. Every scenario
#: is fitted on this many close-outs of its own (no window), ``SMALL_DRAWS`` times.
SMALL_HISTORY = 20
SMALL_DRAWS = 3


def small_history(feeders: list[Feeder], topology: Topology, label: str, model: Model,
                  double: bool, cases: int, seed: int) -> list[tuple[float, float]]:
    """The scenario's ``cases`` new cases localised without a window, with the defaults and
    with each of ``SMALL_DRAWS`` fits on ``SMALL_HISTORY`` close-outs of the same scenario:
    [(top-1 or both found %, ECE)], the defaults first."""
    rng = random.Random(f"{seed}/{label}/small/test")
    tests = [(f, sample(f, d, model, rng)) for f, d in make_jobs(feeders, double, cases, rng)]
    out = [score_without_window(tests, None, double)]
    for draw in range(SMALL_DRAWS):
        hrng = random.Random(f"{seed}/{label}/small/{draw}")
        hist = [closed_out(topology, sample(f, d, model, hrng))
                for f, d in make_jobs(feeders, double, SMALL_HISTORY, hrng)]
        params = fit_with_calibration(topology, hist, LocaliserParams())[0].params
        out.append(score_without_window(tests, params, double))
    return out


def hurts(defaults: tuple[float, float], fitted: tuple[float, float]) -> bool:
    """A fit that does worse than the defaults: top-1 (both found) down by more than a point,
    or an ECE more than 0.01 above the defaults' and above the 0.05 target."""
    return (fitted[0] < defaults[0] - 1.0
            or fitted[1] > max(defaults[1], 0.05) + 0.01)


def _single_jobs(feeders: list[Feeder], n: int, rng: random.Random
                 ) -> list[tuple[Feeder, list[int]]]:
    jobs = [(f, [d]) for f in feeders for d in f.devices]
    return [rng.choice(jobs) for _ in range(n)]


def bench_topology(name: str, topology: Topology, max_cases: int, seed: int,
                   params: LocaliserParams | None = None) -> Summary:
    feeders = [f for f in feeders_of(topology) if f.devices]
    n_dev = sum(len(f.devices) for f in feeders)
    n_tx = sum(f.hi - f.lo for f in feeders)
    print(f"\n== {name}: {len(topology.ids)} nodes, {n_tx} transformer areas, "
          f"{n_dev} protective devices with areas below, {len(feeders)} feeder(s)")
    summary = Summary(name)
    rng = random.Random(seed)
    for label, model, double in scenarios():
        if double and max(len(f.devices) for f in feeders) < 3:
            continue
        fitted, fit_s = fit_scenario(feeders, topology, model, double, max_cases, seed, label)
        plain = (fit_scenario(feeders, topology, model, double, max_cases, seed, label,
                              plain=True)[0] if double else None)
        tallies = run_scenario(feeders, model, double, max_cases, rng, params, fitted=fitted,
                               plain=plain)
        n = tallies["localiser"].n
        ctx = ("storm context; 'calm' = the same cases without it" if double else
               "calm; 'storm' = the same cases with a storm context")
        print(f"  {label} ({n} cases; localiser {ctx})")
        for key in ("localiser", "calm", "storm", "fitted", "no window", "naive", "oracle"):
            if key in tallies and tallies[key].n:
                tag = "oracle-2" if key == "oracle" and double else key
                print(tallies[key].line(tag, double))
        loc, fit = tallies["localiser"], tallies["fitted"]
        ece = print_calibration(loc.pairs)
        if double:
            print_by_size(loc, "calibration")
        ece_fit = print_calibration(fit.pairs, f"fitted on {max_cases} close-outs of this "
                                    f"scenario ({fit_s:.1f} s): calibration")
        if double:
            nw = tallies["no window"]
            ece_nw = print_calibration(nw.pairs, "fitted and localised without any window "
                                       "(the locate contract's view): calibration")
            summary.plain.append((label, tallies["calm"].pct(True), nw.pct(True), ece_nw))
        small = small_history(feeders, topology, label, model, double, max_cases, seed)
        summary.small.append((label, small))
        print(f"    fitted on {SMALL_HISTORY} close-outs (no window, {SMALL_DRAWS} draws): "
              + "  ".join(f"{'defaults' if k == 0 else 'fit'} {pct:.1f}%/{e:.3f}"
                          f"{'!' if k and hurts(small[0], (pct, e)) else ''}"
                          for k, (pct, e) in enumerate(small)))
        summary.worst_ece = max(summary.worst_ece, ece)
        summary.worst_ece_fitted = max(summary.worst_ece_fitted, ece_fit)
        summary.calibration.append((label, ece, ece_fit, loc.pct(double), fit.pct(double),
                                    calibrated_ece(fit.pairs)[1]))
        if not double and tallies["oracle"].correct:
            summary.worst_ratio_fitted = min(summary.worst_ratio_fitted,
                                             fit.correct / tallies["oracle"].correct)
        if (label, model, double) in HARDER:
            summary.harder.append((label, loc.pct(double), tallies["naive"].pct(double),
                                   tallies["oracle"].pct(double), ece))
            if double and model.declared_storm:
                summary.declared = (loc.pct(True), fit.pct(True), ece, ece_fit)
            continue
        if double:
            summary.double_both_fitted = fit.pct(True)
        ts = sorted(loc.times or [0.0])
        summary.median_ms = max(summary.median_ms, loc.median())
        summary.p99_ms = max(summary.p99_ms,
                             ts[min(len(ts) - 1, int(math.ceil(0.99 * len(ts))) - 1)])
        if double:
            summary.double_both = loc.pct(True)
            summary.double_oracle = tallies["oracle"].pct(True)
            summary.double_calm = tallies["calm"].pct(True)
            summary.double_silent = 100.0 * tallies["oracle"].silent / max(tallies["oracle"].n, 1)
            continue
        oracle_ok = tallies["oracle"].correct
        ratio = loc.correct / oracle_ok if oracle_ok else 1.0
        storm_ratio = tallies["storm"].correct / oracle_ok if oracle_ok else 1.0
        gap = 100.0 * (loc.correct - tallies["naive"].correct) / n
        print(f"    localiser/oracle accuracy = {ratio:.3f} (with a storm context "
              f"{storm_ratio:.3f}); localiser - naive = {gap:+.1f} points")
        summary.storm_worst_ratio = min(summary.storm_worst_ratio, storm_ratio)
        if ratio < summary.worst_ratio:
            summary.worst_ratio, summary.worst_scenario = ratio, label
        if model.missing == 0.3 and model.false_per_feeder == 1.0 and model == Model(0.3, 1.0):
            summary.gap_30_false = gap
    print(f"  fit on history: {len(feeders)} feeder(s), evidence from a county unlike the "
          f"defaults (35% missing, per-area false rates, 3% calls, 15% alive)")
    summary.fitted = fit_on_history(name, feeders, topology, max_cases, rng)
    # three times the cases: it is cheap, and a calibration figure on 400 cases moves by
    # +-0.03 between draws
    summary.storm_world = storm_world(feeders, 3 * max_cases, rng)
    summary.curve = learning_curve(feeders, topology, max_cases, rng, max_cases >= 1000)
    if max(len(f.devices) for f in feeders) >= 3:
        summary.plain_curve = plain_doubles_curve(feeders, topology, max_cases, seed)
    return summary


def print_small_histories(summaries: list[Summary]) -> None:
    """The 20-close-out fits of every scenario against the defaults, and how many hurt."""
    print(f"\n== {SMALL_HISTORY} close-outs of each scenario, no window ({SMALL_DRAWS} draws; the "
          "contract: they must already help and never hurt): top-1 (doubles: both found) % / "
          "ECE, defaults | fits; ! = worse than the defaults (top-1 down more than a point, or "
          "ECE up more than 0.01 and above 0.05)")
    for s in summaries:
        for label, small in s.small:
            cells = "  ".join(f"{pct:5.1f}/{e:.3f}{'!' if hurts(small[0], (pct, e)) else ' '}"
                              for pct, e in small[1:])
            print(f"  {s.name:<32} {label:<48} {small[0][0]:5.1f}/{small[0][1]:.3f} | {cells}")
        fits = [(small[0], f) for _, small in s.small for f in small[1:]]
        print(f"  {s.name:<32} fits worse than the defaults: "
              f"{sum(hurts(d, f) for d, f in fits)} of {len(fits)}; better top-1: "
              f"{sum(f[0] > d[0] + 1.0 for d, f in fits)}, better ECE: "
              f"{sum(f[1] < d[1] - 0.01 for d, f in fits)}")


def print_summary(summaries: list[Summary]) -> None:
    print("\n== targets (localiser on its defaults; single faults calm, double faults with the "
          "storm context)")
    print(f"  {'topology':<32} {'min loc/oracle':>14} {'vs naive @30%':>14} "
          f"{'double both':>12} {'oracle-2':>9} {'median ms':>10} {'p99 ms':>8}")
    for s in summaries:
        print(f"  {s.name:<32} {s.worst_ratio:>14.3f} {s.gap_30_false:>+13.1f}p "
              f"{s.double_both:>11.1f}% {s.double_oracle:>8.1f}% {s.median_ms:>10.3f} "
              f"{s.p99_ms:>8.3f}")
    print("  (single faults: >= 0.99 of the oracle at every missing rate, >= +30 points vs naive "
          "at 30 % missing with false reports; double faults at 30 % missing: >= 85 % both "
          "found; oracle-2 = Bayes-optimal pair knowing there are exactly two faults; "
          "<= 1 ms median on ~10k nodes)")
    print("\n== evidence models the localiser does not assume (top-1 %, doubles both found %; "
          "the oracle assumes the base model, so it is a yardstick here, not a bound)")
    for s in summaries:
        for label, loc, naive, oracle, ece in s.harder:
            print(f"  {s.name:<32} {label:<48} localiser {loc:5.1f}%  naive {naive:5.1f}%  "
                  f"oracle {oracle:5.1f}%  ECE {ece:.3f}")
    print("\n== calibration per scenario: expected calibration error of the stated top "
          "probability (target <= 0.05), defaults -> fitted on as many close-outs of the "
          "scenario as it has test cases; top-1 % (doubles: both found %) defaults -> fitted; "
          "a fitted ECE above 0.05 is shown beside the one calibrated answers stating the same "
          "probabilities stay under 19 times in 20")
    for s in summaries:
        for label, ece, ece_fit, acc, acc_fit, noise in s.calibration:
            beside = f" (honest answers < {noise:.3f})" if ece_fit > 0.05 else ""
            print(f"  {s.name:<32} {label:<48} ECE {ece:.3f} -> {ece_fit:.3f}   "
                  f"{acc:5.1f}% -> {acc_fit:5.1f}%{beside}")
    print("\n== doubles: how many cases a two-device answer cannot get right (one true region "
          "sent nothing at all; the best a localiser can do there is a guess among the silent "
          "devices)")
    for s in summaries:
        if not math.isnan(s.double_silent):
            print(f"  {s.name:<32} one region silent in {s.double_silent:5.1f}% of cases; "
                  f"both found, storm context {s.double_both:5.1f}%, oracle-2 "
                  f"{s.double_oracle:5.1f}%; at most ~{100.0 - s.double_silent:5.1f}% "
                  "+ lucky guesses")
    print("\n== doubles in a declared storm, no county counts (30% missing, false reports): "
          "both found and ECE, defaults -> fitted on the scenario's history (the storm's "
          "rate learnt from how many devices its close-outs found)")
    for s in summaries:
        both, both_fit, ece, ece_fit = s.declared
        if not math.isnan(both):
            print(f"  {s.name:<32} both found {both:5.1f}% -> {both_fit:5.1f}%   "
                  f"ECE {ece:.3f} -> {ece_fit:.3f}")
    print("\n== doubles without any window (the locate contract: a case carries no weather), "
          "30% missing: both found, defaults -> fitted on the same scenario's history written "
          "without windows; ECE fitted")
    for s in summaries:
        for label, both, both_fit, ece_fit in s.plain:
            print(f"  {s.name:<32} {label:<48} {both:5.1f}% -> {both_fit:5.1f}%   "
                  f"ECE {ece_fit:.3f}")
    print("  fitted on few close-outs (no window; 20 and 50 drawn three times): both found % / "
          "ECE on the same new cases")
    for s in summaries:
        if s.plain_curve:
            cells = "  ".join(f"{'defaults' if n == 0 else n}: {b:.1f}/{e:.3f}"
                              for n, b, e in s.plain_curve)
            print(f"  {s.name:<32} {cells}")
    print_small_histories(summaries)
    print("\n== the storm world the context states (each device operates at the county's rate: "
          "1, 2, 3 ... faults a feeder, not exactly two), on the defaults")
    for s in summaries:
        exact, ece = s.storm_world
        if not math.isnan(exact):
            print(f"  {s.name:<32} top-1 exact {exact:5.1f}%  ECE {ece:.3f}")
    print("\n== learning curve: fitted on N close-outs of the FIELD county, loc/oracle and ECE "
          "on the same new cases (sizes under 200 drawn three times; the quick run stops at "
          "400 close-outs)")
    for s in summaries:
        cells = "  ".join(f"{'defaults' if n == 0 else n}: {r:.3f}/{e:.3f}"
                          for n, r, e in s.curve)
        print(f"  {s.name:<32} {cells}")
    print("\n== with fitted parameters (each scenario fitted on its own history)")
    print(f"  {'topology':<32} {'min loc/oracle':>14} {'double both':>12} {'worst ECE':>10} "
          f"{'(defaults)':>10}")
    for s in summaries:
        print(f"  {s.name:<32} {s.worst_ratio_fitted:>14.3f} {s.double_both_fitted:>11.1f}% "
              f"{s.worst_ece_fitted:>10.3f} {s.worst_ece:>10.3f}")
    print("\n== fit on history of a county unlike the defaults (FIELD)")
    for s in summaries:
        print(f"  {s.name:<32} {s.fitted}")
    print("\n== the cost of the context (same cases, the other way round)")
    print(f"  {'topology':<32} {'singles, storm: min loc/oracle':>31} "
          f"{'doubles, calm: both found':>26}")
    for s in summaries:
        print(f"  {s.name:<32} {s.storm_worst_ratio:>31.3f} {s.double_calm:>25.1f}%")


def imported_topologies(workdir: Path) -> list[tuple[str, Topology]]:
    out: list[tuple[str, Topology]] = []
    if not FEEDERS.is_dir():
        print(f"(public feeders not found at {FEEDERS}; skipping them)")
        return out
    try:
        from outage_sentinel.importers import import_topology
    except ImportError:
        print("(importers not available; skipping public feeders)")
        return out

    for fmt, src in (("glm", FEEDERS / "taxonomy" / "R4-12.47-1.glm"),
                     ("glm", FEEDERS / "taxonomy" / "R2-12.47-2.glm"),
                     ("opendss", FEEDERS / "ieee123")):
        outdir = workdir / src.stem
        import_topology(fmt, str(src), str(outdir))
        out.append((f"{src.name} (imported)", load_bundle(outdir)))
    return out


def scale_case(outdir: Path, feeders: int, nodes_per_feeder: int, cases: int) -> None:
    """Load + index a province bundle in a fresh process; report time, peak RSS, latency."""
    bundle = outdir / f"province-{feeders}x{nodes_per_feeder}"
    if not (bundle / "crews.csv").exists():
        t0 = time.perf_counter()
        write_province(bundle, feeders=feeders, nodes_per_feeder=nodes_per_feeder)
        print(f"  (wrote {bundle} in {time.perf_counter() - t0:.1f} s)")
    code = f"""
import resource, sys, time, random, statistics, math
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
from outage_sentinel.topology import load_bundle
from outage_sentinel.localise import localise, Evidence
import locate_bench as lb
t0 = time.perf_counter()
topo = load_bundle({str(bundle)!r})
load_s = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rng = random.Random(3)
roots = [i for i, kind in enumerate(topo.kinds) if kind == 'source']
times = []
model = lb.Model(0.3, 1.0)
feeders = {{}}
for _ in range({cases}):
    r = rng.choice(roots)
    f = feeders.get(r) or feeders.setdefault(r, lb.Feeder(topo, r))
    d = rng.choice(f.devices)
    case = lb.sample(f, [d], model, rng)
    ev = Evidence(dead=case.dead, alive=case.alive, calls=case.calls,
                  open_devices=case.open_devices)
    t1 = time.perf_counter()
    localise(topo, ev)
    times.append((time.perf_counter() - t1) * 1000)
times.sort()
p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
n_tx = len(topo.transformers)
print(f"  nodes {{len(topo.ids)}}, transformer areas {{n_tx}}, feeders {{len(roots)}}")
print(f"  load + index {{load_s:.2f}} s, peak RSS after load {{rss:.0f}} MB, "
      f"after {{len(times)}} cases {{rss2:.0f}} MB")
print(f"  localisation (30% missing, false reports): median {{statistics.median(times):.3f}} ms, "
      f"p99 {{p99:.3f}} ms")
"""
    print(f"\n== scale: synthetic province, {feeders} feeders x {nodes_per_feeder} nodes")
    sys.stdout.flush()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT),
                   env={**os.environ, "PYTHONHASHSEED": "0"})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer cases, same topologies")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-scale", action="store_true", help="skip the 1,000,000-node case")
    ap.add_argument("--scale-only", action="store_true", help="run only the 1,000,000-node case")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out"),
                    help="where generated bundles are cached")
    args = ap.parse_args(argv)
    max_cases = 400 if args.quick else 1000
    out = Path(args.out)
    print(f"locate benchmark ({'quick' if args.quick else 'full'}), seed {args.seed}, "
          f"python {sys.version.split()[0]}")
    if args.scale_only:
        scale_case(out, 1000, 1000, 300 if args.quick else 2000)
        return 0
    summaries: list[Summary] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, topo in imported_topologies(Path(tmp)):
            summaries.append(bench_topology(name, topo, max_cases, args.seed))
    rec = feeder_records(args.seed, 10_000, "SYN")
    topo = topology_from_records(rec["nodes"], rec["edges"], rec["villages"])
    summaries.append(bench_topology("synthetic feeder (10k nodes)", topo, max_cases, args.seed))
    rec = urban_records(args.seed)
    topo = topology_from_records(rec["nodes"], rec["edges"], rec["villages"])
    summaries.append(bench_topology("urban, breaker per transformer", topo, max_cases,
                                    args.seed))
    rec = rural_records(args.seed)
    topo = topology_from_records(rec["nodes"], rec["edges"], rec["villages"])
    summaries.append(bench_topology("small rural feeders, fused branches", topo, max_cases,
                                    args.seed))
    print_summary(summaries)
    sys.stdout.flush()
    if not args.no_scale:
        scale_case(out, 1000, 1000, 300 if args.quick else 2000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
