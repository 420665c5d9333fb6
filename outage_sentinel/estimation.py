"""The Bayesian localiser (:mod:`outage_sentinel.localise`) as the incident core's estimator."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from outage_sentinel.incidents import Estimate, Evidence, first_estimate, important_customers
from outage_sentinel.localise import Evidence as LocaliserEvidence
from outage_sentinel.localise import FaultContext, Hypothesis, LocaliserParams, localise
from outage_sentinel.topology import Topology

#: Default of ``localisation.area_min_probability``: an area the localiser infers is off joins
#: the estimate (and its village hears it may be affected) when more likely than not.
AREA_MIN_PROBABILITY = 0.5


class BayesEstimator:
    """The Bayesian localiser (:mod:`outage_sentinel.localise`) adapted to the incident core.

    Called as an :data:`Estimator` it localises in a calm window; :meth:`within` gives one
    that knows the weather (:class:`~outage_sentinel.localise.FaultContext`).
    """

    def __init__(self, params: LocaliserParams | None = None,
                 context: FaultContext | None = None,
                 area_min_probability: float = AREA_MIN_PROBABILITY) -> None:
        self.context = context
        self.area_min_probability = area_min_probability
        self.use_params(params if params is not None else LocaliserParams())

    def use_params(self, params: LocaliserParams) -> None:
        """Localise with ``params`` from now on (a refit)."""
        self.params = params

    def within(self, context: FaultContext) -> BayesEstimator:
        other = copy.copy(self)
        other.context = context
        return other

    def __call__(self, topology: Topology, evidence: Evidence) -> Estimate:
        result = localise(topology, LocaliserEvidence(
            dead=evidence.dead, alive=evidence.alive, calls=dict(evidence.calls),
            open_devices=evidence.open_devices, planned=evidence.planned),
            self.params, self.context)
        best = result.best
        if best is None or not best.devices:
            return first_estimate(topology, evidence)
        heard = frozenset(evidence.dead) | frozenset(evidence.calls)
        areas = likely_off(result.hypotheses, self.area_min_probability, topology,
                           lambda d, region: d in evidence.open_devices or bool(region & heard))
        return Estimate(
            devices=tuple(best.devices), probability=best.probability,
            transformers=areas, customers=topology.customers_of(areas),
            villages=tuple(topology.villages_of(areas)), section=tuple(best.section),
            important_customers=important_customers(topology, areas),
            hypotheses=tuple(h.to_json() for h in result.hypotheses[:3]),
            context=context_json(self.context),
        )


def likely_off(hypotheses: Sequence[Hypothesis], threshold: float,
               topology: Topology | None = None,
               borne_out: Callable[[str, frozenset[str]], bool] | None = None
               ) -> tuple[str, ...]:
    """The areas off with probability at least ``threshold``: summed over the hypotheses
    that have them off (those listed, so a lower bound), the best hypothesis's areas first.
    With ``borne_out``, an area counts only where the device of the hypothesis that has it off
    is ``borne_out(device, its areas in the hypothesis)``: something came from its region.

    The estimate's areas are what villages are told may be off. The best hypothesis alone
    is not enough: at 25 % (one report on the main line, explained as a false report beside a
    silent fuse elsewhere) its areas are a guess, and their villages would hear of an outage
    they never had, then that their power is back. Nor is the probability alone: on a small
    feeder "a fuse elsewhere operated and sent nothing, and the one report is false" can come
    out at 0.99 (a lone area reported off beside one reading on), and the villages under that
    fuse, from which nothing at all was heard, were told they may be off."""
    p_off: dict[str, float] = {}
    for h in hypotheses:
        counted = set(h.transformers)
        if borne_out is not None and topology is not None:
            counted = {t for d, region in _regions(h, topology) if borne_out(d, region)
                       for t in region}
        for t in h.transformers:
            if t in counted:
                p_off[t] = p_off.get(t, 0.0) + h.probability
    return tuple(t for t, p in p_off.items() if p >= threshold - 1e-9)


def _regions(h: Hypothesis, topology: Topology) -> list[tuple[str, frozenset[str]]]:
    """Each device of ``h`` with the areas of ``h`` below it."""
    if len(h.devices) == 1:
        return [(h.devices[0], frozenset(h.transformers))]
    return [(d, frozenset(t for t in h.transformers if topology.is_downstream(t, d)))
            for d in h.devices]


def context_json(context: FaultContext | None) -> dict[str, Any]:
    """The weather of a window as ``locate`` reads it (the keys of a history case); empty for
    a calm window with nothing known elsewhere."""
    if context is None or context == FaultContext():
        return {}
    return {"storm": context.storm, "faults_elsewhere": context.faults_elsewhere,
            "devices_elsewhere": context.devices_elsewhere}


def default_estimator(params: LocaliserParams | None = None,
                      area_min_probability: float = AREA_MIN_PROBABILITY) -> BayesEstimator:
    """The daemon's estimator: :class:`BayesEstimator` with ``params`` (the config's)."""
    return BayesEstimator(params, area_min_probability=area_min_probability)
