"""Incident lifecycle: the steps people take and the clock-driven checks.

detected → confirmed → dispatched → on site → (partially) restored → closed, each step logged
in ``incident_log`` with its time and actor. Steps come from three places:

* the core, while folding events (:mod:`outage_sentinel.incidents`): confirmation by the outage
  system's notice, restoration steps, restoration;
* operators (``outage-sentinel incidents ack|dispatch|arrive|restore|close``), against the same
  database as the running daemon;
* the clock (:meth:`Lifecycle.check`, a scheduler job): planned-outage reminders, crew arrival
  deadlines at risk escalated to the command centre.

Every step that tells someone something writes its outbox rows in the same transaction as the
incident change, with keys that make repeating the step harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from outage_sentinel.config import Config
from outage_sentinel.incidents import ACTIVE_STAGES, Incident, villages_off
from outage_sentinel.liaison import KIND_LABELS, LiaisonPlanner
from outage_sentinel.store import Store, incidents_t
from outage_sentinel.topology import Topology


class LifecycleError(Exception):
    """An operator step that cannot be taken (unknown incident, wrong stage); says why."""


def incident_columns(inc: Incident, now: datetime, **extra: Any) -> dict[str, Any]:
    """The ``incidents`` row for an incident state (lifecycle columns in ``extra``)."""
    row = {
        "id": inc.id, "feeder": inc.feeder, "kind": inc.kind, "status": inc.status,
        "revision": inc.revision, "start": inc.start, "etr": inc.etr, "end_time": inc.end,
        "fault_device": inc.fault_device, "customers": inc.estimate.customers,
        "state": inc.to_json(), "created_at": inc.created_at or now, "updated_at": now,
        "stage": inc.stage, "parent_id": inc.parent_id,
    }
    row.update(extra)
    return row


class Lifecycle:
    """Operator steps and clock checks over the store. One per process."""

    def __init__(self, store: Store, topology: Topology, planner: LiaisonPlanner, config: Config,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.topology = topology
        self.planner = planner
        self.config = config
        self.clock = clock

    # -- helpers ------------------------------------------------------------------------------

    def _load(self, conn: Connection, incident_id: str) -> tuple[Incident, dict[str, Any]]:
        q = select(incidents_t).where(incidents_t.c.id == incident_id)
        if self.store.dialect == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise LifecycleError(f"no incident {incident_id!r}")
        m = dict(row._mapping)
        return Incident.from_json(m["state"]), m

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     subject: str = "") -> list[dict[str, Any]]:
        """Outbox rows for the command centre (none when no command-centre channel is set)."""
        cc = self.config.command_centre
        if cc.channel is None:
            return []
        return [{
            "incident_id": inc.id, "revision": inc.revision if revision is None else revision,
            "recipient": f"command:{cc.target}", "purpose": purpose, "channel": cc.channel,
            "target": cc.target, "audience": "command",
            "subject": subject or body.splitlines()[0], "body": body,
            "payload": {"markdown": body},
        }]

    def summary_rows(self, before: Incident | None, inc: Incident) -> list[dict[str, Any]]:
        """A command-centre summary for every new revision (when enabled)."""
        if not self.config.command_centre.summaries:
            return []
        if before is not None and before.revision == inc.revision:
            return []
        return self.command_rows(inc, "summary", self.render_summary(inc))

    def render_summary(self, inc: Incident, headline: str | None = None) -> str:
        r = self.planner.renderer
        names = [self.topology.villages[v].name for v in inc.estimate.villages
                 if v in self.topology.villages]
        return r.render(
            "command_summary", incident=inc, headline=headline,
            kind_label=KIND_LABELS[r.language].get(inc.kind, inc.kind),
            feeder_label=self.planner.feeder_names.get(inc.feeder, inc.feeder),
            device_label=self.planner._device_label(inc.estimate.devices),
            villages=names, off=len(inc.off),
            customers_off=self.topology.customers_of(inc.off),
            start_local=self.planner._local(inc.start), etr_local=self.planner._local(inc.etr),
            end_local=self.planner._local(inc.end),
            probability=inc.estimate.probability,
        )

    def _save(self, conn: Connection, inc: Incident, now: datetime, **extra: Any) -> None:
        self.store.save_incident_in(conn, incident_columns(inc, now, **extra))

    # -- operator steps -----------------------------------------------------------------------

    def ack(self, incident_id: str, actor: str, note: str = "") -> Incident:
        """Confirm an incident (an operator has seen it and it is real)."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, _ = self._load(conn, incident_id)
            if inc.stage not in ACTIVE_STAGES:
                raise LifecycleError(f"{incident_id} is {inc.stage}; only open incidents can be "
                                     "acknowledged")
            if inc.stage == "detected":
                inc = replace(inc, stage="confirmed")
            self._save(conn, inc, now)
            self.store.log_in(conn, inc.id, now, "confirmed", actor, note)
        return inc

    def arrive(self, incident_id: str, actor: str, note: str = "") -> Incident:
        """The crew reports it is on site."""
        now = self.clock()
        with self.store.transaction() as conn:
            inc, row = self._load(conn, incident_id)
            if inc.stage not in ACTIVE_STAGES:
                raise LifecycleError(f"{incident_id} is {inc.stage}; the crew cannot arrive")
            if inc.stage in ("detected", "confirmed", "dispatched"):
                inc = replace(inc, stage="on_site")
            self._save(conn, inc, now)
            self.store.log_in(conn, inc.id, now, "on_site", actor, note,
                              {"crew": row.get("crew_id")})
        return inc

    def close(self, incident_id: str, actor: str, cause_category: str, note: str = "") -> Incident:
        """Close out (销号) a restored or cancelled incident with its cause category."""
        now = self.clock()
        if not cause_category:
            raise LifecycleError("closing needs a cause category (--cause)")
        with self.store.transaction() as conn:
            inc, _ = self._load(conn, incident_id)
            if inc.stage == "closed":
                raise LifecycleError(f"{incident_id} is already closed")
            if inc.status == "active":
                raise LifecycleError(f"{incident_id} is still active ({len(inc.off)} transformer "
                                     "area(s) off); restore it first")
            inc = replace(inc, stage="closed")
            self._save(conn, inc, now, cause_category=cause_category, closed_at=now)
            self.store.log_in(conn, inc.id, now, "closed", actor, note,
                              {"cause_category": cause_category})
            self.store.enqueue_in(conn, self.command_rows(
                inc, "closed", self.render_summary(inc, headline="closed")), now)
        return inc

    # -- clock checks -------------------------------------------------------------------------

    def check(self, now: datetime | None = None) -> int:
        """Planned-outage reminders; returns how many rows were queued."""
        now = now or self.clock()
        queued = 0
        hours = sorted(self.config.planned.reminder_hours, reverse=True)
        for row in self.store.load_incidents(open_only=True):
            inc = Incident.from_json(row["state"])
            if inc.kind == "fault" or inc.status != "active" or inc.start <= now:
                continue
            for h in hours:
                due = inc.start - timedelta(hours=h)
                announced = inc.created_at or inc.start
                if not (due <= now < inc.start) or announced >= due:
                    continue  # not yet due, or the first notice already came inside the window
                purpose = f"reminder_{h:g}h"
                with self.store.transaction() as conn:
                    rows = self._reminder_rows(inc, purpose, now)
                    queued += self.store.enqueue_in(conn, rows, now)
                break  # only the nearest due reminder
        return queued

    def _reminder_rows(self, inc: Incident, purpose: str, now: datetime) -> list[dict[str, Any]]:
        from outage_sentinel.incidents import Notice

        villages = tuple(villages_off(inc, self.topology))
        rows = self.planner.rows(inc, [Notice("reminder", villages)], now)
        for r in rows:
            # Revision 0: a reminder goes once per incident, whatever revisions follow.
            r["revision"] = 0
            r["purpose"] = purpose
        return rows


def parse_actor(actor: str | None) -> str:
    import getpass

    return f"operator:{actor or getpass.getuser()}"


def stage_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.get("stage") or "detected"] = out.get(r.get("stage") or "detected", 0) + 1
    return out
