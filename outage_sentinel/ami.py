"""AMI screening: turn raw meter / terminal power-off and power-on reports into transformer-area
outage evidence, the way a metering master station does. Pure: no I/O, no clock reads.

The split
---------
The AMI sources (:mod:`outage_sentinel.sources.mqtt`, :mod:`outage_sentinel.sources.file_drop`)
emit one *observation* per report: an :class:`~outage_sentinel.events.OutageEvent` with
``signal`` ``dead`` (power off, ``status="active"``) or ``alive`` (power on,
``status="restored"``), ``area_text`` = ``"meter:<id>"`` or ``"terminal:<id>"`` (see
:func:`device_ref`), ``transformers`` = the meter's transformer area when known, and a
deterministic ``event_id`` (``<device>:<off|on>:<time>``), so a report seen twice is one row in
the store. The daemon persists observations like any other event, then feeds them to one
:class:`AmiScreen`, whose *outputs* are what the incident correlation consumes:

* ``dead`` / ``alive`` events per transformer area, ``source`` = the screen's name (``ami``),
  ``event_id`` = ``<transformer>@<outage start>`` — the same id for the outage and its
  restoration (``status`` ``active`` then ``restored``, two revisions);
* :class:`CustomerFault` records: a single meter off while its neighbours are fine is a
  customer-side fault (a blown service fuse, a tripped meter switch), *not* an incident.

Rules (:class:`ScreenPolicy`, defaults after the field practice in docs/design.md §4)
------------------------------------------------------------------------------
1. A transformer area is *out* when its terminal (concentrator) reports power off, or when
   ≥ ``min_meters`` (5) of its meters — or ``min_share`` of its registered meters — report
   power off within ``window_seconds`` (60 s). The outage starts at the earliest of those
   reports. An area with fewer registered meters than the threshold needs all of them (never
   fewer than 2). Off times from before the area's last outage closed (a meter whose power-on
   was lost still "off" since then) neither start nor extend a new outage: a second recloser
   shot is measured from its own start, not the first shot's. A meter "off" that arrives once
   an outage is open moves its start earlier only from within ``window_seconds`` of the start
   it opened with (and never to before the area's last close): one meter whose clock is hours
   slow would otherwise stretch a 5-second reclose into an hours-long outage, released at
   once. An earlier "off" is that meter's own (rule 5), and changes nothing about the area.
2. **Held for the momentary rule.** An area outage is released (a ``dead`` output) only once it
   has lasted ``min_duration_seconds`` (60 s); restored before that, it was a momentary
   interruption (a recloser's dead time) and is dropped — counted in
   :attr:`ScreenResult.momentary`, no output at all. "Has lasted" is judged on report times
   with room for reports in transit (``lateness_seconds``, 15 s): the outage is released by
   :meth:`AmiScreen.tick` / :meth:`AmiScreen.feed` when either

   * ``now >= start + min_duration`` and the outage has been known for ``lateness`` seconds
     (live operation: released 60 s after it began; :meth:`AmiScreen.next_due` says when), or
   * ``now >= start + min_duration`` and the report stream itself (the *watermark*, the
     newest report time fed) is ``min_duration + lateness`` past the start — so a backlog
     replayed after a restart, whose reports are all hours old, releases real outages as it
     goes while a blip whose restore is in the next batch is still dropped.

   **Backlogs.** An outage whose start was already more than ``min_duration + lateness``
   before ``now`` when it was first seen (a concentrator's log uploaded after it reconnects,
   a head-end catching up) is over as likely as not, and its restores may be in the upload's
   next message: "known for" means known for ``backlog_hold_seconds`` (120 s, never less
   than ``lateness``) instead of ``lateness``. And the watermark rule counts for it only
   while the report stream as a whole is a backlog too (the watermark more than
   ``min_duration + lateness`` behind ``now``: a replay after a restart) and had not passed
   the outage's due time when the outage was first seen: other areas' live reports, in the
   same poll or the next, or a quiet stream's old watermark, say nothing about whether this
   upload's restores are still in transit. An outage seen as it happens (or less than
   ``min_duration + lateness`` late) is released exactly as above.

   A report time more than :data:`AHEAD_TOLERANCE_SECONDS` (30 s) ahead of ``now`` (a device
   whose clock is fast) is taken as ``now`` + 30 s, so one clock ahead can neither push the
   watermark into the future — releasing every later blip at once — nor make its device's
   real reports stale.

   An "off" time more than :data:`IMPLAUSIBLE_AGE_SECONDS` (365 days) *behind* the time the
   report was received (a clock reset to its factory value — 2000-01-01, 1970 — or to a
   firmware build date) is not believed either: it is set aside
   (:attr:`ScreenResult.set_aside`, with a reason naming the device and the time; the daemon
   quarantines it), never applied. It could only open an outage of years. The floor is that
   absolute on purpose: how late a report *arrives* says nothing about its clock. An "off"
   days late — a head-end backlog, a link down through a typhoon — is a real time and is
   applied like any backlog (and, once an outage is open, only within the window of its
   opening start, rule 1). A report is judged against when it was received (``received`` of
   :meth:`AmiScreen.feed`, else ``now``), so one replayed after a restart, however long the
   stop, is judged as when it was first screened. "On" reports are applied whatever their
   age: an old one closes nothing begun after it. So is the other half of a reset record (a
   terminal's ERC14 "on" at a real time): with no outage to close it changes nothing.

   If an off and its restore reach the screen together and the outage lasted long enough, both
   the ``dead`` and the ``alive`` output are produced.
3. An area outage is *restored* (an ``alive`` output with ``end``) when the terminal reports
   power on, or when ``restore_share`` (half) of the meters that went off report power on, or
   when the area's threshold of meters report power on after the outage began, whether or not
   their "off" was heard (a concentrator's last gasp alone: the meters' offs were lost with
   it). Never while at least the area's threshold of the outage's meters still say off: by
   rule 1 those are an area outage (a phase left dark), whatever the other meters or the
   terminal say; their restores close it. Meters and terminals don't overrule each other's
   clear word otherwise either: a few meters reporting on (fewer than the threshold) don't
   restore an area a terminal still says off, and an area with more than one terminal in the
   registry is off by the terminals' word while any of them says off. Meters still off when
   their area is restored (fewer than the threshold) are each off on their own from the
   close (rule 5). An "on" from before the outage began (an old log uploaded late) restores
   nothing. The ``alive`` of a released outage waits for rule 6.
4. Repeated reports merge: a second "off" from a meter already off (a retry, a redelivery, a
   second code for the same event, an older log) changes nothing and is counted in
   ``merged`` (the device's latest time is kept); a report older than the last one applied
   for that device is ``stale`` and ignored. The exception: a meter or terminal still off
   from before its area's last outage closed (its power-on was lost) that reports "off"
   again, timed after that close, is off anew — applied as a fresh "off" from its new time,
   not merged. Likewise a device whose last "on" is from before the area's open outage began
   that reports "on" again, timed after the start, is on anew (its "off" was lost). A
   terminal "off" from before the last close no longer says the area is off (the meters'
   restores closed that outage): it holds back no meter restoration since. An "off" timed
   within the area's last closed outage (from the window before its start to its close) —
   the meters' power-down logs read hours later, a re-sent ERC14 — is that outage reported
   again: it opens nothing (a meter of it still off is off on its own from the close).
5. A meter off that does not become part of an area outage within the window, and is still off
   after ``max(window, min_duration)``, is a :class:`CustomerFault` (``status="active"``; a
   later power-on gives one with ``status="restored"``). Shorter single-meter blips are dropped
   as momentary — except a meter off on its own from its area's close (rules 3 and 4), whose
   "on" soon after is a slow report of the restoration, neither a fault nor a blip.

6. **Held until the area stays on.** A released outage that closes (rule 3) is *closing*
   (:class:`~outage_sentinel.ami_areas.Closing`, :class:`RestoreSettle`): its ``alive`` is
   released only once the area has stayed on for ``restore_settle_seconds`` (judged as rule 2
   judges ``min_duration``: the clock past the close plus the settle time, and the close known
   for ``lateness``, or the watermark ``lateness`` past it; a close heard late — an upload —
   known for ``backlog_hold`` instead, the watermark not counting). If the area goes off
   again before then (its threshold of meters, or its terminal, rule 1), that is the same
   outage carrying on: no new outage, no output, the close dropped (counted in
   :attr:`ScreenResult.flapped`); its outputs keep the start it was released with
   (``Episode.origin``), and its one ``alive`` carries the time of the last close. A flapping
   area (a failing fuse, a transformer tripping on load pickup: minutes off, minutes on)
   is one outage for its village, not a notice pair per flicker. An outage that opens after
   the settle time is a new one, and the settling ``alive`` is released before it. An
   outage that closed before it was released (both ends in one batch) is not held: nobody
   was told of it. ``0``: restored at the first "on" (a bare :class:`ScreenPolicy`'s
   default; the daemon's, from its config, is 300 s).

Single-meter flags (rule 5) are held the same way. ``now`` is only ever passed in.

**What the screen holds is dark evidence too.** An outage held by rule 2 (not yet released,
no power-on since) is named by :meth:`AmiScreen.held_dark`: the processor does not count its
area back on an outage-system record's end (:func:`outage_sentinel.incidents.held_off`) —
the village is not told 恢复送电 while the meters' power-off waits for its hold, to hear
更正：仍停电 once it is released. The area stays off until the screen releases the outage
(its ``dead``), or closes it (its ``dead`` and ``alive``), or drops it as a blip (the
processor asks again: :meth:`outage_sentinel.held_areas.HeldAreas.recheck`).

State is in memory, bounded by the registry: one last report per device heard from within
``forget_after_hours`` (a device's last "on" is kept that long, never less than
:data:`ON_HISTORY_SECONDS`, after it was *seen*, so an older "off" that arrives after it — a
backlog split over polls, the meters' logs read hours later — is stale; devices off longer
than that are forgotten) and, per area, its devices off, its open outage and its last close
(kept ``forget_after_hours`` too), and its closing outage (rule 6) until its restoration is
released. The per-area state and the rules that need only it are in
:mod:`outage_sentinel.ami_areas`. The state is serialisable with :meth:`AmiScreen.to_state` /
:meth:`AmiScreen.from_state` (which reads the versions saved before) so the daemon can persist
it with its commits, or rebuild it by re-feeding the last hour of observations (the outputs
are deterministic, so re-produced outputs dedupe in the store).

The screen also notes, per source, how far each report's time is from when it was received
(:class:`~outage_sentinel.clock_offset.ClockOffsets`, saved with the state): a source whose
reports sit steadily a whole number of hours away is probably read in the wrong zone
(:attr:`ScreenResult.clock_offsets`, :meth:`AmiScreen.clock_offsets`). Nothing is shifted.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from outage_sentinel.ami_areas import AreaState, Closing, Episode, SingleMeter
from outage_sentinel.clock_offset import ClockOffsets, OffsetChange
from outage_sentinel.events import OutageEvent

if TYPE_CHECKING:
    from outage_sentinel.topology import Topology

DeviceKind = Literal["meter", "terminal"]
Action = Literal["off", "on"]
DEVICE_KINDS: tuple[DeviceKind, ...] = ("meter", "terminal")

_STATE_VERSION = 4
#: State versions :meth:`AmiScreen.from_state` reads (1: no ``seen`` time in ``last``; 1 and
#: 2: one ``terminal_off`` per area, no ``back`` in episodes, four fields per single; 1 to 3:
#: no settling restorations, no ``origin`` in episodes).
_STATE_VERSIONS = (1, 2, 3, 4)
#: The least time a device's last "on" is remembered after it was *seen* (processing time); it
#: is kept ``forget_after_hours`` (72 h) by default, so that an older "off" arriving later — a
#: head-end backlog split over polls, ons first, or offs read from the meters' logs hours after
#: the ons came live — is stale, not a new outage (:meth:`AmiScreen.on_history_seconds`).
ON_HISTORY_SECONDS = 7200.0
#: How far ahead of ``now`` a report time is believed. A later one (a device whose clock is
#: fast) is taken as ``now`` plus this, so one clock cannot move the watermark (and with it
#: the momentary rule) into the future, nor make the device's real reports stale.
AHEAD_TOLERANCE_SECONDS = 30.0
#: How far behind the time it was received a power-off time is believed (365 days). Older is a
#: device clock reset (2000-01-01, 1970, a firmware date), never a real outage: no backlog or
#: link failure delays reports by a year, while a typhoon or a head-end fault can by days.
IMPLAUSIBLE_AGE_SECONDS = 365 * 86400.0


def device_ref(kind: str, device_id: str) -> str:
    """The ``area_text`` an AMI observation carries: ``"meter:<id>"`` / ``"terminal:<id>"``."""
    return f"{kind}:{device_id}"


def parse_device_ref(text: str) -> tuple[DeviceKind, str] | None:
    """Inverse of :func:`device_ref`; ``None`` when ``text`` is not an AMI device reference."""
    kind, sep, device_id = text.partition(":")
    if not sep or not device_id:
        return None
    if kind == "meter":
        return "meter", device_id
    if kind == "terminal":
        return "terminal", device_id
    return None


def compact_time(t: datetime) -> str:
    """``20261123T080000Z`` (microseconds kept when non-zero): the time part of AMI event ids."""
    u = t.astimezone(UTC)
    # isoformat is C code; at storm rates this is ~3x faster than strftime.
    text = u.replace(tzinfo=None).isoformat().replace("-", "").replace(":", "")
    return text + "Z"


@dataclass(frozen=True)
class AmiRegistry:
    """Which transformer area every meter and terminal belongs to (``meters.csv``)."""

    #: device id -> (transformer id, ``meter`` | ``terminal``)
    devices: Mapping[str, tuple[str, DeviceKind]]
    #: transformer id -> number of registered meters (terminals not counted)
    meters_per_transformer: Mapping[str, int]
    #: transformer id -> feeder id (for the outputs' ``feeder``)
    feeder_of: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_records(cls, rows: Iterable[tuple[str, str, str]],
                     feeder_of: Mapping[str, str] | None = None) -> AmiRegistry:
        """Build from ``(id, transformer, kind)`` rows."""
        devices: dict[str, tuple[str, DeviceKind]] = {}
        counts: dict[str, int] = {}
        for device_id, transformer, kind in rows:
            k: DeviceKind = "terminal" if kind == "terminal" else "meter"
            devices[device_id] = (transformer, k)
            if k == "meter":
                counts[transformer] = counts.get(transformer, 0) + 1
        return cls(devices, counts, dict(feeder_of or {}))

    @classmethod
    def from_topology(cls, topology: Topology) -> AmiRegistry:
        """Build from a loaded bundle's ``meters`` (feeders from the energised network)."""
        feeders: dict[str, str] = {}
        for tx in topology.transformers:
            try:
                feeders[tx] = topology.feeder_of(tx)
            except (KeyError, IndexError):  # pragma: no cover - validated bundles have them
                continue
        return cls.from_records(((m.id, m.transformer, m.kind) for m in topology.meters), feeders)

    def lookup(self, device_id: str) -> tuple[str, DeviceKind] | None:
        """``(transformer, kind)`` of a device, or ``None`` when it is not registered."""
        return self.devices.get(device_id)

    def observation(self, event: OutageEvent) -> Observation | None:
        """Resolve an AMI observation event; ``None`` for non-AMI events. A device not
        registered keeps the event's transformer, if any (``""``: none)."""
        if event.signal not in ("dead", "alive"):
            return None
        ref = parse_device_ref(event.area_text)
        if ref is None:
            return None
        kind, device = ref
        known = self.lookup(device)
        if known is not None:
            transformer, kind = known
        elif event.transformers:
            transformer = event.transformers[0]
        else:
            transformer = ""
        return Observation(device, kind, transformer, "off" if event.signal == "dead" else "on",
                           event.start if event.signal == "dead" else (event.end or event.start),
                           event.event_id)


@dataclass(frozen=True)
class ScreenPolicy:
    """The screening thresholds (mirrors :class:`outage_sentinel.config.AmiScreenConfig`)."""

    min_meters: int = 5
    min_share: float | None = None
    window_seconds: float = 60.0
    min_duration_seconds: float = 60.0
    restore_share: float = 0.5
    forget_after_hours: float = 72.0
    lateness_seconds: float = 15.0
    #: How long an outage first seen as a backlog (already older than ``min_duration +
    #: lateness``) must be known before it is released on that ground (module docstring).
    backlog_hold_seconds: float = 120.0
    #: How long a released outage's area must stay on before its restoration is released
    #: (rule 6). 0 here, the rule of a bare screen: restored at the first "on"; the daemon's
    #: default is the config's (``ami_screen.restore_settle_seconds``, 300 s).
    restore_settle_seconds: float = 0.0

    def on_history_seconds(self) -> float:
        """How long a device's last "on" is kept after it was seen (processing time):
        ``forget_after_hours``, as long as an "off" is believed, so an "off" older than the
        "on" is stale however late it comes (never less than :data:`ON_HISTORY_SECONDS`)."""
        return max(ON_HISTORY_SECONDS, self.forget_after_hours * 3600.0,
                   2 * (self.window_seconds + self.min_duration_seconds), self.lateness_seconds)

    def threshold(self, registered: int) -> int:
        """How many meters of an area with ``registered`` meters (0: unknown) going off make
        an area outage (rule 1): ``min_share`` of them or ``min_meters``, at most all of them,
        never fewer than 2."""
        if self.min_share is not None and registered:
            n = math.ceil(self.min_share * registered - 1e-9)
        else:
            n = self.min_meters
        if registered:
            n = min(n, registered)
        return max(n, 2)

    @classmethod
    def from_config(cls, config: Any) -> ScreenPolicy:
        """From an ``AmiScreenConfig`` (or anything with the same attributes)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Observation:
    """One AMI report, resolved against the registry."""

    device: str
    kind: DeviceKind
    transformer: str
    action: Action
    time: datetime
    event_id: str


@dataclass(frozen=True)
class CustomerFault:
    """A single meter without power while its transformer area is fine: customer side."""

    meter: str
    transformer: str
    start: datetime
    end: datetime | None
    status: Literal["active", "restored"]


@dataclass(frozen=True)
class SetAside:
    """A report the screen does not believe (its time is implausibly old) and did not apply:
    kept with the reason so the daemon can quarantine it rather than drop it silently."""

    event: OutageEvent
    reason: str


@dataclass
class ScreenResult:
    """What one :meth:`AmiScreen.feed` / :meth:`AmiScreen.tick` produced."""

    #: Transformer-area ``dead`` / ``alive`` events for the incident correlation, in time order.
    events: list[OutageEvent] = field(default_factory=list)
    customer_faults: list[CustomerFault] = field(default_factory=list)
    #: Observations fed (AMI ones; other events are skipped and not counted).
    observed: int = 0
    #: Area outages and single-meter blips shorter than the minimum duration, dropped.
    momentary: int = 0
    #: Repeated reports merged into one already applied (duplicates, retries).
    merged: int = 0
    #: Reports older than the last applied one for the same device, ignored.
    stale: int = 0
    #: Observations for devices in no transformer area (not in the registry, no transformer).
    unknown: int = 0
    #: ``(source, device reference)`` of each of those observations, so the daemon can name
    #: the devices (a registry gap is invisible otherwise: their reports count toward nothing).
    unknown_devices: list[tuple[str, str]] = field(default_factory=list)
    #: "Off" reports not applied because their time is not believable (:class:`SetAside`).
    set_aside: list[SetAside] = field(default_factory=list)
    #: Area outages still held by the momentary rule after this call.
    held: int = 0
    #: ``(area, the close dropped)`` of each restoration taken back because its area went off
    #: again before it settled (rule 6): the outage carried on, one outage for the village.
    flapped: list[tuple[str, datetime]] = field(default_factory=list)
    #: Sources flagged or cleared as read in the wrong zone by this call (the screen's
    #: :class:`~outage_sentinel.clock_offset.ClockOffsets`; :meth:`AmiScreen.clock_offsets`).
    clock_offsets: list[OffsetChange] = field(default_factory=list)

    def extend(self, other: ScreenResult) -> None:
        """Add ``other``'s outputs and counters to this result."""
        self.events.extend(other.events)
        self.customer_faults.extend(other.customer_faults)
        self.observed += other.observed
        self.momentary += other.momentary
        self.merged += other.merged
        self.stale += other.stale
        self.unknown += other.unknown
        self.unknown_devices.extend(other.unknown_devices)
        self.set_aside.extend(other.set_aside)
        self.held = other.held
        self.flapped.extend(other.flapped)
        self.clock_offsets.extend(other.clock_offsets)


def implausible(obs: Observation, received: datetime) -> str:
    """Why the "off" ``obs`` is set aside: its time is more than a year before it was
    received, which no backlog explains, so it says nothing about when power went."""
    days = IMPLAUSIBLE_AGE_SECONDS / 86400.0
    return (f"{obs.kind} {obs.device}: power-off time {obs.time.isoformat()} is more than "
            f"{days:g} days before the report was received ({received.isoformat()}): "
            f"the device's clock is wrong or was reset, so it is not taken as the time "
            f"power went off")


def area_event(source: str, feeder: str | None, tx: str, ep: Episode,
               end: float | None) -> OutageEvent:
    """The screen's output for area ``tx``'s outage ``ep``: ``dead`` (``end`` ``None``) or
    ``alive`` at ``end``, under one id, ``<area>@<start>`` (the start it was released with)."""
    start = _dt(ep.published)
    return OutageEvent(
        source=source,
        event_id=f"{tx}@{compact_time(start)}",
        kind="fault",
        status="active" if end is None else "restored",
        signal="dead" if end is None else "alive",
        start=start,
        end=_dt(end) if end is not None else None,
        feeder=feeder,
        transformers=(tx,),
        # Meters going dark say where, not why: no cause (the notices' templates say
        # 线路故障 / nothing). The evidence is in ``raw``.
        cause="",
        raw={"basis": ep.basis, "meters_off": len(ep.meters),
             "meters_restored": len(ep.restored), "meters_on_unrecorded_off": len(ep.back),
             "terminal_off": ep.terminal_off},
    )


def _ts(t: datetime) -> float:
    return t.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class ReleaseSchedule:
    """When what the screen holds comes due — the timing of rule 2 (module docstring). It owns
    the watermark (the newest report time fed, capped at ``now`` +
    :data:`AHEAD_TOLERANCE_SECONDS`), the checks queued for held area outages and single-meter
    flags — one heap by report time, compared with the watermark, one by processing time,
    compared with ``now``; :class:`AmiScreen` re-validates an entry when it pops — and the
    tests of whether an outage or a flag is due. Pure, like the screen."""

    def __init__(self, policy: ScreenPolicy) -> None:
        self.policy = policy
        #: The newest report time fed (epoch seconds; ``None``: none yet).
        self.watermark: float | None = None
        #: (due, seq, "area"|"single", key) by report time (compared with the watermark) and
        #: by processing time (compared with ``now``); entries are re-validated when popped.
        self._eheap: list[tuple[float, int, str, str]] = []
        self._wheap: list[tuple[float, int, str, str]] = []
        self._seq = 0

    def __len__(self) -> int:
        """Checks queued (lazily invalidated ones included until :meth:`compact`)."""
        return len(self._eheap) + len(self._wheap)

    def observe(self, t: float, t_now: float) -> float:
        """Report time ``t`` as believed at ``t_now`` (capped), moving the watermark."""
        t = min(t, t_now + AHEAD_TOLERANCE_SECONDS)
        if self.watermark is None or t > self.watermark:
            self.watermark = t
        return t

    def mark(self, t_now: float) -> float:
        """The watermark to judge by at ``t_now`` (``-inf`` before any report)."""
        if self.watermark is not None and self.watermark > t_now + AHEAD_TOLERANCE_SECONDS:
            # A mark saved before report times were capped, or ``now`` went back.
            self.watermark = t_now + AHEAD_TOLERANCE_SECONDS
        return self.watermark if self.watermark is not None else -math.inf

    def due(self, wm: float, t_now: float) -> Iterator[tuple[str, str]]:
        """Pop the checks due by watermark ``wm``, then those due by ``t_now``: ``(what, key)``."""
        for heap, limit in ((self._eheap, wm), (self._wheap, t_now)):
            while heap and heap[0][0] <= limit:
                _, _, what, key = heapq.heappop(heap)
                yield what, key

    def next_due(self) -> float | None:
        """The processing time of the next check (``None``: nothing queued)."""
        return self._wheap[0][0] if self._wheap else None

    def push(self, due: float, seen: float, what: str, key: str,
             hold: float | None = None) -> None:
        """Schedule a check of something due at report time ``due``, first seen at ``seen``
        and held ``hold`` (default ``lateness``) after that."""
        late = self.policy.lateness_seconds
        self._seq += 1
        heapq.heappush(self._eheap, (due + late, self._seq, what, key))
        heapq.heappush(self._wheap, (max(due, seen + (late if hold is None else hold)),
                                     self._seq, what, key))

    def open_area(self, tx: str, ep: Episode, t_now: float) -> None:
        """Note area ``tx``'s outage ``ep`` as first seen at ``t_now`` (a backlog when it began
        more than ``min_duration + lateness`` before; the watermark then) and schedule its
        release."""
        p = self.policy
        ep.seen = t_now
        ep.backlog = ep.seen - ep.start > p.min_duration_seconds + p.lateness_seconds
        ep.wm_seen = self.watermark
        self.push_area(tx, ep)

    def push_area(self, tx: str, ep: Episode) -> None:
        """Schedule the release of area ``tx``'s held outage ``ep``."""
        self.push(ep.start + self.policy.min_duration_seconds, ep.seen, "area", tx,
                  self._area_hold(ep))

    def push_single(self, meter: str, single: SingleMeter) -> None:
        """Schedule the customer-fault flag of ``meter``, off on its own."""
        self.push(single.start + self.single_hold(), single.seen, "single", meter)

    def push_settle(self, tx: str, closing: Closing) -> None:
        """Schedule the release of area ``tx``'s settling restoration (rule 6)."""
        self.push(closing.ended + self.policy.restore_settle_seconds, closing.seen, "settle",
                  tx, self._settle_hold(closing))

    def settle_due(self, closing: Closing, wm: float, t_now: float) -> bool:
        """Whether ``closing``'s area has stayed on for the settle time, judged as rule 2
        judges an outage's minimum duration: a close heard late (an upload, a backlog) is
        held ``backlog_hold`` after it was seen, and the watermark does not count for it — its
        area's next "off" may be in the upload's next part."""
        return self._is_due(closing.ended + self.policy.restore_settle_seconds, closing.seen,
                            wm, t_now, self._settle_hold(closing), not self._late(closing))

    def _late(self, closing: Closing) -> bool:
        p = self.policy
        return closing.seen - closing.ended > p.restore_settle_seconds + p.lateness_seconds

    def _settle_hold(self, closing: Closing) -> float:
        p = self.policy
        late = self._late(closing)
        return max(p.backlog_hold_seconds, p.lateness_seconds) if late else p.lateness_seconds

    def single_hold(self) -> float:
        """How long a single meter must stay off to be flagged (report time)."""
        return max(self.policy.window_seconds, self.policy.min_duration_seconds)

    def area_due(self, ep: Episode, wm: float, t_now: float) -> bool:
        """Whether ``ep`` has lasted the minimum duration, as rule 2 judges it."""
        return self._is_due(ep.start + self.policy.min_duration_seconds, ep.seen, wm, t_now,
                            self._area_hold(ep), self._area_by_watermark(ep, wm, t_now))

    def single_due(self, single: SingleMeter, wm: float, t_now: float) -> bool:
        """Whether a single meter has been off long enough to be flagged."""
        return self._is_due(single.start + self.single_hold(), single.seen, wm, t_now)

    def _is_due(self, due: float, seen: float, wm: float, t_now: float,
                hold: float | None = None, by_watermark: bool = True) -> bool:
        """Report time ``due`` has passed: the clock is past it, and either the report stream
        is ``lateness`` past it or the thing has been known for ``hold`` (default
        ``lateness``: a restore in transit has had time to arrive). The watermark alone never
        releases anything early."""
        late = self.policy.lateness_seconds
        known = late if hold is None else hold
        return t_now >= due and ((by_watermark and wm >= due + late) or t_now >= seen + known)

    def _area_hold(self, ep: Episode) -> float:
        """How long ``ep`` must be known before it is released on that ground."""
        p = self.policy
        return max(p.backlog_hold_seconds, p.lateness_seconds) if ep.backlog \
            else p.lateness_seconds

    def _area_by_watermark(self, ep: Episode, wm: float, t_now: float) -> bool:
        """Whether the watermark rule may release ``ep``: always for a live outage. For a
        backlog only while the report stream as a whole is a backlog too (its watermark more
        than ``min_duration + lateness`` behind ``now``: a replay) and had not passed ``ep``'s
        due time when ``ep`` was first seen (so a quiet stream's old mark does not count)."""
        if not ep.backlog:
            return True
        p = self.policy
        span = p.min_duration_seconds + p.lateness_seconds
        if wm >= t_now - span:
            return False  # the stream is live: other devices' reports, not this upload's
        return ep.wm_seen is None or ep.wm_seen < ep.start + span

    def compact(self, singles: Collection[str], areas: Collection[str]) -> None:
        """Drop entries for meters and areas no longer held once they far outnumber them, so
        memory stays flat in long storms."""
        if len(self) <= 8 * (len(singles) + len(areas)) + 2048:
            return

        def live(heap: list[tuple[float, int, str, str]]) -> list[tuple[float, int, str, str]]:
            kept = [e for e in heap if (e[2] == "single" and e[3] in singles)
                    or (e[2] != "single" and e[3] in areas)]
            heapq.heapify(kept)
            return kept

        self._eheap = live(self._eheap)
        self._wheap = live(self._wheap)


class RestoreSettle:
    """Rule 6 (module docstring): a released outage's restoration is held (the area's
    :class:`~outage_sentinel.ami_areas.Closing`) until its area stayed on for
    ``restore_settle_seconds``; an outage of the area that opens before then is the same one
    carrying on — released already, under the start it was released with — and the close is
    dropped. Pure; :class:`AmiScreen` makes the outputs of what it decides."""

    def __init__(self, policy: ScreenPolicy, schedule: ReleaseSchedule) -> None:
        self.settle = policy.restore_settle_seconds
        self.schedule = schedule

    def hold(self, tx: str, area: AreaState, ep: Episode, t: float, t_now: float) -> bool:
        """Hold the restoration at ``t`` of ``tx``'s released outage ``ep`` (seen at ``t_now``);
        ``False``: no settle time, the caller releases it now."""
        if self.settle <= 0:
            return False
        area.closing = Closing(ep, t, t_now)
        self.schedule.push_settle(tx, area.closing)
        return True

    def open(self, area: AreaState, episode: Episode) -> tuple[bool, Closing | None]:
        """An outage ``episode`` opens in ``area``: ``(True, the close dropped)`` when it is
        the settling one carrying on (``episode`` takes over its release and its start), else
        ``(False, the settling restoration the caller releases now, if any)``: the area
        stayed on long enough, and the new outage is a new one."""
        closing, area.closing = area.closing, None
        if closing is None or not closing.carried_on_by(episode.start, self.settle):
            return False, closing
        episode.released = True
        episode.origin = closing.episode.published
        return True, closing

    def due(self, area: AreaState, wm: float, t_now: float) -> Closing | None:
        """``area``'s settling restoration, taken, when it is due (watermark ``wm``)."""
        closing = area.closing
        if closing is None or not self.schedule.settle_due(closing, wm, t_now):
            return None  # carried on, or held again since: another entry covers it
        area.closing = None
        return closing


class AmiScreen:
    """Screens AMI observations into transformer-area outage evidence (see module docstring).

    Not thread-safe; the daemon calls it from its pipeline thread.
    """

    def __init__(self, registry: AmiRegistry, policy: ScreenPolicy | None = None,
                 source: str = "ami") -> None:
        self.registry = registry
        self.policy = policy or ScreenPolicy()
        self.source = source
        self._areas: dict[str, AreaState] = {}
        #: device -> (time, action, seen) of the last applied report (for merge / stale
        #: checks); ``seen`` is the processing time it was last confirmed
        self._last: dict[str, tuple[float, Action, float]] = {}
        self._singles: dict[str, SingleMeter] = {}
        self._schedule = ReleaseSchedule(self.policy)
        self._settle = RestoreSettle(self.policy, self._schedule)
        self._last_prune: float = -math.inf
        self._t_now: float = 0.0
        #: How far each source's report times are from their arrival (a zone read wrong).
        self.clock = ClockOffsets()

    # -- public API ---------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime | None:
        """The latest report time fed so far (report times are capped at ``now`` +
        :data:`AHEAD_TOLERANCE_SECONDS`)."""
        wm = self._schedule.watermark
        return _dt(wm) if wm is not None else None

    def observation(self, event: OutageEvent) -> Observation | None:
        """Resolve an AMI observation event; ``None`` for non-AMI events or unknown devices."""
        return self.registry.observation(event)

    def feed(self, events: Iterable[OutageEvent], now: datetime,
             received: Iterable[datetime] | None = None) -> ScreenResult:
        """Apply a batch of events (non-AMI ones are skipped), then release what is due at
        ``now``. Reports are applied in time order, whatever order they come in.
        ``received`` (one per event) is when each was first received: a replay after a
        restart passes it so a report's clock is judged as it was then, not by the stop's
        length (default: ``now``)."""
        result = ScreenResult()
        observations: list[Observation] = []
        events = list(events)
        times = list(received) if received is not None else [now] * len(events)
        for event, got in zip(events, times, strict=True):
            obs = self.observation(event)
            if obs is None:
                continue
            result.observed += 1
            self.clock.observe(event.source, obs.time, got)
            if not obs.transformer:
                result.unknown += 1
                result.unknown_devices.append((event.source, device_ref(obs.kind, obs.device)))
            elif obs.action == "off" and _ts(obs.time) < _ts(got) - IMPLAUSIBLE_AGE_SECONDS:
                result.set_aside.append(SetAside(event, implausible(obs, got)))
            else:
                observations.append(obs)
        observations.sort(key=lambda o: o.time)
        result.clock_offsets = self.clock.review(now)
        self._t_now = _ts(now)
        for obs in observations:
            self._apply(obs, result)
        result.extend(self.tick(now))
        return result

    def tick(self, now: datetime) -> ScreenResult:
        """Release area outages that have lasted the minimum duration and flag single meters
        that stayed off, as of ``now``; prune old state."""
        result = ScreenResult()
        t_now = _ts(now)
        wm = self._schedule.mark(t_now)
        for what, key in self._schedule.due(wm, t_now):
            if what == "area":
                self._release_area(key, wm, t_now, result)
            elif what == "settle":
                self._release_restoration(key, wm, t_now, result)
            else:
                self._flag_single(key, wm, t_now, result)
        if t_now - self._last_prune >= 60.0:
            self._prune(t_now)
            self._last_prune = t_now
        result.held = sum(1 for a in self._areas.values()
                          if a.episode is not None and not a.episode.released)
        return result

    def clock_offsets(self) -> dict[str, float]:
        """AMI sources whose reports sit steadily a whole (or half) number of hours from
        their arrival -> that offset in hours (report time minus arrival): probably read in
        the wrong zone (:mod:`outage_sentinel.clock_offset`). Their times are not shifted."""
        return self.clock.flags()

    def next_due(self) -> datetime | None:
        """When :meth:`tick` may next have something to release (``None``: nothing held)."""
        due = self._schedule.next_due()
        return _dt(due) if due is not None else None

    def outages(self) -> dict[str, datetime]:
        """Transformer areas currently out (released outages) -> outage start."""
        return {tx: _dt(a.episode.published) for tx, a in self._areas.items()
                if a.episode is not None and a.episode.released}

    def held_dark(self, areas: Iterable[str] | None = None) -> set[str]:
        """The areas (of ``areas``; ``None``: all) whose outage the screen holds unreleased
        (rule 2: the momentary rule, a backlog's hold) with no power-on since: dark all the
        same, so a record's end must not tell their village 恢复送电 (``held`` in
        :func:`outage_sentinel.incidents.apply_event`; released ones are ``dead`` output)."""
        wanted = self._areas if areas is None else areas
        return {tx for tx in wanted if (a := self._areas.get(tx)) is not None
                and a.episode is not None and not a.episode.released}

    # -- rules --------------------------------------------------------------------------------

    def _threshold(self, transformer: str) -> int:
        return self.policy.threshold(self.registry.meters_per_transformer.get(transformer, 0))

    def _apply(self, obs: Observation, result: ScreenResult) -> None:
        t = self._schedule.observe(_ts(obs.time), self._t_now)
        last = self._last.get(obs.device)
        if last is not None:
            last_t, last_action, _ = last
            if last_action == obs.action:
                self._repeated(obs, t, last_t, result)
                return
            if t < last_t:
                result.stale += 1
                return
        self._last[obs.device] = (t, obs.action, self._t_now)
        area = self._areas.get(obs.transformer)
        if area is None:
            area = self._areas[obs.transformer] = AreaState()
        self._dispatch(obs, area, t, result)
        if area.empty():
            del self._areas[obs.transformer]

    def _dispatch(self, obs: Observation, area: AreaState, t: float, result: ScreenResult) -> None:
        """Apply ``obs`` (report time ``t``, as believed) to its ``area``."""
        if obs.kind == "terminal":
            if obs.action == "off":
                self._terminal_off(obs.transformer, area, obs.device, t, result)
            else:
                self._terminal_on(obs.transformer, area, obs.device, t, result)
        elif obs.action == "off":
            self._meter_off(obs.transformer, area, obs.device, t, result)
        else:
            self._meter_on(obs.transformer, area, obs.device, t, result)

    def _repeated(self, obs: Observation, t: float, last_t: float,
                  result: ScreenResult) -> None:
        """The state ``obs``'s device last reported, reported again (duplicate, retry, or an
        older log of the same state): merged, keeping the latest time, so an "on" from before
        the current "off" (or an "off" from before the current "on") stays stale. The
        exceptions: a device off since before its area's last close (its on was lost — the
        meters restored the area) that reports "off" again, timed after that close, is off
        anew, from its new time: a re-trip, be it a meter's or the terminal's word. And a
        device whose last "on" is from before its area's open outage began that reports "on"
        again, timed after the start, is on anew (its "off" of this outage was lost)."""
        self._last[obs.device] = (max(t, last_t), obs.action, self._t_now)
        area = self._areas.get(obs.transformer)
        if area is not None and area.anew(obs.kind, obs.action, obs.device, last_t, t):
            self._dispatch(obs, area, t, result)
            return
        result.merged += 1

    def _terminal_off(self, tx: str, area: AreaState, terminal: str, t: float,
                      result: ScreenResult) -> None:
        area.terminals_off[terminal] = t
        ep = area.episode
        w = self.policy.window_seconds
        if ep is not None:
            # An off from well before the outage began (an old log) is not this outage's.
            ep.terminal_off = ep.terminal_off or t >= ep.start - w
            return
        if area.of_last_outage(t, w):
            return  # the area's last outage, reported again (a re-sent ERC14)
        fresh = area.fresh_offs()
        joined = {m for m, mt in fresh.items() if mt >= t - w}
        start = min([t] + [fresh[m] for m in joined])
        self._open(tx, area, Episode(start, "terminal", joined, terminal_off=True), result)

    def _terminal_on(self, tx: str, area: AreaState, terminal: str, t: float,
                     result: ScreenResult) -> None:
        area.terminals_off.pop(terminal, None)
        area.terminals_off.pop("", None)  # a saved state's word of "a terminal" of the area
        ep = area.episode
        if ep is None or t < ep.start:
            return  # an on from before the outage began closes nothing
        if area.terminal_says_off():
            return  # another concentrator of the area still says off
        if ep.holds(self._threshold(tx)):
            # Enough of the outage's meters still say off (whether or not the terminal said
            # off first): their restores close it, not the terminal's word alone.
            return
        self._close(tx, area, t, result)

    def _meter_off(self, tx: str, area: AreaState, meter: str, t: float,
                   result: ScreenResult) -> None:
        area.off[meter] = t
        ep = area.episode
        if ep is not None and area.joins(ep, t, self.policy.window_seconds):
            ep.meters.add(meter)
            ep.restored.discard(meter)
            ep.back.discard(meter)
            if t < ep.start and not ep.released:
                ep.start = t
                self._schedule.push_area(tx, ep)
            return
        if ep is None and self._meters_open(tx, area, result):
            return
        # Off on its own — or too far before the open outage to be part of it (a slow clock):
        # that meter's own off (rule 5), which changes nothing about the area. An off of the
        # area's last outage (its log, read late): its own only if still off since the close.
        if area.of_last_outage(t, self.policy.window_seconds):
            assert area.closed is not None
            single = SingleMeter(tx, area.closed, seen=self._t_now, after_area=True)
        else:
            single = SingleMeter(tx, t, seen=self._t_now)
        self._singles[meter] = single
        self._schedule.push_single(meter, single)

    def _meters_open(self, tx: str, area: AreaState, result: ScreenResult) -> bool:
        """Open an outage of ``tx`` when its threshold of meters went off within the window
        (from the earliest of them); whether one was opened."""
        start = area.meters_out_since(self._threshold(tx), self.policy.window_seconds)
        if start is None:
            return False
        members = {m for m, mt in area.fresh_offs().items() if mt >= start}
        for m in members:
            self._singles.pop(m, None)
        self._open(tx, area, Episode(start, "meters", members), result)
        return True

    def _meter_on(self, tx: str, area: AreaState, meter: str, t: float, result: ScreenResult) -> None:
        area.off.pop(meter, None)
        ep = area.episode
        if ep is not None and meter in ep.meters and t < ep.start:
            # Off and on again before the outage began: a blip of its own, no restoration.
            ep.meters.discard(meter)
            ep.restored.discard(meter)
            return
        if ep is not None and t >= ep.start:
            (ep.restored if meter in ep.meters else ep.back).add(meter)
            if area.restored_by_meters(ep, self._threshold(tx), self.policy.restore_share):
                self._close(tx, area, t, result)
            if meter in ep.meters:
                return
        self._single_on(tx, meter, t, result)

    def _single_on(self, tx: str, meter: str, t: float, result: ScreenResult) -> None:
        """``meter``'s "on" ends its own power-off (rule 5), if it was off on its own."""
        single = self._singles.pop(meter, None)
        if single is None:
            return
        if single.flagged:
            result.customer_faults.append(CustomerFault(meter, tx, _dt(single.start), _dt(t),
                                                        "restored"))
        elif t - single.start < self.policy.min_duration_seconds:
            result.momentary += 0 if single.after_area else 1
        else:
            # Lasted long enough but the flag was not due yet (both reports in one batch).
            result.customer_faults.append(CustomerFault(meter, tx, _dt(single.start), None,
                                                        "active"))
            result.customer_faults.append(CustomerFault(meter, tx, _dt(single.start), _dt(t),
                                                        "restored"))

    def _open(self, tx: str, area: AreaState, episode: Episode, result: ScreenResult) -> None:
        """Open ``episode``: the settling outage of the area carrying on (its restoration
        dropped), or a new one held by the momentary rule (any settling one restored first)."""
        episode.anchor = episode.start
        area.episode = episode
        carried, closing = self._settle.open(area, episode)
        if carried:
            assert closing is not None
            result.flapped.append((tx, _dt(closing.ended)))
            return
        if closing is not None:
            result.events.append(self._output(tx, closing.episode, closing.ended))
        self._schedule.open_area(tx, episode, self._t_now)

    def _close(self, tx: str, area: AreaState, t: float, result: ScreenResult) -> None:
        ep = area.episode
        assert ep is not None
        area.episode = None
        if area.closed is None or t >= area.closed:
            area.closed, area.opened = t, ep.published
        self._left_dark(tx, area, ep, t)
        if not ep.released:
            if t - ep.start < self.policy.min_duration_seconds:
                result.momentary += 1
                return
            # Over before it was released (both ends in one batch): nobody was told of it,
            # so its end is not held back — the outage notice is never sent.
            result.events.append(self._output(tx, ep, None))
        elif self._settle.hold(tx, area, ep, t, self._t_now):
            return
        result.events.append(self._output(tx, ep, t))

    def _release_restoration(self, tx: str, wm: float, t_now: float,
                             result: ScreenResult) -> None:
        """Release area ``tx``'s restoration once the area stayed on for the settle time."""
        area = self._areas.get(tx)
        closing = self._settle.due(area, wm, t_now) if area is not None else None
        if closing is not None:
            result.events.append(self._output(tx, closing.episode, closing.ended))

    def _left_dark(self, tx: str, area: AreaState, ep: Episode, t: float) -> None:
        """The meters of ``ep`` still off when it closed at ``t`` (fewer than the threshold):
        each is off on its own since ``t`` (rule 5), flagged if it stays off."""
        for meter in ep.meters - ep.restored:
            if meter in area.off:
                single = self._singles[meter] = SingleMeter(tx, t, seen=self._t_now, after_area=True)
                self._schedule.push_single(meter, single)

    def _release_area(self, tx: str, wm: float, t_now: float, result: ScreenResult) -> None:
        area = self._areas.get(tx)
        if area is None or area.episode is None or area.episode.released:
            return
        ep = area.episode
        if not self._schedule.area_due(ep, wm, t_now):
            return  # the start moved, or the watermark does not count; another entry covers it
        ep.released = True
        result.events.append(self._output(tx, ep, None))

    def _flag_single(self, meter: str, wm: float, t_now: float, result: ScreenResult) -> None:
        single = self._singles.get(meter)
        if single is None or single.flagged:
            return
        if not self._schedule.single_due(single, wm, t_now):
            return
        area = self._areas.get(single.transformer)
        if area is None or meter not in area.off:
            self._singles.pop(meter, None)
            return
        single.flagged = True
        result.customer_faults.append(CustomerFault(meter, single.transformer,
                                                    _dt(single.start), None, "active"))

    def _output(self, tx: str, ep: Episode, end: float | None) -> OutageEvent:
        return area_event(self.source, self.registry.feeder_of.get(tx), tx, ep, end)

    def on_history_seconds(self) -> float:
        """How long a device's last "on" is kept after it was seen (:meth:`ScreenPolicy.
        on_history_seconds`)."""
        return self.policy.on_history_seconds()

    def _prune(self, t_now: float) -> None:
        """Drop power-on history seen longer ago than the horizon and devices off too long."""
        p = self.policy
        horizon = t_now - self.on_history_seconds()
        forget = t_now - p.forget_after_hours * 3600.0
        stale = [d for d, (t, a, seen) in self._last.items()
                 if (a == "on" and seen < horizon) or (a == "off" and t < forget)]
        for d in stale:
            del self._last[d]
        for tx in list(self._areas):
            area = self._areas[tx]
            for m in area.forget(forget):
                self._singles.pop(m, None)
            if area.empty():
                del self._areas[tx]
        self._schedule.compact(self._singles, self._areas)

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the screening state."""
        return {
            "version": _STATE_VERSION,
            "areas": {tx: a.to_state() for tx, a in self._areas.items()},
            "last": {d: [t, a, seen] for d, (t, a, seen) in self._last.items()},
            "singles": {m: s.to_state() for m, s in self._singles.items()},
            "watermark": self._schedule.watermark,
            "clock": self.clock.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], registry: AmiRegistry,
                   policy: ScreenPolicy | None = None, source: str = "ami") -> AmiScreen:
        """Rebuild a screen from :meth:`to_state` output (due times are recomputed)."""
        if state.get("version") not in _STATE_VERSIONS:
            raise ValueError(f"AMI screen state: unsupported version {state.get('version')!r}")
        screen = cls(registry, policy, source)
        for tx, a in state.get("areas", {}).items():
            area = screen._areas[tx] = AreaState.from_state(a)
            ep = area.episode
            if ep is not None and not ep.released:
                screen._schedule.push_area(tx, ep)
            if area.closing is not None:
                screen._schedule.push_settle(tx, area.closing)
        screen._last = last_from_state(state.get("last", {}))
        for m, raw in state.get("singles", {}).items():
            single = screen._singles[m] = SingleMeter.from_state(raw)
            if not single.flagged:
                screen._schedule.push_single(m, single)
        wm = state.get("watermark")
        screen._schedule.watermark = float(wm) if wm is not None else None
        screen.clock = ClockOffsets.from_state(state.get("clock"))
        return screen


def last_from_state(raw: Mapping[str, Sequence[Any]]) -> dict[str, tuple[float, Action, float]]:
    """Each device's last report as :meth:`AmiScreen.to_state` saved it: (time, "off" or "on",
    seen). Version 1 kept no seen time: the report time stands in (the old horizon's basis)."""
    return {d: (float(t), "off" if act == "off" else "on", float(seen[0]) if seen else float(t))
            for d, (t, act, *seen) in raw.items()}
