"""What a crew already sent is told when its orders change: stood down (the incident cancelled
or given to another crew) or power back by other hands while it is on its way.

A dispatch is a promise to a crew as much as an outage notice is to a village: a crew driving to
a false alarm, or to a fault someone else's switching already brought back, is told. Messages
go by the crew's own channel (by SMS through the ``command`` template, its summary the first
line, or for power back what the SMS must not lose: the areas nobody confirmed and that the
orders stand, :func:`sms_params.power_back_summary`), each logged in the incident's log. A
crew hears of changes only to work it was told of (:meth:`CrewNotices.told_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel import crew as crews
from outage_sentinel.incidents import Incident
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.logs import get_logger
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.sms_params import command_params, power_back_summary
from outage_sentinel.store import Store
from outage_sentinel.topology import Crew, Topology


class CrewsOwner(Protocol):
    """Where the crew notices read the store, the topology and the renderer (the lifecycle:
    a topology reload replaces its topology and planner)."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner


class CrewNotices:
    """Stand-down and power-back messages to a crew that was told to go."""

    def __init__(self, owner: CrewsOwner) -> None:
        self.owner = owner
        self.log = get_logger(component="crew_notices")

    def crew(self, crew_id: str | None) -> Crew | None:
        return next((c for c in self.owner.topology.crews if c.id == crew_id), None)

    def told_of(self, conn: Connection, incident_id: str, crew_id: str) -> bool:
        """Whether ``crew_id`` was told to go to ``incident_id``: a dispatch of it sent, or
        tried (it may have reached the crew). Only then may a message speak to the crew of
        that work — a stand-down, or orders for other work that pull it off it (请暂停…):
        orders held and withdrawn, or taken back before they went, told it nothing, and a
        message about them would be about work it never heard of."""
        return f"crew:{crew_id}" in self.owner.store.told_in(conn, incident_id, ("dispatch",))

    def stand_down_in(self, conn: Connection, inc: Incident, crew_id: str, now: datetime,
                      actor: str, reason: str, other: str | None = None, note: str = "",
                      by: str = "") -> bool:
        """``crew_id`` is no longer wanted on ``inc`` (``reason`` in
        :data:`crew.STAND_DOWN_REASONS`; ``other`` the crew it went to): a dispatch not sent
        yet is withdrawn, a crew that was or may have been told gets a stand-down message.
        Logged either way; returns whether a message was queued."""
        store, recipient = self.owner.store, f"crew:{crew_id}"
        told = self.told_of(conn, inc.id, crew_id)
        store.withdraw_pending_in(conn, inc.id, ("dispatch",), now,
                                  f"crew stood down: {reason}", recipients=(recipient,),
                                  actor=actor)
        store.log_in(conn, inc.id, now, "stood_down", actor, note,
                     {"crew": crew_id, "reason": reason, "to": other, "told": told})
        crew = self.crew(crew_id)
        if not told or crew is None:
            return False
        ctx = crews.stand_down_context(self.owner.topology, inc, crew, reason, now,
                                       self.owner.planner.tz, self.crew(other), note, by,
                                       clock_flagged=self.owner.planner.clock_flagged())
        self._send(conn, inc, crew, "stand_down", "crew_stand_down", ctx, now)
        self.log.info("crew_stood_down", incident_id=inc.id, crew=crew_id, reason=reason)
        return True

    def power_back_in(self, conn: Connection, inc: Incident, crew_id: str, now: datetime,
                      by: str, taken_out: Sequence[str] = ()) -> bool:
        """``inc`` is restored by other hands (``by``: a source or person) while ``crew_id``,
        told to go, may be on its way: it hears when and from whom; its orders stand until the
        command centre says otherwise. Orders still to be sent count: they go out all the
        same, and this message after them (one chain, sent in order); orders the command
        centre holds or silenced do not. ``taken_out``: areas its orders named off that the
        command centre took out of the outage, ending it (the template's ``taken_out``, their
        names: never off, not back). Returns whether a message was queued."""
        crew, store = self.crew(crew_id), self.owner.store
        orders = store.told_in(conn, inc.id, ("dispatch",)) | store.pending_in(
            conn, inc.id, ("dispatch",))
        if crew is None or f"crew:{crew_id}" not in orders:
            return False
        topo = self.owner.topology
        ctx = crews.power_back_context(topo, inc, crew, by, now, self.owner.planner.tz,
                                       clock_flagged=self.owner.planner.clock_flagged(),
                                       taken_out=taken_out)
        summary = power_back_summary(by, ctx["unconfirmed"],
                                     self.owner.planner.renderer.language)
        self._send(conn, inc, crew, "crew_power_back", "crew_power_back", ctx, now, summary)
        return True

    def _send(self, conn: Connection, inc: Incident, crew: Crew, purpose: str, template: str,
              ctx: dict[str, Any], now: datetime, summary: str = "") -> None:
        """Queue ``template`` to ``crew``; by SMS, ``summary`` (else the first line)."""
        body = self.owner.planner.renderer.render(template, **ctx)
        subject = body.splitlines()[0]
        self.owner.store.enqueue_in(conn, [OutboxMessage(
            incident_id=inc.id, revision=inc.revision, recipient=f"crew:{crew.id}",
            purpose=purpose, channel=crew.channel, target=crew.target or crew.phone,
            audience="crew", subject=subject, body=body,
            payload={"mentions": [crew.phone] if crew.phone else [], "crew": crew.id,
                     "params": {"incident": inc.id, "sms_template": "command",
                                "sms": command_params(summary=summary or subject,
                                                      incident=inc.id)}},
        )], now)
