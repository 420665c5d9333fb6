"""Incident lifecycle: the steps people take and the clock-driven checks.

detected → confirmed → dispatched → on site → (partially) restored → closed, each step logged
in ``incident_log`` with its time and actor. Steps come from three places:

* the core, while folding events (:mod:`outage_sentinel.incidents`): confirmation by the outage
  system's notice, restoration steps, restoration;
* operators (``outage-sentinel incidents ack|dispatch|arrive|restore|close``), against the same
  database as the running daemon;
* the clock (:meth:`Lifecycle.check`, a scheduler job; the checks are
  :class:`outage_sentinel.clock_checks.ClockChecks`'): planned-outage reminders, crew arrival
  deadlines at risk escalated to the command centre.

Sending crews — the choice, the orders, new orders, the care lists — is
:class:`outage_sentinel.crew_dispatch.CrewDispatch`, which every step that sends one goes through.

Every step that tells someone something writes its outbox rows in the same transaction as the
incident change, with keys that make repeating the step harmless.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from outage_sentinel import crew as crews
from outage_sentinel import priority as prio
from outage_sentinel.clock_checks import ClockChecks
from outage_sentinel.config import Config
from outage_sentinel.crew import area_names
from outage_sentinel.crew_dispatch import CrewDispatch
from outage_sentinel.crew_notices import CrewNotices
from outage_sentinel.incidents import ACTIVE_STAGES, Incident, Notice
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.localise import named_nodes, narrowed, shared_message
from outage_sentinel.logs import get_logger, mask_phones
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.sms_params import command_params
from outage_sentinel.store import Store
from outage_sentinel.summaries import Summaries
from outage_sentinel.summaries import unasked_areas as unasked_areas  # where it lived
from outage_sentinel.topology import DEVICE_KINDS, Topology

#: What a cancelled incident's unsent messages may say that is no longer true.
TAKEN_BACK = ("outage", "update", "dispatch", "care")
#: Stages in which a fault without a crew waits for one (a part may be back already).
WAITING_STAGES = ("confirmed", "partially_restored")
#: Nodes a close-out may name besides protective devices and switches: the source (the
#: substation bus) and a transformer (the area's own fault).
OWN_FAULT_KINDS = frozenset({"source", "transformer"})
#: Steps only the crew reports (logged with the crew as actor; the stage does not change).
CREW_NOTES = ("accepted", "on_the_way", "fault_found", "photo")
CREW_NOTE_WORDS = {"zh": {"accepted": "已接单", "on_the_way": "正在赶往现场",
                          "fault_found": "找到故障", "photo": "上传现场照片"}}


def step_outcome(inc: Incident) -> str:
    """What a step left the incident as, in one line (the CLI's output, the board's answer,
    the audit's outcome): its stage and status (once when they are one word), and the areas
    off while it is active — a false alarm called off has none ("cancelled, cancelled, 9
    area(s) off" read as nine areas still dark)."""
    state = inc.status if inc.stage == inc.status else f"stage {inc.stage}, status {inc.status}"
    off = f", {len(inc.off)} area(s) off" if inc.status == "active" else ""
    return f"{inc.id}: {state}{off}"


def held_to_deadline(kind: str, stage: str) -> bool:
    """Whether an incident's crew is held to an arrival deadline: a fault in an active stage
    (:data:`~outage_sentinel.incidents.ACTIVE_STAGES`). Planned or temporary work, a false
    alarm cancelled, an outage over: none. A crew on site (``on_site``, or a partly restored
    fault whose crew reported it there) was held to one and has met it: the board shows it
    met, and :meth:`Lifecycle.check` no longer escalates it. The one rule of the daemon's
    checks and the board's countdowns."""
    return kind == "fault" and stage in ACTIVE_STAGES


def crew_may_report(inc: Incident) -> bool:
    """Whether a crew's step (arrived, fault found, a note) is taken for ``inc``: while the
    outage is on, and once power came back by other hands until the close-out — the crew
    still holds its orders (crew_power_back: 请按原任务查明故障原因并在现场进度中报告), and
    the device it finds is what the close-out and the localiser learn from."""
    return inc.status == "active" or (inc.status == "restored" and inc.stage == "restored")


class LifecycleError(Exception):
    """An operator step that cannot be taken (unknown incident, wrong stage); says why."""


class UnknownIncident(LifecycleError):
    """The step names an incident there is none of."""


class StepInputError(LifecycleError):
    """A value the step was given that it cannot use whatever the incident's state (no such
    crew, device, area or feeder; a required field missing): the asker's to fix."""


def incident_columns(inc: Incident, now: datetime, **extra: Any) -> dict[str, Any]:
    """The ``incidents`` row for an incident state (lifecycle columns in ``extra``)."""
    row = {
        "id": inc.id, "feeder": inc.feeder, "kind": inc.kind, "status": inc.status,
        "revision": inc.revision, "start": inc.start, "etr": inc.etr, "end_time": inc.end,
        "fault_device": inc.fault_device, "fault_devices": len(inc.estimate.devices),
        "customers": inc.estimate.customers,
        "state": inc.to_json(), "created_at": inc.created_at or now, "updated_at": now,
        "stage": inc.stage, "parent_id": inc.parent_id,
    }
    row.update(extra)
    return row


def close_refused(inc: Incident, topology: Topology, unconfirmed_ok: bool, amend: bool
                  ) -> str | None:
    """Why ``inc`` may not be closed out (None: it may): closed already (unless ``amend``, a
    correction of the close-out), still on, or with areas counted back that nothing
    confirmed (unless ``unconfirmed_ok``; a correction does not ask again)."""
    if inc.stage == "closed":
        return None if amend else (
            f"{inc.id} is already closed; to correct its cause or devices close it again "
            "with --amend (the board: 更正销号)")
    if inc.status == "active":
        return (f"{inc.id} is still active ({len(inc.off)} transformer area(s) off); "
                "restore it first")
    if inc.unconfirmed and not unconfirmed_ok:
        return (f"{inc.id}: nothing confirmed that {len(inc.unconfirmed)} area(s) counted back "
                f"when its records ended are back "
                f"({'、'.join(area_names(topology, inc.unconfirmed[:6]))}); confirm them "
                f"(incidents restore {inc.id}) or close anyway with --unconfirmed-ok "
                "(the board: 恢复未经确认也销号)")
    return None


def close_details(cause_category: str, found: Sequence[str], inc: Incident,
                  before: Mapping[str, Any] | None, not_fed: Sequence[str] = ()
                  ) -> dict[str, Any]:
    """The close-out step's details: the cause, the devices ``found`` and the areas confirmed
    off they do not feed (``not_fed``, kept on the operator's word: :func:`unfed_areas`; a
    correction of the close-out ``before`` keeps both when no device is given again), the
    areas still unconfirmed."""
    details: dict[str, Any] = {"cause_category": cause_category}
    if found:
        details["device"], details["devices"] = found[0], list(found)
        if not_fed:
            details["not_fed"] = list(not_fed)
    elif before:
        details.update({k: before[k] for k in ("device", "devices", "not_fed")
                        if k in before})
    if before is not None:
        details["amended"] = True
    if inc.unconfirmed:
        details["unconfirmed"] = list(inc.unconfirmed)
    return details


def confirmed_devices(topology: Topology, text: str, inc: Incident | None = None) -> list[str]:
    """The device ids of a close-out's ``device`` field (ids or names, separated by commas,
    、 or spaces; each once, in order); :class:`StepInputError` naming one that is not a
    device of the topology. A transformer counts: the area's own fault (its drop-out fuse,
    the transformer itself), which the localiser also considers. A name several devices
    share ("1号开关") means the one ``inc`` points at (:func:`incident_device_tests`); still
    several, it is refused naming them: the localiser would learn from the wrong device."""
    tests = incident_device_tests(topology, inc) if inc is not None else ()
    out: list[str] = []
    for ref in re.split(r"[\s,，、;；]+", text.strip()):
        if not ref:
            continue
        nodes = narrowed(named_nodes(topology, ref, DEVICE_KINDS | OWN_FAULT_KINDS), *tests)
        if not nodes:
            raise StepInputError(f"{ref!r} is not a device or transformer of the topology")
        if len(nodes) > 1:
            raise StepInputError(shared_message(topology, ref, nodes))
        if nodes[0] not in out:
            out.append(nodes[0])
    return out


def unfed_areas(topology: Topology, inc: Incident, devices: Sequence[str]) -> list[str]:
    """The areas ``inc`` confirmed off (:attr:`Incident.confirmed`: a source reported them
    off, not inferred, not taken out) that none of ``devices`` feeds: a close-out naming only
    those would teach the localiser's history a case that never happened (several devices,
    a double fault, feed them together). Areas the topology no longer places (renamed,
    unenergised) are not held against them. None when no device is given."""
    if not devices:
        return []
    placed = [t for t in inc.confirmed if t in topology.pos
              and topology.tin[topology.pos[t]] >= 0]
    return [t for t in placed if not any(topology.is_downstream(t, d) for d in devices)]


def close_unfed(topology: Topology, inc: Incident, found: Sequence[str],
                before: Mapping[str, Any] | None, anyway: bool, log: Any) -> list[str]:
    """The areas confirmed off a close-out's devices ``found`` do not feed
    (:func:`unfed_areas`), taken on the operator's word (``anyway``: logged
    ``close_device_not_feeding``), else a :class:`LifecycleError` naming them. A correction
    of the close-out ``before`` naming its devices again keeps its word on them (a cause
    corrected alone is not refused again)."""
    if before and found and list(found) == list(before.get("devices") or ()):
        return list(before.get("not_fed") or ())
    not_fed = unfed_areas(topology, inc, found)
    if not_fed and not anyway:
        raise LifecycleError(unfed_message(topology, inc, found, not_fed))
    if not_fed:
        log.warning("close_device_not_feeding", incident_id=inc.id, devices=list(found),
                    areas=not_fed)
    return not_fed


def unfed_message(topology: Topology, inc: Incident, devices: Sequence[str],
                  not_fed: Sequence[str]) -> str:
    """Why a close-out naming ``devices`` is refused: the areas confirmed off they do not
    feed, named (:func:`unfed_areas`), and how to close anyway."""
    shown = "、".join(f"{d}（{topology.nodes[d].name}）" if topology.nodes[d].name else d
                     for d in devices)
    areas = "、".join(area_names(topology, not_fed[:10])) + (" …" if len(not_fed) > 10 else "")
    return (f"{inc.id}: 设备{shown}不在台区{areas}的上游 / {', '.join(devices)} does not feed "
            f"{len(not_fed)} area(s) {inc.id} confirmed off ({areas}); name the device(s) "
            "above them too (a double fault: each one), or, if the crew found it so, close "
            "with --device-anyway (the board: 设备不符也销号)")


def incident_device_tests(topology: Topology, inc: Incident) -> tuple[Callable[[str], bool], ...]:
    """What ``inc`` knows of where its fault is, widest first (for :func:`narrowed`): on its
    feeder or its affected areas' feeders; above (or being) one of its affected areas; in its
    estimate's suspected section or devices, or those the command centre set."""
    areas = [topology.pos[t] for t in inc.estimate.transformers if t in topology.pos]
    feeders = {inc.feeder, *(topology.feeder_of(topology.ids[i]) for i in areas)}
    tin, tout = topology.tin, topology.tout
    spans = [tin[i] for i in areas if tin[i] >= 0]
    suspected = {*inc.estimate.section, *inc.estimate.devices, *inc.device_set}

    def above_affected(n: str) -> bool:
        i = topology.pos[n]
        return tin[i] >= 0 and any(tin[i] <= s <= tout[i] for s in spans)

    return (lambda n: topology.feeder_of(n) in feeders, above_affected,
            lambda n: n in suspected)


class Lifecycle:
    """Owns the incident's lifecycle steps over the store: operator steps (ack, dispatch,
    arrive, crew notes, close), an incident revived or cancelled, the command centre's
    rows, and the clock checks (reminders, arrival deadlines). Crews are sent by its
    :attr:`dispatcher`, summaries rendered (guarded) by its :attr:`summaries`. One per
    process."""

    def __init__(self, store: Store, topology: Topology, planner: LiaisonPlanner, config: Config,
                 clock: Callable[[], datetime], metrics: Metrics | None = None) -> None:
        self.store = store
        self.topology = topology
        self.planner = planner
        self.config = config
        self.clock = clock
        self.weights = config.priority.to_weights()
        self.params = config.dispatch.to_params()
        self.log = get_logger(component="lifecycle")
        #: The command centre's summaries (guarded; ``metrics`` counts their fallbacks).
        self.summaries = Summaries(self, metrics)
        self.crew_notices = CrewNotices(self)
        self.dispatcher = CrewDispatch(self)
        #: The clock checks: reminders, faults waiting for a crew, arrival deadlines.
        self.checks = ClockChecks(self)

    # -- helpers ------------------------------------------------------------------------------

    def load_in(self, conn: Connection, incident_id: str) -> tuple[Incident, dict[str, Any]]:
        m = self.store.lock_incident_in(conn, incident_id)
        if m is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        return Incident.from_json(m["state"]), m

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[OutboxMessage]:
        """Outbox rows for the command centre (none when no command-centre channel is set);
        their params are what a digest reads of ``inc`` and ``extra`` (an escalation's
        deadline, for its minutes to be counted again when it goes:
        :func:`outage_sentinel.crew.deadline_params`)."""
        return self.command_rows_for(inc.id, inc.revision if revision is None else revision,
                                  purpose, body, {**self.digest_facts(inc), **(extra or {})})

    def digest_facts(self, inc: Incident) -> dict[str, Any]:
        """What a digest says of ``inc`` (:mod:`outage_sentinel.digest`): feeder, kind,
        status, the villages with their households off and how many of those are confirmed,
        the expected restoration and the id; a cancellation, whether the work had begun by
        the time it was called off (its end): only work called off ahead reads 届时正常供电."""
        topo = self.topology
        areas = inc.off if inc.status == "active" else inc.estimate.transformers
        by_village: dict[str, list[str]] = {}
        for t in areas:
            village = topo.villages.get(topo.nodes[t].village) if t in topo.nodes else None
            if village is not None:
                by_village.setdefault(village.name, []).append(t)
        return {"feeder": self.planner.feeder_names.get(inc.feeder, inc.feeder),
                "kind": inc.kind, "status": inc.status, "incident": inc.id,
                "etr": self.summaries.etr(inc)["etr_local"] or "",
                "villages": {v: topo.customers_of(ts) for v, ts in by_village.items()},
                "villages_confirmed": {v: topo.customers_of(t for t in ts
                                                            if inc.mark(t) == "reported")
                                       for v, ts in by_village.items()},
                "households": topo.customers_of(areas),
                **({"begun": inc.end is None or inc.start <= inc.end}
                   if inc.status == "cancelled" else {})}

    def command_rows_for(self, incident_id: str, revision: int, purpose: str, body: str,
                         facts: Mapping[str, Any] | None = None) -> list[OutboxMessage]:
        """Outbox rows for the command centre about ``incident_id`` (or a report's id)."""
        cc = self.config.command_centre
        if cc.channel is None:
            return []
        return [OutboxMessage(
            incident_id=incident_id, revision=revision,
            recipient=f"command:{cc.target}", purpose=purpose, channel=cc.channel,
            target=cc.target, audience="command", subject=body.splitlines()[0],
            body=body, payload={"markdown": body, "params": {
                **(facts or {}), "sms_template": "command",
                "sms": command_params(summary=body.splitlines()[0], incident=incident_id)}},
        )]

    def render_summary(self, inc: Incident, headline: str | None = None,
                       crew: str | None = None) -> str:
        """The command centre's summary of ``inc``, unguarded (:meth:`Summaries.render`: what
        ``check`` renders); a step queues it through :meth:`Summaries.rows`, guarded."""
        return self.summaries.render(inc, headline, crew)

    def crew_label(self, crew_id: str | None) -> str:
        """``抢修一班`` for a crew of the bundle, its id otherwise ('' for none)."""
        crew = next((c for c in self.topology.crews if c.id == crew_id), None)
        return (crew.name or crew.id) if crew is not None else (crew_id or "")

    def save_in(self, conn: Connection, inc: Incident, now: datetime, **extra: Any) -> None:
        self.store.save_incident_in(conn, incident_columns(inc, now, **extra))

    # -- operator steps -----------------------------------------------------------------------

    def ack(self, incident_id: str, actor: str, note: str = "") -> Incident:
        """Confirm an incident (an operator has seen it and it is real)."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, _ = self.load_in(conn, incident_id)
            if inc.stage not in ACTIVE_STAGES:
                raise LifecycleError(f"{incident_id} is {inc.stage}; only open incidents can be "
                                     "acknowledged")
            if inc.stage == "detected":
                inc = replace(inc, stage="confirmed")
            self.save_in(conn, inc, now)
            self.store.log_in(conn, inc.id, now, "confirmed", actor, note)
        return inc

    def arrive(self, incident_id: str, actor: str, note: str = "",
               where: tuple[float, float] | None = None) -> Incident:
        """The crew reports it is on site (``where``: its position, lat/lon, if it sent it)."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, row = self.load_in(conn, incident_id)
            if not crew_may_report(inc):
                raise LifecycleError(f"{incident_id} is {inc.stage}; the crew cannot arrive")
            if inc.stage in ("detected", "confirmed", "dispatched"):
                inc = replace(inc, stage="on_site")
            inc = replace(inc, crew_progress="on_site")  # partly restored: the stage stays
            self.save_in(conn, inc, now)
            self.store.log_in(conn, inc.id, now, "on_site", actor, note,
                              {"crew": row.get("crew_id"),
                               **({"lat": where[0], "lon": where[1]} if where else {})})
            if inc.status == "active":  # power back: the villages need no word of the crew
                self.store.enqueue_in(conn, self.planner.progress_rows(inc, "on_site", ""),
                                      now)
        return inc

    def crew_note(self, incident_id: str, actor: str, step: str, note: str = "",
                  details: dict[str, Any] | None = None) -> Incident:
        """A step of :data:`CREW_NOTES` from the crew's page: logged, the command centre told."""
        if step not in CREW_NOTES:
            raise StepInputError(f"unknown crew step {step!r} ({', '.join(CREW_NOTES)})")
        now = self.clock()
        with self.store.transaction() as conn:
            inc, row = self.load_in(conn, incident_id)
            if not crew_may_report(inc):
                raise LifecycleError(f"{incident_id} is {inc.stage}")
            self.store.log_in(conn, inc.id, now, step, actor, note,
                              {"crew": row.get("crew_id"), **(details or {})})
            words = CREW_NOTE_WORDS.get(self.planner.renderer.language, {})
            body = f"【{inc.id}】{actor}：{words.get(step, step)}" + (f"（{note}）" if note
                                                                      else "")
            rows = self.command_rows(inc, f"crew_{step}", body, revision=0)
            if step == "fault_found" and inc.status == "active":
                rows += self.planner.progress_rows(inc, step, str((details or {}).get("cause") or ""))
            self.store.enqueue_in(conn, rows, now)
        return inc

    def field_photo(self, incident_id: str, actor: str, details: dict[str, Any]) -> None:
        """A photo from a liaison's page (whatever the incident's status: the page answers
        until its link expires): logged, the command centre told."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, _row = self.load_in(conn, incident_id)
            self.store.log_in(conn, inc.id, now, "photo", actor, "", details)
            words = CREW_NOTE_WORDS.get(self.planner.renderer.language, {})
            body = f"【{inc.id}】{actor}：{words.get('photo', 'photo')}"
            self.store.enqueue_in(conn, self.command_rows(inc, "field_photo", body,
                                                          revision=0), now)

    def close(self, incident_id: str, actor: str, cause_category: str, note: str = "",
              device: str | None = None, unconfirmed_ok: bool = False,
              amend: bool = False, device_anyway: bool = False) -> Incident:
        """Close out (销号) a restored or cancelled incident with its cause category and the
        devices the crews confirmed operated (``device``: ids separated by commas or spaces;
        the localiser learns from these), which must feed every area it confirmed off unless
        ``device_anyway`` (:func:`close_unfed`). One with areas back unconfirmed is closed only
        on ``unconfirmed_ok``. A close-out is corrected by closing again with ``amend``
        (:func:`close_refused`): the latest word counts; devices not given again stay."""
        now = self.clock()
        if not cause_category:
            raise StepInputError("closing needs a cause category (--cause)")
        with self.store.transaction() as conn:
            inc, row = self.load_in(conn, incident_id)
            found = confirmed_devices(self.topology, device or "", inc)
            if why := close_refused(inc, self.topology, unconfirmed_ok, amend):
                raise LifecycleError(why)
            amended = inc.stage == "closed"
            before = (self.store.last_log_details_in(conn, inc.id, "closed") or {}) if amended \
                else None
            not_fed = close_unfed(self.topology, inc, found, before, device_anyway, self.log)
            details = close_details(cause_category, found, inc, before, not_fed)
            inc = replace(inc, stage="closed")
            self.save_in(conn, inc, now, cause_category=cause_category,
                         **({} if amended else {"closed_at": now}))
            self.store.log_in(conn, inc.id, now, "closed", actor, note, details)
            headline = "close_amended" if amended else "closed"
            self.store.enqueue_in(conn, self.summaries.rows(
                inc, headline, headline=headline, crew=row.get("crew_id")), now)
        return inc

    # -- priority and dispatch ----------------------------------------------------------------

    def priority(self, inc: Incident, now: datetime) -> prio.Priority:
        """The incident's priority as its crew's orders state it (an outage nobody could
        place scored as its line's customers: :func:`crews.incident_priority`)."""
        return crews.incident_priority(self.topology, inc, now, self.weights,
                                       self.planner.renderer.language)

    def revived_in(self, conn: Connection, inc: Incident, now: datetime, actor: str) -> None:
        """``inc`` is off again after it was over: the crew it held had finished, so it waits
        for a new dispatch (auto-dispatch sends one), its arrival deadline counted from now."""
        crew = self.store.crew_of_in(conn, inc.id)
        self.save_in(conn, inc, now, crew_id=None)
        self.store.log_in(conn, inc.id, now, "off_again", actor, "", {"crew": crew})

    def dispatch(self, incident_id: str, actor: str, crew_id: str | None = None,
                 note: str = "") -> Incident:
        """Send a crew: the given one, or the best by service area, distance and priority."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, row = self.load_in(conn, incident_id)
            if inc.status != "active":
                raise LifecycleError(f"{incident_id} is {inc.status}; no crew needed")
            if crew_id is not None and not any(c.id == crew_id for c in self.topology.crews):
                known = ", ".join(c.id for c in self.topology.crews)
                raise StepInputError(f"unknown crew {crew_id!r} (crews: {known})")
            inc = self.dispatch_in(conn, inc, row, now, actor, crew_id=crew_id, note=note)
        return inc

    # The crew steps other modules take inside their transactions (:class:`CrewDispatch`).

    def dispatch_in(self, conn: Connection, inc: Incident, row: dict[str, Any], now: datetime,
                    actor: str, crew_id: str | None = None, note: str = "") -> Incident:
        """Choose and send a crew inside the caller's transaction (also used by the daemon)."""
        return self.dispatcher.dispatch_in(conn, inc, row, now, actor, crew_id=crew_id,
                                           note=note)

    def dispatch_update_in(self, conn: Connection, inc: Incident, crew_id: str | None,
                           now: datetime, why: str = "device") -> list[OutboxMessage]:
        """New orders for the crew ``inc`` holds (:meth:`CrewDispatch.dispatch_update_in`)."""
        return self.dispatcher.dispatch_update_in(conn, inc, crew_id, now, why)

    def care_for_new_villages_in(self, conn: Connection, inc: Incident, now: datetime,
                                 tell_crew: bool = True) -> int:
        """Care lists (and the crew's new orders) for the villages the outage reached after
        the dispatch (:meth:`CrewDispatch.care_for_new_villages_in`)."""
        return self.dispatcher.care_for_new_villages_in(conn, inc, now, tell_crew)

    def redirect_in(self, conn: Connection, before: Incident, inc: Incident,
                    now: datetime) -> int:
        """New orders for the crew on its way when the fault point moved
        (:meth:`CrewDispatch.redirect_in`)."""
        return self.dispatcher.redirect_in(conn, before, inc, now)

    # -- cancellation -------------------------------------------------------------------------

    def take_back_in(self, conn: Connection, inc: Incident, notices: Sequence[Notice],
                     now: datetime, actor: str, note: str = "", source: str | None = None
                     ) -> list[Notice]:
        """A cancelled incident's messages not sent yet are taken back (the outage notice,
        the crew's dispatch, the care list, planned work's reminders), its crew stands down
        (told who called it off: the feed ``source``, or the command centre when ``None``),
        and a village none of whose recipients was told of the outage hears no "cancelled"
        either: ``notices`` without those villages."""
        told = {r.split(":")[1] for r in self.store.told_in(conn, inc.id, ("outage", "update"))
                if r.startswith("village:")}
        crew = self.store.crew_of_in(conn, inc.id)
        if crew is not None:
            by = crews.restored_by(source or "operator", self.planner.renderer.language)
            self.crew_notices.stand_down_in(conn, inc, crew, now, actor, "cancelled", note=note,
                                            by=by)
        # Named: a message the command centre held keeps who held it and why, and who called
        # the incident off and why (store.outbox.taken_back_note; numbers masked, as an
        # explicit withdrawal's reason is: the board shows the record).
        self.store.withdraw_pending_in(conn, inc.id, TAKEN_BACK + self.reminder_purposes(), now,
                                       f"incident cancelled: {mask_phones(note)}" if note
                                       else "incident cancelled", actor=actor)
        kept = [replace(n, villages=tuple(v for v in n.villages if v in told))
                if n.purpose == "cancelled" else n for n in notices]
        return [n for n in kept if n.villages]

    # -- planned work's reminders -------------------------------------------------------------

    def reminder_purposes(self) -> tuple[str, ...]:
        """The outbox purposes of the configured reminders (``reminder_24h``, ``reminder_1h``)."""
        return tuple(f"reminder_{h:g}h" for h in self.config.planned.reminder_hours)

    def start_moved_in(self, conn: Connection, before: Incident | None, after: Incident,
                       now: datetime) -> int:
        """Planned work moved to another start (postponed, brought forward, re-issued with a
        new window): its reminders not sent yet announce a time that is no longer true, and
        would reach the village beside the update giving the new one — they are taken back.
        The new start's reminders are queued by :meth:`check` when due (keyed by that start,
        :func:`~outage_sentinel.clock_checks.reminder_revision`). Returns how many were taken
        back."""
        if before is None or before.start == after.start or after.kind == "fault":
            return 0
        taken = self.store.withdraw_pending_in(
            conn, after.id, self.reminder_purposes(), now,
            f"the work moved from {before.start.isoformat()} to {after.start.isoformat()} "
            f"(revision {after.revision})")
        if taken:
            self.log.info("reminders_taken_back", incident_id=after.id, messages=taken,
                          start=after.start.isoformat())
        return taken

    # -- clock checks -------------------------------------------------------------------------

    def check(self, now: datetime) -> int:
        """Planned-outage reminders, crew deadlines (:meth:`ClockChecks.check`); returns how
        many rows were queued."""
        return self.checks.check(now)

    @property
    def at_risk(self) -> int:
        """Fault incidents whose arrival deadline was at risk or missed at the last check."""
        return self.checks.at_risk


def parse_actor(actor: str | None) -> str:
    import getpass

    return f"operator:{actor or getpass.getuser()}"


def stage_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.get("stage") or "detected"] = out.get(r.get("stage") or "detected", 0) + 1
    return out
