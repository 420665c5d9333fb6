"""Learning the localiser's evidence reliabilities from close-outs (pure core).

A close-out with the device the crew confirmed turns an incident into a solved case: its
evidence and the truth. With the truth known, every reliability of the model
(:class:`~outage_sentinel.localise.LocaliserParams`) is a rate over observable counts:

* **dead detection**: of the areas below the operated devices, how many were reported dead
  (the missing rate is its complement). The localiser integrates the rate out per case under a
  Beta prior; the fit moves that prior's mean to the county's own figure and, with enough
  cases, its spread to the spread seen between cases beyond the binomial noise of their few
  areas (beta-binomial method of moments);
* **false dead reports** per energised area (``false_dead_per_area``): dead reports from areas
  that were in fact energised, over the energised areas of the same feeders;
* **alive reports**: of the energised areas, how many sent one (the Beta prior's mean), and of
  the dead areas (``alive_false_rate``), over cases with any alive report;
* **trouble calls** per customer of a dead area (the Gamma prior's mean, its shape kept); of an
  energised area, the lone calls per customer (``spurious_call_rate``) and the areas that
  called more than once, per customer (``lv_fault_rate``: a fault below the transformer;
  a lone call is counted as spurious, two or more as such a fault); counted only over cases
  that had calls at all: a case without a single call had no call source, which is not
  "nobody called";
* **devices reported open**: of the operated devices, how many were reported open, and of the
  others on the same feeders, over cases with any device reported open;
* **misfiled evidence** (``misfiled_rate``): how much more often the energised areas beside the
  true region look dead than the same case's other energised areas (:func:`_misfiled_rate`).

Each source may be absent from a case (no AMI readings, no trouble-call feed, no SCADA): a case
with nothing at all from a source says nothing about that source's rates, so it is left out of
them ("no data" is not "reported nothing").

Each rate is a posterior mean under a prior equivalent to ``PRIOR_WEIGHT`` pseudo-observations
centred on the current parameter, so 20 cases already move it and 2,000 settle it; a rare
event's rate per area or customer is the posterior median under a log-normal prior around the
current value (:func:`_rare_rate`), where 20 observations would be a fraction of one event.

**Fault rate per device kind** (``kind_factors``): close-outs carry no exposure (the windows in
which nothing happened), so the absolute rate cannot be fitted from them, but the *relative*
rate per kind can: of the devices on the feeders of the cases, how often each kind was the one
the crew found, against how many of that kind there were. The factor of a kind is its rate over
the mean protective device's, a Gamma-Poisson posterior mean with ``KIND_PRIOR_FAULTS``
pseudo-faults at the current factor, so a kind seen in a handful of close-outs moves little.

**The windows' fault rates** (``storm_fault_prior`` and ``storm_rate_shape`` from the
close-outs made in a declared storm, ``fault_prior`` and ``fault_rate_shape`` from the others;
a case without a window is a calm one): how many devices each close-out found per feeder
(:mod:`outage_sentinel.storm_rate`).

:func:`calibration_map` learns a monotone map from the probability the localiser states to the
frequency it is right, from the same history (pool-adjacent-violators over the stated
probabilities); :func:`expected_calibration_error` and :func:`reliability` measure it.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from outage_sentinel.localise import (
    Evidence,
    FaultContext,
    LocaliserParams,
    calibrated,
    calibration_for,
    calibration_key,
    case_feeders,
    devices_per_feeder,
    false_dead_rate,
    kind_factor,
    named_nodes,
    narrowed,
    ranks_beside,
    shared_message,
    window_of,
)
from outage_sentinel.storm_rate import (
    fit_calm_rate,
    fit_count_tilts,
    fit_storm_rate,
    storm_counts,
    window_counts,
)
from outage_sentinel.topology import DEVICE_KINDS, PROTECTIVE_KINDS, Topology

#: The parameters :func:`fit` sets (what a parameters file holds, with ``calibration``).
FITTED_KEYS = ("dead_detect_a", "dead_detect_b", "false_dead_per_area", "false_dead_shape",
               "alive_report_a", "alive_report_b", "alive_false_rate", "call_rate_rate",
               "spurious_call_rate", "lv_fault_rate", "open_report_true", "open_report_false",
               "storm_fault_prior", "storm_rate_shape", "misfiled_rate", "fault_prior",
               "fault_rate_shape")

#: Pseudo-observations the current value of a rate is worth (per count it is estimated from).
PRIOR_WEIGHT = 20.0

#: Width (e-folds, one standard deviation) of the log-normal prior of a rare event's rate
#: around its current value (:func:`_rare_rate`).
RARE_PRIOR_SD = 3.0

#: How many times the common false dead rate makes an area's own rate worth keeping.
FLAKY_RATIO = 3.0

#: How unlikely an area's false reports must be under the common rate to give it its own.
FLAKY_P = 1e-4

#: Cases needed before the spread of false reports between them is trusted.
MIN_CASES_FOR_SPREAD = 20

#: Pseudo-faults the current relative fault rate of a device kind is worth.
KIND_PRIOR_FAULTS = 5.0

#: Standard errors by which the areas beside the true regions must look dead more often than
#: the others before a misfiled rate is fitted (a false rate costs the calm adjacent doubles).
MISFILED_SIGMAS = 3.0

#: Kinds whose relative fault rate is fitted (the crew may confirm any of them; a transformer
#: is an area's own fault: its drop-out fuse, the transformer itself).
FAULT_KINDS = ("source", "breaker", "recloser", "sectionalizer", "fuse", "switch", "transformer")


#: The keys of a history case that carry its window's weather (as ``locate`` reads them).
CONTEXT_KEYS = ("storm", "faults_elsewhere", "devices_elsewhere")


#: The kind a history case's area references (dead, alive, calls) must name.
AREA_KIND = frozenset({"transformer"})


class HistoryError(ValueError):
    """A history case that cannot be used; the message names it."""


@dataclass(frozen=True)
class SolvedCase:
    """One close-out: its evidence (already resolved to areas and devices) and the truth."""

    dead: frozenset[str]
    alive: frozenset[str]
    calls: Mapping[str, int]
    open_devices: frozenset[str]
    truth: tuple[str, ...]


def solved_case(topology: Topology, evidence: Evidence, truth: Iterable[str],
                where: str) -> SolvedCase:
    """Resolve a case's ids (areas, meters, customers, devices) through ``topology``. A truth
    that is no device (where the crew found the fault: a junction, a line, an area) stands for
    the nearest protective device above it, the one that operated. A name several nodes share
    means the one on the case's line (:class:`_CaseRefs`)."""
    truth = list(truth)
    refs = _CaseRefs(topology, where, case_feeders(topology, (
        *truth, *evidence.dead, *evidence.alive, *evidence.calls, *evidence.open_devices)))
    devices = refs.truth(truth)
    calls: dict[str, int] = {}
    for ref, n in evidence.calls.items():
        for a in refs.areas([ref]):
            calls[a] = calls.get(a, 0) + n
    opened = frozenset(d for d in (refs.one(r, None, "open device")
                                   for r in evidence.open_devices) if d)
    return SolvedCase(refs.areas(evidence.dead), refs.areas(evidence.alive), calls, opened,
                      devices)


@dataclass(frozen=True)
class _CaseRefs:
    """The nodes one history case's references name. A name several nodes share means the
    one on the ``feeders`` the case's other references are on; still several, the case is
    refused naming them (:class:`HistoryError`): a guess would teach the wrong device."""

    topology: Topology
    where: str
    feeders: frozenset[str]

    def one(self, ref: str, kinds: frozenset[str] | None, what: str) -> str | None:
        """The node of ``kinds`` ``ref`` names (None: none of them)."""
        t, feeders = self.topology, self.feeders
        nodes = narrowed(named_nodes(t, ref, kinds), lambda n: t.feeder_of(n) in feeders)
        if len(nodes) > 1:
            raise HistoryError(f"{self.where}: {what} {shared_message(t, ref, nodes)}")
        return nodes[0] if nodes else None

    def areas(self, refs: Iterable[str]) -> frozenset[str]:
        """The transformer areas of ``refs`` (the others are left out, as before)."""
        return frozenset(a for a in (self.one(r, AREA_KIND, "area") for r in refs) if a)

    def truth(self, refs: Iterable[str]) -> tuple[str, ...]:
        """The devices the crew found (:class:`HistoryError` for one that is no energised
        node, or for none)."""
        t = self.topology
        devices: list[str] = []
        for ref in refs:
            nid = self.one(ref, None, "truth device")
            if nid is None or t.tin[t.pos[nid]] < 0:
                raise HistoryError(f"{self.where}: truth device {ref!r} is not an energised "
                                   "node of the topology")
            if t.nodes[nid].kind not in DEVICE_KINDS | PROTECTIVE_KINDS | {"transformer"}:
                # where the crew found the fault (a junction, a line): the device that
                # operated is the nearest protective device above it (a transformer is the
                # area's own fault, a hypothesis of its own)
                nid = t.protective_upstream(nid) or nid
            if nid not in devices:
                devices.append(nid)
        if not devices:
            raise HistoryError(f"{self.where}: truth has no device")
        return tuple(devices)


def downstream(topology: Topology, node_id: str) -> list[str]:
    """Transformer areas below ``node_id`` (itself included if it is one)."""
    i = topology.pos[node_id]
    tins = topology.transformer_tins
    lo = bisect.bisect_left(tins, topology.tin[i])
    hi = bisect.bisect_right(tins, topology.tout[i])
    by_tin = topology.transformer_by_tin
    return [topology.ids[by_tin[r]] for r in range(lo, hi)]


@dataclass
class _Counts:
    """Sufficient statistics of the history, per reliability: (hits, trials)."""

    #: per case: (areas below the true devices reported dead, areas below them)
    dead_cases: list[tuple[int, int]]
    dead: list[int]
    false_dead: list[int]
    #: per case: (false dead reports, energised areas), for their spread between windows
    false_cases: list[tuple[int, int]]
    alive: list[int]
    alive_false: list[int]
    calls_dead: list[float]
    #: (calls from energised areas that called once, energised customers); (energised
    #: areas that called more than once: low-voltage faults, energised customers)
    calls_alive: list[float]
    lv_faults: list[float]
    open_true: list[int]
    open_false: list[int]
    #: per device kind: (times it was the device found, devices of that kind exposed)
    kinds: dict[str, list[int]]
    #: per area: false dead reports; per area: cases it was dead in; per feeder root: cases
    area_false: dict[str, int]
    area_dead: dict[str, int]
    root_cases: dict[str, int]
    #: the energised areas beside the true region that look dead (reported dead or calling):
    #: (such, areas, such expected at the case's rate elsewhere, its variance); and the dead
    #: areas that look dead: (such, areas)
    beside: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    dead_look: list[int] = field(default_factory=lambda: [0, 0])

    @classmethod
    def empty(cls) -> _Counts:
        return cls([], [0, 0], [0, 0], [], [0, 0], [0, 0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0],
                   [0, 0], [0, 0], {k: [0, 0] for k in FAULT_KINDS}, {}, {}, {})


def _kinds_below(topology: Topology, root: str, memo: dict[str, dict[str, int]]
                 ) -> dict[str, int]:
    """Devices per kind of the energised component of ``root`` that have areas below them
    (the devices a crew could find; memoised per root)."""
    out = memo.get(root)
    if out is None:
        i = topology.pos[root]
        tins, tin, tout = topology.transformer_tins, topology.tin, topology.tout
        out = {}
        for j in topology.order[tin[i]:tout[i] + 1]:
            kind = topology.kinds[j]
            if kind not in FAULT_KINDS or topology.nodes[topology.ids[j]].normally_open:
                continue
            if bisect.bisect_right(tins, tout[j]) > bisect.bisect_left(tins, tin[j]):
                out[kind] = out.get(kind, 0) + 1
        memo[root] = out
    return out


def _add(pair: list[Any], hits: float, trials: float) -> None:
    pair[0] += hits
    pair[1] += trials


def count(topology: Topology, cases: Sequence[SolvedCase]) -> _Counts:
    """The counts every rate is estimated from."""
    c = _Counts.empty()
    devices = devices_per_feeder(topology)
    memo: dict[str, dict[str, int]] = {}
    for case in cases:
        dead = set().union(*(downstream(topology, d) for d in case.truth))
        roots = {topology.ids[topology.root[topology.pos[d]]] for d in case.truth}
        _count_kinds(topology, case, roots, c.kinds, memo)
        feeder = set().union(*(downstream(topology, r) for r in roots))
        alive = feeder - dead
        if dead:
            hits = len(case.dead & dead)
            _add(c.dead, hits, len(dead))
            c.dead_cases.append((hits, len(dead)))
        _add(c.false_dead, len(case.dead & alive), len(alive))
        for root in roots:
            c.root_cases[root] = c.root_cases.get(root, 0) + 1
        for a in dead:
            c.area_dead[a] = c.area_dead.get(a, 0) + 1
        for a in case.dead & alive:
            c.area_false[a] = c.area_false.get(a, 0) + 1
        if alive:
            c.false_cases.append((len(case.dead & alive), len(alive)))
        if case.alive:  # a case without any alive report had no such source
            _add(c.alive, len(case.alive & alive), len(alive))
            _add(c.alive_false, len(case.alive & dead), len(dead))
        if case.calls:  # a case without calls had no call source
            _add(c.calls_dead, sum(n for a, n in case.calls.items() if a in dead),
                 topology.customers_of(dead))
            stray = [n for a, n in case.calls.items() if a in alive and n > 0]
            customers = topology.customers_of(alive)
            _add(c.calls_alive, sum(1 for n in stray if n == 1), customers)
            _add(c.lv_faults, sum(1 for n in stray if n > 1), customers)
        _count_beside(topology, case, dead, alive, c)
        if case.open_devices:  # no device reported open at all: no telemetry, not a miss
            truth = set(case.truth)
            _add(c.open_true, len(case.open_devices & truth), len(truth))
            _add(c.open_false, len(case.open_devices - truth),
                 max(sum(devices.get(topology.feeder_of(r), 0) for r in roots) - len(truth), 1))
    return c


def beside_region(topology: Topology, devices: Iterable[str]) -> set[str]:
    """The areas just before and just after the regions of ``devices`` in the feeder's
    order (the neighbours :attr:`LocaliserParams.misfiled_rate` is about), outside them and on
    the same feeder."""
    tins, by_tin, ids = topology.transformer_tins, topology.transformer_by_tin, topology.ids
    positions = [topology.pos[d] for d in devices]
    spans = [(bisect.bisect_left(tins, topology.tin[i]),
              bisect.bisect_right(tins, topology.tout[i])) for i in positions]

    def same_feeder(r: int) -> bool:  # as the region it is beside
        return any(r in (lo - 1, hi) and topology.root[by_tin[r]] == topology.root[i]
                   for (lo, hi), i in zip(spans, positions, strict=True))

    return {ids[by_tin[r]] for r in ranks_beside(spans)
            if 0 <= r < len(by_tin) and same_feeder(r)}


def _count_beside(topology: Topology, case: SolvedCase, dead: set[str], alive: set[str],
                  c: _Counts) -> None:
    """How often the energised areas beside the true region look dead (a dead report or a
    call), against the other energised areas and the dead ones."""
    def looks_dead(areas: set[str]) -> int:
        return sum(1 for a in areas if a in case.dead or case.calls.get(a, 0) > 0)

    near = beside_region(topology, case.truth) & alive
    away = alive - near
    if near and away:  # against the same case's other areas: a small feeder's areas report
        # falsely more often, and every region's neighbours are on its own feeder
        r0, m = looks_dead(away) / len(away), len(near)
        # the variance of the count seen less the one expected: binomial at r0, plus r0's
        # own, estimated from the case's other areas
        var = r0 * (1.0 - r0) * (m + m * m / len(away))
        for k, v in enumerate((looks_dead(near), m, r0 * m, var)):
            c.beside[k] += v
    _add(c.dead_look, looks_dead(dead), len(dead))


def _misfiled_rate(c: _Counts, current: float) -> float:
    """The share of the areas beside the true region that carry its evidence: how much more
    often they look dead than the same cases' other energised areas (r1 against r0), over how
    much more often a dead area does (q): (r1 - r0) / (q - r0). Zero unless the excess is over
    ``MISFILED_SIGMAS`` standard errors (the neighbours of any region are a few areas per case,
    and noise must not buy a rate); shrunk to ``current`` with ``PRIOR_WEIGHT`` pseudo-areas."""
    (seen, n1, expected, var), (hq, nq) = c.beside, c.dead_look
    if not (n1 and nq):
        return current
    r1, r0, q = seen / n1, expected / n1, hq / nq
    excess = seen - expected > MISFILED_SIGMAS * math.sqrt(max(var, 1.0))
    share = (r1 - r0) / (q - r0) if q > r0 and excess else 0.0
    rate = (n1 * min(max(share, 0.0), 0.5) + PRIOR_WEIGHT * current) / (n1 + PRIOR_WEIGHT)
    return float(f"{rate:.6g}")


def _count_kinds(topology: Topology, case: SolvedCase, roots: set[str],
                 kinds: dict[str, list[int]], memo: dict[str, dict[str, int]]) -> None:
    """The kinds of the devices found, and of every device they could have been."""
    for root in roots:
        for kind, n in _kinds_below(topology, root, memo).items():
            kinds[kind][1] += n
    for d in case.truth:
        kind = topology.kinds[topology.pos[d]]
        if kind in kinds:
            kinds[kind][0] += 1


def _kind_factors(kinds: Mapping[str, Sequence[int]], base: LocaliserParams
                  ) -> tuple[tuple[str, float], ...]:
    """Each kind's fault rate relative to the mean protective device (see the module
    docstring); kinds never exposed keep their factor and are left out."""

    hits = sum(kinds[k][0] for k in kinds if k in PROTECTIVE_KINDS)
    exposed = sum(kinds[k][1] for k in kinds if k in PROTECTIVE_KINDS)
    if not hits or not exposed:
        return base.kind_factors
    mean = hits / exposed
    out = dict(base.kind_factors)
    for kind, (found, n) in sorted(kinds.items()):
        if n:
            prior = kind_factor(base, kind)
            # six significant digits, not decimals: a rare kind's factor (an area's own
            # fault, 1e-7 where the history has none) must not round to 0
            rate = (found + KIND_PRIOR_FAULTS * prior) / (n * mean + KIND_PRIOR_FAULTS)
            if rate > 0:  # a kind switched off (factor 0) and never found stays off
                out[kind] = float(f"{rate:.6g}")
    return tuple(sorted(out.items()))


def _flaky_areas(topology: Topology, c: _Counts, common: float
                 ) -> dict[str, tuple[int, int]]:
    """The areas whose false dead reports, (hits, energised cases), set them apart: more
    than the common rate could give by chance (Poisson tail below ``FLAKY_P``: thousands of
    areas are tested, so one or two chance reports never qualify) and a rate of their own
    (Beta posterior mean with ``PRIOR_WEIGHT`` pseudo-cases at the common rate) of more than
    ``FLAKY_RATIO`` times the common one."""
    out: dict[str, tuple[int, int]] = {}
    for area, hits in c.area_false.items():
        root = topology.ids[topology.root[topology.pos[area]]]
        n = c.root_cases.get(root, 0) - c.area_dead.get(area, 0)
        if n <= 0 or _poisson_tail(hits, n * common) >= FLAKY_P:
            continue
        if _rate((hits, n), common, lo=1e-6, hi=0.5) > FLAKY_RATIO * common:
            out[area] = (hits, n)
    return out


def _poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    term, below = math.exp(-lam), 0.0
    for j in range(k):
        below += term
        term *= lam / (j + 1)
    return max(0.0, 1.0 - below)


def _false_shape(per_case: Sequence[tuple[int, int]], current: float) -> float:
    """The Beta shape of the window's false dead rate from the spread of the false reports
    between cases (method of moments for a beta-binomial: Var(x/m) = p(1-p)/m (1 + (m-1) rho),
    rho = 1/(a + b + 1)); 0 (a known rate) when they spread no more than independent reports
    would, ``current`` below ``MIN_CASES_FOR_SPREAD`` cases."""
    if len(per_case) < MIN_CASES_FOR_SPREAD:
        return current
    p = sum(x for x, _ in per_case) / sum(m for _, m in per_case)
    if not 0.0 < p < 1.0:
        return current
    inv_m = statistics.fmean(1.0 / m for _, m in per_case)
    spread = statistics.pvariance([x / m for x, m in per_case]) / (p * (1.0 - p))
    rho = (spread - inv_m) / (1.0 - inv_m) if inv_m < 1.0 else 0.0
    if rho <= 1e-6:
        return 0.0
    return round(min(max(p * (1.0 / rho - 1.0), 0.05), 1e3), 6)


def _rate(pair: Sequence[float], prior: float, weight: float = PRIOR_WEIGHT,
          lo: float = 1e-9, hi: float = 1.0 - 1e-9) -> float:
    """Posterior mean of a rate with ``weight`` pseudo-trials at ``prior``."""
    hits, trials = pair
    return min(hi, max(lo, (hits + prior * weight) / (trials + weight)))


def _rare_rate(pair: Sequence[float], prior: float, lo: float, hi: float) -> float:
    """A rare event's rate per area or customer (a false report, a stray call, a stale
    alive reading): the posterior median under a log-normal prior centred on ``prior``,
    ``RARE_PRIOR_SD`` e-folds wide, of ``hits`` events in ``trials`` (binomial), on a grid of
    the log-rate. The Beta posterior mean of :func:`_rate` with ``PRIOR_WEIGHT`` pseudo-trials
    gives such a prior the weight of a small fraction of one event (20 customers at 1e-5), so
    20 close-outs without a stray call among 50,000 customers took the rate to its floor,
    1e-8, where they say only that it is under ~2e-5, and the localiser read the next stray
    call as a second fault; a prior worth whole events (pseudo-trials at the rate) has a
    light tail instead, and a few events at 30 times the prior's rate hardly moved it. The
    log-normal lets zero events in few trials leave the rate where it was, and a handful of
    events move it by orders of magnitude. No trials: ``prior``."""
    hits, trials = pair
    if trials <= 0:
        return min(max(prior, lo), hi)
    centre = math.log(min(max(prior, lo), hi))
    # the whole prior, not cut at the bounds (a prior cut below its centre moves the answer
    # up on no evidence); only rates of 1 and more are left out
    grid = [x for x in (centre + RARE_PRIOR_SD * (k / 20.0 - 6.0) for k in range(241))
            if x < -1e-9]
    logs = [-0.5 * ((x - centre) / RARE_PRIOR_SD) ** 2 + hits * x
            + (trials - hits) * math.log1p(-math.exp(x)) for x in grid]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    x = sum(w * g for w, g in zip(weights, grid, strict=True)) / sum(weights)
    return min(hi, max(lo, math.exp(x)))


def _detect_concentration(per_case: Sequence[tuple[int, int]], m: float, current: float
                          ) -> float:
    """The concentration of the Beta the detection rate varies by between cases, by the
    beta-binomial method of moments: the spread of the per-case rates x/n about ``m`` less the
    spread that drawing n areas at one rate gives by itself (a case of one or two areas is
    mostly that), shrunk towards ``current``; ``current`` with fewer than two cases of two
    areas or more."""
    cases = [(x, n) for x, n in per_case if n >= 2]
    if len(cases) < 2 or not 0.0 < m < 1.0:
        return current
    spread = sum((x / n - m) ** 2 for x, n in cases)
    sampling = sum(m * (1 - m) / n for _, n in cases)
    room = sum(m * (1 - m) * (n - 1) / n for _, n in cases)
    rho = (spread - sampling) / room  # the intra-case correlation, 1 / (concentration + 1)
    seen = 200.0 if rho <= 1 / 201 else min(max(1 / rho - 1, 0.5), 200.0)
    w = len(cases) / (len(cases) + PRIOR_WEIGHT)
    return w * seen + (1 - w) * current


@dataclass(frozen=True)
class Fit:
    """Fitted parameters, what changed (for the log), and how many cases they rest on."""

    params: LocaliserParams
    changes: tuple[str, ...]
    cases: int


def fit(topology: Topology, cases: Sequence[SolvedCase], base: LocaliserParams,
        contexts: Sequence[FaultContext | None] | None = None, window_rates: bool = True
        ) -> Fit:
    """Fit the evidence reliabilities of ``base`` to ``cases`` (see the module docstring),
    and (``window_rates``) the fault rates of a calm window and of a declared storm from how
    many devices the close-outs found per feeder (:mod:`outage_sentinel.storm_rate`), each
    case in its window (``contexts``; none = calm windows without the county's figures)."""
    c = count(topology, cases)
    updates: dict[str, Any] = (_window_rates(topology, cases, base, contexts)
                               if window_rates else {})
    mean = base.dead_detect_a / (base.dead_detect_a + base.dead_detect_b)
    m = _rate(c.dead, mean)
    conc = _detect_concentration(c.dead_cases, m, base.dead_detect_a + base.dead_detect_b)
    updates["dead_detect_a"], updates["dead_detect_b"] = m * conc, (1 - m) * conc
    feeder_areas = max(c.false_dead[1] / max(len(cases), 1), 1.0)
    prior_false = false_dead_rate(base, feeder_areas)
    common = _rare_rate(c.false_dead, prior_false, lo=1e-6, hi=0.5)
    flaky = _flaky_areas(topology, c, common)
    rest = [c.false_dead[0] - sum(h for h, _ in flaky.values()),
            c.false_dead[1] - sum(n for _, n in flaky.values())]
    updates["false_dead_per_area"] = _rare_rate(rest, prior_false, lo=1e-6, hi=0.5)
    updates["false_dead_areas"] = tuple(sorted(
        (a, round(_rate((h, n), common, lo=1e-6, hi=0.5), 6)) for a, (h, n) in flaky.items()))
    updates["false_dead_shape"] = _false_shape(c.false_cases, base.false_dead_shape)
    a_mean = base.alive_report_a / (base.alive_report_a + base.alive_report_b)
    a_conc = base.alive_report_a + base.alive_report_b
    am = _rate(c.alive, a_mean)
    updates["alive_report_a"], updates["alive_report_b"] = am * a_conc, (1 - am) * a_conc
    updates["alive_false_rate"] = _rare_rate(c.alive_false, base.alive_false_rate, lo=1e-7,
                                             hi=0.2)
    call_mean = base.call_rate_shape / base.call_rate_rate
    cm = _rate(c.calls_dead, call_mean, lo=1e-4, hi=5.0)
    updates["call_rate_rate"] = base.call_rate_shape / cm
    updates["spurious_call_rate"] = _rare_rate(c.calls_alive, base.spurious_call_rate,
                                               lo=1e-8, hi=0.05)
    updates["lv_fault_rate"] = _rare_rate(c.lv_faults, base.lv_fault_rate, lo=1e-9, hi=0.05)
    updates["open_report_true"] = _rate(c.open_true, base.open_report_true, lo=0.01, hi=0.999)
    updates["open_report_false"] = _rare_rate(c.open_false, base.open_report_false, lo=1e-5,
                                              hi=0.2)
    updates["kind_factors"] = _kind_factors(c.kinds, base)
    updates["misfiled_rate"] = _misfiled_rate(c, base.misfiled_rate)
    params = replace(base, **updates)
    return Fit(params, tuple(_changes(base, params)), len(cases))


def _window_rates(topology: Topology, cases: Sequence[SolvedCase], base: LocaliserParams,
                  contexts: Sequence[FaultContext | None] | None) -> dict[str, Any]:
    """The storm's and the calm window's fault rates (mean and shape of each Beta) fitted to
    how many devices the close-outs found per feeder."""
    truths = [case.truth for case in cases]
    windows = list(contexts) if contexts is not None else [None] * len(cases)
    out: dict[str, Any] = {}
    storms = storm_counts(topology, truths, windows)
    out["storm_fault_prior"], out["storm_rate_shape"] = fit_storm_rate(
        storms, base.storm_fault_prior, base.storm_rate_shape)
    calm = window_counts(topology, truths, windows, storm=False)
    out["fault_prior"], out["fault_rate_shape"] = fit_calm_rate(
        calm, replace(base, **out))
    out["count_tilts"] = fit_count_tilts(topology, truths, windows, replace(base, **out))
    return out


def fitted_values(params: LocaliserParams) -> dict[str, Any]:
    """What :func:`fit_with_calibration` sets in ``params``, as plain values under the keys of
    the config's ``localisation`` section (what a parameters file holds, and the daemon keeps
    of its last refit)."""
    values: dict[str, Any] = {k: float(getattr(params, k)) for k in FITTED_KEYS}
    values["kind_factors"] = {k: float(f) for k, f in params.kind_factors}
    values["false_dead_areas"] = {a: float(r) for a, r in params.false_dead_areas}
    values["calibration"] = [list(k) for k in params.calibration]
    values["calibration_maps"] = {key: [list(k) for k in knots]
                                  for key, knots in params.calibration_maps}
    values["count_tilts"] = {window: [float(t) for t in tilts]
                             for window, tilts in params.count_tilts}
    return values


def _changes(before: LocaliserParams, after: LocaliserParams) -> list[str]:

    out = []
    for kind in FAULT_KINDS:
        a, b = kind_factor(before, kind), kind_factor(after, kind)
        if abs(a - b) > 1e-9:
            out.append(f"fault rate of a {kind} (relative): {a:.3g} -> {b:.3g}")
    if before.false_dead_areas != after.false_dead_areas:
        worst = sorted(after.false_dead_areas, key=lambda ar: -ar[1])[:3]
        out.append(f"areas with a false dead rate of their own: {len(before.false_dead_areas)} "
                   f"-> {len(after.false_dead_areas)}"
                   + "".join(f"; {a} {r:.3g}" for a, r in worst))
    for window, tilts in after.count_tilts:
        if dict(before.count_tilts).get(window) != tilts:
            shares = ", ".join(f"{k}{'+' if k == len(tilts) else ''}: x{math.exp(t):.3g}"
                               for k, t in enumerate(tilts, 1))
            out.append(f"devices per feeder in a {window} window (vs the rate's Beta): {shares}")
    for f in fields(LocaliserParams):
        a, b = getattr(before, f.name), getattr(after, f.name)
        if isinstance(a, float) and isinstance(b, float) and abs(a - b) > 1e-12 * max(
                abs(a), abs(b), 1e-300):
            out.append(f"{f.name}: {a:.4g} -> {b:.4g}")
    return out


# -- calibration --------------------------------------------------------------------------------

#: Pseudo-cases at the stated probability each block of a calibration map starts from.
MAP_PRIOR_CASES = 2.0
#: How many standard errors of the held-out gain a map must beat no map by to be kept; on a
#: history of fewer than ``MAP_SMALL`` answers, ``MAP_MIN_GAIN_SMALL``.
MAP_MIN_GAIN = 1.0
MAP_SMALL = 40
MAP_MIN_GAIN_SMALL = 2.0


def calibration_map(pairs: Sequence[tuple[float, bool]], bins: int = 10
                    ) -> tuple[tuple[float, float], ...]:
    """A monotone map from stated probability to observed frequency, as knots ``(p, q)`` to
    interpolate between: pool-adjacent-violators over the pairs sorted by ``p``; each pooled
    block (its frequency starting from ``MAP_PRIOR_CASES`` pseudo-cases at the probability it
    stated, so a block of a few cases keeps about what was stated) is flat from its lowest to
    its highest stated probability, with straight lines between blocks; anchored at (0, 0),
    flat above the highest block (stated probabilities crowd near 1: an anchor at (1, 1) would
    undo the correction exactly where the localiser is most overconfident). Empty for fewer
    than ``bins`` pairs."""
    if len(pairs) < bins:
        return ()
    blocks: list[list[float]] = []  # [lowest p, highest p, hits, n, sum of p]
    tied: dict[float, list[float]] = {}  # equal stated probabilities are one block
    for p, ok in pairs:
        t = tied.setdefault(p, [0.0, 0.0])
        t[0] += 1.0 if ok else 0.0
        t[1] += 1.0
    for p, (hits, n) in sorted(tied.items()):
        blocks.append([p, p, hits, n, p * n])
        while len(blocks) > 1 and _freq(blocks[-2]) >= _freq(blocks[-1]):
            last = blocks.pop()
            blocks[-1][1] = last[1]
            for j in (2, 3, 4):
                blocks[-1][j] += last[j]
    out: list[tuple[float, float]] = [(0.0, 0.0)]
    k = MAP_PRIOR_CASES
    for lo, hi, hits, n, stated in blocks:
        # the block's frequency with K pseudo-cases at what it stated: a block of a few cases
        # keeps about what the localiser said, a block of hundreds says what happened
        q = max(round((hits + stated / n * k) / (n + k), 6), out[-1][1])  # non-decreasing
        for p in (lo, hi):
            if p > out[-1][0]:
                out.append((p, q))  # p unrounded: stated probabilities crowd near 1
            else:
                out[-1] = (out[-1][0], max(out[-1][1], q))
    return tuple(out)


def platt_map(pairs: Sequence[tuple[float, bool]], points: int = 41
              ) -> tuple[tuple[float, float], ...]:
    """A two-parameter map, logit q = alpha + beta logit p (logistic regression of "right" on
    the stated log-odds, beta kept > 0 so it stays monotone, shrunk towards the identity), as
    knots on a log-odds grid (the format :func:`calibration_map` gives). It bends a whole
    range at once: it corrects over- and under-confidence together where pooled blocks would
    need hundreds of cases each. Empty for fewer than 10 pairs."""
    if len(pairs) < 10:
        return ()
    xs = [math.log(min(max(p, 1e-6), 1 - 1e-6) / (1 - min(max(p, 1e-6), 1 - 1e-6)))
          for p, _ in pairs]
    ys = [1.0 if ok else 0.0 for _, ok in pairs]
    alpha, beta = _logistic(xs, ys)
    out: list[tuple[float, float]] = [(0.0, 0.0)]
    for k in range(points):
        x = -8.0 + 20.0 * k / (points - 1)
        p = 1.0 / (1.0 + math.exp(-x))
        q = round(_sigmoid(alpha + beta * x), 6)
        out.append((p, max(q, out[-1][1])))
    return tuple(out)


def _sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without overflow: the map's grid reaches log-odds of -8 to 12, and a
    steep fit (before :func:`_logistic` damped its steps, beta 1,800) put z past -709, where
    e^-z is out of range."""
    z = min(max(z, -700.0), 700.0)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logistic(xs: Sequence[float], ys: Sequence[float], ridge: float = 1.0
              ) -> tuple[float, float]:
    """(alpha, beta) of a logistic regression by Newton's method, with a ridge of ``ridge``
    pseudo-observations' worth pulling towards the identity (0, 1). Each step is halved
    until the penalised loss falls: a full step overshot on histories whose answers stated
    at 1.0 were wrong more often than those at 0.9998, and the map it gave was a cliff
    (beta 1,800)."""
    a, b = 0.0, 1.0
    loss = _logistic_loss(xs, ys, a, b, ridge)
    for _ in range(50):
        ga, gb = ridge * a, ridge * (b - 1.0)  # gradient of the penalised negative log-lik
        haa, hab, hbb = ridge, 0.0, ridge
        for x, y in zip(xs, ys, strict=True):
            q = _sigmoid(a + b * x)
            w = q * (1.0 - q)
            ga += q - y
            gb += (q - y) * x
            haa += w
            hab += w * x
            hbb += w * x * x
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = 1.0
        while step > 1e-6:
            na, nb = a - step * da, max(b - step * db, 1e-3)
            new = _logistic_loss(xs, ys, na, nb, ridge)
            if new <= loss:
                break
            step /= 2
        else:
            break
        moved = abs(na - a) + abs(nb - b)
        a, b, loss = na, nb, new
        if moved < 1e-9:
            break
    return a, b


def _logistic_loss(xs: Sequence[float], ys: Sequence[float], a: float, b: float,
                   ridge: float) -> float:
    """The penalised negative log-likelihood :func:`_logistic` minimises."""
    total = ridge / 2 * (a * a + (b - 1.0) ** 2)
    for x, y in zip(xs, ys, strict=True):
        z = a + b * x
        # log(1 + e^z) - y z, without overflow
        total += (z if z > 0 else 0.0) + math.log1p(math.exp(-abs(z))) - y * z
    return total


def choose_map(pairs: Sequence[tuple[float, bool]]) -> tuple[tuple[float, float], ...]:
    """The calibration map that does better out of sample, or none: :func:`calibration_map`
    (pooled blocks) and :func:`platt_map` (two parameters) are each learnt on one half of the
    pairs and scored on the other, both ways round, by the squared error of the mapped
    probability (the Brier score: the expected calibration error bins, and is too noisy on a
    few dozen cases to choose by). The better map is kept only if it beats the stated
    probabilities themselves by more than one standard error of the case-by-case difference:
    a localiser that is already calibrated, or a history too small to show otherwise, keeps
    what it states; on fewer than ``MAP_SMALL`` pairs by two: halves of 10 to 20 answers
    estimate that error poorly, and picking the better of two maps on them kept a map that
    made the new answers worse about as often as one that made them better (20 close-outs
    of 118 scenario-topology pairs, three draws: 12 better, 10 worse; with two, 7 and 3). On
    50 close-outs one standard error does better on average (the doubles' overconfident
    one-device answers need their map), and on 400 the bar changes nothing. The winner is
    then learnt on all the pairs."""
    halves = (pairs[0::2], pairs[1::2])
    if min(len(h) for h in halves) < 10:
        return ()
    gains: dict[str, list[float]] = {}
    for name, learn in (("blocks", calibration_map), ("platt", platt_map)):
        gains[name] = [(p - ok) ** 2 - (calibrated(knots, p) - ok) ** 2
                       for train, test in (halves, halves[::-1])
                       for knots in (learn(train),) for p, ok in test]
    name = max(gains, key=lambda n: statistics.fmean(gains[n]))
    gain = gains[name]
    bar = MAP_MIN_GAIN if len(pairs) >= MAP_SMALL else MAP_MIN_GAIN_SMALL
    if statistics.fmean(gain) <= bar * statistics.stdev(gain) / math.sqrt(len(gain)):
        return ()
    return platt_map(pairs) if name == "platt" else calibration_map(pairs)


def _freq(block: Sequence[float]) -> float:
    return block[2] / block[3]


def reliability(pairs: Iterable[tuple[float, bool]], bins: int = 10
                ) -> list[tuple[float, float, float, int]]:
    """Per probability bin: (lower edge, mean stated, frequency right, cases); empty bins
    left out."""
    acc: dict[int, list[float]] = {}
    for p, ok in pairs:
        b = min(int(p * bins), bins - 1)
        a = acc.setdefault(b, [0.0, 0.0, 0.0])
        a[0] += p
        a[1] += 1.0 if ok else 0.0
        a[2] += 1.0
    return [(b / bins, a[0] / a[2], a[1] / a[2], int(a[2])) for b, a in sorted(acc.items())]


def expected_calibration_error(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> float:
    """Σ over bins of (cases in bin / cases) × |mean stated − frequency right|."""
    n = len(pairs)
    if not n:
        return 0.0
    return sum(k / n * abs(stated - right) for _, stated, right, k in reliability(pairs, bins))


# -- history ------------------------------------------------------------------------------------


def history_case(incident_id: str, state: Mapping[str, Any], devices: Sequence[str]
                 ) -> dict[str, Any]:
    """A ``locate`` case with its ``truth``: the evidence an incident gathered (its records'
    latest revisions, those since restored as they reported while the outage was on,
    without the dead reports the command centre overruled: :func:`reported_evidence`), the
    weather it was last estimated in
    (``storm``, ``faults_elsewhere``, ``devices_elsewhere``, the keys ``locate`` reads; none for
    a calm window or an incident stored before the estimate kept it) and the devices the crews
    confirmed."""
    from outage_sentinel.incidents import Member, checked_evidence, reported_evidence

    members = [Member.from_json(m) for m in state.get("members", {}).values()]
    ev = checked_evidence(reported_evidence(members), state.get("excluded") or ())
    context = (state.get("estimate") or {}).get("context") or {}
    return {"id": incident_id, "dead": sorted(ev.dead), "alive": sorted(ev.alive),
            "calls": [a for a, n in sorted(ev.calls.items()) for _ in range(n)],
            "open_devices": sorted(ev.open_devices),
            **{k: context[k] for k in CONTEXT_KEYS if k in context},
            "truth": {"devices": list(devices)}}


def truth_of(case: Mapping[str, Any], where: str) -> list[str]:
    """The ``truth.devices`` of a history case (:class:`HistoryError` naming ``where``)."""
    truth = case.get("truth")
    devices = truth.get("devices") if isinstance(truth, Mapping) else None
    if not isinstance(devices, list) or not devices or not all(
            isinstance(d, str) and d for d in devices):
        raise HistoryError(f"{where}: needs \"truth\": {{\"devices\": [device ids]}}")
    return list(devices)


def same_answer(topology: Topology, devices: Iterable[str], truth: Iterable[str]) -> bool:
    """Whether two device sets cut off the same areas (the benchmark's notion of right)."""
    def areas(ids: Iterable[str]) -> frozenset[str]:
        return frozenset(a for d in ids for a in downstream(topology, d))
    return areas(devices) == areas(truth)


def stated_and_right(topology: Topology, cases: Sequence[tuple[Evidence, SolvedCase]],
                     params: LocaliserParams,
                     contexts: Sequence[FaultContext | None] | None = None
                     ) -> list[tuple[str, float, bool]]:
    """For each case, the calibration key of its answer (:func:`calibration_key`: the window
    and the answer's size), the probability the localiser states for its top answer, and
    whether that answer is right; each case localised in its own window's context
    (``contexts``, one per case; none = calm), as it was when it happened."""
    from outage_sentinel.localise import localise

    out: list[tuple[str, float, bool]] = []
    for i, (evidence, solved) in enumerate(cases):
        context = (contexts[i] if contexts is not None else None) or FaultContext()
        best = localise(topology, evidence, params, context).best
        if best is not None:
            key = calibration_key(window_of(params, context), len(best.devices))
            out.append((key, best.probability,
                        same_answer(topology, best.devices, solved.truth)))
    return out


#: Fewest cases each window or answer size needs before they get calibration maps of their own.
MIN_MAP_CASES = 20


def keyed_maps(keyed: Sequence[tuple[str, float, bool]],
               pooled: tuple[tuple[float, float], ...]
               ) -> tuple[tuple[str, tuple[tuple[float, float], ...]], ...]:
    """Calibration maps per window (``calm``, ``storm``) and then per answer size within it
    (``storm/one``, ``storm/several``), from ``(key, stated, right)`` triples: siblings are
    split off their parent's map together (:func:`_split`), so a window the history barely
    saw keeps the pooled map."""
    maps = _split([(k.split("/")[0], p, ok) for k, p, ok in keyed], ("calm", "storm"), pooled)
    for window in ("calm", "storm"):
        sub = [(k, p, ok) for k, p, ok in keyed if k.startswith(window + "/")]
        maps.update(_split(sub, (f"{window}/one", f"{window}/several"),
                           maps.get(window, pooled)))
    return tuple(sorted(maps.items()))


def _split(keyed: Sequence[tuple[str, float, bool]], names: Sequence[str],
           parent: tuple[tuple[float, float], ...]) -> dict[str, tuple[tuple[float, float], ...]]:
    """A map of its own for every group of ``names``, or for none of them (they keep
    ``parent``): all when each has ``MIN_MAP_CASES`` cases and, out of sample, maps per group
    predict better than one map for them all (each learnt on one half of every group's
    cases and scored on the other half, both ways round, by the Brier score: the expected
    calibration error bins by stated probability only, so it cannot see one group pulled up
    and another down inside a bin). All or none, because the parent's
    map was learnt with every group in it: a group taking a map of its own would leave its
    siblings with a map pulled towards the group that left (a storm's one-device answers,
    right far less often, dragging the others down, or the other way round)."""
    groups = {n: [(p, ok) for k, p, ok in keyed if k == n] for n in names}
    if min(len(g) for g in groups.values()) < MIN_MAP_CASES:
        return {}
    own: list[tuple[float, bool]] = []
    shared: list[tuple[float, bool]] = []
    for fold in (0, 1):
        trains = {n: g[fold::2] for n, g in groups.items()}
        tests = {n: g[1 - fold::2] for n, g in groups.items()}
        one_map = choose_map([pair for t in trains.values() for pair in t])
        for n, test in tests.items():
            knots = choose_map(trains[n])
            own += [(calibrated(knots, p), ok) for p, ok in test]
            shared += [(calibrated(one_map, p), ok) for p, ok in test]
    if brier(own) >= brier(shared):
        return {}
    return {n: choose_map(g) for n, g in groups.items()}


def brier(pairs: Sequence[tuple[float, bool]]) -> float:
    """Mean squared difference between the stated probability and the outcome (0 or 1)."""
    return statistics.fmean((p - ok) ** 2 for p, ok in pairs) if pairs else 0.0


def fit_with_calibration(topology: Topology, cases: Sequence[tuple[Evidence, SolvedCase]],
                         base: LocaliserParams,
                         contexts: Sequence[FaultContext | None] | None = None,
                         storm_rate: bool = True) -> tuple[Fit, dict[str, float]]:
    """:func:`fit`, then calibration maps learnt on the same cases with the fitted
    reliabilities, each case localised in its window's context (``contexts``): a pooled map
    (``calibration``) and maps of their own for the windows and answer sizes that need one
    (:func:`keyed_maps`). Returns the fit (its params carrying the maps) and the calibration
    figures (expected calibration error before and after the maps, on these cases).
    ``storm_rate=False`` keeps the fault rates of the windows, calm and storm (a history whose
    truths may name fewer devices than operated)."""
    fitted = fit(topology, [s for _, s in cases],
                 replace(base, calibration=(), calibration_maps=()), contexts,
                 window_rates=storm_rate)
    keyed = stated_and_right(topology, cases, fitted.params, contexts)
    pairs = [(p, ok) for _, p, ok in keyed]
    knots = choose_map(pairs)
    params = replace(fitted.params, calibration=knots, calibration_maps=keyed_maps(keyed, knots))
    after = [(calibrated(calibration_for(params, k), p), ok) for k, p, ok in keyed]
    figures = {"cases_answered": float(len(pairs)),
               "ece_before": expected_calibration_error(pairs),
               "ece_after": expected_calibration_error(after),
               "accuracy": sum(ok for _, ok in pairs) / len(pairs) if pairs else 0.0,
               "storm_cases": float(sum(k.startswith("storm") for k, _, _ in keyed))}
    return replace(fitted, params=params), figures
