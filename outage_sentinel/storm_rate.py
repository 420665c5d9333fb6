"""How often devices operate in a declared storm, learnt from its close-outs (pure core).

The localiser prices a second, third ... fault on a feeder by the per-device fault rate of the
window (:func:`~outage_sentinel.localise.fault_regimes`): Beta with shape
``fault_rate_shape`` and mean ``storm_fault_prior`` when a storm is declared and the county's
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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from outage_sentinel.localise import FaultContext, devices_per_feeder
from outage_sentinel.topology import Topology

#: Standard deviation of the priors of log(mean) and log(shape) around the current values:
#: e ~ 2.7 times either way is one sd, so 20 storm close-outs already move them and 200
#: settle them.
PRIOR_SD = 1.0
#: The means and shapes searched (lowest, highest, steps), log-spaced.
MEAN_RANGE = (1e-4, 0.3, 60)
SHAPE_RANGE = (0.02, 50.0, 40)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_count_given_one(k: int, devices: int, mean: float, shape: float) -> float:
    """log P(K = k | K >= 1) for K beta-binomial over ``devices`` devices, rate Beta(shape,
    shape (1 - mean) / mean)."""
    a, b = shape, shape * (1.0 - mean) / mean
    none = math.exp(_log_beta(a, b + devices) - _log_beta(a, b))
    log_k = (math.lgamma(devices + 1) - math.lgamma(k + 1) - math.lgamma(devices - k + 1)
             + _log_beta(a + k, b + devices - k) - _log_beta(a, b))
    return log_k - math.log(max(1.0 - none, 1e-300))


def storm_counts(topology: Topology, truths: Sequence[Sequence[str]],
                 contexts: Sequence[FaultContext | None]) -> list[tuple[int, int]]:
    """(devices operated, protective devices) per feeder of every close-out made in a
    declared storm (``contexts[i].storm``); truth devices below another are left out."""
    per_feeder = devices_per_feeder(topology)
    out: list[tuple[int, int]] = []
    for truth, context in zip(truths, contexts, strict=True):
        if context is None or not context.storm:
            continue
        pos = [topology.pos[d] for d in truth]
        tops = [i for i in pos if not any(j != i and topology.tin[j] < topology.tin[i]
                                          <= topology.tout[j] for j in pos)]
        feeders: dict[str, int] = {}
        for i in tops:
            feeder = topology.feeder_of(topology.ids[topology.root[i]])
            feeders[feeder] = feeders.get(feeder, 0) + 1
        out.extend((k, per_feeder.get(f, k)) for f, k in feeders.items())
    return out


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
