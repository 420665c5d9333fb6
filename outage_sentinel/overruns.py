"""A village's expected restoration time gone by, followed up (one of the lifecycle's clock checks).

A village told "预计恢复：20:10" and still dark at 20:25 has been told something that is no
longer true; without news it waits, and the command centre, whose summary said 20:10 too, is
not warned either. So ``notify.overrun_grace_minutes`` after the time a village was last told
(:attr:`~outage_sentinel.incidents.Incident.told_etr`: a record's, the command centre's own —
its passing is news to the village all the same — or planned work's stop), while the village
is still off in the incident and no later time stands for it, the village hears one update in
the overrun's words (原预计…恢复，已超时，恢复时间待定 / 超出计划时间仍停电（原计划…恢复）,
rendered by the planner as any update), and the command centre one alert naming the incident,
the villages, the time and how long ago it passed. Once per time told: both are keyed in the
outbox by that time (:func:`overrun_revision`), so a restart, or the next check, queues
nothing twice, and a new time told that passes too is followed up again. The decision is read
from the store and the incident on every check; the check runs where the other clock checks
run (the leader).

The update is marked as one whose only news is the time, stating none
(:data:`~outage_sentinel.ordering.ETR_SAID` ``None``: it is no restatement of the time the
village was told, nor one a later void update restates), and latest-only
(:data:`~outage_sentinel.outgoing.LATEST_ONLY`): not sent yet when the village's 恢复送电 or
other news of it stands, it is superseded (:func:`~outage_sentinel.ordering.held_superseded`).
A village whose time went void meanwhile was told so (its update held
``notify.void_etr_hold_seconds``), and has no time to follow up; one whose notice stating the
time goes only after it (a channel down, quiet hours) reads there that it has passed
(:func:`late_word`), and is not told twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from outage_sentinel.config import Config
from outage_sentinel.incidents import (
    Incident,
    Notice,
    announced_kind,
    village_etr,
    villages_off,
)
from outage_sentinel.labels import KIND_LABELS, label
from outage_sentinel.liaison import LiaisonPlanner
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.ordering import ETR_ONLY, ETR_SAID, STANDING, VOID_ETR, order
from outage_sentinel.outgoing import LATEST_ONLY, OutboxMessage
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology

#: The command centre's alert's purpose, and the incident log's step.
OVERRUN = "overrun"
#: The payload key of a village's overrun update: the time told that passed (ISO 8601).
OVERRUN_OF = "overrun_of"

#: The command centre's alert: its heading (fault, planned work), the line per time, the
#: note on a time it set itself, what the villages were told and what to do.
ALERT_WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {"fault": "【超时未恢复】", "planned": "【超出计划时间】",
           "line_fault": "{villages}原预计{told}恢复{by_centre}，已超时{minutes}分钟，"
                         "仍停电{households}户。",
           "line_planned": "{villages}原计划{told}恢复{by_centre}，已超出{minutes}分钟，"
                           "仍停电{households}户。",
           "by_centre": "（指挥中心设定）",
           "told": "已告知村联络人：原预计时间已过，恢复时间待定。",
           "untold": "无联络人、未能告知：{villages}。",
           "ask": "请核实进度，给出新的预计恢复时间（看板调整预计恢复时间，或 "
                  "outage-sentinel incidents etr {incident} \"时间\"）。",
           "sep": "、"},
    "en": {"fault": "[Overrun] ", "planned": "[Past planned end] ",
           "line_fault": "{villages}: expected back {told}{by_centre}, {minutes} min ago; "
                         "still off, {households} households.",
           "line_planned": "{villages}: the work was to end {told}{by_centre}, {minutes} min "
                           "ago; still off, {households} households.",
           "by_centre": " (set by the command centre)",
           "told": "The liaisons were told the time has passed and the restoration time is "
                   "not known.",
           "untold": "No liaison to tell: {villages}.",
           "ask": "Check progress and give a new expected restoration (the board, or "
                  "outage-sentinel incidents etr {incident} \"time\").",
           "sep": ", "},
}


class OverrunOwner(Protocol):
    """What the check reads of the lifecycle: the store, the topology and the planner (a
    topology reload replaces these two), the config, the incident locked, and the command
    centre's rows."""

    store: Store
    topology: Topology
    planner: LiaisonPlanner
    config: Config

    def load_in(self, conn: Connection, incident_id: str) -> tuple[Incident, dict[str, Any]]: ...

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[OutboxMessage]: ...


def overrun_revision(told: datetime) -> int:
    """The outbox revision of the follow-up of a time told: its minutes since 1970 (UTC), so
    that the outbox's unique key holds one per time told, recipient and purpose."""
    return int(told.timestamp()) // 60


def overdue(inc: Incident, topology: Topology, grace: timedelta, now: datetime
            ) -> dict[datetime, list[str]]:
    """The villages of ``inc`` to follow up at ``now``, by the time they were told: told of
    the outage and still off in it, their time told passed by ``grace`` or more, and no later
    time standing for them (one moved too little to tell them yet is followed up once it
    passes too). None when ``grace`` is 0, or ``inc`` is not on."""
    if not grace or inc.status != "active":
        return {}
    off = set(villages_off(inc, topology))
    out: dict[datetime, list[str]] = {}
    for v in inc.notified_villages:
        told = inc.told_etr.get(v, inc.etr)
        if v not in off or told is None or now < told + grace:
            continue
        stands = village_etr(inc, v, topology)
        if stands is not None and stands > now:
            continue
        out.setdefault(told, []).append(v)
    return out


def late_word(row: OutboxRow) -> datetime | None:
    """The time a liaison's outage notice or update ``row`` states
    (:data:`~outage_sentinel.ordering.ETR_SAID`) when it goes after that time — sent then,
    or still to go (the check runs past it): the deliverer adds under its heading that the
    time has passed and the restoration time is not known
    (:func:`outage_sentinel.delivery.late_lines`), which is what the follow-up would say."""
    said = (row.payload or {}).get(ETR_SAID)
    if row.audience != "liaison" or row.purpose not in ("outage", "update") \
            or not isinstance(said, str):
        return None
    try:
        at = datetime.fromisoformat(said)
    except ValueError:
        return None
    if row.status in ("pending", "inflight") or (
            row.status == "sent" and row.sent_at is not None and row.sent_at >= at):
        return at
    return None


def as_told(inc: Incident, village: str, told: datetime, topology: Topology) -> Incident:
    """``inc`` stating ``told`` as the village's time (what it was told), for the update's
    words: the incident itself when that is its time now, else one whose time is ``told``
    for every village (as a time the command centre sets is: what ``village_etr`` reads)."""
    if village_etr(inc, village, topology) == told:
        return inc
    return replace(inc, etr=told, etr_set=told)


class Overruns:
    """Follows up the villages' expected restoration times gone by (:func:`overdue`): one
    update to each village, one alert to the command centre, per time told. One per
    lifecycle (:class:`~outage_sentinel.clock_checks.ClockChecks` runs it)."""

    def __init__(self, owner: OverrunOwner) -> None:
        self.owner = owner
        self.log = get_logger(component="lifecycle")

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.owner.config.notify.overrun_grace_minutes)

    def check(self, now: datetime) -> int:
        """Follow up every open incident's villages due (:func:`overdue`); returns how many
        rows were queued. The incidents are read without a lock, and what the outbox holds
        already of each time told, to pass over those followed up; each is decided again on
        the incident locked in the transaction that queues it (:meth:`follow_up_in`); one
        that fails is logged (``etr_overrun_failed``) and tried again at the next check."""
        store, grace = self.owner.store, self.grace
        if not grace:
            return 0
        queued = 0
        for row in store.load_incidents(open_only=True):
            if row["status"] != "active":
                continue
            inc = Incident.from_json(row["state"])
            due = overdue(inc, self.owner.topology, grace, now)
            if not due:
                continue
            done = self.followed_up(inc.id)
            if all(not self.missing(told, villages, done) for told, villages in due.items()):
                continue
            try:
                with store.transaction() as conn:
                    queued += self.follow_up_in(conn, inc.id, done, now)
            except Exception as exc:  # one incident's follow-up never stops the others'
                self.log.error("etr_overrun_failed", incident_id=inc.id,
                               error=redact(repr(exc)), exc_info=exc)
        return queued

    def followed_up(self, incident_id: str) -> set[tuple[int, str]]:
        """``(revision, recipient)`` of what needs no follow-up of the incident's times told:
        the updates and overrun alerts queued (any status: one the command centre withdrew
        stays its word), and the notices that state a time and go after it, not superseded
        (:func:`late_word`, :func:`~outage_sentinel.ordering.order`: the village reads in them
        that it has passed), keyed as that time's follow-up."""
        rows = self.owner.store.messages(incident_id=incident_id)
        out = {(r.revision, r.recipient) for r in rows if r.purpose in ("update", OVERRUN)}
        standing = [r for r in rows if r.status in STANDING]
        gone = order((), standing, {r.id for r in standing
                                    if (r.payload or {}).get(LATEST_ONLY)}).superseded
        for r in standing:
            if r.id not in gone and (said := late_word(r)) is not None:
                out.add((overrun_revision(said), r.recipient))
        return out

    def missing(self, told: datetime, villages: Sequence[str],
                done: set[tuple[int, str]]) -> list[str]:
        """The recipients still to hear of ``told`` passing: the villages' liaisons and the
        command centre (when it has a channel) not queued it yet."""
        key, cc = overrun_revision(told), self.owner.config.command_centre
        wanted = [r for v in villages for r in self.owner.planner.village_recipients(v)]
        if cc.channel is not None:
            wanted.append(f"command:{cc.target}")
        return [r for r in wanted if (key, r) not in done]

    def follow_up_in(self, conn: Connection, incident_id: str, done: set[tuple[int, str]],
                     now: datetime) -> int:
        """Queue what is still owed of ``incident_id``'s times gone by, its villages read
        again on the incident locked; log each time followed up. Returns the rows queued."""
        life = self.owner
        inc, _row = life.load_in(conn, incident_id)
        queued = 0
        for told, villages in overdue(inc, life.topology, self.grace, now).items():
            key = overrun_revision(told)
            rows = [r for v in villages for r in self.village_rows(inc, v, told, now)
                    if (key, r.recipient) not in done]
            body = self.alert(inc, told, villages, now)
            rows += [r for r in life.command_rows(inc, OVERRUN, body, revision=key)
                     if (key, r.recipient) not in done]
            added = life.store.enqueue_in(conn, rows, now)
            if added:
                life.store.log_in(conn, inc.id, now, OVERRUN, "daemon", "",
                                  {"etr": told.isoformat(), "villages": list(villages)})
                self.log.warning("etr_overrun", incident_id=inc.id, etr=told.isoformat(),
                                 villages=list(villages), queued=added)
            queued += added
        return queued

    def village_rows(self, inc: Incident, village: str, told: datetime, now: datetime
                     ) -> list[OutboxMessage]:
        """The update telling ``village`` its time ``told`` has passed and the new one is not
        known, keyed by that time, marked as stating no time and latest-only."""
        if not self.owner.planner.village_recipients(village):
            return []
        shown = as_told(inc, village, told, self.owner.topology)
        rows = self.owner.planner.rows(shown, [Notice("update", (village,))], now, shown)
        marks = {ETR_SAID: None, ETR_ONLY: True, LATEST_ONLY: True,
                 OVERRUN_OF: told.isoformat()}
        return [r.but(revision=overrun_revision(told), payload={
            **{k: v for k, v in r.payload.items() if k != VOID_ETR}, **marks}) for r in rows]

    def alert(self, inc: Incident, told: datetime, villages: Sequence[str], now: datetime
              ) -> str:
        """The command centre's alert: the incident, the villages still off, the time told and
        how long ago it passed, whether the villages could be told, and what to do."""
        topo, planner = self.owner.topology, self.owner.planner
        lang = planner.renderer.language
        words = ALERT_WORDS.get(lang, ALERT_WORDS["en"])
        names = [topo.villages[v].name if v in topo.villages else v for v in villages]
        off = [t for t in inc.off if t in topo.nodes and topo.nodes[t].village in villages]
        kind = "planned" if announced_kind(inc) in ("planned", "temporary") else "fault"
        heading = words[kind] + (
            f"{inc.id}（{label(KIND_LABELS, lang, inc.kind)}，"
            f"{planner.feeder_names.get(inc.feeder, inc.feeder)}）" if lang == "zh" else
            f"{inc.id} ({label(KIND_LABELS, lang, inc.kind)}, "
            f"{planner.feeder_names.get(inc.feeder, inc.feeder)})")
        line = words[f"line_{kind}"].format(
            villages=words["sep"].join(names), told=planner.local_time(told),
            by_centre=words["by_centre"] if inc.etr_set == told else "",
            minutes=int((now - told).total_seconds() // 60),
            households=topo.customers_of(off))
        untold = [n for v, n in zip(villages, names, strict=True)
                  if not planner.village_recipients(v)]
        told_line = words["told"] if len(untold) < len(names) else ""
        if untold:
            told_line += words["untold"].format(villages=words["sep"].join(untold))
        return "\n".join([heading, line, told_line, words["ask"].format(incident=inc.id)])
