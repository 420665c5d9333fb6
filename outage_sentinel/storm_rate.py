"""How often devices operate together, in a declared storm and in any other window, learnt
from the close-outs (pure core).

The localiser prices a second, third ... fault on a feeder by the per-device fault rate of the
window (:func:`~outage_sentinel.localise.fault_regimes`): Beta with shape
``storm_rate_shape`` and mean ``storm_fault_prior`` when a storm is declared and the county's
counts are not given. That mean is a guess (5e-3) and storms differ by an order of magnitude,
so it is the one rate of the count prior a county's own close-outs should set.

Close-outs carry no exposure (the windows in which nothing broke), but they do carry how many
devices operated on a feeder *given that one did*. Under the localiser's own prior the number
K of operated devices on a feeder of D protective devices is beta-binomial, so a close-out in a
declared storm with k devices on a feeder contributes

    log P(K = k | K >= 1) = log C(D, k) + log B(a + k, b + D - k) - log B(a, b)
                            - log(1 - B(a, b + D) / B(a, b)),   a = shape, b = a (1 - m) / m,

which is informative about m: a history of single-device storms pushes it down, one of
doubles and triples up, and it has an interior maximum. The estimate is the maximum of the
sum plus a log-normal prior centred on the current value (``PRIOR_SD`` in natural log
units), so a handful of storms moves it a little and hundreds settle it. Devices below
another operated device add nothing (their areas were already dark) and are not counted.

**Any other window** (no storm declared: the calm rate, ``fault_prior`` and
``fault_rate_shape``) is learnt the same way from the other close-outs, so that a county whose
close-outs often name two devices on a feeder (a storm nobody declared, a locate history
without any context) teaches the localiser that a second fault is not rare, and one whose
close-outs name one device apiece makes a second one rarer still. A window with the county's
figures (:class:`~outage_sentinel.localise.FaultContext` ``devices_elsewhere``) has a mixture
of the calm and the storm rate for its prior (:func:`~outage_sentinel.localise.fault_regimes`),
so its count is scored under that mixture:

    P(K = k | K >= 1) = sum_r w_r BB(k; D, a_r, b_r) / sum_r w_r (1 - BB(0; D, a_r, b_r)).

Only windows in which nothing operated elsewhere are scored (no figures, or none of the
county's devices elsewhere operated): where devices did, the count is the storm's business.
The calm rate is searched on a coarse grid, then finely around the best point (a refit in
the daemon scores a few hundred distinct windows).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from outage_sentinel.localise import (
    COUNT_TILT_SIZES,
    FaultContext,
    LocaliserParams,
    devices_per_feeder,
    fault_regimes,
    window_of,
)
from outage_sentinel.topology import Topology

#: Standard deviation of the priors of log(mean) and log(shape) around the current values:
#: e ~ 2.7 times either way is one sd, so 20 storm close-outs already move them and 200
#: settle them.
PRIOR_SD = 1.0
#: The means and shapes searched (lowest, highest, steps), log-spaced.
MEAN_RANGE = (1e-4, 0.3, 60)
SHAPE_RANGE = (0.02, 50.0, 40)
#: The same for the calm window's rate: wider, because what a "window" is differs between
#: the callers (the daemon's incident window, a day of a benchmark's or a county's history)
#: and so does its rate, by more than the storm's; 20 close-outs naming two devices a feeder
#: must be able to say so (with 1.0 they left small feeders' doubles 58 % found, not 88 %).
CALM_PRIOR_SD = 2.0
#: The calm window's means: from far below the default (3e-5) to a storm's.
CALM_MEAN_RANGE = (1e-7, 0.3, 64)
#: The Beta's b above which the beta-binomial is summed over the devices (see _log_bb): a
#: storm's rarely is (only its most regular, rarest rates), a calm window's near-zero ones are.
SUMMED_ABOVE = 1e4
#: Grid points skipped by the coarse pass of the calm search (the fine pass looks at every
#: point within this many of the coarse best).
COARSE_STEP = 4


def log_count_given_one(k: int, devices: int, mean: float, shape: float) -> float:
    """log P(K = k | K >= 1) for K beta-binomial over ``devices`` devices, rate Beta(shape,
    shape (1 - mean) / mean)."""
    a, b = shape, shape * (1.0 - mean) / mean
    return _log_bb(k, devices, a, b) - _log_some(a, b, devices)


def _log_bb(k: int, devices: int, a: float, b: float) -> float:
    """log P(K = k) for K beta-binomial(devices, a, b). For a rate near 0 (``b`` above
    ``SUMMED_ABOVE``) as sums over the devices: B(a + k, b + D - k) / B(a, b) as a difference
    of log-Beta functions is then a difference of numbers of ~1e10, and rounding takes its
    last digits; below, the log-Gamma functions are exact enough and much cheaper."""
    log_c = math.lgamma(devices + 1) - math.lgamma(k + 1) - math.lgamma(devices - k + 1)
    if b <= SUMMED_ABOVE:
        return log_c + _log_beta(a + k, b + devices - k) - _log_beta(a, b)
    i = np.arange(devices, dtype=np.float64)
    return (log_c + math.lgamma(a + k) - math.lgamma(a)
            + float(np.log1p(-a / (a + b + i[:devices - k])).sum())
            - float(np.log(a + b + i[devices - k:]).sum()))


def _log_some(a: float, b: float, devices: int) -> float:
    """log P(K >= 1) for K beta-binomial(devices, a, b): 1 - P(K = 0), P(K = 0) the product
    of (b + i) / (a + b + i) over the devices (summed as logs above ``SUMMED_ABOVE``, see
    :func:`_log_bb`)."""
    if b <= SUMMED_ABOVE:
        log_none = _log_beta(a, b + devices) - _log_beta(a, b)
    else:
        log_none = float(np.log1p(-a / (a + b + np.arange(devices, dtype=np.float64))).sum())
    return math.log(max(-math.expm1(log_none), 1e-300))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def storm_counts(topology: Topology, truths: Sequence[Sequence[str]],
                 contexts: Sequence[FaultContext | None]) -> list[tuple[int, int]]:
    """(devices operated, protective devices) per feeder of every close-out made in a
    declared storm (``contexts[i].storm``); truth devices below another are left out."""
    return [(k, d) for k, d, _ in window_counts(topology, truths, contexts, storm=True)]


def window_counts(topology: Topology, truths: Sequence[Sequence[str]],
                  contexts: Sequence[FaultContext | None], storm: bool
                  ) -> list[tuple[int, int, FaultContext]]:
    """(devices operated, protective devices, the window's context) per feeder of every
    close-out made in a declared storm (``storm``) or in any other window (no context is a
    calm window without the county's figures); truth devices below another are left out."""
    per_feeder = devices_per_feeder(topology)
    out: list[tuple[int, int, FaultContext]] = []
    for truth, context in zip(truths, contexts, strict=True):
        context = context or FaultContext()
        if context.storm != storm:
            continue
        out.extend((k, per_feeder.get(f, k), context)
                   for f, k in _operated_per_feeder(topology, truth).items())
    return out


def _operated_per_feeder(topology: Topology, truth: Sequence[str]) -> dict[str, int]:
    pos = [topology.pos[d] for d in truth if d in topology.pos]
    tops = [i for i in pos if not any(j != i and topology.tin[j] < topology.tin[i]
                                      <= topology.tout[j] for j in pos)]
    feeders: dict[str, int] = {}
    for i in tops:
        feeder = topology.feeder_of(topology.ids[topology.root[i]])
        feeders[feeder] = feeders.get(feeder, 0) + 1
    return feeders


def fit_storm_rate(counts: Sequence[tuple[int, int]], mean: float, shape: float
                   ) -> tuple[float, float]:
    """The storm's rate per device (mean, shape of its Beta) that best explains ``counts``
    ((k, D) per feeder of the storm close-outs) under the prior around ``mean`` and
    ``shape``; those unchanged without any count."""
    usable = Counter((k, d) for k, d in counts if 1 <= k <= d)
    if not usable:
        return mean, shape
    best, best_score = (mean, shape), -math.inf
    for m in _grid(MEAN_RANGE):
        for a in _grid(SHAPE_RANGE):
            score = (sum(n * log_count_given_one(k, d, m, a) for (k, d), n in usable.items())
                     - 0.5 * (math.log(m / mean) / PRIOR_SD) ** 2
                     - 0.5 * (math.log(a / shape) / PRIOR_SD) ** 2)
            if score > best_score:
                best, best_score = (m, a), score
    return best


def _grid(bounds: tuple[float, float, int]) -> list[float]:
    lo, hi, steps = bounds
    return [math.exp(math.log(lo) + i * math.log(hi / lo) / steps) for i in range(steps + 1)]


def fit_calm_rate(counts: Sequence[tuple[int, int, FaultContext]], params: LocaliserParams
                  ) -> tuple[float, float]:
    """The calm window's rate per device (``fault_prior``, ``fault_rate_shape``) that best
    explains ``counts`` ((k, D, context) per feeder of the close-outs made without a storm
    declared, :func:`window_counts`) under the prior around the current values; those
    unchanged without any count. Windows in which devices operated elsewhere in the county
    are left out: their count is the storm regime's as much as the calm one's, and scored
    under the mixture they taught the calm rate the storm's (a county's storm-context
    doubles cost 2 points of both found). The storm regime's rate is held at ``params``'."""
    usable = Counter((k, d, (0, c.devices_elsewhere)) for k, d, c in counts
                     if 1 <= k <= d and not c.faults_elsewhere)
    if not usable:
        return params.fault_prior, params.fault_rate_shape
    means, shapes = _grid(CALM_MEAN_RANGE), _grid(SHAPE_RANGE)

    def score(i: int, j: int) -> float:
        m, a = means[i], shapes[j]
        trial = replace(params, fault_prior=m, fault_rate_shape=a)
        regimes = {ctx: fault_regimes(trial, FaultContext(faults_elsewhere=ctx[0],
                                                          devices_elsewhere=ctx[1]))
                   for ctx in {ctx for _, _, ctx in usable}}
        return (sum(n * _log_count_mixture(k, d, regimes[ctx])
                    for (k, d, ctx), n in usable.items())
                - 0.5 * (math.log(m / params.fault_prior) / CALM_PRIOR_SD) ** 2
                - 0.5 * (math.log(a / params.fault_rate_shape) / CALM_PRIOR_SD) ** 2)

    coarse = [(i, j) for i in range(0, len(means), COARSE_STEP)
              for j in range(0, len(shapes), COARSE_STEP)]
    bi, bj = max(coarse, key=lambda ij: score(*ij))
    fine = [(i, j) for i in range(max(bi - COARSE_STEP, 0), min(bi + COARSE_STEP + 1, len(means)))
            for j in range(max(bj - COARSE_STEP, 0), min(bj + COARSE_STEP + 1, len(shapes)))]
    bi, bj = max(fine, key=lambda ij: score(*ij))
    return means[bi], shapes[bj]


#: Pseudo-close-outs the beta-binomial's shares of the counts are worth together in a count
#: tilt (a Dirichlet centred on them, as weak as Jeffreys' over four counts): 20 close-outs
#: that all name two devices a feeder make a one-device answer ~10 times rarer than the Beta
#: says (with 5, 5 times: one-device answers of such a history, always wrong, were still
#: stated at 0.2-0.3), and a few hundred set the shares.
TILT_PRIOR_CASES = 2.0
#: Largest log factor a count tilt takes either way.
TILT_MAX = 6.0


def fit_count_tilts(topology: Topology, truths: Sequence[Sequence[str]],
                    contexts: Sequence[FaultContext | None], params: LocaliserParams
                    ) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Per window (``calm``, ``storm``: :func:`~outage_sentinel.localise.window_of`) the log
    factors by which the share of close-outs with K = 1, 2, 3 and 4+ devices on a feeder
    departs from what the window's beta-binomial (``params``' fitted rates) gives them:
    ``log((n_k + c P_k) / (N + c) / P_k)``, ``P_k`` the mean over the close-outs of
    P(K = k | K >= 1), ``c`` = ``TILT_PRIOR_CASES``. The Beta spreads its mass over the counts
    (the likeliest count given one is at most ~1/3 likely for two or more); a county whose
    storms take two devices a feeder as a rule, or whose close-outs never name more than one,
    says so only through these. Windows without a close-out get none."""
    grouped: dict[str, list[tuple[int, int, FaultContext]]] = {}
    for storm in (False, True):
        for k, d, ctx in window_counts(topology, truths, contexts, storm):
            if 1 <= k <= d:
                grouped.setdefault(window_of(params, ctx), []).append((k, d, ctx))
    out = []
    for window, items in sorted(grouped.items()):
        shares = np.zeros(COUNT_TILT_SIZES)
        seen = np.zeros(COUNT_TILT_SIZES)
        for k, d, ctx in items:
            shares += _count_shares(d, fault_regimes(params, ctx))
            seen[min(k, COUNT_TILT_SIZES) - 1] += 1
        base = np.maximum(shares / len(items), 1e-300)
        tilted = (seen + TILT_PRIOR_CASES * base) / (len(items) + TILT_PRIOR_CASES)
        tilts = np.clip(np.log(tilted / base), -TILT_MAX, TILT_MAX)
        out.append((window, tuple(round(float(t), 4) for t in tilts)))
    return tuple(out)


def _count_shares(devices: int, regimes: Sequence[tuple[float, float, float]]
                  ) -> np.ndarray:
    """P(K = 1), P(K = 2), ..., P(K >= ``COUNT_TILT_SIZES``) given K >= 1 on a feeder of
    ``devices`` devices under ``regimes`` (the last share is what the others leave)."""
    top = min(COUNT_TILT_SIZES - 1, devices)
    shares = np.zeros(COUNT_TILT_SIZES)
    for k in range(1, top + 1):
        shares[k - 1] = math.exp(_log_count_mixture(k, devices, regimes))
    if devices >= COUNT_TILT_SIZES:
        shares[-1] = max(1.0 - float(shares[:-1].sum()), 0.0)
    return shares


def _log_count_mixture(k: int, devices: int, regimes: Sequence[tuple[float, float, float]]
                       ) -> float:
    """log P(K = k | K >= 1) for K beta-binomial over ``devices`` devices under the mixture
    ``regimes`` ((log weight, Beta a, Beta b), :func:`fault_regimes`)."""
    num = [w + _log_bb(k, devices, a, b) for w, a, b in regimes]
    den = [w + _log_some(a, b, devices) for w, a, b in regimes]
    return _logsumexp(num) - _logsumexp(den)


def _logsumexp(xs: Sequence[float]) -> float:
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))
