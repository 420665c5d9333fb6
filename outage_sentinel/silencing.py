"""Silences as the operator and the deliverer use them (``silence add|list|expire``).

The matching rule is pure (:mod:`outage_sentinel.silences`); this module reads the silences
and incidents from the store, refuses a silence that would mute a fault affecting
special-care households unless forced, and gives the deliverer its muter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

from outage_sentinel.incidents import Incident
from outage_sentinel.priority import special_care_customers
from outage_sentinel.silences import MATCHERS, Matcher, Silence, addressed, matching
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.store.outbox import PAST_SILENCES
from outage_sentinel.topology import Topology


class SilenceError(ValueError):
    """A silence that cannot be added or expired; the message says why."""


class SilenceInputError(SilenceError):
    """A silence asked for with a value it cannot take (no such matcher, feeder, village or
    incident; no reason; an end already past)."""


class NoSuchSilence(SilenceError):
    """An id no silence has."""


class Silencing:
    """Silences over one store; ``topology`` is read on every call (a reload swaps it);
    ``tz``: the time zone its refusals give times in (``None``: UTC, ISO)."""

    def __init__(self, store: Store, topology: Callable[[], Topology],
                 tz: tzinfo | None = None) -> None:
        self.store, self.topology, self.tz = store, topology, tz

    def has_care(self, village: str) -> bool:
        topo = self.topology()
        return any(special_care_customers(topo.customers_by_transformer.get(t, ()))
                   for t in topo.village_transformers(village))

    def muted(self, rows: Sequence[OutboxRow], now: datetime) -> dict[int, str]:
        """The deliverer's muter: outbox id -> the silence muting it. The silences the
        command centre sent a message on past (a forced retry or release, kept in its payload:
        :data:`~outage_sentinel.store.outbox.PAST_SILENCES`) mute it no more."""
        return {i: s[0].label() for i, s in self.muting(rows, now, honour_forced=True).items()}

    def muting(self, rows: Sequence[OutboxRow], now: datetime, honour_forced: bool = False
               ) -> dict[int, list[Silence]]:
        """Outbox id -> every silence that would mute it if it were sent at ``now``, the one
        the deliverer names first (``honour_forced``: none it was sent on past, see
        :meth:`muted`)."""
        holding = self.store.silences(holding_at=now)
        if not holding:
            return {}
        incidents = self.store.incident_addresses({r.incident_id for r in rows})
        out: dict[int, list[Silence]] = {}
        for row in rows:
            msg = addressed(row.audience, row.incident_id, row.payload,
                            incidents.get(row.incident_id))
            past = set((row.payload or {}).get(PAST_SILENCES) or ()) if honour_forced else set()
            found = [h for h in holding if h.id not in past
                     and matching([h], msg, now, self.has_care) is not None]
            if found:
                out[row.id] = found
        return out

    def shown(self, at: datetime) -> str:
        """A time as this silencing's refusals say it (local, or UTC ISO with no zone)."""
        return at.isoformat() if self.tz is None else f"{at.astimezone(self.tz):%Y-%m-%d %H:%M}"

    def add(self, matcher: str, value: str, until: datetime, reason: str, actor: str,
            now: datetime, force: bool = False) -> Silence:
        """Add a silence from now until ``until``."""
        if matcher not in MATCHERS:
            raise SilenceInputError(f"silence what? one of {', '.join(MATCHERS)}")
        if not reason.strip():
            raise SilenceInputError("a silence needs a reason (--reason)")
        if until <= now:
            raise SilenceInputError(f"--until {self.shown(until)} has passed")
        self._known(matcher, value)
        kind: Matcher = matcher  # checked above
        silence = Silence(0, kind, value, now, until, reason.strip(), actor, force)
        care = self._care_villages(silence, now)
        if care and not force:
            raise SilenceError(
                "open faults with special-care households in " + "、".join(care[:6]) +
                " would be silenced; they are never muted without --force")
        return Silence(self.store.add_silence(silence), kind, value, now, until,
                       silence.reason, actor, force)

    def expire(self, silence_id: int, now: datetime) -> None:
        if not self.store.expire_silence(silence_id, now):
            if any(s.id == silence_id for s in self.store.silences()):
                raise SilenceError(f"silence {silence_id} has ended already")
            raise NoSuchSilence(f"no silence {silence_id}")

    def _known(self, matcher: str, value: str) -> None:
        topo = self.topology()
        known = (matcher == "feeder" and value in topo.feeder_ids) or \
            (matcher == "village" and value in topo.villages) or \
            (matcher == "incident" and self.store.get_incident(value) is not None)
        if not known:
            raise SilenceInputError(f"unknown {matcher} {value!r}")

    def _care_villages(self, silence: Silence, now: datetime) -> list[str]:
        """Villages with special-care households in open faults the silence would mute."""
        topo = self.topology()
        out: list[str] = []
        for row in self.store.load_incidents(kinds=["fault"]):
            inc = Incident.from_json(row["state"])
            for village in inc.estimate.villages:
                msg = addressed("liaison", inc.id, {"village": village},
                                {"feeder": inc.feeder, "kind": inc.kind})
                if matching([silence], msg, now, lambda _: False) and self.has_care(village):
                    out.append(topo.villages[village].name if village in topo.villages
                               else village)
        return out
