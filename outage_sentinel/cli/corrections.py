"""The command centre's corrections: ``incidents etr|scope|device|cancel|reopen|open`` (``etr``
and ``device`` also ``--clear``), ``silence add|list|expire`` and ``outbox
retry|withdraw|hold|release``. Each takes the step through the same code the daemon (and the
board) runs, logged with its actor; notices it causes are queued in the outbox for the running
daemon to deliver."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, tzinfo
from typing import Any

from outage_sentinel.cli import EXIT_PROBLEMS, EXIT_USAGE

#: The ``incidents`` actions this module handles.
INCIDENT_ACTIONS = ("etr", "scope", "device", "cancel", "reopen", "open")


def _actor(p: Any) -> None:
    p.add_argument("--actor", help="who (default: your user name)")


def add_incident_verbs(isub: Any) -> None:
    etr = isub.add_parser("etr", help="set the expected restoration time (villages told), "
                                      "or take it back (--clear)")
    etr.add_argument("incident_id")
    when = etr.add_mutually_exclusive_group(required=True)
    when.add_argument("time", nargs="?", help="local time, e.g. '2026-11-23 18:00'")
    when.add_argument("--clear", action="store_true",
                      help="take back the time the command centre set: the sources' again")
    etr.add_argument("--note", default="")
    _actor(etr)
    scope = isub.add_parser("scope", help="add or remove transformer areas or villages")
    scope.add_argument("incident_id")
    scope.add_argument("--add", action="append", help="areas/villages now known to be off")
    scope.add_argument("--remove", action="append",
                       help="areas/villages wrongly included (they are told it was a mistake)")
    scope.add_argument("--note", default="")
    _actor(scope)
    dev = isub.add_parser("device", help="set the fault device(s) the command centre knows, "
                                         "or take them back (--clear); the crew sent gets "
                                         "new orders")
    dev.add_argument("incident_id")
    dev.add_argument("devices", nargs="*", help="device ids or names")
    dev.add_argument("--clear", action="store_true",
                     help="take back the device(s) set: the localiser estimates it again")
    dev.add_argument("--note", default="")
    _actor(dev)
    _add_undo_verbs(isub)


def _add_undo_verbs(isub: Any) -> None:
    """``incidents cancel|reopen|open``: what the command centre says the daemon has wrong
    about whether there is an outage at all."""
    cancel = isub.add_parser("cancel", help="cancel an incident (everyone told hears so): "
                                            "a false alarm, a duplicate work order")
    cancel.add_argument("incident_id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--false-alarm", action="store_true",
                        help="no supply was lost: the reports count nothing of it (without "
                             "it, cancelled for another reason: the areas a source saw off "
                             "still count)")
    _actor(cancel)
    reo = isub.add_parser("reopen", help="areas recorded back that are still off (their "
                                         "villages hear they are off)")
    reo.add_argument("incident_id")
    reo.add_argument("--transformers", help="areas/villages still off (default: every area "
                                            "recorded back)")
    reo.add_argument("--again", action="store_true",
                     help="supply was lost again after it came back: another spell off in "
                          "the reports (without it, the restoration was a mistake: the "
                          "outage carried on)")
    reo.add_argument("--note", default="")
    _actor(reo)
    op = isub.add_parser("open", help="open an incident from a phone call")
    op.add_argument("--feeder", help="feeder id or name")
    op.add_argument("--transformers", help="comma-separated areas or villages")
    op.add_argument("--caller", default="", help="who called, e.g. '王村长 13800001111'")
    op.add_argument("--note", default="")
    _actor(op)


#: What ``outbox retry|release --force`` sends anyway: both refusals it goes past.
FORCE_HELP = ("{verb} also messages the incident has moved past (a later notice replacing it, "
              "the outage over, the village off again) and those a silence in force would mute "
              "again at once (sent on past that silence)")


def add_other_verbs(sub: Any, osub: Any) -> None:
    retry = osub.add_parser("retry", help="send dead (or silenced) messages again")
    retry.add_argument("ids", nargs="*", type=int, help="outbox ids (see outbox list)")
    retry.add_argument("--dead", action="store_true", help="every dead letter")
    retry.add_argument("--force", action="store_true", help=FORCE_HELP.format(verb="resend"))
    _actor(retry)
    wd = osub.add_parser("withdraw", help="never send these messages (pending, held, dead or "
                                          "silenced); kept with who and why")
    wd.add_argument("ids", nargs="+", type=int, help="outbox ids (see outbox list)")
    wd.add_argument("--reason", required=True, help="why (kept with the message)")
    _actor(wd)
    hold = osub.add_parser("hold", help="keep pending messages back until released")
    hold.add_argument("ids", nargs="+", type=int)
    hold.add_argument("--reason", default="")
    _actor(hold)
    rel = osub.add_parser("release", help="send held messages (to the current address)")
    rel.add_argument("ids", nargs="+", type=int)
    rel.add_argument("--force", action="store_true", help=FORCE_HELP.format(verb="release"))
    _actor(rel)
    sil = sub.add_parser("silence", help="mute liaison notices during known work")
    ssub = sil.add_subparsers(dest="silence_verb", metavar="ACTION")
    add = ssub.add_parser("add", help="one of --feeder/--village/--incident, until a time")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--feeder")
    what.add_argument("--village")
    what.add_argument("--incident")
    add.add_argument("--until", required=True, help="local time, e.g. '2026-11-23 18:00'")
    add.add_argument("--reason", required=True)
    add.add_argument("--force", action="store_true",
                     help="also mute faults with special-care households")
    _actor(add)
    lst = ssub.add_parser("list", help="silences, newest first")
    lst.add_argument("--all", action="store_true", help="include ended ones")
    exp = ssub.add_parser("expire", help="end a silence now")
    exp.add_argument("silence_id", type=int)
    _actor(exp)


def usage_problem(args: argparse.Namespace) -> str | None:
    """What an ``incidents`` step's command line lacks or has too much of, that argparse
    cannot say (``device``: the devices, or ``--clear``, not both; ``scope``: ``--add`` or
    ``--remove``, not both — two steps, the second refused after the first was applied)."""
    if args.incidents_verb == "device" and bool(args.devices) == bool(args.clear):
        return ("incidents device: --clear takes no device" if args.clear
                else "incidents device: give the device(s), or --clear")
    if args.incidents_verb == "scope" and args.add and args.remove:
        return ("incidents scope: --add or --remove, one at a time (add the areas, then "
                "remove the others in a second command)")
    return None


def run_incident_step(core: Any, args: argparse.Namespace, actor: str) -> Any:
    """One of :data:`INCIDENT_ACTIONS` (raises ``LifecycleError`` when it cannot be taken)."""
    from outage_sentinel.command_steps import CommandSteps, refs_of
    from outage_sentinel.lifecycle import LifecycleError

    steps = CommandSteps(core.lifecycle, core.processor, _utcnow)
    action = args.incidents_verb
    if action == "etr":
        if args.clear:
            return steps.clear_etr(args.incident_id, actor, args.note)
        return steps.etr(args.incident_id, args.time, actor, args.note)
    if action == "cancel":
        return steps.cancel(args.incident_id, args.reason, actor, args.false_alarm)
    if action == "device":
        if args.clear:
            return steps.clear_device(args.incident_id, actor, args.note)
        return steps.device(args.incident_id, refs_of(args.devices), actor, args.note)
    if action == "reopen":
        return steps.reopen(args.incident_id, args.transformers, actor, args.note,
                            args.again)
    if action == "open":
        return steps.open(actor, feeder=args.feeder, transformers=args.transformers,
                          caller=args.caller, note=args.note)
    if not args.add and not args.remove:
        raise LifecycleError("give --add and/or --remove")
    if args.add:  # one or the other (usage_problem)
        return steps.add(args.incident_id, refs_of(args.add), actor, args.note)
    return steps.remove(args.incident_id, refs_of(args.remove), actor, args.note)


def outbox_retry(store: Any, topology: Any, config: Any, args: argparse.Namespace) -> int:
    """``outbox retry ID… | --dead``: messages the incident has moved past are left as they
    are, with the reason, unless ``--force`` (:mod:`outage_sentinel.resend`); the rest go to
    their recipient's address now, or are refused when the directory no longer has it."""
    if bool(args.ids) == bool(args.dead):
        print("error: give outbox ids or --dead", file=sys.stderr)
        return EXIT_USAGE
    return _outbox_step(store, topology, config, args, "retry", args.ids or None)


def outbox_control(store: Any, topology: Any, config: Any, args: argparse.Namespace) -> int:
    """``outbox withdraw|hold|release ID…`` (:mod:`outage_sentinel.outbox_control`)."""
    return _outbox_step(store, topology, config, args, args.outbox_verb, args.ids)


def _outbox_step(store: Any, topology: Any, config: Any, args: argparse.Namespace,
                 action: str, ids: list[int] | None) -> int:
    """Take ``action`` on the messages it may take, say why not for the rest (exit 1), and
    keep it in the audit trail with what was asked."""
    from outage_sentinel.lifecycle import parse_actor
    from outage_sentinel.logs import mask_phones
    from outage_sentinel.outbox_control import OutboxControl, OutboxError, command_of

    actor, now = parse_actor(args.actor), _utcnow()
    # Refusals name times (a silence's end) in local time, like the board's.
    control = OutboxControl(store, lambda: topology, command_of(config), _tz(config))
    reason = getattr(args, "reason", "") or ""
    try:
        done, left = control.take_some(action, ids, actor, now, reason,
                                       force=getattr(args, "force", False))
    except OutboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    said, problems = mask_phones(done.line()), mask_phones(left)
    print(said)
    if problems:
        print(f"error: {problems}", file=sys.stderr)
    asked = {"ids": ids or "every dead letter", "reason": mask_phones(reason),
             "force": getattr(args, "force", False)}
    audit(store, now, actor, action, ok=not problems,
          outcome=f"{said}{'; ' + problems if problems else ''}", asked=asked)
    return EXIT_PROBLEMS if problems else 0


def audit(store: Any, now: datetime, actor: str, action: str, *, ok: bool, outcome: str,
          asked: dict[str, Any], target: str = "") -> None:
    """Keep one command-line step in the audit trail the board shows (kind ``cli``), taken or
    refused, with what was asked (phone numbers masked)."""
    from outage_sentinel.logs import mask_phones, redact

    said = mask_phones(redact(outcome))
    if asked:
        said += f" · request {json.dumps(asked, ensure_ascii=False, sort_keys=True)}"
    store.audit(now, actor, "cli", ok=ok, action=action, target=target, detail=said)


def asked_of(action: str, args: argparse.Namespace, **given: Any) -> dict[str, Any]:
    """What a command line asked for, as an audit entry keeps it: the fields the board keeps
    for the same action (:func:`~outage_sentinel.board.actions.request_fields`)."""
    from outage_sentinel.board.actions import request_fields

    return request_fields(action, {**vars(args), **given})


def silence(store: Any, topology: Any, config: Any, args: argparse.Namespace) -> int:
    from outage_sentinel.events import parse_time
    from outage_sentinel.lifecycle import parse_actor
    from outage_sentinel.logs import mask_phones, redact
    from outage_sentinel.silencing import SilenceError, Silencing

    tz = _tz(config)
    silencing, now = Silencing(store, lambda: topology, tz), _utcnow()
    verb, asked = args.silence_verb, {}
    try:
        if verb == "add":
            matcher = "feeder" if args.feeder else "village" if args.village else "incident"
            value = args.feeder or args.village or args.incident
            asked = asked_of("silence", args, matcher=matcher, value=value)
            until = parse_time(args.until, "--until", tz)
            s = silencing.add(matcher, value, until, args.reason, parse_actor(args.actor), now,
                              force=args.force)
            _said(store, now, args, asked, f"silence {s.id}: {s.matcher} {s.value} until "
                  f"{s.ends_at.astimezone(tz):%Y-%m-%d %H:%M}" + ("（含重点关怀户）" if s.force
                                                                 else ""))
        elif verb == "expire":
            asked = {"expire": args.silence_id}
            silencing.expire(args.silence_id, now)
            _said(store, now, args, asked, f"silence {args.silence_id} ended")
        else:
            for s in store.silences(holding_at=None if args.all else now):
                state = "在效" if s.holds(now) else "已结束"
                print(f"{s.id:4} {state} {s.matcher}={s.value} "
                      f"{s.starts_at.astimezone(tz):%m-%d %H:%M}–"
                      f"{s.ends_at.astimezone(tz):%m-%d %H:%M} {mask_phones(s.actor)}："
                      f"{redact(s.reason)}"
                      + ("（强制）" if s.force else ""))
    except (SilenceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if verb in ("add", "expire"):
            audit(store, now, parse_actor(args.actor), "silence", ok=False, outcome=str(exc),
                  asked=asked)
        return EXIT_PROBLEMS
    return 0


def _said(store: Any, now: datetime, args: argparse.Namespace, asked: dict[str, Any],
          line: str) -> None:
    """Print a silence step's outcome and keep it in the audit trail."""
    from outage_sentinel.lifecycle import parse_actor

    print(line)
    audit(store, now, parse_actor(args.actor), "silence", ok=True, outcome=line, asked=asked)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _tz(config: Any) -> tzinfo:
    """The config's time zone: the one the CLI names times in, as the board does."""
    from zoneinfo import ZoneInfo

    return ZoneInfo(config.timezone)
