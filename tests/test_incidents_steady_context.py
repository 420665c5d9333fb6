"""A stated probability that moved less than STEADY_POINTS stays as stated, but the estimate
is otherwise the new one: the weather it was made in (``context``) is what the close-out's
history case (``localisation history``, the refit) localises the incident in again. A storm
declared mid-incident with a small move must not leave the incident in the calm window."""

from __future__ import annotations

from pathlib import Path

from outage_sentinel.incidents import Estimate, stated_percent, steady
from outage_sentinel.triage import STORM_KEY, storm_declaration
from tests.test_probability_statements import ev, feed, make, msgs, only_incident

STORM: dict[str, object] = {"storm": True, "faults_elsewhere": 2, "devices_elsewhere": 9}


def estimate(p: float, context: dict[str, object]) -> Estimate:
    return Estimate(devices=("FU1",), probability=p, transformers=("T1", "T2"), customers=120,
                    villages=("V1",), section=("FU1", "J1"), important_customers=("C1",),
                    hypotheses=({"devices": ["FU1"], "probability": p},
                                {"devices": ["B1"], "probability": 1 - p}),
                    context=context)


def test_a_small_move_keeps_what_is_stated_and_takes_the_new_context() -> None:
    before, after = estimate(0.80, {}), estimate(0.82, STORM)
    kept = steady(before, after)
    # what the texts state (the figure, and the alternative the crew reads) stays as stated
    assert kept.probability == before.probability
    assert kept.hypotheses == before.hypotheses
    assert (kept.devices, kept.transformers, kept.customers, kept.villages, kept.section,
            kept.important_customers) == (before.devices, before.transformers,
                                          before.customers, before.villages, before.section,
                                          before.important_customers)
    # the window it is now estimated in is the new one
    assert kept.context == STORM


def test_a_large_move_or_other_areas_is_the_new_estimate_whole() -> None:
    assert steady(estimate(0.60, {}), estimate(0.80, STORM)) == estimate(0.80, STORM)


def test_a_storm_declared_mid_incident_reaches_the_incidents_estimate(tmp_path: Path) -> None:
    d = make(tmp_path)
    try:
        feed(d, 1, ev("N1", "T1", "T2"))
        iid = only_incident(d)
        first = d.processor.incident(iid)
        assert first.estimate.context.get("storm") is not True
        summaries = len(msgs(d, iid, "command", "summary"))
        d.store.kv_set(STORM_KEY, storm_declaration(True, "operator:zhang", d.clock()),
                       d.clock())
        feed(d, 2, ev("A5", "T5", signal="alive", source="ami"))
        now = d.processor.incident(iid)
        assert stated_percent(now.estimate.probability) == \
            stated_percent(first.estimate.probability)
        assert now.revision == first.revision  # nothing stated changed: no summary
        assert len(msgs(d, iid, "command", "summary")) == summaries
        assert now.estimate.context.get("storm") is True
        row = d.store.get_incident(iid)
        assert row is not None and row["state"]["estimate"]["context"]["storm"] is True
    finally:
        d.close()
