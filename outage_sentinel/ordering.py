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

A command-centre summary of an incident (``summary``, one per revision) is a snapshot of
which only the latest matters (:data:`~outage_sentinel.outgoing.LATEST_ONLY`, set when
``command_centre.summary_min_interval_seconds`` is on): one not sent yet is *superseded* by a
later whole summary of its chain of a later revision (:data:`WHOLE_SUMMARIES`: another
summary, or a step's message, which carries the summary of its revision under its headline),
and one waiting for the interval (:func:`summary_due`) holds up nothing else of its chain —
an escalation or a step goes at once. A storm's 60 revisions in two minutes reached the
group as 60 messages a line apart; staff mute such a group, and then miss the one that
matters.

A village's update whose only news is that its expected restoration time is no longer known
(:data:`VOID_ETR`, held ``notify.void_etr_hold_seconds`` when queued)
is latest-only the same way: while it waits it holds up nothing of its chain, and a later
off- or back-notice of its chain standing (the village's 恢复送电, an update with news)
supersedes it (:func:`held_superseded`): the record's end was followed by the power coming
back, or by news the later notice says with the rest. An update whose only news is the
village's expected restoration time (:data:`ETR_ONLY`), when that time is the one the
village's last word of the incident states (:data:`ETR_SAID`: its outage notice or an update
that reached it, or is still to), is superseded by that word (:func:`restated`): the record
re-issued within the hold with the time the village was told would else be read as
"恢复时间调整为 X", X the very time it had — a notice of a change that is no change.

The rule is read from the outbox on every delivery run, so it holds across the workers of the
(channel, target) groups, across nodes and across restarts.

A correction (【更正】: "the outage we told you of does not concern you") is a back-notice only
for a recipient an off-notice reached: :func:`owed_correction` says which, from what each chain
holds, so that the command centre taking a village out before its outage notice went never
corrects a word its people never read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

#: Purposes that tell a recipient the power is, or will be, off.
OFF_PURPOSES = ("outage", "update", "planned")
#: Prefix of the reminders of planned work (``reminder_24h``): off-notices too.
REMINDER_PREFIX = "reminder"
#: Purposes that make an earlier off-notice moot: the power is back, the work called off, the
#: village was never in the incident.
BACK_PURPOSES = ("restored", "cancelled", "corrected")
#: Statuses of a message that is not settled: it holds back the later ones of its chain.
UNSETTLED = ("pending", "inflight")
#: The command centre's summary of each incident revision: the purpose paced and replaced.
SUMMARY = "summary"
#: Purposes of the command centre's messages whose text is the whole summary of their
#: incident at a revision (:meth:`~outage_sentinel.lifecycle.Lifecycle.render_summary`): the
#: per-revision summary, one of an outage nobody could place, a dispatch, a close-out, and the
#: command centre's corrections under their headlines. A later one makes an earlier summary
#: not sent yet moot; one that went starts the interval the next summary waits for.
WHOLE_SUMMARIES = (SUMMARY, "unplaced", "dispatched", "closed", "close_amended", "etr_set",
                   "etr_cleared", "device_set", "device_cleared", "scope_removed", "cancelled")
#: Statuses of a message that stands: sent, being sent, or to be sent.
STANDING = (*UNSETTLED, "sent")

#: The payload key of a village's update whose only news is that its expected restoration
#: time is no longer known (:func:`outage_sentinel.liaison.etr_void_only`): held
#: ``notify.void_etr_hold_seconds`` when queued, latest-only (:func:`held_superseded`).
VOID_ETR = "void_etr"
#: The payload key of a village's update whose only news is its expected restoration time
#: (:func:`outage_sentinel.liaison.etr_only`: its areas, start, kind and cause as told).
ETR_ONLY = "etr_only"
#: The payload key of a village's outage notice and update: the expected restoration time it
#: states (ISO 8601; ``None``: none, 待定).
ETR_SAID = "etr_said"

#: What a summary says of its incident's state that must never wait: its status and kind
#: (``params["status"]``, ``params["kind"]``, as every command-centre row of an incident
#: carries them: :meth:`~outage_sentinel.lifecycle.Lifecycle.digest_facts`).
State = tuple[str, str]

#: ``(incident id, recipient)``.
Chain = tuple[str, str]


@runtime_checkable
class Marked(Protocol):
    """An outbox row with its payload (:func:`marks`)."""

    @property
    def payload(self) -> Mapping[str, Any] | None: ...


def marks(row: object) -> Mapping[str, Any]:
    """``row``'s payload (empty for a row that carries none)."""
    return (row.payload or {}) if isinstance(row, Marked) else {}


class Queued(Protocol):
    """What ordering needs of an outbox row."""

    @property
    def id(self) -> int: ...
    @property
    def incident_id(self) -> str: ...
    @property
    def revision(self) -> int: ...
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


def newest_first(rows: Iterable[Queued]) -> list[list[Queued]]:
    """``rows`` by chain (:func:`chain_of`), each chain's rows newest first (by id)."""
    by_chain: dict[Chain, list[Queued]] = {}
    for r in rows:
        by_chain.setdefault(chain_of(r), []).append(r)
    return [sorted(chain, key=lambda r: r.id, reverse=True) for chain in by_chain.values()]

def superseded_by(rows: Iterable[Queued]) -> dict[int, int]:
    """Pending off-notices with a later back-notice in their chain (not given up on):
    id -> the first such back-notice's id."""
    out: dict[int, int] = {}
    for chain in newest_first(rows):
        back: int | None = None
        for r in chain:
            if r.purpose in BACK_PURPOSES and r.status in (*UNSETTLED, "sent"):
                back = r.id
            elif back is not None and r.status == "pending" and is_off_notice(r.purpose):
                out[r.id] = back
    return out


def summaries_superseded(rows: Iterable[Queued], latest_only: Collection[int]
                         ) -> dict[int, int]:
    """Pending summaries of which only the latest matters (their ids in ``latest_only``)
    with a later whole summary (:data:`WHOLE_SUMMARIES`) of a later revision standing in
    their chain: id -> the latest such message's id, whose state makes the older one out
    of date. A dispatch of the summary's own revision (the same words, with the crew) does
    not replace it: each says something the other does not."""
    if not latest_only:
        return {}
    out: dict[int, int] = {}
    for chain in newest_first(rows):
        later: list[Queued] = []  # whole summaries standing, newest first
        for r in chain:
            if r.id in latest_only and r.status == "pending":
                newer = next((w.id for w in later if w.revision > r.revision), None)
                if newer is not None:
                    out[r.id] = newer
                    continue
            if r.purpose in WHOLE_SUMMARIES and r.status in STANDING:
                later.append(r)
    return out


def held_superseded(rows: Iterable[Queued], latest_only: Collection[int]) -> dict[int, int]:
    """Pending off-notices of which only the latest matters (their ids in ``latest_only``: a
    village's update held for its void expected restoration time) with a later off- or
    back-notice standing in their chain: id -> the latest such message's id, which says the
    village's state since. A care list or a progress notice says no state: it does not."""
    if not latest_only:
        return {}
    out: dict[int, int] = {}
    for chain in newest_first(rows):
        newest: int | None = None
        for r in chain:
            if (r.id in latest_only and r.status == "pending" and is_off_notice(r.purpose)
                    and newest is not None):
                out[r.id] = newest
            elif newest is None and r.status in STANDING and (
                    is_off_notice(r.purpose) or r.purpose in BACK_PURPOSES):
                newest = r.id
    return out


def restated(rows: Iterable[Queued], gone: Collection[int]) -> dict[int, int]:
    """Pending updates whose only news is the village's expected restoration time
    (:data:`ETR_ONLY`) when the village's last word of the incident states that very time
    (:data:`ETR_SAID`): id -> that word's id. The last word is the latest earlier off- or
    back-notice of the chain that reached the village or is still to (standing, not in
    ``gone``), past the updates of the time alone that never reached it nor will (a void
    update held and superseded, one dead or withdrawn): those said nothing else, and what the
    village read is that word. One whose payload does not state its time never matches."""
    out: dict[int, int] = {}
    for chain in newest_first(rows):
        earlier = chain[::-1]  # oldest first
        for i, r in enumerate(earlier):
            if r.status != "pending" or r.id in gone or not marks(r).get(ETR_ONLY):
                continue
            word = last_word(earlier[:i], {*gone, *out})
            if word is not None and ETR_SAID in marks(word) \
                    and marks(word).get(ETR_SAID) == marks(r).get(ETR_SAID):
                out[r.id] = word.id
    return out


def last_word(earlier: Sequence[Queued], gone: Collection[int]) -> Queued | None:
    """The off-notice that is the village's last word of its state among ``earlier`` (one
    chain's rows, oldest first; ``gone``: those not to be sent): ``None`` when that is a
    back-notice, or a message that never reached it nor will and said more than a time."""
    for r in reversed(earlier):
        if not (is_off_notice(r.purpose) or r.purpose in BACK_PURPOSES):
            continue
        standing = r.status in STANDING and r.id not in gone
        if not standing and marks(r).get(ETR_ONLY):
            continue
        return r if standing and is_off_notice(r.purpose) else None
    return None


def summary_state(payload: Mapping[str, Any] | None) -> State:
    """A command-centre message's incident state as its params state it."""
    params = (payload or {}).get("params")
    params = params if isinstance(params, Mapping) else {}
    return (str(params.get("status") or ""), str(params.get("kind") or ""))


def summary_due(state: State, last: tuple[datetime, State] | None, now: datetime,
                interval: timedelta) -> datetime:
    """When a summary of an incident in ``state`` may go, given ``last``: when the last
    whole summary of its chain went (sent, or claimed) and the state it said (``None``:
    none went yet). At once (``now``) for the first (a new outage is urgent), for one whose
    state changed (restored, cancelled, reopened, its kind settled), or when pacing is off
    (``interval`` 0); else once ``interval`` has passed since the last went."""
    if last is None or not interval or last[1] != state:
        return now
    return max(now, last[0] + interval)


def order(due: Sequence[Queued], chains: Iterable[Queued],
          latest_only: Collection[int] = ()) -> Order:
    """Which of ``due`` (one run's batch) may go now, given every row of their chains
    (``chains``: the outbox's rows of those (incident, recipient) pairs, any status) and
    the ids of those of which only the latest matters (``latest_only``: summaries, and the
    villages' updates held for a void expected restoration time).

    A due message is ready when every earlier unsettled message of its chain is ready too:
    the chain's leading run of due messages goes, in id order, and the job sending them stops
    a chain at its first message not confirmed (see :class:`ChainGate`). A pending message
    of ``latest_only`` holds up nothing: it says a state, and waits (for its interval, its
    hold) on purpose."""
    rows = list(chains)
    gone = {**superseded_by(rows), **summaries_superseded(rows, latest_only),
            **held_superseded(rows, latest_only)}
    gone.update(restated(rows, gone))
    due_ids = {r.id for r in due} - gone.keys()
    wanted = {chain_of(r) for r in due}
    blocked_from: dict[Chain, int] = {}
    for r in rows:
        c = chain_of(r)
        if r.id in latest_only and r.status == "pending":
            continue
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
