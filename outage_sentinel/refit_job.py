"""The scheduled refit: the localiser learns from the close-outs in its own database
(``localisation.refit_at``, daily) and logs what changed. ``localisation fit`` does the same by
hand, from a history file, into a parameters file.

What the last refit learnt is kept in the store (``localisation:refit`` in its key-value
table, the region's own), so a daemon that restarts or takes over as leader, and the board's
own process, localise with it at once rather than with the configured parameters until the
next refit (up to a day)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from outage_sentinel.config import LocalisationConfig
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.fitting import (
    fit_with_calibration,
    fitted_values,
    history_case,
    solved_case,
)
from outage_sentinel.localise import Evidence, LocaliserParams
from outage_sentinel.locate import context_of
from outage_sentinel.logs import get_logger
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology

#: Fewer close-outs than this and the refit waits (the priors would still dominate).
MIN_CASES = 20

#: The store's key of the last refit's parameters.
REFIT_KEY = "localisation:refit"


def refitted(base: LocaliserParams, values: dict[str, Any]) -> LocaliserParams:
    """``base`` with a refit's ``values`` (:func:`~outage_sentinel.fitting.fitted_values`)
    in place of its own; raises ``ValueError`` naming the key of a value out of bounds."""
    try:
        given = LocalisationConfig.model_validate(values).to_params()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{REFIT_KEY}: {where}: {first['msg']}") from None
    return replace(base, **{k: getattr(given, k) for k in values})


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
        self.store.kv_set(REFIT_KEY, {"at": now.isoformat(), "cases": fitted.cases,
                                      "values": fitted_values(fitted.params)}, now)
        self.log.info("localisation_refit", cases=fitted.cases, changes=list(fitted.changes),
                      **{k: round(v, 4) for k, v in figures.items()})
        return RefitReport(fitted.cases, fitted.changes, figures)

    def restore(self) -> bool:
        """Localise with the parameters the last refit kept, if any (at start, and when this
        node becomes the leader). True when restored."""
        params = kept_params(self.store, self.base)
        if params is None:
            return False
        self.estimator.use_params(params)
        kept = self.store.kv_get(REFIT_KEY) or {}
        # Logged here, once per start or takeover; every core the board builds reads it too.
        self.log.info("localisation_refit_restored", refit_at=kept.get("at"),
                      cases=kept.get("cases"))
        return True


def kept_params(store: Store, base: LocaliserParams) -> LocaliserParams | None:
    """``base`` with what the last refit kept in ``store`` (None: no refit yet); a kept value
    out of bounds (an older version's, a hand edit) is logged and ``base`` is kept."""
    kept = store.kv_get(REFIT_KEY)
    if not isinstance(kept, dict) or not isinstance(kept.get("values"), dict):
        return None
    log = get_logger(component="refit")
    try:
        params = refitted(base, kept["values"])
    except ValueError as exc:
        log.warning("localisation_refit_not_restored", reason=str(exc))
        return None
    return params
