"""Regions: the part of the bundle one daemon group serves (pure; README "Regions").

A province runs one daemon group per region (a city or county bureau), all on one PostgreSQL.
Every node of every region loads the whole bundle and polls its sources (a province-wide
feed or the region's own); at ingest each region keeps what happens on its own feeders:

* an event placed (by its feeder, transformers, device or area text) on one of the region's
  feeders is kept, and its transformer references on other regions' feeders are dropped, so
  two regions never notify the same village for one record;
* an event placed only on other regions' feeders is left to them;
* an event the bundle cannot place at all is kept by every region: each one's command centre
  hears of a feed sending what the bundle lacks, and nothing accepted is lost.

What a region keeps is stored under its name (``events.region``), and its store reads only its
own events, incidents, outbox and key/value state; incident ids carry the name. The county
context (storm, faults elsewhere) is the region's; the channels' rate limits are shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import resolve_event
from outage_sentinel.localise import named_nodes
from outage_sentinel.topology import Topology

#: The region of a daemon that serves the whole bundle (ids and keys as before regions).
WHOLE = "default"


class RegionError(ValueError):
    """The region's config names what the bundle does not hold."""


@dataclass(frozen=True)
class Region:
    """A region's name and feeders (``None``: every feeder of the bundle)."""

    name: str = WHOLE
    feeders: frozenset[str] | None = None

    def covers(self, feeder: str | None) -> bool:
        return self.feeders is None or (feeder is not None and feeder in self.feeders)


def id_part(region: str) -> str:
    """What ids carry for ``region`` after their kind (``INC-east-…``; nothing for the
    whole bundle), so two regions' leaders never make the same id."""
    return "" if region == WHOLE else f"{region}-"


def region_feeders(section: Any, topology: Topology) -> frozenset[str] | None:
    """The feeders the config's ``region`` ``section`` serves in ``topology`` (``None``: the
    whole bundle): the scope of its reliability figures."""
    return resolve_region(section.name, section.substations, section.feeders, topology).feeders


def resolve_region(name: str, substations: Sequence[str], feeders: Sequence[str],
                   topology: Topology) -> Region:
    """The region of the config's ``region`` section, checked against the bundle: every
    substation and feeder named must exist (feeders by id or name)."""
    if not substations and not feeders:
        return Region(name, None)
    problems: list[str] = []
    chosen: set[str] = set()
    by_station = substation_feeders(topology)
    for i, station in enumerate(substations):
        if station in by_station:
            chosen |= by_station[station]
        else:
            problems.append(f"region.substations[{i}]: no substation {station!r} in the bundle "
                            f"{topology.source} (it has {_some(by_station)})")
    for i, feeder in enumerate(feeders):
        fids = (feeder,) if feeder in topology.feeder_ids else \
            topology.feeders_by_name.get(feeder, ())
        if not fids:
            problems.append(f"region.feeders[{i}]: no feeder {feeder!r} in the bundle "
                            f"{topology.source} (it has {_some(topology.feeder_ids)})")
        elif len(fids) > 1:  # the first would give the region another substation's line
            problems.append(f"region.feeders[{i}]: {feeder!r} is the name of feeders "
                            f"{', '.join(fids)} in the bundle {topology.source}: give the id")
        else:
            chosen.add(fids[0])
    if problems:
        raise RegionError("; ".join(problems))
    return Region(name, frozenset(chosen))


def substation_feeders(topology: Topology) -> dict[str, set[str]]:
    """Substation (the ``substation`` column of feeder heads) -> its feeders."""
    column = topology.columns.extra.get("substation")
    out: dict[str, set[str]] = {}
    if column is None:
        return out
    for source in topology.sources:
        station = column[topology.pos[source]]
        if station:
            out.setdefault(station, set()).add(topology.feeder_of(source))
    return out


def _some(names: Iterable[str]) -> str:
    listed = sorted(names)
    if not listed:
        return "none"
    return ", ".join(repr(n) for n in listed[:5]) + (", ..." if len(listed) > 5 else "")


class RegionScope:
    """What one region keeps of a poll (see the module's text)."""

    def __init__(self, region: Region, topology: Topology) -> None:
        self.region, self.topology = region, topology

    def keep(self, result: PollResult) -> tuple[PollResult, int]:
        """The part of ``result`` this region stores, and how many events it left to others.
        Quarantined payloads and the cursor are always kept."""
        if self.region.feeders is None or not result.events:
            return result, 0
        kept = [e for e in (self.event(e) for e in result.events) if e is not None]
        if len(kept) == len(result.events) and all(
                a is b for a, b in zip(kept, result.events, strict=True)):
            return result, 0
        return replace(result, events=kept), len(result.events) - len(kept)

    def event(self, event: OutageEvent) -> OutageEvent | None:
        """``event`` as this region keeps it, or None when it belongs to other regions."""
        placed = self.feeders_of(event)
        if not placed or any(self.region.covers(f) for f in placed):
            return self._trimmed(event) if placed else event
        return None

    def feeders_of(self, event: OutageEvent) -> set[str]:
        """The feeders the bundle places ``event`` on (empty: it cannot place it)."""
        t = self.topology
        r = resolve_event(t, event)
        areas = (*r.transformers, *r.possible, *((r.device,) if r.device else ()))
        placed = {t.feeder_of(a) for a in areas if t.energised[t.pos[a]]}
        if r.feeder is not None:
            placed.add(r.feeder)
        return placed

    def _trimmed(self, event: OutageEvent) -> OutageEvent:
        """``event`` without the transformer references placed on other regions' feeders."""
        t = self.topology
        keep: list[str] = []
        for ref in event.transformers:
            # a name several areas share is kept while one of them may be this region's
            nodes = named_nodes(t, ref)
            if not nodes or any(not t.energised[t.pos[n]] or self.region.covers(t.feeder_of(n))
                                for n in nodes):
                keep.append(ref)
        if len(keep) == len(event.transformers):
            return event
        return replace(event, transformers=tuple(keep))
