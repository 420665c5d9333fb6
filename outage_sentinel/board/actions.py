"""The board's buttons: each runs the very lifecycle step the operator verb runs (one code
path for every actor), with the signed-in user as actor (``board:<name>``).

An action takes the JSON body of the request; a missing or malformed field, or one the
action does not take (:data:`ACTION_FIELDS`), is a :class:`BadValue` naming it, and a step
the incident's or the message's state refuses is the ``LifecycleError`` (``OutboxError``,
``SilenceError``) the CLI prints too. The page is answered
(:func:`http_status`) 404 for what names no incident, message, silence or action, 400 for a
value that cannot be used whatever the state, 409 for a valid request the state refuses.
Every action's audit entry carries the request's essential fields (:func:`request_fields`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from outage_sentinel.assembly import Core
from outage_sentinel.command_steps import CommandSteps, refs_of
from outage_sentinel.corrections import etr_passed
from outage_sentinel.events import EventError, parse_time
from outage_sentinel.lifecycle import (
    LifecycleError,
    StepInputError,
    UnknownIncident,
    step_outcome,
)
from outage_sentinel.logs import mask_phones
from outage_sentinel.outbox_control import (
    MissingReason,
    OutboxControl,
    OutboxError,
    UnknownMessages,
)
from outage_sentinel.outgoing import MAX_ID
from outage_sentinel.silencing import NoSuchSilence, SilenceError, SilenceInputError, Silencing
from outage_sentinel.store import Store
from outage_sentinel.store.events import RequeueRefused
from outage_sentinel.triage import STORM_KEY, storm_declaration


class ActionError(ValueError):
    """A request body the action cannot use."""


class BadValue(ActionError):
    """A value of the request body missing, of the wrong kind or out of range (a list where
    an id goes, a fraction, a boolean for a number): the request's fault (400), named by its
    key."""


class UnknownAction(ActionError):
    """A button the board does not have (404)."""


class RetryRefused(ActionError):
    """A quarantined payload not put back (409), each named with why: not a processing
    failure, put back already, its event gone, waiting or folded since."""


@dataclass
class Actions:
    """Everything staff can do from the board."""

    #: The incident core on the bundle in use (:class:`~outage_sentinel.board.bundle.
    #: BundleCore`: built again after a topology reload).
    cores: Callable[[], Core]
    store: Store
    silencing: Silencing
    clock: Callable[[], datetime]
    tz: tzinfo
    outbox: OutboxControl

    @property
    def core(self) -> Core:
        """The incident core on the topology bundle in use now."""
        return self.cores()

    @property
    def steps(self) -> CommandSteps:
        core = self.core
        return CommandSteps(core.lifecycle, core.processor, self.clock)

    def incident_step(self, incident_id: str, action: str, body: Mapping[str, Any],
                      actor: str) -> str:
        """Run ``action`` on the incident; returns what the incident became (one line)."""
        step = INCIDENT_STEPS.get(action)
        if step is None:
            raise UnknownAction(f"unknown action {action!r} (actions: "
                                f"{', '.join(INCIDENT_STEPS)})")
        inc = step(self, incident_id, body, actor)
        return step_outcome(inc)

    def open_incident(self, body: Mapping[str, Any], actor: str) -> str:
        inc = self.steps.open(actor, feeder=text(body, "feeder", required=False) or None,
                              transformers=refs(body, "transformers", required=False) or None,
                              caller=text(body, "caller", required=False),
                              note=text(body, "note", required=False))
        return inc.id

    def storm(self, body: Mapping[str, Any], actor: str) -> str:
        if body.get("declare") is None:  # never read as "end it": that changes the county's mode
            raise BadValue("declare: required (true declares a storm, false ends the one "
                           "declared)")
        declare = flag(body, "declare")
        hours = body.get("hours")
        if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int | float)):
            raise BadValue("hours: a number of hours")
        now = self.clock()
        try:
            value = storm_declaration(declare, actor, now, hours=hours,
                                      note=text(body, "note", required=False))
        except ValueError as exc:  # the hours out of range, named
            raise BadValue(str(exc)) from None
        self.store.kv_set(STORM_KEY, value, now)
        return "storm declared" if declare else "storm ended"

    def retry(self, body: Mapping[str, Any], actor: str) -> str:
        return self._outbox("retry", body, actor)

    def withdraw(self, body: Mapping[str, Any], actor: str) -> str:
        return self._outbox("withdraw", body, actor)

    def hold(self, body: Mapping[str, Any], actor: str) -> str:
        return self._outbox("hold", body, actor)

    def release(self, body: Mapping[str, Any], actor: str) -> str:
        return self._outbox("release", body, actor)

    def _outbox(self, action: str, body: Mapping[str, Any], actor: str) -> str:
        """One of :data:`~outage_sentinel.outbox_control.ACTIONS` on the messages ``ids``,
        all or none (:meth:`OutboxControl.take`); with ``partial`` (retrying every dead
        letter at once, some always out of date after a storm) on those that may go, the
        answer naming the rest and why."""
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(is_id(i) for i in ids):
            raise BadValue(f"ids: a list of outbox message ids (whole numbers from 1 to "
                           f"{MAX_ID})")
        reason = text(body, "reason", required=action == "withdraw")
        ids, force = list(dict.fromkeys(ids)), flag(body, "force")
        if not flag(body, "partial"):
            return self.outbox.take(action, ids, actor, self.clock(), reason,
                                    force=force).line()
        done, left = self.outbox.take_some(action, ids, actor, self.clock(), reason, force)
        return done.line() + (f"; left as they are: {left}" if left else "")

    def quarantine_retry(self, body: Mapping[str, Any], actor: str) -> str:
        """Put the stored events of the processing failures ``ids`` back for the daemon to
        fold at its next run (``quarantine retry``: :meth:`~outage_sentinel.store.events.
        EventStore.requeue_quarantined`, the same function), each on its own as the CLI
        does; any refused (:class:`RetryRefused`, 409) named with why, and what was put
        back."""
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(is_id(i) for i in ids):
            raise BadValue(f"ids: a list of quarantine ids (whole numbers from 1 to {MAX_ID})")
        now, done, refused = self.clock(), [], []
        for qid in dict.fromkeys(ids):
            try:
                s = self.store.requeue_quarantined(qid, now, actor)
            except RequeueRefused as exc:
                refused.append(mask_phones(str(exc)))
                continue
            done.append(f"#{qid}: re-queued {s.event.source}/{s.event.event_id}")
        said = "; ".join(done)
        if refused:
            raise RetryRefused("; ".join(refused) + (f" (done: {said})" if said else ""))
        return said + "; the daemon folds it at its next run (quarantined again if it fails " \
                      "again)"

    def silence(self, body: Mapping[str, Any], actor: str) -> str:
        now = self.clock()
        if body.get("expire") is not None:
            sid = body["expire"]
            if not is_id(sid):
                raise BadValue(f"expire: the id of a silence (a whole number from 1 to {MAX_ID})")
            self.silencing.expire(sid, now)
            return f"silence {sid} ended"
        matcher, value, reason = text(body, "matcher"), text(body, "value"), text(body, "reason")
        until_text, force = text(body, "until"), flag(body, "force")
        until = parse_time(until_text, "until", self.tz)
        s = self.silencing.add(matcher, value, until, reason, actor, now, force=force)
        return f"silence {s.id}"


def is_id(value: Any) -> bool:
    """Whether ``value`` is a stored row's id: a whole number (no boolean, no fraction) a
    64-bit column holds."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def flag(body: Mapping[str, Any], key: str) -> bool:
    """A yes or no: ``true``, ``false`` or absent (no)."""
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadValue(f"{key}: true or false")
    return bool(value)


def text(body: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadValue(f"{key}: required")
        return ""
    if not isinstance(value, str):
        raise BadValue(f"{key}: text expected")
    return value.strip()


def refs(body: Mapping[str, Any], key: str, required: bool = True) -> str:
    """Transformer areas as a list or comma-separated text, as the CLI takes them."""
    value = body.get(key)
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise BadValue(f"{key}: a list of transformer area ids")
        return refs_of(value)
    return text(body, key, required)


def _restore(a: Actions, iid: str, body: Mapping[str, Any], actor: str) -> Any:
    areas = refs(body, "transformers", required=False)
    if "transformers" in body and not areas:
        # A form with every box unticked is no "restore everything": that told every village
        # its power was back.
        raise BadValue("transformers: tick the areas whose power is back (none ticked)")
    return a.core.processor.operator_restore(
        iid, actor, areas or None,
        text(body, "at", required=False) or None, text(body, "note", required=False),
        now=a.clock())


def _scope(a: Actions, iid: str, body: Mapping[str, Any], actor: str) -> Any:
    """Areas added to the scope (``add``) or taken out of it (``remove``), one or the other:
    each is a step of its own (its transaction, its notices), so a request with both, which
    could be refused halfway with the first step applied and its villages told, is refused
    whole (400) before anything changes."""
    add, remove = refs(body, "add", required=False), refs(body, "remove", required=False)
    if not add and not remove:
        raise BadValue("add or remove: the transformer areas to correct")
    if add and remove:
        for refs_given in (add, remove):  # an unknown area named first, as alone
            a.steps.areas(refs_given)
        raise BadValue("add, remove: one at a time (add the areas, then remove the others "
                       "in a second request)")
    note = text(body, "note", required=False)
    if add:
        return a.steps.add(iid, add, actor, note)
    return a.steps.remove(iid, remove, actor, note)


def _reopen(a: Actions, iid: str, body: Mapping[str, Any], actor: str) -> Any:
    """Areas recorded back that are still off: the ones ticked (none ticked is refused);
    ``again``: supply was lost again after it came back (``incidents reopen --again``), else
    the restoration was a mistake."""
    areas = refs(body, "transformers", required=False)
    if not areas:
        raise BadValue("transformers: tick the areas still off (none ticked)")
    return a.steps.reopen(iid, areas, actor, text(body, "note", required=False),
                          again=flag(body, "again"))


def _device(a: Actions, iid: str, body: Mapping[str, Any], actor: str) -> Any:
    """The fault device(s) the command centre knows (chosen among the estimate's
    alternatives, or typed: ids or names), as ``incidents device`` sets them; with ``clear``
    (and no devices), the ones set taken back, as ``incidents device --clear``."""
    if flag(body, "clear"):
        if body.get("devices") not in (None, "", []):
            raise BadValue("devices: none with clear (clear takes back the devices set)")
        return a.steps.clear_device(iid, actor, text(body, "note", required=False))
    value = body.get("devices")
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise BadValue("devices: a list of device ids or names")
        value = refs_of(value)
    elif value is not None and not isinstance(value, str):
        raise BadValue("devices: device ids or names (a list, or comma-separated text)")
    if not (value or "").strip(" ,"):
        raise BadValue("devices: choose or type the fault device")
    return a.steps.device(iid, str(value), actor, text(body, "note", required=False))


def _etr(a: Actions, iid: str, body: Mapping[str, Any], actor: str) -> Any:
    """The expected restoration time (local), as ``incidents etr`` sets it; with ``clear``
    (and no time), the one set taken back, as ``incidents etr --clear``."""
    note = text(body, "note", required=False)
    if flag(body, "clear"):
        if body.get("time") not in (None, ""):
            raise BadValue("time: none with clear (clear takes back the time set)")
        return a.steps.clear_etr(iid, actor, note)
    when = text(body, "time")
    try:
        etr: datetime | None = parse_time(when, "time", a.tz)
    except EventError:
        etr = None  # the step refuses it, naming it
    if etr is not None and etr_passed(etr, a.clock()):
        # A bad value whatever the incident's state (as a future ``at`` is), in local time.
        raise BadValue(f"time: {etr.astimezone(a.tz):%Y-%m-%d %H:%M} has passed")
    return a.steps.etr(iid, when, actor, note)


Step = Callable[[Actions, str, Mapping[str, Any], str], Any]

#: The incident buttons, by the name the page posts (``/api/incidents/{id}/{action}``).
INCIDENT_STEPS: dict[str, Step] = {
    "ack": lambda a, i, b, u: a.core.lifecycle.ack(i, u, text(b, "note", False)),
    "dispatch": lambda a, i, b, u: a.core.lifecycle.dispatch(
        i, u, crew_id=text(b, "crew", False) or None, note=text(b, "note", False)),
    "arrive": lambda a, i, b, u: a.core.lifecycle.arrive(i, u, text(b, "note", False)),
    "restore": _restore,
    "etr": _etr,
    "scope": _scope,
    "device": _device,
    # ``false_alarm``: no supply was lost (``incidents cancel --false-alarm``).
    "cancel": lambda a, i, b, u: a.steps.cancel(i, text(b, "reason"), u,
                                                flag(b, "false_alarm")),
    "reopen": _reopen,
    "close": lambda a, i, b, u: a.core.lifecycle.close(
        i, u, text(b, "cause"), text(b, "note", False), device=text(b, "device", False) or None,
        unconfirmed_ok=flag(b, "unconfirmed_ok"), amend=flag(b, "amend"),
        device_anyway=flag(b, "device_anyway")),
}

#: Errors a step raises that are the user's to fix (shown on the page, status 400/404/409).
USER_ERRORS = (ActionError, LifecycleError, EventError, OutboxError, SilenceError)
#: What names nothing there is (404), and what cannot be used whatever the state (400).
NOT_FOUND = (UnknownAction, UnknownIncident, UnknownMessages, NoSuchSilence)
BAD_INPUT = (BadValue, StepInputError, EventError, MissingReason, SilenceInputError)


#: The CLI options the steps' refusals name (``--at … is in the future``, ``--until … has
#: passed``, ``a silence needs a reason (--reason)``), as the request fields the board takes.
FLAG_FIELDS: Mapping[str, str] = {"--at": "at", "--until": "until", "--reason": "reason",
                                  "--cause": "cause", "--feeder": "feeder",
                                  "--transformers": "transformers", "--force": "force"}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])")


def refusal(exc: Exception) -> str:
    """A refused request's message as the board says it: the CLI options it names given as
    the request's fields (``at: 2099-01-01 00:00 is in the future``); the step's own words
    otherwise, the CLI's unchanged."""
    message = str(exc)

    def field(m: re.Match[str]) -> str:
        name = FLAG_FIELDS.get(m.group(1))
        if name is None:
            return m.group(0)
        # Heading the message and followed by the value it was given: "at: <value> …".
        lead = m.start() == 0 and message[m.end():m.end() + 1] == " "
        return f"{name}:" if lead else name
    return _FLAG.sub(field, message)


def http_status(exc: Exception) -> int:
    """The answer to a refused request: 404 (unknown), 400 (malformed), 409 (the state
    refuses it)."""
    if isinstance(exc, NOT_FOUND):
        return 404
    if isinstance(exc, BAD_INPUT):
        return 400
    return 409


#: The fields of each action's request its audit entry keeps (what was asked: the ETR set,
#: the ids retried, a silence's matcher, the areas, the note; never a password).
REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "open": ("feeder", "transformers", "caller", "note"),
    "storm": ("declare", "hours", "note"),
    "retry": ("ids", "force", "partial"), "withdraw": ("ids", "reason"),
    "hold": ("ids", "reason"),
    "release": ("ids", "force"),
    "silence": ("matcher", "value", "until", "reason", "force", "expire"),
    # As the CLI's ``quarantine retry`` keeps it (its audit entry's action and request).
    "quarantine retry": ("ids",),
    "ack": ("note",), "dispatch": ("crew", "note"), "arrive": ("note",),
    "restore": ("transformers", "at", "note"), "etr": ("time", "clear", "note"),
    "scope": ("add", "remove", "note"), "device": ("devices", "clear", "note"),
    "cancel": ("reason", "false_alarm"),
    "reopen": ("transformers", "note", "again"),
    "close": ("cause", "device", "note", "amend", "unconfirmed_ok", "device_anyway"),
}


#: The keys each action's body may hold: its fields and its flags (a reason kept with any
#: outbox action; ``force`` only where it forces something). Any other is refused, named
#: (:func:`check_keys`): a close-out posted with the correction's ``devices`` for its
#: ``device`` closed with no device confirmed.
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    **REQUEST_FIELDS,
    "retry": ("ids", "reason", "force", "partial"),
    "release": ("ids", "reason", "force", "partial"),
    "withdraw": ("ids", "reason", "partial"), "hold": ("ids", "reason", "partial"),
}


def unknown_key(action: str, body: Mapping[str, Any]) -> str | None:
    """The first key of ``body`` that ``action`` does not take (None: none, or no such
    action: that is refused as unknown)."""
    fields = ACTION_FIELDS.get(action)
    if fields is None:
        return None
    return next((k for k in sorted(body) if k not in fields), None)


def check_keys(action: str, body: Mapping[str, Any]) -> None:
    """:class:`BadValue` naming a key of ``body`` that ``action`` does not take."""
    key = unknown_key(action, body)
    if key is not None:
        raise BadValue(f"{key}: unknown field (fields: {', '.join(ACTION_FIELDS[action])})")


def request_fields(action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The essential fields of an action's request as its audit entry keeps them: those it
    names (:data:`REQUEST_FIELDS`) that were given, phone numbers masked, long values cut."""
    return {k: _kept(body[k]) for k in REQUEST_FIELDS.get(action, ())
            if body.get(k) not in (None, "", [])}


def _kept(value: Any) -> Any:
    if isinstance(value, str):
        return mask_phones(value[:500])
    if isinstance(value, list):
        return [_kept(v) for v in value[:200]] + ([f"… {len(value) - 200} more"]
                                                   if len(value) > 200 else [])
    return value if isinstance(value, int | float | bool) else mask_phones(str(value)[:500])
