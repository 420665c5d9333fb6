"""The command centre's corrections, as the operator CLI and the board take them.

``incidents etr|scope|device|cancel|reopen|open`` (and ``etr|device --clear``): each step runs
in one transaction with the notices it causes and a log line naming its actor, and the command
centre gets a summary headed by the step. The decisions are pure
(:mod:`outage_sentinel.corrections`); areas added and incidents opened from a phone call are
operator reports folded in by the :class:`~outage_sentinel.processing.IncidentProcessor`, the
path every source takes, their log line written in the transaction that folds them
(:meth:`~outage_sentinel.processing.IncidentProcessor.report_with`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from outage_sentinel import corrections
from outage_sentinel.crew import restored_by
from outage_sentinel.events import UNSTORABLE, OutageEvent, parse_time, split_list, unstorable_key
from outage_sentinel.held_notices import keep_held_in, work_ahead
from outage_sentinel.incidents import (
    BACK_NOTICES,
    OPERATOR_SOURCE,
    Incident,
    Notice,
    hold_back,
    plan_notices,
    villages_off,
)
from outage_sentinel.lifecycle import (
    Lifecycle,
    LifecycleError,
    StepInputError,
    confirmed_devices,
)
from outage_sentinel.localise import named_nodes, narrowed, shared_message
from outage_sentinel.logs import mask_phones
from outage_sentinel.processing import IncidentProcessor, planned_areas
from outage_sentinel.topology import Topology


def check_texts(**texts: Any) -> None:
    """Refuse a step's texts (:class:`StepInputError` naming the key) when one holds a
    character the database cannot store: checked before anything is written, so that the
    step is refused whole rather than failing halfway."""
    key = unstorable_key(texts)
    if key is not None:
        raise StepInputError(f"{key}: {UNSTORABLE}")


#: A correction: the incident as the step leaves it, decided inside the step's transaction.
Change = Callable[[Connection, Incident, datetime], Incident]
#: A step's log details, given the incident before and after it.
Details = Callable[[Incident, Incident], dict[str, Any]]
#: What :meth:`IncidentProcessor.report_with` runs in the report's transaction.
Then = Callable[[Connection, str | None], None]
#: Why the crew a step's incident holds gets new orders ("": none), given the incident
#: before and after the step.
CrewTold = Callable[[Incident, Incident], str]


class CommandSteps:
    """``etr``, ``scope``, ``device``, ``cancel``, ``reopen`` and ``open`` over one store and
    topology."""

    def __init__(self, lifecycle: Lifecycle, processor: IncidentProcessor,
                 clock: Callable[[], datetime]) -> None:
        self.lifecycle, self.processor, self.clock = lifecycle, processor, clock

    @property
    def topology(self) -> Topology:
        return self.lifecycle.topology

    def _correct(self, incident_id: str, actor: str, note: str, step: str, change: Change,
                 details: dict[str, Any] | Details, dropped_as: str = "withdrawn",
                 crew_told: str | CrewTold = "", then: Change | None = None) -> Incident:
        """Apply ``change`` and write the revision, its notices, the log line and the
        command centre's summary in one transaction (``crew_told``: why the crew the
        incident holds gets new orders too — ``device`` set, ``cleared`` taken back, or a
        function of the incident before and after saying so, "" for none — and the
        villages it grew to their care lists; ``then``: what follows from the change in the
        same revision, planned after it, :meth:`_notices`)."""
        life, now = self.lifecycle, self.clock()
        with life.store.transaction() as conn:
            before, row = life.load_in(conn, incident_id)
            try:
                after = change(conn, before, now)
            except corrections.CorrectionError as exc:
                raise LifecycleError(str(exc)) from None
            notices, after, owed = self._notices(conn, before, after, now, actor, note,
                                                 dropped_as, then)
            said = details(before, after) if callable(details) else details
            rows = [r for r in life.planner.rows(after, notices, now, previous=before)
                    if r.purpose != "corrected" or r.recipient in owed]
            crew = row.get("crew_id")
            why = crew_told(before, after) if callable(crew_told) else crew_told
            if why:
                rows += life.dispatch_update_in(conn, after, crew, now, why)
                said = {**said, "was": list(before.estimate.devices), "crew": crew}
            elif self._tell_power_back(conn, before, after, crew, now):
                said = {**said, "crew": crew, "crew_told": "power_back"}
            rows += life.summaries.rows(after, step, headline=step, crew=crew)
            life.save_in(conn, after, now)
            life.store.log_in(conn, after.id, now, step, actor, note, said)
            life.store.enqueue_in(conn, rows, now)
            if why and set(villages_off(after, self.topology)) - set(
                    villages_off(before, self.topology)):
                # A fault point taken back or moved: the localiser's may have it wider.
                life.care_for_new_villages_in(conn, after, now, tell_crew=False)
        return after

    def _tell_power_back(self, conn: Connection, before: Incident, after: Incident,
                         crew: str | None, now: datetime) -> bool:
        """The crew sent to an outage the step ended as restored hears that the power is back
        (:meth:`CrewNotices.power_back_in`), as when a source ends it: taking out the last
        areas still off, the others back on their records, leaves nothing to patrol for, and
        the crew told of them would otherwise drive on. Said after the record that brought
        the others back (:func:`restored_by_record`), naming the areas the command centre
        took out. Returns whether a message was queued."""
        if crew is None or before.status != "active" or after.status != "restored":
            return False
        language = self.lifecycle.planner.renderer.language
        # Only the command centre's word: an area an inference alone put off is no news.
        taken = [t for t in before.off if t in after.excluded and t not in before.excluded]
        source, signal = restored_by_record(after)
        return self.lifecycle.crew_notices.power_back_in(
            conn, after, crew, now, restored_by(source, language, signal),
            taken_out=taken)

    def _notices(self, conn: Connection, before: Incident, after: Incident, now: datetime,
                 actor: str, note: str, dropped_as: str, then: Change | None = None
                 ) -> tuple[list[Notice], Incident, set[str]]:
        """The notices of a correction, the incident as they leave it, and the recipients
        owed a 【更正】 (:meth:`RevisionWriter.take_back_corrected`: only those an outage
        notice reached; one channel of a village may have delivered it and another not).
        ``then``: what follows from the correction in the same revision (:meth:`_followed`)."""
        life = self.lifecycle
        # The operator's word is news to every village it concerns, however small the move.
        notices, after = plan_notices(before, after, self.topology, timedelta(0), dropped_as)
        if then is not None:
            notices, after = self._followed(conn, before, after, notices, now, then)
        # A village still off in another open incident is not told its supply is normal.
        if any(n.purpose in BACK_NOTICES for n in notices):
            notices, after, held = hold_back(
                notices, after, self.processor.dark_elsewhere(conn, after, now)
                - work_ahead(notices, after, now, self.topology))
            if held:
                keep_held_in(life.store, conn, after.id, held, now)
        # Villages a re-estimate dropped: what was queued for them and not sent is taken back.
        after = self.processor.writer.take_back_withdrawn(conn, after, notices, now)
        # Villages taken out: what waits for them is withdrawn, and only those told hear 更正.
        notices, owed = self.processor.writer.take_back_corrected(conn, after, notices, now)
        if after.status == "cancelled":
            # The reason kept when the step gave none (a scope that left nothing off).
            notices = life.take_back_in(conn, after, notices, now, actor,
                                        note or after.cancel_reason)
            self.processor.writer.give_back(conn, after, now, actor)
        return notices, after, owed

    def _followed(self, conn: Connection, before: Incident, corrected: Incident,
                  notices: list[Notice], now: datetime, then: Change
                  ) -> tuple[list[Notice], Incident]:
        """``corrected`` (its villages' notices ``notices`` planned) followed by ``then`` in
        the same revision, and the notices of what ``then`` moved, planned as any revision's
        — a village only its inference dropped is withdrawn, not told of a correction the
        command centre never made for it. (Planned against ``corrected`` under ``before``'s
        revision: :func:`plan_notices` plans nothing between two copies of one revision.)"""
        followed = then(conn, corrected, now)
        if followed.material() == corrected.material():
            return notices, corrected
        more, followed = plan_notices(replace(corrected, revision=before.revision), followed,
                                      self.topology, timedelta(0))
        return notices + more, followed

    def etr(self, incident_id: str, when: str, actor: str, note: str = "") -> Incident:
        """Set the expected restoration time (local time, e.g. ``2026-11-23 18:00``)."""
        check_texts(incident=incident_id, time=when, actor=actor, note=note)
        etr = parse_time(when, "time (the ETR)", self.processor.tz)
        return self._correct(incident_id, actor, note, "etr_set",
                             lambda _, inc, now: corrections.set_etr(
                                 inc, etr, now, self.processor.tz),
                             {"etr": etr.isoformat()})

    def clear_etr(self, incident_id: str, actor: str, note: str = "") -> Incident:
        """Take back the command centre's expected restoration time: the sources' counts
        again (none when they give none), and each village told one hears its own if it
        moved. Refused when none was set."""
        check_texts(incident=incident_id, actor=actor, note=note)
        return self._correct(incident_id, actor, note, "etr_cleared",
                             lambda _, inc, now: corrections.clear_etr(inc, now),
                             lambda before, after: {"cleared": _iso(before.etr_set),
                                                    "etr": _iso(after.etr)})

    def device(self, incident_id: str, refs: str, actor: str, note: str = "") -> Incident:
        """Set the fault device(s) (ids or names, comma-separated) on the command centre's
        word: later estimates name them, the crew sent gets new orders, the close-out's
        device defaults to them. The areas stay (``scope`` moves those)."""
        check_texts(incident=incident_id, devices=refs, actor=actor, note=note)
        devices = confirmed_devices(self.topology, refs, self.processor.incident(incident_id))
        if not devices:
            raise LifecycleError("no device given")
        return self._correct(incident_id, actor, note, "device_set",
                             lambda _, inc, now: corrections.set_devices(
                                 inc, self.topology, devices, actor, now),
                             {"devices": devices}, crew_told="device")

    def clear_device(self, incident_id: str, actor: str, note: str = "") -> Incident:
        """Take back the fault device(s) the command centre set: the incident is estimated
        from its records again, by the localiser as the processor folds with it now
        (:meth:`IncidentProcessor.estimator_for`); the villages its new areas add or drop
        hear what any revision tells them, and the crew sent gets new orders. Refused when
        none was set."""
        check_texts(incident=incident_id, actor=actor, note=note)
        return self._correct(incident_id, actor, note, "device_cleared", self._reestimated,
                             lambda before, after: {"devices": list(before.device_set),
                                                    "set_by": before.device_set_by,
                                                    "now": list(after.estimate.devices)},
                             crew_told="cleared")

    def _reestimated(self, conn: Connection, inc: Incident, now: datetime) -> Incident:
        """``inc`` without its fault point set (:func:`corrections.clear_devices`)."""
        proc = self.processor
        return corrections.clear_devices(inc, self.topology,
                                         proc.estimator_for(conn, inc.feeder, now),
                                         planned_areas(proc.store, conn, now), now,
                                         proc.held.now())

    def _narrowed(self, conn: Connection, inc: Incident, now: datetime, reason: str = ""
                  ) -> Incident:
        """``inc`` with areas taken out, estimated again without their reports
        (:func:`corrections.reestimate_narrowed`), as the processor folds now; called off for
        ``reason`` when nothing is left."""
        proc = self.processor
        return corrections.reestimate_narrowed(inc, self.topology,
                                               proc.estimator_for(conn, inc.feeder, now),
                                               planned_areas(proc.store, conn, now), now,
                                               reason, proc.held.now())

    def _no_area_left(self) -> str:
        """Why an outage the command centre took every area out of is called off, in the
        notices' language (:data:`corrections.NO_AREA_LEFT`)."""
        language = self.lifecycle.planner.renderer.language
        return corrections.NO_AREA_LEFT.get(language, corrections.NO_AREA_LEFT["en"])

    def cancel(self, incident_id: str, reason: str, actor: str,
               false_alarm: bool | None = None) -> Incident:
        """Cancel the incident: everyone told hears it is cancelled. ``false_alarm``: the
        operator's word that no supply was lost (``incidents cancel --false-alarm``; False: a
        cancel for another reason, a duplicate work order, the areas a source saw off still
        off), kept in the step's details for the reports; ``None`` keeps none (the reports
        read the reason's words, as for steps stored before the flag)."""
        check_texts(incident=incident_id, reason=reason, actor=actor)
        return self._correct(incident_id, actor, reason, "cancelled",
                             lambda _, inc, now: corrections.cancel_incident(inc, reason, now),
                             {"reason": reason, **_said("false_alarm", false_alarm)})

    def remove(self, incident_id: str, refs: str, actor: str, note: str = "") -> Incident:
        """Take areas (ids, names, or villages) out of the scope; their villages hear it
        was a mistake."""
        check_texts(incident=incident_id, remove=refs, actor=actor, note=note)
        areas = self.areas(refs, self.processor.incident(incident_id))
        return self._correct(incident_id, actor, note, "scope_removed",
                             lambda _, inc, now: corrections.exclude_areas(
                                 inc, self.topology, areas, now),
                             lambda before, after: {"transformers": areas, **(
                                 {"was": list(before.estimate.devices),
                                  "now": list(after.estimate.devices)}
                                 if _fault_point_moved(before, after) else {}), **(
                                 {"cancelled": after.cancel_reason}
                                 if after.status == "cancelled" else {})},
                             dropped_as="corrected", crew_told=_orders_moved,
                             then=lambda conn, inc, now: self._narrowed(
                                 conn, inc, now, note or self._no_area_left()))

    def add(self, incident_id: str, refs: str, actor: str, note: str = "") -> Incident:
        """Add areas the command centre knows are off (an operator report: they stay off
        until a restoration step or a source says they are back). An area the incident only
        inferred or named as possibly affected is confirmed: its village hears it as off."""
        check_texts(incident=incident_id, add=refs, actor=actor, note=note)
        inc = self.processor.active(incident_id)
        areas = [t for t in self.areas(refs, inc)
                 if t not in inc.off or inc.scope.get(t, "reported") != "reported"]
        if not areas:
            raise LifecycleError(f"every area given is already confirmed off in {incident_id}")
        readmitted = [t for t in areas if t in inc.excluded]
        if readmitted:  # taken out earlier by a correction: the operator's word now undoes it
            self._correct(incident_id, actor, note, "scope_readmitted",
                          lambda _, i, now: corrections.readmit_areas(i, readmitted, now),
                          {"transformers": readmitted})
        return self._still_off(inc, "add", "scope_added", areas, actor, note)

    def reopen(self, incident_id: str, refs: str | None, actor: str, note: str = "",
               again: bool | None = None) -> Incident:
        """Areas recorded back that are still off (a mistaken restoration, or supply lost
        again): off again in the same incident, as an operator report that a later report of
        the same restoration does not undo; their villages hear they are off (saying they
        were told otherwise). All areas back unless ``refs`` names some. ``again``: the
        operator's word that supply was lost again after a real return (``incidents reopen
        --again``: another spell off in the reports; False: the restoration was a mistake,
        the outage carried on), kept in the step's details; ``None`` keeps none (the reports
        read the note's words, as for steps stored before the flag)."""
        check_texts(incident=incident_id, transformers=refs, actor=actor, note=note)
        inc = self.processor.incident(incident_id)
        if inc.stage in ("closed", "cancelled"):
            raise LifecycleError(f"{incident_id} is {inc.stage}; open a new incident instead "
                                 "(incidents open)")
        back = list(inc.restored) or (list(inc.estimate.transformers)
                                      if inc.status == "restored" else [])
        areas = self.areas(refs, inc) if refs else back
        stray = [t for t in areas if t not in back]
        if stray or not areas:
            named = ", ".join(self.topology.nodes[t].name or t for t in back[:10]) or "none"
            raise LifecycleError(f"{', '.join(stray) or 'no area'}: not recorded back in "
                                 f"{incident_id} (back: {named})")
        return self._still_off(inc, "reopen", "restoration_undone", areas, actor, note,
                               _said("again", again))

    def _still_off(self, inc: Incident, verb: str, step: str, areas: list[str], actor: str,
                   note: str, said: dict[str, Any] | None = None) -> Incident:
        """The operator's report that ``areas`` of ``inc`` are off (folded in as any source's
        report; it stands until a restoration after it), logged as ``step`` (its details the
        areas, and what else the step ``said``)."""
        now = self.clock()
        self.processor.report_with(OutageEvent(
            source=OPERATOR_SOURCE, event_id=f"{inc.id}:{verb}:{now.isoformat()}",
            kind=inc.kind, status="active", signal="dead", start=now,
            transformers=tuple(areas),  # the note is words, not a scope (see operator_restore)
            raw={"incident_id": inc.id, "actor": actor, "note": note}), now,
            self._logged(now, step, actor, note, {"transformers": areas, **(said or {})},
                         inc.id))
        return self.processor.incident(inc.id)

    def open(self, actor: str, *, feeder: str | None, transformers: str | None,
             caller: str = "", note: str = "") -> Incident:
        """Open an incident from a phone call: a feeder and/or transformer areas. The
        incident, its notices and its ``opened`` log line are written in one transaction
        (:meth:`IncidentProcessor.report_with`); every text is checked before it
        (:func:`check_texts`), so that one the database cannot store is refused naming it."""
        check_texts(actor=actor, feeder=feeder, transformers=transformers, caller=caller,
                    note=note)
        if not feeder and not transformers:
            raise StepInputError("give --feeder or --transformers (or both)")
        areas = self.areas(transformers, feeder=feeder) if transformers else []
        if feeder and feeder not in self.topology.feeder_ids and \
                feeder not in self.topology.feeder_by_name:
            raise StepInputError(f"unknown feeder {feeder!r}")
        now = self.clock()
        text = "；".join(x for x in (caller and f"来电：{caller}", note) if x)
        # The caller stays out of the record's text: liaison notices may quote it.
        incident_id = self.processor.report_with(OutageEvent(
            source=OPERATOR_SOURCE, event_id=f"call:{now.isoformat()}", kind="fault",
            status="active", signal="notice", start=now, feeder=feeder,
            transformers=tuple(areas), area_text=note,
            raw={"actor": actor, "caller": caller, "note": note}), now,
            self._logged(now, "opened", actor, mask_phones(text),
                         {"transformers": areas, "feeder": feeder}))
        if incident_id is None:
            raise LifecycleError("the call was recorded but opened no incident (its areas "
                                 "lie in planned work in force?); see `incidents list`")
        return self.processor.incident(incident_id)

    def areas(self, refs: str | None, inc: Incident | None = None,
              feeder: str | None = None) -> list[str]:
        """Transformer area ids for refs of areas (id, name) or villages (id, name). A name
        several areas or villages share means the one of ``inc`` (its affected areas, its
        feeders) or on ``feeder`` (id or name); still several, it is refused naming them:
        the first in the bundle would tell another village and send the crew elsewhere."""
        topo = self.topology
        tests = area_tests(topo, inc, feeder)
        out: list[str] = []
        for ref in split_list(refs or ""):
            village = self._village(ref, tests)
            if village is not None:
                out += topo.village_transformers(village)
                continue
            nodes = narrowed(named_nodes(topo, ref, ("transformer",)), *tests)
            if not nodes:
                raise StepInputError(f"{ref!r} is neither a transformer area nor a village")
            if len(nodes) > 1:
                raise StepInputError(shared_message(topo, ref, nodes))
            out.append(nodes[0])
        if not out:
            raise StepInputError("no transformer area given")
        return list(dict.fromkeys(out))

    def _village(self, ref: str, tests: Sequence[Callable[[str], bool]]) -> str | None:
        """The village ``ref`` (id or name) means, narrowed as its areas are; None: none."""
        topo = self.topology
        if ref in topo.villages:
            return ref
        named = tuple(v.id for v in topo.villages.values() if v.name == ref)
        found = narrowed(named, *(_of_village(topo, test) for test in tests))
        if len(found) > 1:
            listed = ", ".join(f"{v} ({topo.villages[v].township or 'no township'})"
                               for v in found)
            raise StepInputError(f"{ref!r} is shared by villages {listed}: give the id")
        return found[0] if found else None

    def _logged(self, now: datetime, step: str, actor: str, note: str,
                details: dict[str, Any], incident_id: str | None = None) -> Then:
        """The step's log line, written in the transaction that folds its report: on
        ``incident_id``, else on the incident the report joined (none: no line)."""
        store = self.lifecycle.store

        def then(conn: Connection, joined: str | None) -> None:
            target = incident_id or joined
            if target is not None:
                store.log_in(conn, target, now, step, actor, note, details)
        return then


def area_tests(topology: Topology, inc: Incident | None, feeder: str | None
               ) -> tuple[Callable[[str], bool], ...]:
    """What a step knows of which area a shared name means, widest first (for
    :func:`narrowed`): on the incident's feeders (its own, its areas') or the ``feeder`` given
    (id or name); among the incident's areas (affected or back)."""
    feeders = set(topology.feeders_by_name.get(feeder, (feeder,))) if feeder else set()
    if inc is None:
        return (lambda t: topology.feeder_of(t) in feeders,) if feeders else ()
    areas = {*inc.estimate.transformers, *inc.restored}
    feeders |= {inc.feeder, *(topology.feeder_of(t) for t in areas if t in topology.pos)}
    return (lambda t: topology.feeder_of(t) in feeders, lambda t: t in areas)


def _of_village(topology: Topology, test: Callable[[str], bool]) -> Callable[[str], bool]:
    """``test`` of areas as a test of villages: one of the village's areas passes it."""
    return lambda v: any(test(t) for t in topology.village_transformers(v))


def _fault_point_moved(before: Incident, after: Incident) -> bool:
    """Whether the fault point the crew patrols from moved: other devices, or another
    section below them."""
    return (before.estimate.devices, before.estimate.section) != (
        after.estimate.devices, after.estimate.section)


def _orders_moved(before: Incident, after: Incident) -> str:
    """New orders for the crew when a scope correction moved the fault point (``narrowed``:
    the crew is told the command centre took areas out and where the fault point is now, as
    inferred as it is); none when it did not, or no fault point is left to patrol from."""
    return "narrowed" if after.estimate.devices and _fault_point_moved(before, after) else ""


def restored_by_record(inc: Incident) -> tuple[str, str]:
    """The source and signal of the record whose end brought ``inc``'s areas back last (the
    command centre's, ``operator``, when none did: its word ended the outage)."""
    ended = [m for m in inc.members.values() if m.status == "restored" and m.end is not None]
    if not ended:
        return OPERATOR_SOURCE, "notice"
    last = max(ended, key=lambda m: m.end or m.seen_at)
    return last.key.split("|", 1)[0], last.signal


def _said(key: str, flag: bool | None) -> dict[str, bool]:
    """A step's explicit yes or no as its details keep it: nothing when it said neither."""
    return {} if flag is None else {key: bool(flag)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def refs_of(values: Sequence[str] | None) -> str:
    """Repeated ``--add``/``--remove`` options as one comma-separated list."""
    return ",".join(values or ())
