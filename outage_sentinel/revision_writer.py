"""Writing one incident revision the processor decided, and what the revision sets going.

The processor (:mod:`outage_sentinel.processing`) resolves, correlates, triages and estimates
an event into the incident's next state; :class:`RevisionWriter` turns that state into what is
written, all in the processor's transaction::

    plan notices (held back, past stop, withdrawn inferences, a cancellation's take-back)
        ─▶ outbox rows + command-centre summary ─▶ incident row (+ earlier calls joined)
        ─▶ log steps ─▶ crews and care (power back, revived, new villages, redirect)

Faults that need a crew are queued and sent one once the whole batch is folded
(:meth:`RevisionWriter.dispatch_waiting`). The command-centre summary never stops the rest:
one that cannot be rendered is rendered from the built-in template, else stated in plain
text (:meth:`outage_sentinel.summaries.Summaries.rows`, as every step's summary is).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel.config import Config
from outage_sentinel.crew import restored_by
from outage_sentinel.events import OutageEvent
from outage_sentinel.held_notices import keep_held_in, work_ahead
from outage_sentinel.held_void import HeldVoid
from outage_sentinel.incidents import (
    BACK_NOTICES,
    FIELD_SOURCE,
    OPERATOR_SOURCE,
    Incident,
    Notice,
    Resolved,
    called_off_areas,
    confirmed_back,
    continued_in,
    dark_villages,
    handed_back,
    held_disputes,
    hold_back,
    newly_disputed,
    past_stop_unannounced,
    plan_notices,
    reported_dark,
    restoration_step,
    superseded_now,
    village_etr,
    village_scope_change,
    village_start,
    villages_of_scope,
    villages_off,
)
from outage_sentinel.liaison import VOID_ETR, LiaisonPlanner
from outage_sentinel.lifecycle import WAITING_STAGES, Lifecycle, incident_columns
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.ordering import (
    BACK_PURPOSES,
    SUMMARY,
    WHOLE_SUMMARIES,
    owed_correction,
    summary_due,
    summary_state,
)
from outage_sentinel.outgoing import LATEST_ONLY, OutboxMessage
from outage_sentinel.round_cache import Owed, RoundCache
from outage_sentinel.store import Store, StoredEvent
from outage_sentinel.topology import Topology


@dataclass(frozen=True)
class Fold:
    """One event being folded in, with what the round knows around it (the processor's
    reading of it, handed to the writer)."""

    event: OutageEvent
    resolved: Resolved
    rnd: RoundCache
    now: datetime
    planned: frozenset[str]
    unplaced: bool
    #: Trouble calls received before the incident the event opens, that join it with the event.
    calls: tuple[tuple[StoredEvent, Resolved], ...] = ()
    #: The records of the incident that the event re-issues under a new id (ended with it).
    supersedes: tuple[str, ...] = ()


#: The villages' notices a round gathers (:class:`OwedNotices`): those that say the power is
#: off, and how.
GATHERED = ("outage", "update")


def gathered(current: Incident | None, after: Incident, notices: list[Notice]) -> bool:
    """Whether ``after``'s ``notices`` may wait in the round for the revisions after it: the
    incident on before and after it and nothing but outage and update notices (a "power
    back", a withdrawn inference or a correction goes in its turn, with what it takes back)."""
    return (after.status == "active" and (current is None or current.status == "active")
            and all(n.purpose in GATHERED for n in notices))


def still_news(o: Owed, topology: Topology, etr_step: timedelta) -> bool:
    """Whether the update owed to ``o``'s village still tells it something, the incident as
    the round has it (:attr:`Owed.final`) against what the village was told before the
    round: areas reported off or taken out, its expected restoration time moved by
    ``etr_step`` or more, planned work's start moved (as
    :func:`~outage_sentinel.incidents.plan_notices` decides an update). An area off and back
    within one poll is no news: sent, the update said it was off while it was on."""
    if o.purpose != "update" or o.previous is None:
        return True
    before, after, v = o.previous, o.said, o.village
    added, removed = village_scope_change(before, after, v, topology)
    told, etr = before.told_etr.get(v, before.etr), village_etr(after, v, topology)
    moved = (told is None) != (etr is None) if told is None or etr is None \
        else abs(etr - told) >= etr_step
    started = after.kind != "fault" and village_start(before, v, topology) \
        != village_start(after, v, topology)
    return bool(added or removed) or moved or started


#: How long before a cancelled outage began the incidents it may have taken areas from
#: ended (a liaison's link answers up to a day after the end).
HAND_BACK_LOOKBACK = timedelta(days=2)


def disputed_by_records(before: Incident | None, after: Incident, topology: Topology
                        ) -> dict[str, Any] | None:
    """The ``meters_disagree`` step's details when ``after`` newly holds areas off against an
    outage-system record that ended (:func:`newly_disputed`): the areas, the records (member
    keys) and their customers, so the command centre sees the record said restored and the
    meters disagree; ``unreleased``, those of them whose meters' power-off the AMI screen
    holds and has not released yet (:func:`held_disputes`: 电表仍报停电（暂未确认）), when any.
    A liaison's 已来电 the meters contradict is not here: the field desk logs it
    (``evidence_conflict``). ``None``: no such area."""
    areas: dict[str, None] = {}
    records: dict[str, None] = {}
    for area, keys in newly_disputed(before, after).items():
        ended = [k for k in keys if k.split("|", 1)[0] != FIELD_SOURCE]
        if ended:
            areas[area] = None
            records.update(dict.fromkeys(ended))
    if not areas:
        return None
    held = set(held_disputes(after))
    unreleased = {"unreleased": [t for t in areas if t in held]} if held & set(areas) else {}
    return {"transformers": list(areas), "records": list(records),
            "customers": topology.customers_of(list(areas)), **unreleased}


#: The ``meters_disagree`` step's note when the meters' word is only the AMI screen's hold.
UNRELEASED_NOTE = ("the meters' power-off is held by the AMI screen, not released yet "
                   "(电表仍报停电（暂未确认）): kept off until it releases or drops it, or the "
                   "command centre restores it")


def actor_of(event: OutageEvent) -> str:
    """Who a step of ``event`` is logged as: the operator who took it, else its source."""
    if event.source == OPERATOR_SOURCE:
        return str(event.raw.get("actor") or "operator")
    return f"source:{event.source}"


class RevisionOwner(Protocol):
    """What the writer reads of the processor: the store, the lifecycle, the config and the
    ETR step (fixed), and the topology and planner (a topology reload replaces these)."""

    store: Store
    lifecycle: Lifecycle
    config: Config
    etr_step: timedelta
    topology: Topology
    planner: LiaisonPlanner


class OwedNotices:
    """Queues the villages' outage and update notices a round gathers
    (:class:`~outage_sentinel.round_cache.Owed`, :func:`gathered`): one per village and
    incident, of the first one's purpose, saying what the incident's last revision of the
    round says (the state the round ended in; not the last revision with news for the
    village: an area back later in the round is no news on its own, and the village read it
    still off), compared with what the village was told before the round. A storm's reports
    folded one by one made a revision each, and the village heard 停电 and an update per area
    within a second: a flood of near-identical notices is one people stop reading. A village
    whose outage ends before its notice went out hears neither (:meth:`never_told_back`).
    One per writer."""

    def __init__(self, owner: RevisionOwner, log: Any) -> None:
        self.owner, self.store, self.log = owner, owner.store, log
        #: Queues the rows: a village's update of a void expected restoration time held.
        self.queue = PacedSummaries(owner.store, owner.config, log)
        #: Renews a held update of a void time that a revision overtook (an area back).
        self.void = HeldVoid(owner, self.queue, log)

    def before(self, conn: Connection, current: Incident | None, after: Incident,
               f: Fold) -> tuple[str, ...]:
        """Queue the notices the round owes before a revision whose notices it does not
        gather (decided on its plan): what that revision takes back (a withdrawn inference,
        a cancellation), reads (who was told) or queues after them (a "power back") must
        find them in the outbox, in the order they were decided. Returns the villages it
        tells their power is back whose outage notice of it the round still owed: that
        notice is not queued (the outage ended before it went out), and neither is their
        "power back" (:meth:`never_told_back`)."""
        if not f.rnd.owed:
            return ()
        notices, _ = plan_notices(current, after, self.owner.topology, self.owner.etr_step)
        if gathered(current, after, notices):
            return ()
        forgone = f.rnd.forgo_outage(
            after.id, [v for n in notices if n.purpose in BACK_NOTICES for v in n.villages])
        self.settle(conn, f.rnd, f.now)
        return forgone

    def never_told_back(self, conn: Connection, after: Incident, notices: list[Notice],
                        f: Fold, forgone: tuple[str, ...]) -> tuple[list[Notice], Incident]:
        """A village never told of the outage is not told 恢复送电 of it (it would read of an
        outage it never heard of: a terminal's off and on, or a backlog, uploaded together):
        its outage notice was still owed in the round (``forgone``: :meth:`before`) or was
        queued at this same instant and waits, never tried, for every recipient. Its "power
        back" is not sent nor counted told, what waits for it of the incident (outage,
        update, care) is taken back, and the log says so (``back_untold``); the command
        centre's summary still covers the incident. One merely waiting since before (quiet
        hours, a channel down) was meant to reach it first: its village still hears the end."""
        back = list(dict.fromkeys(v for n in notices if n.purpose in BACK_NOTICES
                                  for v in n.villages))
        if not back:
            return notices, after
        recipients = {v: self.owner.planner.village_recipients(v) for v in back}
        untold = [v for v in back if v in forgone or v in self._queued_now(
            conn, after.id, recipients, f.now)]
        if not untold:
            return notices, after
        notices, after, _ = hold_back(notices, after, untold)
        taken = self.store.withdraw_pending_in(
            conn, after.id, ("outage", "update", "care"), f.now,
            f"the outage was over before its notice went out (revision {after.revision})",
            [r for v in untold for r in recipients[v]])
        self.store.log_in(conn, after.id, f.now, "back_untold", actor_of(f.event), "",
                          {"villages": untold, "withdrawn": taken})
        self.log.info("back_notices_untold", incident_id=after.id, villages=untold,
                      messages=taken)
        return notices, after

    def _queued_now(self, conn: Connection, incident_id: str,
                    recipients: dict[str, list[str]], now: datetime) -> set[str]:
        """The villages whose every recipient's latest outage notice of the incident was
        queued at ``now`` (this processing instant) and waits, never tried."""
        everyone = [r for rs in recipients.values() for r in rs]
        latest = {m.recipient: m for m in self.store.heard_in(conn, incident_id, everyone)
                  if m.purpose == "outage"}
        return {v for v, rs in recipients.items() if rs and all(
            (m := latest.get(r)) is not None and m.status in ("pending", "held")
            and not m.attempts and m.created_at >= now for r in rs)}

    def settle(self, conn: Connection, rnd: RoundCache, now: datetime) -> int:
        """Queue the notices the round owes, in the order first owed, each saying what the
        incident's last revision of the round says (:attr:`Owed.final`: the state it ended
        in), an update whose news the round undid dropped (:func:`still_news`); returns the
        rows."""
        rows: list[OutboxMessage] = []
        told: set[tuple[str, str]] = set()
        for o in rnd.take_owed():
            news, said = still_news(o, self.owner.topology, self.owner.etr_step), o.said
            if news:
                rows += self.owner.planner.rows(said, [Notice(o.purpose, (o.village,))],
                                                now, previous=o.previous)
                told.add((said.id, o.village))
            if len(o.revisions) > 1 or not news or said.revision != o.latest.revision:
                self.log.info("notices_gathered", incident_id=said.id, village=o.village,
                              purpose=o.purpose, revisions=list(o.revisions),
                              said=said.revision, sent=news)
        added = self.queue.enqueue_in(conn, rows, now) if rows else 0
        return added + self.void.renew_in(conn, rnd, lambda i: rnd.get(conn, i), now, told)

    def overtaken_in(self, conn: Connection, current: Incident | None, after: Incident,
                     notices: list[Notice], f: Fold) -> int:
        """A village's update held for its void time that ``after`` overtook without telling
        it anything (an area back: :func:`~outage_sentinel.held_void.overtaken`) is queued
        again, said of the incident now (:class:`~outage_sentinel.held_void.HeldVoid`): at
        once, or when the round's notices are (:meth:`settle`). Returns the rows queued."""
        if not self.void.note(current, after, notices, f.rnd) or f.rnd.owed is not None:
            return 0
        return self.void.renew_in(conn, f.rnd, {after.id: after}.get, f.now)


class PacedSummaries:
    """Queues the command centre's summary of each revision so that its group reads at most
    one per incident per ``command_centre.summary_min_interval_seconds``, saying the latest
    state: a storm released an incident's areas one report at a time and the group got a
    summary per area (60 in two minutes, each one area apart) — staff mute such a group, and
    then miss the one that matters. The incident log and the board keep every revision.

    Each summary is queued marked :data:`~outage_sentinel.outgoing.LATEST_ONLY`; the earlier
    ones of its incident not sent yet are superseded by it (kept, naming it); and it waits,
    pending, until the interval since the last whole summary that went has passed
    (:func:`~outage_sentinel.ordering.summary_due`: the first of an incident, and one whose
    status or kind changed, go at once). All of it is in the outbox, written in the
    revision's transaction: a restart, or another node taking the lead, reads it from there,
    and the deliverer's claims keep it sent once. The command centre's steps, dispatches and
    escalations are purposes of their own and are never paced. Interval 0: every summary
    goes at once, as before.

    A village's update whose only news is that its expected restoration time is no longer
    known (:data:`~outage_sentinel.liaison.VOID_ETR`) is held the same way, for
    ``notify.void_etr_hold_seconds`` (:meth:`hold_in`)."""

    def __init__(self, store: Store, config: Config, log: Any) -> None:
        self.store, self.config, self.log = store, config, log

    def enqueue_in(self, conn: Connection, rows: list[OutboxMessage], now: datetime) -> int:
        """Queue ``rows``, the summaries among them paced and the villages' updates of a void
        expected restoration time held; returns how many were added."""
        interval = timedelta(seconds=self.config.command_centre.summary_min_interval_seconds)
        hold = timedelta(seconds=self.config.notify.void_etr_hold_seconds)
        paced = [r for r in rows if r.purpose == SUMMARY and interval]
        held = [r for r in rows if hold and r.payload.get(VOID_ETR)]
        added = self.store.enqueue_in(conn, [r for r in rows if r not in paced + held], now)
        return (added + sum(self.queue_in(conn, r, now, interval) for r in paced)
                + sum(self.hold_in(conn, r, now, now + hold) for r in held))

    def hold_in(self, conn: Connection, row: OutboxMessage, now: datetime, due: datetime
                ) -> int:
        """Queue a village's update whose only news is that its expected restoration time is
        no longer known (the record that gave it ended): of which only the latest matters,
        due at ``due``. Its 恢复送电, or an update with news, queued meanwhile supersedes it
        when delivered (:func:`~outage_sentinel.ordering.held_superseded`): a record's end is
        often the power coming back a poll later. Returns 1, or 0 when it was queued already."""
        row = row.but(payload={**row.payload, LATEST_ONLY: True})
        row_id = self.store.enqueue_one_in(conn, row, now)
        if row_id is None:
            return 0
        self.store.wait_in(conn, row_id, due, (
            "held: its only news is that the expected restoration time is no longer known; "
            "the village's restoration or other news before then supersedes it"))
        self.log.info("void_etr_held", incident_id=row.incident_id, revision=row.revision,
                      village=row.payload.get("village"), due=due.isoformat())
        return 1

    def queue_in(self, conn: Connection, row: OutboxMessage, now: datetime,
                 interval: timedelta) -> int:
        """Queue one summary: the earlier ones of its chain not sent yet superseded by it, and
        it due when :func:`summary_due` says. Returns 1, or 0 when it was queued already."""
        row = row.but(payload={**row.payload, LATEST_ONLY: True})
        row_id = self.store.enqueue_one_in(conn, row, now)
        if row_id is None:
            return 0
        replaced = self.store.supersede_earlier_in(
            conn, row_id, row.incident_id, row.recipient, (SUMMARY,), now,
            f"superseded by #{row_id} ({row.purpose}) before it could be sent")
        last = self.store.last_gone_in(conn, row.incident_id, row.recipient, WHOLE_SUMMARIES)
        said = None if last is None else (last[0], summary_state(last[1].payload))
        due = summary_due(summary_state(row.payload), said, now, interval)
        if last is not None and due > now:
            self.store.wait_in(conn, row_id, due, (
                f"waits for the summary interval: #{last[1].id} ({last[1].purpose}) went at "
                f"{last[0].isoformat(timespec='seconds')}"))
        if replaced or due > now:
            self.log.info("summary_paced", incident_id=row.incident_id, revision=row.revision,
                          superseded=replaced, due=due.isoformat())
        return 1


class RevisionWriter:
    """Owns writing an incident revision inside the processor's transaction: the notices it
    sends and what they hold back or take back, its outbox rows and summary, the incident row
    and the earlier calls it took in, its log steps, and the crew and care steps it sets going
    — with the faults it queues for a crew (auto-dispatch, once the batch is in). One per
    processor."""

    def __init__(self, owner: RevisionOwner) -> None:
        self.owner = owner
        self.store, self.lifecycle, self.config = owner.store, owner.lifecycle, owner.config
        self.etr_step = owner.etr_step
        # The processor's steps log under its name, wherever their code lives.
        self.log = get_logger(component="processor")
        #: Faults folded in the batch under way that may need a crew (in order).
        self.waiting: dict[str, None] = {}
        #: The villages' notices a round gathers, queued when it ends.
        self.owed = OwedNotices(owner, self.log)
        #: The command centre's summaries, one per incident per interval.
        self.summaries = PacedSummaries(owner.store, owner.config, self.log)

    @property
    def topology(self) -> Topology:
        return self.owner.topology

    @property
    def planner(self) -> LiaisonPlanner:
        return self.owner.planner

    def write(self, conn: Connection, current: Incident | None, after: Incident, f: Fold
              ) -> Incident:
        """Write ``after``, the incident after the event (estimate and revision, from
        ``current``), with its notices and its log steps; returns it as written."""
        event, now = f.event, f.now
        forgone = self.owed.before(conn, current, after, f)
        notices, after = self._planned_notices(conn, current, after, f, forgone)
        told = self.as_told_back(conn, current, after, notices, now)
        owed = f.rnd.owed is not None and gathered(current, after, notices)
        rows = self._outbox_rows(conn, current, after, [] if owed else notices, f, told)
        if owed:
            f.rnd.owe(after, notices, told)
        self._save_incident(conn, current, after, f)
        self._log_steps(conn, current, after, event, now)
        added = self.summaries.enqueue_in(conn, rows, now) + self.owed.overtaken_in(
            conn, current, after, notices, f)
        self.lifecycle.start_moved_in(conn, current, after, now)  # old start's reminders
        self._crew_and_care_steps(conn, current, after, f)
        if current is None or current.revision != after.revision:
            self.log.info("incident_revised", source=event.source, event_id=event.event_id,
                          at=now.isoformat(),
                          feeder=f.resolved.feeder, incident_id=after.id,
                          revision=after.revision, status=after.status,
                          fault_device=after.fault_device,
                          transformers=len(after.estimate.transformers),
                          customers=after.estimate.customers,
                          villages=len(after.estimate.villages),
                          notices=[f"{n.purpose}:{len(n.villages)}" for n in notices],
                          queued=added, owed=owed)
        return after

    # -- the notices ----------------------------------------------------------------------------

    def _planned_notices(self, conn: Connection, current: Incident | None, after: Incident,
                         f: Fold, forgone: tuple[str, ...]) -> tuple[list[Notice], Incident]:
        """The notices ``after`` sends, and the incident as they leave it: no "power back" to
        a village never told of the outage (:meth:`OwedNotices.never_told_back`) nor, held
        back, to one dark in another incident (but work not begun called off: :func:`work_ahead`),
        planned work past its stop unannounced, withdrawn inferences and cancellations taken back."""
        event, rnd, now = f.event, f.rnd, f.now
        notices, after = plan_notices(current, after, self.topology, self.etr_step)
        notices, after = self.owed.never_told_back(conn, after, notices, f, forgone)
        held: tuple[str, ...] = ()
        if any(n.purpose in BACK_NOTICES for n in notices):  # only then: a storm's rounds
            # Work called off before it began speaks of its day, not of the supply now.
            dark = self.dark_elsewhere(conn, after, now, rnd) \
                - work_ahead(notices, after, now, self.topology)
            notices, after, held = hold_back(notices, after, dark)
        if held:
            keep_held_in(self.store, conn, after.id, held, now)
        notices, after = self._past_stop(conn, after, notices, f)
        after = self.take_back_withdrawn(conn, after, notices, now)
        if after.status == "cancelled" and current is not None and current.status == "active":
            notices = self.lifecycle.take_back_in(conn, after, notices, now, actor_of(event),
                                                  source=event.source)
        if after.status == "cancelled" and (current is None or current.status != "cancelled"):
            self.give_back(conn, after, now, actor_of(event), rnd)
        return notices, after

    def _past_stop(self, conn: Connection, after: Incident, notices: list[Notice], f: Fold
                   ) -> tuple[list[Notice], Incident]:
        """Planned work first seen after its stop tells no village of an outage unless a
        report says its area is still dark (:func:`past_stop_unannounced`); the incident is
        kept for the command centre and its log says whom it did not tell."""
        if not any(n.purpose == "outage" for n in notices):
            return notices, after
        dark = reported_dark([after, *f.rnd.open_all(conn)])
        notices, after, left = past_stop_unannounced(notices, after, f.now, self.topology, dark)
        if left:
            self.log.info("past_stop_not_announced", incident_id=after.id, villages=list(left),
                          etr=after.etr.isoformat() if after.etr else None)
            self.store.log_in(conn, after.id, f.now, "past_stop", actor_of(f.event), "",
                              {"villages": list(left)})
        return notices, after

    def take_back_withdrawn(self, conn: Connection, after: Incident, notices: list[Notice],
                             now: datetime) -> Incident:
        """A village whose areas were only inferred and that the estimate dropped is not
        told it was a mistake (it was told "may be affected"), but what was queued for it and
        not sent yet is taken back: sent after the estimate moved away, a "may be affected"
        is only noise (a lone record and its calls folded in one round told the village
        beside it, whose fuse the calls had already ruled out). A village nothing reached is
        no longer counted as told: inferred again, it hears of the outage afresh."""
        villages = [v for n in notices if n.purpose == "withdrawn" for v in n.villages]
        recipients = {v: self.planner.village_recipients(v) for v in villages}
        if not any(recipients.values()):
            return after
        taken = self.store.withdraw_pending_in(
            conn, after.id, ("outage", "update", "care"), now,
            f"the estimate no longer has it off (revision {after.revision})",
            [r for rs in recipients.values() for r in rs])
        if not taken:
            return after
        told = self.store.told_in(conn, after.id, ("outage", "update"))
        untold = {v for v, rs in recipients.items() if not told.intersection(rs)}
        self.log.info("inferred_notices_taken_back", incident_id=after.id,
                      villages=villages, messages=taken, never_told=sorted(untold))
        return replace(after, withdrawn_villages=tuple(
            v for v in after.withdrawn_villages if v not in untold))

    def take_back_corrected(self, conn: Connection, inc: Incident, notices: list[Notice],
                            now: datetime) -> tuple[list[Notice], set[str]]:
        """Villages the command centre took out of ``inc`` (a ``corrected`` notice): what was
        queued for them and not sent — the outage notice waiting for quiet hours, a channel,
        a rate limit or a digest; an update; the care list; progress — is withdrawn (kept for
        the command centre, never sent), and the 【更正】 goes only to the recipients an
        outage notice reached or may have reached (one in flight, one whose send's outcome
        is unknown), per recipient: a correction of a notice never read is itself false.
        Returns the notices without the villages nobody in them was told of the outage, and
        the recipients owed the correction (the caller keeps only their rows)."""
        villages = [v for n in notices if n.purpose == "corrected" for v in n.villages]
        recipients = {v: self.planner.village_recipients(v) for v in villages}
        everyone = [r for rs in recipients.values() for r in rs]
        if not everyone:
            return notices, set()
        taken = self.store.withdraw_pending_in(
            conn, inc.id, None, now, f"the command centre took the village out of the "
            f"incident before it went (revision {inc.revision})", everyone, but=BACK_PURPOSES)
        # Read after the take-back: a send claimed meanwhile is seen in flight, so told.
        owed = owed_correction(self.store.heard_in(conn, inc.id, everyone))
        untold = sorted(v for v, rs in recipients.items() if not owed.intersection(rs))
        if taken or untold:
            self.log.info("corrected_notices_taken_back", incident_id=inc.id,
                          villages=villages, messages=taken, never_told=untold,
                          corrected=sorted(owed))
        kept = [replace(n, villages=tuple(v for v in n.villages if v not in untold))
                if n.purpose == "corrected" else n for n in notices]
        return [n for n in kept if n.villages], owed

    def as_told_back(self, conn: Connection, current: Incident | None, after: Incident,
                     notices: list[Notice], now: datetime) -> Incident | None:
        """``current`` as its villages off again were told: one whose "power back" (or
        "cancelled") never went out — waiting in the outbox for quiet hours, a channel, a
        retry — was never told so; that notice is taken back (it would be superseded at its
        last look anyway) and the outage notice it gets now says no "更正：此前通知本村已恢复送电"
        of a word it never had."""
        if current is None or not current.restored_villages:
            return current
        again = {v for n in notices if n.purpose == "outage" for v in n.villages
                 if v in current.restored_villages}
        recipients = {v: self.planner.village_recipients(v) for v in sorted(again)}
        # The latest "back" each recipient was sent (a first off-and-back may have reached
        # it): untold if, for every recipient that has one, it is still waiting.
        waiting = self.store.latest_waiting_in(
            conn, after.id, BACK_NOTICES, [r for rs in recipients.values() for r in rs])
        untold = [v for v, rs in recipients.items()
                  if any(r in waiting for r in rs) and all(waiting.get(r, True) for r in rs)]
        if not untold:
            return current
        taken = self.store.withdraw_pending_in(
            conn, after.id, BACK_NOTICES, now,
            f"the village is off again before it went out (revision {after.revision})",
            [r for v in untold for r in recipients[v]])
        self.log.info("back_notices_taken_back", incident_id=after.id, villages=untold,
                      messages=taken)
        return replace(current, restored_villages=tuple(
            v for v in current.restored_villages if v not in untold))

    def dark_elsewhere(self, conn: Connection, inc: Incident, now: datetime,
                       rnd: RoundCache | None = None) -> set[str]:
        """Villages of ``inc``'s scope with an area still off in another open incident (any
        open incident, whatever feeder it is filed under: a record filed under its own line
        may name this village's areas; planned work once started)."""
        topo, rnd = self.topology, rnd or RoundCache(self.store)
        villages = set(villages_of_scope(inc, topo))
        return dark_villages(rnd.open_all(conn), now, topo, exclude=inc.id) & villages

    # -- the rows and the log -------------------------------------------------------------------

    def _outbox_rows(self, conn: Connection, current: Incident | None, after: Incident,
                     notices: list[Notice], f: Fold, told: Incident | None
                     ) -> list[OutboxMessage]:
        """The liaisons' notices (worded after what the villages were ``told``: the
        incident before, as far as its notices went out) and the command centre's summary of
        the revision (:meth:`~outage_sentinel.summaries.Summaries.of_revision`: never the
        reason it is not written)."""
        rows = self.planner.rows(after, notices, f.now, previous=told)
        crew = self.store.crew_of_in(conn, after.id)
        return rows + self.lifecycle.summaries.of_revision(current, after, crew, f.unplaced)

    def _save_incident(self, conn: Connection, current: Incident | None, after: Incident,
                       f: Fold) -> None:
        """Write the incident (with its priority while on), and mark the earlier trouble calls
        it took in as processed into it."""
        now, rnd = f.now, f.rnd
        extra = {"priority": self.lifecycle.priority(after, now).score} \
            if after.status == "active" else {}
        self.store.save_incident_in(conn, incident_columns(after, now, **extra))
        rnd.saved(current, after, now)
        for call, _ in f.calls:
            self.store.mark_processed_in(conn, call.row_id, after.id)
            rnd.done(call, after.id)
        if f.calls:
            self.log.info("earlier_calls_joined", incident_id=after.id,
                          calls=[c.event.event_id for c, _ in f.calls])

    def _log_steps(self, conn: Connection, before: Incident | None, after: Incident,
                   event: Any, now: datetime) -> None:
        """Record the lifecycle steps this change made (the report's raw material)."""
        actor = actor_of(event)
        if before is None:
            self.store.log_in(conn, after.id, now, "detected", actor, "",
                              {"transformers": list(after.off),
                               "customers": self.topology.customers_of(after.off)})
        # An operator's note on the step (why, who said so) is kept with the step it explains.
        note = redact(str(event.raw.get("note") or "")) if event.source == OPERATOR_SOURCE \
            else ""
        self._log_restoration(conn, before, after, actor, now, note)
        self._log_reissued(conn, before, after, actor, now)
        if (disputed := disputed_by_records(before, after, self.topology)) is not None:
            note = UNRELEASED_NOTE if "unreleased" in disputed else ""
            self.store.log_in(conn, after.id, now, "meters_disagree", actor, note, disputed)
        old_stage = before.stage if before is not None else None
        if after.stage != old_stage and after.stage in ("confirmed", "cancelled"):
            self.store.log_in(conn, after.id, now, after.stage, actor)
        if before is not None and before.etr != after.etr and after.status == "active":
            self.store.log_in(conn, after.id, now, "etr_changed", actor, "",
                              {"from": before.etr.isoformat() if before.etr else None,
                               "to": after.etr.isoformat() if after.etr else None})
        if before is not None and before.device_set and not after.device_set:
            # The outage grew past the fault point the command centre set: the estimate is
            # the localiser's again (the summary says 推断, the crew gets new orders).
            self.store.log_in(conn, after.id, now, "device_set_dropped", actor,
                              "reported areas outside the fault point set",
                              {"was": list(before.device_set), "by": before.device_set_by})
            self.log.warning("device_set_dropped", incident_id=after.id,
                             was=list(before.device_set))

    def _log_reissued(self, conn: Connection, before: Incident | None, after: Incident,
                      actor: str, now: datetime) -> None:
        """Log the records this change took as re-issued under a new id (the command centre
        sees which record continues which, and can cancel or correct the work)."""
        for old, by in superseded_now(before, after).items():
            self.store.log_in(conn, after.id, now, "reissued", actor, "",
                              {"record": old, "by": by})
            self.log.info("planned_work_reissued", incident_id=after.id, record=old, by=by)

    def _log_restoration(self, conn: Connection, before: Incident | None, after: Incident,
                         actor: str, now: datetime, note: str = "") -> None:
        called_off = set(called_off_areas(after))
        if after.status == "active" and called_off.intersection(restoration_step(before, after)):
            left = [t for t in restoration_step(before, after) if t in called_off]
            self.store.log_in(conn, after.id, now, "called_off", actor, note,
                              {"transformers": left,
                               "customers": self.topology.customers_of(left)})
        step = tuple(t for t in restoration_step(before, after) if t not in called_off)
        if step:
            stage = "restored" if after.status == "restored" else "partially_restored"
            # Logged at the time supply came back (an operator may record it later).
            back_at = max(after.restored[t] for t in step)
            self.store.log_in(conn, after.id, min(back_at, now), stage, actor, note,
                              {"transformers": list(step),
                               "customers": self.topology.customers_of(step),
                               "recorded_at": now.isoformat()})
        elif after.status == "restored" and (before is None or before.status != "restored"):
            self.store.log_in(conn, after.id, now, "restored", actor, note, {"transformers": [],
                                                                             "customers": 0})
        confirmed = confirmed_back(before, after)
        if confirmed:  # counted back unconfirmed at the end; now someone vouches for it
            back_at = max(after.restored[t] for t in confirmed)
            self.store.log_in(conn, after.id, min(back_at, now), "confirmed_back", actor, note,
                              {"transformers": list(confirmed),
                               "customers": self.topology.customers_of(confirmed),
                               "recorded_at": now.isoformat()})

    def hand_on(self, conn: Connection, prev: Incident, areas: tuple[str, ...], by: Incident,
                f: Fold) -> None:
        """``by``, a new outage with evidence that ``areas`` are off, takes on those ``prev``
        counted back unconfirmed (:func:`continued_in`): ``prev`` stops asking about them and
        counts them off until ``by`` began, and its log says which incident has them now."""
        after = continued_in(prev, areas, by.id, by.start, f.now)
        if after is prev:
            return
        taken = [t for t in prev.unconfirmed if t in after.continued]
        self._save_beside(conn, prev, after, f.now, f.rnd)
        self.store.log_in(conn, prev.id, max(after.restored[t] for t in taken), "continued",
                          actor_of(f.event), "",
                          {"transformers": taken, "by": by.id,
                           "customers": self.topology.customers_of(taken),
                           "recorded_at": f.now.isoformat()})
        self.log.info("unconfirmed_areas_continued", incident_id=prev.id, by=by.id,
                      transformers=taken)

    def _save_beside(self, conn: Connection, before: Incident, after: Incident, now: datetime,
                     rnd: RoundCache | None) -> None:
        """Write ``after``, another incident than the one being revised, and keep the round's
        view of it current."""
        self.store.save_incident_in(conn, incident_columns(after, now))
        if rnd is not None:
            rnd.saved(before, after, now)

    def give_back(self, conn: Connection, cancelled: Incident, now: datetime, actor: str,
                  rnd: RoundCache | None = None) -> None:
        """``cancelled`` was called off: the incidents it took unconfirmed areas from
        (:meth:`hand_on`) count them unconfirmed again (:func:`handed_back`), and their logs
        say so (``continued_undone``)."""
        since = cancelled.start - HAND_BACK_LOOKBACK
        # Any feeder: a liaison's answer may have joined an outage filed under another line.
        for row in self.store.load_incidents(conn=conn, open_only=False, status="restored",
                                             ended_after=since):
            if cancelled.id not in (row["state"].get("continued") or {}).values():
                continue  # read without parsing: a storm's day holds hundreds of these
            prev = rnd.of_row(row) if rnd is not None else Incident.from_json(row["state"])
            after = handed_back(prev, cancelled.id, now)
            if after is prev or prev.stage == "closed":
                continue
            taken = [t for t in prev.continued if t not in after.continued]
            self._save_beside(conn, prev, after, now, rnd)
            self.store.log_in(conn, prev.id, now, "continued_undone", actor, "",
                              {"transformers": taken, "by": cancelled.id})
            self.log.info("unconfirmed_areas_given_back", incident_id=prev.id,
                          by=cancelled.id, transformers=taken)

    # -- crews and care -------------------------------------------------------------------------

    def _crew_and_care_steps(self, conn: Connection, current: Incident | None,
                             after: Incident, f: Fold) -> None:
        """What the revision sets going for crews and care: the crew told power is back, a
        revived incident's crew freed, a fault queued for a crew, the villages it grew to
        cared for (their outage notices the round owes queued first: the care list follows
        the notice), or the crew on its way redirected."""
        event, now = f.event, f.now
        if current is not None and current.status == "active" and after.status == "restored":
            self._tell_crew_power_back(conn, after, event, now)
        if current is not None and current.status != "active" and after.status == "active":
            self.lifecycle.revived_in(conn, after, now, actor_of(event))
        if after.status == "active" and (after.off or after.feeder != "?"):
            grew = current is not None and bool(set(villages_off(after, self.topology)) - set(
                villages_off(current, self.topology)))
            # A crew sent before the outage grew gets new orders; one sent now has them all.
            sent_before = grew and self.store.crew_of_in(conn, after.id) is not None
            if self._may_need_crew(after):  # sent once every event of the call is in
                self.waiting[after.id] = None
            if grew:
                if sent_before:
                    self.owed.settle(conn, f.rnd, now)
                self.lifecycle.care_for_new_villages_in(conn, after, now, sent_before)
            elif current is not None:  # the crew on its way follows the estimate
                self.lifecycle.redirect_in(conn, current, after, now)

    def _tell_crew_power_back(self, conn: Connection, inc: Incident, event: OutageEvent,
                              now: datetime) -> None:
        """The crew sent to ``inc`` hears that its power is back from a source it may not
        know of (the feed, meters, a liaison): not when the command centre recorded it (often
        on the crew's own word) or the crew did."""
        crew = self.store.crew_of_in(conn, inc.id)
        if crew is None or event.source == OPERATOR_SOURCE:
            return
        by = restored_by(event.source, self.planner.renderer.language, event.signal)
        self.lifecycle.crew_notices.power_back_in(conn, inc, crew, now, by)

    def _may_need_crew(self, inc: Incident) -> bool:
        """A confirmed fault the daemon sends a crew to itself (one with a line to send it to)."""
        return (self.config.lifecycle.auto_dispatch and inc.kind == "fault"
                and inc.status == "active" and inc.stage in WAITING_STAGES
                and bool(inc.off or inc.feeder != "?"))

    def dispatch_waiting(self, now: datetime) -> None:
        """Send crews to the faults the batch folded that have none, once every event of the
        batch is in: a crew freed by a restoration in the same poll (folded last, as endings
        are) is free for them. Dispatched as they were folded, the new outage found that crew
        busy, took a farther one or told the command centre none was free. A failure is
        logged; the clock's check dispatches the fault a minute later."""
        waiting, self.waiting = list(self.waiting), {}
        for incident_id in waiting:
            try:
                with self.store.transaction() as conn:
                    inc, row = self.lifecycle.load_in(conn, incident_id)
                    if self._may_need_crew(inc) and row.get("crew_id") is None:
                        self.lifecycle.dispatch_in(conn, inc, row, now, "daemon")
            except Exception:
                self.log.exception("auto_dispatch_failed", incident_id=incident_id)

