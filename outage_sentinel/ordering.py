"""Messages to one recipient about one incident go out in the order they were queued (pure).

A village group whose robot times out for minutes while its outage is restored must not read
【恢复送电】 and then the old 【故障停电通知】: the last thing it reads would be false. So the
messages of one *chain* — one incident, one recipient — are delivered in outbox (id) order:

* a message waits while an earlier one of its chain is still pending (retrying, held by quiet
  hours) or in flight; a dead, silenced, withdrawn or superseded one no longer holds it up, so a
  message given up on never blocks the rest for ever (and a retrying one is given up on at the
  retry policy's max age, before the later ones, which were queued later);
* an off-notice (the village is or will be off: outage, update, planned work, its reminders)
  not sent yet when a later back-notice (restored, cancelled, corrected) of its chain exists is
  *superseded*: never sent, kept with that status and the notice that made it moot.

The rule is read from the outbox on every delivery run, so it holds across the workers of the
(channel, target) groups, across nodes and across restarts.

A correction (【更正】: "the outage we told you of does not concern you") is a back-notice only
for a recipient an off-notice reached: :func:`owed_correction` says which, from what each chain
holds, so that the command centre taking a village out before its outage notice went never
corrects a word its people never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: Purposes that tell a recipient the power is, or will be, off.
OFF_PURPOSES = ("outage", "update", "planned")
#: Prefix of the reminders of planned work (``reminder_24h``): off-notices too.
REMINDER_PREFIX = "reminder"
#: Purposes that make an earlier off-notice moot: the power is back, the work called off, the
#: village was never in the incident.
BACK_PURPOSES = ("restored", "cancelled", "corrected")
#: Statuses of a message that is not settled: it holds back the later ones of its chain.
UNSETTLED = ("pending", "inflight")

#: ``(incident id, recipient)``.
Chain = tuple[str, str]


class Queued(Protocol):
    """What ordering needs of an outbox row."""

    @property
    def id(self) -> int: ...
    @property
    def incident_id(self) -> str: ...
    @property
    def recipient(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def status(self) -> str: ...


def chain_of(row: Queued) -> Chain:
    """The chain a message belongs to."""
    return (row.incident_id, row.recipient)


def is_off_notice(purpose: str) -> bool:
    return purpose in OFF_PURPOSES or purpose.startswith(REMINDER_PREFIX)


@dataclass(frozen=True)
class Order:
    """What a delivery run may do with its due messages."""

    #: Due messages whose chain lets them go now, in id order.
    ready: tuple[int, ...]
    #: Off-notices not to be sent at all: id -> the id of the back-notice that supersedes it.
    superseded: dict[int, int]
    #: Due messages that wait: id -> the id of the earlier message of its chain they wait for
    #: (the deliverer moves them behind it, so that they never fill a run's batch).
    held: dict[int, int] = field(default_factory=dict)


#: What tells a recipient it is, or was, in an outage besides the off-notices: the
#: special-care list sent with it.
TOLD_WITH_OFF = ("care",)


def owed_correction(heard: Iterable[Queued]) -> set[str]:
    """Recipients whose last word of an incident says they are (or will be) off: the latest
    off-notice, care list or back-notice of their chain in ``heard`` — the messages that
    reached them, may have, or are still to go — is not a back-notice. They, and only they,
    are owed a correction when taken out of it: one never told hears nothing, and one already
    told it is back, called off or not concerned is not told so twice."""
    last: dict[Chain, Queued] = {}
    for r in sorted(heard, key=lambda r: r.id):
        if is_off_notice(r.purpose) or r.purpose in TOLD_WITH_OFF or r.purpose in BACK_PURPOSES:
            last[chain_of(r)] = r
    return {r.recipient for r in last.values() if r.purpose not in BACK_PURPOSES}


def superseded_by(rows: Iterable[Queued]) -> dict[int, int]:
    """Pending off-notices with a later back-notice in their chain (not given up on):
    id -> the first such back-notice's id."""
    by_chain: dict[Chain, list[Queued]] = {}
    for r in rows:
        by_chain.setdefault(chain_of(r), []).append(r)
    out: dict[int, int] = {}
    for chain in by_chain.values():
        chain.sort(key=lambda r: r.id)
        back: int | None = None
        for r in reversed(chain):
            if r.purpose in BACK_PURPOSES and r.status in (*UNSETTLED, "sent"):
                back = r.id
            elif back is not None and r.status == "pending" and is_off_notice(r.purpose):
                out[r.id] = back
    return out


def order(due: Sequence[Queued], chains: Iterable[Queued]) -> Order:
    """Which of ``due`` (one run's batch) may go now, given every row of their chains
    (``chains``: the outbox's rows of those (incident, recipient) pairs, any status).

    A due message is ready when every earlier unsettled message of its chain is ready too:
    the chain's leading run of due messages goes, in id order, and the job sending them stops
    a chain at its first message not confirmed (see :class:`ChainGate`)."""
    rows = list(chains)
    gone = superseded_by(rows)
    due_ids = {r.id for r in due} - gone.keys()
    wanted = {chain_of(r) for r in due}
    blocked_from: dict[Chain, int] = {}
    for r in rows:
        c = chain_of(r)
        if c in wanted and r.status in UNSETTLED and r.id not in gone and r.id not in due_ids:
            blocked_from[c] = min(blocked_from.get(c, r.id), r.id)
    ready = sorted(r.id for r in due if r.id in due_ids
                   and r.id < blocked_from.get(chain_of(r), r.id + 1))
    held = {r.id: blocked_from[chain_of(r)] for r in due
            if r.id in due_ids and r.id not in ready}
    return Order(ready=tuple(ready), superseded=gone, held=held)


class ChainGate:
    """One job's memory of the chains it must stop: once a message is not confirmed (retry,
    rate limited, refused, claimed elsewhere), the later ones of its chain wait for the next
    run, which reads the outbox again."""

    def __init__(self) -> None:
        self._stopped: set[Chain] = set()

    def open(self, row: Queued) -> bool:
        return chain_of(row) not in self._stopped

    def settled(self, row: Queued, sent: bool) -> None:
        if not sent:
            self._stopped.add(chain_of(row))
