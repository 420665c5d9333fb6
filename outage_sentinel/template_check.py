"""``outage-sentinel check`` for notice templates: render every one before an outage does.

An override with ``{{ no_such_var }}`` or ``{% if %}`` used to pass ``check`` and then fail on
every event. Here every template, built-in and override, in every language, is rendered with
contexts made by the same code the daemon uses (the liaison planner, the crew-dispatch context
builders, the command-centre summary), on a small built-in sample network that has everything
a template can show: several villages, a crew with a base, important users and special-care
households, an estimate with a probability, restoration steps. Each incident kind and both a
complete and a sparse incident (no ETR, no cause, no estimate probability) are tried, so a
template that only breaks for a planned outage, or when the ETR is unknown, is caught too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateError, meta

from outage_sentinel import crew as crews
from outage_sentinel import priority as prio
from outage_sentinel.config import Config
from outage_sentinel.events import Kind
from outage_sentinel.incidents import (
    Evidence,
    Incident,
    IncidentStatus,
    Notice,
    first_estimate,
    villages_off,
)
from outage_sentinel.liaison import LiaisonPlanner, Renderer
from outage_sentinel.topology import Topology, topology_from_records

LANGUAGES = ("zh", "en")
KINDS: tuple[Kind, ...] = ("fault", "planned", "temporary")
#: Purposes of village notices rendered by the liaison planner (``liaison_<purpose>``).
LIAISON_PURPOSES = ("outage", "update", "restored", "cancelled", "corrected", "reminder")
ESCALATION_REASONS = ("at_risk", "overdue", "no_crew")
NOW = datetime(2026, 7, 14, 6, 30, tzinfo=UTC)


class _Recorder(Renderer):
    """A renderer that keeps the (template, context) pairs it is asked for."""

    def __init__(self, language: str) -> None:
        super().__init__(language)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def render(self, name: str, **context: Any) -> str:
        self.seen.append((name, context))
        return name


def sample_topology() -> Topology:
    """Feeder F1: S1 ─ B1 ─ FU1 ─ T1 (V1), T2 (V2); B1 ─ T3 (V2); a crew with a base; important
    users and special-care households in V1 and V2."""
    def node(nid: str, kind: str, name: str, village: str = "", customers: int = 0,
             lat: str = "", lon: str = "") -> dict[str, Any]:
        return {"id": nid, "kind": kind, "name": name, "feeder": "F1", "normally_open": "0",
                "village": village, "customers": customers, "lat": lat, "lon": lon}

    nodes = [node("S1", "source", "10kV样例线"), node("B1", "breaker", "样例线911断路器"),
             node("FU1", "fuse", "样例支线熔断器", lat="36.50", lon="115.50"),
             node("T1", "transformer", "东村1号台区", "V1", 120, "36.51", "115.51"),
             node("T2", "transformer", "西村1号台区", "V2", 80),
             node("T3", "transformer", "西村2号台区", "V2", 60)]
    edges = [("S1", "B1"), ("B1", "FU1"), ("FU1", "T1"), ("FU1", "T2"), ("B1", "T3")]
    villages = [{"id": "V1", "name": "东村", "township": "样例镇", "grid": "g1",
                 "area_type": "rural"},
                {"id": "V2", "name": "西村", "township": "", "grid": "g1", "area_type": "urban"}]
    liaisons = [{"village": v, "name": f"联络员{v}", "role": role, "phone": phone,
                 "channel": "sample", "target": f"group-{v}"}
                for v, role, phone in (("V1", "village_liaison", "13800000001"),
                                       ("V1", "grid_manager", "13800000002"),
                                       ("V2", "transformer_manager", "13800000003"))]
    crew_rows = [{"id": cid, "name": f"抢修班{cid}", "phone": "13900000001", "channel": "sample",
                  "target": f"crew-{cid}", "feeders": "F1", "lat": lat, "lon": lon,
                  "leader": f"班长{cid}"}
                 for cid, lat, lon in (("CR1", "36.55", "115.55"), ("CR2", "", ""))]
    customers = [
        {"id": "C1", "transformer": "T1", "name": "样例医院", "phone": "13700000001",
         "importance": "special", "tags": ""},
        {"id": "C2", "transformer": "T1", "name": "张大爷", "phone": "13700000002",
         "importance": "", "tags": "elderly_alone"},
        {"id": "C3", "transformer": "T2", "name": "李奶奶", "phone": "13700000003",
         "importance": "", "tags": "life_support;elderly_alone"},
        {"id": "C4", "transformer": "T2", "name": "冷库", "phone": "", "importance": "first",
         "tags": "cold_storage"},
        {"id": "C5", "transformer": "T3", "name": "学校", "phone": "13700000005",
         "importance": "second", "tags": ""},
    ]
    return topology_from_records(nodes, edges, villages, liaisons, crew_rows, customers)


def sample_incidents(topology: Topology) -> Iterator[Incident]:
    """Per kind: a complete incident (ETR, cause, probability, a restoration step, the end
    time) and a sparse one (none of those)."""
    estimate = first_estimate(topology, Evidence(dead=frozenset({"T1", "T2"})))
    for kind in KINDS:
        full = Incident(
            id=f"INC-20260714-{kind[:3].upper()}", feeder="F1", kind=kind, status="active",
            revision=3, start=NOW - timedelta(hours=1), etr=NOW + timedelta(hours=2),
            end=NOW + timedelta(hours=3), cause="雷击", area_text="东村、西村部分用户",
            members={}, estimate=replace(estimate, probability=0.72),
            notified_villages=("V1", "V2"), restored={"T2": NOW}, stage="dispatched")
        yield full
        yield replace(full, id=f"{full.id}-S", revision=1, etr=None, end=None, cause="",
                      area_text="", restored={}, stage="detected",
                      estimate=replace(estimate, probability=None))


def sample_contexts(config: Config, language: str) -> list[tuple[str, dict[str, Any]]]:
    """(template name, context) pairs covering every template, built by the daemon's code."""
    from outage_sentinel.lifecycle import Lifecycle
    from outage_sentinel.store import Store

    topology = sample_topology()
    whole = first_estimate(topology, Evidence(dead=frozenset({"T1", "T2", "T3"})))
    tz = ZoneInfo(config.timezone)
    recorder = _Recorder(language)
    planner = LiaisonPlanner(topology, recorder, tz, config.notify.liaison_roles)
    params = config.dispatch.to_params()
    weights = config.priority.to_weights()
    store = Store("sqlite://")  # a summary reads no database; Lifecycle wants a store
    try:
        life = Lifecycle(store, topology, planner, config, lambda: NOW)
        for inc in sample_incidents(topology):
            villages = tuple(inc.estimate.villages)
            for purpose in LIAISON_PURPOSES:
                status: IncidentStatus = "restored" if purpose == "restored" else \
                    "cancelled" if purpose == "cancelled" else "active"
                planner.rows(replace(inc, status=status), [Notice(purpose, villages)], NOW,
                             previous=inc)
            # a restoration nothing confirmed for T2 (V2's other area, T3, back)
            planner.rows(replace(inc, status="restored", unconfirmed=("T2",), estimate=whole),
                         [Notice("restored", villages)], NOW, previous=inc)
            # Unguarded (not ``summaries.rows``): a summary that fails is a problem to report,
            # not one the daemon's fallback may hide.
            for headline in (None, "closed"):
                life.summaries.render(inc, headline=headline)
            life.summaries.render(replace(inc, status="restored", unconfirmed=("T2",)))
            recorder.seen += _crew_contexts(topology, inc, tz, language, params, weights)
            for village in villages_off(inc, topology):
                # The list for a liaison reached in person, the count for the group chats.
                planner.care_rows(inc, village, crews.care_list_context(
                    topology, inc, village, NOW, tz, language, params), {"sms": "sms"},
                    "抢修一班")
    finally:
        store.close()
    return recorder.seen


#: The times a context states that an AMI source flagged as read in the wrong zone may leave
#: to be confirmed (``None``): the key, and the flag the context then carries.
UNVERIFIED_TIMES = {"start_local": "start_unverified", "restored_local": "restored_unverified",
                    "end_local": "end_unverified"}


def unverified_starts(seen: list[tuple[str, dict[str, Any]]]
                      ) -> list[tuple[str, dict[str, Any]]]:
    """Each context that states a start again with its times to be confirmed (an AMI source
    flagged as read in the wrong zone: :func:`~outage_sentinel.liaison.stated_start`,
    :func:`~outage_sentinel.liaison.checked_start`,
    :func:`~outage_sentinel.liaison.stated_restored`) — village notices, crews' orders and
    notices, the command centre's escalations and summaries — so a template printing
    ``start_local`` or ``restored_local`` unguarded is caught before it says
    "停电时间：None"."""
    out = []
    for name, ctx in seen:
        if not ctx.get("start_local"):
            continue
        unset = {**{k: None for k in UNVERIFIED_TIMES if ctx.get(k)},
                 **{flag: True for k, flag in UNVERIFIED_TIMES.items() if ctx.get(k)}}
        out.append((name, {**ctx, **unset, **({"not_started": False}
                                              if name.startswith("liaison_") else {})}))
    return out


def _crew_contexts(topology: Topology, inc: Incident, tz: Any, language: str, params: Any,
                   weights: Any) -> list[tuple[str, dict[str, Any]]]:
    pr = prio.score(topology, inc.off, inc.start, NOW, weights, language)
    villages = villages_off(inc, topology)
    deadline, area = crews.arrival_deadline(topology, villages, inc.start, params.commitments)
    location = crews.incident_location(topology, inc.estimate.devices, inc.off)
    choice = crews.choose_crew(topology, inc.feeder, location, pr.score, {}, NOW, params,
                               area_type=area)
    busy = {"CR2": crews.Busy(pr.score - 1, "INC-20260714-0099")}
    out = [("crew_dispatch", crews.dispatch_context(topology, inc, pr, choice, deadline, area,
                                                    NOW, tz, language, params))]
    for reason in crews.STAND_DOWN_REASONS:
        out.append(("crew_stand_down", crews.stand_down_context(
            topology, inc, topology.crews[0], reason, NOW, tz, topology.crews[-1], "误报")))
    for unsure in ((), ("T2",)):
        out.append(("crew_power_back", crews.power_back_context(
            topology, replace(inc, unconfirmed=unsure), topology.crews[0], "配网停电信息系统",
            NOW, tz)))
    for reason in ESCALATION_REASONS:
        out.append(("command_escalation", crews.escalation_context(
            topology, inc, pr, reason, deadline, area, NOW, tz,
            None if reason == "no_crew" else choice, busy, language, params)))
    return out


def unverified_start_notes(config: Config) -> list[str]:
    """Overrides that break, or print "None", when the start (or the time power came back)
    is to be confirmed (:func:`unverified_starts`): notes, not problems — the daemon sends
    the built-in notice for one that fails, and a case this rare should not keep it down —
    each ``"<file>: ..."`` once."""
    notes: dict[str, str] = {}
    for language in LANGUAGES:
        renderer = Renderer(language, config.notify.templates_dir)
        for name, context in unverified_starts(sample_contexts(config, language)):
            override = renderer.override_path(name)
            if override is None:
                continue
            try:
                text = renderer.env.get_template(renderer.file_name(name)).render(**context)
            except Exception as exc:  # noqa: BLE001 - any failure is the note
                notes.setdefault(str(override), f"{override}: fails when the start is to be "
                                 f"confirmed ({unset_names(context)} unset): {exc}")
                continue
            if "None" in text:
                notes.setdefault(str(override), f"{override}: prints None when the start is "
                                 f"to be confirmed ({unset_names(context)} unset, an AMI "
                                 "source's clock flagged): test each with {% if start_local %}, "
                                 "as the built-in one does")
    return list(notes.values())


def unset_names(context: dict[str, Any]) -> str:
    """The times :func:`unverified_starts` left unset in ``context`` ("start_local,
    restored_local")."""
    return ", ".join(k for k, flag in UNVERIFIED_TIMES.items() if context.get(flag))


def template_problems(config: Config) -> list[str]:
    """Every template that fails to compile or render, built-in and override, each language:
    ``"<file>:<line>: <error>"`` lines, sorted, each once. (What the override directory holds
    that is never used is a note, :func:`override_dir_problems`: ``run`` goes on with the
    built-in templates.)"""
    problems: dict[str, None] = {}
    for language in LANGUAGES:
        renderer = Renderer(language, config.notify.templates_dir)
        for p in renderer.syntax_problems():
            problems.setdefault(p, None)
        for name, context in sample_contexts(config, language):
            for p in renderer.problems(name, context):
                problems.setdefault(p, None)
    return sorted(problems)


def rendered_names(config: Config) -> set[str]:
    """The template files :func:`template_problems` renders (``liaison_outage.zh.j2``...)."""
    return {f"{name}.{language}.j2" for language in LANGUAGES
            for name, _ in sample_contexts(config, language)}


def override_dir_problems(directory: Path | None) -> list[str]:
    """Why overrides in ``directory`` would silently not be used, as ``<path>: <why>``: the
    directory does not exist (or is no directory, or cannot be read), or a ``*.j2`` file is
    named for no template (``liaison_outge.zh.j2``, ``liaison_outage.j2``; the closest name
    given) and no other override includes it. Every built-in template would go out instead."""
    if directory is None:
        return []
    if not directory.exists():
        return [f"{directory}: does not exist (the built-in templates would be used)"]
    if not directory.is_dir():
        return [f"{directory}: not a directory"]
    try:
        files = sorted(p for p in directory.glob("*.j2") if p.is_file())
    except OSError as exc:
        return [f"{directory}: cannot be read: {exc.strerror or exc}"]
    known = set(Renderer("zh").builtin_env.list_templates(extensions=["j2"]))
    used = _included(files)
    if used is None:  # an include whose name is computed: any file may be used
        return []
    return [f"{path}: {_unknown_name(path.name, known)}" for path in files
            if path.name not in known and path.name not in used]


def _included(files: list[Path]) -> set[str] | None:
    """The names the override ``files`` include, extend or import; ``None`` if one computes
    a name (any file may then be meant). A file that does not parse is left to
    :meth:`Renderer.syntax_problems`."""
    env = Renderer("zh").builtin_env
    names: set[str] = set()
    for path in files:
        try:
            found = meta.find_referenced_templates(env.parse(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, TemplateError):
            continue
        for name in found:
            if name is None:
                return None
            names.add(name)
    return names


def _unknown_name(name: str, known: set[str]) -> str:
    """What to say of an override file named ``name``, which is no template's: the closest
    template name (in the file's language, or in each)."""
    base, _, rest = name.removesuffix(".j2").partition(".")
    close = difflib.get_close_matches(base, sorted({k.split(".")[0] for k in known}), n=1,
                                      cutoff=0.6)
    languages = [rest] if rest in LANGUAGES else list(LANGUAGES)
    hint = ("did you mean " + " or ".join(f"{close[0]}.{lang}.j2" for lang in languages) + "?"
            if close else "templates: " + ", ".join(sorted({k.split(".")[0] for k in known})))
    return (f"matches no template, so it is never used (an override is named "
            f"<template>.<{'|'.join(LANGUAGES)}>.j2 as a built-in one; {hint})")
