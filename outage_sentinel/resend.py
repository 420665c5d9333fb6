"""Whether a held or dead message may be sent again (the board's and the CLI's retry).

A message that waited (dead-lettered, or held by a silence) was true when it was queued. The
incident may have moved past it since; sending it then leaves the recipient reading what is
no longer so. It is *stale* when:

* a later message to the same recipient about the same incident that replaces it
  (:func:`overtakes`: a newer expected time, a correction, the power back, off again, a newer
  one of its kind) was queued since and was not given up on — a care list or a crew's progress
  replaces nothing but a newer one of its own: it adds to the outage notice it follows;
* it tells a village its power is off (outage, update, planned work) and the incident is over;
* it tells a village its power is back (restored, cancelled) and the village is off again.

A stale message is resent only when forced (the operator has read the reason).

A message sent again goes to its recipient's address *now* (:func:`current_address`): a
liaison's number fixed in the contact directory (the bundle's ``liaisons.csv``, a crew's in
``crews.csv``, the command centre's in the config) since it was queued is where it goes, and a
recipient the directory no longer has is refused.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from outage_sentinel.incidents import BACK_NOTICES, Incident, villages_off
from outage_sentinel.ordering import BACK_PURPOSES, is_off_notice
from outage_sentinel.outgoing import Address
from outage_sentinel.store.outbox import OutboxRow
from outage_sentinel.topology import Topology

#: Notices that tell a village its power is off (or when it comes back); those that tell it
#: the power is back are :data:`~outage_sentinel.incidents.BACK_NOTICES`.
OFF_NOTICES = ("outage", "planned", "update")
#: Messages that add to what a recipient was told without replacing it: a special-care list,
#: a crew's progress (``progress_on_site``). Both they and the notice they follow are needed.
ADDENDA = ("care", "progress_")


def overtakes(later: str, earlier: str) -> bool:
    """Whether a message of purpose ``later``, queued after one of purpose ``earlier`` to the
    same recipient about the same incident, replaces it (sending the earlier one then says
    what is no longer so): a newer one of its kind; for a notice of whether the power is off
    (outage, update, planned work, its reminders) or back (restored, cancelled, corrected),
    any later such notice; for an addendum (:data:`ADDENDA`), the power back (its outage over
    for the recipient); for anything else (a crew's orders, the command centre's summary),
    any later message but an addendum."""
    if later == earlier:
        return True
    if later.startswith(ADDENDA):
        return False
    if _about_power(earlier):
        return _about_power(later)
    if earlier.startswith(ADDENDA):
        return later in BACK_PURPOSES
    return True


def _about_power(purpose: str) -> bool:
    return is_off_notice(purpose) or purpose in BACK_PURPOSES


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
             and o.status in ("pending", "inflight", "sent") and overtakes(o.purpose, m.purpose)]
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
    """The silenced, held or dead messages among ``ids`` (every dead letter for ``None``) that are
    stale: id -> why, e.g. ``"overtaken by message 12 (restored)"``."""
    rows = store.messages(status="dead") if ids is None else store.messages(ids=ids)
    out: dict[int, str] = {}
    for m in rows:
        if m.status in ("dead", "silenced", "held"):
            why = why_stale(store, topology, m)
            if why:
                out[m.id] = f"{m.purpose} of {m.incident_id}: {why}"
    return out


class GoneRecipient(ValueError):
    """A message whose recipient the contact directory no longer has (or no longer tells
    apart): it cannot be sent again; a new notice is needed. The message says why."""


def current_address(topology: Topology, m: OutboxRow,
                    command: tuple[str, str] | None = None) -> Address:
    """Where ``m`` goes if sent now: a village's liaisons of the message's roles on its
    channel, a crew, the command centre (``command``: its channel and target in the config),
    as the directory has them now; :class:`GoneRecipient` when it has none."""
    payload = m.payload or {}
    if m.audience == "crew" and payload.get("crew"):
        crew = next((c for c in topology.crews if c.id == payload["crew"]), None)
        if crew is None or crew.channel != m.channel:
            raise GoneRecipient(f"message {m.id}: crew {payload['crew']} is no longer in the "
                                f"directory on {m.channel}")
        return Address(crew.target or crew.phone, (crew.phone,) if crew.phone else ())
    if m.audience == "liaison" and payload.get("village"):
        return _liaisons_address(topology, m, str(payload["village"]),
                                 set(payload.get("roles") or ()))
    if m.audience == "command" and command is not None and command[0] == m.channel:
        return Address(command[1], tuple(payload.get("mentions") or ()))
    return Address(m.target, tuple(payload.get("mentions") or ()))


def _liaisons_address(topology: Topology, m: OutboxRow, village: str, roles: set[str]
                      ) -> Address:
    """The address of the village's liaisons ``m`` was for (one group or person: its old
    target if the directory still has it, else the only one it has for them). A message to a
    person (no group target) goes to a new number only of the same person, by name: another
    liaison of the role has a message of its own."""
    members = [li for li in topology.liaisons_by_village.get(village, [])
               if li.channel == m.channel and (not roles or li.role in roles)]
    who = f"the {'/'.join(sorted(roles)) or 'liaisons'} of village {village} on {m.channel}"
    if members and m.target not in {li.target or li.phone for li in members} and \
            not any(li.target for li in members):
        names = set((m.payload or {}).get("names") or ())
        members = [li for li in members if li.name in names]
        who = f"{'/'.join(sorted(names)) or 'the person it was for'} ({who})"
    targets = list(dict.fromkeys(li.target or li.phone for li in members))
    if not targets:
        raise GoneRecipient(f"message {m.id}: {who} are no longer in the contact directory")
    target = m.target if m.target in targets else targets[0]
    if len(targets) > 1 and m.target not in targets:
        raise GoneRecipient(f"message {m.id}: {who} now have {len(targets)} addresses in "
                            "the directory and none is the message's: it cannot tell which")
    phones = (li.phone for li in members if (li.target or li.phone) == target and li.phone)
    return Address(target, tuple(dict.fromkeys(phones)))
