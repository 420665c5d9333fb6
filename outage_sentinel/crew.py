"""Repair-crew dispatch: which crew goes, by when it must arrive, and what its message says.

Pure: topology, incident, priority, busy crews and ``now`` in; decisions and template contexts
out. The daemon owns the state (who is busy on what, who is on site) and the outbox.

- :func:`arrival_deadline` — the arrival commitment (SGCC: 45 min urban, 90 min rural, 2 h
  remote) of the *strictest* area type among the affected villages, from detection.
- :func:`choose_crew` — crews covering the incident's feeder first, then distance from the
  crew's base; a crew busy on a strictly lower-priority incident may be pulled off it
  (:attr:`CrewChoice.preempts`); with no covering crew, the nearest other crew
  (:attr:`CrewChoice.outside_area`); ``None`` when every crew is busy on something as urgent.
- :func:`deadline_at_risk` — whether to escalate to the command centre.
- :func:`dispatch_context`, :func:`care_list_context`, :func:`escalation_context` — the dicts
  the ``crew_dispatch``, ``liaison_care`` and ``command_escalation`` templates render.

The dispatch and care-list contexts carry household names and phone numbers in full: the crew
and the village liaison need them to call and visit. They belong in the message body only —
log incident and customer ids, never these contexts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

from outage_sentinel import sms_params
from outage_sentinel.incidents import (
    Incident,
    evidence_of,
    stated_percent,
    unexplained_areas,
    village_etr,
    village_start,
)
from outage_sentinel.liaison import checked_start, stated_restored
from outage_sentinel.priority import (
    GRADE_LABELS,
    REASON_SEPARATORS,
    TAG_LABELS,
    Priority,
    PriorityWeights,
    affected_customers,
    elapsed_words,
    important_customers,
    score,
    special_care_customers,
    stated_from,
    stated_hours,
    summary,
)
from outage_sentinel.topology import DEVICE_KINDS, PROTECTIVE_KINDS, Crew, Customer, Topology

#: Amap (高德) URI-API marker page, needs no key. ``position`` is read as GCJ-02 unless the
#: template adds ``&coordinate=wgs84``; ``&callnative=1`` tries the Amap app on phones.
DEFAULT_MAP_URL = "https://uri.amap.com/marker?position={lon},{lat}&name={label}"
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius

AREA_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"urban": "城区", "rural": "农村", "remote": "偏远地区"},
    "en": {"urban": "urban", "rural": "rural", "remote": "remote"},
}
KIND_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"fault": "故障停电", "planned": "计划停电", "temporary": "临时停电"},
    "en": {"fault": "Fault outage", "planned": "Planned outage", "temporary": "Temporary outage"},
}
DEVICE_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"source": "出线开关", "breaker": "断路器", "recloser": "重合器",
           "sectionalizer": "分段器", "fuse": "熔断器", "switch": "开关", "junction": "杆塔",
           # the area's own fault: the transformer or its drop-out fuse
           "transformer": "配变及跌落式熔断器"},
    "en": {"source": "feeder head", "breaker": "breaker", "recloser": "recloser",
           "sectionalizer": "sectionalizer", "fuse": "fuse", "switch": "switch",
           "junction": "pole", "transformer": "transformer and its drop-out fuse"},
}
#: How sure the fault point is, as a crew and the board read it: set by the command centre,
#: reported operated by a source, or inferred by the localiser (with its probability).
BASIS_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"set": "运行人员确认", "reported": "数据源报告动作", "inferred": "疑似动作"},
    "en": {"set": "confirmed by the command centre", "reported": "reported operated by a source",
           "inferred": "suspected to have operated"},
}
#: An alternative hypothesis is "close" (named beside the best) when at least this share of
#: the best one's probability.
CLOSE_ALTERNATIVE = 0.5
ROLE_LABELS: Mapping[str, Mapping[str, str]] = {
    # Why each device is on the list: the one that opened; the one above, in case it was the
    # one that tripped (over-reach); the ones below, in case one of them failed to clear a
    # fault in its own zone (the fault may be past them); one a source reported operated that
    # the fault point leaves out; the protection of areas reported off outside the section.
    "zh": {"operated": "疑似动作", "upstream": "上级保护，核对是否越级",
           "downstream": "下级保护，核对是否拒动",
           "named": "数据源报告动作，未列为故障点，请一并核查",
           "named_alive": "数据源报告动作，但其下{areas}表计报告有电，未列为故障点，请一并核查",
           "reported": "其下已报停电的{areas}不在上述区段，请一并核查",
           "also": "；亦为{role}"},
    "en": {"operated": "suspected to have operated",
           "upstream": "upstream protection: check for over-tripping",
           "downstream": "downstream protection: check it did not fail to clear",
           "named": "reported operated by a source, not taken as the fault point: check it too",
           "named_alive": "reported operated by a source, but meters below it ({areas}) report "
                          "power; not taken as the fault point: check it too",
           "reported": "{areas} below it reported off outside that section: check it too",
           "also": "; also {role}"},
}
#: How a dispatch counts the time to its arrival deadline (:func:`deadline_count`): minutes
#: left, or minutes past it.
COUNT_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"left": "剩{n}分钟", "overdue": "已超{n}分钟"},
    "en": {"left": "{n} min left", "overdue": "{n} min overdue"},
}
REASON_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"at_risk": "到达时限将超", "overdue": "已超到达时限", "no_crew": "无可派抢修班组"},
    "en": {"at_risk": "arrival deadline at risk", "overdue": "arrival deadline missed",
           "no_crew": "no crew available"},
}


@dataclass(frozen=True)
class Commitments:
    """Arrival commitments in minutes from detection, by village area type (SGCC defaults;
    GB/T 28583 allows 60/120/240)."""

    urban: float = 45.0
    rural: float = 90.0
    remote: float = 120.0
    #: Area type assumed when no affected village is known (e.g. only a feeder was reported).
    default_area_type: str = "rural"

    def minutes(self, area_type: str) -> float:
        """Minutes for the area type; an unknown type (a typo in ``villages.csv`` that got past
        validation, or a new type) falls back to the default area type's commitment."""
        table = {"urban": self.urban, "rural": self.rural, "remote": self.remote}
        if area_type in table:
            return table[area_type]
        return table.get(self.default_area_type, self.rural)


@dataclass(frozen=True)
class DispatchParams:
    """Everything :mod:`crew` needs from ``dispatch:`` in the config. Immutable."""

    commitments: Commitments = Commitments()
    #: Escalate when the crew would arrive less than this long before the deadline.
    at_risk_margin_minutes: float = 15.0
    #: Assumed average road speed from a crew base to the site, by area type of the site.
    urban_speed_kmh: float = 25.0
    rural_speed_kmh: float = 30.0
    remote_speed_kmh: float = 20.0
    #: Road distance / straight-line distance (rural roads wind; ~1.3–1.5 is typical).
    road_factor: float = 1.4
    #: ``{lat}``, ``{lon}`` (6 decimals) and ``{label}`` (URL-encoded) are substituted.
    map_url_template: str = DEFAULT_MAP_URL
    #: Longest lists in one message (group-robot text messages are ≤ 2048 bytes).
    max_households: int = 8
    max_patrol_nodes: int = 8

    def speed_kmh(self, area_type: str) -> float:
        return {"urban": self.urban_speed_kmh, "remote": self.remote_speed_kmh}.get(
            area_type, self.rural_speed_kmh)


@dataclass(frozen=True)
class Busy:
    """What a busy crew is working on. ``incident_id`` may be unknown (``None``)."""

    priority: int
    incident_id: str | None = None
    #: The crew is at work on site (not on its way): never pulled off automatically, only by
    #: an operator naming it (a crew up a pole or with a line made safe cannot just leave).
    on_site: bool = False
    #: Never pulled off automatically either, though on its way: the command centre named it
    #: for this work (the daemon does not undo that decision), or another region's daemon
    #: sent it (that incident is not this daemon's to release).
    kept: bool = False


@dataclass(frozen=True)
class CrewChoice:
    """The crew to send and what is known about its trip."""

    crew: Crew
    #: Straight-line distance base → site; None when either has no coordinates.
    distance_km: float | None
    #: Estimated road travel time; None when the distance is unknown.
    travel_minutes: float | None
    eta: datetime | None
    #: The incident's feeder is not in the crew's service area.
    outside_area: bool = False
    #: The lower-priority work the crew is being pulled off, if any.
    preempts: Busy | None = None


# -- geometry -----------------------------------------------------------------------------------


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two (lat, lon) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def crew_base(crew: Crew) -> tuple[float, float] | None:
    """The crew's base from the ``lat``/``lon`` extra columns of ``crews.csv``, if usable."""
    try:
        lat, lon = float(crew.extra["lat"]), float(crew.extra["lon"])
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    return lat, lon


def incident_location(topology: Topology, devices: Sequence[str],
                      transformers: Iterable[str]) -> tuple[float, float] | None:
    """Where to send the crew: the first located fault device's coordinates, else the centroid
    of the affected transformer areas that have coordinates, else None."""
    for d in devices:
        node = topology.nodes.get(d)
        if node is not None and node.lat is not None and node.lon is not None:
            return node.lat, node.lon
    points: list[tuple[float, float]] = []
    for t in transformers:
        node = topology.nodes.get(t)
        if node is not None and node.lat is not None and node.lon is not None:
            points.append((node.lat, node.lon))
    if not points:
        return None
    # An arithmetic mean is fine at county scale (tens of km): the error is metres.
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def travel_minutes(distance_km: float, area_type: str,
                   params: DispatchParams = DispatchParams()) -> float:
    """Road travel time for a straight-line distance at the area type's assumed speed."""
    return distance_km * params.road_factor / params.speed_kmh(area_type) * 60.0


def map_link(lat: float, lon: float, label: str, template: str = DEFAULT_MAP_URL) -> str:
    """A map URL for a point. ``label`` is percent-encoded (UTF-8) so Chinese names, spaces,
    ``&`` and ``#`` cannot break the query string."""
    return template.format(lat=f"{lat:.6f}", lon=f"{lon:.6f}", label=quote(label, safe=""))


# -- deadline -----------------------------------------------------------------------------------


def arrival_deadline(topology: Topology, villages: Iterable[str], detected_at: datetime,
                     commitments: Commitments = Commitments()) -> tuple[datetime, str]:
    """The arrival deadline and the area type it comes from.

    The strictest (shortest) commitment among the affected villages applies: an outage that
    reaches one urban street is held to the urban 45 minutes even if most of it is rural.
    Unknown village ids are ignored; with no known village, ``default_area_type`` applies.
    """
    types = {topology.villages[v].area_type for v in villages if v in topology.villages}
    if not types:
        types = {commitments.default_area_type}
    # Sort by minutes then name, so equal commitments give a stable answer.
    area_type = min(types, key=lambda a: (commitments.minutes(a), a))
    return detected_at + timedelta(minutes=commitments.minutes(area_type)), area_type


def deadline_at_risk(deadline: datetime, now: datetime, travel_minutes: float | None = None,
                     margin_minutes: float = 15.0, on_site: bool = False) -> bool:
    """True when a crew not yet on site would arrive within ``margin_minutes`` of the deadline
    (or after it). For a crew on its way pass the minutes until its ETA; with no crew (or
    unknown distance) pass None, which escalates ``margin_minutes`` before the deadline.
    Exactly at the margin counts as at risk: the point is to warn while there is still time."""
    if on_site:
        return False
    travel = max(0.0, travel_minutes or 0.0)
    return now + timedelta(minutes=travel + margin_minutes) >= deadline


# -- crew choice --------------------------------------------------------------------------------


#: A crew choice with what ranks it within its tier: the distance (unknown: last), the
#: priority of the work it leaves (none: 0), the crew's id.
RankedChoice = tuple[float, int, str, CrewChoice]


def choose_crew(
    topology: Topology,
    incident_feeder: str | None,
    location: tuple[float, float] | None,
    priority: int,
    crews_busy: Mapping[str, int | Busy],
    now: datetime,
    params: DispatchParams = DispatchParams(),
    area_type: str | None = None,
) -> CrewChoice | None:
    """Pick the crew for an incident of ``priority`` on ``incident_feeder`` at ``location``.

    Tiers, first non-empty wins, nearest first within a tier (crews without coordinates last,
    then by id so the answer is deterministic):

    1. crews whose ``feeders`` include the incident's feeder, free;
    2. such crews on their way to a strictly lower-priority incident (the lowest-priority
       work is the tie-break at equal distance) — pulled off it, :attr:`CrewChoice.preempts`
       says which; a crew at work on site (:attr:`Busy.on_site`), or one the command centre
       named or another region sent (:attr:`Busy.kept`), is never pulled off here;
    3. other crews, free (``outside_area=True``);
    4. other crews busy on strictly lower priority (``outside_area=True``, preempting).

    Free crews outrank preemption even if farther: preempting leaves another outage unattended.
    ``crews_busy`` maps crew id to the busy incident's priority score (or a :class:`Busy`).
    ``area_type`` (of the site) picks the assumed travel speed; the default area type if None.
    """
    speed_area = area_type or params.commitments.default_area_type
    tiers: list[list[RankedChoice]] = [[], [], [], []]
    for crew in topology.crews:
        placed = _tiered_choice(crew, incident_feeder, location, priority,
                                crews_busy.get(crew.id), now, params, speed_area)
        if placed is not None:
            tiers[placed[0]].append(placed[1])
    for tier_choices in tiers:
        if tier_choices:
            return min(tier_choices, key=lambda k: k[:3])[3]
    return None


def _tiered_choice(crew: Crew, incident_feeder: str | None,
                   location: tuple[float, float] | None, priority: int,
                   busy_raw: int | Busy | None, now: datetime, params: DispatchParams,
                   speed_area: str) -> tuple[int, RankedChoice] | None:
    """``crew`` as a choice for work of ``priority``, with its tier in :func:`choose_crew`
    (0: its area, free; 1: its area, preempting; 2 and 3: outside it) and its rank; ``None``
    when it is busy and may not be pulled off."""
    busy = Busy(int(busy_raw)) if isinstance(busy_raw, int | float) else busy_raw
    if busy is not None and (busy.priority >= priority or busy.on_site or busy.kept):
        return None  # as urgent or more, at work on site, or kept: never pulled off
    covers = bool(incident_feeder) and incident_feeder in crew.feeders
    base = crew_base(crew)
    distance = haversine_km(base, location) if base is not None and location else None
    minutes = travel_minutes(distance, speed_area, params) if distance is not None else None
    choice = CrewChoice(
        crew=crew, distance_km=distance, travel_minutes=minutes,
        eta=now + timedelta(minutes=minutes) if minutes is not None else None,
        outside_area=not covers, preempts=busy)
    tier = (0 if covers else 2) + (1 if busy is not None else 0)
    return tier, (distance if distance is not None else math.inf,
                  busy.priority if busy is not None else 0, crew.id, choice)


# -- template contexts --------------------------------------------------------------------------


def _local(value: datetime | None, tz: tzinfo) -> str | None:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value is not None else None


def _sep(language: str) -> str:
    return "、" if language == "zh" else ", "


def _labels(table: Mapping[str, Mapping[str, str]], language: str) -> Mapping[str, str]:
    return table.get(language, table["en"])


def feeder_label(topology: Topology, feeder: str) -> str:
    """The feeder's display name (``feeder_name`` of its source node, else the node's name)."""
    return topology.feeder_names.get(feeder, feeder)


def _name(topology: Topology, node_id: str) -> str:
    node = topology.nodes.get(node_id)
    return (node.name or node_id) if node is not None else node_id


def _household(topology: Topology, c: Customer, language: str,
               params: DispatchParams) -> dict[str, Any]:
    tags = _labels(TAG_LABELS, language)
    area = topology.nodes.get(c.transformer)
    village = topology.villages.get(area.village) if area is not None else None
    link = None
    if area is not None and area.lat is not None and area.lon is not None:
        link = map_link(area.lat, area.lon, area.name or c.transformer, params.map_url_template)
    return {
        "id": c.id,
        "name": c.name or c.id,
        "phone": c.phone,
        "tags": [t for t in c.tags],
        "tags_label": _sep(language).join(tags.get(t, t) for t in c.tags),
        "grade": c.importance,
        "grade_label": _labels(GRADE_LABELS, language).get(c.importance, ""),
        "area": area.name if area is not None and area.name else c.transformer,
        "village": village.name if village is not None else "",
        "map_link": link,
    }


def percent_label(p: float, language: str = "zh") -> str:
    """A probability as people read it, rounded to a whole percent (half up): "约80%" ("about
    80%"), but never 100 % for an inference nor 0 %: only what rounds above 99 (≥ 99.5 %)
    reads "＞99%", only what rounds below 1 (< 0.5 %) "＜1%" — 0.99 is "约99%", never more.
    The rounding is :func:`~outage_sentinel.incidents.stated_percent`'s, which a revision
    follows: every text of one revision states the same number."""
    zh = language == "zh"
    whole = stated_percent(p)
    if whole is None or whole > 99:
        return "＞99%" if zh else ">99%"
    if whole < 1:
        return "＜1%" if zh else "<1%"
    return f"约{whole}%" if zh else f"about {whole}%"


def device_bases(incident: Incident) -> dict[str, str]:
    """How sure each device of the fault point is, in its order: ``set`` by the command
    centre, ``reported`` operated by a source (one of the incident's records names it), else
    ``inferred`` by the localiser. The one per-device basis every surface states: the crew's
    checks, the summary, ``incidents show`` and the board (:func:`certainty`)."""
    devices = incident.estimate.devices
    if incident.device_set:
        return dict.fromkeys(devices, "set")
    named = {m.device for m in incident.members.values() if m.device}
    return {d: "reported" if d in named else "inferred" for d in devices}


#: How a set of several devices states its probability: the set's, never each one's.
JOINT_WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {"with": "与{others}同时动作的可能性{p}", "all": "{n}处同时动作的可能性{p}"},
    "en": {"with": "together with {others}, {p}", "all": "all {n} together, {p}",
           "both": "both together, {p}"},
}
_ZH_COUNTS = {2: "两", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 8: "八", 9: "九"}


def joint_label(topology: Topology, devices: Sequence[str], p: float, language: str = "zh",
                device: str | None = None) -> str:
    """The probability ``p`` of a fault point of several ``devices`` as the set's: with
    ``device``, said of it ("与马集2号熔断器同时动作的可能性约55%"), else of all of them
    ("两处同时动作的可能性约55%"). "" for a fault point of one device."""
    if len(devices) < 2:
        return ""
    words = _labels(JOINT_WORDS, language)
    label = percent_label(p, language)
    if device is not None:
        others = _sep(language).join(_name(topology, d) for d in devices if d != device)
        return words["with"].format(others=others, p=label)
    n = len(devices)
    if n == 2 and "both" in words:
        return words["both"].format(p=label)
    count = _ZH_COUNTS.get(n, str(n)) if language == "zh" else str(n)
    return words["all"].format(n=count, p=label)


def device_label(topology: Topology, incident: Incident, device: str,
                 language: str = "zh") -> str:
    """How sure one device of the fault point is, in words (:func:`device_bases`): "运行人员
    确认", "数据源报告动作", "疑似动作，可能性约61%", or for one of several inferred
    "疑似动作，与马集2号熔断器同时动作的可能性约55%" (the set's probability, not its own)."""
    basis = device_bases(incident).get(device, "inferred")
    words = _labels(BASIS_LABELS, language)
    p = incident.estimate.probability
    if basis != "inferred" or p is None:
        return words[basis]
    devices = incident.estimate.devices
    said = joint_label(topology, devices, p, language, device) or (
        f"可能性{percent_label(p, language)}" if language == "zh" else percent_label(p, language))
    return words["inferred"] + ("，" if language == "zh" else ", ") + said


def certainty(topology: Topology, incident: Incident, language: str = "zh") -> dict[str, Any]:
    """How sure the fault point is: ``basis`` (``set`` by the command centre, ``reported``
    operated by a source, ``inferred`` when any device of it is the localiser's, ``""``: none
    yet), ``set_by``, ``probability`` and its ``probability_label`` (inferred only: the
    set's), ``devices`` (each device's ``id``, ``basis`` and ``label``, :func:`device_label`),
    ``label`` (the words: "疑似动作，可能性约80%"; for several devices the set's probability,
    and each named by a source said so), and ``alternative``: the next hypothesis (``names``,
    ``probability``, ``probability_label``) when it is close (:data:`CLOSE_ALTERNATIVE`)."""
    estimate = incident.estimate
    bases = device_bases(incident)
    kinds = set(bases.values())
    basis = "" if not kinds else kinds.pop() if len(kinds) == 1 else "inferred"
    p = estimate.probability if basis == "inferred" else None
    devices = [{"id": d, "basis": b, "label": device_label(topology, incident, d, language)}
               for d, b in bases.items()]
    return {"basis": basis, "set_by": incident.device_set_by if basis == "set" else "",
            "probability": p, "probability_label": percent_label(p, language) if p is not None
            else "", "devices": devices,
            "label": _certainty_label(topology, incident, basis, language),
            "alternative": _alternative(topology, estimate.devices, estimate.hypotheses, p,
                                        language) if p is not None else None}


def _certainty_label(topology: Topology, incident: Incident, basis: str, language: str) -> str:
    """:func:`certainty`'s words for the fault point as a whole: the basis, the probability
    (the set's), and first the devices a source named when only some were."""
    words = _labels(BASIS_LABELS, language)
    estimate, zh = incident.estimate, language == "zh"
    p = estimate.probability if basis == "inferred" else None
    if p is None:
        return words.get(basis, "")
    said = joint_label(topology, estimate.devices, p, language) or (
        f"可能性{percent_label(p, language)}" if zh else percent_label(p, language))
    label = words["inferred"] + ("，" if zh else ", ") + said
    bases = device_bases(incident)
    named = [d for d, b in bases.items() if b == "reported"]
    if not named:
        return label
    sep = _sep(language)
    names = sep.join(_name(topology, d) for d in named)
    guessed = sep.join(_name(topology, d) for d, b in bases.items() if b != "reported")
    return (f"{names}{words['reported']}；{guessed}{label}" if zh
            else f"{names} {words['reported']}; {guessed} {label}")


def _alternative(topology: Topology, devices: Sequence[str],
                 hypotheses: Sequence[Mapping[str, Any]], best: float, language: str
                 ) -> dict[str, Any] | None:
    """The most likely hypothesis naming other devices than ``devices``, if close to it."""
    for h in hypotheses:
        other = [str(d) for d in h.get("devices") or ()]
        p = h.get("probability")
        if not other or set(other) == set(devices) or not isinstance(p, int | float):
            continue
        if p < best * CLOSE_ALTERNATIVE:
            return None
        return {"names": _sep(language).join(_name(topology, d) for d in other),
                "probability": float(p), "probability_label": percent_label(float(p), language)}
    return None


def reported_elsewhere(topology: Topology, incident: Incident) -> dict[str, list[str]]:
    """Devices an open record of ``incident`` reports operated that its fault point leaves
    out (the estimate dropped them, or the command centre set another), each with the areas
    below it whose meters report power (what contradicts the report; [] when none do). The
    crew checks them and the summary names them: a source's word is never dropped silently."""
    evidence = evidence_of(incident.members.values())
    out: dict[str, list[str]] = {}
    for d in sorted(evidence.open_devices - set(incident.estimate.devices)):
        if d in topology.pos:
            out[d] = [t for t in topology.downstream_transformers(d) if t in evidence.alive]
    return out


def _devices_to_check(topology: Topology, incident: Incident, devices: Sequence[str],
                      section: Sequence[str], language: str) -> list[dict[str, Any]]:
    """The devices the crew checks, each with why: the fault point's, each as sure as it is
    (:func:`device_label`); those a source reported operated that the fault point leaves out
    (:func:`reported_elsewhere`); the protection above (over-tripping) and below (failing to
    clear); and above areas a source reported off that the fault point does not explain, named
    (that role wins over the others: those areas are the crew's to find)."""
    roles, kinds = _labels(ROLE_LABELS, language), _labels(DEVICE_LABELS, language)
    out = {d: device_label(topology, incident, d, language) for d in devices}
    role = dict.fromkeys(devices, "operated")
    for d, alive in reported_elsewhere(topology, incident).items():
        role[d] = "named"
        out[d] = roles["named_alive"].format(areas=_names(topology, alive, language)) \
            if alive else roles["named"]
    for d, r in _protection(topology, devices, section):
        if d not in role:
            role[d], out[d] = r, roles[r]
    for d, areas in _stray_protection(topology, unexplained_areas(topology, incident)).items():
        if role.get(d) in (None, "upstream", "downstream"):
            was = role.get(d)
            role[d] = "reported"
            out[d] = roles["reported"].format(areas=_names(topology, areas, language)) + (
                roles["also"].format(role=roles[was]) if was else "")
    return [{"id": d, "name": _name(topology, d),
             "kind_label": kinds.get(topology.nodes[d].kind, topology.nodes[d].kind)
             if d in topology.nodes else "",
             "role": role[d], "role_label": label} for d, label in out.items()]


def _protection(topology: Topology, devices: Sequence[str], section: Sequence[str]
                ) -> list[tuple[str, str]]:
    """The protection above the fault point's devices (``upstream``: a feeder-head breaker's
    is the substation bus, not the crew's) and in its section below (``downstream``)."""
    out: list[tuple[str, str]] = []
    for d in devices:
        up = topology.protective_upstream(d, include_self=False) if d in topology.pos else None
        if up is not None and topology.nodes[up].kind != "source":
            out.append((up, "upstream"))
    out += [(n, "downstream") for n in section
            if (node := topology.nodes.get(n)) is not None and node.kind in PROTECTIVE_KINDS]
    return out


def _stray_protection(topology: Topology, stray: Sequence[str]) -> dict[str, list[str]]:
    """The protection above each of the areas ``stray`` (reported off, not explained by the
    fault point), with those areas."""
    out: dict[str, list[str]] = {}
    for t in stray:
        above = topology.protective_upstream(t, include_self=False) if t in topology.pos \
            else None
        if above is not None and topology.nodes[above].kind != "source":
            out.setdefault(above, []).append(t)
    return out


def _names(topology: Topology, nodes: Sequence[str], language: str, most: int = 4) -> str:
    """The names of ``nodes``, the first ``most`` of them ("台区T1、台区T2等5个")."""
    shown = _sep(language).join(_name(topology, n) for n in nodes[:most])
    if len(nodes) <= most:
        return shown
    return shown + (f"等{len(nodes)}个" if language == "zh" else f" and {len(nodes) - most} more")


def dispatch_context(
    topology: Topology,
    incident: Incident,
    priority: Priority,
    choice: CrewChoice | None,
    deadline: datetime,
    area_type: str,
    now: datetime,
    tz: tzinfo,
    language: str = "zh",
    params: DispatchParams = DispatchParams(),
    clock_flagged: bool = False,
) -> dict[str, Any]:
    """The context of ``crew_dispatch.{zh,en}.j2`` for sending ``choice.crew`` to ``incident``.

    Keys: incident (``incident_id``, ``revision``, ``update``, ``kind``/``kind_label``, ``cause``,
    ``feeder_label``, ``villages`` and ``customers`` still off, ``restored_customers`` (a
    part back by switching), ``start_local`` (``None``, ``start_unverified``, while
    ``clock_flagged`` when only the AMI screen's records give it:
    :func:`~outage_sentinel.liaison.checked_start`), ``etr_local``,
    ``now_local``), priority (:func:`_priority_context`), crew (``crew_name``, ``crew_leader``,
    ``outside_area``, ``distance_km``, ``travel_minutes``, ``eta_local``,
    ``preempts_incident``, ``preempts_priority``), deadline (``deadline_local``,
    ``area_type``, ``area_label``, ``commitment_minutes``, ``minutes_left``), where to go
    (``map_link``, ``map_label``, ``patrol_from``, ``patrol_to``, ``patrol_nodes``,
    ``patrol_more``, ``devices`` to check, the ``section`` patrolled, the ``stray_areas``
    reported off outside it that no device is listed for), how sure the fault
    point is (``certainty``, ``device_basis``, a close ``alternative``: :func:`certainty`),
    and whom to call (``important`` users and special-care ``households`` with full phone
    numbers, ``households_more``).
    """
    off = crew_areas(incident)
    return {
        **_incident_context(topology, incident, off, now, tz, language, clock_flagged),
        **_priority_context(incident, priority, now, language, clock_flagged),
        **_crew_context(choice, tz),
        **_deadline_context(deadline, area_type, now, tz, language, params),
        **_patrol_context(topology, incident, language, params),
        **_households_context(topology, off, language, params),
    }



def _priority_context(incident: Incident, priority: Priority, now: datetime, language: str,
                      clock_flagged: bool) -> dict[str, Any]:
    """The priority keys of :func:`dispatch_context`: ``priority_score``, ``priority_reasons``
    and ``priority_summary`` as the start may be stated (no duration while only a flagged
    meter gives it), ``outage_for``, how long the outage has lasted as the reasons say it,
    and ``outage_since``, since when, so that a message sent later
    says it as true then (:func:`duration_true_at`); neither, and no 已停电N分钟 in the
    reasons, while the start is to be confirmed (:func:`~outage_sentinel.priority.stated_from`):
    nothing is stated, so nothing is counted again."""
    said = stated_from(priority, checked_start(incident, clock_flagged), now, language)
    hours = stated_hours(said)
    return {
        "priority_score": priority.score,
        "priority_reasons": list(said.reasons),
        "priority_summary": summary(said, language),
        "outage_for": elapsed_words(hours, language) if hours is not None else "",
        "outage_since": said.start.isoformat() if said.start is not None else None,
    }

def crew_areas(incident: Incident) -> Sequence[str]:
    """The areas a crew's orders cover: what is still off (a part restored by switching needs
    no crew, and no visit), else all the outage had."""
    return incident.off if incident.status == "active" and incident.off \
        else incident.estimate.transformers


def unplaced(topology: Topology, incident: Incident) -> bool:
    """No transformer area of ``incident`` is known (its records named none the bundle has,
    and their area text could not be read): how many are off is for a person to check. The
    crew's orders then state no count (停电户数待核实, with the record's area text), and its
    priority counts its line's customers (:func:`outage_sentinel.priority.score`)."""
    return not any(t in topology.nodes for t in crew_areas(incident))


def incident_priority(topology: Topology, incident: Incident, now: datetime,
                      weights: PriorityWeights, language: str = "zh") -> Priority:
    """``incident``'s repair priority: its areas still off, scored from its start; an active
    outage nobody could place (:func:`unplaced`) as its line's customers, not as nobody off
    (:func:`outage_sentinel.priority.score`'s ``unplaced``)."""
    return score(topology, incident.off, incident.start, now, weights, language,
                 unplaced=incident.status == "active" and unplaced(topology, incident),
                 feeder=incident.feeder)


#: An unplaced outage's SMS dispatch variables (the template says 影响${villages}共${customers}户).
UNPLACED_SMS: Mapping[str, Mapping[str, str]] = {
    "zh": {"villages": "未定位到台区", "customers": "待核实"},
    "en": {"villages": "no area placed", "customers": "to be checked"},
}
#: At most this many characters of a record's area text in a crew's orders.
AREA_TEXT_CHARS = 120


def crew_care_list(topology: Topology, off: Sequence[str],
                   params: DispatchParams = DispatchParams()) -> tuple[list[Customer], int]:
    """The special-care households a crew's dispatch lists for the areas ``off`` (most urgent
    first, capped at ``params.max_households`` for the channel) and how many it leaves out.

    The one place that cut is made: the dispatch lists these, and a village's group is told
    the crew holds its list only when all of its households are among them
    (:func:`crew_has_care_list`), so the two texts cannot disagree."""
    care = special_care_customers(affected_customers(topology, off))
    return care[: params.max_households], max(0, len(care) - params.max_households)


def crew_has_care_list(topology: Topology, incident: Incident, households: Iterable[Customer],
                       params: DispatchParams = DispatchParams()) -> bool:
    """Whether the crew's dispatch for ``incident`` lists every one of ``households`` (a
    village's special-care households): only then may the village be told the crew has them."""
    listed = {c.id for c in crew_care_list(topology, crew_areas(incident), params)[0]}
    return all(c.id in listed for c in households)


def tag_counts(households: Iterable[Customer]) -> dict[str, int]:
    """How many of ``households`` carry each tag: counted over all of them, not only those a
    capped list shows, so a count never under-states the life-support households."""
    counts: dict[str, int] = {}
    for c in households:
        for tag in dict.fromkeys(c.tags):
            counts[tag] = counts.get(tag, 0) + 1
    return counts


def _incident_context(topology: Topology, incident: Incident, off: Sequence[str],
                      now: datetime, tz: tzinfo, language: str,
                      clock_flagged: bool = False) -> dict[str, Any]:
    """What the outage is: kind, cause, line, the villages and customers ``off`` (and those
    back by switching), and its times (the start to be confirmed while ``clock_flagged``
    when only the meters give it: :func:`~outage_sentinel.liaison.checked_start`)."""
    start = checked_start(incident, clock_flagged)
    return {
        "incident_id": incident.id,
        "revision": incident.revision,
        # New orders for a crew sent already (the fault point corrected), and the villages
        # they add to and drop from its latest ones; set by the caller.
        "update": "", "update_added": [], "update_left": [],
        "kind": incident.kind,
        "kind_label": _labels(KIND_LABELS, language).get(incident.kind, incident.kind),
        "cause": incident.cause,
        "feeder_label": feeder_label(topology, incident.feeder),
        "villages": [topology.villages[v].name for v in topology.villages_of(off)
                     if v in topology.villages],
        "customers": topology.customers_of(off),
        # Of them, those in areas a source reported off (the rest inferred or named loosely).
        "confirmed_customers": topology.customers_of(
            [t for t in off if incident.mark(t) == "reported"]),
        "restored_customers": incident.estimate.customers - topology.customers_of(off),
        # No area known (:func:`unplaced`): the count is to be checked, the area text read.
        "unplaced": not any(t in topology.nodes for t in off),
        "area_text": _clipped(incident.area_text, AREA_TEXT_CHARS),
        "start_local": _local(start, tz), "start_unverified": start is None,
        "etr_local": _local(incident.etr, tz),
        "now_local": _local(now, tz),
    }


def _clipped(text: str, most: int) -> str:
    """``text`` on one line, at most ``most`` characters (cut ones end with "…")."""
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 1] + "…"


def _deadline_context(deadline: datetime, area_type: str, now: datetime, tz: tzinfo,
                      language: str, params: DispatchParams) -> dict[str, Any]:
    """By when the crew must arrive: the commitment of the area type, and the minutes left
    (``deadline_count``, the words the dispatch says them in; ``deadline_at``, the deadline
    itself, so that a dispatch or escalation sent later counts them again:
    :func:`deadline_true_at`)."""
    left = minutes_left(deadline, now)
    return {
        "deadline_local": _local(deadline, tz),
        "deadline_at": deadline.isoformat(),
        "area_type": area_type,
        "area_label": _labels(AREA_LABELS, language).get(area_type, area_type),
        "commitment_minutes": int(params.commitments.minutes(area_type)),
        "minutes_left": left,
        "deadline_count": deadline_count(left, language),
    }


def minutes_left(deadline: datetime, now: datetime) -> int:
    """Whole minutes from ``now`` to ``deadline``, rounded down (negative once it passed)."""
    return int(math.floor((deadline - now).total_seconds() / 60.0))


def deadline_count(left: int, language: str = "zh") -> str:
    """``left`` minutes to the arrival deadline in words (剩30分钟, 已超5分钟): made here
    only, so that the count a dispatch was queued with can be found in its text and
    replaced when it is sent (:func:`deadline_true_at`)."""
    words = _labels(COUNT_LABELS, language)
    return words["left"].format(n=left) if left >= 0 else words["overdue"].format(n=-left)


def deadline_true_at(body: str, params: Mapping[str, Any], now: datetime,
                     language: str = "zh") -> tuple[str, dict[str, Any]]:
    """A queued crew dispatch's or command-centre escalation's text and ``payload["params"]``
    as true at ``now``: its deadline line counts the minutes left (or past) at ``now``, not at
    queueing — a message held by the command centre, or retried, would otherwise tell the crew
    剩90分钟 with 30 left, or the command centre 剩14分钟 after the deadline went. The count
    changes (in the line stating the deadline, ``params["deadline"]``:
    :func:`deadline_params`), and so does the heading of an escalation queued as at risk
    that goes after the deadline (:func:`overdue_heading`): 已超6分钟 under 到达时限将超
    would say both; and so does how long the outage has lasted, in its priority reason
    (:func:`duration_true_at`). A message queued without ``deadline_at`` (before this was
    kept), or whose text does not carry its count (a template of one's own), keeps its
    count as it is."""
    counted, said = _count_true_at(body, params, now, language)
    return duration_true_at(counted, said, now, language)


def _count_true_at(body: str, params: Mapping[str, Any], now: datetime,
                   language: str) -> tuple[str, dict[str, Any]]:
    """:func:`deadline_true_at`'s count of the minutes to the deadline (and heading)."""
    stated, at, local = (params.get(k) for k in ("deadline_count", "deadline_at", "deadline"))
    if not (isinstance(stated, str) and stated and isinstance(at, str) and at and local):
        return body, dict(params)
    left = minutes_left(datetime.fromisoformat(at), now)
    count = deadline_count(left, language)
    lines = body.split("\n")
    for i, line in enumerate(lines):
        head, sep, tail = line.partition(str(local))
        if sep and stated in tail:
            lines[i] = head + sep + tail.replace(stated, count, 1)
            said = {**params, "deadline_count": count}
            if left < 0:
                return overdue_heading("\n".join(lines), said, language)
            return "\n".join(lines), said
    return body, dict(params)


def duration_true_at(body: str, params: Mapping[str, Any], now: datetime,
                     language: str = "zh") -> tuple[str, dict[str, Any]]:
    """A queued dispatch's or escalation's text and ``payload["params"]`` saying how long the
    outage has lasted at ``now`` (its priority reason's 已停电N分钟, the last of them, after
    the count: :func:`outage_sentinel.priority.elapsed_words`), not at queueing — held or
    retried 90 minutes, 已停电3分钟 would tell the crew the outage had just begun. Only that
    phrase changes, and ``params["outage_for"]`` with it, so a second count starts from what
    was sent. A message queued without ``outage_since`` (before it was kept), stating no
    duration (under a minute), or whose text does not carry it, is left as it is."""
    stated, since = params.get("outage_for"), params.get("outage_since")
    if not (isinstance(stated, str) and stated and isinstance(since, str) and since):
        return body, dict(params)
    hours = max(0.0, (now - datetime.fromisoformat(since)).total_seconds() / 3600.0)
    words, sep = elapsed_words(hours, language), REASON_SEPARATORS.get(language, "; ")
    if not words or words == stated:
        return body, dict(params)
    said = re.compile(re.escape(sep + stated) + r"(?=[。.；;]|$)")
    lines = body.split("\n")
    for i, line in enumerate(lines):
        found = said.search(line)
        if found:
            lines[i] = line[: found.start()] + sep + words + line[found.end():]
            return "\n".join(lines), {**params, "outage_for": words}
    return body, dict(params)


def overdue_heading(body: str, params: Mapping[str, Any], language: str = "zh"
                    ) -> tuple[str, dict[str, Any]]:
    """An escalation queued as at risk (``params["escalation_reason"]``, kept by
    :func:`deadline_params`; one queued before it was kept: its heading says so) and sent
    once the deadline passed: its heading says the deadline was missed (到达时限将超 →
    已超到达时限, the heading the clock check gives an escalation queued after it), and so do
    its params (``escalation_reason``; the SMS ``summary``, its first line). Any other
    message is left as it is."""
    words = _labels(REASON_LABELS, language)
    head, sep, rest = body.partition("\n")
    if params.get("escalation_reason", "at_risk") != "at_risk" or words["at_risk"] not in head:
        return body, dict(params)
    heading = head.replace(words["at_risk"], words["overdue"], 1)
    said: dict[str, Any] = {**params, "escalation_reason": "overdue"}
    sms = params.get("sms")
    was = sms_params.command_params(summary=head, incident="-")["summary"]
    if isinstance(sms, Mapping) and sms.get("summary") == was:
        said["sms"] = {**sms, "summary": sms_params.command_params(
            summary=heading, incident="-")["summary"]}
    return heading + sep + rest, said


def deadline_params(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """What a dispatch's or an escalation's ``payload["params"]`` keep of its deadline (from
    its context), for :func:`deadline_true_at` to count the minutes again when it goes: the
    deadline as the text states it, the deadline itself, and the count as rendered; an
    escalation's, its reason too (``escalation_reason``: one at risk that goes after the
    deadline says it was missed, :func:`overdue_heading`); and how long the outage had lasted
    as its priority reason says it, and since when (``outage_for``, ``outage_since``: counted
    again too, :func:`duration_true_at`)."""
    return {"deadline": ctx["deadline_local"] or "", "deadline_at": ctx["deadline_at"],
            "deadline_count": ctx["deadline_count"],
            **({"escalation_reason": ctx["reason"]} if "reason" in ctx else {}),
            **({"outage_for": ctx["outage_for"], "outage_since": ctx["outage_since"]}
               if ctx.get("outage_since") else {})}


def _households_context(topology: Topology, off: Sequence[str], language: str,
                        params: DispatchParams) -> dict[str, Any]:
    """Whom to call: the important users and the special-care households of the areas
    ``off``, capped (``households_more``: how many the list leaves out)."""
    rows = affected_customers(topology, off)
    listed, more = crew_care_list(topology, off, params)
    return {
        "important": [_household(topology, c, language, params)
                      for c in important_customers(rows)[: params.max_households]],
        "households": [_household(topology, c, language, params) for c in listed],
        "households_more": more,
    }


def _crew_context(choice: CrewChoice | None, tz: tzinfo) -> dict[str, Any]:
    """Who goes, from how far, and whose work it takes over."""
    if choice is None:
        return {"crew_id": None, "crew_name": None, "crew_leader": "", "outside_area": False,
                "distance_km": None, "travel_minutes": None, "eta_local": None,
                "preempts_incident": None, "preempts_priority": None}
    crew, preempts = choice.crew, choice.preempts
    return {
        "crew_id": crew.id, "crew_name": crew.name, "crew_leader": crew.extra.get("leader", ""),
        "outside_area": choice.outside_area,
        "distance_km": round(choice.distance_km, 1) if choice.distance_km is not None else None,
        "travel_minutes": int(math.ceil(choice.travel_minutes))
        if choice.travel_minutes is not None else None,
        "eta_local": _local(choice.eta, tz),
        "preempts_incident": preempts.incident_id if preempts is not None else None,
        "preempts_priority": preempts.priority if preempts is not None else None,
    }


def _patrol_context(topology: Topology, incident: Incident, language: str,
                    params: DispatchParams) -> dict[str, Any]:
    """Where to go: the map link, and the section from the operated device down to the next
    devices. Poles and areas in between are what the crew walks; listing every pole of a long
    section would swamp the message, so the count is kept and the list is capped."""
    estimate = incident.estimate
    devices = [d for d in estimate.devices if d in topology.nodes]
    section = [n for n in estimate.section if n in topology.nodes]
    if not section:
        for d in devices:
            section.extend(topology.suspected_section(d))
    sep = _sep(language)
    location = incident_location(topology, devices, estimate.transformers)
    map_label = _name(topology, devices[0]) if devices else feeder_label(topology, incident.feeder)
    operated = set(devices)
    boundary = [n for n in section if n not in operated and topology.nodes[n].kind in DEVICE_KINDS]
    walk = [n for n in section if topology.nodes[n].kind in ("junction", "transformer")]
    sure = certainty(topology, incident, language)
    return {
        "certainty": sure["label"], "device_basis": sure["basis"],
        "device_probability": sure["probability_label"],
        "alternative": sure["alternative"],
        "map_link": map_link(location[0], location[1], map_label, params.map_url_template)
        if location is not None else None,
        "map_label": map_label,
        "patrol_from": sep.join(_name(topology, d) for d in devices),
        "patrol_to": sep.join(_name(topology, n) for n in boundary),
        "patrol_nodes": [_name(topology, n) for n in walk[: params.max_patrol_nodes]],
        "patrol_more": max(0, len(walk) - params.max_patrol_nodes),
        **_checks_context(topology, incident, devices, section, language),
        "section": section,
        # the devices that bound the section: the crew walks to them, not along their branches
        "section_edge": boundary,
    }


def _checks_context(topology: Topology, incident: Incident, devices: Sequence[str],
                    section: Sequence[str], language: str) -> dict[str, Any]:
    """The ``devices`` to check (:func:`_devices_to_check`), and the ``stray_areas``: areas
    reported off outside the section that none of them is listed to be checked for (their
    protection the feeder head's, or listed for another reason), named for the crew."""
    checks = _devices_to_check(topology, incident, devices, section, language)
    listed = {str(c["id"]) for c in checks if c["role"] == "reported"}
    above = {t: d for d, areas in _stray_protection(
        topology, unexplained_areas(topology, incident)).items() for t in areas}
    return {"devices": checks,
            "stray_areas": [_name(topology, t) for t in unexplained_areas(topology, incident)
                            if above.get(t) not in listed]}


#: An inferred fault point that moved beyond a crew's orders sends it new orders only when
#: at least this probable (below, a near-tie: the orders name the close alternative).
REDIRECT_MIN = 0.5


def orders_covered(ctx: Mapping[str, Any]) -> list[str]:
    """The nodes a dispatch of :func:`dispatch_context` has the crew walk: the fault point
    and the section below it, down to the next devices — not those devices (``section_edge``):
    the crew walks up to a fuse at the section's edge, never along the branch below it, so a
    fault point moved to that fuse is a branch not patrolled. (The protection above it is
    only checked for over-tripping: a fault point moved up there is a section not patrolled
    either.)"""
    edge = {str(n) for n in ctx.get("section_edge") or ()}
    return sorted({str(d["id"]) for d in ctx["devices"] if d["role"] == "operated"}
                  | {str(n) for n in ctx["section"] if str(n) not in edge})


def orders_cover(covered: Collection[str], devices: Sequence[str]) -> bool:
    """Whether orders that had the crew walk ``covered`` (:func:`orders_covered`) lead it to
    ``devices`` (a fault point estimated since): none of them outside what it was sent to
    patrol — a device at the edge of its section is outside (its branch was not)."""
    return all(d in covered for d in devices)


def may_redirect(topology: Topology, before: Incident, inc: Incident) -> bool:
    """Whether the revision ``before`` → ``inc`` may send its crew new orders at all: the
    outage on, the crew on its way (not on site), a fault point named and either moved or
    more areas back, no area a source reported off left out of it, and the point, inferred,
    sure enough (:data:`REDIRECT_MIN`)."""
    est = inc.estimate
    if (inc.status != "active" or inc.crew_progress != "dispatched" or not est.devices
            or (set(est.devices) == set(before.estimate.devices)
                and set(inc.restored) == set(before.restored))
            or unexplained_areas(topology, inc)):
        return False
    sure = certainty(topology, inc)
    return sure["basis"] != "inferred" or (sure["probability"] or 0.0) >= REDIRECT_MIN

def named_back(topology: Topology, inc: Incident, named: Sequence[str]) -> list[str]:
    """The devices of ``named`` (those a crew's orders named operated) no longer ``inc``'s
    fault point with none of the areas still off below them (:func:`crew_areas`): the crew
    would patrol a branch back on supply."""
    off = crew_areas(inc)
    return [d for d in named if d not in inc.estimate.devices and d in topology.pos
            and not any(t in topology.pos and topology.is_downstream(t, d) for t in off)]

def dispatch_params(ctx: Mapping[str, Any], language: str = "zh") -> dict[str, Any]:
    """``payload["params"]`` of a crew dispatch, from its :func:`dispatch_context`: the
    digest's facts (feeder, villages, households, kind, priority), the SMS template purpose
    and its parameter set (:func:`outage_sentinel.sms_params.dispatch_params`)."""
    care = len(ctx["households"]) + int(ctx["households_more"])
    sms = sms_params.dispatch_params(
        incident=ctx["incident_id"], priority=int(ctx["priority_score"]),
        deadline=ctx["deadline_local"], feeder=ctx["feeder_label"],
        device=ctx["patrol_from"], villages=ctx["villages"], customers=ctx["customers"],
        cause=ctx["cause"], care=care, language=language, basis=ctx["device_basis"],
        probability=ctx["device_probability"], confirmed=ctx["confirmed_customers"])
    if ctx.get("unplaced"):  # no area known: no count (影响未定位到台区共待核实户)
        sms = {**sms, **_labels(UNPLACED_SMS, language)}
    return {
        "incident": ctx["incident_id"], "priority": ctx["priority_score"],
        "feeder": ctx["feeder_label"],
        # what deadline_true_at counts the minutes left from when the dispatch goes
        **deadline_params(ctx),
        "villages": list(ctx["villages"]), "households": ctx["customers"],
        "kind": ctx["kind"], "sms_template": "dispatch", "sms": sms,
    }


def care_list_context(
    topology: Topology,
    incident: Incident,
    village_id: str,
    now: datetime,
    tz: tzinfo,
    language: str = "zh",
    params: DispatchParams = DispatchParams(),
) -> dict[str, Any]:
    """The context of ``liaison_care.{zh,en}.j2``: special-care households of one village among
    the incident's affected areas, for the village liaison to call on. ``households`` is empty
    when there are none: then send nothing (the caller checks).

    Beside the capped list: ``tag_counts`` (per tag, over all of the village's households,
    listed or not) and ``crew_has_list`` (the crew's dispatch lists every one of them:
    :func:`crew_has_care_list`; else its group must not be told the crew holds the list)."""
    village = topology.villages.get(village_id)
    areas = [t for t in incident.estimate.transformers
             if t in topology.nodes and topology.nodes[t].village == village_id]
    care = special_care_customers(affected_customers(topology, areas))
    return {
        "incident_id": incident.id,
        "revision": incident.revision,
        "kind": incident.kind,
        "kind_label": _labels(KIND_LABELS, language).get(incident.kind, incident.kind),
        "village_id": village_id,
        "village_name": village.name if village is not None else village_id,
        "township": village.township if village is not None else "",
        # The village's own times, as its outage notice gives them.
        "start_local": _local(village_start(incident, village_id, topology), tz),
        "etr_local": _local(_ahead(village_etr(incident, village_id, topology), now), tz),
        "now_local": _local(now, tz),
        # A liaison's list is for one village, so it is short; still capped for the channel.
        "households": [_household(topology, c, language, params)
                       for c in care[: params.max_households]],
        "households_more": max(0, len(care) - params.max_households),
        "tag_counts": tag_counts(care),
        "crew_has_list": crew_has_care_list(topology, incident, care, params),
    }


#: The keys of :func:`dispatch_context` an escalation shows the command centre.
ESCALATION_KEYS = (
    "incident_id", "revision", "kind", "kind_label", "cause", "feeder_label", "villages",
    "customers", "restored_customers", "unplaced", "area_text", "start_local",
    "start_unverified", "etr_local", "now_local",
    "priority_score", "priority_reasons", "priority_summary", "outage_for",
    "outage_since", "crew_id", "crew_name", "outside_area",
    "distance_km", "travel_minutes", "eta_local", "deadline_local", "area_type",
    "area_label", "commitment_minutes", "minutes_left", "deadline_at", "deadline_count",
    "map_link", "map_label")

def escalation_context(
    topology: Topology,
    incident: Incident,
    priority: Priority,
    reason: str,
    deadline: datetime,
    area_type: str,
    now: datetime,
    tz: tzinfo,
    choice: CrewChoice | None = None,
    busy: Mapping[str, int | Busy] | None = None,
    language: str = "zh",
    params: DispatchParams = DispatchParams(),
    clock_flagged: bool = False,
) -> dict[str, Any]:
    """The context of ``command_escalation.{zh,en}.j2``.

    ``reason`` is ``at_risk`` (crew would arrive within the margin of the deadline),
    ``overdue`` (deadline passed, no crew on site) or ``no_crew``. ``choice`` is the crew
    assigned or on its way, if any; ``busy`` lists what the other crews are doing so the
    command centre can decide whom to pull off. ``clock_flagged``: an AMI source is flagged as
    read in the wrong zone (the start as :func:`dispatch_context` states it).
    """
    base = dispatch_context(topology, incident, priority, choice, deadline, area_type, now, tz,
                            language, params, clock_flagged)
    return {
        **{k: base[k] for k in ESCALATION_KEYS},
        "reason": reason,
        "reason_label": _labels(REASON_LABELS, language).get(reason, reason),
        "busy": _busy_rows(topology, busy),
        "special_care_count": len(priority.special_care),
        "important_count": len(priority.important),
    }


def _busy_rows(topology: Topology, busy: Mapping[str, int | Busy] | None
               ) -> list[dict[str, Any]]:
    """What the busy crews are doing (crew, incident, its priority, on site or not), by crew
    id: an escalation's list for the command centre to decide whom to pull off."""
    crews = {c.id: c for c in topology.crews}
    rows = []
    for crew_id, raw in sorted((busy or {}).items()):
        b = Busy(int(raw)) if isinstance(raw, int | float) else raw
        rows.append({"crew_id": crew_id,
                     "crew_name": crews[crew_id].name if crew_id in crews else crew_id,
                     "incident_id": b.incident_id, "priority": b.priority,
                     "on_site": b.on_site})
    return rows


#: Why a crew is stood down: the incident was cancelled, or given to another crew.
STAND_DOWN_REASONS = ("cancelled", "reassigned")


def stand_down_context(topology: Topology, incident: Incident, crew: Crew, reason: str,
                       now: datetime, tz: tzinfo, other: Crew | None = None,
                       note: str = "", by: str = "", clock_flagged: bool = False
                       ) -> dict[str, Any]:
    """The context of ``crew_stand_down.{zh,en}.j2``: ``crew`` dispatched to ``incident`` is
    no longer wanted there (``reason`` one of :data:`STAND_DOWN_REASONS`; ``other`` the crew
    it went to, ``note`` the command centre's words, ``by`` who cancelled: the command centre
    or a source, :func:`restored_by`; the start as the dispatch states it, ``clock_flagged``:
    :func:`~outage_sentinel.liaison.checked_start`)."""
    if reason not in STAND_DOWN_REASONS:
        raise ValueError(f"stand-down reason {reason!r}: one of {STAND_DOWN_REASONS}")
    start = checked_start(incident, clock_flagged)
    return {
        "incident_id": incident.id, "revision": incident.revision, "reason": reason,
        "crew_name": crew.name or crew.id,
        "other_crew": (other.name or other.id) if other is not None else None,
        "feeder_label": feeder_label(topology, incident.feeder),
        "start_local": _local(start, tz), "start_unverified": start is None,
        "now_local": _local(now, tz), "note": " ".join(note.split())[:200], "by": by,
    }


#: Who said the power is back (or called the outage off), for the crew, by source.
BY_SOURCE = {"zh": {"operator": "指挥中心", "field": "村联络人反馈"},
             "en": {"operator": "the command centre", "field": "the village liaison"}}
#: ... and for any other source, by what kind of record it sent: a crew reads what the
#: system is, never the name a config gave the source (``feed``, ``county-95598``).
BY_SIGNAL = {"zh": {"notice": "停电信息系统", "dead": "用电信息采集（电表）",
                    "alive": "用电信息采集（电表）", "call": "95598工单",
                    "device_open": "配电自动化（开关动作）"},
             "en": {"notice": "the outage information system", "dead": "the meters (AMI)",
                    "alive": "the meters (AMI)", "call": "the trouble calls",
                    "device_open": "distribution automation"}}


def restored_by(source: str, language: str = "zh", signal: str = "notice") -> str:
    """Whom a crew is told the restoration (or cancellation) came from: the command centre
    or a liaison by source, any other source by the ``signal`` of its record."""
    known = _labels(BY_SOURCE, language).get(source)
    if known is not None:
        return known
    by_signal = _labels(BY_SIGNAL, language)
    return by_signal.get(signal, by_signal["notice"])


def power_back_context(topology: Topology, incident: Incident, crew: Crew, by: str,
                       now: datetime, tz: tzinfo, clock_flagged: bool = False,
                       taken_out: Sequence[str] = ()) -> dict[str, Any]:
    """The context of ``crew_power_back.{zh,en}.j2``: ``incident`` is restored by other hands
    (``by``, the source or person that said so) while ``crew`` was sent to it. Its start and
    when its last area came back are to be confirmed (``None``) while ``clock_flagged`` when
    only the meters give them (:func:`~outage_sentinel.liaison.checked_start`,
    :func:`~outage_sentinel.liaison.stated_restored`). ``taken_out``: areas its orders named
    off that the command centre took out of the outage, ending it (named: never off, not
    back)."""
    start = checked_start(incident, clock_flagged)
    back = stated_restored(incident, tuple(incident.restored), clock_flagged, now)
    return {
        "incident_id": incident.id, "revision": incident.revision,
        "crew_name": crew.name or crew.id, "by": by,
        "feeder_label": feeder_label(topology, incident.feeder),
        "start_local": _local(start, tz), "start_unverified": start is None,
        "restored_local": _local(back, tz), "restored_unverified": back is None,
        "now_local": _local(now, tz),
        # areas counted back that nothing confirmed: the crew can look on its way
        "unconfirmed": area_names(topology, incident.unconfirmed),
        "taken_out": area_names(topology, taken_out),
    }


def area_names(topology: Topology, areas: Iterable[str]) -> list[str]:
    """Each area's name in the bundle (its id where it has none, or is unknown)."""
    return [topology.nodes[t].name or t if t in topology.nodes else t for t in areas]


def _ahead(etr: datetime | None, now: datetime) -> datetime | None:
    """An expected restoration a liaison's text may state: only one still ahead."""
    return etr if etr is not None and etr > now else None
