"""Repair priority of an incident: who is off, how many, and for how long.

Pure: the topology, the affected transformer areas, the incident start and ``now`` in; a
:class:`Priority` out. No clock reads, no I/O.

The ordering principle (docs/design.md §4, SGCC practice: "restore first, repair after") is
important users (special > first > second grade), then life-support and elderly-living-alone
households, then the number of customers off; the time already elapsed breaks ties and lets a
long outage climb over time. A weighted sum keeps that order for realistic cases while staying
explainable to the command centre (every term is in :attr:`Priority.breakdown`)::

    score = Σ_important users  w[grade]                     (special 1000, first 400, second 150)
          + Σ_households        w[tag] for each tag it has  (life_support 600, elderly_alone 120,
                                                             + any configured extra tags)
          + per_customer_log × log10(1 + customers off)     (40: 10 → 42, 100 → 80, 1000 → 120)
          + per_hour × min(hours elapsed, elapsed_cap_hours)   (20/h, capped at 24 h → 480)

rounded to an integer. A customer with both a grade and tags scores both. The customer term is
logarithmic so that no ordinary outage outranks a special-grade user (1000 points would take
10^25 customers) while a whole feeder still outranks a single transformer area; it also keeps a
second-grade user (150) above anything under ~5 600 ordinary customers. Elapsed time is capped
so that a forgotten incident does not outrank every new one forever: after the cap it is the
command centre's job (the deadline escalation) rather than the score's.

An outage nobody could place (``unplaced``: no transformer area known, so how many are off is
for a person to check) is not scored as if nobody were off: its customer term counts the
customers of its whole line (``feeder``), or of the bundle's largest line when its line is
unknown — the most it may be — and its reasons say the count is to be checked. It has no
grade or tag terms (nobody is known to be off). So it comes before known outages of fewer
ordinary customers than that line, and stays below any special- or first-grade user or
life-support household known to be off. Only the caller's ``unplaced`` says so: a score of no areas is
otherwise nothing off (the score stays monotone in the areas off).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from outage_sentinel.topology import CARE_TAGS, Customer, Topology

#: Tags that make a household a special-care household (visited by the crew, checked on by
#: the village liaison): the topology's one set, :data:`outage_sentinel.topology.CARE_TAGS`.
#: Other tags may carry weight but do not put a household on the list.
SPECIAL_CARE_TAGS: tuple[str, ...] = CARE_TAGS
GRADES: tuple[str, ...] = ("special", "first", "second")

GRADE_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"special": "特级重要用户", "first": "一级重要用户", "second": "二级重要用户"},
    "en": {"special": "special-grade important user", "first": "first-grade important user",
           "second": "second-grade important user"},
}
TAG_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"life_support": "生命支持设备用户", "elderly_alone": "独居老人",
           "cold_storage": "冷库", "greenhouse": "温室大棚", "livestock": "养殖户"},
    "en": {"life_support": "life-support household", "elderly_alone": "elderly living alone",
           "cold_storage": "cold storage", "greenhouse": "greenhouse", "livestock": "livestock"},
}


@dataclass(frozen=True)
class PriorityWeights:
    """Weights of the priority formula (see the module docstring). Immutable, so one value can
    be shared by the daemon and the tests, and a config reload swaps the whole thing."""

    #: Per important user of each grade (``customers.csv`` ``importance``).
    special: float = 1000.0
    first: float = 400.0
    second: float = 150.0
    #: Per household with the tag (``customers.csv`` ``tags``).
    life_support: float = 600.0
    elderly_alone: float = 120.0
    #: Weights of further tags, e.g. ``(("cold_storage", 30.0),)``; none by default.
    extra_tags: tuple[tuple[str, float], ...] = ()
    #: Multiplier of log10(1 + customers off).
    per_customer_log: float = 40.0
    #: Per hour since the incident started, up to ``elapsed_cap_hours``.
    per_hour: float = 20.0
    elapsed_cap_hours: float = 24.0
    #: At most this many names per category in :attr:`Priority.reasons`; the rest are counted.
    max_named: int = 5

    def grade_weight(self, grade: str) -> float:
        return {"special": self.special, "first": self.first, "second": self.second}.get(grade, 0.0)

    def tag_weights(self) -> dict[str, float]:
        """Every weighted tag, the two named ones first."""
        weights = {"life_support": self.life_support, "elderly_alone": self.elderly_alone}
        for tag, weight in self.extra_tags:
            weights[tag] = weight
        return weights


@dataclass(frozen=True)
class Priority:
    """The priority of one incident at one instant.

    ``breakdown`` has one entry per term (always the same keys for the grades, the two named
    tags, ``customers`` and ``elapsed``; extra tags only when configured), so a dashboard can
    show why. ``reasons`` are short human-readable lines, most important first.
    """

    score: int
    breakdown: dict[str, float] = field(hash=False)
    reasons: tuple[str, ...]
    #: Customer ids with a special-care tag (life support, elderly living alone), most urgent first.
    special_care: tuple[str, ...]
    #: Customer ids with an important-user grade, special grade first.
    important: tuple[str, ...]
    #: How many important users per grade and households per weighted tag (same keys as the
    #: breakdown's grade and tag entries), for short summaries and dashboards.
    counts: dict[str, int] = field(default_factory=dict, hash=False)
    customers: int = 0
    elapsed_hours: float = 0.0
    #: No transformer area of the outage is known (:func:`score`'s ``unplaced``): how many are
    #: off is to be checked; ``customers`` is then 0 and ``assumed_customers`` what it is scored as.
    unplaced: bool = False
    #: The customers an unplaced outage is scored as (:func:`unplaced_customers`), else 0.
    assumed_customers: int = 0
    #: Whether ``assumed_customers`` is its own line's (else the largest line's, its line unknown).
    assumed_line: bool = False
    #: When the outage began (what ``elapsed_hours`` counts from), so that a message stating
    #: how long it has lasted (:func:`elapsed_words`) can count it again when it is sent.
    start: datetime | None = None
    #: How long the outage has lasted as a message states it, when counted from another start
    #: than the score's (:func:`stated_from`); ``None``: ``elapsed_hours``.
    stated_hours: float | None = None
    #: The start a message could state is unverified (:func:`stated_from` with ``None``): no
    #: duration is stated (nor counted again when it is sent), whatever the score counts.
    unverified: bool = False


def stated_from(priority: Priority, start: datetime | None, now: datetime,
                language: str = "zh") -> Priority:
    """``priority`` as a message states it when the start it may state is ``start``
    (:func:`outage_sentinel.liaison.checked_start`): its duration counted from ``start``, or
    none at all (``None``: only a meter read hours off gives the start, so 已停电N小时 would
    be a guess stated as fact). The score and its breakdown stay as they are: the order of
    work may use the meters' start, a sentence to a person may not."""
    if start == priority.start:
        return priority
    said = elapsed_words(priority.elapsed_hours, language)
    reasons = list(priority.reasons)
    if said and reasons and reasons[-1] == said:
        reasons.pop()
    if start is None:
        return replace(priority, reasons=tuple(reasons), start=None, unverified=True)
    hours = max(0.0, (now - start).total_seconds() / 3600.0)
    if elapsed_words(hours, language):
        reasons.append(elapsed_words(hours, language))
    return replace(priority, reasons=tuple(reasons), start=start, stated_hours=hours)


def stated_hours(priority: Priority) -> float | None:
    """How long the outage has lasted as a message says it (:func:`stated_from`); ``None``:
    it says nothing of it (the start is unverified)."""
    if priority.unverified:
        return None
    return priority.elapsed_hours if priority.stated_hours is None else priority.stated_hours


def affected_customers(topology: Topology, transformers: Iterable[str]) -> list[Customer]:
    """``customers.csv`` rows of the given transformer areas (unknown ids skipped, each area
    once), in the order the areas are given."""
    out: list[Customer] = []
    for t in dict.fromkeys(transformers):
        out.extend(topology.customers_by_transformer.get(t, ()))
    return out


def special_care_customers(customers: Iterable[Customer]) -> list[Customer]:
    """Customers with a special-care tag, life support before elderly-alone (then input order),
    because a life-support household without power is in danger within hours."""
    rank = {tag: i for i, tag in enumerate(SPECIAL_CARE_TAGS)}
    chosen = [c for c in customers if any(t in rank for t in c.tags)]
    return sorted(chosen, key=lambda c: min(rank[t] for t in c.tags if t in rank))


def important_customers(customers: Iterable[Customer]) -> list[Customer]:
    """Customers with an important-user grade, special grade first (then input order)."""
    rank = {g: i for i, g in enumerate(GRADES)}
    return sorted((c for c in customers if c.importance in rank), key=lambda c: rank[c.importance])


def score(topology: Topology, transformers: Iterable[str], start: datetime, now: datetime,
          weights: PriorityWeights = PriorityWeights(), language: str = "zh", *,
          unplaced: bool = False, feeder: str | None = None) -> Priority:
    """Score an outage of ``transformers`` (transformer-area ids) that began at ``start``.

    ``now`` before ``start`` (clock skew between sources) counts as zero elapsed time rather
    than lowering the score. ``language`` (``zh``/``en``) is only for :attr:`Priority.reasons`.
    ``unplaced``: the outage could not be placed on any area (on line ``feeder``; ``"?"`` or
    ``None``: unknown); with no known area among ``transformers`` it is scored as its line's
    customers (:func:`unplaced_customers`, the module docstring's rule).
    """
    areas = [t for t in dict.fromkeys(transformers) if t in topology.nodes]
    rows = affected_customers(topology, areas)
    customers = topology.customers_of(areas)
    unplaced = unplaced and not areas
    assumed, own_line = unplaced_customers(topology, feeder) if unplaced else (0, False)
    hours = max(0.0, (now - start).total_seconds() / 3600.0)
    important = important_customers(rows)
    breakdown, counts = _breakdown(rows, important, weights)
    breakdown["customers"] = weights.per_customer_log * math.log10(1 + (customers or assumed))
    breakdown["elapsed"] = weights.per_hour * min(hours, weights.elapsed_cap_hours)
    zh = language == "zh"
    reasons = _grade_reasons(important, weights, language) + \
        _tag_reasons(rows, weights, language)
    reasons.append(UNPLACED_REASON[language if zh else "en"] + _count(0, assumed, own_line, zh)
                   if unplaced else _count(customers, None, False, zh))
    if elapsed_words(hours, language):
        reasons.append(elapsed_words(hours, language))
    return Priority(
        score=int(round(sum(breakdown.values()))), breakdown=breakdown, reasons=tuple(reasons),
        special_care=tuple(c.id for c in special_care_customers(rows)),
        important=tuple(c.id for c in important), counts=counts, customers=customers,
        elapsed_hours=hours, unplaced=unplaced, assumed_customers=assumed, assumed_line=own_line,
        start=start)


#: What an unplaced outage's reasons say before its count (:func:`_count`).
UNPLACED_REASON = {"zh": "无法定位到台区，", "en": "no transformer area placed: "}


def unplaced_customers(topology: Topology, feeder: str | None) -> tuple[int, bool]:
    """The customers an outage placed on no area is scored as, and whether they are its own
    line's: every customer ``feeder`` energises, else (the line unknown, or not in the
    bundle) those of the bundle's largest line — it may be any of them."""
    heads = topology.sources
    own = [s for s in heads if feeder and topology.feeder_of(s) == feeder]
    counts = [topology.downstream_customers(s) for s in (own or heads)]
    return max(counts, default=0), bool(own)


def _count(customers: int, assumed: int | None, own_line: bool, zh: bool) -> str:
    """How many are off: 停电1111户; for an unplaced outage (``assumed`` not None, the count
    it is scored as) 停电户数待核实（按全线200户计）, never 停电0户."""
    if assumed is None:
        return f"停电{customers}户" if zh else f"{customers} customers off"
    if zh:
        return f"停电户数待核实（按{'全线' if own_line else '最大线路'}{assumed}户计）"
    line = "the whole line" if own_line else "the largest line"
    return f"customers off to be checked (scored as {line}'s {assumed})"


def _breakdown(rows: list[Customer], important: list[Customer], weights: PriorityWeights
               ) -> tuple[dict[str, float], dict[str, int]]:
    """Score terms (and counts) for important-user grades and customer tags."""
    tag_weights = weights.tag_weights()
    breakdown: dict[str, float] = {g: 0.0 for g in GRADES}
    breakdown.update({tag: 0.0 for tag in tag_weights})
    counts = {key: 0 for key in breakdown}
    for c in important:
        breakdown[c.importance] += weights.grade_weight(c.importance)
        counts[c.importance] += 1
    for c in rows:
        for tag in dict.fromkeys(c.tags):  # a tag repeated in the CSV counts once
            if tag in tag_weights:
                breakdown[tag] += tag_weights[tag]
                counts[tag] += 1
    return breakdown, counts


def _grade_reasons(important: list[Customer], weights: PriorityWeights,
                   language: str) -> list[str]:
    """Important users are few and each matters on its own: name them, one line each."""
    zh = language == "zh"
    grade_labels = GRADE_LABELS.get(language, GRADE_LABELS["en"])
    reasons: list[str] = []
    for grade in GRADES:
        of_grade = [c for c in important if c.importance == grade]
        for c in of_grade[: weights.max_named]:
            reasons.append(f"{c.name or c.id}（{grade_labels[grade]}）" if zh
                           else f"{c.name or c.id} ({grade_labels[grade]})")
        if len(of_grade) > weights.max_named:
            rest = len(of_grade) - weights.max_named
            reasons.append(f"另有{rest}个{grade_labels[grade]}" if zh
                           else f"{rest} more {grade_labels[grade]}s")
    return reasons


def _tag_reasons(rows: list[Customer], weights: PriorityWeights, language: str) -> list[str]:
    """One line per tag with weight: how many households, the first few named."""
    zh = language == "zh"
    tag_labels = TAG_LABELS.get(language, TAG_LABELS["en"])
    reasons: list[str] = []
    for tag in weights.tag_weights():
        tagged = [c for c in rows if tag in c.tags]
        if not tagged:
            continue
        label = tag_labels.get(tag, tag)
        names = ("、" if zh else ", ").join(c.name or c.id for c in tagged[: weights.max_named])
        more = len(tagged) > weights.max_named
        if zh:
            reasons.append(f"{label}{len(tagged)}户：{names}{'等' if more else ''}")
        else:
            reasons.append(f"{len(tagged)} {label}: {names}{', ...' if more else ''}")
    return reasons


def elapsed_words(hours: float, language: str = "zh") -> str:
    """How long the outage has lasted, as the last of :attr:`Priority.reasons` and of
    :func:`summary` say it (已停电1小时33分钟, off for 1 h 33 min); empty under a minute (they
    say nothing of it). Worded here only, so that a message queued with it can find it in its
    text and say it again as true when it is sent
    (:func:`outage_sentinel.crew.duration_true_at`)."""
    if hours < 1 / 60:
        return ""
    zh = language == "zh"
    return f"已停电{_duration(hours, zh)}" if zh else f"off for {_duration(hours, zh)}"


#: Between the parts of :func:`summary` (and the templates' join of the reasons): the duration
#: follows the count after it (:func:`outage_sentinel.crew.duration_true_at` finds it so).
REASON_SEPARATORS: Mapping[str, str] = {"zh": "；", "en": "; "}


def _duration(hours: float, zh: bool) -> str:
    # whole minutes, rounded down; the tolerance keeps 7380 s (2.05 h) 2小时3分钟, not the
    # 2小时2分钟 its binary fraction would floor to
    minutes = int(math.floor(hours * 60 + 1e-6))
    h, m = divmod(minutes, 60)
    if zh:
        return f"{h}小时{m}分钟" if h else f"{m}分钟"
    return f"{h} h {m} min" if h else f"{m} min"


def summary(priority: Priority, language: str = "zh") -> str:
    """One short line of counts (no names), for messages that list the people separately:
    ``特级重要用户1个；生命支持设备用户1户；停电1111户；已停电20分钟``."""
    zh = language == "zh"
    grade_labels = GRADE_LABELS.get(language, GRADE_LABELS["en"])
    tag_labels = TAG_LABELS.get(language, TAG_LABELS["en"])
    parts: list[str] = []
    for key, n in priority.counts.items():
        if not n:
            continue
        if key in grade_labels:
            parts.append(f"{grade_labels[key]}{n}个" if zh else f"{n} {grade_labels[key]}(s)")
        else:
            label = tag_labels.get(key, key)
            parts.append(f"{label}{n}户" if zh else f"{n} {label}")
    parts.append(_count(priority.customers, priority.assumed_customers if priority.unplaced
                        else None, priority.assumed_line, zh))
    hours = stated_hours(priority)
    if hours is not None and elapsed_words(hours, language):
        parts.append(elapsed_words(hours, language))
    return REASON_SEPARATORS["zh" if zh else "en"].join(parts)
