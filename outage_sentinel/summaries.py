"""The command centre's summary of an incident: its text, and the one guarded way it is queued.

Every step that tells the command centre where an incident stands queues its summary through
:meth:`Summaries.rows` — a revision the processor wrote (``summary``, ``unplaced``), a crew
sent (``dispatched``), a correction (``etr_set``, ``scope_removed``…), a close-out
(``closed``) — and that summary is never the reason the step is lost: the villages' notices,
the crew's orders and the step itself do not hang on the command centre's template. A
summary that cannot be rendered (a bug raising in its context, the configured renderer
failing) is rendered from the built-in template (logged ``summary_render_failed``; an
override of ``command_summary`` in use is reported as a failed template, counted and
alerted like a liaison template), and one not even the built-in renders is
:data:`UNRENDERED_SUMMARY`, a plain text naming the incident (logged ``summary_unrendered``).
Each fallback is counted (``outage_sentinel_summaries_unrendered_total``, by ``fallback``).

:meth:`Summaries.render` is the summary unguarded: ``outage-sentinel check``
(:mod:`outage_sentinel.template_check`) renders through it, so a summary that fails is a
problem it reports, never one a fallback hides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from outage_sentinel import crew as crews
from outage_sentinel.config import Config
from outage_sentinel.crew import area_names
from outage_sentinel.incidents import (
    UNCLASSIFIED,
    Incident,
    announced_kind,
    contradicted_reports,
    dropped_areas,
    on_field_word,
    village_etr,
    villages_off,
)
from outage_sentinel.labels import KIND_LABELS, STAGE_LABELS, UNCLASSIFIED_NOTE, label
from outage_sentinel.liaison import (
    LiaisonPlanner,
    Renderer,
    TemplateFailure,
    checked_start,
    dispute_names,
    stated_restored,
)
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.topology import Topology

#: After a device a source reported operated that the fault point leaves out, in the
#: summary: the areas below it whose meters report power.
NAMED_ELSEWHERE = {"zh": "（其下{areas}表计报告有电）",
                   "en": " (meters below it report power: {areas})"}
#: The command centre's summary when not even the built-in template renders it: the incident,
#: its revision and why (:meth:`Summaries.plain`).
UNRENDERED_SUMMARY = {
    "zh": ("【汇总无法生成】{incident} 第{revision}版\n指挥中心汇总未能生成（{error}）；"
           "各村通知不受影响。请在看板或用 outage-sentinel incidents show {incident} 查看该事件。"),
    "en": ("[Summary unavailable] {incident} revision {revision}\nThe command-centre summary "
           "could not be rendered ({error}); the villages' notices are not affected. See the "
           "incident on the board or with outage-sentinel incidents show {incident}."),
}


def failure_text(exc: BaseException) -> str:
    """An exception as a log line and the command centre read it: its type and message,
    secrets taken out, cut short."""
    return redact(f"{type(exc).__name__}: {exc}")[:300]


def unasked_areas(inc: Incident, topology: Topology,
                  recipients: Callable[[str], Sequence[str]]) -> list[str]:
    """The areas ``inc`` counts back unconfirmed whose village was not asked about them: no
    liaison to ask (``recipients`` of the village), or not told (held back: still dark in
    another outage)."""
    told = set(inc.restored_villages)
    out = []
    for t in inc.unconfirmed:
        village = topology.nodes[t].village if t in topology.nodes else None
        if not village or village not in told or not recipients(village):
            out.append(t)
    return out


def cancellation_word(inc: Incident) -> str:
    """Why ``inc`` was called off, as far as anyone said: the command centre's reason
    (:attr:`Incident.cancel_reason`), else the latest cause a withdrawn record gave on
    withdrawal ("误报，经核实线路正常"): one differing from the cause the incident stated
    while on (:attr:`Incident.cause`; when it had none agreed, one the record's last revision
    stated, :attr:`~outage_sentinel.incidents.Member.cause_stated`). A record withdrawn
    without a word keeps its old cause (:func:`~outage_sentinel.incidents.kept_cause`),
    which is no reason for the withdrawal; neither is a call's, nor a record re-issued."""
    if inc.cancel_reason:
        return inc.cancel_reason
    said = [m for m in inc.members.values()
            if m.status == "cancelled" and m.signal != "call" and not m.superseded_by
            and m.cause and m.cause != inc.cause
            and (inc.cause or m.cause_stated >= m.seen_at)]
    return max(said, key=lambda m: (m.cause_stated, m.key)).cause if said else ""


def cause_context(inc: Incident) -> dict[str, str]:
    """The cause a summary of ``inc`` states: ``cause`` while it is not called off; once it
    is, ``cancel_cause`` (:func:`cancellation_word`), else the cause it had stated as such
    (``cause_reported``, 原报原因): a false alarm's summary never gives the fault's cause as
    the outage's."""
    if inc.status != "cancelled":
        return {"cause": inc.cause, "cancel_cause": "", "cause_reported": ""}
    word = cancellation_word(inc)
    return {"cause": "", "cancel_cause": word, "cause_reported": "" if word else inc.cause}


def builtin_planner(p: LiaisonPlanner) -> LiaisonPlanner:
    """``p`` rendering with the built-in templates alone (its topology, zone, roles, links,
    channels and clock flags)."""
    return LiaisonPlanner(p.topology, Renderer(p.renderer.language), p.tz, p.roles,
                          links=p.links, sms=p.sms, clock_flags=p.clock_flags)


class SummaryOwner(Protocol):
    """What a summary reads of the lifecycle: the topology and planner (a topology reload
    replaces these), the config, the clock, the crews' names and the command centre's rows."""

    topology: Topology
    planner: LiaisonPlanner
    config: Config
    clock: Callable[[], datetime]

    def crew_label(self, crew_id: str | None) -> str: ...

    def command_rows(self, inc: Incident, purpose: str, body: str, revision: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[OutboxMessage]: ...

    def command_rows_for(self, incident_id: str, revision: int, purpose: str, body: str,
                         facts: Mapping[str, Any] | None = None) -> list[OutboxMessage]: ...

    def digest_facts(self, inc: Incident) -> dict[str, Any]: ...


class Summaries:
    """Owns the command centre's summary of an incident: its text (:meth:`render`,
    unguarded) and its rows as every step queues them (:meth:`rows`, guarded: a fallback,
    never an exception). One per lifecycle; ``planner`` fixes the planner it renders with
    (the built-in templates' copy), else the lifecycle's in use."""

    TEMPLATE = "command_summary"

    def __init__(self, owner: SummaryOwner, metrics: Metrics | None = None,
                 planner: LiaisonPlanner | None = None) -> None:
        self.owner, self.metrics, self.fixed = owner, metrics, planner
        # The lifecycle's steps log under its name, wherever their code lives.
        self.log = get_logger(component="lifecycle")

    @property
    def planner(self) -> LiaisonPlanner:
        return self.owner.planner if self.fixed is None else self.fixed

    @property
    def topology(self) -> Topology:
        return self.owner.topology

    # -- the rows every step queues (guarded) ---------------------------------------------------

    def of_revision(self, before: Incident | None, after: Incident, crew: str | None,
                    unplaced: bool) -> list[OutboxMessage]:
        """The command centre's rows of the revision ``before`` → ``after`` (``crew``: the
        crew the incident holds): its summary when summaries are on and the revision is new,
        or, switched off, still one for an outage nobody could place (``unplaced``): it goes
        to a person."""
        rows: list[OutboxMessage] = []
        if self.owner.config.command_centre.summaries and (
                before is None or before.revision != after.revision):
            rows = self.rows(after, "summary", crew=crew)
        if unplaced and not any(r.audience == "command" for r in rows):
            rows += self.rows(after, "unplaced")
        return rows

    def rows(self, inc: Incident, purpose: str, headline: str | None = None,
             crew: str | None = None) -> list[OutboxMessage]:
        """The command centre's rows of ``purpose`` carrying the summary of ``inc``
        (:meth:`render`): rendered again from the built-in template when that raises, else
        the plain text's; each fallback logged and counted. Never raises for the summary."""
        try:
            return self.owner.command_rows(inc, purpose, self.render(inc, headline, crew))
        except Exception as exc:
            first = exc
        try:
            builtin = Summaries(self.owner, planner=builtin_planner(self.planner))
            rows = self.owner.command_rows(inc, purpose, builtin.render(inc, headline, crew))
        except Exception as exc:
            self.log.error("summary_unrendered", incident_id=inc.id, revision=inc.revision,
                           purpose=purpose, error=failure_text(first), fallback="plain",
                           builtin_error=failure_text(exc), exc_info=first)
            self.count("plain")
            return self.plain(inc, purpose, first)
        self.log.error("summary_render_failed", incident_id=inc.id, revision=inc.revision,
                       purpose=purpose, error=failure_text(first), fallback="built-in",
                       exc_info=first)
        self.count("builtin")
        self.report(inc, first)
        return rows

    def count(self, fallback: str) -> None:
        """One summary sent as ``fallback`` (:data:`~outage_sentinel.metrics.SUMMARY_FALLBACKS`),
        when metrics are kept."""
        if self.metrics is not None:
            self.metrics.summaries_unrendered.labels(fallback).inc()

    def report(self, inc: Incident, exc: BaseException) -> None:
        """An override of the summary failed and the built-in one was used: handed to the
        renderer's failure callback (the daemon counts it and tells the command centre)."""
        renderer = self.planner.renderer
        override = renderer.override_path(self.TEMPLATE)
        if override is None or renderer.on_failure is None:
            return
        try:
            renderer.on_failure(TemplateFailure(self.TEMPLATE, str(override),
                                                failure_text(exc), inc.id))
        except Exception:  # the summary itself is queued; the alert is extra
            self.log.exception("template_failure_report_failed", incident_id=inc.id)

    def plain(self, inc: Incident, purpose: str, exc: BaseException) -> list[OutboxMessage]:
        """The plain text in the summary's place, with what a digest reads of ``inc`` (the
        least of it when even those facts cannot be had)."""
        words = UNRENDERED_SUMMARY.get(self.planner.renderer.language, UNRENDERED_SUMMARY["en"])
        body = words.format(incident=inc.id, revision=inc.revision, error=failure_text(exc))
        try:
            facts = self.owner.digest_facts(inc)
        except Exception:
            facts = {"incident": inc.id, "kind": inc.kind, "status": inc.status,
                     "feeder": inc.feeder}
        return self.owner.command_rows_for(inc.id, inc.revision, purpose, body, facts)

    # -- the text (unguarded) -------------------------------------------------------------------

    def render(self, inc: Incident, headline: str | None = None,
               crew: str | None = None) -> str:
        """The command centre's summary of ``inc`` as of its last revision (``updated_at``):
        planned work described as planned (its device not an estimate, its start possibly
        still to come), the crew named. Unguarded: raises what rendering raises."""
        r, planner, topo = self.planner.renderer, self.planner, self.topology
        names = [topo.villages[v].name for v in inc.estimate.villages if v in topo.villages]
        planned = inc.kind in ("planned", "temporary")
        return r.render(
            self.TEMPLATE, incident=inc, headline=headline,
            kind_label=KIND_LABELS[r.language].get(inc.kind, inc.kind) + (
                UNCLASSIFIED_NOTE.get(r.language, "") if announced_kind(inc) == UNCLASSIFIED
                else ""),
            feeder_label=planner.feeder_names.get(inc.feeder, inc.feeder),
            villages=names, off=len(inc.off),
            customers_off=topo.customers_of(inc.off),
            **self.times(inc),
            **self.fault_point_context(inc),
            device_set=bool(inc.device_set) and not planned,
            planned=planned,
            upcoming=inc.updated_at is not None and inc.start > inc.updated_at,
            crew_label=self.owner.crew_label(crew),
            stage_label=label(STAGE_LABELS, r.language, inc.stage),
            # Of the areas still off, those a source reported (one back is no longer off).
            confirmed=len([t for t in inc.confirmed if t not in inc.restored]),
            withdrawn=[topo.villages[v].name for v in inc.withdrawn_villages
                       if v in topo.villages],
            **self.unconfirmed(inc),
            **cause_context(inc),
            # Areas reported off the fault point does not explain: the estimate reads their
            # reports as false (or misses a fault), which "confirmed off" must not hide.
            unexplained=area_names(topo, contradicted_reports(topo, inc)),
            on_word=area_names(topo, on_field_word(inc, inc.restored)),
            **dispute_names(topo, inc),
        )

    def unconfirmed(self, inc: Incident) -> dict[str, list[str]]:
        """The areas counted back with nothing saying so, whose villages are asked (those
        without a liaison, or held back as still dark elsewhere, are not: ``unasked``,
        ``dropped_unasked``): ``dropped``, those a record still names no longer
        (:func:`~outage_sentinel.incidents.dropped_areas`: 已移出停电记录（疑似转供）, the record
        may be open), and ``unconfirmed``, the rest (counted back when the records ended)."""
        topo = self.topology
        moved = set(dropped_areas(inc))
        unasked = set(unasked_areas(inc, topo, self.planner.village_recipients))
        ended = [t for t in inc.unconfirmed if t not in moved]
        left = [t for t in inc.unconfirmed if t in moved]
        return {"unconfirmed": area_names(topo, ended),
                "unasked": area_names(topo, [t for t in ended if t in unasked]),
                "dropped": area_names(topo, left),
                "dropped_unasked": area_names(topo, [t for t in left if t in unasked])}

    def fault_point_context(self, inc: Incident) -> dict[str, Any]:
        """The fault point as the summary states it: each device as sure as it is
        (:func:`outage_sentinel.crew.device_bases`: one a source named is a fact, the rest
        inferred; planned work's too: the device a record names is switched off, one the
        localiser put above its areas is only the likely one), the probability of a set of
        several as the set's (``joint_label``: :func:`outage_sentinel.crew.joint_label`), and
        the devices a source reported operated that it leaves out (``named_elsewhere``)."""
        planner, lang, topo = self.planner, self.planner.renderer.language, self.topology
        devices, p = inc.estimate.devices, inc.estimate.probability
        bases = crews.device_bases(inc)
        named = [d for d in devices if bases[d] != "inferred"]
        guessed = [d for d in devices if bases[d] == "inferred"]
        joint = "" if p is None or not guessed else crews.joint_label(
            topo, devices, p, lang, guessed[0] if len(guessed) == 1 else None)
        words = NAMED_ELSEWHERE.get(lang, NAMED_ELSEWHERE["en"])
        elsewhere = [planner.device_label([d]) + (words.format(
            areas=("、" if lang == "zh" else ", ").join(area_names(topo, alive)))
            if alive else "") for d, alive in crews.reported_elsewhere(topo, inc).items()]
        return {"device_label": planner.device_label(devices, own_note=True),
                "probability": p, "probability_label": "" if p is None
                else crews.percent_label(p, lang), "joint_label": joint,
                "reported_label": planner.device_label(named, own_note=True),
                "inferred_label": planner.device_label(guessed, own_note=True),
                "named_elsewhere": elsewhere}

    def times(self, inc: Incident) -> dict[str, Any]:
        """The times a summary of ``inc`` states: its start, expected restoration
        (:meth:`etr`) and end — the start and end to be confirmed (``None``, with
        ``start_unverified`` / ``end_unverified``) when only the meters of an AMI source
        flagged as read in the wrong zone give them (:func:`~outage_sentinel.liaison.
        checked_start`, :func:`~outage_sentinel.liaison.stated_restored`), as the villages and
        the crew are told."""
        flagged, planner = self.planner.clock_flagged(), self.planner
        start = checked_start(inc, flagged)
        end = None if inc.end is None else stated_restored(
            inc, inc.estimate.transformers, flagged, inc.end)
        return {"start_local": planner.local_time(start), "start_unverified": start is None,
                **self.etr(inc), "etr_pending": self.etr_pending(inc),
                "end_local": planner.local_time(end),
                "end_unverified": inc.end is not None and end is None}

    def etr_pending(self, inc: Incident) -> list[str]:
        """The villages still off in ``inc`` whose own expected restoration is unknown while
        the incident states one (their records give none: :func:`village_etr`): a summary
        saying 预计21:30恢复 is no promise for them, and says so."""
        if inc.status != "active" or inc.etr is None:
            return []
        topo = self.topology
        return [topo.villages[v].name if v in topo.villages else v
                for v in villages_off(inc, topo) if village_etr(inc, v, topo) is None]

    def etr(self, inc: Incident) -> dict[str, str | None]:
        """The expected restoration as a summary of ``inc`` states it at its last revision:
        while the outage is on, a time gone by is an overrun (原预计…恢复，已超时), never
        "预计<a past time>恢复"; once over, the time it was expected, for the record; called
        off, none (an outage that was not is restored at no time)."""
        if inc.status == "cancelled":  # called off: no restoration was ever due
            return {"etr_local": None, "overrun_local": None}
        if inc.status != "active":
            return {"etr_local": self.planner.local_time(inc.etr), "overrun_local": None}
        return self.planner.etr_context(inc.etr, inc.updated_at or self.owner.clock())
