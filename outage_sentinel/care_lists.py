"""Special-care lists: the village liaisons of an outage check on their village's
special-care households once a crew is sent (:class:`CareLists`).

The list itself goes only to liaisons reached in person; a group hears the count and who
holds the list. Crew dispatch (:mod:`outage_sentinel.crew_dispatch`) asks for the rows with
every dispatch and when the outage reaches more villages; each call writes inside the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Connection

from outage_sentinel import crew as crews
from outage_sentinel.config import Config
from outage_sentinel.incidents import Incident
from outage_sentinel.liaison import LiaisonPlanner, individual_channels
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology


class CareOwner(Protocol):
    """What the care lists read of their owner: the store, the topology and the planner (a
    topology reload replaces these two), the config and the dispatch parameters."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner
    config: Config
    params: crews.DispatchParams


class CareLists:
    """The special-care rows of an incident's villages, once per liaison (not once per crew
    sent: in a storm crews are pulled between incidents many times)."""

    def __init__(self, owner: CareOwner) -> None:
        self.owner = owner

    def rows_in(self, conn: Connection, inc: Incident, villages: Sequence[str],
                crew_label: str, now: datetime, retell: bool = False) -> list[OutboxMessage]:
        """The care rows of ``villages`` naming ``crew_label``: a group's message naming
        another crew not sent yet is taken back for one naming ``crew_label``, and one sent
        already is followed by one only when ``retell`` (the command centre gave the
        incident to another crew). None goes to a recipient whose notice the command centre
        withdrew."""
        store, planner = self.owner.store, self.owner.planner
        individual = individual_channels(self.owner.config.channels)
        named = store.care_crews_in(conn, inc.id)
        # A notice taken back unsent holds the once-per-incident key: a new one needs its own;
        # one the command centre withdrew is its word that the recipient gets none.
        taken_back = store.taken_back_in(conn, inc.id, ("care",))
        refused = store.withdrawn_by_command_in(conn, inc.id, ("care",))
        rows: list[OutboxMessage] = []
        for v in villages:
            care = crews.care_list_context(self.owner.topology, inc, v, now, planner.tz,
                                           planner.renderer.language, self.owner.params)
            if not care.get("households"):
                continue
            for r in planner.care_rows(inc, v, care, individual, crew_label):
                if r.recipient in refused:
                    continue
                if r.recipient not in named:
                    rows.append(r.but(revision=inc.revision) if r.recipient in taken_back
                                else r)
                elif r.payload.get("crew_named") and named[r.recipient] != crew_label:
                    taken = store.withdraw_pending_in(conn, inc.id, ("care",), now,
                                                      "another crew holds the list",
                                                      recipients=(r.recipient,))
                    if taken or retell:
                        rows.append(r.but(revision=inc.revision))
        return rows
