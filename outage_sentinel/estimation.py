"""The Bayesian localiser (:mod:`outage_sentinel.localise`) as the incident core's estimator."""

from __future__ import annotations

import copy
from typing import Any

from outage_sentinel.incidents import Estimate, Evidence, first_estimate
from outage_sentinel.localise import Evidence as LocaliserEvidence
from outage_sentinel.localise import FaultContext, LocaliserParams, localise
from outage_sentinel.topology import Topology


class BayesEstimator:
    """The Bayesian localiser (:mod:`outage_sentinel.localise`) adapted to the incident core.

    Called as an :data:`Estimator` it localises in a calm window; :meth:`within` gives one
    that knows the weather (:class:`~outage_sentinel.localise.FaultContext`).
    """

    def __init__(self, params: LocaliserParams | None = None,
                 context: FaultContext | None = None) -> None:
        self.context = context
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
        return Estimate(
            devices=tuple(best.devices), probability=best.probability,
            transformers=tuple(best.transformers), customers=best.customers,
            villages=tuple(best.villages), section=tuple(best.section),
            important_customers=tuple(best.important_customers),
            hypotheses=tuple(h.to_json() for h in result.hypotheses[:3]),
            context=context_json(self.context),
        )


def context_json(context: FaultContext | None) -> dict[str, Any]:
    """The weather of a window as ``locate`` reads it (the keys of a history case); empty for
    a calm window with nothing known elsewhere."""
    if context is None or context == FaultContext():
        return {}
    return {"storm": context.storm, "faults_elsewhere": context.faults_elsewhere,
            "devices_elsewhere": context.devices_elsewhere}


def default_estimator(params: LocaliserParams | None = None) -> BayesEstimator:
    """The daemon's estimator: :class:`BayesEstimator` with ``params`` (the config's)."""
    return BayesEstimator(params)
