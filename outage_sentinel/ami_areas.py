"""What the AMI screen (:mod:`outage_sentinel.ami`) knows of each transformer area, and the
area rules that read it: an area's open outage (:class:`Episode`), its devices' last word
(:class:`AreaState`), and a meter off on its own (:class:`SingleMeter`), each with its form in
the screen's saved state. Pure: no I/O, no clock; times are epoch seconds of report time.

The rules here (docs/ami.md, "Screening") are the ones that need nothing but the area: whether
a meter "off" belongs to the open outage, whether the meters still off hold the area out,
whether the meters reporting "on" restore it, and whether an outage that opens while the
area's last restoration settles (:class:`Closing`) is that outage carrying on (a flapping
area). The thresholds come from the screen's policy and registry, passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: The share of an outage's meters that must still be off for them to hold the area out
#: (besides the area's threshold): a phase is about a third of the meters; restores lost in
#: transit are a few in a hundred.
HOLD_SHARE = 0.2


@dataclass
class Episode:
    """An area outage the screen holds or released, until it closes."""

    start: float
    basis: Literal["terminal", "meters"]
    meters: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)
    terminal_off: bool = False
    released: bool = False
    #: processing time (``now``) when the episode was opened
    seen: float = 0.0
    #: first seen more than ``min_duration + lateness`` after its start (a backlog)
    backlog: bool = False
    #: the watermark when the episode was opened (``None``: unknown, a state from before)
    wm_seen: float | None = None
    #: the start it was opened with: later meter "offs" move the start back only to within
    #: the window of it (``None``: ``start``)
    anchor: float | None = None
    #: meters not among ``meters`` that reported "on" after the start (their "off" was lost —
    #: with the concentrator that relayed it, say): evidence of power back all the same
    back: set[str] = field(default_factory=set)
    #: the start the outage was released with (its event id), when it carried on after the
    #: area came back for less than the settle time (a flapping area): ``start`` is then the
    #: start of its latest power-off, which the area's rules read (``None``: ``start``)
    origin: float | None = None

    @property
    def published(self) -> float:
        """The start the outage's outputs carry: the first power-off of a flapping area."""
        return self.start if self.origin is None else self.origin

    def holds(self, threshold: int) -> bool:
        """Enough of the outage's meters still off that the area is out by rule 1 (at least
        ``threshold``, the area's) and more than :data:`HOLD_SHARE` of them: no "on", a
        terminal's or other meters', restores it until they report — a phase left dark (a
        third of the meters) is still an area outage, while a few meters whose restores were
        lost (a handful of a hundred) must not keep the area out for ever."""
        still_off = len(self.meters) - len(self.restored)
        return still_off >= threshold and still_off > HOLD_SHARE * len(self.meters)

    def to_state(self) -> dict[str, Any]:
        """The episode in the screen's saved state."""
        return {"start": self.start, "basis": self.basis, "meters": sorted(self.meters),
                "restored": sorted(self.restored), "terminal_off": self.terminal_off,
                "released": self.released, "seen": self.seen,
                "backlog": self.backlog, "wm_seen": self.wm_seen, "anchor": self.anchor,
                "back": sorted(self.back), "origin": self.origin}

    @classmethod
    def from_state(cls, e: Mapping[str, Any]) -> Episode:
        """Inverse of :meth:`to_state` (a state from before lacks the later fields)."""
        wm_seen, anchor, origin = e.get("wm_seen"), e.get("anchor"), e.get("origin")
        return cls(float(e["start"]), e["basis"], set(e["meters"]), set(e["restored"]),
                   bool(e["terminal_off"]), bool(e["released"]), float(e.get("seen", 0.0)),
                   bool(e.get("backlog", False)), float(wm_seen) if wm_seen is not None else None,
                   float(anchor) if anchor is not None else None, set(e.get("back", ())),
                   float(origin) if origin is not None else None)


@dataclass
class Closing:
    """A released outage whose area came back at ``ended`` (report time, first heard at
    processing time ``seen``): its restoration is held until the area has stayed on for the
    screen's ``restore_settle_seconds``, so an area flickering off and on is one outage with
    one restoration (at its last close), not one per flicker."""

    episode: Episode
    ended: float
    seen: float

    def carried_on_by(self, start: float, settle: float) -> bool:
        """Whether an outage of the area starting at ``start`` is this one carrying on: it
        began within ``settle`` seconds of the close (an area on for longer was back)."""
        return start - self.ended <= settle

    def to_state(self) -> dict[str, Any]:
        """The closing outage in the screen's saved state."""
        return {"episode": self.episode.to_state(), "ended": self.ended, "seen": self.seen}

    @classmethod
    def from_state(cls, c: Mapping[str, Any]) -> Closing:
        """Inverse of :meth:`to_state`."""
        return cls(Episode.from_state(c["episode"]), float(c["ended"]), float(c["seen"]))


@dataclass
class AreaState:
    """One transformer area: its devices off, its open outage, its last close."""

    #: meters of this area currently off -> off time (epoch seconds)
    off: dict[str, float] = field(default_factory=dict)
    #: terminals of this area whose last word is "off" -> off time (an area may have more than
    #: one concentrator); key ``""``: a terminal of the area, from a state saved before
    #: terminals were told apart (any of the area's terminals' "on" clears it)
    terminals_off: dict[str, float] = field(default_factory=dict)
    episode: Episode | None = None
    #: report time the area's last outage (held or released) closed; meters' off times before
    #: it are stale (their power-on was lost) and start no new outage. Kept
    #: ``forget_after_hours`` (one per area), so the meters' logs of that outage, read hours
    #: later, are known for what they are
    closed: float | None = None
    #: the start of the outage that closed at ``closed`` (``None``: unknown, an older state)
    opened: float | None = None
    #: the released outage that closed last, its restoration not yet released (settling)
    closing: Closing | None = None

    def to_state(self) -> dict[str, Any]:
        """The area in the screen's saved state."""
        ep = self.episode
        return {"off": self.off, "terminals_off": self.terminals_off, "closed": self.closed,
                "opened": self.opened, "episode": None if ep is None else ep.to_state(),
                "closing": None if self.closing is None else self.closing.to_state()}

    @classmethod
    def from_state(cls, a: Mapping[str, Any]) -> AreaState:
        """Inverse of :meth:`to_state`. Versions 1 and 2 kept one ``terminal_off`` time per
        area: it becomes the word of "a terminal" of the area (key ``""``)."""
        closed, opened = a.get("closed"), a.get("opened")
        e, c = a.get("episode"), a.get("closing")
        terminals = {str(d): float(t) for d, t in (a.get("terminals_off") or {}).items()}
        if a.get("terminal_off") is not None:
            terminals.setdefault("", float(a["terminal_off"]))
        return cls(off={str(m): float(t) for m, t in a.get("off", {}).items()},
                   terminals_off=terminals, closed=float(closed) if closed is not None else None,
                   opened=float(opened) if opened is not None else None,
                   episode=Episode.from_state(e) if e is not None else None,
                   closing=Closing.from_state(c) if c is not None else None)

    def joins(self, ep: Episode, t: float, window: float) -> bool:
        """Whether a meter "off" at ``t`` belongs to the open outage ``ep``: not before the
        window of the start ``ep`` opened with, nor before the area's last close. Anything
        earlier (a meter clock hours slow, an old log) would stretch the outage to its time."""
        anchor = ep.start if ep.anchor is None else ep.anchor
        if t < anchor - window:
            return False
        return self.closed is None or t >= self.closed

    def restored_by_meters(self, ep: Episode, threshold: int, restore_share: float) -> bool:
        """Whether the meters reporting "on" since ``ep`` began restore it: ``restore_share``
        of the meters that went off, or the area's ``threshold`` of meters whether or not
        their "off" reached us (a concentrator's last gasp alone, the meters' offs lost with
        it) — never while ``threshold`` of the outage's meters still say off. While a terminal
        still says off, only ``threshold`` meters saying on overrule it."""
        if ep.holds(threshold):
            return False  # a phase left dark: the meters still off are an area outage
        ons = len(ep.restored) + len(ep.back)
        if self.terminal_says_off() and ons < threshold:
            return False  # the terminal still says off: too few meters say on to overrule it
        need = math.ceil(restore_share * len(ep.meters) - 1e-9)
        return len(ep.restored) >= max(need, 1) or ons >= threshold

    def forget(self, before: float) -> list[str]:
        """Forget devices off since before ``before`` (their power-on was lost) and a close
        older than that; the meters forgotten."""
        meters = [m for m, t in self.off.items() if t < before]
        for m in meters:
            del self.off[m]
        for d in [d for d, t in self.terminals_off.items() if t < before]:
            del self.terminals_off[d]
        if self.closed is not None and self.closed < before:
            self.closed = self.opened = None
        return meters

    def empty(self) -> bool:
        """Nothing to remember: no outage (open or settling), no device off, no close."""
        return (self.episode is None and self.closing is None and not self.off
                and not self.terminals_off and self.closed is None)

    def of_last_outage(self, t: float, window: float) -> bool:
        """Whether a power-off at ``t`` is of the area's last closed outage (from the window
        before its start to its close): the same outage, reported again or late (a device's
        log read hours after), not a new one."""
        closed, opened = self.closed, self.opened
        return closed is not None and opened is not None and opened - window <= t < closed

    def terminal_off_anew(self, terminal: str, t: float) -> bool:
        """The terminal's "off" on record is from before the area's last close and ``t`` is
        not: a new power-off, not a retry of the old one."""
        old = self.terminals_off.get(terminal, self.terminals_off.get(""))
        return self.closed is not None and old is not None and old < self.closed <= t

    def terminal_says_off(self) -> bool:
        """A terminal's last word is "off", about the outage now (the terminals' word is off
        while any of them says off): an "off" from before the area's last close (the meters
        restored the area; the terminal's "on" was lost) is stale, and says nothing of the
        outage since."""
        closed = self.closed
        return any(closed is None or off >= closed for off in self.terminals_off.values())

    def anew(self, kind: str, action: str, device: str, last_t: float, t: float) -> bool:
        """Whether a report of the same state its device last reported (at ``last_t``) is a
        new power-off or power-on at ``t`` rather than a repeat: an "off" after the area's
        last close from a device off since before it (:meth:`off_anew`,
        :meth:`terminal_off_anew`), or an "on" timed after the open outage began from a device
        whose last "on" is from before it (its "off" of this outage was lost)."""
        if action == "on":
            ep = self.episode
            return ep is not None and last_t < ep.start <= t
        if kind == "meter":
            return self.off_anew(device, t)
        return self.terminal_off_anew(device, t)

    def off_anew(self, meter: str, t: float) -> bool:
        """``meter``'s recorded off time is from before the area's last close and ``t`` is
        not: a repeated "off" that is a new power-off, not a retry of the old one."""
        old = self.off.get(meter)
        return self.closed is not None and old is not None and old < self.closed <= t

    def meters_out_since(self, threshold: int, window: float) -> float | None:
        """The start of an outage of the area by its meters (rule 1): the earliest off time
        from which ``threshold`` fresh offs fall within ``window``; ``None``: not out."""
        times = sorted(self.fresh_offs().values())
        i = 0
        for j, tj in enumerate(times):
            while tj - times[i] > window:
                i += 1
            if j - i + 1 >= threshold:
                return times[i]
        return None

    def fresh_offs(self) -> dict[str, float]:
        """Meters off since the area's last close (older off times start no new outage)."""
        if self.closed is None:
            return self.off
        closed = self.closed
        return {m: mt for m, mt in self.off.items() if mt >= closed}


@dataclass
class SingleMeter:
    """A meter off on its own (rule 5): a customer-side fault once it stays off."""

    transformer: str
    start: float
    flagged: bool = False
    seen: float = 0.0
    #: still off when its area's outage closed at ``start``: its "on" soon after is a slow
    #: report of that restoration, not a blip of its own
    after_area: bool = False

    def to_state(self) -> list[Any]:
        """A JSON-ready snapshot (:meth:`from_state` reads it back)."""
        return [self.transformer, self.start, self.flagged, self.seen, self.after_area]

    @classmethod
    def from_state(cls, raw: Sequence[Any]) -> SingleMeter:
        """The meter :meth:`to_state` saved (states saved before ``after_area`` lack it)."""
        tx, start, flagged, seen, *after = raw
        return cls(tx, float(start), bool(flagged), float(seen), bool(after and after[0]))
