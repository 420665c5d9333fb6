"""The scheduled refit: the localiser learns from the close-outs in its own database
(``localisation.refit_at``, daily) and logs what changed. ``localisation fit`` does the same by
hand, from a history file, into a parameters file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.fitting import fit_with_calibration, history_case, solved_case
from outage_sentinel.localise import Evidence, LocaliserParams
from outage_sentinel.locate import context_of
from outage_sentinel.logs import get_logger
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology

#: Fewer close-outs than this and the refit waits (the priors would still dominate).
MIN_CASES = 20


def store_history(store: Store) -> list[dict[str, Any]]:
    """Every closed incident with a confirmed device, as a ``locate`` case with its truth."""
    out = []
    for incident_id, devices in store.confirmed_devices().items():
        row = store.get_incident(incident_id)
        if row is not None:
            out.append(history_case(incident_id, row["state"], devices))
    return out


@dataclass(frozen=True)
class RefitReport:
    cases: int
    changes: tuple[str, ...]
    figures: dict[str, float]


class RefitJob:
    """Refits the estimator's reliabilities and calibration (a daemon stage)."""

    def __init__(self, store: Store, topology: Any, estimator: BayesEstimator,
                 base: LocaliserParams) -> None:
        #: ``topology()`` gives the bundle in use (a reload swaps it).
        self.store, self.topology, self.estimator, self.base = store, topology, estimator, base
        self.log = get_logger(component="refit")

    def run_once(self, now: datetime) -> RefitReport | None:
        """Fit on the close-outs so far; None (nothing changed) below :data:`MIN_CASES`."""
        topology: Topology = self.topology()
        cases, contexts = [], []
        for case in store_history(self.store):
            ev = Evidence.from_call_list(case["calls"], dead=case["dead"], alive=case["alive"],
                                         open_devices=case["open_devices"])
            try:
                solved = solved_case(topology, ev, case["truth"]["devices"], case["id"])
                context = context_of(case, 0)
            except ValueError as exc:  # a device gone from a reloaded bundle
                self.log.info("refit_case_skipped", reason=str(exc))
                continue
            cases.append((ev, solved))
            contexts.append(context)
        if len(cases) < MIN_CASES:
            self.log.info("refit_waiting", cases=len(cases), needed=MIN_CASES)
            return None
        # Each case is localised again in the weather it happened in, so that the storm
        # windows' calibration is learnt apart from the calm ones', and the close-outs (naming
        # every device the crews found) set the storm's rate and the calm window's.
        fitted, figures = fit_with_calibration(topology, cases, self.base, contexts)
        self.estimator.use_params(fitted.params)
        self.log.info("localisation_refit", cases=fitted.cases, changes=list(fitted.changes),
                      **{k: round(v, 4) for k, v in figures.items()})
        return RefitReport(fitted.cases, fitted.changes, figures)
