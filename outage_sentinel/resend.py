"""Whether a held or dead message may be sent again (the board's and the CLI's retry).

A message that waited (dead-lettered, or held by a silence) was true when it was queued. The
incident may have moved past it since; sending it then leaves the recipient reading what is
no longer so. It is *stale* when:

* a later message to the same recipient about the same incident was queued since (a newer
  expected time, a correction, the power back, off again) and was not given up on;
* it tells a village its power is off (outage, update, planned work) and the incident is over;
* it tells a village its power is back (restored, cancelled) and the village is off again.

A stale message is resent only when forced (the operator has read the reason).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from outage_sentinel.incidents import BACK_NOTICES, Incident, villages_off
from outage_sentinel.store.outbox import OutboxRow
from outage_sentinel.topology import Topology

#: Notices that tell a village its power is off (or when it comes back); those that tell it
#: the power is back are :data:`~outage_sentinel.incidents.BACK_NOTICES`.
OFF_NOTICES = ("outage", "planned", "update")


class MessageStore(Protocol):
    """What the rule reads of the store."""

    def messages(self, *, status: str | None = None, incident_id: str | None = None,
                 ids: Collection[int] | None = None) -> list[OutboxRow]: ...
    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...


def why_stale(store: MessageStore, topology: Topology, m: OutboxRow) -> str:
    """Why sending ``m`` again would say what is no longer so ("" if it would not)."""
    if not m.incident_id:
        return ""
    later = [o for o in store.messages(incident_id=m.incident_id)
             if o.recipient == m.recipient and o.id > m.id
             and o.status in ("pending", "inflight", "sent")]
    if later:
        return f"overtaken by message {later[-1].id} ({later[-1].purpose})"
    row = store.get_incident(m.incident_id)
    if row is None:
        return ""
    if m.purpose in OFF_NOTICES and row.get("status") != "active":
        return f"the outage is over, now {row['status']}"
    village = (m.payload or {}).get("village")
    state = row.get("state")
    if m.purpose in BACK_NOTICES and row.get("status") == "active" and village \
            and isinstance(state, dict) \
            and village in villages_off(Incident.from_json(state), topology):
        return "the village is off again"
    return ""


def stale_among(store: MessageStore, topology: Topology, ids: Collection[int] | None
                ) -> dict[int, str]:
    """The held or dead messages among ``ids`` (every dead letter for ``None``) that are
    stale: id -> why, e.g. ``"overtaken by message 12 (restored)"``."""
    rows = store.messages(status="dead") if ids is None else store.messages(ids=ids)
    out: dict[int, str] = {}
    for m in rows:
        if m.status in ("dead", "silenced"):
            why = why_stale(store, topology, m)
            if why:
                out[m.id] = f"{m.purpose} of {m.incident_id}: {why}"
    return out
