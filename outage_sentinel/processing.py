"""The incident processor: folds stored events into incidents (a stage of the daemon).

For each unprocessed event, in rounds of :data:`ROUND_EVENTS` per transaction::

    resolve on the topology ─▶ correlate with the open incidents of its feeder
        ─▶ triage (pure: :mod:`outage_sentinel.triage`)
        ─▶ apply (estimate, revision) ─▶ plan notices ─▶ incident row + outbox rows + log steps
           + processed mark, in one transaction (a village's outage and update notices of a
           round's revisions queued once, when every event of the round is folded)

The processor reads each event into the incident's next state; writing that revision — its
notices, outbox rows, row, log steps and crew steps, and the faults queued for a crew once the
batch is in — is :class:`outage_sentinel.revision_writer.RevisionWriter`.

A new fault incident takes in, in that same transaction, the trouble calls of its line that came
before it within the correlation window and joined no incident
(:class:`outage_sentinel.earlier_calls.EarlierCalls`): they count as the calls after it do. A
report arriving after the outage it is about was over goes where
:mod:`outage_sentinel.late_reports` says (an incident restored a little while ago, an ended
incident's log, or a new incident timed when it arrived).

AMI reports are handed to the screen (:class:`ObservationScreen`) instead. What the screen
holds dark and has not released (:class:`HeldDark`) is asked for each batch: a record's end
does not bring those areas back (:func:`outage_sentinel.incidents.held_off`), and the
incidents kept on by them are derived again once the screen lets one go
(:class:`outage_sentinel.held_areas.HeldAreas`). A round that fails
is redone one transaction per event; an event that fails
:data:`~outage_sentinel.failures.MAX_PROCESSING_FAILURES` times is quarantined
(:class:`outage_sentinel.failures.ProcessingFailures`; its row stays stored: nothing accepted
is lost), until the operator puts it back (``quarantine retry``) once the bug is fixed.

Operator steps (``incidents restore``) enter as events of the ``operator`` source through
:meth:`IncidentProcessor.operator_restore`, so the daemon, the CLI and the board share one path;
an operator's report is stored and folded in one transaction with the step's own log line
(:meth:`IncidentProcessor.report_with`). A step that re-estimates an incident asks for the
estimator and planned areas a fold would use now (:meth:`IncidentProcessor.estimator_for`,
:func:`planned_areas`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from outage_sentinel.config import Config
from outage_sentinel.earlier_calls import EarlierCalls
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import (
    LEFT_LIST,
    TEXT_LIMITS,
    OutageEvent,
    PollResult,
    Quarantined,
    parse_time,
    split_list,
)
from outage_sentinel.failures import ProcessingFailures
from outage_sentinel.held_areas import HeldAreas, HeldDark
from outage_sentinel.incidents import (
    FIELD_SOURCE,
    OPERATOR_SOURCE,
    Estimator,
    Incident,
    Resolved,
    answers_to,
    apply_event,
    correlate,
    incident_class,
    member_of,
    outages_reported,
    resolve_event,
)
from outage_sentinel.late_reports import (
    LateReports,
    confirming_incident,
    lagging_incident,
    stamped_after_closeout,
)
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.lifecycle import (
    Lifecycle,
    LifecycleError,
    StepInputError,
    UnknownIncident,
)
from outage_sentinel.localise import (
    FaultContext,
    devices_per_feeder,
    named_nodes,
    shared_message,
)
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.region import id_part
from outage_sentinel.revision_writer import Fold, RevisionWriter
from outage_sentinel.round_cache import RoundCache
from outage_sentinel.store import Store, StoredEvent
from outage_sentinel.topology import Topology
from outage_sentinel.triage import (
    STORM_KEY,
    Triage,
    continued_records,
    explaining_outage,
    planned_transformers,
    reissued_work,
    restoring_work,
    storm_declared,
    triage,
    unknown_references_reason,
)

#: Stored events fetched per processing round (AMI reports are screened a round at a time).
BATCH = 5000
#: Non-observation events folded into incidents per transaction (a failure redoes the round
#: one transaction per event).
ROUND_EVENTS = 250


class ObservationScreen(Protocol):
    """The AMI screen as the processor sees it (:class:`outage_sentinel.screening.AmiScreener`)."""

    def is_observation(self, event: OutageEvent) -> bool:
        """A raw meter/terminal report the screen consumes (not an incident event)."""

    def screen_stored(self, observations: list[StoredEvent], now: datetime) -> None:
        """Screen stored reports and mark them processed, in one transaction."""


@dataclass
class ProcessReport:
    """What one :meth:`IncidentProcessor.run_once` did."""

    processed: int = 0


def endings_last(events: list[StoredEvent]) -> list[StoredEvent]:
    """The events in the order to fold them: a record's ending (restored, cancelled) after the
    other records' news of the same batch, each record's own revisions in their order. An
    outage system reissuing a record under a new id lists the old one cancelled and the new
    one active in one update; folded old-first, the incident was cancelled (停电取消，正常供电
    to a dark village) and a new one opened."""
    last = {(s.event.source, s.event.event_id): i for i, s in enumerate(events)}

    def ends(i: int, s: StoredEvent) -> bool:
        return s.event.status != "active" and last[(s.event.source, s.event.event_id)] == i

    return ([s for i, s in enumerate(events) if not ends(i, s)]
            + [s for i, s in enumerate(events) if ends(i, s)])


def batch_endings(events: list[StoredEvent]) -> dict[str, datetime]:
    """The records a batch ends (their last revision in it restored or cancelled), by member
    key (``source|event_id``), with when each left: its end, else when it was received (a
    cancellation gives no end). A record new in the batch may re-issue one of them."""
    out: dict[str, datetime] = {}
    for s in events:
        key = f"{s.event.source}|{s.event.event_id}"
        if s.event.status == "active":
            out.pop(key, None)
        else:
            out[key] = s.event.end or s.received_at
    return out


def left_list(stored: StoredEvent) -> dict[str, datetime]:
    """The records a snapshot source reported gone from the complete poll in which this
    record first appeared (``raw[LEFT_LIST]``), by member key, left when it was received."""
    ids = stored.event.raw.get(LEFT_LIST)
    if not isinstance(ids, list):
        return {}
    return {f"{stored.event.source}|{i}": stored.received_at for i in ids if isinstance(i, str)}


class IncidentProcessor:
    """Folds stored events into incidents; one per process, shared by every actor. Owns the
    batches and rounds (failures retried, then quarantined), each event's reading (resolve,
    correlate, triage, estimate: the earlier calls a new fault takes in, reopen links, the
    fault context) and the operator's restoration steps; its :attr:`writer` writes each
    revision and sends the crews it queued."""

    def __init__(self, store: Store, topology: Topology, planner: LiaisonPlanner,
                 lifecycle: Lifecycle, config: Config, metrics: Metrics, estimator: Estimator,
                 *, lock: threading.Lock | None = None,
                 screen: ObservationScreen | None = None, held: HeldDark | None = None
                 ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.config = config
        self.metrics = metrics
        self.estimator = estimator
        self.screen = screen
        #: The AMI screen's areas held dark (:class:`HeldAreas`; no screen: nothing held).
        self.held = HeldAreas(self, held, lambda conn, now: planned_areas(store, conn, now))
        self.lock = lock or threading.Lock()
        self.tz = ZoneInfo(config.timezone)
        self.window = timedelta(minutes=config.correlation.window_minutes)
        self.etr_step = timedelta(minutes=config.notify.etr_update_minutes)
        self.log = get_logger(component="processor")
        #: events whose processing failed, counted until quarantined
        self.failures = ProcessingFailures(store, metrics, self.log)
        self.use_topology(topology, planner)
        self.writer = RevisionWriter(self)

    def use_topology(self, topology: Topology, planner: LiaisonPlanner,
                     feeders: frozenset[str] | None = None) -> None:
        """Switch to a reloaded bundle, and the region's feeders in it (None: every feeder;
        the county context counts only these). The caller holds :attr:`lock`."""
        self.topology = topology
        self.planner = planner
        self.protective = {f: n for f, n in devices_per_feeder(topology).items()
                           if feeders is None or f in feeders}
        self.protective_total = sum(self.protective.values())
        #: late reports' log steps, and the calls a new incident takes in from before it
        self.late = LateReports(self.store, topology, self.window)
        self.earlier = EarlierCalls(self.store, topology, self.window, timedelta(
            minutes=self.config.lifecycle.reopen_window_minutes))

    def run_once(self, now: datetime) -> ProcessReport:
        """Fold every stored, unprocessed event into incidents."""
        return ProcessReport(processed=self.process(now))

    def process(self, now: datetime) -> int:
        """Fold every stored, unprocessed event into incidents. Returns how many were done."""
        with self.lock:
            try:
                done = self._batches(now)
            finally:
                self.held.batch = None
            self.held.recheck_logged(now)
            self._update_incident_gauge()
        return done

    def _batches(self, now: datetime) -> int:
        """:meth:`process`'s batches (the caller holds :attr:`lock`)."""
        done = 0
        while True:
            fetched = self.store.unprocessed_events(BATCH)
            batch = self.failures.due(fetched)
            progress = self._screen_observations(batch, now)
            rest = endings_last([s for s in batch if not self._is_observation(s.event)])
            self.held.start_batch(rest)
            leaving = batch_endings(rest)
            for i in range(0, len(rest), ROUND_EVENTS):
                progress += self._process_round(rest[i:i + ROUND_EVENTS], now, leaving)
            # Crews once the batch is in (its endings are folded last), not after a
            # whole storm's backlog.
            self.writer.dispatch_waiting(now)
            done += progress
            if len(fetched) < BATCH or progress == 0:
                return done

    def _is_observation(self, event: OutageEvent) -> bool:
        return self.screen is not None and self.screen.is_observation(event)

    def _screen_observations(self, batch: list[StoredEvent], now: datetime) -> int:
        observations = [s for s in batch if self._is_observation(s.event)]
        if not observations or self.screen is None:
            return 0
        try:
            self.screen.screen_stored(observations, now)
            return len(observations)
        except Exception as exc:
            self.log.exception("ami_screening_failed", reports=len(observations))
            for s in observations:
                self.failures.failed(s, exc, now)
            return 0

    def _process_round(self, chunk: list[StoredEvent], now: datetime,
                       leaving: Mapping[str, datetime]) -> int:
        """Fold events into incidents in one transaction (incident changes, their outbox rows
        and processed marks still commit together). If any event fails, the whole round is
        rolled back and redone with a transaction per event, so a failing event is retried or
        quarantined alone as before (a savepoint per event cost more than the storm's saves).
        A village's outage and update notices are queued once per round and incident
        (:class:`~outage_sentinel.revision_writer.OwedNotices`: not one per storm report).
        ``leaving``: the records the whole batch ends (:func:`batch_endings`)."""
        if len(chunk) == 1:
            return int(self._process_one(chunk[0], now, leaving))
        try:
            with self.store.transaction() as conn:
                rnd = RoundCache(self.store, gather=True)
                rnd.preload(conn, chunk)
                for stored in chunk:
                    rnd.done(stored, self._apply(conn, stored, rnd, now, leaving))
                self.writer.owed.settle(conn, rnd, now)
        except Exception as exc:
            self.log.warning("processing_round_failed", events=len(chunk),
                             error=redact(repr(exc)), retry="one transaction per event")
            return sum(self._process_one(s, now, leaving) for s in chunk)
        for stored in chunk:
            self.failures.clear(stored)
        return len(chunk)

    def _process_one(self, stored: StoredEvent, now: datetime,
                     leaving: Mapping[str, datetime]) -> bool:
        try:
            with self.store.transaction() as conn:
                self._apply(conn, stored, RoundCache(self.store), now, leaving)
            self.failures.clear(stored)
            return True
        except Exception as exc:
            self.log.exception("processing_failed", source=stored.event.source,
                               event_id=stored.event.event_id)
            self.failures.failed(stored, exc, now)
            return False

    # -- one event ------------------------------------------------------------------------------

    def _current(self, conn: Connection, event: OutageEvent, resolved: Resolved,
                 rnd: RoundCache, now: datetime, leaving: Mapping[str, datetime]
                 ) -> Incident | None:
        """The incident the event belongs to: by membership, by the operator's naming, by
        correlation with the open incidents of its feeder (only those: parsing every open
        incident's state per event would make a storm quadratic), or as the work it re-issues
        (``leaving``: the records leaving, :func:`reissued_work`)."""
        known_id = rnd.member_incident(conn, event.source, event.event_id)
        named = str(event.raw.get("incident_id") or "") or None
        if known_id is None and event.source == OPERATOR_SOURCE:
            known_id = named
        current = rnd.get(conn, known_id) if known_id is not None else None
        if current is None and named is not None and event.source == FIELD_SOURCE:
            # A liaison's answer goes to the notice it answers while that outage is on; after
            # it ended, "still dark" is a new outage (see FieldDesk), correlated as any other.
            answered = rnd.get(conn, named)
            current = answered if answered is not None and answers_to(
                answered, event, resolved) else None
        if current is None and resolved.feeder is not None:
            current = correlate(rnd.open_on(conn, resolved.feeder), event, resolved, now,
                                self.window, self.topology) or reissued_work(
                rnd.open_on(conn, resolved.feeder), event, resolved, leaving)
        if current is None and resolved.feeder is not None:
            window = timedelta(minutes=self.config.lifecycle.reopen_window_minutes)
            current = lagging_incident(self.store, conn, event, resolved, now, window) or \
                confirming_incident(self.store, conn, event, resolved, now, window)
        if current is None:
            current = restoring_work(rnd.open_planned(conn), event, resolved, now)
        return current

    def _apply(self, conn: Connection, stored: StoredEvent, rnd: RoundCache,
               now: datetime, leaving: Mapping[str, datetime]) -> str | None:
        """Fold one event in; returns the incident it now belongs to (``None``: none).
        ``leaving``: the records the batch ends (:func:`batch_endings`)."""
        event = stored.event
        # Another process (the operator CLI) may have processed it since we listed it.
        if rnd.is_processed(conn, stored.row_id):
            return None
        resolved = resolve_event(self.topology, event)
        log = self.log.bind(source=event.source, event_id=event.event_id, feeder=resolved.feeder)
        self._say_unresolved(conn, stored, resolved, log, now)
        leaving = {**leaving, **left_list(stored)}
        current = self._current(conn, event, resolved, rnd, now, leaving)
        event = stamped_after_closeout(self.store, conn, event, resolved, current,
                                       stored.received_at)
        planned = planned_transformers(rnd.open_planned(conn), now)
        current, decision = self._triaged(conn, rnd, current, event, resolved, planned, log, now)
        if decision.action != "incident":
            self.store.mark_processed_in(conn, stored.row_id, None)
            if self.late.finished_in(conn, event, resolved, log, now):
                return None
            if decision.action == "explained":
                log.info("explained_by_planned_outage", transformers=list(resolved.transformers))
            else:
                log.info("event_without_incident", status=event.status, signal=event.signal)
            return None
        if decision.unplaced:
            log.warning("event_unlocatable", area_text=event.area_text,
                        reason="no known transformer area or device", action="command_centre")
        calls = self.earlier.calls_in(conn, event, resolved, now) if current is None else ()
        supersedes = continued_records(current, event, resolved, leaving) if current else ()
        fold = Fold(event, resolved, rnd, now, planned, decision.unplaced, calls, supersedes)
        after = self._revise(conn, current, fold)
        self.late.note_stamp_in(conn, current, after, event, now)
        self._answered_elsewhere(conn, after, fold)
        self.store.mark_processed_in(conn, stored.row_id, after.id)
        return after.id

    def _triaged(self, conn: Connection, rnd: RoundCache, current: Incident | None,
                 event: OutageEvent, resolved: Resolved, planned: frozenset[str], log: Any,
                 now: datetime) -> tuple[Incident | None, Triage]:
        """The incident ``event`` goes to and what to do with it (:func:`triage`): one planned
        work it falls inside takes it (:func:`explaining_outage`); inside several works but
        no one of them, no one work explains it (a record was dropped here, and its villages
        heard 恢复送电 when the works ended)."""
        decision = triage(current, event, resolved, planned)
        if decision.action != "explained":
            return current, decision
        host = explaining_outage(rnd.open_planned(conn), event, resolved, now)
        if host is None:
            return current, triage(current, event, resolved, frozenset())
        log.info("explained_by_planned_outage", incident_id=host.id, joined=True,
                 transformers=list(resolved.transformers))
        return host, triage(host, event, resolved, planned)

    def _say_unresolved(self, conn: Connection, stored: StoredEvent, resolved: Resolved,
                        log: Any, now: datetime) -> None:
        """What of ``stored``'s references could not be used: the unknown ones logged and
        quarantined with the record; a call's references to another area than the one it is
        placed in (the work order's area is not its caller's) logged, worth a fix at the
        source."""
        if resolved.unknown:
            log.warning("unknown_references", refs=list(resolved.unknown))
            event = stored.event  # kept for the operator (quarantine list) with the reason
            self.store.quarantine_in(conn, Quarantined(
                event.source, unknown_references_reason(event, resolved.unknown),
                dict(event.raw) or {"event_row": stored.row_id, **event.to_json()}), now)
        if resolved.set_aside:
            log.warning("call_references_disagree", placed=list(resolved.transformers),
                        set_aside=list(resolved.set_aside))

    def _estimated(self, conn: Connection, current: Incident | None, f: Fold) -> Incident:
        """The incident after the event (estimate and revision; nothing written yet)."""
        estimator = self._estimator_in(conn, f.rnd, f.resolved.feeder, f.now)
        started = time.perf_counter()
        after = apply_event(current, f.event, f.resolved, self.topology, estimator, f.now,
                            lambda: self._new_incident_id(conn, f.event.start), f.planned,
                            joined=[member_of(s.event, placed, f.now) for s, placed in f.calls],
                            supersedes=f.supersedes, held=self.held.now(after_fold=True))
        self.metrics.localise_duration.observe(time.perf_counter() - started)
        if f.unplaced:
            after = replace(after, feeder=f.resolved.feeder or "?")
        if current is None and incident_class(after.kind) == "unplanned":
            after = self._link_reopened(conn, after, f)
        return after

    def estimator_for(self, conn: Connection, feeder: str | None, now: datetime) -> Estimator:
        """The estimator an event of ``feeder`` is folded with now, inside the caller's
        transaction: the localiser in the weather of the window (:meth:`_fault_context`)."""
        return self._estimator_in(conn, RoundCache(self.store), feeder, now)

    def _estimator_in(self, conn: Connection, rnd: RoundCache, feeder: str | None,
                      now: datetime) -> Estimator:
        if isinstance(self.estimator, BayesEstimator):
            return self.estimator.within(self._fault_context(conn, rnd, feeder, now))
        return self.estimator

    def _revise(self, conn: Connection, current: Incident | None, f: Fold) -> Incident:
        """Apply the event (estimate, revision) and write the incident, its notices and its
        log steps (:meth:`RevisionWriter.write`)."""
        return self.writer.write(conn, current, self._estimated(conn, current, f), f)

    def dark_elsewhere(self, conn: Connection, inc: Incident, now: datetime,
                       rnd: RoundCache | None = None) -> set[str]:
        """Villages of ``inc``'s scope with an area still off in another open incident
        (:meth:`RevisionWriter.dark_elsewhere`)."""
        return self.writer.dark_elsewhere(conn, inc, now, rnd)

    # -- operator steps -------------------------------------------------------------------------

    def operator_restore(self, incident_id: str, actor: str, transformers: str | None,
                         at: str | None, note: str = "", *, now: datetime) -> Incident:
        """Record a restoration step as an operator event and process it at once.

        The step goes through the same path as a feed's restoration (stored event, incident
        revision, notices in one transaction), so the daemon and the CLI never disagree.
        """
        event = restore_event(self.incident(incident_id), self.topology, self.tz, actor,
                              transformers, at, note, now)
        self.report_with(event, now)
        return self.incident(incident_id)

    def report(self, event: OutageEvent, now: datetime) -> None:
        """Store a report from the field (a liaison's answer) and fold it in at once: stored
        first, so that a fold that fails is retried by the daemon (an operator's report goes
        through :meth:`report_with`)."""
        self.store.ingest(OPERATOR_SOURCE, PollResult(events=[event]), now)
        self.process(now)

    def report_with(self, event: OutageEvent, now: datetime,
                    then: Callable[[Connection, str | None], None] | None = None
                    ) -> str | None:
        """Store an operator's report, fold it in and run ``then`` (given the transaction
        and the incident the report joined, ``None``: none) in one transaction, so that the
        step's own writes (its log line) commit with the incident and its notices or not at
        all; returns that incident. The events already waiting are folded first. A failure
        is raised to the caller with nothing of the report kept (neither retried nor
        quarantined: the actor is told and may take the step again)."""
        self.process(now)
        with self.lock:
            waiting = dict(self.writer.waiting)
            try:
                with self.store.transaction() as conn:
                    stored = stored_report(self.store, conn, event, now)
                    incident_id = self._apply(conn, stored, RoundCache(self.store), now,
                                              batch_endings([stored]))
                    if then is not None:
                        then(conn, incident_id)
            except BaseException:
                self.writer.waiting = waiting  # what the fold queued was never written
                raise
            self.writer.dispatch_waiting(now)
            self._update_incident_gauge()
        return incident_id

    def incident(self, incident_id: str) -> Incident:
        """The incident's current state."""
        row = self.store.get_incident(incident_id)
        if row is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        return Incident.from_json(row["state"])

    def incident_of(self, source: str, event_id: str) -> str | None:
        """The incident a source record was folded into, if any."""
        with self.store.transaction() as conn:
            return self.store.member_incident_in(conn, source, event_id)

    def active(self, incident_id: str) -> Incident:
        row = self.store.get_incident(incident_id)
        if row is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        inc = Incident.from_json(row["state"])
        if inc.status != "active":
            raise LifecycleError(f"{incident_id} is {inc.status}; nothing to restore")
        return inc

    def _link_reopened(self, conn: Connection, inc: Incident, f: Fold) -> Incident:
        """Link a new outage on areas restored shortly before to the incident it reopens; the
        areas those counted back unconfirmed that it reports off are its now
        (:meth:`RevisionWriter.hand_on`)."""
        window = timedelta(minutes=self.config.lifecycle.reopen_window_minutes)
        areas = set(inc.estimate.transformers)
        parent: str | None = None
        for row in self.store.load_incidents(conn=conn, open_only=False, feeder=inc.feeder,
                                             status="restored", ended_after=f.now - window):
            prev = f.rnd.of_row(row)
            if prev.id == inc.id or not areas & set(prev.estimate.transformers):
                continue
            if parent is None:
                self.store.log_in(conn, prev.id, f.now, "reopened", "daemon", "",
                                  {"by": inc.id})
                parent = prev.id
            if prev.stage != "closed":  # a close-out's record is final
                self.writer.hand_on(conn, prev, f.resolved.transformers, inc, f)
        return replace(inc, parent_id=parent) if parent is not None else inc

    def _answered_elsewhere(self, conn: Connection, after: Incident, f: Fold) -> None:
        """A liaison's "still dark" after the end, folded into another outage (a new one, or
        one open on the line): the incident it answered stops counting those areas back
        unconfirmed (:meth:`RevisionWriter.hand_on`)."""
        named = str(f.event.raw.get("incident_id") or "")
        if f.event.source != FIELD_SOURCE or f.event.status != "active" or not named \
                or named == after.id:
            return
        answered = f.rnd.get(conn, named)
        if answered is not None and answered.status == "restored" \
                and answered.stage != "closed":
            self.writer.hand_on(conn, answered, f.resolved.transformers, after, f)

    def _fault_context(self, conn: Connection, rnd: RoundCache, feeder: str | None,
                       now: datetime) -> FaultContext:
        """The weather of the window for the localiser: a storm an operator declared, and how
        many protective devices the county's open fault incidents on other feeders hold."""
        if rnd.storm is None:
            rnd.storm = storm_declared(self.store.kv_get_in(conn, STORM_KEY), now)
            self.metrics.storm_declared.set(int(rnd.storm))
        if not self.config.localisation.county_context:
            return FaultContext(storm=rnd.storm)
        faults = rnd.open_faults(conn)
        elsewhere = sum(faults.values()) - faults.get(feeder or "", 0)
        devices = self.protective_total - self.protective.get(feeder or "", 0)
        return FaultContext(storm=rnd.storm, faults_elsewhere=min(elsewhere, devices),
                            devices_elsewhere=devices)

    def _new_incident_id(self, conn: Connection, start: datetime) -> str:
        prefix = f"INC-{id_part(self.store.region)}{start.astimezone(self.tz):%Y%m%d}-"
        return f"{prefix}{self.store.next_incident_number(conn, prefix):04d}"

    def _update_incident_gauge(self) -> None:
        counts: dict[str, int] = {"fault": 0, "planned": 0, "temporary": 0}
        counts.update(self.store.incident_counts())
        for kind, n in counts.items():
            self.metrics.incidents_active.labels(kind).set(n)


def restore_event(inc: Incident, topology: Topology, tz: tzinfo, actor: str,
                  transformers: str | None, at: str | None, note: str, now: datetime
                  ) -> OutageEvent:
    """The operator's restoration of ``inc``'s areas ``transformers`` (all off, or, once it is
    over, all counted back unconfirmed, when ``None``) at ``at`` (local time; ``now`` when
    ``None``), as the event :meth:`IncidentProcessor.operator_restore` folds in; refused
    (:class:`StepInputError`, :class:`LifecycleError`) naming what is wrong."""
    # Over, it may still have areas counted back that nothing confirmed: the step is the
    # command centre's word that they are.
    pending = inc.off if inc.status == "active" else inc.unconfirmed
    if inc.status != "active" and not pending:
        raise LifecycleError(f"{inc.id} is {inc.status}; nothing to restore")
    if not pending:  # a call's incident placed on a line: a restoration of nothing is no step
        raise LifecycleError(
            f"{inc.id} has no transformer area known off, so a restoration has nothing to "
            f"bring back: name the areas that were off (incidents scope {inc.id} --add ...), "
            "then restore them; or cancel it if there was no outage")
    ids = [restore_area(inc, topology, ref, pending)
           for ref in (split_list(transformers) if transformers else pending)]
    when = parse_time(at, "--at", tz) if at else now
    if when > now + timedelta(minutes=1):
        raise StepInputError(f"--at {at} is in the future")
    if when < inc.start:
        raise LifecycleError(f"--at {at} is before the outage began "
                             f"({inc.start.astimezone(tz):%Y-%m-%d %H:%M})")
    later = off_again_after(inc, ids, when)
    if later:
        raise LifecycleError(
            "; ".join(f"{t} is reported off again since {s.astimezone(tz):%Y-%m-%d %H:%M}"
                      for t, s in later.items())
            + f": a restoration at {when.astimezone(tz):%Y-%m-%d %H:%M} does not bring "
            "it back (give the time it came back after that, or leave it out)")
    return OutageEvent(
        source=OPERATOR_SOURCE, event_id=restore_id(inc.id, when, ids), kind=inc.kind,
        status="restored",
        # The note is the operator's words, not a scope: as area text, the areas it named
        # ("T1仍停电") were brought back with the step.
        signal="alive", start=when, end=when, transformers=tuple(ids),
        raw={"incident_id": inc.id, "actor": actor, "note": note})


def restore_id(incident_id: str, when: datetime, areas: Sequence[str]) -> str:
    """The event id of an operator's restoration of ``areas`` at ``when``: the areas named,
    or, when they would not fit the store's 200 characters (a restoration of 15 areas and
    more), how many and a digest of them — the same step is the same id either way."""
    named = ",".join(sorted(areas))
    head = f"{incident_id}:restore:{when.isoformat()}:"
    if len(head) + len(named) <= TEXT_LIMITS["event_id"]:
        return head + named
    return f"{head}{len(areas)} areas:{hashlib.sha256(named.encode()).hexdigest()[:32]}"


def restore_area(inc: Incident, topology: Topology, ref: str, pending: Sequence[str]) -> str:
    """The area of ``inc`` an operator's restoration names by ``ref`` (id, name, meter,
    customer): of several areas sharing a name, the one the incident has (affected while it
    is active, else counted back unconfirmed); refused naming what ``ref`` may be else."""
    active = inc.status == "active"
    allowed = inc.estimate.transformers if active else pending
    nodes = named_nodes(topology, ref)
    mine = [n for n in nodes if n in allowed]
    if len(mine) == 1:
        return mine[0]
    if len(mine) > 1:
        raise StepInputError(shared_message(topology, ref, mine))
    what = "an affected transformer area" if active else \
        "an area whose restoration is unconfirmed"
    error = LifecycleError if nodes else StepInputError
    raise error(f"{ref!r} is not {what} of {inc.id} "
                f"({'affected' if active else 'unconfirmed'}: {', '.join(pending[:10])})")


def off_again_after(inc: Incident, areas: Sequence[str], when: datetime
                    ) -> dict[str, datetime]:
    """Of ``areas``, those a report still open says went off at or after ``when`` (a
    re-trip the meters saw, a new fault record, an operator's reopen), with the earliest such
    start: a restoration timed at ``when`` brings them nothing back
    (:func:`~outage_sentinel.incidents.areas_back` decides by time)."""
    spans = outages_reported(inc.members.values())
    out: dict[str, datetime] = {}
    for t in areas:
        starts = [start for start, end in spans.get(t, ()) if end is None and start >= when]
        if starts:
            out[t] = min(starts)
    return out


def stored_report(store: Store, conn: Connection, event: OutageEvent, now: datetime
                  ) -> StoredEvent:
    """An operator's ``event`` stored unprocessed in the caller's transaction, with its row
    (found by its own key, so another writer's report committed meanwhile is never taken for
    it). The same report stored before (the same step at the same time) is refused."""
    counts = store.ingest_in(conn, OPERATOR_SOURCE, PollResult(events=[event]), now)
    row_id = store.event_row_in(conn, counts.new_events[0]) if counts.inserted else None
    if row_id is None:
        raise LifecycleError(f"this report is recorded already ({event.event_id}); "
                             "nothing was changed")
    return StoredEvent(row_id, counts.new_events[0], now, None)


def planned_areas(store: Store, conn: Connection, now: datetime) -> frozenset[str]:
    """The areas planned work in force explains now (a fault's estimate leaves them out),
    inside the caller's transaction: what :meth:`IncidentProcessor.estimator_for`'s fold
    would leave out."""
    return planned_transformers(RoundCache(store).open_planned(conn), now)
