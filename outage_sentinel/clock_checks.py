"""The lifecycle's clock checks: planned-outage reminders, crew arrival deadlines, overruns.

The clock-driven steps of :class:`outage_sentinel.lifecycle.Lifecycle` (its ``check``, which
:class:`outage_sentinel.lifecycle_clock.LifecycleClock` runs on a schedule): the reminder due
for planned or temporary work, decided again on the incident locked in the transaction that
queues it; a fault waiting for a crew dispatched when one is free (auto-dispatch); an arrival
deadline at risk, passed, or without a crew escalated to the command centre, once per deadline;
a village still off past the expected restoration time it was told followed up, once per time
told (:mod:`outage_sentinel.overruns`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel import crew as crews
from outage_sentinel import priority as prio
from outage_sentinel.config import Config
from outage_sentinel.crew_dispatch import CrewDispatch, escalation_key
from outage_sentinel.incidents import Incident, Notice, villages_off
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.logs import get_logger
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.overruns import Overruns
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology


class ChecksOwner(Protocol):
    """What the clock checks read of the lifecycle: the store, the topology and the planner (a
    topology reload replaces these two), the config and dispatch parameters, the crew
    dispatcher, and the incident row, dispatch, priority and command-centre helpers every step
    shares."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner
    config: Config
    params: crews.DispatchParams
    dispatcher: CrewDispatch

    def load_in(self, conn: Connection, incident_id: str) -> tuple[Incident, dict[str, Any]]: ...

    def dispatch_in(self, conn: Connection, inc: Incident, row: dict[str, Any], now: datetime,
                    actor: str, crew_id: str | None = None, note: str = "") -> Incident: ...

    def priority(self, inc: Incident, now: datetime) -> prio.Priority: ...

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[OutboxMessage]: ...


class ClockChecks:
    """Runs the lifecycle's clock checks: reminders of planned work, faults waiting for a crew
    dispatched, arrival deadlines at risk escalated (:attr:`at_risk` counts them). One per
    lifecycle."""

    def __init__(self, owner: ChecksOwner) -> None:
        self.owner = owner
        #: Fault incidents whose arrival deadline was at risk or missed at the last check.
        self.at_risk = 0
        # The lifecycle's steps log under its name, wherever their code lives.
        self.log = get_logger(component="lifecycle")
        #: The villages' expected restoration times gone by, followed up.
        self.overruns = Overruns(owner)

    def check(self, now: datetime) -> int:
        """Planned-outage reminders, crew deadlines, the villages' expected restoration times
        gone by (:class:`~outage_sentinel.overruns.Overruns`); returns how many rows were
        queued.

        The open incidents are read without a lock, only to find the work a reminder may be
        due for; each reminder is decided again on the incident locked in the transaction
        that queues it (:meth:`remind_in`): a cancellation or a new start committed meanwhile
        by the poll, the CLI or the board must win, or the village reads 【停电取消】 and
        then a reminder that the work goes ahead."""
        store = self.owner.store
        queued = self._check_deadlines(now)
        hours = self.owner.config.planned.reminder_hours
        for row in store.load_incidents(open_only=True):
            if row["kind"] == "fault":
                continue
            inc = Incident.from_json(row["state"])
            if due_reminder(inc, hours, now) is None:
                continue
            with store.transaction() as conn:
                queued += self.remind_in(conn, inc.id, inc.start, now)
        return queued + self.overruns.check(now)

    def remind_in(self, conn: Connection, incident_id: str, start: datetime, now: datetime
                  ) -> int:
        """Queue the reminder due for ``incident_id`` if, locked and read again, it is still
        active work starting at ``start`` (moved meanwhile: the next check reminds of the new
        start). Returns how many rows were queued (none when this start's was already)."""
        inc, _row = self.owner.load_in(conn, incident_id)
        purpose = due_reminder(inc, self.owner.config.planned.reminder_hours, now)
        if inc.start != start or purpose is None:
            return 0
        return self.owner.store.enqueue_in(conn, self._reminder_rows(inc, purpose, now), now)

    def _check_deadlines(self, now: datetime) -> int:
        """Dispatch waiting faults when a crew is free; escalate arrival deadlines at risk
        (:attr:`at_risk` counts them)."""
        from outage_sentinel.lifecycle import WAITING_STAGES, held_to_deadline  # (cycle)

        life, store = self.owner, self.owner.store
        queued = at_risk = 0
        for row in store.load_incidents(open_only=True):
            # On site, the deadline is met; partly restored, the areas still dark keep the
            # commitment until a crew is there (:meth:`_crew_there`).
            if not held_to_deadline(row["kind"], row["stage"]) or row["stage"] == "on_site":
                continue
            with store.transaction() as conn:
                inc, current = life.load_in(conn, row["id"])
                if inc.status != "active" or self._crew_there(inc, current):
                    continue
                if (current["crew_id"] is None and inc.stage in WAITING_STAGES
                        and life.config.lifecycle.auto_dispatch
                        and (inc.off or inc.feeder != "?")):  # unplaced: a person decides
                    inc = life.dispatch_in(conn, inc, current, now, "daemon")
                    current = dict(current, crew_id=store.crew_of_in(conn, inc.id))
                deadline, area, travel = life.dispatcher.deadline_in(conn, inc, current, now)
                if not crews.deadline_at_risk(deadline, now, travel,
                                              life.params.at_risk_margin_minutes, False):
                    continue
                at_risk += 1
                queued += self._escalate_in(conn, inc, current, deadline, area, travel, now)
        self.at_risk = at_risk
        return queued

    def _escalate_in(self, conn: Connection, inc: Incident, current: dict[str, Any],
                    deadline: datetime, area: str, travel: float | None, now: datetime) -> int:
        """Tell the command centre ``inc``'s arrival deadline is at risk, passed, or without a
        crew — naming the crew on its way, with its ETA ("no crew" only when none holds
        it) — once per deadline (an outage off again after it was over is warned of again).
        Returns the rows queued."""
        life = self.owner
        reason = "overdue" if now >= deadline else (
            "at_risk" if current.get("crew_id") else "no_crew")
        pr = life.priority(inc, now)
        held = life.dispatcher.held_choice(inc, current.get("crew_id"), area, travel, now)
        ctx = crews.escalation_context(life.topology, inc, pr, reason, deadline, area, now,
                                       life.planner.tz, held, life.dispatcher.busy(conn, inc.id),
                                       life.planner.renderer.language, life.params,
                                       clock_flagged=life.planner.clock_flagged())
        body = life.planner.renderer.render("command_escalation", **ctx)
        # its deadline kept, for the minutes to be counted again when it goes (held, retried)
        added = life.store.enqueue_in(conn, life.command_rows(
            inc, f"escalation_{reason}", body, revision=escalation_key(deadline),
            extra=crews.deadline_params(ctx)), now)
        if added:
            life.store.log_in(conn, inc.id, now, "escalated", "daemon", reason,
                              {"deadline": deadline.isoformat(), "priority": pr.score})
            self.log.warning("escalated", incident_id=inc.id, reason=reason,
                             deadline=deadline.isoformat())
        return added

    @staticmethod
    def _crew_there(inc: Incident, current: dict[str, Any]) -> bool:
        """The crew of a partly restored fault has reported it is on site (that stage does
        not say whether it came)."""
        return bool(current.get("crew_id")) and inc.crew_progress == "on_site"

    def _reminder_rows(self, inc: Incident, purpose: str, now: datetime) -> list[OutboxMessage]:
        """The ``purpose`` reminder of ``inc`` to the villages it turns off."""
        villages = tuple(villages_off(inc, self.owner.topology))
        # Keyed by the start it announces: once per start, whatever revisions follow (a
        # restart queues nothing twice), and again when the work moves to another start.
        revision = reminder_revision(inc.start)
        return [r.but(revision=revision, purpose=purpose)
                for r in self.owner.planner.rows(inc, [Notice("reminder", villages)], now)]


def reminder_revision(start: datetime) -> int:
    """The outbox revision of a reminder of work starting at ``start``: its minutes since
    1970 (UTC), so that the outbox's unique key holds one reminder per start and purpose —
    a postponed job's reminders for the new date are new messages, a restart's are not."""
    return int(start.timestamp()) // 60


def due_reminder(inc: Incident, hours: Sequence[float], now: datetime) -> str | None:
    """The purpose of the reminder due for ``inc`` at ``now`` (``reminder_24h``), or ``None``:
    not active planned or temporary work, started already, no window reached, or the first
    notice itself came inside the window. Only the nearest due window counts: one reminder
    a check, and never a day-before one within the last hour."""
    if inc.kind == "fault" or inc.status != "active" or inc.start <= now:
        return None
    announced = inc.created_at or inc.start
    for h in sorted(hours):
        due = inc.start - timedelta(hours=h)
        if due <= now and announced < due:
            return f"reminder_{h:g}h"
    return None
