"""The command centre's word on single messages in the outbox — withdraw, hold, release and
retry — as the board's buttons and the CLI's ``outbox`` verbs take it (one code path).

* **withdraw**: a message not sent (pending, held, dead or silenced) is never sent: status
  ``withdrawn``, kept with who and why.
* **hold**: a pending message is kept back (``held``) until released; it holds up no later
  message to its recipient.
* **release**: a held message is due again now; **retry**: a dead or silenced one is sent
  again with a fresh count of attempts. Both are refused for a message the incident has moved
  past unless forced (:mod:`outage_sentinel.resend`), and for one a silence in force would
  mute again at once (the deliverer would, and nothing would go) unless forced: forced, it is
  marked as sent on past that silence, which then mutes it no more. Both send to the
  recipient's address in the contact directory now (a liaison's number fixed since), or
  refuse when the directory no longer has the recipient.

A message being sent (``inflight``) is left to its send: the store changes a message only from
the statuses an action allows, in the statement that changes it, so the deliverer's claim and
the operator's word never both win.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from outage_sentinel.config import Config
from outage_sentinel.logs import mask_phones
from outage_sentinel.outgoing import Address
from outage_sentinel.resend import GoneRecipient, current_address, stale_among
from outage_sentinel.silencing import Silencing
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.store.outbox import CONTROLS
from outage_sentinel.topology import Topology

#: The actions, by the verb the board posts and the CLI takes.
ACTIONS = ("withdraw", "hold", "release", "retry")
#: The statuses retry takes a message from (the rest are :data:`CONTROLS`').
RETRYABLE = ("dead", "silenced")
#: How the record names each action (``withdrawn by board:li: wrong village``).
NOTED = {"withdraw": "withdrawn", "hold": "held", "release": "released", "retry": "retried"}
#: Why a message in a status cannot take an action.
WHY_NOT = {"sent": "already sent", "withdrawn": "already withdrawn",
           "inflight": "being sent right now; whether it went is not known until the send "
                       "settles (look again in a moment)",
           "superseded": "superseded by a later notice", "held": "held (release it first)",
           "pending": "still pending", "dead": "dead-lettered (retry it)",
           "silenced": "silenced (retry it)"}


class OutboxError(ValueError):
    """An action the messages' state refuses (a conflict); the message says which and why."""


class UnknownMessages(OutboxError):
    """Ids no message of the region has."""


class MissingReason(OutboxError):
    """A withdrawal without a reason: the record must say why."""


@dataclass
class Vetted:
    """What an action may do to the messages asked for: the ids it may change, those it may
    not (id -> why), the unknown ones, and where the sendable ones go now when that moved."""

    ok: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)
    addresses: dict[int, Address] = field(default_factory=dict)
    moved: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: Those sent on past the silences muting them (forced): id -> the silences' ids.
    past_silences: dict[int, list[int]] = field(default_factory=dict)

    def problems(self) -> str:
        """The refusals in one line ("" if none)."""
        out = [f"no message {', '.join(map(str, self.unknown))}"] if self.unknown else []
        return "; ".join(out + [f"{i}: {why}" for i, why in sorted(self.refused.items())])


@dataclass(frozen=True)
class Done:
    """What an action changed: the ids, and those sent to a new address (id -> from, to;
    numbers masked)."""

    action: str
    ids: list[int]
    moved: dict[int, tuple[str, str]]

    def line(self) -> str:
        past = {"withdraw": "withdrew", "hold": "held", "release": "released",
                "retry": "requeued"}[self.action]
        text = f"{past} {len(self.ids)}" + (f": {', '.join(map(str, self.ids))}"
                                            if self.ids else "")
        if self.moved:
            text += "; re-addressed " + ", ".join(f"{i} {a} → {b}"
                                                  for i, (a, b) in sorted(self.moved.items()))
        return text


def command_of(config: Config) -> tuple[str, str] | None:
    """The command centre's channel and target in ``config`` (None: it has none)."""
    cc = config.command_centre
    return (cc.channel, cc.target) if cc.channel else None


class OutboxControl:
    """The actions over one store; ``topology`` is read on every call (a reload swaps it,
    and with it the contact directory); ``command`` is the command centre's channel and
    target in the config; ``tz`` the time zone refusals give times in (``None``: UTC)."""

    def __init__(self, store: Store, topology: Callable[[], Topology],
                 command: tuple[str, str] | None = None, tz: tzinfo | None = None) -> None:
        self.store, self.topology, self.command = store, topology, command
        self.silencing = Silencing(store, topology, tz)

    def vet(self, action: str, ids: Sequence[int] | None, force: bool = False, *,
            now: datetime) -> Vetted:
        """Which of ``ids`` (every dead letter for ``None``, retry only) ``action`` may take
        at ``now``."""
        allowed = RETRYABLE if action == "retry" else CONTROLS[action][0]
        rows = self.store.messages(status="dead") if ids is None \
            else self.store.messages(ids=list(ids))
        found = {m.id: m for m in rows}
        out = Vetted(unknown=sorted(set(ids or ()) - set(found)))
        for m in rows:
            if m.status not in allowed:
                out.refused[m.id] = f"{m.status}: {WHY_NOT.get(m.status, m.status)}"
        sending = [m for m in rows if m.id not in out.refused and action in ("retry", "release")]
        if sending and not force:
            stale = stale_among(self.store, self.topology(), [m.id for m in sending])
            out.refused.update({i: f"out of date ({why}); force resends it anyway"
                                for i, why in stale.items()})
        self._silenced([m for m in sending if m.id not in out.refused], force, now, out)
        for m in sending:
            if m.id not in out.refused:
                self._address(m, out)
        out.ok = sorted(i for i in found if i not in out.refused)
        return out

    def _silenced(self, sending: list[OutboxRow], force: bool, now: datetime,
                  out: Vetted) -> None:
        """Those of ``sending`` a silence in force would mute again at once: refused, naming
        each such silence and its end, or (forced) noted in ``out`` to be sent on past them."""
        for i, found in self.silencing.muting(sending, now).items():
            if force:
                out.past_silences[i] = [s.id for s in found]
                continue
            out.refused[i] = ", ".join(f"silence {s.id} in force until "
                                       f"{self.silencing.shown(s.ends_at)}" for s in found) \
                + ("; end it or --force" if len(found) == 1 else "; end them or --force")

    def _address(self, m: OutboxRow, out: Vetted) -> None:
        """Where ``m`` goes now, noted in ``out`` when it moved (or why it cannot go)."""
        try:
            to = current_address(self.topology(), m, self.command)
        except GoneRecipient as exc:
            out.refused[m.id] = str(exc)
            return
        if to.target != m.target or list(to.mentions) != list(
                (m.payload or {}).get("mentions") or ()):
            out.addresses[m.id] = to
            out.moved[m.id] = (mask_phones(m.target), mask_phones(to.target))

    def apply(self, action: str, vetted: Vetted, actor: str, now: datetime,
              reason: str = "") -> Done:
        """Take ``action`` on the vetted ids, as ``actor`` (``reason`` kept with it, numbers
        masked). Ids changed by someone else meanwhile are left out of the result."""
        reason = mask_phones(reason.strip())
        if action == "withdraw" and not reason:
            raise MissingReason("reason: say why the message is withdrawn")
        note = f"{NOTED[action]} by {actor}" + (f": {reason}" if reason else "")
        if not vetted.ok:
            return Done(action, [], {})
        if action == "retry":
            done = self.store.requeue(vetted.ok, now, note, vetted.addresses,
                                      vetted.past_silences)
        else:
            done = self.store.control(vetted.ok, action, now, note, vetted.addresses,
                                      vetted.past_silences)
        return Done(action, done, {i: m for i, m in vetted.moved.items() if i in done})

    def take_some(self, action: str, ids: Sequence[int] | None, actor: str, now: datetime,
                  reason: str = "", force: bool = False) -> tuple[Done, str]:
        """``action`` on those of ``ids`` that may take it (the command line's way, and the
        board's retry of every dead letter), and the rest in one line ("" if none): unknown,
        refused and why, or changed by someone else meanwhile."""
        vetted = self.vet(action, ids, force, now=now)
        done = self.apply(action, vetted, actor, now, reason)
        late = sorted(set(vetted.ok) - set(done.ids))
        return done, "; ".join(x for x in (
            vetted.problems(), late and f"changed meanwhile: {', '.join(map(str, late))}") if x)

    def take(self, action: str, ids: Sequence[int], actor: str, now: datetime,
             reason: str = "", force: bool = False) -> Done:
        """All or nothing (the board's way): ``action`` on every one of ``ids`` or, when any
        is unknown or refused, on none (:class:`UnknownMessages`, :class:`OutboxError`). One
        the deliverer claimed between the check and the change is named in the error."""
        if action == "withdraw" and not reason.strip():
            raise MissingReason("reason: say why the message is withdrawn")
        vetted = self.vet(action, ids, force, now=now)
        if vetted.unknown:
            raise UnknownMessages(vetted.problems())
        if vetted.refused:
            raise OutboxError(vetted.problems())
        done = self.apply(action, vetted, actor, now, reason)
        late = sorted(set(vetted.ok) - set(done.ids))
        if late:
            raise OutboxError(f"{done.line()}; changed meanwhile, left as they are: "
                              f"{', '.join(map(str, late))}")
        return done
