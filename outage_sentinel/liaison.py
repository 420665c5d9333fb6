"""Village liaison notices: who in a village hears about an incident, and what they read.

Pure: given the topology, the incident and the notices :func:`incidents.plan_notices` decided,
return outbox rows. Liaisons of a village who share a channel and target (the same WeCom group)
get one message that @-mentions all of them, not one each; an SMS target is one person.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateSyntaxError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from outage_sentinel import sms_params as sms
from outage_sentinel.channels.base import SMS_CHANNEL_TYPES, is_sms_type
from outage_sentinel.config import ChannelConfig
from outage_sentinel.field_links import PUBLIC, IssuedLink
from outage_sentinel.incidents import (
    REPORTING_SIGNALS,
    Estimate,
    Incident,
    Member,
    Notice,
    announced_kind,
    areas_back,
    back_on_field_word,
    called_off,
    disputed_areas,
    dropped_areas,
    held_disputes,
    meters_dark,
    off_since_back,
    reports_outage,
    restored_at,
    source_of,
    village_cause,
    village_devices,
    village_etr,
    village_records,
    village_scope_change,
    village_start,
    villages_off,
)
from outage_sentinel.labels import KIND_LABELS
from outage_sentinel.logs import get_logger
from outage_sentinel.ordering import ETR_ONLY, ETR_SAID
from outage_sentinel.ordering import VOID_ETR as VOID_ETR  # revision_writer reads it here
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.topology import Topology

#: Notice purposes liaisons never receive: a village the estimate stopped inferring is told
#: nothing (it was only ever "可能受影响"); the command centre's summary says so.
COMMAND_ONLY_PURPOSES = ("withdrawn",)


#: Longest string or list a template may build with ``*`` and the largest ``**`` exponent: the
#: sandbox stops attribute tricks, these stop ``"x" * 10**9`` from eating the daemon's memory.
MAX_TEMPLATE_REPEAT = 100_000
MAX_TEMPLATE_POWER = 100


def village_recipient(village_id: str, channel: str, target: str) -> str:
    """The outbox recipient of a village's liaisons on one channel and target (one group
    chat, one phone)."""
    return f"village:{village_id}:{channel}:{target}"


#: How the command centre's summary marks a transformer named as the fault point.
OWN_FAULT_NOTE = {"zh": "（台区自身故障：配变或跌落式熔断器）",
                  "en": " (the area's own fault: its transformer or drop-out fuse)"}

class _Sandbox(SandboxedEnvironment):
    """The sandbox, plus bounds on repetition and powers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_TEMPLATE_POWER:
            raise SecurityError(f"exponent {right} is over {MAX_TEMPLATE_POWER}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and isinstance(n, int)
                        and len(seq) * n > MAX_TEMPLATE_REPEAT):
                    raise SecurityError(f"repetition longer than {MAX_TEMPLATE_REPEAT}")
        return super().call_binop(context, operator, left, right)


@dataclass(frozen=True)
class TemplateFailure:
    """An override template that failed; the message went out with the built-in one."""

    #: The template's name without language and suffix (``liaison_outage``).
    name: str
    #: The file that failed, with the line when known (``/etc/.../liaison_outage.zh.j2:3``).
    where: str
    error: str
    incident_id: str | None

#: Channel types that reach one person. Special-care lists (names, phones, 独居老人/生命支持)
#: go only there; every other type — group robots (wecom, dingtalk, feishu), webhooks, and the
#: file/console sinks, which may stand in for a group and are read by whoever reads the file —
#: gets the count and who holds the list. Privacy errs on the side of the group.
INDIVIDUAL_CHANNEL_TYPES = SMS_CHANNEL_TYPES | {"email"}
#: How a care-list holder's channel is named to the group ("台区经理王五（短信）"): every SMS
#: type as SMS, whichever carrier sends it.
CHANNEL_LABELS = {
    "zh": {**dict.fromkeys(sorted(SMS_CHANNEL_TYPES), "短信"), "email": "邮件"},
    "en": {**dict.fromkeys(sorted(SMS_CHANNEL_TYPES), "SMS"), "email": "e-mail"},
}
LIAISON_ROLE_LABELS = {
    "zh": {"village_liaison": "村联络人", "grid_manager": "网格经理",
           "transformer_manager": "台区经理"},
    "en": {"village_liaison": "village liaison", "grid_manager": "grid manager",
           "transformer_manager": "transformer-area manager"},
}


def sms_channels(channels: Mapping[str, ChannelConfig]) -> frozenset[str]:
    """The channels whose messages go out as SMS templates with parameters (the link a
    template variable, not a line of text): those of an SMS type (:data:`SMS_CHANNEL_TYPES`:
    Aliyun ``sms``, Tencent ``tencent_sms``), and one named ``sms`` of any type (a file or
    console sink standing in for the carrier, as in the demo)."""
    return frozenset(name for name, c in channels.items()
                     if is_sms_type(c.type) or name == "sms")


def individual_channels(channels: Mapping[str, ChannelConfig]) -> dict[str, str]:
    """The enabled channels of the config that reach one person, name → type."""
    return {name: c.type for name, c in channels.items()
            if c.type in INDIVIDUAL_CHANNEL_TYPES and c.enabled}


class BlankText(ValueError):
    """A template rendered no text: sent, it is an empty message to a person."""


def nonblank(text: str) -> str:
    """``text`` stripped, or :class:`BlankText` when nothing is left: an override whose
    conditions leave nothing out (``{% if false %}…``) is a failed template, not a notice."""
    out = text.strip()
    if not out:
        raise BlankText("the template rendered no text")
    return out


class Renderer:
    """Jinja2 templates, built-in under ``outage_sentinel/templates``, overridable by a directory.

    Both sets render in a sandbox (:class:`jinja2.sandbox.SandboxedEnvironment`) with
    ``StrictUndefined``: an override is operator input, and ``{{ cycler.__init__.__globals__ }}``
    must not reach the daemon's modules. An override that fails at run time never stops a
    notice: the message is rendered from the built-in template instead, the failure is logged
    (``template_failed``) and handed to ``on_failure`` (the daemon counts it and tells the
    command centre). ``outage-sentinel check`` renders every template beforehand
    (:meth:`problems`).
    """

    def __init__(self, language: str = "zh", override_dir: Path | None = None,
                 on_failure: Callable[[TemplateFailure], None] | None = None) -> None:
        self.language = language
        self.override_dir = override_dir
        self.on_failure = on_failure
        builtin = PackageLoader("outage_sentinel", "templates")
        options: dict[str, Any] = {"undefined": StrictUndefined, "autoescape": False,
                                   "trim_blocks": False, "keep_trailing_newline": False}
        self.builtin_env = _Sandbox(loader=builtin, **options)
        # An override may {% include %} or {% extends %} a built-in template: both loaders.
        self.env = self.builtin_env if override_dir is None else _Sandbox(
            loader=ChoiceLoader([FileSystemLoader(str(override_dir)), builtin]), **options)
        self._log = get_logger(component="templates")

    def file_name(self, name: str, language: str | None = None) -> str:
        """``liaison_outage`` → ``liaison_outage.zh.j2``."""
        return f"{name}.{language or self.language}.j2"

    def override_path(self, name: str) -> Path | None:
        """The override directory's own ``name`` in this language, if it has one."""
        if self.override_dir is None:
            return None
        path = self.override_dir / self.file_name(name)
        return path if path.is_file() else None

    def render(self, name: str, **context: Any) -> str:
        """The text of template ``name`` (override first, then the built-in one)."""
        file = self.file_name(name)
        override = self.override_path(name)
        if override is not None:
            try:
                return nonblank(self.env.get_template(file).render(**context))
            except Exception as exc:  # any failure of operator input: fall back, say so
                failure = TemplateFailure(name, _where(exc, str(override)),
                                          _error_text(exc), _incident_of(context))
                self._log.error("template_failed", template=failure.where,
                                error=failure.error, incident_id=failure.incident_id,
                                fallback="built-in")
                if self.on_failure is not None:
                    self.on_failure(failure)
        return self.builtin_env.get_template(file).render(**context).strip()

    def problems(self, name: str, context: Mapping[str, Any]) -> list[str]:
        """Render ``name`` from the override (if any) and the built-in set, without fallback;
        ``"<file>:<line>: <error>"`` for each that fails."""
        file = self.file_name(name)
        envs = [(self.builtin_env, f"<built-in>/{file}")]
        override = self.override_path(name)
        if override is not None:
            envs.insert(0, (self.env, str(override)))
        out = []
        for env, label in envs:
            try:
                nonblank(env.get_template(file).render(**context))
            except Exception as exc:
                out.append(f"{_where(exc, label)}: {_error_text(exc)}")
        return out

    def syntax_problems(self) -> list[str]:
        """Every ``*.j2`` file of the override directory that does not compile."""
        if self.override_dir is None:
            return []
        out = []
        for path in sorted(self.override_dir.glob("*.j2")):
            try:
                self.env.parse(path.read_text(encoding="utf-8"), path.name, str(path))
            except TemplateSyntaxError as exc:
                out.append(f"{path}:{exc.lineno}: {_error_text(exc)}")
            except (OSError, UnicodeDecodeError) as exc:
                out.append(f"{path}: cannot read as UTF-8: {exc}")
        return out


def _where(exc: BaseException, label: str) -> str:
    """``label`` with the template line the error happened on, when Jinja tells it."""
    line = getattr(exc, "lineno", None)
    if line is None:
        tb = exc.__traceback__
        while tb is not None:  # Jinja rewrites tracebacks to point into the template file
            if tb.tb_frame.f_code.co_filename.endswith(".j2"):
                line = tb.tb_lineno
            tb = tb.tb_next
    return f"{label}:{line}" if line else label


def _error_text(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {str(text)[:300]}"


def _incident_of(context: Mapping[str, Any]) -> str | None:
    value = context.get("incident_id")
    if value is None and context.get("incident") is not None:
        value = getattr(context["incident"], "id", None)
    return None if value is None else str(value)


def _crew_status_context(incident: Incident) -> dict[str, bool]:
    """Whether a notice may say a crew is on its way (``crew_sent``) or on site."""
    return {
        # Crews are said to be on their way only once one was sent: an outage only the meters
        # saw waits for the command centre to acknowledge it.
        "crew_sent": incident.stage == "dispatched" or (
            incident.stage == "partially_restored" and incident.crew_progress == "dispatched"),
        "crew_on_site": incident.stage == "on_site" or (
            incident.stage == "partially_restored" and incident.crew_progress == "on_site"),
    }


def _told_before_context(incident: Incident, purpose: str, village_id: str,
                         in_village: Sequence[str], previous: Incident | None,
                         topology: Topology) -> dict[str, Any]:
    """The notice's ``purpose``, and what it says of what the village was told before: that
    its power was back, or that the outage was called off (for the whole incident, or for
    the village alone: :func:`~outage_sentinel.incidents.called_off`)."""
    told_back = purpose == "outage" and previous is not None \
        and village_id in previous.restored_villages
    told_off = told_back and previous is not None and (
        previous.status == "cancelled" or called_off(previous, village_id, topology))
    return {
        "purpose": purpose,
        # Told its power was back (by this incident), and off now: the notice says so.
        "off_again": told_back and not told_off,
        # ... in an outage that began after it came back: that 恢复送电 was true, and this is
        # news of another outage (再次停电), no correction (更正) of a mistake.
        "off_anew": told_back and not told_off and previous is not None
        and off_since_back(previous, incident, village_id, topology),
        # ... where that notice only asked whether an area was back (the records had ended)
        "asked_before": previous is not None
        and bool(set(previous.unconfirmed) & set(in_village)),
        # Told the outage was called off, and it is on after all (planned work reinstated).
        "reinstated": told_off,
        # "restored" on a liaison's answer alone says whose word it is
        "restored_by_liaison": purpose == "restored"
        and back_on_field_word(incident, in_village),
    }


def reported_devices(incident: Incident, devices: Sequence[str],
                     records: Sequence[Member] | None = None) -> list[str]:
    """The devices of ``devices`` that one of the incident's records (or of ``records``: a
    village's own, :func:`~outage_sentinel.incidents.village_records`) names as operated."""
    named = {m.device for m in (incident.members.values() if records is None else records)
             if m.device}
    return [d for d in devices if d in named]


def told_devices(incident: Incident, village_id: str, topology: Topology) -> tuple[str, ...]:
    """The devices every notice of ``incident`` to a village names: those its outage notice
    named (:attr:`~outage_sentinel.incidents.Incident.told_devices`), so that the update,
    restored and cancelled notices read as the outage it was told of whatever the estimate
    says since; else (told before that was kept) the devices as they are now
    (:func:`~outage_sentinel.incidents.village_devices`: a source named them, and they feed
    the village)."""
    if village_id in incident.told_devices:
        return tuple(incident.told_devices[village_id])
    return village_devices(incident, village_id, topology)


# The payload keys of a village's notice that ordering reads (:mod:`outage_sentinel.ordering`):
# VOID_ETR, an update whose only news is that its expected restoration time is no longer
# known (:func:`etr_void_only`). Queued with ``notify.void_etr_hold_seconds`` on, it waits
# that long, marked :data:`~outage_sentinel.outgoing.LATEST_ONLY`: a later notice of its chain
# that says the village's state (its 恢复送电, another update) supersedes it
# (:func:`outage_sentinel.ordering.held_superseded`). A record's end is often the power coming
# back a poll later; "恢复时间待定" just before it tells people to expect a long wait.
# ETR_ONLY, an update whose only news is the time (:func:`etr_only`), and ETR_SAID, the time
# an outage notice or update states: an update of the time alone that says the time the
# village's last word said is superseded by it (:func:`outage_sentinel.ordering.restated`) —
# the record re-issued within the hold with the time the village was told is no news.
#: The notices that state the village's expected restoration time (:data:`ETR_SAID`).
STATING_ETR = ("outage", "update")


def etr_only(previous: Incident | None, incident: Incident, village_id: str,
             topology: Topology) -> bool:
    """Whether an update of ``incident`` to ``village_id`` tells it nothing but its expected
    restoration time, against ``previous`` (the incident as the village was told it): its
    areas, start, kind and cause are as it was told."""
    if previous is None:
        return False
    added, removed = village_scope_change(previous, incident, village_id, topology)
    said = [(village_start(i, village_id, topology), announced_kind(i),
             village_cause(i, village_records(i, village_id, topology)))
            for i in (previous, incident)]
    return not (added or removed) and said[0] == said[1]


def etr_void_only(previous: Incident | None, incident: Incident, village_id: str,
                  topology: Topology) -> bool:
    """Whether an update of ``incident`` to ``village_id`` tells it nothing but that its
    expected restoration time is no longer known, against ``previous`` (the incident as the
    village was told it): it was told a time the records gave (not the command centre's: one
    the command centre clears is its deliberate word), none stands now, and nothing else
    changed (:func:`etr_only`). A time told that has passed (原预计…恢复，已超时) is no
    exception: it goes void the same way, with the record that gave it."""
    if previous is None or previous.etr_set is not None or incident.etr_set is not None:
        return False
    told = previous.told_etr.get(village_id, previous.etr)
    if told is None or village_etr(incident, village_id, topology) is not None:
        return False
    return etr_only(previous, incident, village_id, topology)


def etr_marks(previous: Incident | None, incident: Incident, purpose: str, village_id: str,
              topology: Topology) -> dict[str, Any]:
    """The payload marks of a village's notice of ``purpose`` (:data:`ETR_SAID`,
    :data:`ETR_ONLY`, :data:`VOID_ETR`; none for a notice that states no time)."""
    if purpose not in STATING_ETR:
        return {}
    etr = village_etr(incident, village_id, topology)
    marked: dict[str, Any] = {ETR_SAID: etr.isoformat() if etr is not None else None}
    if purpose == "update" and etr_only(previous, incident, village_id, topology):
        marked[ETR_ONLY] = True
        if etr_void_only(previous, incident, village_id, topology):
            marked[VOID_ETR] = True
    return marked


def marked(rows: list[OutboxMessage], marks: Mapping[str, Any]) -> list[OutboxMessage]:
    """``rows`` with ``marks`` in their payloads."""
    return [r.but(payload={**r.payload, **marks}) for r in rows] if marks else rows


def records_over(incident: Incident, records: Sequence[Member], areas: Sequence[str]) -> str:
    """How the outage system's records of a village (``records``:
    :func:`~outage_sentinel.incidents.village_records`) ended when every one of them has and
    its meters hold one of its ``areas`` off (an open report of the meters,
    :func:`~outage_sentinel.incidents.meters_dark`, or a power-off the AMI screen holds,
    :attr:`Incident.held`): "restored", "cancelled", or "ended" (some each); "" otherwise.
    Their closing words ("已恢复", "误报") are then no cause of the outage the village is
    still in."""
    notices = [m for m in records if m.signal == "notice"]
    if not notices or any(m.status == "active" for m in notices):
        return ""
    dark = {*meters_dark(incident.members.values()), *incident.held}
    if not dark & set(areas):
        return ""
    statuses = {m.status for m in notices}
    return statuses.pop() if len(statuses) == 1 else "ended"


def closing_word(records: Sequence[Member]) -> bool:
    """Whether the cause a village's ``records`` give once none is open
    (:func:`~outage_sentinel.incidents.own_cause`: the latest stated) is the word a record
    ended with ("已恢复", "误报"): stated in its last revision, or at or after its end —
    not the cause it had stated while open, which its ending kept
    (:func:`~outage_sentinel.incidents.kept_cause`)."""
    said = [m for m in records if m.signal in REPORTING_SIGNALS and m.cause]
    if not said:
        return False
    m = max(said, key=lambda m: (m.cause_stated, m.key))
    return m.status != "active" and (m.cause_stated >= m.seen_at
                                      or (m.end is not None and m.cause_stated >= m.end))


def cause_context(incident: Incident, records: Sequence[Member], areas: Sequence[str]
                  ) -> dict[str, str]:
    """The cause a village's notice states (:func:`~outage_sentinel.incidents.village_cause`)
    and ``records_over`` (:func:`records_over`): when its records all ended and the meters
    still hold it off, the notice says the outage system reports the outage over (or called
    off) while the meters show it still off, being checked — and states no cause its records
    only gave as they ended (:func:`closing_word`): that is no cause of this outage."""
    over = records_over(incident, records, areas)
    cause = "" if over and closing_word(records) else village_cause(incident, records)
    return {"cause": cause, "records_over": over}


def sure_off(topology: Topology, incident: Incident, devices: Sequence[str]) -> set[str]:
    """Areas a source reported off, or below a device one named as operated."""
    named = reported_devices(incident, devices)
    return ({t for t in incident.estimate.transformers if incident.mark(t) == "reported"}
            | {t for d in named if d in topology.pos
               for t in topology.downstream_transformers(d)})

#: The source of the AMI screen's area outage records (member keys ``ami|…``:
#: :data:`outage_sentinel.screening.AMI_SOURCE`): their times are the AMI sources' as read.
AMI_RECORDS = "ami"
#: ``() ->`` the AMI sources flagged now as read in the wrong zone, source -> offset hours
#: (:meth:`outage_sentinel.ami.AmiScreen.clock_offsets`; empty: none).
ClockFlags = Callable[[], Mapping[str, float]]


def meters_free(incident: Incident) -> dict[str, Member]:
    """``incident``'s records but the AMI screen's (:data:`AMI_RECORDS`): those whose times
    hold while an AMI source is flagged as read in the wrong zone."""
    return {k: m for k, m in incident.members.items() if source_of(m) != AMI_RECORDS}


def stated_start(incident: Incident, village_id: str, topology: Topology,
                 clock_flagged: bool) -> datetime | None:
    """When a village's notices may say its outage began: :func:`village_start`, unless an
    AMI source is flagged as read in the wrong zone (``clock_flagged``,
    :mod:`outage_sentinel.clock_offset`): its times may then be hours wrong, and the area
    records do not say which AMI source they came from, so the AMI screen's records give no
    start. The start is then the other records' (the village's own; for a village none names,
    the incident's: :func:`checked_start`), and ``None`` — 待核实 — when only the AMI
    screen's give one: a notice never states as fact what may be hours wrong."""
    start = village_start(incident, village_id, topology)
    others = meters_free(incident)
    if not clock_flagged or len(others) == len(incident.members):
        return start
    trimmed = replace(incident, members=others)
    if village_records(trimmed, village_id, topology):
        return village_start(trimmed, village_id, topology)
    if village_records(incident, village_id, topology):
        return None  # the village's own records are all the meters'
    return checked_start(incident, clock_flagged)


def checked_start(incident: Incident, clock_flagged: bool) -> datetime | None:
    """When ``incident`` began as a crew's orders and the command centre's texts state it:
    its start, unless an AMI source is flagged as read in the wrong zone and the AMI screen's
    records are among its own (the rule of :func:`stated_start`, for the whole outage): then
    the earliest start another record of an outage gives, and ``None`` — to be confirmed —
    when none does. A crew told "off since 02:30" of an outage at 10:30 reads an eight-hour
    outage that never was."""
    others = meters_free(incident)
    if not clock_flagged or len(others) == len(incident.members):
        return incident.start
    starts = [m.start for m in others.values() if reports_outage(m)]
    return min(starts) if starts else None


def stated_restored(incident: Incident, areas: Sequence[str], clock_flagged: bool,
                    now: datetime) -> datetime | None:
    """When ``areas`` came back, as a notice may state it: :func:`restored_at` (else the
    incident's end, else ``now``), unless an AMI source is flagged as read in the wrong zone
    (the rule of :func:`stated_start`): an area's time is then what the other records give
    (:func:`areas_back` of :func:`meters_free`), and ``None`` — 恢复时间待核实 — when one
    came back at a time only the AMI screen's records give (their power-on, as read hours
    wrong), or when no area did and the end is such a time."""
    back = [t for t in areas if t in incident.restored]
    fallback = restored_at(incident, back) or incident.end or now
    meters = [m for m in incident.members.values() if source_of(m) == AMI_RECORDS]
    if not clock_flagged or not meters:
        return fallback
    read = {m.start for m in meters} | {m.end for m in meters if m.end is not None}
    sure = areas_back(meters_free(incident).values())
    times = [sure.get(t) or incident.restored[t] for t in back]
    if any(t not in sure and incident.restored[t] in read for t in back):
        return None
    if times:
        return max(times)
    return None if fallback in read else fallback


def care_list_holders(liaisons: Sequence[str], liaisons_whole: bool, crew_has_list: bool,
                      crew_label: str) -> tuple[list[str], str]:
    """Whom a village's group may be told holds its special-care list: ``(liaisons, crew)``.

    The group is told to contact them, so a holder is named only when it has every one of
    the village's households: its individually reached ``liaisons`` when their list was not
    cut (``liaisons_whole``), else the crew (``crew_label``) when its dispatch lists them all
    (``crew_has_list``: :func:`outage_sentinel.crew.crew_has_care_list`, the cut the dispatch
    itself makes). Neither: ``([], "")``, and the group hears the list is with the command
    centre (the system list), which has all of it."""
    if liaisons and liaisons_whole:
        return list(liaisons), ""
    return [], crew_label if crew_has_list else ""


def care_holders(topology: Topology, roles: Collection[str], lang: str, village_id: str,
                 individual: Mapping[str, str]) -> list[str]:
    """Who in the village receives the care list in person (its liaisons of ``roles`` on a
    channel of ``individual``): "村联络人张三（短信）"."""
    role_labels, channels = LIAISON_ROLE_LABELS[lang], CHANNEL_LABELS[lang]
    out: list[str] = []
    for liaison in topology.liaisons_by_village.get(village_id, []):
        if liaison.role not in roles or liaison.channel not in individual:
            continue
        label = channels.get(individual[liaison.channel], individual[liaison.channel])
        role = role_labels.get(liaison.role, liaison.role)
        text = (f"{role}{liaison.name}（{label}）" if lang == "zh"
                else f"{role} {liaison.name} ({label})")
        if text not in out:
            out.append(text)
    return out


#: ``(incident id, village, recipient) ->`` that recipient's short link to its field page.
LinkMaker = Callable[[str, str, str], IssuedLink]
#: Notices that carry the recipient's link: in the text, or by SMS as the ``link`` variable of
#: the templates in :data:`SMS_LINKED_TEMPLATES` (the template holds the board's address).
LINKED_PURPOSES = frozenset({"outage", "update", "restored"})
SMS_LINKED_TEMPLATES = frozenset({"outage", "update", "restored", "unconfirmed"})
LINK_LINE = {"zh": "反馈（已来电 / 仍停电）：{url}", "en": "Tell us (power back / still off): {url}"}


#: Said after a feeder's name when only part of the line is off, or the whole of it possibly.
LINE_EXTENT = {"zh": {"part": "（部分区段）", "maybe_all": "（可能全线）"},
               "en": {"part": " (part of the line)", "maybe_all": " (possibly the whole line)"}}

PROGRESS_WORDS = {
    "zh": {"head": "【抢修进展】{village}：{feeder}故障停电（编号{incident}）{progress}。",
           "on_site": "抢修人员已到达现场", "fault_found": "已找到故障，原因：{cause}",
           "unknown": "待查明", "page": "抢修进展与现场照片：{url}"},
    "en": {"head": "[Repair progress] {village}: the outage on {feeder} ({incident}): "
                   "{progress}.",
           "on_site": "the crew is on site", "fault_found": "the fault is found, cause: {cause}",
           "unknown": "being established",
           "page": "Progress and photos from the site: {url}"},
}


def dispute_names(topology: Topology, incident: Incident) -> dict[str, list[str]]:
    """The command-centre summary's names of the areas ``incident`` keeps off because their
    meters still report them off against a record's end or a liaison's 已来电
    (:func:`disputed_areas`): ``disputed``, a released outage (电表仍报停电，未按恢复处理), and
    ``disputed_held``, a power-off the AMI screen holds, not released yet
    (:func:`held_disputes`: 电表仍报停电（暂未确认）)."""
    held = set(held_disputes(incident))
    disputed = list(disputed_areas(incident))

    def name(t: str) -> str:
        return topology.nodes[t].name or t if t in topology.nodes else t

    return {"disputed": [name(t) for t in disputed if t not in held],
            "disputed_held": [name(t) for t in disputed if t in held]}


def sms_values(incident: Incident, sms_purpose: str, context: dict[str, Any], now: datetime,
               households: int, confirmed: int, language: str) -> dict[str, str]:
    """The SMS template's fixed parameters (:mod:`outage_sentinel.sms_params`) for a
    liaison notice sent as ``sms_purpose``: each template has its own set."""
    common = {"village": context["village"].name, "feeder": context["outage_label"],
              "incident": incident.id, "language": language}
    start = sms.start_value(context["start_local"], context["start_unverified"], language)
    back = sms.restored_value(context["restored_local"], context["restored_unverified"],
                              language)
    if sms_purpose == "restored":
        return sms.restored_params(start=start, restored=back, **common)
    if sms_purpose == "unconfirmed":
        return sms.unconfirmed_params(
            start=start, ended=back,
            areas=context["unconfirmed_names"],
            households=int(context["unconfirmed_customers"]), **common)
    if sms_purpose in ("cancelled", "cancelled_begun", "corrected"):
        return sms.cancelled_params(kind=context["kind_label"], start=start, **common)
    if sms_purpose in ("planned", "reminder"):
        # areas a record names only loosely ("XX村部分用户") are possible, as the text says
        timing = {"kind": context["kind_label"], "start": start,
                  "end": context["etr_local"], "households": households,
                  "confirmed": confirmed}
        if sms_purpose == "planned":
            return sms.planned_params(cause=context["cause"], **timing, **common)
        # How long before the start it is queued (24, 1, …); the deliverer states it
        # again when the SMS goes (quiet hours, retries: sms.with_hours).
        hours = (incident.start - now).total_seconds() / 3600.0
        return sms.reminder_params(hours=hours, **timing, **common)
    # outage and update (new times) of a fault
    build = sms.update_params if sms_purpose == "update" else sms.outage_params
    return build(kind=context["kind_label"], start=start, etr=context["etr_local"],
                 cause=context["cause"] or sms.records_over_cause(context["records_over"],
                                                                  language),
                 households=households, confirmed=confirmed, **common)


class LiaisonPlanner:
    """Turns incident notices into outbox rows for village liaisons."""

    def __init__(self, topology: Topology, renderer: Renderer, tz: tzinfo,
                 roles: Sequence[str] = ("village_liaison", "grid_manager",
                                         "transformer_manager"),
                 links: LinkMaker | None = None, sms: Collection[str] = ("sms",),
                 clock_flags: ClockFlags | None = None) -> None:
        self.topology = topology
        #: The AMI sources flagged as read in the wrong zone (:func:`stated_start`).
        self.clock_flags = clock_flags
        #: A personal link per liaison row of :data:`LINKED_PURPOSES` (``field.base_url``).
        self.links = links
        #: The channels that send SMS templates (:func:`sms_channels`).
        self.sms = frozenset(sms)
        self.renderer = renderer
        self.tz = tz
        self.roles = tuple(roles)
        self.feeder_names = topology.feeder_names

    def rows(self, incident: Incident, notices: Sequence[Notice], now: datetime,
             previous: Incident | None = None) -> list[OutboxMessage]:
        out: list[OutboxMessage] = []
        for notice in notices:
            if notice.purpose in COMMAND_ONLY_PURPOSES:
                continue  # a withdrawn inference is the command centre's business only
            for village_id in notice.villages:
                out.extend(marked(
                    self._village_rows(incident, notice, village_id, now, previous),
                    etr_marks(previous, incident, notice.purpose, village_id, self.topology)))
        return out

    def _village_rows(self, incident: Incident, notice: Notice, village_id: str, now: datetime,
                      previous: Incident | None) -> list[OutboxMessage]:
        topo = self.topology
        village = topo.villages.get(village_id)
        if village is None:
            return []
        estimate, areas, in_village = self._village_areas(incident, notice, village_id, previous)
        # What is said is the village's own: its records' start, time and devices.
        records = village_records(incident, village_id, topo)
        lang = self.renderer.language
        context = {
            "incident_id": incident.id,
            "revision": incident.revision,
            # The kind a record classified: an unclassified type is announced as 停电 alone.
            "kind": (kind := announced_kind(incident)),
            "kind_label": KIND_LABELS[lang].get(kind, kind),
            "village": village,
            **self._area_context(incident, estimate, areas, in_village),
            # A device is named to liaisons only when a source named it and it feeds the
            # village (an inferred fault point is the command centre's working hypothesis,
            # not a fact to announce), and the same in every notice of the outage.
            "device_label": self.device_label(told_devices(incident, village_id, topo)),
            **self._time_context(incident, village_id, in_village, now),
            **cause_context(incident, records, in_village),
            **_crew_status_context(incident),
            **_told_before_context(incident, notice.purpose, village_id, in_village, previous,
                                   topo),
        }
        context["outage_label"] = self.outage_label(context)
        if notice.purpose == "update":
            context.update(self.update_context(incident, village_id, previous))
        if notice.purpose == "restored":
            context.update(self.unconfirmed_context(incident, in_village))
        body = self.renderer.render(f"liaison_{notice.purpose}", **context)
        params = self.notice_params(incident, notice.purpose, context, now)
        return self.liaison_rows(incident, village_id, notice.purpose, body, params=params)

    def _village_areas(self, incident: Incident, notice: Notice, village_id: str,
                       previous: Incident | None) -> tuple[Estimate, tuple[str, ...], list[str]]:
        """The estimate a village's notice describes, the areas it counts, and those of them
        in the village."""
        estimate = incident.estimate
        if village_id not in estimate.villages and previous is not None:
            estimate = previous.estimate  # a village no longer affected: describe what it had
        # Outage, update and reminder notices count what is (or is to be) off; restored and
        # cancelled ones what was off.
        areas = incident.off if notice.purpose in ("outage", "update", "reminder") \
            and estimate is incident.estimate else estimate.transformers
        in_village = [t for t in areas if self.topology.nodes[t].village == village_id]
        return estimate, areas, in_village

    def _area_context(self, incident: Incident, estimate: Estimate, areas: Sequence[str],
                      in_village: list[str]) -> dict[str, Any]:
        """What a village's notice says is off: the line, the village's areas
        (reported or only possibly off) and the households."""
        topo = self.topology
        confirmed = [t for t in in_village if incident.mark(t) == "reported"]
        possible = [t for t in in_village if incident.mark(t) != "reported"]
        return {
            "feeder_label": self._feeder_label(incident.feeder),
            # "10kV…线停电" says the whole line is off: qualified when what is off (for outage
            # and update notices, what is still off) is part of it, or only inferred whole.
            "line_label": self.line_label(incident.feeder, areas, in_village,
                                          sure_off(self.topology, incident, estimate.devices)),
            "area_label": self._area_label(in_village, incident.area_text),
            "confirmed_label": self._area_label(confirmed, "") if confirmed else "",
            "possible_label": self._area_label(possible, "") if possible else "",
            "customers": estimate.customers,
            "village_customers": topo.customers_of(in_village),
            "confirmed_customers": topo.customers_of(confirmed),
        }

    def _time_context(self, incident: Incident, village_id: str, in_village: Sequence[str],
                      now: datetime) -> dict[str, Any]:
        """The times a village's notice states: its own start and expected restoration, the
        end, and when its last area came back. A start that may be hours wrong is stated as
        to be confirmed (``start_local`` ``None``, ``start_unverified``: :func:`stated_start`;
        the meters that gave it report the area dark, so the outage has begun), and so is a
        time it came back (``restored_local`` ``None``, ``restored_unverified``:
        :func:`stated_restored`)."""
        start = self.start_stated(incident, village_id)
        # When the village's last area came back (a partial restoration is not the end).
        back = stated_restored(incident, in_village, self.clock_flagged(), now)
        return {
            "start_local": self.local_time(start), "start_unverified": start is None,
            # "prepare in advance" only for work that has not begun yet
            "not_started": start is not None and start > now,
            **self.etr_context(village_etr(incident, village_id, self.topology), now),
            "end_local": self.local_time(incident.end),
            "restored_local": self.local_time(back), "restored_unverified": back is None,
            "now_local": self.local_time(now),
        }

    def clock_flagged(self) -> bool:
        """Whether an AMI source is flagged now as read in the wrong zone (:attr:`clock_flags`):
        what every text stating an outage's times asks (:func:`stated_start`,
        :func:`checked_start`, :func:`stated_restored`), the crews' and the command centre's
        included."""
        return self.clock_flags is not None and bool(self.clock_flags())

    def start_stated(self, incident: Incident, village_id: str) -> datetime | None:
        """The start a village's notices state (:func:`stated_start`; ``None``: 待核实)."""
        return stated_start(incident, village_id, self.topology, self.clock_flagged())

    def etr_context(self, etr: datetime | None, now: datetime) -> dict[str, str | None]:
        """The village's expected restoration as a notice may state it: ``etr_local`` only
        while it is ahead (a past time is no promise; "预计恢复 <a time gone by>" would be
        false), else ``overrun_local``, the time that passed (超出计划时间仍停电)."""
        late = etr is not None and etr <= now
        return {"etr_local": None if late else self.local_time(etr),
                "overrun_local": self.local_time(etr) if late else None}

    def update_context(self, incident: Incident, village_id: str,
                       previous: Incident | None) -> dict[str, Any]:
        """What an update tells the village changed since ``previous``: its areas off
        (``areas_changed``; ``removed_label`` names those the command centre took out,
        ``called_off_label`` those the work's records no longer name) and its expected
        restoration time (``etr_changed``, also when nothing else did; ``etr_before``: the
        village was told a time, which a time now changes — "调整为" — while after 待定, or
        not knowing what it was told, a time is given, not adjusted)."""
        if previous is None:
            return {"areas_changed": False, "removed_label": "", "called_off_label": "",
                    "etr_changed": True, "etr_before": False}
        added, removed = village_scope_change(previous, incident, village_id, self.topology)
        told = previous.told_etr.get(village_id, previous.etr)
        etr = village_etr(incident, village_id, self.topology)
        by_centre = [t for t in removed if t in incident.excluded]
        called = [t for t in removed if t not in incident.excluded]
        return {"areas_changed": bool(added or removed),
                "removed_label": self._area_label(by_centre, "") if by_centre else "",
                "called_off_label": self._area_label(called, "") if called else "",
                "etr_changed": told != etr or not (added or removed), "etr_before": told is not None}

    def unconfirmed_context(self, incident: Incident, in_village: Sequence[str]
                            ) -> dict[str, Any]:
        """What a "restored" notice says of the village's areas counted back with no evidence
        that they are (:attr:`Incident.unconfirmed`): ``unconfirmed_label`` and its households,
        asked about rather than said back; ``back_label``, the village's areas that are; and
        ``dropped``, one is an area a record stopped naming (:func:`dropped_areas`)."""
        unsure = [t for t in in_village if t in incident.unconfirmed]
        back = [t for t in in_village if t not in incident.unconfirmed]
        return {"unconfirmed_label": self._area_label(unsure, "") if unsure else "",
                "dropped": bool(set(unsure) & set(dropped_areas(incident))),
                "unconfirmed_names": [self.topology.nodes[t].name or t for t in unsure],
                "unconfirmed_customers": self.topology.customers_of(unsure),
                "back_label": self._area_label(back, "") if unsure and back else "",
                "back_customers": self.topology.customers_of(back)}

    def notice_params(self, incident: Incident, purpose: str, context: dict[str, Any],
                      now: datetime) -> dict[str, Any]:
        """``payload["params"]`` of a liaison notice: the digest's facts (village, feeder,
        households, kind; see :mod:`outage_sentinel.digest`), the SMS template purpose
        (``sms_template``) and its fixed parameter set (``sms``, :mod:`outage_sentinel.sms_params`).
        A cancellation says whether the work had begun (``begun``): a digest may then say
        届时正常供电 only of work called off ahead, as the notice itself does.
        """
        village = context["village"].name
        households = int(context["village_customers"])
        # Of those households, the ones in areas a source reported (the rest inferred).
        confirmed = int(context.get("confirmed_customers", households))
        sms_purpose = sms.sms_purpose(purpose, incident.kind, begun=not context["not_started"])
        if sms_purpose == "restored" and context.get("unconfirmed_label"):
            sms_purpose = "unconfirmed"
        values = sms_values(incident, sms_purpose, context, now, households, confirmed,
                            self.renderer.language)
        if sms_purpose == "unconfirmed":  # the digest counts the households asked about
            households = confirmed = int(context["unconfirmed_customers"])
        return {"village": village, "feeder": context["feeder_label"],
                "start": context["start_local"] or "", "etr": context["etr_local"] or "",
                **({"start_unverified": True} if context["start_unverified"] else {}),
                "households": households, "incident": incident.id, "kind": context["kind"],
                "confirmed": confirmed,
                "sms_template": sms_purpose, "sms": values,
                **({"begun": not context["not_started"]} if purpose == "cancelled" else {}),
                # a digest lists the village as not confirmed back, not as back
                **({"status": "unconfirmed"} if sms_purpose == "unconfirmed" else {})}

    def progress_rows(self, inc: Incident, step: str, cause: str) -> list[OutboxMessage]:
        """Progress for the villages told of the outage and still off: the crew is on site,
        the cause is found (group and robot channels; SMS templates have no such notice).
        Once per step and incident revision."""
        lang = self.renderer.language
        words = PROGRESS_WORDS.get(lang, PROGRESS_WORDS["en"])
        told = set(inc.notified_villages)
        rows: list[OutboxMessage] = []
        for v in villages_off(inc, self.topology):
            if v not in told:
                continue
            village = self.topology.villages.get(v)
            body = words["head"].format(
                village=village.name if village else v, incident=inc.id,
                feeder=self.topology.feeder_names.get(inc.feeder, inc.feeder),
                progress=words[step].format(cause=cause or words["unknown"]))
            links: list[dict[str, str]] = []
            if self.links is not None:
                page = self.links(inc.id, PUBLIC, PUBLIC)
                body += "\n" + words["page"].format(url=page.url)
                links.append(page.record)
            rows += [r.but(payload={**r.payload, "field_links": links}) if links else r
                     for r in self.liaison_rows(inc, v, f"progress_{step}", body)
                     if r.channel not in self.sms]
        return rows

    def village_recipients(self, village_id: str) -> list[str]:
        """The outbox recipients of one village's liaisons (as :meth:`liaison_rows` names
        them): to take back what was queued for the village and not sent."""
        return sorted({village_recipient(village_id, li.channel, li.target or li.phone)
                       for li in self.topology.liaisons_by_village.get(village_id, [])
                       if li.role in self.roles})

    def liaison_rows(self, incident: Incident, village_id: str, purpose: str, body: str, *,
                     revision: int | None = None, params: dict[str, Any] | None = None
                     ) -> list[OutboxMessage]:
        """Outbox rows carrying ``body`` to the liaisons of one village.

        Liaisons sharing a channel and target (one group chat) get one message mentioning all
        of them.
        """
        groups: dict[tuple[str, str], list[Any]] = {}
        for liaison in self.topology.liaisons_by_village.get(village_id, []):
            if liaison.role not in self.roles:
                continue
            target = liaison.target or liaison.phone
            groups.setdefault((liaison.channel, target), []).append(liaison)
        rows = []
        for (channel, target), members in sorted(groups.items()):
            phones = tuple(dict.fromkeys(m.phone for m in members if m.phone))
            recipient = village_recipient(village_id, channel, target)
            text, row_params, links = body, params, []
            if self.links is not None and purpose in LINKED_PURPOSES:
                link = self.links(incident.id, village_id, recipient)
                carried = self.with_link(body, params, channel, link)
                if carried is not None:
                    (text, row_params), links = carried, [link.record]
            rows.append(OutboxMessage(
                incident_id=incident.id,
                revision=incident.revision if revision is None else revision,
                recipient=recipient,
                purpose=purpose,
                channel=channel,
                target=target,
                audience="liaison",
                subject=body.splitlines()[0] if body else "",
                body=text,
                payload={
                    "mentions": list(phones),
                    "village": village_id,
                    "roles": sorted({m.role for m in members}),
                    # who it is for: a retry after a number changed finds the same person
                    "names": sorted({m.name for m in members if m.name}),
                    "params": row_params or {"village": village_id,
                                             "incident": incident.id},
                    **({"field_links": links} if links else {}),
                },
            ))
        return rows

    def with_link(self, body: str, params: dict[str, Any] | None, channel: str,
                  link: IssuedLink) -> tuple[str, dict[str, Any] | None] | None:
        """The text and parameters of one liaison's notice with its link: a line under the
        text, or by SMS the ``link`` variable of the templates that have one (None: an SMS
        template without one, planned work's)."""
        if channel not in self.sms:
            line = LINK_LINE.get(self.renderer.language, LINK_LINE["en"])
            return body + "\n" + line.format(url=link.url), params
        if params is None or params.get("sms_template") not in SMS_LINKED_TEMPLATES:
            return None
        return body, {**params, "sms": sms.with_link(params["sms"], link.token)}

    def care_rows(self, incident: Incident, village_id: str, care: dict[str, Any],
                  individual: Mapping[str, str], crew_label: str) -> list[OutboxMessage]:
        """Outbox rows of a village's special-care list (``care`` = the context of
        :func:`outage_sentinel.crew.care_list_context`, with households).

        ``individual`` maps the names of channels that reach one person to their type
        (see :data:`INDIVIDUAL_CHANNEL_TYPES`). Those rows carry the list; rows to any other
        channel (a group) carry only the count and who holds the list
        (:func:`care_list_holders`; the crew named is kept as the payload's ``crew_named``).
        The start is the one the village's notices state (:meth:`start_stated`).
        """
        lang = self.renderer.language
        start = self.start_stated(incident, village_id)
        care = {**care, "start_local": self.local_time(start)}
        households = list(care["households"])
        more = int(care.get("households_more") or 0)
        total = len(households) + more
        # The digest's facts; no household count: the digest would read it as customers off.
        facts = {"village": care["village_name"], "kind": incident.kind, "incident": incident.id}
        values = sms.care_params(village=care["village_name"], households=households,
                                 total=total, etr=care["etr_local"],
                                 start=sms.start_value(care["start_local"], start is None, lang),
                                 incident=incident.id, language=lang,
                                 tag_counts=care.get("tag_counts"))
        # Revision 0: a village's liaisons get the list once per incident, not again with every
        # re-dispatch (in a storm crews are pulled between incidents many times).
        rows = self.liaison_rows(incident, village_id, "care",
                                 self.renderer.render("liaison_care", **care), revision=0,
                                 params={**facts, "sms_template": "care", "sms": values})
        crew_has = bool(care.get("crew_has_list"))
        in_person = care_holders(self.topology, self.roles, lang, village_id, individual)
        holders, named = care_list_holders(in_person, more == 0, crew_has, crew_label)
        group_body = self.renderer.render("liaison_care_group", **{
            **care, "count": total, "holders": holders, "crew_label": crew_label,
            "crew_has_list": crew_has})
        # Which crew a group is told holds the list: told again when another crew takes over.
        return [row if row.channel in individual else row.but(  # no names, no phones
                    body=group_body, subject=group_body.splitlines()[0],
                    payload={**row.payload, "params": dict(facts), "crew_named": named})
                for row in rows]

    def _feeder_label(self, feeder: str) -> str:
        return self.feeder_names.get(feeder, feeder)

    def line_label(self, feeder: str, areas: Sequence[str], own: Sequence[str] = (),
                   sure: Collection[str] | None = None) -> str:
        """The lines the village's ``own`` areas are on (else ``feeder``), each named bare only
        when ``areas`` hold every area of it and all are ``sure`` (reported off, or below a
        device a source named): "（部分区段）" when some are not in ``areas``, "（可能全线）"
        when all are but some only inferred."""
        topo = self.topology
        lines = list(dict.fromkeys(topo.feeder_of(t) for t in own if t in topo.pos)) or [feeder]
        words = LINE_EXTENT.get(self.renderer.language, LINE_EXTENT["en"])
        labels = []
        for line in lines:
            on_it = {t for t in areas if t in topo.pos and topo.feeder_of(t) == line}
            extent = ""
            if len(on_it) < topo.feeder_area_count(line):
                extent = words["part"]
            elif sure is not None and not on_it.issubset(sure):
                extent = words["maybe_all"]
            labels.append(self._feeder_label(line) + extent)
        return ("、" if self.renderer.language == "zh" else ", ").join(labels)

    def outage_label(self, context: Mapping[str, Any]) -> str:
        """How every notice of one outage names it to a village: the line with the device a
        source named ("10kV一号线（1号分支熔断器）"), else :meth:`line_label`'s line and extent.
        The outage, update, restored and cancelled notices and the SMS ``feeder`` all use it,
        so a liaison recognises the restored notice as the outage it was told of."""
        if context.get("device_label"):
            if self.renderer.language == "zh":
                return f"{context['feeder_label']}（{context['device_label']}）"
            return f"{context['feeder_label']} ({context['device_label']})"
        return str(context["line_label"])

    def device_label(self, devices: Sequence[str], own_note: bool = False) -> str:
        """The devices' names; with ``own_note`` a transformer says it stands for the area's
        own fault (the command centre's summary: "台区T1" alone reads like an area)."""
        zh = self.renderer.language == "zh"
        note = OWN_FAULT_NOTE["zh" if zh else "en"] if own_note else ""
        names = [(n.name or d) + (note if n.kind == "transformer" else "")
                 for d in devices if (n := self.topology.nodes.get(d)) is not None]
        return "、".join(names) if zh else ", ".join(names)

    def _area_label(self, transformers: Sequence[str], area_text: str) -> str:
        names = [self.topology.nodes[t].name or t for t in transformers]
        sep = "、" if self.renderer.language == "zh" else ", "
        if not names:
            return area_text or "-"
        if len(names) > 8:
            zh = self.renderer.language == "zh"
            more = f"等{len(names)}个台区" if zh else f" and {len(names) - 8} more"
            return sep.join(names[:8]) + more
        return sep.join(names)

    def local_time(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
