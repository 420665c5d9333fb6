"""Operator corrections of an incident (pure core, ``now`` passed in).

What the command centre knows better than the evidence: the expected restoration time, areas
wrongly taken into an outage, the fault device (SCADA, a crew's call), an incident that was a
false alarm. Each correction is kept on the incident
(:attr:`~outage_sentinel.incidents.Incident.etr_set`, ``excluded``, ``device_set``,
``cancel_reason``) so that later evidence, folded in by
:func:`~outage_sentinel.incidents.apply_event`, never undoes it — but for an area taken out,
which another record reporting it off later takes back in (``excluded_against``: the records
the correction overruled); the command centre may take back its time and its fault point
(:func:`clear_etr`, :func:`clear_devices`: the records' word again); an area taken out takes
its reports out of the estimate too (:func:`reestimate_narrowed`). Each makes a new revision,
whose notices :func:`~outage_sentinel.incidents.plan_notices` then plans like any other
(removed villages hear a correction, not "power restored"). Areas an operator adds are
evidence, not a correction: the processor folds them in as an operator report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo

from outage_sentinel.incidents import (
    Estimator,
    Incident,
    naming,
    recorded_etr,
    reestimated,
    scoped_estimate,
    with_devices,
)
from outage_sentinel.topology import Topology


class CorrectionError(ValueError):
    """A correction that cannot be made; the message says why."""


def _open(inc: Incident, what: str) -> None:
    if inc.status != "active" or inc.stage == "closed":
        raise CorrectionError(f"{inc.id} is {inc.stage}; {what} only an open incident")


def _revised(before: Incident, after: Incident, now: datetime) -> Incident:
    return replace(after, revision=before.revision + 1, updated_at=now)


#: How far in the past an expected restoration time set may be (the minute being typed).
ETR_LEEWAY = timedelta(minutes=1)


def etr_passed(etr: datetime, now: datetime) -> bool:
    """Whether ``etr`` has passed at ``now``: no expected restoration time to set."""
    return etr <= now - ETR_LEEWAY


def set_etr(inc: Incident, etr: datetime, now: datetime, tz: tzinfo | None = None
            ) -> Incident:
    """``inc`` with the command centre's expected restoration time, which wins over the
    sources' from now on. A refusal names the time in ``tz`` as it was typed (local,
    ``YYYY-MM-DD HH:MM``; ``None``: UTC ISO)."""
    _open(inc, "set the expected restoration time of")
    if etr_passed(etr, now):
        shown = etr.isoformat() if tz is None else f"{etr.astimezone(tz):%Y-%m-%d %H:%M}"
        raise CorrectionError(f"the expected restoration time {shown} has passed")
    if etr < inc.start:
        raise CorrectionError("the expected restoration time is before the outage started")
    return _revised(inc, replace(inc, etr=etr, etr_set=etr), now)


def exclude_areas(inc: Incident, topology: Topology, areas: Sequence[str], now: datetime
                  ) -> Incident:
    """``inc`` without ``areas`` (wrongly taken in): out of its scope for good."""
    _open(inc, "narrow")
    missing = [t for t in areas if t not in inc.estimate.transformers]
    if missing:
        raise CorrectionError(f"not in {inc.id}'s scope: {', '.join(missing)}")
    left = [t for t in inc.estimate.transformers if t not in areas]
    if not left:
        raise CorrectionError(f"that would leave {inc.id} with no area; cancel it instead")
    scope = {t: inc.mark(t) for t in left}
    estimate = scoped_estimate(topology, inc.estimate, scope)
    restored = {t: at for t, at in inc.restored.items() if t in scope}
    against = {**inc.excluded_against,
               **{t: naming(inc.members.values(), t) for t in areas}}
    return _revised(inc, replace(inc, estimate=estimate, scope=scope, restored=restored,
                                 excluded=tuple(dict.fromkeys([*inc.excluded, *areas])),
                                 excluded_against=against), now)


#: Why an outage whose every area the command centre took out was called off, when the step
#: gave no words of its own (kept as its ``cancel_reason``: a later poll never reopens it).
NO_AREA_LEFT = {"zh": "指挥中心已将全部停电台区移出停电范围",
                "en": "the command centre took every area out of the outage"}


def reestimate_narrowed(inc: Incident, topology: Topology, estimator: Estimator,
                        planned: frozenset[str], now: datetime, reason: str = "",
                        held: frozenset[str] = frozenset()) -> Incident:
    """``inc``, whose scope :func:`exclude_areas` narrowed, estimated afresh from its records
    by ``estimator`` (the processor's, in the weather of ``now``; ``planned``: areas planned
    work in force explains), the reports of the areas taken out no evidence any more
    (:func:`~outage_sentinel.incidents.checked_evidence`): a fault point that only they argued
    for goes with them, and so do the areas inferred below it — the board, the summary and
    the crew would otherwise name a fuse above a village known to have power. The areas
    taken out stay out. A fault point the command centre set stands (its word, not the
    localiser's, and what is left is still below it): ``inc`` as it is. The revision stays
    ``inc``'s.

    Nothing left (every area a source reported taken out, the rest only inferred from them):
    the command centre has said the outage was never there, and ``inc`` is called off as
    :func:`cancel_incident` calls it off, for ``reason`` (the step's words, else
    :data:`NO_AREA_LEFT`) — its crew stands down told why, its villages told hear it is
    cancelled. Left open with no area, it kept its crew patrolling for nothing. ``held``:
    areas the AMI screen holds off (a record's end does not count them back here either)."""
    if inc.device_set:
        return inc
    out = reestimated(inc, topology, estimator, planned, now, held)
    if inc.estimate.transformers and not out.estimate.transformers:
        return replace(out, status="cancelled", stage="cancelled", end=now,
                       cancel_reason=reason.strip() or NO_AREA_LEFT["zh"])
    return out


def set_devices(inc: Incident, topology: Topology, devices: Sequence[str], actor: str,
                now: datetime) -> Incident:
    """``inc`` with ``devices`` (ids of the topology's devices) as its fault point, set by
    ``actor``: named by every later estimate in place of the localiser's. Its areas stay as
    they are (a scope correction moves those); refused when a device is not on the incident's
    feeder, or when an area a source reported off is below none of them (the crew would
    patrol past the fault of a village that is dark)."""
    _open(inc, "set the fault device of")
    if inc.kind != "fault":
        raise CorrectionError(f"{inc.id} is {inc.kind} work: its device is its record's")
    if not devices:
        raise CorrectionError("no device given")
    for d in devices:
        _on_feeder(inc, topology, d)
    uncovered = [t for t in inc.off if inc.mark(t) == "reported" and t in topology.pos
                 and not any(topology.is_downstream(t, d) for d in devices)]
    if uncovered:
        names = ", ".join(f"{t} ({topology.nodes[t].name or t})" for t in uncovered[:5])
        raise CorrectionError(
            f"reported off but not below {', '.join(devices)}: {names}"
            f"{' …' if len(uncovered) > 5 else ''}; name their device too, or take them out "
            "of the scope first (incidents scope --remove)")
    if tuple(devices) == inc.device_set:
        raise CorrectionError(f"{inc.id}'s fault device is already {', '.join(devices)}")
    return _revised(inc, replace(inc, device_set=tuple(devices), device_set_by=actor,
                                 estimate=with_devices(topology, inc.estimate, devices)), now)


def clear_devices(inc: Incident, topology: Topology, estimator: Estimator,
                  planned: frozenset[str], now: datetime, held: frozenset[str] = frozenset()
                  ) -> Incident:
    """``inc`` without the fault device the command centre set: estimated from its records
    again by ``estimator`` (the processor's, in the weather of ``now``; ``planned``: areas
    planned work in force explains; ``held``: areas the AMI screen holds off), as if none had
    been set — the localiser's fault point, and the areas it infers from it. Refused when
    none is set."""
    _open(inc, "clear the fault device of")
    if not inc.device_set:
        raise CorrectionError(f"{inc.id} has no fault device set by the command centre: "
                              "nothing to clear")
    cleared = replace(inc, device_set=(), device_set_by="")
    return _revised(inc, reestimated(cleared, topology, estimator, planned, now, held), now)


def clear_etr(inc: Incident, now: datetime) -> Incident:
    """``inc`` without the command centre's expected restoration time: the one its records
    give again (none when they give none). Refused when none is set."""
    _open(inc, "clear the expected restoration time of")
    if inc.etr_set is None:
        raise CorrectionError(f"{inc.id} has no expected restoration time set by the command "
                              "centre: nothing to clear")
    return _revised(inc, replace(inc, etr_set=None, etr=recorded_etr(inc)), now)


def _on_feeder(inc: Incident, topology: Topology, device: str) -> None:
    """A :class:`CorrectionError` unless ``device`` is energised from ``inc``'s feeder."""
    i = topology.pos.get(device)
    if i is None:
        raise CorrectionError(f"unknown device {device!r}")
    if not topology.energised[i]:
        raise CorrectionError(f"{device} is not energised (a normally-open point?)")
    feeder = topology.feeder_of(device)
    if feeder != inc.feeder:
        raise CorrectionError(f"{device} is on feeder {feeder}, not on {inc.id}'s feeder "
                              f"{inc.feeder}")


def readmit_areas(inc: Incident, areas: Sequence[str], now: datetime) -> Incident:
    """``inc`` with ``areas`` no longer held out of its scope: the command centre now knows
    they are off after all (an operator's add), so evidence of them counts again."""
    _open(inc, "widen")
    return _revised(inc, replace(inc, excluded=tuple(t for t in inc.excluded
                                                     if t not in areas),
                                 excluded_against={t: k for t, k in inc.excluded_against.items()
                                                   if t not in areas}), now)


def cancel_incident(inc: Incident, reason: str, now: datetime) -> Incident:
    """``inc`` cancelled as a false alarm: everyone told hears so; later evidence is kept
    but never reopens it."""
    if not reason.strip():
        raise CorrectionError("cancelling needs a reason (--reason)")
    _open(inc, "cancel")
    return _revised(inc, replace(inc, status="cancelled", stage="cancelled", end=now,
                                 cancel_reason=reason.strip()), now)
