"""Fault localisation: which protective device(s) operated, given partial and noisy evidence.

Pure code over the :class:`~outage_sentinel.topology.Topology` index: no I/O, no clock.

The model
---------
A hypothesis is a set ``S`` of operated devices on one energised component (a feeder tree). The
transformer areas downstream of ``S`` are *dead*, every other area of the component is *alive*.
Areas under an active planned outage or under a device already known to be open are taken out
of the problem (their evidence is explained already). Each kind of evidence is an independent
noisy observation of every area's state:

* **dead reports** (outage-system scope, AMI terminal / meter power-off events): a dead area is
  reported with an unknown detection rate ``p`` (missing reports are common, 0-60 %), which is
  integrated out under a Beta prior (a beta-binomial over the dead region), so the localiser
  needs no tuning to the missing rate of the day; an energised area is reported dead falsely
  with rate ``false_dead_per_feeder / N`` (N = areas on the feeder: a dead-modem terminal or two
  per feeder, whatever its size).
* **alive reports** (AMI readings, restore events, pings): an energised area reports alive with
  an unknown rate (beta-binomial over the alive region); a dead area reports alive only by error
  (``alive_false_rate``, small: alive evidence is trustworthy and vetoes a device above it).
* **trouble calls**: calls from a dead area are Poisson in its customers with an unknown rate
  pooled over the dead region and integrated out under a mixture over call-rate scales
  (:func:`call_modes`: the field figure, mean ~10 % of customers, and a quiet window), so a
  dead region with no call is unlikely, not impossible; calls from an energised area are
  Poisson at a small spurious rate.
* **devices reported open** (SCADA, feeder automation, the outage system naming the device):
  ``open_report_true`` if the device operated, ``open_report_false`` otherwise; in a case with
  telemetry, a telemetered kind that operated unreported costs the ratio of the complements.

The prior of ``S`` is hierarchical: every device of the feeder operates with the same unknown
rate, Beta-distributed with shape ``fault_rate_shape`` and mean ``fault_prior`` (a calm window)
or ``storm_fault_prior`` (a storm declared in the :class:`FaultContext`), so the number of
operated devices is beta-binomial and each device found makes the next one cheaper. The
weather is shared by the county, so devices known to have operated elsewhere in the window
(``faults_elsewhere`` of ``devices_elsewhere``, from the other open incidents) update that rate
before this feeder is looked at: Beta(a + k, b + n - k), an empirical-Bayes step. A quiet
county makes a second device on this feeder dearer; a busy one makes it cheaper. With the
county's figures the rate's prior is a mixture of a calm and a storm regime
(:func:`fault_regimes`), so a busy county's own count is believed rather than shrunk to the
calm mean. Each device
is further weighted by its kind and by how many devices have the same downstream areas (any of
them opening has the same effect). All evidence statistics of a device are subtree sums, found
in O(log n) from the Euler-tour index, so scoring a hypothesis is O(|S|) and the search (every
single device on the path of the evidence, then add/remove/move/split local search for several
devices) touches only devices above some evidence. Probabilities are the posterior normalised
over every hypothesis scored, and that includes the **silent-region hypotheses**: every device
above no evidence at all, "it operated, its region sent nothing, and the evidence elsewhere is
false" (scored in one vectorised pass from cached per-component ranges). Without them a lone
false report was explained by the device above it at probability 1.0, however many silent
regions could have been the fault. The best sets are likewise scored **plus one silent
device** (a second fault whose every report was lost), so a set that explains every report is
not stated at ~1.0 in a storm.

**No data is not "nobody reported".** A case without a single trouble call had no call source
(:attr:`Evidence.calls_observed` unset): the call model is switched off for it, so that silence
from a big dead area is not read as "that area is alive". Likewise a case without any alive
report had no alive source (:attr:`Evidence.alive_observed`) and one without any device
reported open no telemetry (:attr:`Evidence.open_observed`).
"""

from __future__ import annotations

import bisect
import heapq
import math
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from outage_sentinel.topology import CARE_TAGS, DEVICE_KINDS, PROTECTIVE_KINDS, Topology

__all__ = [
    "Evidence",
    "FaultContext",
    "LocaliserParams",
    "Hypothesis",
    "LocateResult",
    "localise",
    "naive_common_ancestor",
    "devices_per_feeder",
    "call_modes",
    "fault_regimes",
    "kind_factor",
    "window_of",
    "calibration_key",
    "calibration_for",
    "count_tilt",
    "named_nodes",
    "narrowed",
    "shared_message",
    "case_feeders",
]

#: Tags that make a customer "important" in an answer (besides an importance grade): the
#: topology's one set of special-care tags.
SPECIAL_CARE_TAGS = frozenset(CARE_TAGS)


def _frozen(values: Iterable[str] | None) -> frozenset[str]:
    if values is None:
        return frozenset()
    if isinstance(values, str):
        return frozenset((values,))
    return frozenset(str(v) for v in values)


@dataclass(frozen=True)
class Evidence:
    """Everything known about one window of one incident (possibly spanning several feeders).

    Ids may be transformer ids, node names, meter ids or customer ids (mapped through
    :meth:`Topology.resolve`); ids that cannot be mapped are reported in
    :attr:`LocateResult.unknown`.
    """

    #: Transformer areas reported dead (outage system scope, AMI terminal or meter events).
    dead: frozenset[str] = frozenset()
    #: Transformer areas known to be energised (AMI readings, restore events, pings).
    alive: frozenset[str] = frozenset()
    #: Trouble calls per transformer area (id -> number of calls).
    calls: Mapping[str, int] = field(default_factory=dict, hash=False)
    #: Devices reported open (SCADA / feeder automation / the outage system naming the device).
    open_devices: frozenset[str] = frozenset()
    #: Devices and transformer areas under an active planned outage: their areas' evidence is
    #: explained by the planned work and is not a new fault.
    planned: frozenset[str] = frozenset()
    #: Devices already known to be open (an earlier, still open incident): areas below them are
    #: dead already, so only evidence elsewhere can point at a new (nested or separate) fault.
    known_open: frozenset[str] = frozenset()
    #: Whether a trouble-call source was watching: ``None`` (the default) infers it from the
    #: calls (none at all = no call source, so silence says nothing); ``True`` says a source
    #: was there and nobody called (silence from a big dead area is then evidence).
    calls_observed: bool | None = None
    #: Whether an alive-report source (AMI readings, pings) was watching: ``None`` infers it
    #: from the alive reports (none at all = no such source, so "no area reported alive" says
    #: nothing); ``True`` says one was there and no area reported alive.
    alive_observed: bool | None = None
    #: Whether telemetry (SCADA, feeder automation) was watching the devices: ``None`` infers
    #: it from the devices reported open (none = no telemetry); ``True`` says it was there, so
    #: a telemetered device (:attr:`LocaliserParams.telemetered_kinds`) that operated without
    #: being reported open is unlikely.
    open_observed: bool | None = None

    def __post_init__(self) -> None:
        for name in ("dead", "alive", "open_devices", "planned", "known_open"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "calls", {str(k): int(v) for k, v in dict(self.calls).items()
                                           if int(v) > 0})

    @classmethod
    def from_call_list(cls, calls: Iterable[str], **kwargs: Any) -> Evidence:
        """Build evidence where calls are given one entry per call (the locate JSON form)."""
        counts: dict[str, int] = {}
        for ref in calls:
            counts[str(ref)] = counts.get(str(ref), 0) + 1
        return cls(calls=counts, **kwargs)


@dataclass(frozen=True)
class FaultContext:
    """What is known about the window beyond this incident's evidence: the weather.

    The default (no storm declared, nothing known elsewhere) is a calm window. The daemon can
    fill it from its own state: ``faults_elsewhere`` = protective devices operated in the
    other open fault incidents of the county (planned work excluded), ``devices_elsewhere`` =
    protective devices of the county outside the feeders of this evidence.
    """

    #: A storm declared by an operator or a weather warning: the prior mean of the per-device
    #: fault rate is ``storm_fault_prior`` instead of ``fault_prior``.
    storm: bool = False
    #: Protective devices known to have operated elsewhere in the county in this window.
    faults_elsewhere: int = 0
    #: Protective devices of the county outside the feeders being localised (0 = unknown).
    devices_elsewhere: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.storm, bool):
            raise ValueError(f"storm must be true or false, got {self.storm!r}")
        for name in ("faults_elsewhere", "devices_elsewhere"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.faults_elsewhere > self.devices_elsewhere:
            raise ValueError(f"faults_elsewhere ({self.faults_elsewhere}) cannot exceed "
                             f"devices_elsewhere ({self.devices_elsewhere})")


#: A calm window with nothing known elsewhere (what ``localise`` assumes without a context).
CALM = FaultContext()


@dataclass(frozen=True)
class LocaliserParams:
    """Reliabilities of the evidence and priors of the localiser (exposed in the config)."""

    #: Beta prior (a, b) of the rate at which a dead area gets reported dead. Broad on purpose:
    #: the rate is integrated out per case (missing reports vary from 0 % to 60 %+).
    dead_detect_a: float = 2.0
    dead_detect_b: float = 1.0
    #: Expected number of false dead reports per feeder per window (dead modems and the like);
    #: per area that is this divided by the number of areas, capped by ``false_dead_max_rate``.
    false_dead_per_feeder: float = 1.0
    false_dead_max_rate: float = 0.05
    #: A per-area false dead rate (e.g. fitted from close-outs: ``localisation fit``); when
    #: set (> 0) it replaces ``false_dead_per_feeder / N`` and its cap, so a small feeder's
    #: areas are not each priced as if it had a large one's false reports (:func:`false_dead_rate`).
    false_dead_per_area: float = 0.0
    #: Shape of the Beta prior of the window's false dead rate (its mean is the figure above):
    #: the rate is unknown per window and integrated out (a beta-binomial over the energised
    #: areas), so several false reports in one window (a concentrator glitch) are not priced
    #: as independent rare events. 0 (the default) = a known rate (independent reports);
    #: ``localisation fit`` sets it when its history shows false reports clustered by window.
    false_dead_shape: float = 0.0
    #: Areas with a false dead rate of their own, ``(area id, rate)`` (flaky terminals, fitted
    #: from close-outs); the others keep the per-area figure above.
    false_dead_areas: tuple[tuple[str, float], ...] = ()
    #: Beta prior (a, b) of the rate at which an energised area sends an alive report.
    alive_report_a: float = 0.5
    alive_report_b: float = 2.0
    #: Probability that a dead area sends an alive report anyway (stale reading). Small: alive
    #: evidence is trusted, and a device above it is all but ruled out.
    alive_false_rate: float = 1e-6
    #: Gamma prior (shape, rate) of trouble calls per customer of a dead area: mean 0.1,
    #: coefficient of variation ~0.3 (8-12 % of customers phone in an outage), so a dead
    #: area of many customers and no call is unlikely.
    call_rate_shape: float = 10.0
    call_rate_rate: float = 100.0
    #: Trouble calls per customer of an energised area (other complaints, wrong area): about
    #: one a window on a feeder of 100,000 customers; independent of each other (Poisson).
    spurious_call_rate: float = 1e-5
    #: Low-voltage faults per customer of an energised area in a window: a fuse or line below
    #: the transformer takes out some of its customers, who call in as from a dead area (the
    #: same call-rate mixture) while its terminal, on the medium-voltage side, stays alive.
    #: The commonest cause of trouble calls in the field; without it eight calls from one
    #: energised area were eight independent spurious calls (e^-90), and a breaker's own open
    #: report or an area's alive report was overruled by them. 0 = none (calls elsewhere are
    #: only spurious).
    lv_fault_rate: float = 3e-6
    #: Calls are a mixture over call-rate scales: with this weight the window is a quiet one
    #: (night, a source forwarding a fraction of the calls), whose rate per customer is
    #: exponential with mean ``quiet_call_rate``. So a dead region with few or no calls is
    #: unlikely, not all but impossible (the Gamma alone made a silent area of 1,000
    #: customers cost e^-24).
    quiet_call_weight: float = 0.1
    quiet_call_rate: float = 0.01
    #: P(device reported open | it operated) and P(reported open | it did not).
    open_report_true: float = 0.9
    open_report_false: float = 1e-3
    #: Kinds of device whose opening telemetry reports (when a case has telemetry at all).
    telemetered_kinds: tuple[str, ...] = ("breaker", "recloser")
    #: Mean prior probability that a given protective device operated in a *calm* window
    #: (about once in four years per device, for a window of about an hour). Storms are not in
    #: this mean: they come in through the :class:`FaultContext` (``storm_fault_prior`` and the
    #: devices operated elsewhere). With ``fault_rate_shape`` it sets the price of a second
    #: device: see docs/localisation.md for the trade-off between single-fault precision
    #: (false reports) and finding second faults.
    fault_prior: float = 3e-5
    #: Shape of the Beta prior of that per-device rate (its mean is ``fault_prior``). The rate
    #: is shared by the devices of a feeder and uncertain (weather nobody has reported yet),
    #: so the count of operated devices is beta-binomial: every operated device found makes
    #: another one more likely. Small = bursty; large = independent devices at the mean rate.
    fault_rate_shape: float = 0.1
    #: Mean prior per-device fault rate in a window with a storm declared
    #: (:attr:`FaultContext.storm`): a typhoon or ice storm operates devices at a hundred times
    #: the calm rate and more. Counts of devices operated elsewhere (the context) update it.
    storm_fault_prior: float = 5e-3
    #: Shape of the storm's Beta (the calm one's is ``fault_rate_shape``): small = a storm
    #: either spares a feeder or takes many of its devices; large = every feeder loses about
    #: its share. ``localisation fit`` sets both from the storm close-outs' devices per feeder.
    storm_rate_shape: float = 0.1
    #: Prior probability that a window is a storm window, when the county's figures are known
    #: (:attr:`FaultContext.devices_elsewhere` > 0): the rate's prior is then a mixture of the
    #: calm and the storm Beta, and the county's counts decide between them (a mixture, so
    #: that 38 devices operated of 1,520 are believed rather than shrunk to the calm mean).
    storm_weight: float = 0.05
    #: Multipliers of ``fault_prior`` per kind: losing the source (the substation bus) is rarer
    #: than a protective device operating; a manual switch opening by itself rarer still.
    source_prior_factor: float = 0.2
    switch_prior_factor: float = 0.05
    #: Multiplier of ``fault_prior`` for a transformer area's own fault (its drop-out fuse,
    #: the transformer itself): the hypothesis "only this area is off" for an area reported
    #: dead or calling, so that a lone report among areas reporting alive is not pinned on
    #: the fuse above them at ~1.0. Small by default, so it wins only where the evidence
    #: rules the devices above out, or nearly (a lone report under a large branch, the rest
    #: silent); ``localisation fit`` sets it (``kind_factors``, kind ``transformer``) from
    #: close-outs that name a transformer. 0 = no such hypothesis.
    transformer_prior_factor: float = 1e-4
    #: Probability that an energised area next to the dead region (the area just before or
    #: just after it in the feeder's order) carries that region's evidence: customers or
    #: meters the GIS registers under the neighbouring transformer (wrong customer-transformer
    #: links are a common error of a county's GIS). Its dead report and calls then cost this,
    #: not a false report and a burst of stray calls. 0 (the default) = evidence is where the
    #: GIS says; ``localisation fit`` sets it when close-outs show the areas beside the true
    #: region looking dead more often than the other energised areas.
    misfiled_rate: float = 0.0
    #: Relative fault rate per device kind (``(kind, factor)`` pairs, e.g. fitted from
    #: close-outs by ``localisation fit``: fuses operate more often than breakers); a kind
    #: listed here overrides the factors above, a kind not listed keeps them (1 for a
    #: protective device).
    kind_factors: tuple[tuple[str, float], ...] = ()
    #: Most devices in one hypothesis per feeder, and most hypotheses returned.
    max_devices: int = 12
    max_hypotheses: int = 5
    #: A monotone map from the probability the model states to the frequency it is right,
    #: learnt from close-outs (``localisation fit``): knots ``(p, q)``, empty = none. Applied to
    #: the top answer (the others scaled to keep the total).
    calibration: tuple[tuple[float, float], ...] = ()
    #: Calibration maps of their own, ``(key, knots)``, for the window the answer is given in
    #: and its size (:data:`CALIBRATION_KEYS`: ``calm``, ``storm``, ``calm/one``,
    #: ``storm/several``, ...; fitted from close-outs that carry their weather). The most
    #: specific key present wins, else the window's, else ``calibration``: in a storm the
    #: model's count of faults is what it misjudges, and one map for every window and answer
    #: size averages that error over answers it does not touch.
    calibration_maps: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()
    #: How many devices operate together on a feeder, learnt from close-outs beyond what the
    #: window's Beta can say: ``(window, tilts)``, per window (``calm``, ``storm``) the log
    #: factors of P(K = 1), P(K = 2), P(K = 3) and P(K >= 4) relative to the beta-binomial
    #: (:func:`count_tilt`; docs/localisation.md, "How many devices"). Empty = none.
    count_tilts: tuple[tuple[str, tuple[float, ...]], ...] = ()


#: Counts of operated devices a count tilt has a factor of its own for (the last one covers
#: this many and more).
COUNT_TILT_SIZES = 4

#: The keys of :attr:`LocaliserParams.calibration_maps`.
CALIBRATION_KEYS = ("calm", "storm", "calm/one", "calm/several", "storm/one", "storm/several")


@dataclass(frozen=True)
class Hypothesis:
    """One candidate answer: these devices operated; these areas and customers are off.

    The affected areas, customers, villages, important customers and the section to patrol are
    worked out on first use (most callers only need the best hypothesis described).
    """

    devices: tuple[str, ...]
    probability: float
    feeders: tuple[str, ...] = ()
    log_score: float = 0.0
    _topology: Topology | None = field(default=None, compare=False, repr=False)
    _excluded: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def _ranges(self) -> list[tuple[int, int]]:
        """Transformer-rank intervals [lo, hi) below the devices, minus excluded ones."""
        t = self._topology
        if t is None:
            return []
        out: list[tuple[int, int]] = []
        for nid in self.devices:
            i = t.pos[nid]
            if t.tin[i] < 0:
                continue
            lo = bisect.bisect_left(t.transformer_tins, t.tin[i])
            hi = bisect.bisect_right(t.transformer_tins, t.tout[i])
            for a, b in self._excluded:
                if b <= lo or a >= hi:
                    continue
                if a > lo:
                    out.append((lo, a))
                lo = max(lo, b)
            if hi > lo:
                out.append((lo, hi))
        return out

    @cached_property
    def transformers(self) -> tuple[str, ...]:
        """Affected transformer areas, in Euler order per device."""
        t = self._topology
        if t is None:
            return ()
        ids, by_tin = t.ids, t.transformer_by_tin
        return tuple(ids[by_tin[r]] for lo, hi in self._ranges() for r in range(lo, hi))

    @cached_property
    def customers(self) -> int:
        """Customers of the affected areas."""
        t = self._topology
        if t is None:
            return 0
        prefix = t.transformer_customer_prefix
        return sum(prefix[hi] - prefix[lo] for lo, hi in self._ranges())

    @cached_property
    def villages(self) -> tuple[str, ...]:
        """Distinct villages of the affected areas."""
        t = self._topology
        return tuple(t.villages_of(self.transformers)) if t is not None else ()

    @cached_property
    def important_customers(self) -> tuple[str, ...]:
        """customers.csv ids with an importance grade or a special-care tag, in affected areas."""
        t = self._topology
        if t is None or not t.customers_by_transformer:
            return ()
        out: list[str] = []
        by_tx = t.customers_by_transformer
        for a in self.transformers:
            for c in by_tx.get(a, ()):
                if c.importance or SPECIAL_CARE_TAGS.intersection(c.tags):
                    out.append(c.id)
        return tuple(out)

    @cached_property
    def section(self) -> tuple[str, ...]:
        """The suspected section to patrol: each device down to (not past) the next devices."""
        t = self._topology
        if t is None:
            return ()
        return tuple(n for d in self.devices for n in t.suspected_section(d))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the locate command's hypothesis object)."""
        return {
            "devices": list(self.devices),
            "probability": round(self.probability, 6),
            "feeders": list(self.feeders),
            "transformers": list(self.transformers),
            "customers": self.customers,
            "villages": list(self.villages),
            "important_customers": list(self.important_customers),
            "section": list(self.section),
        }


@dataclass(frozen=True)
class LocateResult:
    """Ranked hypotheses (best first) and the ids the topology does not know."""

    hypotheses: list[Hypothesis]
    unknown: list[str]
    #: Evidence areas explained by an active planned outage or an already-open device.
    explained: list[str] = field(default_factory=list)
    #: References naming several nodes the case does not tell apart, each naming them
    #: (:func:`shared_message`): left out of the evidence, for whoever wrote it to give ids.
    ambiguous: list[str] = field(default_factory=list)

    @property
    def best(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None

    def to_json(self) -> dict[str, Any]:
        return {
            "hypotheses": [h.to_json() for h in self.hypotheses],
            "unknown": list(self.unknown),
            "explained": list(self.explained),
            **({"ambiguous": list(self.ambiguous)} if self.ambiguous else {}),
        }


# -- names several nodes share -----------------------------------------------------------------


def named_nodes(topology: Topology, ref: str,
                kinds: Collection[str] | None = None) -> tuple[str, ...]:
    """The nodes (of ``kinds``; any kind when None) ``ref`` may mean: the one its id, meter,
    customer or unshared name resolves to, else every node of a name several share
    (:meth:`Topology.named`). The caller narrows several by what else it knows
    (:func:`narrowed`): taking the first would send the crew to another village's line."""
    nid = topology.resolve(ref)
    nodes = (nid,) if nid is not None else topology.named(ref)
    if kinds is None:
        return nodes
    return tuple(n for n in nodes if topology.nodes[n].kind in kinds)


def narrowed(nodes: tuple[str, ...], *tests: Callable[[str], bool]) -> tuple[str, ...]:
    """``nodes`` narrowed by each test in turn (widest first) while several remain. A test
    none of them passes is passed over: what the context knows says nothing of this name,
    and emptying the list would turn a shared name into an unknown one."""
    for test in tests:
        if len(nodes) < 2:
            break
        nodes = tuple(n for n in nodes if test(n)) or nodes
    return nodes


def shared_message(topology: Topology, ref: str, nodes: Iterable[str]) -> str:
    """What to tell whoever wrote ``ref`` when it still names several ``nodes``: each with its
    feeder, so that they can tell which one they meant and give its id."""
    listed = ", ".join(f"{n} (feeder {topology.feeder_of(n) or 'none'})" for n in nodes)
    return f"{ref!r} is shared by {listed}: give the id"


def case_feeders(topology: Topology, refs: Iterable[str]) -> frozenset[str]:
    """The feeders of the ``refs`` of one case (evidence, truth) that name one node each:
    the line a shared name in the same case most likely means."""
    pos = topology.pos
    out: set[str] = set()
    for ref in refs:
        nid = ref if ref in pos else topology.resolve(ref)
        if nid is not None:
            out.add(topology.feeder_of(nid))
    out.discard("")
    return frozenset(out)


# -- evidence resolution ------------------------------------------------------------------------


@dataclass
class _Resolved:
    dead: set[int] = field(default_factory=set)
    alive: set[int] = field(default_factory=set)
    calls: dict[int, int] = field(default_factory=dict)
    open_devices: set[int] = field(default_factory=set)
    planned: set[int] = field(default_factory=set)
    known_open: set[int] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)
    #: references naming several nodes the case does not tell apart (:func:`shared_message`)
    ambiguous: list[str] = field(default_factory=list)
    #: whether the case had a call source, an alive-report source and telemetry
    calls_observed: bool = True
    alive_observed: bool = True
    open_observed: bool = False


def _resolve(topology: Topology, evidence: Evidence) -> _Resolved:
    """The evidence's references as node positions; what does not resolve is listed."""
    refs = _Refs(topology, evidence)
    out = _Resolved()
    out.dead = refs.areas(evidence.dead)
    out.alive = refs.areas(evidence.alive)
    for ref, count in evidence.calls.items():
        i = refs.area(ref)
        if i is not None:
            out.calls[i] = out.calls.get(i, 0) + count
    out.open_devices = refs.devices(evidence.open_devices)
    out.planned = refs.devices(evidence.planned, allow_area=True)
    out.known_open = refs.devices(evidence.known_open)
    out.unknown = sorted(refs.unknown)
    out.ambiguous = list(refs.ambiguous)
    out.calls_observed = bool(evidence.calls_observed if evidence.calls_observed is not None
                              else evidence.calls)
    out.alive_observed = (evidence.alive_observed if evidence.alive_observed is not None
                          else bool(evidence.alive))
    out.open_observed = (evidence.open_observed if evidence.open_observed is not None
                         else bool(evidence.open_devices))
    return out


#: The kinds an evidence device reference may name (planned work may name an area too).
_DEVICE_OR_SOURCE = DEVICE_KINDS | {"source"}
_AREA_DEVICE_KINDS = _DEVICE_OR_SOURCE | {"transformer"}


class _Refs:
    """Resolves references to transformer areas and devices, remembering the unknown ones. A
    name several nodes share means the one on the feeders of the case's other references
    (:func:`case_feeders`); still several, it is listed as :attr:`ambiguous`, not unknown."""

    def __init__(self, topology: Topology, evidence: Evidence) -> None:
        self.topology = topology
        self.evidence = evidence
        self.pos = topology.pos
        self.kinds = topology.kinds
        self.unknown: dict[str, None] = {}
        self.ambiguous: dict[str, None] = {}
        self._feeders: frozenset[str] | None = None

    def node(self, ref: str, kinds: Collection[str]) -> int | None:
        """The position of the one node of ``kinds`` ``ref`` names in this case, else None
        (listed as unknown, or as ambiguous naming the nodes it may be)."""
        topology = self.topology
        nodes = named_nodes(topology, ref, kinds)
        if len(nodes) > 1:
            if self._feeders is None:
                ev = self.evidence
                self._feeders = case_feeders(topology, (
                    *ev.dead, *ev.alive, *ev.calls, *ev.open_devices, *ev.planned,
                    *ev.known_open))
            feeders = self._feeders
            nodes = narrowed(nodes, lambda n: topology.feeder_of(n) in feeders)
            if len(nodes) > 1:
                self.ambiguous.setdefault(shared_message(topology, ref, nodes), None)
                return None
        if not nodes:
            self.unknown.setdefault(ref, None)
            return None
        return self.pos[nodes[0]]

    def area(self, ref: str) -> int | None:
        i = self.pos.get(ref)
        if i is not None and self.kinds[i] == "transformer":
            return i
        return self.node(ref, ("transformer",))

    def areas(self, refs: Iterable[str]) -> set[int]:
        pos_get, kinds = self.pos.get, self.kinds
        out: set[int] = set()
        for ref in refs:  # the common case (a transformer id) without a call per reference
            i = pos_get(ref)
            if i is None or kinds[i] != "transformer":
                i = self.area(ref)
            if i is not None:
                out.add(i)
        return out

    def device(self, ref: str, allow_area: bool = False) -> int | None:
        return self.node(ref, _AREA_DEVICE_KINDS if allow_area else _DEVICE_OR_SOURCE)

    def devices(self, refs: Iterable[str], allow_area: bool = False) -> set[int]:
        return {i for i in (self.device(r, allow_area) for r in refs) if i is not None}


# -- per-component scoring ----------------------------------------------------------------------

#: Protective devices per energised component (keyed by root), per topology: the number of
#: devices that could have operated, for the prior on how many did. Counted on first use.
_DEVICE_COUNTS: weakref.WeakKeyDictionary[Topology, dict[int, int]] = weakref.WeakKeyDictionary()


_DEVICES: weakref.WeakKeyDictionary[Topology, dict[int, tuple[int, ...]]] = \
    weakref.WeakKeyDictionary()


class _IndexArrays:
    """The topology's Euler-tour index as arrays, for resolving many areas at once. It holds
    the topology's index tuples, never the topology itself: it is the value of a weak-keyed
    cache, and a reference to its key would keep every reloaded topology alive."""

    def __init__(self, topology: Topology) -> None:
        self.tins_tuple, self.tin_tuple, self.root_tuple = (
            topology.transformer_tins, topology.tin, topology.root)
        self.tins = np.asarray(topology.transformer_tins, dtype=np.int64)
        self.tin = np.asarray(topology.tin, dtype=np.int64)
        self.root = np.asarray(topology.root, dtype=np.int64)

    def ranks(self, areas: Collection[int], root: int, keep_order: bool = False) -> list[int]:
        """The transformer ranks of ``areas`` under ``root`` (sorted, or in the given order
        with ``keep_order``)."""
        if len(areas) < SMALL:
            tins, tin, root_of = self.tins_tuple, self.tin_tuple, self.root_tuple
            out_list = [bisect.bisect_left(tins, tin[i]) for i in areas if root_of[i] == root]
            return out_list if keep_order else sorted(out_list)
        nodes = np.fromiter(areas, dtype=np.int64, count=len(areas))
        nodes = nodes[self.root[nodes] == root]
        out = np.searchsorted(self.tins, self.tin[nodes])
        ranks: list[int] = (out if keep_order else np.sort(out)).tolist()
        return ranks


#: Below this many references a Python loop beats numpy's fixed cost per call.
SMALL = 24

_ARRAYS: weakref.WeakKeyDictionary[Topology, _IndexArrays] = weakref.WeakKeyDictionary()


def _index_arrays(topology: Topology) -> _IndexArrays:
    arrays = _ARRAYS.get(topology)
    if arrays is None:
        arrays = _IndexArrays(topology)
        try:
            _ARRAYS[topology] = arrays
        except TypeError:  # not weakly referenceable: build per call
            pass
    return arrays


def _component_devices(topology: Topology, root: int) -> tuple[int, ...]:
    """The protective devices of an energised component (cached per topology and root)."""
    try:
        cache = _DEVICES.setdefault(topology, {})
    except TypeError:
        cache = {}
    devices = cache.get(root)
    if devices is None:
        kinds = topology.kinds
        devices = tuple(i for i in topology.order[topology.tin[root]:topology.tout[root] + 1]
                        if kinds[i] in PROTECTIVE_KINDS)
        cache[root] = devices
    return devices


def _device_count(topology: Topology, root: int) -> int:
    try:
        counts = _DEVICE_COUNTS.setdefault(topology, {})
    except TypeError:  # not weak-referenceable: count every time (O(component))
        counts = {}
    n = counts.get(root)
    if n is None:
        kinds = topology.kinds
        n = sum(1 for i in topology.order[topology.tin[root]:topology.tout[root] + 1]
                if kinds[i] in PROTECTIVE_KINDS)
        counts[root] = n
    return n



def devices_per_feeder(topology: Topology) -> dict[str, int]:
    """Protective devices per feeder (energised component) as the fault prior counts them:
    what a caller sums to fill :attr:`FaultContext.devices_elsewhere`."""
    out: dict[str, int] = {}
    for source in topology.sources:
        i = topology.pos[source]
        if topology.tin[i] >= 0 and topology.root[i] == i:
            feeder = topology.feeder_of(source)
            out[feeder] = out.get(feeder, 0) + _device_count(topology, i)
    return out


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def false_dead_rate(params: LocaliserParams, areas: float) -> float:
    """The false dead rate of one area of a feeder of ``areas`` energised areas: the county's
    own per-area rate where it is known (``false_dead_per_area``, as ``localisation fit``
    learns it), else ``false_dead_per_feeder / areas``, capped by ``false_dead_max_rate``.
    The cap is for the default's guess alone: a fitted rate above it (small rural feeders,
    where one false report a feeder is 1 in 6 areas) was cut to the cap, so a fuse's own
    reports beside two false ones were priced as unlikely and the feeder's breaker was
    stated at 0.98, right 0.95 of the time."""
    if params.false_dead_per_area:
        return params.false_dead_per_area
    return min(params.false_dead_max_rate, params.false_dead_per_feeder / max(areas, 1))


def kind_factor(params: LocaliserParams, kind: str) -> float:
    """The prior weight of a device of ``kind``: ``kind_factors`` if it lists the kind, else
    ``source_prior_factor``, ``switch_prior_factor`` or 1 (a protective device)."""
    for k, f in params.kind_factors:
        if k == kind:
            return f
    if kind == "source":
        return params.source_prior_factor
    if kind == "transformer":
        return params.transformer_prior_factor
    if kind not in PROTECTIVE_KINDS:
        return params.switch_prior_factor
    return 1.0


def _beta_of(shape: float, mean: float) -> tuple[float, float]:
    mean = min(max(mean, 1e-300), 0.5)
    return shape, shape * (1.0 - mean) / mean


def call_modes(params: LocaliserParams) -> list[tuple[float, float, float]]:
    """The prior of the call rate per customer of a dead region as modes (log weight, Gamma
    shape, Gamma rate): the field figure (``call_rate_shape``, ``call_rate_rate``) and, with
    weight ``quiet_call_weight``, a quiet window (exponential, mean ``quiet_call_rate``)."""
    main = (params.call_rate_shape, params.call_rate_rate)
    w = min(max(params.quiet_call_weight, 0.0), 1.0 - 1e-12)
    if w <= 0.0:
        return [(0.0, *main)]
    return [(math.log1p(-w), *main),
            (math.log(w), 1.0, 1.0 / max(params.quiet_call_rate, 1e-12))]


def fault_regimes(params: LocaliserParams, context: FaultContext
                  ) -> list[tuple[float, float, float]]:
    """The prior of the per-device fault rate of the window as regimes (log weight, Beta a,
    Beta b), already updated with the devices operated elsewhere in the county.

    A declared storm is the storm regime alone; a window without county figures the calm
    regime alone (as before: one fault found on a feeder must not by itself make a second one
    cheap). With the county's figures (k operated of n) the prior is a mixture, calm with
    weight 1 - ``storm_weight`` and storm with ``storm_weight``, each regime weighted by how
    well it predicts k of n (beta-binomial) and updated to Beta(a + k, b + n - k)."""
    calm = _beta_of(params.fault_rate_shape, params.fault_prior)
    storm = _beta_of(params.storm_rate_shape, params.storm_fault_prior)
    k, n = context.faults_elsewhere, context.devices_elsewhere
    if context.storm:
        regimes = [(0.0, storm)]
    elif n == 0:
        regimes = [(0.0, calm)]
    else:
        w = min(max(params.storm_weight, 1e-12), 1.0 - 1e-12)
        regimes = [(math.log1p(-w), calm), (math.log(w), storm)]
    out = [(lw + _log_beta(a + k, b + n - k) - _log_beta(a, b), a + k, b + n - k)
           for lw, (a, b) in regimes]
    top = max(w for w, _, _ in out)
    z = top + math.log(sum(math.exp(w - top) for w, _, _ in out))
    return [(w - z, a, b) for w, a, b in out]


def window_of(params: LocaliserParams, context: FaultContext) -> str:
    """``storm`` when a storm is declared or the county's figures make the storm regime the
    likelier one (:func:`fault_regimes`), else ``calm``: the window a calibration map is
    chosen for."""
    if context.storm:
        return "storm"
    if context.devices_elsewhere == 0:
        return "calm"
    regimes = fault_regimes(params, context)
    return "storm" if regimes[-1][0] > math.log(0.5) else "calm"


def count_tilt(params: LocaliserParams, window: str, k: int) -> float:
    """The log factor :attr:`LocaliserParams.count_tilts` puts on a hypothesis of ``k``
    devices in ``window`` (0 without one)."""
    tilts = dict(params.count_tilts).get(window)
    if not tilts or k < 1:
        return 0.0
    return tilts[min(k, len(tilts)) - 1]


def calibration_key(window: str, devices: int) -> str:
    """The most specific key of :attr:`LocaliserParams.calibration_maps` for an answer of
    ``devices`` devices stated in ``window``."""
    return f"{window}/{'one' if devices <= 1 else 'several'}"


def calibration_for(params: LocaliserParams, key: str) -> tuple[tuple[float, float], ...]:
    """The calibration map of ``key`` (``window/size``): its own, else its window's, else
    ``params.calibration``."""
    maps = dict(params.calibration_maps)
    for k in (key, key.split("/")[0]):
        if k in maps:
            return maps[k]
    return params.calibration


@dataclass
class _Stats:
    """Evidence sums over a set of transformer areas."""

    n: int = 0  # areas (not excluded)
    dead: int = 0  # dead reports
    alive: int = 0  # alive reports
    customers: int = 0
    calls: int = 0
    #: log-likelihood correction of the areas with a false dead rate of their own, were they
    #: energised (their rate instead of the common one)
    flaky: float = 0.0
    #: the sum over the calling areas of their calls' log-likelihood were they energised
    #: (:meth:`_Component.stray_term`)
    stray: float = 0.0

    def __add__(self, other: _Stats) -> _Stats:
        return _Stats(self.n + other.n, self.dead + other.dead, self.alive + other.alive,
                      self.customers + other.customers, self.calls + other.calls,
                      self.flaky + other.flaky, self.stray + other.stray)

    def __sub__(self, other: _Stats) -> _Stats:
        return _Stats(self.n - other.n, self.dead - other.dead, self.alive - other.alive,
                      self.customers - other.customers, self.calls - other.calls,
                      self.flaky - other.flaky, self.stray - other.stray)


def ranks_beside(spans: Iterable[tuple[int, int]]) -> set[int]:
    """The ranks just before and just after the rank ranges ``spans`` ([lo, hi)), outside
    every one of them: the areas :attr:`LocaliserParams.misfiled_rate` is about."""
    spans = list(spans)
    return {r for lo, hi in spans for r in (lo - 1, hi)
            if not any(a <= r < b for a, b in spans)}


class _Misfiled:
    """The areas reported dead or calling (ranks, sorted) and log((1 - m) + m x L_dead /
    L_alive) of their dead report and calls, m = ``misfiled_rate``: how much likelier their
    evidence is when they lie beside the dead region, whose customers they may carry
    (:func:`_misfiled`). Empty when the rate is 0."""

    def __init__(self, ranks: npt.NDArray[np.int64], terms: npt.NDArray[np.float64]) -> None:
        self.ranks, self.terms = ranks, terms
        self.members = set(ranks.tolist())

    def __len__(self) -> int:
        return len(self.ranks)

    def at(self, ranks: npt.NDArray[np.int64], skip: npt.NDArray[np.int64] | None = None
           ) -> npt.NDArray[np.float64]:
        """The terms of the areas at ``ranks`` (0 where an area does not look dead, or is in
        ``skip``)."""
        if not len(self.ranks):
            return np.zeros(len(ranks), dtype=np.float64)
        j = np.minimum(np.searchsorted(self.ranks, ranks), len(self.ranks) - 1)
        hit = self.ranks[j] == ranks
        if skip is not None and len(skip):
            hit &= ~np.isin(ranks, skip)
        return np.asarray(np.where(hit, self.terms[j], 0.0), dtype=np.float64)

    def beside(self, spans: list[tuple[int, int]]) -> npt.NDArray[np.int64]:
        """The areas beside the rank ranges ``spans`` (:func:`ranks_beside`) that look
        dead."""
        return np.array(sorted(ranks_beside(spans) & self.members), dtype=np.int64)

    def inside(self, spans: list[tuple[int, int]]) -> npt.NDArray[np.int64]:
        """The areas that look dead within ``spans``."""
        return np.array([r for r in self.ranks.tolist()
                         if any(lo <= r < hi for lo, hi in spans)], dtype=np.int64)

    def most(self) -> float:
        """The largest term, or 0."""
        return max(float(self.terms.max()), 0.0) if len(self.terms) else 0.0


def _misfiled(comp: _Component, call_items: list[tuple[int, int]]) -> _Misfiled:
    """:class:`_Misfiled` of a component's evidence. Alive reports stay the area's own; the
    dead-report rate is the prior's mean."""
    p, mu, lik = comp.p, comp.p.misfiled_rate, comp.lik
    ranks = sorted({*comp.dead_ranks, *comp.call_ranks})
    if mu <= 0 or not ranks:
        return _Misfiled(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
    detect = p.dead_detect_a / (p.dead_detect_a + p.dead_detect_b)
    dead, calls = set(comp.dead_ranks), dict(call_items)
    cust = comp.t.transformer_customer_prefix
    stray_rate = p.spurious_call_rate + p.lv_fault_rate
    terms = []
    for r in ranks:
        llr = (math.log(detect) - lik.log_fd if r in dead
               else math.log1p(-detect) - lik.log_1fd)
        if lik.calls_observed:
            k, c = calls.get(r, 0), cust[r + 1] - cust[r]
            llr += (lik.dead_calls(k, c) - (lik.stray_term(k, c) if k else 0.0)
                    + stray_rate * c)
        terms.append(float(np.logaddexp(math.log1p(-mu), math.log(mu) + llr)))
    return _Misfiled(np.array(ranks, dtype=np.int64), np.array(terms, dtype=np.float64))


class _Likelihood:
    """The evidence model of a component: how likely its reports and calls are from a dead
    region and from the energised rest, given the parameters and which sources were watching
    (a source that was not is no data, not "nothing reported")."""

    def __init__(self, params: LocaliserParams, ev: _Resolved, areas: int) -> None:
        self.p = params
        self.alive_observed = ev.alive_observed
        self.calls_observed = ev.calls_observed
        self.call_modes = call_modes(params)
        #: per call mode: its log weight and the Gamma's normaliser, its shape, its rate
        self.call_consts = [(w - math.lgamma(a) + a * math.log(b), a, b)
                            for w, a, b in self.call_modes]
        self._dead_calls_cache: dict[tuple[int, float], float] = {}
        self.log_beta_detect = _log_beta(params.dead_detect_a, params.dead_detect_b)
        self.log_beta_report = _log_beta(params.alive_report_a, params.alive_report_b)
        self.log_spur = math.log(params.spurious_call_rate)
        #: the false dead rate per area of a component of ``areas`` energised areas
        self.false_dead = false_dead_rate(params, areas)
        self.log_fd = math.log(self.false_dead)
        self.log_1fd = math.log1p(-self.false_dead)
        shape = params.false_dead_shape
        #: Beta prior of the window's false dead rate, or None for a known rate
        self.fd_beta = ((shape, shape * (1.0 - self.false_dead) / self.false_dead)
                        if shape > 0 else None)
        self.log_af = math.log(params.alive_false_rate)
        self.log_1af = math.log1p(-params.alive_false_rate)

    def loglik(self, dead: _Stats, alive: _Stats) -> float:
        """Log-likelihood of all evidence of the component when exactly ``dead`` is off and
        ``alive`` is energised."""
        p = self.p
        ll = 0.0
        # dead reports: beta-binomial in the dead region, false-report rate in the alive region
        if dead.n:
            ll += (_log_beta(p.dead_detect_a + dead.dead, p.dead_detect_b + dead.n - dead.dead)
                   - self.log_beta_detect)
        ll += self.false_dead_ll(alive.dead, alive.n) + alive.flaky
        # alive reports: stale-reading rate in the dead region, beta-binomial in the alive
        # region; nothing at all without an alive source (no data)
        if self.alive_observed:
            ll += dead.alive * self.log_af + (dead.n - dead.alive) * self.log_1af
        if alive.n and self.alive_observed:
            ll += (_log_beta(p.alive_report_a + alive.alive,
                             p.alive_report_b + alive.n - alive.alive)
                   - self.log_beta_report)
        # calls: a mixture of Gamma-Poissons in the dead region, stray bursts in the alive
        # region; nothing without a call source (no data)
        if self.calls_observed:
            ll += self.dead_calls(dead.calls, dead.customers)
            ll += self.stray_calls(alive)
        return ll

    def false_dead_ll(self, reported: int, areas: int) -> float:
        """log P(``reported`` of ``areas`` energised areas reported dead): the window's false
        rate integrated out under its Beta (a beta-binomial), or independent at the rate."""
        if self.fd_beta is None:
            return reported * self.log_fd + (areas - reported) * self.log_1fd
        a, b = self.fd_beta
        return _log_beta(a + reported, b + areas - reported) - _log_beta(a, b)

    def false_shift(self, alive: _Stats, m: int) -> npt.NDArray[np.float64]:
        """Change of :meth:`false_dead_ll` when 0..m unreported areas leave the energised
        region (running sums, index = areas removed)."""
        j = np.arange(1, m + 1, dtype=np.float64)
        if self.fd_beta is None:
            steps = np.full(m, -self.log_1fd)
        else:
            a, b = self.fd_beta
            quiet = b + alive.n - alive.dead
            steps = np.log(a + b + alive.n - j) - np.log(np.maximum(quiet - j, 1e-300))
        return np.concatenate(([0.0], np.cumsum(steps)))

    def dead_calls(self, calls: int, customers: float, observed: bool = False) -> float:
        """log P(``calls`` calls from a dead region of ``customers``): Poisson with a rate
        per customer from the mixture :func:`call_modes`, integrated out (negative binomial
        per mode); 0 without a call source (unless ``observed``)."""
        if not (self.calls_observed or observed):
            return 0.0
        key = (calls, customers)
        out = self._dead_calls_cache.get(key)
        if out is None:
            terms = [c + math.lgamma(a + calls) - (a + calls) * math.log(b + customers)
                     for c, a, b in self.call_consts]
            top = max(terms)
            out = top + math.log(sum(math.exp(t - top) for t in terms))
            self._dead_calls_cache[key] = out
        return out

    def dead_calls_at(self, calls: int, customers: npt.NDArray[np.float64]
                      ) -> npt.NDArray[np.float64]:
        """:meth:`dead_calls` for many region sizes at once."""
        out = np.zeros(len(customers), dtype=np.float64)
        if not self.calls_observed:
            return out
        for k, (w, a, b) in enumerate(self.call_modes):
            t = (w + math.lgamma(a + calls) - math.lgamma(a) + a * math.log(b)
                 - (a + calls) * np.log(b + customers))
            out = t if k == 0 else np.logaddexp(out, t)
        return np.asarray(out, dtype=np.float64)

    def stray_calls(self, alive: _Stats) -> float:
        """log P(the calls of the energised region), up to the constant every hypothesis
        shares (see :meth:`stray_term`): no call from an area of c customers has probability
        exp(-(spurious + low-voltage rate) x c)."""
        return alive.stray - (self.p.spurious_call_rate + self.p.lv_fault_rate) * alive.customers

    def stray_term(self, calls: int, customers: int) -> float:
        """log P(``calls`` calls | the area is energised) for an area of ``customers``: that
        many spurious calls (Poisson), or a low-voltage fault (rate per customer
        ``lv_fault_rate``) whose customers call as a dead area's do (:meth:`dead_calls`). The
        constant the dead region's term leaves out, ``calls x log(customers) - log(calls!)``,
        is left out here too (it is the same under every hypothesis)."""
        spurious = calls * self.log_spur
        if self.p.lv_fault_rate <= 0 or customers <= 0:
            return spurious
        lv = math.log(self.p.lv_fault_rate * customers) + self.dead_calls(calls, customers,
                                                                          observed=True)
        top = max(spurious, lv)
        return top + math.log1p(math.exp(-abs(spurious - lv)))

    def silent_shift(self, dead: _Stats, alive: _Stats, sizes: npt.NDArray[np.int64],
                      customers: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The change of :meth:`loglik` when regions of ``sizes`` areas and ``customers``, with
        no report of any kind, move from the energised region to the dead region ``dead``."""
        p = self.p
        j = np.arange(int(sizes.max()), dtype=np.float64)
        # dead reports: the beta-binomial of the dead region gains n unreported areas
        bb = p.dead_detect_b + dead.n - dead.dead
        ab = p.dead_detect_a + p.dead_detect_b + dead.n
        dead_cum = np.concatenate(([0.0], np.cumsum(np.log(bb + j) - np.log(ab + j))))
        # alive reports: the beta-binomial of the energised region loses n silent areas
        ra = p.alive_report_b + alive.n - alive.alive
        rt = p.alive_report_a + p.alive_report_b + alive.n
        alive_cum = np.concatenate(([0.0], np.cumsum(np.log(rt - 1 - j)
                                                     - np.log(np.maximum(ra - 1 - j, 1e-300)))))
        if not self.alive_observed:
            alive_cum[:] = 0.0
        calls = (self.dead_calls_at(dead.calls, dead.customers + customers)
                 - self.dead_calls(dead.calls, dead.customers))
        if self.calls_observed:
            calls = calls + (p.spurious_call_rate + p.lv_fault_rate) * customers
        log_1af = self.log_1af if self.alive_observed else 0.0
        shift = (dead_cum[sizes] + alive_cum[sizes] + sizes * log_1af
                 + self.false_shift(alive, len(j))[sizes] + calls)
        return np.asarray(shift, dtype=np.float64)


#: No flaky areas: their ranks and the running sum of their corrections (read-only).
_NO_RANKS = np.empty(0, dtype=np.int64)
_NO_FLAKY = np.zeros(1, dtype=np.float64)
_NO_RANKS.flags.writeable = False
_NO_FLAKY.flags.writeable = False


class _Component:
    """The localisation problem on one energised component (one source's tree)."""

    def __init__(self, topology: Topology, root: int, ev: _Resolved,
                 excluded: list[tuple[int, int]], params: LocaliserParams,
                 context: FaultContext = CALM) -> None:
        self.t = topology
        self.root = root
        self.p = params
        self.excluded = excluded  # sorted disjoint transformer-rank intervals [lo, hi)
        arrays = _index_arrays(topology)
        self.dead_ranks = arrays.ranks(ev.dead, root)
        self.alive_ranks = arrays.ranks(ev.alive, root)
        call_items = sorted(zip(arrays.ranks(ev.calls, root, keep_order=True),
                                [c for i, c in ev.calls.items() if topology.root[i] == root],
                                strict=True))
        self.call_ranks = [r for r, _ in call_items]
        self.lik = _Likelihood(params, ev, self._areas(root))
        self.call_prefix, self.stray_prefix = self._call_sums(call_items)
        self.open_reported = {i for i in ev.open_devices if topology.root[i] == root}
        #: factor of a telemetered device that operated and was not reported open (1 when
        #: the case had no telemetry: no data, not "nothing opened")
        self.open_miss = ((1.0 - params.open_report_true) / (1.0 - params.open_report_false)
                          if ev.open_observed else 1.0)
        self._stats_cache: dict[int, _Stats] = {}
        #: the flaky areas' corrections (:meth:`_flaky_areas`)
        self.flaky_ranks, self.flaky_prefix = self._flaky_areas(params)
        self.total = self.stats(root)
        self.log_open_bonus = (math.log(params.open_report_true)
                               - math.log(params.open_report_false))
        # beta-binomial prior on how many of the component's devices operated; the shared
        # rate's Beta is first updated with the devices operated elsewhere in the county
        self.n_devices = max(_device_count(topology, root), 1)
        self.regimes = fault_regimes(params, context)
        self.window = window_of(params, context)
        self._count_prior: list[float] = []
        #: what the areas that look dead gain beside a dead region (:class:`_Misfiled`)
        self.misfiled = _misfiled(self, call_items)
        self._start_pools()

    def _areas(self, root: int) -> int:
        """The component's areas, those under planned work or open devices left out."""
        lo, hi = self.tx_range(root)
        return hi - lo - sum(max(0, min(b, hi) - max(a, lo)) for a, b in self.excluded)

    def _call_sums(self, call_items: list[tuple[int, int]]) -> tuple[list[int], list[float]]:
        """Running sums over the calling areas (by rank) of their calls and of
        :meth:`_Likelihood.stray_term`."""
        calls, stray = [0], [0.0]
        cust = self.t.transformer_customer_prefix
        for r, c in call_items:
            calls.append(calls[-1] + c)
            stray.append(stray[-1] + self.lik.stray_term(c, cust[r + 1] - cust[r]))
        return calls, stray

    def loglik(self, dead: _Stats) -> float:
        """:meth:`_Likelihood.loglik` when exactly ``dead`` is off."""
        return self.lik.loglik(dead, self.total - dead)

    def _start_pools(self) -> None:
        """The hypotheses scored so far: none."""
        #: log prior weight of each candidate beyond the count prior: its kind, summed over
        #: the devices with the same downstream areas (any of them opening has the same effect)
        self.log_weight: dict[int, float] = {}
        self._score_cache: dict[frozenset[int], float] = {}
        self._silent_terms: dict[int, float] = {}
        #: scores and devices of the silent-region hypotheses (see :func:`_silent`)
        self._silent_scores: npt.NDArray[np.float64] = np.empty(0)
        self._silent_devices: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        #: the best score of a non-empty set so far (:meth:`score`)
        self._best = -math.inf
        #: the silent areas' own faults (see :func:`_silent_own_faults`): areas, scores
        self._own_silent: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] = (
            np.empty(0, dtype=np.int64), np.empty(0))
        #: "a best set plus one silent device": (the set, the devices added, their scores)
        self._extensions: list[tuple[frozenset[int], npt.NDArray[np.int64],
                                     npt.NDArray[np.float64]]] = []

    # subtree statistics, O(log n)
    def tx_range(self, i: int) -> tuple[int, int]:
        t = self.t
        lo = bisect.bisect_left(t.transformer_tins, t.tin[i])
        hi = bisect.bisect_right(t.transformer_tins, t.tout[i])
        return lo, hi

    def stats(self, i: int) -> _Stats:
        cached = self._stats_cache.get(i)
        if cached is not None:
            return cached
        lo, hi = self.tx_range(i)
        s = self._range_stats(lo, hi)
        for a, b in self.excluded:
            if b <= lo or a >= hi:
                continue
            s = s - self._range_stats(max(a, lo), min(b, hi))
        self._stats_cache[i] = s
        return s

    def _range_stats(self, lo: int, hi: int) -> _Stats:
        prefix = self.t.transformer_customer_prefix
        c_lo = bisect.bisect_left(self.call_ranks, lo)
        c_hi = bisect.bisect_left(self.call_ranks, hi)
        flaky = self.flaky_ranks
        return _Stats(
            n=hi - lo,
            dead=bisect.bisect_left(self.dead_ranks, hi) - bisect.bisect_left(self.dead_ranks, lo),
            alive=(bisect.bisect_left(self.alive_ranks, hi)
                   - bisect.bisect_left(self.alive_ranks, lo)),
            customers=prefix[hi] - prefix[lo],
            calls=self.call_prefix[c_hi] - self.call_prefix[c_lo],
            flaky=(float(self.flaky_prefix[bisect.bisect_left(flaky, hi)]
                         - self.flaky_prefix[bisect.bisect_left(flaky, lo)]) if len(flaky) else 0.0),
            stray=self.stray_prefix[c_hi] - self.stray_prefix[c_lo],
        )

    def _flaky_areas(self, params: LocaliserParams
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Ranks (sorted) of this component's areas with a false dead rate of their own, and
        the running sum of their corrections: log(rate / common rate) if reported dead,
        log((1 - rate) / (1 - common rate)) if not (counted while the area is energised)."""
        if not params.false_dead_areas:
            return _NO_RANKS, _NO_FLAKY
        t, dead = self.t, set(self.dead_ranks)
        items: list[tuple[int, float]] = []
        for area, rate in params.false_dead_areas:
            i = t.pos.get(area)
            if i is None or t.kinds[i] != "transformer" or t.root[i] != self.root:
                continue
            r = bisect.bisect_left(t.transformer_tins, t.tin[i])
            rate = min(max(rate, 1e-9), 0.5)
            items.append((r, math.log(rate) - self.lik.log_fd if r in dead
                          else math.log1p(-rate) - self.lik.log_1fd))
        items.sort()
        ranks = np.array([r for r, _ in items], dtype=np.int64)
        return ranks, np.concatenate(([0.0], np.cumsum([c for _, c in items])))

    def flaky_in(self, lo: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
                 ) -> npt.NDArray[np.float64]:
        """:attr:`_Stats.flaky` of the ranges [lo, lo + sizes) (vectorised)."""
        if not len(self.flaky_ranks):
            return np.zeros(len(lo), dtype=np.float64)
        p, ranks = self.flaky_prefix, self.flaky_ranks
        out = p[np.searchsorted(ranks, lo + sizes)] - p[np.searchsorted(ranks, lo)]
        return np.asarray(out, dtype=np.float64)

    def evidence_factor(self, i: int) -> float:
        """:meth:`kind_factor` times the telemetry's silence about the device: a telemetered
        device not reported open, in a case with telemetry, is ``open_miss`` as likely."""
        f = self.kind_factor(i)
        if self.open_miss != 1.0 and i not in self.open_reported and \
                self.t.kinds[i] in self.p.telemetered_kinds:
            f *= self.open_miss
        return f

    def kind_factor(self, i: int) -> float:
        """Prior weight of a device by its kind, relative to a protective device."""
        return kind_factor(self.p, self.t.kinds[i])

    def prior(self, i: int) -> float:
        """Log prior weight of candidate ``i`` (its kind, times its equivalent devices)."""
        w = self.log_weight.get(i)
        return w if w is not None else math.log(self.evidence_factor(i))

    def count_prior(self, k: int) -> float:
        """log P(a given set of k devices operated, and no other): the per-device rate is
        integrated out over the component's D devices under each regime's Beta (a
        beta-binomial), and the regimes are mixed (see :func:`fault_regimes`); times the
        window's count tilt (:func:`count_tilt`), if close-outs taught one."""
        cp = self._count_prior
        d = self.n_devices
        while len(cp) <= k:
            j = len(cp)
            terms = [w + _log_beta(a + j, b + max(d - j, 0)) - _log_beta(a, b)
                     for w, a, b in self.regimes]
            top = max(terms)
            cp.append(top + math.log(sum(math.exp(t - top) for t in terms))
                      + count_tilt(self.p, self.window, j))
        return cp[k]

    def silent_term(self, n: int) -> float:
        """count_prior(1) + loglik of a region of ``n`` areas with no evidence at all (cached
        per size): what every silent single-device hypothesis of that size shares."""
        t = self._silent_terms.get(n)
        if t is None:
            t = self._silent_terms[n] = self.count_prior(1) + self.loglik(_Stats(n=n))
        return t

    def score_silent(self, devices: npt.NDArray[np.int64], lo: npt.NDArray[np.int64],
                     sizes: npt.NDArray[np.int64], customers: npt.NDArray[np.float64],
                     log_weights: npt.NDArray[np.float64]) -> None:
        """:meth:`score` of single devices whose regions (``sizes`` areas, ``customers``) hold
        no evidence at all: per-size terms computed once, the customers' terms vectorised."""
        uniq, at = np.unique(sizes, return_inverse=True)
        terms = np.array([self.silent_term(n) for n in uniq.tolist()], dtype=np.float64)[at]
        scores = (terms + log_weights + self.lik.dead_calls_at(0, customers)
                  - self.flaky_in(lo, sizes))
        if self.misfiled:
            scores = scores + self.misfiled.at(lo - 1) + self.misfiled.at(lo + sizes)
        if self.lik.calls_observed:
            scores = scores + (self.p.spurious_call_rate + self.p.lv_fault_rate) * customers
        self._silent_scores = np.concatenate([self._silent_scores, scores])
        self._silent_devices = np.concatenate([self._silent_devices, devices])

    def score_silent_areas(self, devices: npt.NDArray[np.int64], ranks: npt.NDArray[np.int64],
                           log_weight: float, calls_terms: npt.NDArray[np.float64]) -> None:
        """:meth:`score_silent` of single areas (their own faults), ``calls_terms`` being
        what their customers add (:func:`_area_call_terms`)."""
        t = self.silent_term(1)
        scores = t + log_weight + calls_terms - self.flaky_in(ranks, np.ones_like(ranks))
        if self.misfiled:
            scores = scores + self.misfiled.at(ranks - 1) + self.misfiled.at(ranks + 1)
        self._own_silent = (devices, scores)

    def areas_negligible(self, log_weight: float, calls_terms: npt.NDArray[np.float64]
                         ) -> bool:
        """Whether every silent area's own fault together (``calls_terms`` as in
        :meth:`score_silent_areas`) is :data:`NEGLIGIBLE_TOTAL` beside the best set scored: an
        upper bound of their total, so that the common case skips scoring thousands of them."""
        if len(self.flaky_ranks) or not len(calls_terms) or self._best == -math.inf:
            return False
        t = self.silent_term(1)
        bound = (t + log_weight + float(calls_terms.max()) + 2.0 * self.misfiled.most()
                 + math.log(len(calls_terms)))
        return bound < self._best - NEGLIGIBLE_TOTAL

    def score_extensions(self, base: frozenset[int], devices: npt.NDArray[np.int64],
                         lo: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64],
                         customers: npt.NDArray[np.float64],
                         log_weights: npt.NDArray[np.float64]) -> None:
        """:meth:`score` of ``base`` plus one of ``devices`` whose regions (``sizes`` areas,
        ``customers``) hold no evidence and lie outside ``base``'s: a second fault none of
        whose reports arrived. Vectorised: the dead-region terms are pooled over the set, so
        each is a running sum over the added areas."""
        if not len(devices):
            return
        dead = _Stats()
        for d in base:
            dead = dead + self.stats(d)
        k = len(base)
        shift = (self.score(base) + self.count_prior(k + 1) - self.count_prior(k)
                 + self.lik.silent_shift(dead, self.total - dead, sizes, customers)
                 - self.flaky_in(lo, sizes))
        if self.misfiled:  # the areas beside the added region, not counted yet
            spans = [self.tx_range(d) for d in base]
            skip = np.concatenate([self.misfiled.beside(spans), self.misfiled.inside(spans)])
            shift = shift + self.misfiled.at(lo - 1, skip) + self.misfiled.at(lo + sizes, skip)
        self._extensions.append((base, devices, shift + log_weights))

    def score(self, devices: frozenset[int]) -> float:
        cached = self._score_cache.get(devices)
        if cached is not None:
            return cached
        dead = _Stats()
        s = self.count_prior(len(devices))
        for d in devices:
            dead = dead + self.stats(d)
            s += self.prior(d)
            if d in self.open_reported:
                s += self.log_open_bonus
        s += self.lik.loglik(dead, self.total - dead)
        if self.misfiled:
            beside = self.misfiled.beside([self.tx_range(d) for d in devices])
            s += float(self.misfiled.at(beside).sum())
        if devices and s > self._best:
            self._best = s
        self._score_cache[devices] = s
        return s

    def best_sets(self, n: int, within: float = math.inf) -> list[frozenset[int]]:
        """The ``n`` best non-empty sets scored so far, of those within ``within`` of the
        best log score."""
        items = sorted(((v, k) for k, v in self._score_cache.items() if k),
                       key=lambda vk: -vk[0])
        return [k for v, k in items[:n] if v >= items[0][0] - within]

    def related(self, a: int, b: int) -> bool:
        tin, tout = self.t.tin, self.t.tout
        return tin[a] <= tin[b] <= tout[a] or tin[b] <= tin[a] <= tout[b]

    def children_of(self, d: int, candidates: list[int]) -> list[int]:
        """The highest candidates strictly below ``d`` (candidates are in Euler order)."""
        tin, tout = self.t.tin, self.t.tout
        out: list[int] = []
        end = -1
        for c in candidates:
            if c == d or not (tin[d] < tin[c] <= tout[d]):
                continue
            if tin[c] > end:
                out.append(c)
                end = tout[c]
        return out

    def search(self, candidates: list[int]) -> None:
        """Score every single device, then local search for the best set of devices."""
        if not candidates:
            return
        for c in candidates:
            self.score(frozenset((c,)))
        best = max(candidates, key=lambda c: self._score_cache[frozenset((c,))])
        current = frozenset((best,))
        current_score = self._score_cache[current]
        for _ in range(4 * self.p.max_devices):
            best_move: frozenset[int] | None = None
            best_score = current_score
            for move in self._moves(current, candidates):
                s = self.score(move)
                if s > best_score:
                    best_move, best_score = move, s
            if best_move is None:
                break
            current, current_score = best_move, best_score
        self._swaps(current, candidates)

    def _moves(self, current: frozenset[int], candidates: list[int]) -> Iterator[frozenset[int]]:
        """The sets one step from ``current``, in a fixed order (ties go to the first)."""
        limit = self.p.max_devices
        for c in candidates:
            if c in current:
                continue
            # add c, or let c replace the devices of the set above or below it
            move = frozenset(d for d in current if not self.related(c, d)) | {c}
            if len(move) <= limit:
                yield move
        if len(current) > 1:
            for d in current:
                yield current - {d}
        # split: a device replaced by the candidates just below it (two faults on sibling
        # laterals look like their common ancestor until alive evidence rules it out)
        for d in current:
            below = self.children_of(d, candidates)
            if below:
                move = (current - {d}) | frozenset(below)
                if len(move) <= limit:
                    yield move

    def _swaps(self, current: frozenset[int], candidates: list[int]) -> None:
        """Swaps of one device of the best set: alternatives, and a fuller normalisation."""
        if len(current) < 2:
            return
        for d in current:
            rest = current - {d}
            for c in candidates:
                if c not in current and not any(self.related(c, e) for e in rest):
                    self.score(rest | {c})

    def ranked(self) -> list[tuple[frozenset[int], float]]:
        """The best :attr:`LocaliserParams.max_hypotheses` scored hypotheses (more on a tie)
        with their posterior probability, best first. Every hypothesis scored, the
        silent-region pools included, counts in the normalisation."""
        items = [(k, v) for k, v in self._score_cache.items() if k]
        if not items:
            return []
        pools = [(frozenset(), self._silent_devices, self._silent_scores),
                 (frozenset(), *self._own_silent), *self._extensions]
        top = max(max(v for _, v in items),
                  max((float(sc.max()) for _, _, sc in pools if len(sc)), default=-math.inf))
        z = sum(math.exp(v - top) for _, v in items)
        for base, devices, scores in pools:
            if not len(scores):
                continue
            z += float(np.exp(scores - top).sum())
            if float(scores.max()) < top - NEGLIGIBLE:
                continue  # in the total, too unlikely to list
            m = self.p.max_hypotheses
            best = (np.argpartition(scores, len(scores) - m)[len(scores) - m:]
                    if len(scores) > m else np.arange(len(scores)))
            items += [(base | {int(devices[j])}, float(scores[j])) for j in best]
        m = self.p.max_hypotheses
        if len(items) > m:  # only the best are listed (ties kept for the order below)
            cut = heapq.nlargest(m, (v for _, v in items))[-1]
            items = [kv for kv in items if kv[1] >= cut]
        tin = self.t.tin  # by score: probabilities that underflow to 0 keep their order
        items.sort(key=lambda kv: (-kv[1], len(kv[0]), sorted(tin[i] for i in kv[0])))
        return [(k, math.exp(v - top) / z) for k, v in items]


# -- public entry points ------------------------------------------------------------------------


def _excluded_intervals(topology: Topology, roots: Iterable[int]) -> list[tuple[int, int]]:
    tins = topology.transformer_tins
    spans: list[tuple[int, int]] = []
    for i in roots:
        if topology.tin[i] < 0:
            continue
        lo = bisect.bisect_left(tins, topology.tin[i])
        hi = bisect.bisect_right(tins, topology.tout[i])
        if hi > lo:
            spans.append((lo, hi))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _in_intervals(rank: int, intervals: list[tuple[int, int]]) -> bool:
    k = bisect.bisect_right(intervals, (rank, math.inf)) - 1
    return k >= 0 and intervals[k][0] <= rank < intervals[k][1]


#: A hypothesis this far (log score) below the best has a probability under 1e-13: it counts
#: in the total, and is not listed.
NEGLIGIBLE = 30.0
#: Hypotheses whose total is this far below the best (under 1e-7 of it) are not scored at all:
#: no stated probability moves in its third decimal.
NEGLIGIBLE_TOTAL = 16.0


#: An area's own fault is scored when at most this many other areas under its protective
#: device have positive evidence (a false report beside it, a second own fault); where more
#: report, the device explains them and "each its own fault" is not worth the search's time.
OWN_FAULT_NEIGHBOURS = 1
#: ... or at most this many, when an area under that device reports alive: the device is then
#: contradicted, and without the areas' own faults a few false reports beside one own fault
#: were pinned on it at ~1.0 (every hypothesis scored all but impossible).
OWN_FAULT_CONTRADICTED = 6


def _candidates(topology: Topology, comp: _Component, evidence_areas: Iterable[int],
                excluded: list[tuple[int, int]], excluded_devices: set[int]) -> list[int]:
    """Devices that could explain the evidence: those above positive evidence, plus reported
    open ones, plus the own transformer of an area with positive evidence that has at most
    :data:`OWN_FAULT_NEIGHBOURS` others under its protective device (or
    :data:`OWN_FAULT_CONTRADICTED`, when an area under it reports alive) (a fault of that area
    alone; where more areas under one device report, "each its own fault" is a burst of
    rare faults that the device explains, and scoring every area's own fault made big
    outages' searches three times slower at the tail); one representative per set of
    devices with the same downstream areas."""
    seen: set[int] = set()
    evidence_areas = list(evidence_areas)
    if kind_factor(comp.p, "transformer") > 0:
        seen.update(_own_fault_candidates(topology, comp, evidence_areas))
    for t in evidence_areas:
        i = topology.protective_above[t]
        while i >= 0 and i not in seen:
            seen.add(i)
            p = topology.parent[i]
            i = topology.protective_above[p] if p >= 0 else -1
    seen |= comp.open_reported
    return _representatives(topology, comp, seen, excluded_devices)


def _own_fault_candidates(topology: Topology, comp: _Component, evidence_areas: list[int]
                          ) -> list[int]:
    """The areas with positive evidence whose own fault is scored: see :func:`_candidates`,
    :data:`OWN_FAULT_NEIGHBOURS` and :data:`OWN_FAULT_CONTRADICTED`."""
    areas = [t for t in evidence_areas if topology.kinds[t] == "transformer"]
    above = Counter(topology.protective_above[t] for t in areas)

    def limit(device: int) -> int:
        if device >= 0 and comp.stats(device).alive:
            return OWN_FAULT_CONTRADICTED
        return OWN_FAULT_NEIGHBOURS + 1

    limits = {d: limit(d) for d in above}
    return [t for t in areas if above[topology.protective_above[t]]
            <= limits[topology.protective_above[t]]]


@dataclass(frozen=True)
class _Ranges:
    """Every distinct downstream range of a component's protective devices, as arrays: its
    transformer ranks [lo, hi), representative device, log prior weight, customers."""

    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]
    rep: npt.NDArray[np.int64]
    log_weight: npt.NDArray[np.float64]
    customers: npt.NDArray[np.float64]
    index: dict[tuple[int, int], int]
    #: prior weight of the telemetered devices among those with the range
    telemetered: npt.NDArray[np.float64]
    #: the component's areas: their transformers and customers, by rank from ``area_lo``
    area_lo: int
    area_nodes: npt.NDArray[np.int64]
    area_customers: npt.NDArray[np.float64]
    #: the areas whose own fault has a region no device has alone
    own_faults: npt.NDArray[np.bool_]
    #: per call model: :func:`_area_call_terms`
    call_terms: dict[tuple[tuple[tuple[float, float, float], ...], float],
                     npt.NDArray[np.float64]] = field(default_factory=dict)

    def weights(self, open_miss: float) -> npt.NDArray[np.float64]:
        """Log prior weights, the telemetered devices' times ``open_miss``."""
        if open_miss == 1.0:
            return self.log_weight
        w = np.exp(self.log_weight) - self.telemetered * (1.0 - open_miss)
        return np.asarray(np.log(np.maximum(w, 1e-300)), dtype=np.float64)


#: Per topology, component root, telemetered kinds and kind factors (not the evidence).
_RangesKey = tuple[int, tuple[str, ...], tuple[tuple[str, float], ...]]
_RANGES: weakref.WeakKeyDictionary[Topology, dict[_RangesKey, _Ranges]] = \
    weakref.WeakKeyDictionary()


def _component_ranges(topology: Topology, comp: _Component) -> _Ranges:
    cache: dict[_RangesKey, _Ranges]
    try:
        cache = _RANGES.setdefault(topology, {})
    except TypeError:
        cache = {}
    telemetered = comp.p.telemetered_kinds
    key_of: _RangesKey = (comp.root, telemetered, comp.p.kind_factors)
    ranges = cache.get(key_of)
    if ranges is None:
        reps: dict[tuple[int, int], int] = {}
        weight: dict[tuple[int, int], float] = {}
        tele: dict[tuple[int, int], float] = {}
        nodes, ids, kinds = topology.nodes, topology.ids, topology.kinds
        for i in _component_devices(topology, comp.root):
            key = comp.tx_range(i)
            if key[1] <= key[0] or nodes[ids[i]].normally_open:
                continue
            weight[key] = weight.get(key, 0.0) + comp.kind_factor(i)
            if kinds[i] in telemetered:
                tele[key] = tele.get(key, 0.0) + comp.kind_factor(i)
            held = reps.get(key)
            if held is None or _preferred(topology, i, held, comp):
                reps[key] = i
        keys = list(reps)
        prefix = topology.transformer_customer_prefix
        ranges = _Ranges(
            lo=np.array([k[0] for k in keys], dtype=np.int64),
            hi=np.array([k[1] for k in keys], dtype=np.int64),
            rep=np.array([reps[k] for k in keys], dtype=np.int64),
            log_weight=np.log(np.array([weight[k] for k in keys], dtype=np.float64)),
            customers=np.array([prefix[k[1]] - prefix[k[0]] for k in keys], dtype=np.float64),
            index={k: j for j, k in enumerate(keys)},
            telemetered=np.array([tele.get(k, 0.0) for k in keys], dtype=np.float64),
            **_component_areas(topology, comp, keys))
        cache[key_of] = ranges
    return ranges


def _component_areas(topology: Topology, comp: _Component,
                     device_ranges: list[tuple[int, int]]) -> dict[str, Any]:
    """The :class:`_Ranges` fields of the component's areas."""
    lo, hi = comp.tx_range(comp.root)
    prefix = np.asarray(topology.transformer_customer_prefix[lo:hi + 1], dtype=np.float64)
    own = np.ones(hi - lo, dtype=bool)
    own[[a - lo for a, b in device_ranges if b == a + 1]] = False
    return {"area_lo": lo,
            "area_nodes": np.asarray(topology.transformer_by_tin[lo:hi], dtype=np.int64),
            "area_customers": np.diff(prefix), "own_faults": own}


def _silent(topology: Topology, comp: _Component, candidates: list[int]) -> None:
    """Score "a device above no evidence operated and its region sent nothing" (every report
    from it missing, the evidence elsewhere false) for every such device of the component,
    so that the probabilities stated account for them (vectorised: a feeder has hundreds).
    Regions with an alive report are left out (an alive report from a dead area costs a
    factor ~1e-5: nothing to account for). The search does not start from these."""
    r = _component_ranges(topology, comp)
    ranks = np.array(sorted({*comp.dead_ranks, *comp.alive_ranks, *comp.call_ranks}),
                     dtype=np.int64)
    _silent_own_faults(topology, comp, r, ranks, candidates)
    if not len(r.lo):
        return
    keep = np.ones(len(r.lo), dtype=bool)
    if len(ranks):
        k = np.searchsorted(ranks, r.lo)
        keep &= ~((k < len(ranks)) & (ranks[np.minimum(k, len(ranks) - 1)] < r.hi))
    for i in candidates:  # scored by the search already
        j = r.index.get(comp.tx_range(i))
        if j is not None:
            keep[j] = False
    for a, b in comp.excluded:
        keep &= ~((r.lo < b) & (r.hi > a))
    if keep.any():
        weights = r.weights(comp.open_miss)
        comp.score_silent(r.rep[keep], r.lo[keep], (r.hi - r.lo)[keep], r.customers[keep],
                          weights[keep])
        _silent_extensions(topology, comp, r, keep, weights)


def _silent_own_faults(topology: Topology, comp: _Component, r: _Ranges,
                       evidence: npt.NDArray[np.int64], candidates: list[int]) -> None:
    """Score "an area's own fault, and the area sent nothing" for every area of the component
    without evidence (not already a device's region of one area, not a candidate, not
    excluded): with own faults scored where areas report, a lone false report among alive
    ones was otherwise that area's own fault at ~1.0, when the fault might as well be any
    silent area's. (Not added to the best sets as a second fault: the silent devices are.)"""
    factor = kind_factor(comp.p, "transformer")
    terms = _area_call_terms(comp, r)
    if factor <= 0 or comp.areas_negligible(math.log(factor), terms):
        return
    base = r.area_lo
    keep = r.own_faults.copy()
    keep[evidence - base] = False
    keep[[comp.tx_range(i)[0] - base for i in candidates
          if topology.kinds[i] == "transformer"]] = False
    for a, b in comp.excluded:
        keep[max(a - base, 0):max(b - base, 0)] = False
    if keep.any():
        comp.score_silent_areas(r.area_nodes[keep], np.flatnonzero(keep) + base,
                                math.log(factor), terms[keep])


def _area_call_terms(comp: _Component, r: _Ranges) -> npt.NDArray[np.float64]:
    """What each of the component's areas adds to a silent own fault's score by its customers:
    no call from them though off, and not their stray calls' share of the energised region
    (:meth:`_Component.score_silent`); cached with the ranges per call model."""
    p = comp.p
    if not comp.lik.calls_observed:
        return np.zeros(len(r.area_customers), dtype=np.float64)
    stray = p.spurious_call_rate + p.lv_fault_rate
    key = (tuple(comp.lik.call_modes), stray)
    out = r.call_terms.get(key)
    if out is None:
        out = r.call_terms[key] = (comp.lik.dead_calls_at(0, r.area_customers)
                                   + stray * r.area_customers)
    return out


#: How many of the best scored sets get "plus one silent device" scored, and how far below
#: the best a set may be (log score): one e^-12 as likely adds nothing that shows.
EXTENDED_SETS = 3
EXTENDED_WITHIN = 12.0


def _silent_extensions(topology: Topology, comp: _Component, r: _Ranges,
                       keep: npt.NDArray[np.bool_], weights: npt.NDArray[np.float64]) -> None:
    """Score each of the best few sets plus one device above no evidence, outside the set's
    regions: a second fault whose every report is missing. Without them a set that
    explained every report was stated at ~1.0, though in a storm a second, silent device
    operates often (the storm doubles were right 67 % of the time at a stated 0.97)."""
    for base in comp.best_sets(EXTENDED_SETS, EXTENDED_WITHIN):
        mask = keep.copy()
        for d in base:
            lo, hi = comp.tx_range(d)
            mask &= (r.hi <= lo) | (r.lo >= hi)
        if mask.any():
            comp.score_extensions(base, r.rep[mask], r.lo[mask], (r.hi - r.lo)[mask],
                                  r.customers[mask], weights[mask])


def _representatives(topology: Topology, comp: _Component, seen: set[int],
                     excluded_devices: set[int]) -> list[int]:
    """One device per set of ``seen`` devices with the same downstream areas (the one a crew
    is sent to), each weighted by the prior of all of them."""
    tin, tout = topology.tin, topology.tout
    nodes, ids = topology.nodes, topology.ids
    by_range: dict[tuple[int, int], int] = {}
    weight: dict[tuple[int, int], float] = {}
    for i in sorted(seen, key=lambda j: tin[j]):
        if nodes[ids[i]].normally_open or i in excluded_devices:
            continue
        # a device below a planned / already-open device cannot explain anything new
        if excluded_devices and any(tin[e] <= tin[i] <= tout[e] for e in excluded_devices):
            continue
        s = comp.stats(i)
        if s.n == 0 and i not in comp.open_reported:
            continue
        key = comp.tx_range(i) if i not in comp.open_reported else (-i - 1, 0)
        weight[key] = weight.get(key, 0.0) + comp.evidence_factor(i)
        held = by_range.get(key)
        if held is None or _preferred(topology, i, held, comp):
            by_range[key] = i
    for key, i in by_range.items():
        comp.log_weight[i] = math.log(weight[key])
    return sorted(by_range.values(), key=lambda j: tin[j])


def _preferred(topology: Topology, a: int, b: int, comp: _Component) -> bool:
    """Of two devices with the same downstream areas, the one a crew should be sent to: the
    more likely kind, and then the deeper one (protection is coordinated so the device
    nearest the fault clears it)."""
    pa, pb = comp.kind_factor(a), comp.kind_factor(b)
    if pa != pb:
        return pa > pb
    return topology.depth[a] > topology.depth[b]


def _describe(topology: Topology, devices: Iterable[int], probability: float, log_score: float,
              excluded: list[tuple[int, int]]) -> Hypothesis:
    ids = topology.ids
    device_ids = tuple(sorted((ids[d] for d in devices),
                              key=lambda n: topology.tin[topology.pos[n]]))
    feeders = tuple(dict.fromkeys(topology.feeder_of(n) for n in device_ids))
    return Hypothesis(device_ids, probability, feeders, log_score, topology, tuple(excluded))


def localise(topology: Topology, evidence: Evidence,
             params: LocaliserParams | None = None,
             context: FaultContext | None = None) -> LocateResult:
    """Rank the sets of operated devices that best explain ``evidence``.

    ``context`` is the weather of the window (a storm declared, devices operated elsewhere in
    the county); without it the window is calm. Evidence on several feeders is solved per
    energised component and combined (devices of the best hypothesis of each component
    together; alternatives vary one component).
    """
    params = params or LocaliserParams()
    context = context if context is not None else CALM
    if not isinstance(context, FaultContext):
        raise TypeError(f"context must be a FaultContext, got {type(context).__name__}")
    ev = _resolve(topology, evidence)
    root_of = topology.root
    excluded_devices = {i for i in ev.planned | ev.known_open
                        if topology.kinds[i] != "transformer"}
    excluded = _excluded_intervals(topology, ev.planned | ev.known_open)
    explained = _set_aside(topology, ev, excluded, excluded_devices)
    positive: dict[int, list[int]] = {}
    for i in sorted(ev.dead | set(ev.calls) | ev.open_devices):
        positive.setdefault(root_of[i], []).append(i)

    per_component: list[list[tuple[frozenset[int], float]]] = []
    for root in sorted(positive, key=lambda r: topology.tin[r]):
        comp = _Component(topology, root, ev, excluded, params, context)
        cands = _candidates(topology, comp, positive[root], excluded, excluded_devices)
        comp.search(cands)
        _silent(topology, comp, cands)
        ranked = comp.ranked()
        if ranked:
            per_component.append(ranked)

    combos = _combine(per_component, params.max_hypotheses)
    if combos and (params.calibration or params.calibration_maps):
        key = calibration_key(window_of(params, context), len(combos[0][0]))
        combos = _calibrate(combos, calibration_for(params, key))
    hypotheses = [_describe(topology, devs, prob, math.log(prob) if prob > 0 else -math.inf,
                            excluded) for devs, prob in combos]
    return LocateResult(hypotheses, ev.unknown, explained, ev.ambiguous)


def _set_aside(topology: Topology, ev: _Resolved, excluded: list[tuple[int, int]],
               excluded_devices: set[int]) -> list[str]:
    """Drop the evidence there is nothing to localise from: areas and devices not energised
    normally (isolated), and those under planned work or an already-open device (returned:
    explained by it)."""
    tin, tins = topology.tin, topology.transformer_tins

    def is_excluded(i: int) -> bool:
        return bool(excluded) and _in_intervals(bisect.bisect_left(tins, tin[i]), excluded)

    explained: dict[str, None] = {}
    for group in (ev.dead, ev.alive):
        group.difference_update([i for i in group if tin[i] < 0])
        if excluded:
            gone = [i for i in group if is_excluded(i)]
            group.difference_update(gone)
            explained.update(dict.fromkeys(topology.ids[i] for i in gone))
    for i in [i for i in ev.calls if tin[i] >= 0 and is_excluded(i)]:
        explained.setdefault(topology.ids[i], None)
    ev.calls = {i: c for i, c in ev.calls.items() if tin[i] >= 0 and not is_excluded(i)}
    ev.open_devices = {i for i in ev.open_devices if tin[i] >= 0
                       and not topology.nodes[topology.ids[i]].normally_open
                       and i not in excluded_devices and not is_excluded(i)}
    return sorted(explained)


def _calibrate(combos: list[tuple[frozenset[int], float]],
               knots: tuple[tuple[float, float], ...]) -> list[tuple[frozenset[int], float]]:
    """The top answer's probability through the calibration map; the others scaled so that
    the total stays what it was, but never above the top answer: the map says how often the
    answer given is right, not which other one takes the rest (scaled, a map that lowers the
    top a lot stated an alternative above the fault point named; what is capped off is left
    to answers not listed)."""
    if not knots or not combos:
        return combos
    top = combos[0][1]
    new_top = calibrated(knots, top)
    scale = (1.0 - new_top) / (1.0 - top) if top < 1.0 else 0.0
    return [(combos[0][0], new_top)] + [(d, min(p * scale, new_top)) for d, p in combos[1:]]


def calibrated(knots: Sequence[tuple[float, float]], p: float) -> float:
    """``p`` through a calibration map (the identity without knots): linear between knots,
    flat beyond the ends."""
    if not knots:
        return p
    xs = [k[0] for k in knots]
    i = bisect.bisect_left(xs, p)
    if i == 0:
        return knots[0][1]
    if i == len(knots):
        return knots[-1][1]
    (x0, y0), (x1, y1) = knots[i - 1], knots[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (p - x0) / (x1 - x0)


def _combine(per_component: list[list[tuple[frozenset[int], float]]],
             limit: int) -> list[tuple[frozenset[int], float]]:
    """Joint hypotheses over independent components: the product of their probabilities."""
    if not per_component:
        return []
    best = [ranked[0] for ranked in per_component]
    joint: list[tuple[frozenset[int], float]] = []
    devices = frozenset().union(*(b[0] for b in best))
    joint.append((devices, math.prod(b[1] for b in best)))
    for k, ranked in enumerate(per_component):
        others = frozenset().union(*(b[0] for j, b in enumerate(best) if j != k))
        other_p = math.prod(b[1] for j, b in enumerate(best) if j != k)
        for alt, p in ranked[1:limit]:
            joint.append((others | alt, other_p * p))
    joint.sort(key=lambda kv: -kv[1])
    return joint[:limit]


def naive_common_ancestor(topology: Topology, evidence: Evidence) -> LocateResult:
    """The baseline: the nearest protective device above everything reported dead or called
    in (per energised component), ignoring alive reports and reliabilities."""
    ev = _resolve(topology, evidence)
    groups: dict[int, list[str]] = {}
    for i in sorted(ev.dead | set(ev.calls)):
        if topology.tin[i] >= 0:
            groups.setdefault(topology.root[i], []).append(topology.ids[i])
    devices: list[int] = []
    for root in sorted(groups, key=lambda r: topology.tin[r]):
        dev = topology.common_protective_device(groups[root])
        if dev is not None:
            devices.append(topology.pos[dev])
    if not devices:
        return LocateResult([], ev.unknown, ambiguous=ev.ambiguous)
    return LocateResult([_describe(topology, devices, 1.0, 0.0, [])], ev.unknown,
                        ambiguous=ev.ambiguous)
