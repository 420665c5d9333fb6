"""Reliability reports: incidents, customer-hours lost, AIHC-1 and RS-1 (DL/T 836), notices, crews.

:func:`build_report` reads the store (incidents, incident log, events, outbox) for a period
``[start, end)`` and returns a :class:`Report` of pandas DataFrames
(:func:`outage_sentinel.report_view.write_report` writes it as CSV, XLSX or a single-file HTML
page with embedded PNG charts); :func:`daily_report_message` is the short Chinese text the
daemon sends to the command centre.

Formulas (DL/T 836 供电系统供电可靠性评价规程)
----------------------------------------------

Each incident is split into **transformer areas** (台区): the union of the transformers of its
fault estimate (``state["estimate"]["transformers"]``) and of every restoration step in its log,
less the areas planned work was called off for before it began (recorded back before its
start: never off). An area is off in one or more spells:

* from when it went off: the earliest start of the records naming it (an area a later record
  added is off from that record's start; one no record names, inferred below a device, from
  the incident's start), never before the incident's start; planned work re-issued under a
  new id once under way is off from its first record's start (:func:`went_off_at`);
* until a restoration step (incident-log stage ``partially_restored`` or ``restored``) whose
  ``details["transformers"]`` lists it; a step without a transformer list restores every area
  still off; an operator's ``restoration_undone`` step listing it (``incidents reopen``: still
  off) undoes the restoration — it never happened, the spell goes on — unless the meters saw
  the area back (:meth:`_AreaSpells._seen_back`) or the step says supply was lost again
  (``incidents reopen --again``, ``details["again"]``; a step stored before that flag, by
  its note's words, :data:`LOST_AGAIN_WORDS`): then another spell starts; an area back that a record
  begun since says is off again is off again from that record's start (the time it was back
  is not counted), until a restoration step lists it or, while the incident is on and its
  state counts it off, on (with no such record, when it went off again is not known: off on
  from its last return);
* a spell still open ends at the incident's ``end_time``; if that is missing: ``now`` while
  the incident is active, else the time it was last updated;
* an area counted back unconfirmed at the end is off until a later ``confirmed_back`` step
  (a meter, a liaison or the command centre said it is back) or ``continued`` step (a new
  outage took it on: off here until that one began) lists it, even past ``end_time`` (a
  ``continued_undone`` step, that outage called off, undoes its ``continued``; the steps are
  read in the order they were written);
* a **cancelled** incident is off at most until it was cancelled (its first ``cancelled`` log
  entry, else its last update); one cancelled before it started was no interruption at all;
  one the command centre cancelled (``incidents cancel`` keeps a reason) counts only the
  areas a source saw off (:func:`seen_off`), and nothing when the step says it was a false
  alarm (``incidents cancel --false-alarm``, ``details["false_alarm"]`` of its ``cancelled``
  step; a step stored before that flag, by its reason's words, :data:`FALSE_ALARM_WORDS`) or
  every area it counts was off at once in an incident not cancelled (a duplicate,
  :func:`_without_duplicates`);

and every interval is clipped to ``[start, min(end, now))`` of the report, so planned outages
still in the future count 0 (work not begun by ``now`` is no interruption yet, nor still
off). An incident that ended with no area off longer than :data:`MOMENTARY` at a time (3
minutes: a recloser's operation; the longest spell of an area counted) is a short
interruption (短时停电):
counted apart (``momentary_incidents``), not in the figures below; the ``interruption`` column
says which incidents count (``sustained``), which are short (``momentary``) and which were
none. With ``c_a`` the customers of area ``a`` (topology) and ``h_a`` its clipped hours off,
where two incidents have one area off at once (planned work over a fault, two work orders)
the union of its spells, so that a customer's hour is counted once (each incident's own line
keeps its own hours)::

    customer-hours (停电时户数)        CH     = Σ_a c_a × h_a
    AIHC-1 (用户平均停电时间, h/户)      AIHC-1 = CH / N          N = customers of the scope
    RS-1 (供电可靠率, %)                 RS-1   = (1 − AIHC-1 / H) × 100
                                                 H = hours in the period (up to ``now``)

The scope is the whole area (N = all customers of the topology), a feeder (the customers of the
transformers it energises; an area's hours count to the feeder that energises it, which can
differ from the incident's feeder after a transfer) or a village (its transformers' customers).
Outages of planned *and* temporary work are 预安排停电 and reported together as ``planned``;
faults as ``fault``: each area's spell by the outage notice that took it off (a fault that
joins planned work counts only the areas it took off; :meth:`_Records.class_of`); where a
planned and a fault spell of one area overlap, the time is planned (planned = union of the
planned spells, fault = what the faults add), an incident
as ``fault`` when a fault took one of its areas off. Areas only possibly off (可能受影响: named
imprecisely, "XX村部分用户", or only inferred by the localiser, below no device that operated:
the crew's finding, else what a source or the command centre named: :func:`possible_areas`)
are listed (``mark`` ``possible`` in ``areas``,
``possible_customers`` / ``possible_customer_hours``) and left out of every figure.
An incident whose transformers are all unknown to the topology falls back to its ``customers``
column as one pseudo-area (restoration steps then subtract their
``details["customers"]``); its hours count to the whole area and its feeder, not to a village.
One with some areas unknown (renamed or removed by a topology reload since) counts the rest of
its customers (its ``customers`` less its known areas') the same way, back with the rest.

Other measures: notice latency = first liaison notice actually sent (outbox, audience
``liaison``, ``sent_at``) minus first evidence (earliest ``received_at`` of the incident's
events), in minutes. Crew arrival: the first ``dispatched`` log entry gives the crew and the
arrival deadline (``details["deadline"]``), the first ``on_site`` entry after it the arrival;
met = arrived by the deadline, missed = arrived late or not arrived once the deadline passed
(while the incident was still on), otherwise pending; the summary counts a met arrival in the
period of the arrival, a missed one in the period of its deadline. The liaisons' answers count
in the period they were given; "restored to confirmed" minutes run from the area's last
return before the answer. Dead letters: outbox rows with status
``dead`` given up on in the period (``dead_at``; rows from before schema version 4 have none
and count by when they were created).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import pandas as pd

from outage_sentinel.closeouts import found_devices
from outage_sentinel.incidents import FIELD_SOURCE, OPERATOR_SOURCE
from outage_sentinel.logs import redact
from outage_sentinel.topology import Topology

if TYPE_CHECKING:
    from outage_sentinel.store import Store

#: Incident kinds reported as 预安排停电 ("planned"); everything else is a fault.
PREARRANGED_KINDS = frozenset({"planned", "temporary"})
#: Log stages that restore transformer areas.
RESTORATION_STAGES = frozenset({"partially_restored", "restored"})
#: Steps after an incident ended that move an area's return later than the end it was
#: counted back at: evidence it is back (``confirmed_back``), or a new outage that took the
#: area on before anything did (``continued``, off here until that one began).
LATER_BACK_STAGES = frozenset({"confirmed_back", "continued"})
#: An interruption no longer than this is 短时停电 (DL/T 836.1: at most 3 minutes, a
#: recloser's or a transfer's): counted apart, not in the customer-hours, AIHC-1 and RS-1.
MOMENTARY = timedelta(minutes=3)
#: Sources whose word is not a sighting of the power: the command centre's own steps, and
#: liaisons' answers (the command centre overrules them). Their return is no proof against
#: ``incidents reopen``; an outage only they reported, cancelled, was never seen off.
WORD_SOURCES = frozenset({OPERATOR_SOURCE, FIELD_SOURCE})
#: Words of an ``incidents reopen`` note saying supply was lost again after a real return (a
#: re-trip), not that the restoration recorded was wrong (误恢复, 仍停电: still off). Read only
#: for steps stored before ``--again`` was kept in their details (:func:`lost_again`).
LOST_AGAIN_WORDS = ("又跳", "再次", "又停", "重新停", "复跳", "重合", "again", "re-trip",
                    "retrip", "tripped")
#: Words of an ``incidents cancel`` reason saying no supply was lost (误报: the reports were
#: false, a customer's own breaker): nothing of the outage counts. Any other reason (a
#: duplicate ticket, merged into another) is no proof the power stayed on. Read only for
#: steps stored before ``--false-alarm`` was kept in their details (:func:`false_alarm`).
FALSE_ALARM_WORDS = ("误报", "虚报", "不实", "未停电", "没有停电", "无停电", "未失电",
                     "用户内部", "客户内部", "用户侧", "false alarm", "false report",
                     "no outage", "not an outage", "never off", "customer's own")
#: Table names in the order they are written.
TABLES = ("incidents", "by_feeder", "by_village", "summary", "dead_letters", "areas")

INCIDENT_COLUMNS = [
    "id", "kind", "class", "status", "feeder", "feeder_name", "start", "end", "duration_h",
    "customers", "customer_hours", "villages", "cause_category", "stage", "parent_id",
    "first_evidence", "first_liaison_notice", "notice_latency_min", "crew", "crew_name",
    "arrival_deadline",
    "arrived_at", "met_commitment", "calls", "unconfirmed_areas", "interruption",
    "possible_customers", "possible_customer_hours",
]
AREA_COLUMNS = [
    "incident_id", "class", "transformer", "feeder", "village", "customers", "off_from",
    "back_at", "hours", "customer_hours", "mark",
]
#: An area's ``mark`` in the ``areas`` table: counted in the figures, or only possibly off.
AREA_MARKS = ("confirmed", "possible")
SCOPE_COLUMNS = [
    "customers", "incidents", "fault_incidents", "planned_incidents", "customer_hours",
    "fault_customer_hours", "planned_customer_hours", "aihc1_h", "rs1_pct",
]
DEAD_LETTER_COLUMNS = [
    "id", "incident_id", "audience", "purpose", "channel", "recipient", "created_at",
    "dead_at", "attempts", "last_error",
]


@dataclass
class Report:
    """A reliability report for ``[start, end)``; every table is a pandas DataFrame.

    ``incidents``: one row per incident overlapping the period. ``by_feeder`` / ``by_village``:
    every feeder / village of the topology with its customers, incidents, customer-hours,
    AIHC-1 and RS-1. ``summary``: one row for the whole area. ``dead_letters``: outbox rows that
    died. ``areas``: the transformer-area intervals the customer-hours come from (for audits).
    Times are timezone-aware in ``tz``.
    """

    start: datetime
    end: datetime
    tz: tzinfo
    now: datetime
    incidents: pd.DataFrame
    by_feeder: pd.DataFrame
    by_village: pd.DataFrame
    summary: pd.DataFrame
    dead_letters: pd.DataFrame
    areas: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AREA_COLUMNS))

    @property
    def hours(self) -> float:
        """Hours of the period up to ``now`` (the RS-1 denominator)."""
        return _period_hours(self.start, self.end, self.now)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by name, in :data:`TABLES` order."""
        return {name: getattr(self, name) for name in TABLES}

    @property
    def title(self) -> str:
        """E.g. ``Outage report 2026-03-01`` or ``Outage report 2026-03-02 – 2026-03-08``."""
        first = self.start.astimezone(self.tz).date()
        last = (self.end.astimezone(self.tz) - timedelta(microseconds=1)).date()
        span = first.isoformat() if first == last else f"{first.isoformat()} – {last.isoformat()}"
        return f"Outage report {span}"


# -- periods ------------------------------------------------------------------------------------


def day_period(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """Local midnight of ``day`` to the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def week_period(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The Monday–Sunday week containing ``day`` (local midnights)."""
    monday = day - timedelta(days=day.weekday())
    return (datetime.combine(monday, time(0), tzinfo=tz),
            datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz))


def range_period(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """From local midnight of ``first`` to the end of ``last`` (both days included)."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return (datetime.combine(first, time(0), tzinfo=tz),
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz))


def yesterday(now: datetime, tz: tzinfo) -> date:
    """The local calendar day before ``now`` (the default daily report)."""
    return now.astimezone(tz).date() - timedelta(days=1)


def last_full_week(now: datetime, tz: tzinfo) -> date:
    """A day (the Monday) of the last Monday–Sunday week that has ended by ``now``."""
    today = now.astimezone(tz).date()
    return today - timedelta(days=today.weekday() + 7)


# -- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """The customers a report's figures are of: the transformers of its feeders, their
    customers and villages (the whole bundle's without feeders)."""

    transformers: list[str]
    customers: int
    villages: list[str]

    @classmethod
    def of(cls, topology: Topology, feeders: Collection[str] | None) -> _Scope:
        ts = [t for t in topology.transformers
              if feeders is None or topology.feeder_of(t) in feeders]
        served = {topology.nodes[t].village for t in ts}
        villages = [v for v in topology.villages if feeders is None or v in served]
        return cls(ts, sum(topology.nodes[t].customers for t in ts), villages)


@dataclass
class _Area:
    incident_id: str
    klass: str
    transformer: str | None
    feeder: str
    village: str | None
    customers: int
    off_from: datetime
    back_at: datetime
    #: False for an area only possibly off (可能受影响: named imprecisely, or only the
    #: localiser's inference): listed, not in the figures (:func:`possible_areas`).
    confirmed: bool = True


def build_report(store: Store, topology: Topology, start: datetime, end: datetime, tz: tzinfo,
                 now: datetime, feeders: Collection[str] | None = None) -> Report:
    """Read the store and compute the report for ``[start, end)`` (aware datetimes).

    ``now`` bounds ongoing outages and the period (nothing is counted after it); ``feeders``
    (a region's, ``None``: every feeder of the bundle) bound the customers the figures are
    of, and the feeders and villages listed. See the module docstring for the formulas.
    """
    _check_period(start, end, now)
    scope = _Scope.of(topology, feeders)
    rows, logs, first_evidence, first_notice, dead = store.report_snapshot(start, end)
    upto = min(end, now)
    ctx = _RowContext(topology, tz, now, _feeder_names(topology), first_evidence, first_notice)
    incident_rows, areas, feeder_touch, village_touch, listed = _in_period(
        ctx, rows, logs, start, end, upto)
    incidents = _incidents_frame(incident_rows, tz)
    area_df = _areas_frame(areas, tz)
    counted = confirmed_areas(area_df)
    hours = _period_hours(start, end, now)
    by_feeder = _by_feeder(topology, scope, incidents, counted, feeder_touch, ctx.feeder_names,
                           hours)
    by_village = _by_village(topology, scope, incidents, counted, village_touch, hours)
    # The liaisons' answers given in the period (a day's report counts that day's), to any
    # incident read: one over before midnight is confirmed after it, in the next day's.
    given = [a for iid in dict.fromkeys(r["id"] for r in rows) for a in store.answers(str(iid))]
    answers = [a for a in given if start <= _aware(a["at"]) < end]
    by_village = _with_confirmations(by_village, listed, given, (start, end))
    dead_df = _dead_frame(dead, tz)
    summary = _summary(scope, incidents, counted, dead_df, start, end, tz, now, hours)
    summary["possible_customer_hours"] = union_customer_hours(
        area_df[area_df["mark"] != AREA_MARKS[0]])
    _add_calls_and_answers(summary, store.calls_between(start, upto), by_village, answers)
    return Report(start=start, end=end, tz=tz, now=now, incidents=incidents, by_feeder=by_feeder,
                  by_village=by_village, summary=summary, dead_letters=dead_df, areas=area_df)


def _check_period(start: datetime, end: datetime, now: datetime) -> None:
    """Refuse naive times and an empty period."""
    if start.tzinfo is None or end.tzinfo is None or now.tzinfo is None:
        raise ValueError("build_report needs timezone-aware start, end and now")
    if end <= start:
        raise ValueError("report period is empty (end <= start)")


def _in_period(ctx: _RowContext, rows: Sequence[Mapping[str, Any]],
               logs: Mapping[str, list[dict[str, Any]]], start: datetime, end: datetime,
               upto: datetime
               ) -> tuple[list[dict[str, Any]], list[_Area], dict[str, set[str]],
                          dict[str, set[str]], list[_Area]]:
    """The report lines of the incidents overlapping ``[start, end)``, their areas'
    intervals clipped to ``[start, upto)`` (of those that count), the incidents each feeder
    and each village had, and the unclipped areas of every incident read (those over before
    the period too: a confirmation given in it is measured from their return)."""
    incident_rows: list[dict[str, Any]] = []
    areas: list[_Area] = []
    # Which incidents each feeder / village had (any area, even with 0 h inside the period).
    feeder_touch: dict[str, set[str]] = {}
    village_touch: dict[str, set[str]] = {}
    listed: list[_Area] = []
    for row, log, inc_areas, eff_end in _without_duplicates(
            [_read(ctx, row, logs.get(row["id"], [])) for row in rows]):
        klass = class_of_areas(inc_areas, row["kind"])
        nominal_end = eff_end if eff_end is not None else ctx.now
        listed.extend(inc_areas)
        if not (row["start"] < end and (nominal_end > start or row["start"] >= start)):
            continue
        interruption = interruption_of(inc_areas, row["start"], eff_end, ctx.now)
        clipped = [c for c in (_clip(a, start, upto) for a in inc_areas) if c is not None]
        if interruption == "sustained":
            areas.extend(clipped)
            # The feeders and villages of its areas counted off in the period (its own
            # feeder when it has no area counted at all).
            here = [a for a in clipped if a.confirmed]
            if here or not any(a.confirmed for a in inc_areas):
                _note_touched(row, here, feeder_touch, village_touch)
        else:
            clipped = []
        incident_rows.append({**_incident_row(ctx, row, log, klass, inc_areas, clipped,
                                              eff_end), "interruption": interruption})
    return incident_rows, areas, feeder_touch, village_touch, listed


_Read = tuple[dict[str, Any], Sequence[Mapping[str, Any]], list[_Area], "datetime | None"]


def _read(ctx: _RowContext, row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> _Read:
    """One incident as the report reads it: its row (its start when its power went off), its
    log, its areas' spells unclipped and its effective end (:func:`_areas_of`)."""
    row = {**row, "start": went_off_at(row, log)}
    inc_areas, eff_end = _areas_of(row, log, ctx.topology, incident_class_of(row["kind"]),
                                   ctx.now)
    return row, log, inc_areas, eff_end


def _without_duplicates(read: list[_Read]) -> list[_Read]:
    """``read`` with the duplicates taken out: an incident the command centre cancelled (not
    as a false alarm) whose every area counted was off at the same time in an incident not
    cancelled is the same outage told twice — it was no interruption of its own (its hours
    are the other's; counted, it would be one incident too many)."""
    held: dict[str, list[tuple[datetime, datetime]]] = {}
    for row, _, areas, _ in read:
        if row["status"] != "cancelled":
            for a in areas:
                if a.confirmed and a.transformer is not None:
                    held.setdefault(a.transformer, []).append((a.off_from, a.back_at))
    out: list[_Read] = []
    for row, log, areas, eff_end in read:
        counted = [a for a in areas if a.confirmed]
        if _cancelled_areas(row, log) and counted and all(
                any(lo < a.back_at and a.off_from < hi for lo, hi in held.get(str(a.transformer), ()))
                for a in counted):
            areas, eff_end = [], row["start"]
        out.append((row, log, areas, eff_end))
    return out


def interruption_of(areas: Sequence[_Area], start: datetime, end: datetime | None,
                    now: datetime) -> str:
    """``sustained`` (it counts), ``momentary`` (ended, no area off longer than
    :data:`MOMENTARY` at a time: 短时停电, counted apart) or ``none`` (no area ever off: a
    false alarm, work called off or cancelled before it began, or work still to begin at
    ``now``). An incident still on is sustained; one with no area to count (its customers
    unknown) goes by its own ``start`` and ``end``."""
    if start > now:
        return "none"
    if end is None:
        return "sustained"
    # By the areas counted (those only possibly off are not), when there are any.
    counted = [a for a in areas if a.confirmed] or list(areas)
    longest = longest_spell(counted) if counted else _hours(start, end)
    if longest <= 0:
        return "none"
    return "sustained" if longest * 3600 > MOMENTARY.total_seconds() else "momentary"


def longest_spell(areas: Sequence[_Area]) -> float:
    """The hours of the longest time one area was off without a break (its spells joined
    where they meet or overlap); each piece without a transformer (customers the topology
    cannot place) is an area of its own."""
    spells: dict[object, list[tuple[datetime, datetime]]] = {}
    for i, a in enumerate(areas):
        key = a.transformer if a.transformer is not None else ("piece", i)
        spells.setdefault(key, []).append((a.off_from, a.back_at))
    longest = 0.0
    for intervals in spells.values():
        since: datetime | None = None
        reach: datetime | None = None
        for off, back in sorted(intervals):
            if reach is None or since is None or off > reach:
                since, reach = off, back
            else:
                reach = max(reach, back)
            longest = max(longest, _hours(since, reach))
    return longest


def _note_touched(row: Mapping[str, Any], inc_areas: Sequence[_Area],
                  feeder_touch: dict[str, set[str]], village_touch: dict[str, set[str]]
                  ) -> None:
    """Add the incident to the feeders and villages of its areas (its own feeder when it
    has none)."""
    for a in inc_areas:
        feeder_touch.setdefault(a.feeder, set()).add(row["id"])
        if a.village:
            village_touch.setdefault(a.village, set()).add(row["id"])
    if not inc_areas:
        feeder_touch.setdefault(row["feeder"], set()).add(row["id"])


def _incidents_frame(incident_rows: list[dict[str, Any]], tz: tzinfo) -> pd.DataFrame:
    """The ``incidents`` table: times local, in start order."""
    incidents = pd.DataFrame(incident_rows, columns=INCIDENT_COLUMNS)
    incidents["met_commitment"] = incidents["met_commitment"].astype("boolean")
    for col in ("start", "end", "first_evidence", "first_liaison_notice", "arrival_deadline",
                "arrived_at"):
        incidents[col] = _as_local_datetimes(incidents[col], tz)
    return incidents.sort_values(["start", "id"], kind="stable").reset_index(drop=True)


def _add_calls_and_answers(summary: pd.DataFrame, calls: Mapping[Any, str | None],
                           by_village: pd.DataFrame, answers: Sequence[Mapping[str, Any]]
                           ) -> None:
    """Add to ``summary`` the period's trouble calls (and those that joined no incident) and
    the liaisons' answers (confirmations, and "still dark")."""
    summary["trouble_calls"] = len(calls)
    summary["trouble_calls_without_incident"] = sum(1 for i in calls.values() if i is None)
    summary["field_confirmations"] = int(by_village["field_confirmations"].sum())
    summary["field_still_dark"] = sum(1 for a in answers if a["answer"] == "dark")


@dataclass(frozen=True)
class _RowContext:
    """What every incident row of one report reads besides its own incident."""

    topology: Topology
    tz: tzinfo
    now: datetime
    feeder_names: dict[str, str]
    first_evidence: dict[str, datetime]
    first_notice: dict[str, datetime]


def _incident_row(ctx: _RowContext, row: Mapping[str, Any], log: Sequence[Mapping[str, Any]],
                  klass: str, inc_areas: list[_Area], clipped: list[_Area],
                  eff_end: datetime | None) -> dict[str, Any]:
    """One incident's line of the report (times still aware; localised by the caller)."""
    tz, topology = ctx.tz, ctx.topology
    off = [a for a in inc_areas if a.back_at > a.off_from]
    duration = (_hours(min(a.off_from for a in off), max(a.back_at for a in off))
                if off else 0.0)
    villages = _unique(a.village for a in inc_areas if a.village)
    crew, deadline, arrived, met = _arrival(row, log, eff_end, ctx.now)
    evidence = ctx.first_evidence.get(row["id"])
    notice = ctx.first_notice.get(row["id"])
    latency = ((notice - evidence).total_seconds() / 60.0
               if evidence is not None and notice is not None else math.nan)
    return {
        "id": row["id"], "kind": row["kind"], "class": klass, "status": row["status"],
        "feeder": row["feeder"], "feeder_name": ctx.feeder_names.get(row["feeder"], ""),
        "start": _local(row["start"], tz), "end": _local(eff_end, tz),
        "duration_h": duration,
        "customers": _customers(a for a in inc_areas if a.confirmed),
        "customer_hours": _customer_hours(a for a in clipped if a.confirmed),
        # 可能受影响: named imprecisely or only inferred, listed apart from the figures.
        "possible_customers": _customers(a for a in inc_areas if not a.confirmed),
        "possible_customer_hours": _customer_hours(a for a in clipped if not a.confirmed),
        "villages": "、".join(_village_name(topology, v) for v in villages),
        "cause_category": row.get("cause_category") or "",
        "stage": row.get("stage") or "", "parent_id": row.get("parent_id") or "",
        "first_evidence": _local(evidence, tz), "first_liaison_notice": _local(notice, tz),
        "notice_latency_min": latency, "crew": crew or "",
        "crew_name": _crew_name(topology, crew),
        "arrival_deadline": _local(deadline, tz), "arrived_at": _local(arrived, tz),
        "met_commitment": met,
        "calls": sum(1 for m in (row.get("state") or {}).get("members", {}).values()
                     if m.get("signal") == "call"),
        # Counted back when its records ended, nothing yet saying so (恢复待确认).
        "unconfirmed_areas": len((row.get("state") or {}).get("unconfirmed") or ()),
    }


def _customers(areas: Iterable[_Area]) -> int:
    """The customers of ``areas``, each transformer area once (an area off in two spells
    is still its customers)."""
    seen: dict[str | None, int] = {}
    total = 0
    for a in areas:
        if a.transformer is None:
            total += a.customers
        else:
            seen[a.transformer] = a.customers
    return total + sum(seen.values())


def _customer_hours(areas: Iterable[_Area]) -> float:
    return sum(a.customers * _hours(a.off_from, a.back_at) for a in areas)


def incident_class_of(kind: str) -> str:
    """``planned`` for planned and temporary work (预安排停电), else ``fault``."""
    return "planned" if kind in PREARRANGED_KINDS else "fault"


def customer_hours_of(areas: Iterable[tuple[int, datetime, datetime]], start: datetime,
                      end: datetime) -> float:
    """Σ customers × hours of each ``(customers, off_from, back_at)`` within ``[start, end)``."""
    total = 0.0
    for customers, off, back in areas:
        lo, hi = max(off, start), min(back, end)
        if hi > lo:
            total += customers * _hours(lo, hi)
    return total


def aihc1(customer_hours: float, customers: int) -> float:
    """AIHC-1 in hours per customer (NaN for a scope without customers)."""
    return customer_hours / customers if customers > 0 else math.nan


def rs1(aihc1_h: float, hours: float) -> float:
    """RS-1 in percent (NaN for an empty period or scope)."""
    if hours <= 0 or math.isnan(aihc1_h):
        return math.nan
    return (1.0 - aihc1_h / hours) * 100.0


def _aware(value: Any) -> datetime:
    """Aggregates (MIN) bypass the column type on SQLite: parse and mark as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the database, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _areas_of(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]], topology: Topology,
              klass: str, now: datetime) -> tuple[list[_Area], datetime | None]:
    """Unclipped off-intervals of the incident's areas (an area off again after it came back
    has one per spell), and its effective end (None = ongoing)."""
    start: datetime = row["start"]
    steps = [e for e in log if e["stage"] in RESTORATION_STAGES]
    known = _known_areas(row, steps, topology, log)
    cancelled_at = _cancelled_at(row, log) if row["status"] == "cancelled" else None
    counts = _cancelled_areas(row, log)
    if cancelled_at is not None and (cancelled_at <= start or counts == frozenset()):
        return [], start
    rest_end = _rest_end(row, steps, cancelled_at, now)
    remaining_end = rest_end if rest_end is not None else max(now, start)
    later = _later_back(log)
    if known:
        areas = _known_spells(row, log, known, topology, klass, remaining_end,
                              rest_end is None)
        areas += _renamed_areas(row, klass, known, steps, topology, remaining_end)
    else:
        areas = _unplaced_areas(row, klass, steps, remaining_end)
    if counts is not None:  # cancelled, no false alarm: what a source saw off
        areas = [a for a in areas if a.transformer in counts]
        if not areas:
            return [], start
    eff_end = rest_end
    if eff_end is not None and later and areas:  # an area back after the records ended
        eff_end = max(eff_end, *(a.back_at for a in areas))
    if eff_end is None and areas and all(a.back_at < remaining_end for a in areas):
        eff_end = max(a.back_at for a in areas)  # every area back, status not yet updated
    return areas, eff_end


def _known_spells(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]],
                  known: Sequence[str], topology: Topology, klass: str,
                  remaining_end: datetime, ongoing: bool) -> list[_Area]:
    """The spells off of the incident's ``known`` areas, each classed by the record that
    took the area off (:meth:`_Records.class_of`) and marked possible or not."""
    records = _Records.of(row, log)
    steps = [e for e in log if e["stage"] in RESTORATION_STAGES]
    spells = _AreaSpells(row, log, known, remaining_end, _later_back(log), ongoing,
                         records.starts)
    starts = _area_starts(row, steps, records.unbegun)
    possible = possible_areas(row, topology, found_devices(log))
    return [_transformer_area(row, records.class_of(t, off, klass), t, topology, off, back,
                              t not in possible)
            for t in known for off, back in spells.of(t, starts.get(t, row["start"]))]


@dataclass(frozen=True)
class _Records:
    """What an incident's records (its state's members) say of each area, read once:

    ``starts``: when the records saying an area is off (an outage notice or a meter's dark
    report, not called off) began, for an area off again after it came back; ``kinds``: each
    outage notice naming the area, ``(start, class)``, for which kind of outage took it off;
    ``opening``: every outage notice's, for an area no notice names; ``unbegun``: records of
    planned work re-issued under a new id before they began (their times were never the
    work's, :func:`reissued_records`)."""

    starts: Mapping[str, tuple[datetime, ...]]
    kinds: Mapping[str, tuple[tuple[datetime, str], ...]]
    opening: tuple[tuple[datetime, str], ...]
    unbegun: frozenset[str]

    @classmethod
    def of(cls, row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> _Records:
        members = (row.get("state") or {}).get("members") or {}
        unbegun = reissued_records(members, log)[1]
        starts: dict[str, list[datetime]] = {}
        kinds: dict[str, list[tuple[datetime, str]]] = {}
        opening: list[tuple[datetime, str]] = []
        for key, m in members.items():
            at = _parse_time(m.get("start"))
            if at is None or key in unbegun:
                continue
            if (m.get("signal") in ("notice", "dead") or _outage_spell(m)) and (
                    m.get("status") != "cancelled" or m.get("superseded_by")):
                for t in m.get("transformers") or ():
                    starts.setdefault(t, []).append(at)
            if m.get("signal") == "notice":
                kind = (at, incident_class_of(str(m.get("kind") or "fault")))
                opening.append(kind)
                for t in m.get("transformers") or ():
                    kinds.setdefault(t, []).append(kind)
        return cls({t: tuple(v) for t, v in starts.items()},
                   {t: tuple(v) for t, v in kinds.items()}, tuple(opening), unbegun)

    def class_of(self, t: str, off: datetime, default: str) -> str:
        """The class of the outage that took area ``t`` off at ``off`` (DL/T 836 classes each
        customer's interruption by its cause, not by what later joined it): of the notices
        naming it (none: of every notice), the one begun last by then, else the first to
        begin; planned work before a fault of the same start (the work explains it)."""
        kinds = self.kinds.get(t) or self.opening
        if not kinds:
            return default
        began = [k for k in kinds if k[0] <= off]
        at = max(k[0] for k in began) if began else min(k[0] for k in kinds)
        classes = {c for s, c in kinds if s == at}
        return "planned" if "planned" in classes else "fault"


def class_of_areas(areas: Sequence[_Area], kind: str) -> str:
    """An incident's class in the counts: ``fault`` when a fault took one of its areas off,
    ``planned`` when planned or temporary work took every one off (a fault report the work
    explains adds no fault); by its kind when it has no area."""
    counted = [a for a in areas if a.confirmed] or list(areas)
    if not counted:
        return incident_class_of(kind)
    return "fault" if any(a.klass == "fault" for a in counted) else "planned"


def possible_areas(row: Mapping[str, Any], topology: Topology,
                   found: Sequence[str] = ()) -> frozenset[str]:
    """The incident's areas only possibly off (可能受影响, as the villages are told): named
    imprecisely ("XX村部分用户": by its words not every customer of them) or only inferred
    by the localiser, and below no device that operated (below one, the topology makes the
    whole area off). Which devices operated: those the crew found (``found``, the close-out's
    or the crew page's: :func:`~outage_sentinel.closeouts.found_devices`), which correct what
    a source reported or the command centre set; without a finding (or one the topology does
    not know), those. The report lists
    them with their customers apart; counting them would state a guess as customers' hours
    off. Areas a record reported off always count."""
    state = row.get("state") or {}
    maybe = [t for t, mark in (state.get("scope") or {}).items() if mark != "reported"]
    if not maybe:
        return frozenset()
    devices = ([d for d in found if d in topology.pos]
               or [d for d in _named_devices(state) if d in topology.pos])
    return frozenset(t for t in maybe if t not in topology.pos
                     or not any(topology.is_downstream(t, d) for d in devices))


def _named_devices(state: Mapping[str, Any]) -> list[str]:
    """Devices a source's record (not called off) names operated, and the command centre's."""
    named = [str(m["device"]) for m in (state.get("members") or {}).values()
             if m.get("device") and m.get("signal") in ("notice", "device_open")
             and m.get("status") != "cancelled"]
    return [*named, *(state.get("device_set") or ())]


def reissued_records(members: Mapping[str, Mapping[str, Any]],
                     log: Sequence[Mapping[str, Any]]) -> tuple[dict[str, datetime], frozenset[str]]:
    """The records of planned work re-issued under a new id (:attr:`Member.superseded_by`)
    that had begun by then, with their start, and those that had not. One had begun when its
    start had passed at the re-issue and the record re-issuing it does not start later than
    the re-issue: the outage system stamps an edit of work under way with the edit's time,
    while the power went off at the first record's start. A re-issue to a start still to
    come moved work that had not begun."""
    when = {str((e.get("details") or {}).get("record")): e["at"] for e in reversed(log)
            if e["stage"] == "reissued"}
    begun: dict[str, datetime] = {}
    unbegun: set[str] = set()
    for key, m in members.items():
        by = members.get(str(m.get("superseded_by") or ""))
        at = when.get(key) or _parse_time(m.get("seen_at"))
        start = _parse_time(m.get("start"))
        if by is None or at is None or start is None:
            continue
        new = _parse_time(by.get("start"))
        if start < at and (new is None or new <= at):
            begun[key] = start
        else:
            unbegun.add(key)
    return begun, frozenset(unbegun)


def went_off_at(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> datetime:
    """When the incident's power went off: its start, or the start of planned work it had
    re-issued under a new id once under way (:func:`reissued_records`). The incident's own
    start leaves re-issued records out (a shifted window is the new record's, for the
    notices); the customers were off from the first."""
    members = (row.get("state") or {}).get("members") or {}
    begun = reissued_records(members, log)[0]
    start: datetime = min([row["start"], *begun.values()])
    return start


def says_lost_again(note: Any) -> bool:
    """Whether an ``incidents reopen`` note says supply was lost again (:data:`LOST_AGAIN_WORDS`)."""
    text = str(note or "").lower()
    return any(w in text for w in LOST_AGAIN_WORDS)


def says_false_alarm(reason: Any) -> bool:
    """Whether an ``incidents cancel`` reason says no supply was lost (:data:`FALSE_ALARM_WORDS`)."""
    text = str(reason or "").lower()
    return any(w in text for w in FALSE_ALARM_WORDS)


def lost_again(step: Mapping[str, Any]) -> bool:
    """Whether an ``incidents reopen`` step (``restoration_undone``) says supply was lost again
    after a real return: its ``again`` flag (``--again``), else, stored before the flag, its
    note's words (:func:`says_lost_again`)."""
    flag = (step.get("details") or {}).get("again")
    return bool(flag) if isinstance(flag, bool) else says_lost_again(step.get("note"))


def false_alarm(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the command centre cancelled the incident as a false alarm, no supply lost:
    the ``false_alarm`` flag of its latest ``cancelled`` step keeping one (``incidents cancel
    --false-alarm``), else, stored before the flag, its reason's words
    (:func:`says_false_alarm`)."""
    for e in reversed(log):
        flag = (e.get("details") or {}).get("false_alarm") if e["stage"] == "cancelled" else None
        if isinstance(flag, bool):
            return flag
    return says_false_alarm((row.get("state") or {}).get("cancel_reason"))


def seen_off(row: Mapping[str, Any]) -> frozenset[str]:
    """The areas of the incident a source saw off (meters, the outage system's record, not
    called off by it): not the command centre's or a liaison's word (:data:`WORD_SOURCES`),
    not a trouble call, not an area the command centre took out of the scope."""
    state = row.get("state") or {}
    excluded = set(state.get("excluded") or ())
    return frozenset(
        t for key, m in (state.get("members") or {}).items()
        if str(key).split("|", 1)[0] not in WORD_SOURCES
        and m.get("signal") in ("notice", "dead") and m.get("status") != "cancelled"
        for t in m.get("transformers") or () if t not in excluded)


def _cancelled_areas(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]
                     ) -> frozenset[str] | None:
    """What of an incident the command centre cancelled counts (``incidents cancel`` keeps
    why): nothing when it was a false alarm (:func:`false_alarm`), else the areas a source
    saw off (:func:`seen_off`) — a cancel is no proof that the power stayed on. ``None``: not
    cancelled by the command centre."""
    reason = (row.get("state") or {}).get("cancel_reason")
    if row["status"] != "cancelled" or not reason:
        return None
    return frozenset() if false_alarm(row, log) else seen_off(row)


def _known_areas(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]],
                 topology: Topology, log: Sequence[Mapping[str, Any]]) -> list[str]:
    """The incident's transformer areas the topology knows: its estimate's, and those its
    restoration ``steps`` list; without the areas planned work left before it began
    (:func:`_called_off`)."""
    state = row.get("state") or {}
    estimate = state.get("estimate") or {}
    listed = list(estimate.get("transformers") or [])
    for step in steps:
        listed.extend((step.get("details") or {}).get("transformers") or [])
    called_off = _called_off(row, log)
    return [t for t in _unique(listed) if t in topology.nodes and t not in called_off]


def _called_off(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> set[str]:
    """Areas planned or temporary work was called off for before it began (its ``called_off``
    log steps: a record cancelled or edited to leave them out) and that its state still counts
    back: their power never went off."""
    restored = (row.get("state") or {}).get("restored") or {}
    return {t for e in log if e["stage"] == "called_off"
            for t in (e.get("details") or {}).get("transformers") or () if t in restored}


def _outage_spell(member: Mapping[str, Any]) -> bool:
    """Whether a stored record is an area's outage that ended in its restoration: ``alive``,
    restored, begun before it ended (the AMI screen's record once the meters are back, its
    start kept; :func:`outage_sentinel.incidents.reports_outage`), not a reading."""
    start, end = _parse_time(member.get("start")), _parse_time(member.get("end"))
    return (member.get("signal") == "alive" and member.get("status") == "restored"
            and start is not None and end is not None and start < end)


def _area_starts(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]],
                 unbegun: Collection[str] = ()) -> dict[str, datetime]:
    """When each area named by the incident's records went off: the earliest start of the
    records naming it (ended ones too), never before the incident's start, and the
    incident's start when a restoration step listed it before that (it was off already,
    inferred). An area no record names (inferred below a device) is off from the incident's
    start (absent here). Records of planned work re-issued before they began (``unbegun``)
    say nothing of when the work began."""
    start: datetime = row["start"]
    first_back: dict[str, datetime] = {}
    for step in steps:
        for t in (step.get("details") or {}).get("transformers") or ():
            first_back[t] = min(first_back.get(t, step["at"]), step["at"])
    starts: dict[str, datetime] = {}
    for key, member in ((row.get("state") or {}).get("members") or {}).items():
        at = _parse_time(member.get("start"))
        if at is None or key in unbegun or member.get("signal") == "device_closed" or (
                member.get("signal") == "alive" and not _outage_spell(member)):
            continue
        for t in member.get("transformers") or ():
            starts[t] = min(starts.get(t, at), at)
    return {t: start if at <= start or first_back.get(t, at) < at else at
            for t, at in starts.items()}


@dataclass
class _AreaSpells:
    """The spells off of an incident's ``known`` areas, read from its log in the order
    written: a restoration step listing an area (one listing none: every area) ends its
    spell, an operator's ``restoration_undone`` listing it starts another; a spell still
    open ends at ``remaining_end``, or at the time a step after the end gives (``later``,
    :func:`_later_back`). An area back that a record begun since says is off again (``named``:
    the starts of the records saying each area is off) is off again from that record's
    start, until the next restoration step listing it or, while the incident is ``ongoing``
    and its state counts it off (in the estimate, not back, not taken out), on: the gap
    between its return and the new outage is not counted. Off again with no record begun
    since (a record the source re-activated), when is not known: off on from its last return."""

    row: Mapping[str, Any]
    log: Sequence[Mapping[str, Any]]
    known: Sequence[str]
    remaining_end: datetime
    later: Mapping[str, datetime]
    ongoing: bool
    named: Mapping[str, Sequence[datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The steps that start or end a spell, in the order written, each with the areas it
        # lists (a restoration listing none: every known area).
        every = frozenset(self.known)
        self._steps = [(e, frozenset((e.get("details") or {}).get("transformers") or ())
                        or (every if e["stage"] in RESTORATION_STAGES else frozenset()))
                       for e in sorted(self.log, key=lambda e: int(e.get("id") or 0))
                       if e["stage"] in RESTORATION_STAGES or e["stage"] == "restoration_undone"]

    def of(self, t: str, off_from: datetime) -> list[tuple[datetime, datetime]]:
        spells: list[tuple[datetime, datetime]] = []
        since: datetime | None = off_from
        for e, listed in self._steps:
            if t not in listed:
                continue
            if e["stage"] in RESTORATION_STAGES and since is None and spells:
                since = self._again(t, spells[-1][1], min(e["at"], self.remaining_end))
            if e["stage"] in RESTORATION_STAGES and since is not None:
                spells.append((since, max(since, min(e["at"], self.remaining_end))))
                since = None
            elif e["stage"] == "restoration_undone" and since is None:
                since = self._undone(t, e, spells, off_from)
        if since is None and spells and self._off_again(t):
            since = self._again(t, spells[-1][1], self.remaining_end) or spells.pop()[0]
        if since is not None:
            spells.append((since, max(since, self.remaining_end)))
        if t in self.later and spells:
            since = spells[-1][0]
            spells[-1] = (since, max(since, self.later[t]))
        return spells

    def _undone(self, t: str, step: Mapping[str, Any], spells: list[tuple[datetime, datetime]],
                off_from: datetime) -> datetime:
        """Where area ``t``'s spell resumes at the command centre's ``restoration_undone``
        ``step`` (``incidents reopen``: "still off"). A restoration it undid never happened:
        the last spell goes on from its start (``spells`` loses it), the time recorded back
        counted off. Only a return the meters saw (:meth:`_seen_back`) or supply lost again
        by the step's word (:func:`lost_again`: ``--again``, or the words of a step stored
        before it) was real: a new spell, from a record begun since saying it is off, else
        from the step."""
        at: datetime = step["at"]
        if not spells:
            return max(off_from, at)
        if self._seen_back(t, spells[-1][0], at) or lost_again(step):
            return self._again(t, spells[-1][1], at) or max(off_from, at)
        return spells.pop()[0]

    def _seen_back(self, t: str, since: datetime, until: datetime) -> bool:
        """Whether readings (the meters': signals ``alive`` / ``dead``, not an outage record's
        paperwork, not the command centre's word or a liaison's it overruled) saw area ``t``
        back between ``since`` and ``until``."""
        for key, m in ((self.row.get("state") or {}).get("members") or {}).items():
            if str(key).split("|", 1)[0] in WORD_SOURCES or m.get("signal") not in (
                    "alive", "dead") or t not in (m.get("transformers") or ()):
                continue
            at = _parse_time(m.get("end")) or _parse_time(m.get("start"))
            if m.get("status") == "restored" and at is not None and since < at <= until:
                return True
        return False

    def _again(self, t: str, back: datetime, until: datetime) -> datetime | None:
        """When area ``t``, back at ``back``, went off again before ``until``: the first
        start after its return of a record saying it is off (None: no record says so)."""
        again = [at for at in self.named.get(t, ()) if back < at < until]
        return min(again) if again else None

    def _off_again(self, t: str) -> bool:
        """Its state counts it off again: in the estimate, not back, not taken out."""
        state = self.row.get("state") or {}
        scope = (state.get("estimate") or {}).get("transformers") or ()
        return (self.ongoing and "restored" in state and t in scope
                and t not in (state["restored"] or {}) and t not in (state.get("excluded") or ()))


def _renamed_areas(row: Mapping[str, Any], klass: str, known: Sequence[str],
                   steps: Sequence[Mapping[str, Any]], topology: Topology,
                   remaining_end: datetime) -> list[_Area]:
    """The customers of areas the topology no longer knows (renamed or removed by a reload
    since), when the incident also has known ones: the incident's customers less the known
    areas', as one area without a village, back with the rest."""
    state = row.get("state") or {}
    listed = list((state.get("estimate") or {}).get("transformers") or [])
    for step in steps:
        listed.extend((step.get("details") or {}).get("transformers") or [])
    if all(t in topology.nodes for t in listed):
        return []
    rest = int(row.get("customers") or 0) - sum(topology.nodes[t].customers for t in known)
    if rest <= 0:
        return []
    return [_Area(row["id"], klass, None, row["feeder"], None, rest, row["start"],
                  max(row["start"], remaining_end))]


def _cancelled_at(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> datetime:
    """When a cancelled incident was cancelled: its first ``cancelled`` log entry, else its
    last update."""
    cancels = [e["at"] for e in log if e["stage"] == "cancelled"]
    cancelled_at: datetime = cancels[0] if cancels else (row.get("updated_at") or row["start"])
    return cancelled_at


def _rest_end(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]],
              cancelled_at: datetime | None, now: datetime) -> datetime | None:
    """When the areas no restoration step brought back came back (None: still off): the
    incident's end (a cancelled one's at most when it was cancelled, ``cancelled_at``), else
    its last ``restored`` step or last update."""
    if cancelled_at is not None:
        end_time = row.get("end_time")
        return min(end_time, cancelled_at) if end_time else cancelled_at
    if row.get("end_time") is not None:
        end: datetime = row["end_time"]
        return end
    if row["status"] == "active":
        return None
    finals = [e["at"] for e in steps if e["stage"] == "restored"]
    last: datetime = finals[-1] if finals else (row.get("updated_at") or now)
    return last


def _transformer_area(row: Mapping[str, Any], klass: str, t: str, topology: Topology,
                      off_from: datetime, back_at: datetime, confirmed: bool = True) -> _Area:
    """Area ``t`` of the incident, off from ``off_from`` until ``back_at``."""
    node = topology.nodes[t]
    return _Area(row["id"], klass, t, topology.feeder_of(t), node.village or None,
                 node.customers, off_from, back_at, confirmed)


def _later_back(log: Sequence[Mapping[str, Any]]) -> dict[str, datetime]:
    """The areas a step after the end brought back later (:data:`LATER_BACK_STAGES`), with
    when: the last such step written listing each, unless a ``continued_undone`` step (the
    outage that step handed it to was called off) came after it."""
    out: dict[str, tuple[datetime, str | None]] = {}  # area -> (back at, by: a hand-on's)
    # In the order written: a step's time is when supply came back, which may be earlier
    # than a step logged before it (an operator's --at).
    for e in sorted(log, key=lambda e: int(e.get("id") or 0)):
        details = e.get("details") or {}
        for t in details.get("transformers") or ():
            if e["stage"] in LATER_BACK_STAGES:
                out[t] = (e["at"], details.get("by") if e["stage"] == "continued" else None)
            elif e["stage"] == "continued_undone" and t in out \
                    and out[t][1] == details.get("by"):  # that new outage was called off
                del out[t]
    return {t: at for t, (at, _) in out.items()}


def _unplaced_areas(row: Mapping[str, Any], klass: str, steps: Sequence[Mapping[str, Any]],
                    remaining_end: datetime) -> list[_Area]:
    """An incident with no known area: its customers, by the counts its restoration steps
    brought back, the rest at ``remaining_end``."""
    start: datetime = row["start"]
    areas: list[_Area] = []
    remaining = int(row.get("customers") or 0)
    for step in steps:
        n = int((step.get("details") or {}).get("customers") or 0)
        n = min(n, remaining) if step["stage"] == "partially_restored" else remaining
        if n > 0:
            b = min(step["at"], remaining_end)
            areas.append(_Area(row["id"], klass, None, row["feeder"], None, n, start,
                               max(b, start)))
            remaining -= n
    if remaining > 0:
        areas.append(_Area(row["id"], klass, None, row["feeder"], None, remaining, start,
                           max(remaining_end, start)))
    return areas


def _clip(area: _Area, start: datetime, end: datetime) -> _Area | None:
    lo, hi = max(area.off_from, start), min(area.back_at, end)
    if hi <= lo:
        return None
    return replace(area, off_from=lo, back_at=hi)


def _arrival(row: Mapping[str, Any], log: Sequence[Mapping[str, Any]],
             eff_end: datetime | None, now: datetime
             ) -> tuple[str | None, datetime | None, datetime | None, bool | None]:
    """(crew, deadline, arrived at, met) from the first dispatch and the arrival after it."""
    dispatches = [e for e in log if e["stage"] == "dispatched"]
    if not dispatches:
        return row.get("crew_id"), None, None, None
    first = dispatches[0]
    details = first.get("details") or {}
    crew = details.get("crew") or row.get("crew_id")
    deadline = _parse_time(details.get("deadline"))
    arrivals = [e["at"] for e in log if e["stage"] == "on_site" and e["at"] >= first["at"]]
    arrived = arrivals[0] if arrivals else None
    met: bool | None = None
    if deadline is not None:
        if arrived is not None:
            met = arrived <= deadline
        elif now > deadline and (eff_end is None or eff_end > deadline):
            met = False
    return crew, deadline, arrived, met


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _aware(value)
    try:
        return _aware(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _areas_frame(areas: Sequence[_Area], tz: tzinfo) -> pd.DataFrame:
    df = pd.DataFrame([{
        "incident_id": a.incident_id, "class": a.klass, "transformer": a.transformer or "",
        "feeder": a.feeder, "village": a.village or "", "customers": a.customers,
        "off_from": a.off_from.astimezone(tz), "back_at": a.back_at.astimezone(tz),
        "hours": _hours(a.off_from, a.back_at),
        "customer_hours": a.customers * _hours(a.off_from, a.back_at),
        "mark": AREA_MARKS[0] if a.confirmed else AREA_MARKS[1],
    } for a in areas], columns=AREA_COLUMNS)
    for col in ("off_from", "back_at"):
        df[col] = _as_local_datetimes(df[col], tz)
    df["customers"] = df["customers"].astype("int64")
    df["hours"] = df["hours"].astype("float64")
    df["customer_hours"] = df["customer_hours"].astype("float64")
    return df


def _scope_row(customers: int, incident_ids: set[str], klass: Mapping[str, str],
               scope_areas: pd.DataFrame, hours: float) -> dict[str, Any]:
    """The scope's figures; ``klass`` holds the incidents that count (sustained ones)."""
    incident_ids = {i for i in incident_ids if i in klass}
    ch = union_customer_hours(scope_areas)
    # The work's areas stay planned while a fault keeps them off: planned is the union of
    # the planned spells, fault what the faults add to it.
    planned = union_customer_hours(scope_areas[scope_areas["class"] == "planned"])
    a = aihc1(ch, customers)
    return {
        "customers": customers, "incidents": len(incident_ids),
        "fault_incidents": sum(1 for i in incident_ids if klass.get(i) == "fault"),
        "planned_incidents": sum(1 for i in incident_ids if klass.get(i) == "planned"),
        "customer_hours": ch, "fault_customer_hours": max(0.0, ch - planned),
        "planned_customer_hours": planned,
        "aihc1_h": a, "rs1_pct": rs1(a, hours),
    }


def confirmed_areas(areas: pd.DataFrame) -> pd.DataFrame:
    """The rows of the ``areas`` table the figures count: not those only possibly off
    (:func:`possible_areas`)."""
    return areas[areas["mark"] == AREA_MARKS[0]]


def union_customer_hours(areas: pd.DataFrame) -> float:
    """Σ customers × hours off of ``areas`` (rows of the ``areas`` table), each customer's time
    counted once: where two incidents have one transformer area off at once (planned work
    overlapping a fault, two work orders on one area), the union of its spells. Areas without
    a transformer (an incident's customers the topology cannot place) are summed as they are."""
    total = 0.0
    spells: dict[str, list[tuple[Any, Any]]] = {}
    customers: dict[str, int] = {}
    for t, n, lo, hi, ch in zip(areas["transformer"].tolist(), areas["customers"].tolist(),
                                areas["off_from"].tolist(), areas["back_at"].tolist(),
                                areas["customer_hours"].tolist(), strict=True):
        if not t:
            total += float(ch)
            continue
        spells.setdefault(t, []).append((lo, hi))
        customers[t] = max(customers.get(t, 0), int(n))
    for t, intervals in spells.items():
        off, reach = 0.0, None
        for lo, hi in sorted(intervals):
            lo = lo if reach is None else max(lo, reach)
            if hi > lo:
                off += (hi - lo).total_seconds() / 3600.0
            reach = hi if reach is None else max(reach, hi)
        total += customers[t] * off
    return total


def _counted(incidents: pd.DataFrame) -> dict[str, str]:
    """The class of each incident that counts in the figures (a sustained interruption)."""
    counted = incidents[incidents["interruption"] == "sustained"]
    return dict(zip(counted["id"], counted["class"], strict=True))


def _by_feeder(topology: Topology, scope: _Scope, incidents: pd.DataFrame, areas: pd.DataFrame,
               touched: Mapping[str, set[str]], feeder_names: Mapping[str, str],
               hours: float) -> pd.DataFrame:
    customers: dict[str, int] = {}
    for t in scope.transformers:
        f = topology.feeder_of(t)
        customers[f] = customers.get(f, 0) + topology.nodes[t].customers
    klass = _counted(incidents)
    feeders = list(dict.fromkeys([*sorted(customers), *sorted(touched)]))
    rows = []
    for f in feeders:
        rows.append({"feeder": f, "feeder_name": feeder_names.get(f, ""),
                     **_scope_row(customers.get(f, 0), touched.get(f, set()), klass,
                                  areas[areas["feeder"] == f], hours)})
    return pd.DataFrame(rows, columns=["feeder", "feeder_name", *SCOPE_COLUMNS])


def _by_village(topology: Topology, scope: _Scope, incidents: pd.DataFrame, areas: pd.DataFrame,
                touched: Mapping[str, set[str]], hours: float) -> pd.DataFrame:
    customers: dict[str, int] = {}
    for t in scope.transformers:
        v = topology.nodes[t].village
        if v:
            customers[v] = customers.get(v, 0) + topology.nodes[t].customers
    klass = _counted(incidents)
    rows = []
    for v in list(dict.fromkeys([*scope.villages, *sorted(customers), *sorted(touched)])):
        village = topology.villages.get(v)
        rows.append({"village": v, "village_name": village.name if village else "",
                     "township": village.township if village else "",
                     "area_type": village.area_type if village else "",
                     **_scope_row(customers.get(v, 0), touched.get(v, set()), klass,
                                  areas[areas["village"] == v], hours)})
    return pd.DataFrame(rows, columns=["village", "village_name", "township", "area_type",
                                       *SCOPE_COLUMNS])


def _with_confirmations(by_village: pd.DataFrame, areas: Sequence[_Area],
                        answers: Sequence[Mapping[str, Any]],
                        period: tuple[datetime, datetime]) -> pd.DataFrame:
    """Per village, the areas the liaisons confirmed back (field links, SMS replies) in
    ``period`` — each area of an incident once, in the period of its first confirmation
    among all ``answers`` (two liaisons either side of midnight: the first day's) — and the
    median minutes to that first confirmation from the area's last return before it
    (``areas``: the incidents' spells, not cut to the period). An answer with no return
    recorded before it (the answer itself brought the area back) confirmed nothing."""
    back: dict[tuple[str, str], datetime] = {}
    for a in answers:
        if a["answer"] == "back":
            key, at = (str(a["incident_id"]), str(a["area"])), _aware(a["at"])
            back[key] = min(back.get(key, at), at)
    back = {k: at for k, at in back.items() if period[0] <= at < period[1]}
    returns: dict[tuple[str, str], list[datetime]] = {}
    village_of: dict[tuple[str, str], str] = {}
    for area in areas:
        if area.transformer is not None:
            key = (area.incident_id, area.transformer)
            returns.setdefault(key, []).append(area.back_at)
            village_of[key] = area.village or ""
    counts: dict[str, int] = {}
    minutes: dict[str, list[float]] = {}
    for key, at in back.items():
        # A return recorded before the answer: an answer that was itself the return (the
        # area back at it) reported the restoration, it confirmed none.
        restored = [b for b in returns.get(key, ()) if b < at]
        if not restored:
            continue
        village = village_of.get(key, "")
        counts[village] = counts.get(village, 0) + 1
        minutes.setdefault(village, []).append(_hours(max(restored), at) * 60)
    out = by_village.copy()
    out["field_confirmations"] = [counts.get(v, 0) for v in out["village"]]
    out["confirm_minutes_median"] = [
        float(pd.Series(minutes[v]).median()) if v in minutes else float("nan")
        for v in out["village"]]
    return out


#: Dead-letter columns that may hold a liaison's number or a channel's key (a URL with it in
#: an error): phones masked and secrets removed in every export, the CSV's too.
DEAD_LETTER_REDACTED = ("recipient", "last_error")


def _dead_frame(dead: Sequence[Mapping[str, Any]], tz: tzinfo) -> pd.DataFrame:
    df = pd.DataFrame([{k: redact(str(r[k])) if k in DEAD_LETTER_REDACTED and r[k] is not None
                        else r[k] for k in DEAD_LETTER_COLUMNS} for r in dead],
                      columns=DEAD_LETTER_COLUMNS)
    for col in ("created_at", "dead_at"):
        df[col] = _as_local_datetimes(
            pd.Series([_local(r[col], tz) for r in dead], dtype=object), tz)
    return df


def _summary(scope: _Scope, incidents: pd.DataFrame, areas: pd.DataFrame,
             dead: pd.DataFrame, start: datetime, end: datetime, tz: tzinfo, now: datetime,
             hours: float) -> pd.DataFrame:
    klass = _counted(incidents)
    figures = _scope_row(scope.customers, set(incidents["id"]), klass, areas, hours)
    latency = incidents["notice_latency_min"].dropna().astype(float)
    row = {
        # Aware, like every time of the report: the CSV writes them with their UTC offset.
        "period_start": start.astimezone(tz),
        "period_end": end.astimezone(tz),
        "timezone": str(tz), "hours_in_period": hours,
        **figures,
        "temporary_incidents": int(((incidents["kind"] == "temporary")
                                    & (incidents["interruption"] == "sustained")).sum()),
        "cancelled_incidents": int((incidents["status"] == "cancelled").sum()),
        # Cancelled and so not in the figures (one cancelled after it began counts in them).
        "cancelled_uncounted": int(((incidents["status"] == "cancelled")
                                    & (incidents["interruption"] != "sustained")).sum()),
        "momentary_incidents": int((incidents["interruption"] == "momentary").sum()),
        # Still off: work still to begin is no interruption yet.
        "active_incidents": int(((incidents["status"] == "active")
                                 & (incidents["interruption"] == "sustained")).sum()),
        "notices_measured": len(latency),
        "notice_latency_median_min": float(latency.median()) if len(latency) else math.nan,
        "notice_latency_p90_min": float(latency.quantile(0.9)) if len(latency) else math.nan,
        **_crew_arrivals(incidents, start, end),
        "dead_letters": len(dead),
        # Still to confirm (or to close out knowingly): incidents not closed out yet.
        "unconfirmed_areas": int(incidents.loc[incidents["stage"] != "closed",
                                               "unconfirmed_areas"].sum()),
        "generated_at": now.astimezone(tz).replace(microsecond=0),
    }
    return pd.DataFrame([row])


def _crew_arrivals(incidents: pd.DataFrame, start: datetime, end: datetime) -> dict[str, int]:
    """Crew arrivals met and missed in the period, each in the period its outcome was
    settled (so an outage over midnight counts its arrival in one day's report): met at the
    arrival, missed when the deadline passed; and pending: a crew still expected, i.e. the
    incident is still off and no arrival was recorded (a restored incident whose crew never
    logged an arrival is not pending)."""
    met = incidents["met_commitment"]
    was_met = met.eq(True).fillna(False).astype(bool)
    was_missed = met.eq(False).fillna(False).astype(bool)
    settled = incidents["arrived_at"].where(was_met, incidents["arrival_deadline"])
    inside = ((settled >= start) & (settled < end)).fillna(False).astype(bool)
    return {
        "crew_arrivals_met": int((was_met & inside).sum()),
        "crew_arrivals_missed": int((was_missed & inside).sum()),
        "crew_arrivals_pending": int((incidents["arrival_deadline"].notna() & met.isna()
                                      & (incidents["status"] == "active")).sum()),
    }


def _period_hours(start: datetime, end: datetime, now: datetime) -> float:
    return max(0.0, _hours(start, min(end, now)))


def _hours(a: datetime, b: datetime) -> float:
    """Hours from ``a`` to ``b``, real ones: in UTC (two times of one zone subtract by the
    wall clock, so a day the clocks change would have 24 hours, not 23 or 25)."""
    return (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds() / 3600.0


def _local(value: datetime | None, tz: tzinfo) -> datetime | None:
    return value.astimezone(tz) if value is not None else None


def _as_local_datetimes(values: pd.Series, tz: tzinfo) -> pd.Series:
    """A tz-aware datetime64 column in ``tz`` (NaT for missing)."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(tz)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _feeder_names(topology: Topology) -> dict[str, str]:
    """Feeder id -> display name (the source node's ``feeder_name`` column, else its name)."""
    return dict(topology.feeder_names)


def _crew_name(topology: Topology, crew: str | None) -> str:
    found = next((c for c in topology.crews if c.id == crew), None) if crew else None
    return found.name if found is not None and found.name else (crew or "")


def _village_name(topology: Topology, village: str) -> str:
    v = topology.villages.get(village)
    return v.name if v is not None and v.name else village


# -- command-centre message ---------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.{digits}f}"


def _minutes(value: Any) -> str:
    """Minutes to 0.1, under a minute to 0.01: a notice sent in two seconds is not 0.0."""
    try:
        small = 0 < float(value) < 1
    except (TypeError, ValueError):
        small = False
    return _fmt(value, 2 if small else 1)


def _apart(s: pd.Series) -> str:
    """The incidents the figures leave out: cancelled ones, short interruptions."""
    parts = []
    if s["cancelled_uncounted"]:
        parts.append(f"已取消 {int(s['cancelled_uncounted'])} 起")
    if s["momentary_incidents"]:
        parts.append(f"短时停电（3 分钟及以内，不计入指标）{int(s['momentary_incidents'])} 起")
    return f"；另{'，'.join(parts)}" if parts else ""


def _possible_line(s: pd.Series) -> list[str]:
    """The customer-hours of areas only possibly off, which the figures leave out."""
    if not s.get("possible_customer_hours", 0) > 0:
        return []
    return [f"另有可能受影响台区 {_fmt(s['possible_customer_hours'])} 时·户"
            "（记录未确指停电台区，未计入指标）"]


def daily_report_message(report: Report, top: int = 3) -> str:
    """A short Chinese plain-text summary for the command centre (well under 2048 bytes)."""
    s = report.summary.iloc[0]
    first = report.start.astimezone(report.tz).date()
    last = (report.end.astimezone(report.tz) - timedelta(microseconds=1)).date()
    span = first.isoformat() if first == last else f"{first.isoformat()} 至 {last.isoformat()}"
    title = "停电日报" if first == last else "停电报告"
    lines = [
        f"【{title}】{span}",
        f"停电事件 {int(s['incidents'])} 起：故障 {int(s['fault_incidents'])} 起，"
        f"计划/临时 {int(s['planned_incidents'])} 起"
        + (f"，仍在停电 {int(s['active_incidents'])} 起" if s["active_incidents"] else "")
        + _apart(s),
        f"停电时户数 {_fmt(s['customer_hours'])} 时·户（故障 {_fmt(s['fault_customer_hours'])}，"
        f"预安排 {_fmt(s['planned_customer_hours'])}）",
        f"用户平均停电时间 AIHC-1 {_fmt(s['aihc1_h'], 4)} 小时/户，"
        f"供电可靠率 RS-1 {_fmt(s['rs1_pct'], 4)}%",
        *_possible_line(s),
        *_service_lines(s),
        *_attention_lines(report, s, top),
    ]
    return "\n".join(lines)


def _service_lines(s: pd.Series) -> list[str]:
    """How fast the liaisons heard (from detection to the first notice) and whether the crews
    arrived in time, when there was any."""
    lines = []
    if s["notices_measured"]:
        lines.append(f"发现到首条村联络通知：中位 {_minutes(s['notice_latency_median_min'])} 分钟，"
                     f"P90 {_minutes(s['notice_latency_p90_min'])} 分钟")
    arrivals = int(s["crew_arrivals_met"]) + int(s["crew_arrivals_missed"])
    if arrivals or s["crew_arrivals_pending"]:
        lines.append(f"抢修到达：按时 {int(s['crew_arrivals_met'])} 次，"
                     f"超时 {int(s['crew_arrivals_missed'])} 次"
                     + (f"，待到达 {int(s['crew_arrivals_pending'])} 次"
                        if s["crew_arrivals_pending"] else ""))
    return lines


def _attention_lines(report: Report, s: pd.Series, top: int) -> list[str]:
    """What needs the command centre: the ``top`` feeders by customer-hours, dead letters,
    areas counted back that nothing confirmed (naming at most ``top`` open incidents)."""
    lines = []
    worst = report.by_feeder[report.by_feeder["customer_hours"] > 0].nlargest(
        top, "customer_hours")
    if not worst.empty:
        lines.append("时户数最多的线路：" + "，".join(
            f"{(r.feeder_name or r.feeder)} {_fmt(r.customer_hours)}"
            for r in worst.itertuples()))
    if s["dead_letters"]:
        lines.append(f"未送达通知（死信）{int(s['dead_letters'])} 条，请核查")
    if s["unconfirmed_areas"]:
        pending = report.incidents[(report.incidents["unconfirmed_areas"] > 0)
                                   & (report.incidents["stage"] != "closed")]
        ids = list(pending["id"])
        lines.append(f"恢复送电未经确认的台区 {int(s['unconfirmed_areas'])} 个（"
                     + "、".join(ids[:top]) + (f"等{len(ids)}起" if len(ids) > top else "")
                     + "），请核实后记录恢复")
    return lines
