"""Crew dispatch: which crew goes to a fault, and what it and the village liaisons are told.

The crew half of :class:`outage_sentinel.lifecycle.Lifecycle`: choosing a crew (the operator's,
or the best by service area, distance and priority, taking one off lower-priority work when
it must), its dispatch message with the link to its page, new orders when the fault point or
the outage's villages change, and (through :mod:`care_lists`) the special-care lists the
village liaisons check. Each step writes inside the caller's transaction; the lifecycle's
operator steps, its clock checks, the processor and the command steps all send crews through
here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel import crew as crews
from outage_sentinel import priority as prio
from outage_sentinel.care_lists import CareLists
from outage_sentinel.config import Config
from outage_sentinel.crew_notices import CrewNotices
from outage_sentinel.events import parse_time
from outage_sentinel.incidents import Incident, villages_off
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.logs import get_logger
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.sms_params import with_link as sms_with_link
from outage_sentinel.store import Store
from outage_sentinel.summaries import Summaries
from outage_sentinel.topology import Crew, Topology

#: Stages in which an incident holds its crew.
CREW_STAGES = ("dispatched", "on_site", "partially_restored")
#: The dispatch message's link to the crew's page (``field.base_url``).
CREW_LINK_LINE = {"zh": "现场进度（接单 / 到场 / 找到故障 / 恢复送电）：{url}",
                  "en": "Report progress (accept / on site / fault found / restored): {url}"}
#: What the store reads of a crew held anywhere: (incident, crew, priority, on site, region).
Held = tuple[str, str, int, bool, str]


def escalation_key(deadline: datetime) -> int:
    """The outbox revision keying a fault's warnings to the command centre (waiting for a crew,
    deadline at risk, overdue): its arrival deadline, in minutes since the epoch. Each warning
    goes once per deadline however many revisions the incident goes through, and again for a
    new one: an outage off again after it was over (counted from then), or grown into a
    stricter area type, is a new promise the command centre must hear is at risk."""
    return int(deadline.timestamp() // 60)


class DispatchOwner(Protocol):
    """What crew dispatch reads of the lifecycle: the store, the topology and the planner (a
    topology reload replaces these two), the config, dispatch parameters and priority weights,
    the crew notices, the command centre's summaries (guarded), and the incident row and
    command-centre helpers every step shares."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner
    config: Config
    params: crews.DispatchParams
    weights: prio.PriorityWeights
    crew_notices: CrewNotices
    summaries: Summaries

    def load_in(self, conn: Connection, incident_id: str) -> tuple[Incident, dict[str, Any]]: ...

    def save_in(self, conn: Connection, inc: Incident, now: datetime, **extra: Any) -> None: ...

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[OutboxMessage]: ...

    def crew_label(self, crew_id: str | None) -> str: ...


class CrewDispatch:
    """Owns sending crews: the choice of crew (named, or chosen; preempting lower-priority
    work), the dispatch and its link, new orders (fault point corrected or moved, outage
    grown), a crew reassigned or released, the busy crews, the arrival deadline a fault is
    held to; the special-care lists sent with a dispatch are :class:`CareLists`'.
    One per lifecycle."""

    def __init__(self, owner: DispatchOwner) -> None:
        self.owner = owner
        self.care = CareLists(owner)
        # The lifecycle's steps log under its name, wherever their code lives.
        self.log = get_logger(component="lifecycle")

    @property
    def store(self) -> Store:
        return self.owner.store

    @property
    def topology(self) -> Topology:
        return self.owner.topology

    @property
    def planner(self) -> LiaisonPlanner:
        return self.owner.planner

    @property
    def params(self) -> crews.DispatchParams:
        return self.owner.params

    def priority(self, inc: Incident, now: datetime) -> prio.Priority:
        """``inc``'s priority as its crew is chosen and told it (:func:`crew.incident_priority`:
        an outage nobody could place is scored as its line's customers, not as nobody off)."""
        return crews.incident_priority(self.topology, inc, now, self.owner.weights,
                                       self.planner.renderer.language)

    # -- what the choice reads ------------------------------------------------------------------

    def held_in(self, conn: Connection, exclude: str) -> list[Held]:
        """The open incidents other than ``exclude`` holding a crew, in every region sharing
        the database: a crew sent by another region's daemon is busy for this one too."""
        return self.store.crews_held_in(conn, CREW_STAGES, exclude)

    def busy(self, conn: Connection, exclude: str,
             held: Sequence[Held] | None = None) -> dict[str, crews.Busy]:
        """The crews held by open incidents other than ``exclude`` (``held``, else read): each
        with its highest-priority incident, whether it is on site at any, and whether it is
        kept there (:attr:`crew.Busy.kept`)."""
        busy: dict[str, crews.Busy] = {}
        for iid, cid, score, on_site, region in (held if held is not None
                                                 else self.held_in(conn, exclude)):
            b = crews.Busy(int(score or 0), iid, on_site, self._kept_in(conn, iid, region))
            prev = busy.get(cid)
            if prev is not None:
                top = b if b.priority > prev.priority else prev
                b = replace(top, on_site=prev.on_site or b.on_site, kept=prev.kept or b.kept)
            busy[cid] = b
        return busy

    def _kept_in(self, conn: Connection, incident_id: str, region: str) -> bool:
        """Whether the crew ``incident_id`` holds stays there whatever comes up: another
        region's daemon sent it (its incident is not ours to write), or the command centre
        named it (the daemon pulling it back would undo a person's decision)."""
        if region != self.store.region:
            return True
        sent = self.store.last_log_details_in(conn, incident_id, "dispatched") or {}
        return bool(sent.get("named"))

    def detected_at(self, conn: Connection, inc: Incident, row: dict[str, Any]) -> datetime:
        """When the outage the crew goes to was first known: its detection step (else the
        log's first step), or when it went off again after it was over."""
        again = self.store.last_log_at_in(conn, inc.id, "off_again")
        # The detection step, logged when it was made: the log's earliest step may be a
        # restoration logged at the time power came back, before anyone knew of the outage.
        found = self.store.last_log_at_in(conn, inc.id, "detected")
        first = self.store.first_log_at_in(conn, inc.id)
        return again or found or first or row.get("created_at") or inc.start

    def deadline_in(self, conn: Connection, inc: Incident, row: dict[str, Any],
                    now: datetime) -> tuple[datetime, str, float | None]:
        """The arrival deadline a fault is held to and its area type (:meth:`held_deadline_in`),
        and the crew's travel minutes left (``None``: no ETA, or no crew holds it)."""
        deadline, area = self.held_deadline_in(conn, inc, row)
        dispatched = self.store.last_log_details_in(conn, inc.id, "dispatched")
        eta = dispatched.get("eta") if dispatched and row.get("crew_id") else None
        travel = max(0.0, (parse_time(eta, "eta") - now).total_seconds() / 60) if eta else None
        return deadline, area, travel

    def held_deadline_in(self, conn: Connection, inc: Incident, row: dict[str, Any]
                         ) -> tuple[datetime, str]:
        """The arrival deadline and area type: from when the outage was known
        (:meth:`detected_at`), by the strictest area type of the villages off now — unless a
        crew was given one in this episode: that one stands (a commitment does not move on
        new orders), but for one rule: an outage grown into a stricter area type (an urban
        village) is held to its minutes from detection, when earlier. One partly restored,
        or shrunk, keeps the deadline already promised."""
        detected = self.detected_at(conn, inc, row)
        deadline, area = crews.arrival_deadline(self.topology, villages_off(inc, self.topology),
                                                detected, self.params.commitments)
        given = self.store.last_log_details_in(conn, inc.id, "dispatched") or {}
        given_at = self.store.last_log_at_in(conn, inc.id, "dispatched")
        if not given.get("deadline") or given_at is None or given_at < detected:
            return deadline, area
        promised = parse_time(given["deadline"], "deadline")
        was = str(given.get("area_type") or self.params.commitments.default_area_type)
        minutes = self.params.commitments.minutes
        if minutes(area) < minutes(was) and deadline < promised:
            return deadline, area
        return promised, was

    # -- sending a crew -------------------------------------------------------------------------

    def dispatch_in(self, conn: Connection, inc: Incident, row: dict[str, Any], now: datetime,
                    actor: str, crew_id: str | None = None, note: str = "") -> Incident:
        """Choose and send a crew inside the caller's transaction (also used by the daemon)."""
        pr = self.priority(inc, now)
        villages = villages_off(inc, self.topology)
        deadline, area = self.held_deadline_in(conn, inc, row)
        held = self.held_in(conn, inc.id)
        busy = self.busy(conn, inc.id, held)
        choice, taken = self._choice_in(inc, pr.score, area, busy, held, now, crew_id)
        if choice is None:
            self._no_crew_in(conn, inc, pr, deadline, area, busy, now, actor)
            return inc
        for other in taken:
            self._release_crew(conn, other, choice.crew.id, inc.id, now,
                               actor if crew_id is not None else "daemon")
        inc = self._replacing(conn, inc, row.get("crew_id"), choice.crew.id, now, actor, note)
        inc = replace(inc, stage="dispatched") if inc.stage in ("detected", "confirmed") else inc
        inc = replace(inc, crew_progress="on_site" if inc.stage == "on_site" else "dispatched")
        self.owner.save_in(conn, inc, now, priority=pr.score, crew_id=choice.crew.id)
        self.store.log_in(conn, inc.id, now, "dispatched", actor, note, {
            "crew": choice.crew.id, "deadline": deadline.isoformat(), "area_type": area,
            "priority": pr.score, "distance_km": choice.distance_km,
            "eta": choice.eta.isoformat() if choice.eta else None,
            "outside_area": choice.outside_area, "named": crew_id is not None,
            "preempts": choice.preempts.incident_id if choice.preempts else None})
        c, had = choice.crew, row.get("crew_id")
        rows = self._dispatch_rows(inc, pr, self._as_told(conn, choice), deadline, area, now)
        rows += self.care.rows_in(conn, inc, villages, c.name or c.id, now,
                                 retell=had is not None and had != c.id)
        rows += self.owner.summaries.rows(inc, "dispatched", crew=c.id)
        self.store.enqueue_in(conn, rows, now)
        self.log.info("dispatched", incident_id=inc.id, crew=c.id, priority=pr.score,
                      deadline=deadline.isoformat(), preempts=choice.preempts.incident_id
                      if choice.preempts else None)
        return inc

    def _as_told(self, conn: Connection, choice: crews.CrewChoice) -> crews.CrewChoice:
        """``choice`` as its orders tell the crew: the work it is pulled off named (请暂停…)
        only when it was told of that work (:meth:`CrewNotices.told_of`); orders for it that
        never went (held and withdrawn, or taken back now) told it nothing to pause."""
        left = choice.preempts
        if left is None or left.incident_id is None or self.owner.crew_notices.told_of(
                conn, left.incident_id, choice.crew.id):
            return choice
        return replace(choice, preempts=None)

    def _choice_in(self, inc: Incident, score: int, area: str, busy: dict[str, crews.Busy],
                   held: Sequence[Held], now: datetime, crew_id: str | None
                   ) -> tuple[crews.CrewChoice | None, list[str]]:
        """The crew to send (the one the operator named, or the best free or preemptable) and
        the incidents it is taken off: a preempted one, or every other one a named crew held
        — a crew is at one outage at a time, and what it leaves waits for the next crew and
        escalates by its own deadline. The named crew's orders say what it leaves (请暂停…),
        as a preemption's do. ``busy`` loses the named crew (it is not busy for this one)."""
        location = crews.incident_location(self.topology, inc.estimate.devices, inc.off)
        if crew_id is None:
            choice = crews.choose_crew(self.topology, inc.feeder, location, score, busy, now,
                                       self.params, area_type=area)
            left = choice.preempts if choice is not None else None
            return choice, [left.incident_id] if left is not None and left.incident_id else []
        mine = [h for h in held if h[1] == crew_id]
        if any(h[4] != self.store.region for h in mine):
            from outage_sentinel.lifecycle import LifecycleError  # the step's error (cycle)
            raise LifecycleError(
                f"crew {crew_id} is held by {', '.join(h[0] for h in mine)} of another region; "
                "that region's command centre must release it first")
        leaves = busy.pop(crew_id, None)
        forced = next(c for c in self.topology.crews if c.id == crew_id)
        choice = replace(self._named_choice(inc, forced, location, area, now), preempts=leaves)
        return choice, [h[0] for h in mine]

    def _no_crew_in(self, conn: Connection, inc: Incident, pr: prio.Priority,
                    deadline: datetime, area: str, busy: dict[str, crews.Busy], now: datetime,
                    actor: str) -> None:
        """No crew can go: the incident keeps its priority and waits, and the command centre
        hears it (once per deadline, :func:`escalation_key`: again when the outage is off
        again after it was over)."""
        lang = self.planner.renderer.language
        self.owner.save_in(conn, inc, now, priority=pr.score)
        ctx = crews.escalation_context(self.topology, inc, pr, "no_crew", deadline, area, now,
                                       self.planner.tz, None, busy, lang, self.params,
                                       clock_flagged=self.planner.clock_flagged())
        added = self.store.enqueue_in(conn, self.owner.command_rows(
            inc, "waiting_for_crew", self.planner.renderer.render("command_escalation", **ctx),
            revision=escalation_key(deadline), extra=crews.deadline_params(ctx)), now)
        if added or self.owner.config.command_centre.channel is None:
            self.store.log_in(conn, inc.id, now, "note", actor, "no crew available",
                              {"priority": pr.score, "deadline": deadline.isoformat()})
        self.log.warning("no_crew", incident_id=inc.id, priority=pr.score)

    def held_choice(self, inc: Incident, crew_id: str | None, area: str,
                    travel: float | None, now: datetime) -> crews.CrewChoice | None:
        """The crew ``inc`` holds as an escalation names it: who, from where, and its ETA as
        logged at dispatch (``travel``: minutes left, :meth:`deadline_in`; none once passed),
        else from its base. ``None`` when no crew holds it: only then does a warning say no
        crew was sent."""
        crew = self.owner.crew_notices.crew(crew_id) if crew_id else None
        if crew is None:
            return None
        location = crews.incident_location(self.topology, inc.estimate.devices, inc.off)
        choice = self._named_choice(inc, crew, location, area, now)
        if travel is None:
            return choice
        if travel <= 0:  # the ETA given has passed and the crew is not there: no new promise
            return replace(choice, travel_minutes=None, eta=None)
        return replace(choice, travel_minutes=travel, eta=now + timedelta(minutes=travel))

    def _named_choice(self, inc: Incident, crew: Crew, location: tuple[float, float] | None,
                      area: str, now: datetime) -> crews.CrewChoice:
        """``crew`` as the operator's choice (or the crew the incident holds): its trip from
        its base to ``location``, whatever it was doing."""
        base = crews.crew_base(crew)
        dist = crews.haversine_km(base, location) if base and location else None
        travel = crews.travel_minutes(dist, area, self.params) if dist is not None else None
        return crews.CrewChoice(crew, dist, travel,
                                now + timedelta(minutes=travel) if travel else None,
                                inc.feeder not in crew.feeders)

    def _replacing(self, conn: Connection, inc: Incident, previous: str | None, crew: str,
                   now: datetime, actor: str, note: str) -> Incident:
        """``inc`` as ``crew`` is sent to it: another crew, or one sent back (after a
        stand-down, or taken off for other work), makes a new revision, so that the crew and
        the command centre hear it where the same revision's keys would have dropped it (the
        same crew again is a repeat); the crew it had stands down."""
        if previous != crew and \
                self.store.last_log_details_in(conn, inc.id, "dispatched") is not None:
            inc = replace(inc, revision=inc.revision + 1)
        if previous and previous != crew:
            self.owner.crew_notices.stand_down_in(conn, inc, previous, now, actor, "reassigned",
                                                  other=crew, note=note)
        return inc

    def _release_crew(self, conn: Connection, incident_id: str, crew_id: str, by: str,
                      now: datetime, actor: str = "daemon") -> None:
        """Take a crew off other work (lower-priority, or ``actor`` a person who named it for
        ``by``); that incident waits for the next free crew and escalates by its deadline.
        Its orders there not sent yet are taken back: sent after the new ones (they are
        another chain, and may be waiting for a retry), they would be the last it read."""
        other, _ = self.owner.load_in(conn, incident_id)
        pulled = f"higher-priority {by}" if actor == "daemon" else by
        why = pulled if actor == "daemon" else f"{by} by {actor}"
        # The record names who (store.outbox.taken_back_note) and keeps a hold's word.
        self.store.withdraw_pending_in(conn, incident_id, ("dispatch",), now,
                                       f"crew pulled off for {pulled}",
                                       recipients=(f"crew:{crew_id}",), actor=actor)
        if other.stage in ("dispatched", "on_site"):
            other = replace(other, stage="confirmed")
        self.owner.save_in(conn, replace(other, crew_progress=""), now, crew_id=None)
        self.store.log_in(conn, other.id, now, "note", actor, f"crew {crew_id} reassigned to {why}",
                          {"crew": crew_id, "reassigned_to": by})

    # -- the crew's orders ----------------------------------------------------------------------

    def _crew_link(self, incident_id: str, crew: Any, lang: str, body: str,
                   params: dict[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
        """The dispatch's text and parameters with the crew page's link (a line; by SMS the
        template's ``link``, the template holding the address ``…/c/${link}``), and the link
        records to keep with the message (none while field links are off)."""
        if self.planner.links is None:
            return body, params, []
        link = self.planner.links(incident_id, f"crew:{crew.id}", f"crew:{crew.id}")
        if crew.channel in self.planner.sms:
            return body, {**params, "sms": sms_with_link(params["sms"], link.token)}, [link.record]
        line = CREW_LINK_LINE.get(lang, CREW_LINK_LINE["en"])
        return body + "\n" + line.format(url=link.url), params, [link.record]

    def _dispatch_rows(self, inc: Incident, pr: prio.Priority, choice: crews.CrewChoice,
                       deadline: datetime, area: str, now: datetime,
                       update: tuple[str, list[str], list[str]] | None = None
                       ) -> list[OutboxMessage]:
        """The dispatch message to ``choice.crew`` (``update``: new orders for a crew sent
        already, why (:meth:`scope_change_in`: ``device`` the fault point corrected,
        ``cleared`` the command centre's fault point taken back (the localiser's named as
        inferred), ``grown``, ``shrunk``, ``scope``, ``moved``, ``narrowed``), and the villages
        added to and gone from its latest orders), with its page's link."""
        lang = self.planner.renderer.language
        why, added, left = update or ("", [], [])
        ctx = {**crews.dispatch_context(self.topology, inc, pr, choice, deadline, area, now,
                                        self.planner.tz, lang, self.params,
                                        clock_flagged=self.planner.clock_flagged()),
               "update": why, "update_added": added, "update_left": left}
        body = self.planner.renderer.render("crew_dispatch", **ctx)
        c = choice.crew
        body, params, links = self._crew_link(inc.id, c, lang, body,
                                              crews.dispatch_params(ctx, lang))
        return [OutboxMessage(
            incident_id=inc.id, revision=inc.revision, recipient=f"crew:{c.id}",
            purpose="dispatch", channel=c.channel, target=c.target or c.phone,
            audience="crew", subject=body.splitlines()[0], body=body,
            payload={"mentions": [c.phone] if c.phone else [], "crew": c.id,
                     "params": params, "field_links": links,
                     # what these orders have the crew look at (a later estimate beyond it
                     # gets new orders: crews.orders_cover), and the devices they name
                     # operated (one whose areas all came back since: new orders too)
                     "covers": crews.orders_covered(ctx),
                     "operated": list(inc.estimate.devices)},
        )]

    def dispatch_update_in(self, conn: Connection, inc: Incident, crew_id: str | None,
                           now: datetime, why: str = "device") -> list[OutboxMessage]:
        """New orders for the crew ``inc`` holds (``why``: its fault point corrected or
        ``cleared``, the outage's villages changed (``grown``: worded by what changed since
        its latest orders, :meth:`scope_change_in`), or the estimate ``moved``): the dispatch
        again at ``inc``'s revision, under the deadline it was given (an earlier one only
        when the outage grew into a stricter area type), headed as an update
        when an earlier one may have reached the crew; a dispatch to it not sent yet is
        withdrawn (the new one says all). None when no crew holds it."""
        crew = self.owner.crew_notices.crew(crew_id)
        if crew is None or inc.status != "active":
            return []
        deadline, area = self.held_deadline_in(conn, inc, {})
        location = crews.incident_location(self.topology, inc.estimate.devices, inc.off)
        told = f"crew:{crew.id}" in self.store.told_in(conn, inc.id, ("dispatch",))
        change = self.scope_change_in(conn, inc, crew.id, why)
        self.store.withdraw_pending_in(conn, inc.id, ("dispatch",), now,
                                       "superseded by new orders", recipients=(f"crew:{crew.id}",))
        return self._dispatch_rows(inc, self.priority(inc, now),
                                   self._named_choice(inc, crew, location, area, now),
                                   deadline, area, now, update=change if told else None)

    def scope_change_in(self, conn: Connection, inc: Incident, crew_id: str, why: str
                        ) -> tuple[str, list[str], list[str]]:
        """Why new orders go to ``crew_id``, as they may say it, with the villages they add to
        its latest orders and those its orders named that are no longer off. A change of
        villages (``grown``) is worded by what changed since those orders, not since the last
        revision: ``grown`` only when they add a village; else ``moved`` when the fault point
        left what the orders cover, ``shrunk`` when villages they named are no longer off,
        ``scope`` (the areas off changed) otherwise — an outage that shrank and then took
        back one of its villages did not grow."""
        sent = self.store.last_payload_in(conn, inc.id, "dispatch", f"crew:{crew_id}") or {}
        named = (sent.get("params") or {}).get("villages")
        if not isinstance(named, list):
            return why, [], []
        ids = self.topology.villages_of(crews.crew_areas(inc))
        now_named = [self.topology.villages[v].name for v in ids if v in self.topology.villages]
        added = [v for v in now_named if v not in named]
        left = [str(v) for v in named if v not in now_named]
        if why != "grown" or added:
            return why, added, left
        covers, devices = sent.get("covers"), inc.estimate.devices
        if isinstance(covers, list) and devices and not crews.orders_cover(covers, devices):
            return "moved", [], left
        return ("shrunk" if left else "scope"), [], left

    def redirect_in(self, conn: Connection, before: Incident, inc: Incident,
                    now: datetime) -> int:
        """The crew on its way gets new orders when the fault point is where its orders do
        not lead it (moved by more reports, a part restored by switching, a device reported
        operated — in this revision, or in an earlier one that could not redirect),
        or its orders name operated a device no longer the fault point whose areas are all
        back (:func:`crew.named_back`: a fuse of a reclose whose branch came back a poll later):
        not for a near-tie, whose orders name the close alternative, not when the new point
        leaves out an area a source reported off, nor once the crew is on site. Returns the
        rows queued."""
        est = inc.estimate
        if not crews.may_redirect(self.topology, before, inc):
            return 0
        crew = self.store.crew_of_in(conn, inc.id)
        sent = self.store.last_payload_in(conn, inc.id, "dispatch", f"crew:{crew}") \
            if crew else None
        if not sent or "covers" not in sent or (
                (set(est.devices) == set(sent.get("operated") or ())
                 or crews.orders_cover(sent["covers"], est.devices))
                and not crews.named_back(self.topology, inc, sent.get("operated") or ())):
            return 0
        self.store.log_in(conn, inc.id, now, "note", "daemon",
                          "new orders to the crew: the fault point moved",
                          {"crew": crew, "devices": list(est.devices)})
        self.log.info("crew_redirected", incident_id=inc.id, crew=crew, devices=list(est.devices))
        return self.store.enqueue_in(conn, self.dispatch_update_in(conn, inc, crew, now, "moved"),
                                     now)

    # -- special-care lists ---------------------------------------------------------------------

    def care_for_new_villages_in(self, conn: Connection, inc: Incident, now: datetime,
                                 tell_crew: bool = True) -> int:
        """A crew was sent already and the outage reached more villages (a report, a
        correction): their liaisons hear of their special-care households too, as at the
        dispatch (once per liaison), and the crew (``tell_crew``) gets new orders naming the
        villages and households it now has — the liaisons are told the list went to it.
        Returns the rows queued."""
        crew = self.store.crew_of_in(conn, inc.id)
        if crew is None:
            return 0
        rows = self.care.rows_in(conn, inc, villages_off(inc, self.topology),
                                self.owner.crew_label(crew), now)
        if tell_crew:
            rows += self.dispatch_update_in(conn, inc, crew, now, "grown")
        return self.store.enqueue_in(conn, rows, now) if rows else 0
