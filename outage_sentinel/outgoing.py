"""A message the core wants sent: one outbox row before it is stored (pure core).

Producers (the liaison planner, the lifecycle's summaries, dispatches and alerts) return
:class:`OutboxMessage` values; :meth:`outage_sentinel.store.Store.enqueue_in` stores them in the
same transaction as the incident change that causes them, and the deliverer reads them back as
:class:`outage_sentinel.store.OutboxRow` (the same message with its delivery state).
``(incident_id, revision, recipient, purpose)`` is the message's identity: the same four never
go out twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: Who reads it: village liaisons (groups or people), the command centre, a repair crew.
Audience = Literal["liaison", "command", "crew"]
AUDIENCES: tuple[Audience, ...] = ("liaison", "command", "crew")
#: How a stored message stands: waiting, being sent, sent, given up (a dead letter), muted
#: by a silence, taken back before it went, made moot by a later one, kept back by the
#: command centre until released.
OUTBOX_STATUSES = ("pending", "inflight", "sent", "dead", "silenced", "withdrawn", "superseded",
                   "held")
#: The payload key of a message of which only the latest matters (a command-centre summary of
#: an incident, paced by ``command_centre.summary_min_interval_seconds``, or a village's update
#: held for its void expected restoration time, ``notify.void_etr_hold_seconds``): one not
#: sent yet is superseded by a later message of its chain that says the state since (a whole
#: summary; the village's 恢复送电 or update), and while it waits it holds up nothing else of
#: that chain (:mod:`outage_sentinel.ordering`).
LATEST_ONLY = "latest_only"
#: The largest id a stored row (a message, a silence) may have: a signed 64-bit integer, what
#: the databases' drivers take.
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class OutboxMessage:
    """One message to one recipient (a village's channel target, the command centre, a crew).

    ``purpose`` says why (outage, update, restored, cancelled, care, reminder, dispatch,
    summary, …; the SMS template a purpose uses is in ``payload["params"]["sms_template"]``).
    ``payload`` carries what a channel may need besides the text: mentions, the digest's facts,
    SMS template parameters.
    """

    incident_id: str
    revision: int
    recipient: str
    purpose: str
    channel: str
    target: str
    audience: Audience
    subject: str
    body: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.audience not in AUDIENCES:
            raise ValueError(f"audience: expected one of {', '.join(AUDIENCES)}, "
                             f"got {self.audience!r}")
        if not self.purpose or not self.recipient or not self.channel:
            raise ValueError("purpose, recipient and channel must not be empty")

    def but(self, **changes: Any) -> OutboxMessage:
        """A copy with ``changes`` (e.g. another revision or body)."""
        return replace(self, **changes)

    def columns(self) -> dict[str, Any]:
        """The values of its outbox columns."""
        return {"incident_id": self.incident_id, "revision": self.revision,
                "recipient": self.recipient, "purpose": self.purpose, "channel": self.channel,
                "target": self.target, "audience": self.audience, "subject": self.subject,
                "body": self.body, "payload": dict(self.payload)}


@dataclass(frozen=True)
class Address:
    """Where a message goes now: its target on its channel and whom it @-mentions (the contact
    directory's current entry for the message's recipient, see
    :func:`outage_sentinel.resend.current_address`)."""

    target: str
    mentions: tuple[str, ...] = ()
