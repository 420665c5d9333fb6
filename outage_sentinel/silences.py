"""Silences: notices muted on purpose during known work (pure core, ``now`` passed in).

Like Alertmanager's silences: a silence names a feeder, a village or an incident, has an end
and a reason, and mutes the liaison notices it matches while it holds. Muting is never
silent: the message stays in the outbox as ``silenced`` with the silence named, and the
evidence behind it is still recorded. The command centre and crews are never muted. A notice
about a fault that leaves special-care households (life support, elderly alone) without power
is never muted unless the silence was added with ``force``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Matcher = Literal["feeder", "village", "incident"]
MATCHERS: tuple[Matcher, ...] = ("feeder", "village", "incident")


@dataclass(frozen=True)
class Silence:
    id: int
    matcher: Matcher
    value: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    actor: str
    force: bool = False
    expired_at: datetime | None = None

    def holds(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def label(self) -> str:
        return f"silence {self.id} ({self.matcher} {self.value}: {self.reason})"


@dataclass(frozen=True)
class Addressed:
    """What a silence is matched against: one outbox message and its incident."""

    audience: str
    incident_id: str
    feeder: str | None
    kind: str | None
    village: str | None


def matching(silences: Iterable[Silence], msg: Addressed, now: datetime,
             has_care: Callable[[str], bool]) -> Silence | None:
    """The silence muting ``msg`` at ``now``, if any (``has_care(village)``: whether the
    village has special-care households)."""
    if msg.audience != "liaison":
        return None
    care = msg.kind == "fault" and msg.village is not None and has_care(msg.village)
    for s in silences:
        if not s.holds(now) or (care and not s.force):
            continue
        if (s.matcher == "feeder" and s.value == msg.feeder) or \
                (s.matcher == "village" and s.value == msg.village) or \
                (s.matcher == "incident" and s.value == msg.incident_id):
            return s
    return None


def addressed(audience: str, incident_id: str, payload: Mapping[str, Any],
              incident: Mapping[str, Any] | None) -> Addressed:
    """An outbox message's address (``incident``: its incident row's feeder and kind)."""
    village = payload.get("village")
    return Addressed(audience, incident_id, (incident or {}).get("feeder"),
                     (incident or {}).get("kind"), str(village) if village else None)
