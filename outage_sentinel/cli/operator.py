"""Operator verbs that read and act on the daemon's database while it runs.

``incidents list|show|ack|dispatch|arrive|restore|close`` (and the corrections of
:mod:`outage_sentinel.cli.corrections`), ``outbox list|retry``, ``silence add|list|expire``,
``calls list``, ``quarantine list|retry``, ``storm declare|end|status``.
They open the same database as the daemon (SQLite in WAL mode and write transactions taken up
front, PostgreSQL row locks), so they are safe while it runs. Steps that notify people queue
their messages in the outbox; the running daemon delivers them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.cli import (
    EXIT_CONFIG,
    EXIT_PROBLEMS,
    EXIT_TOPOLOGY,
    EXIT_USAGE,
    config_from_args,
    corrections,
    topology_from_config,
)
from outage_sentinel.logs import mask_phones
from outage_sentinel.outgoing import OUTBOX_STATUSES


def add_verbs(sub: Any) -> None:
    _add_incident_verbs(sub)
    _add_outbox_verbs(sub)
    _add_storm_verbs(sub)
    _add_intake_verbs(sub)


def _add_incident_verbs(sub: Any) -> None:
    """``incidents``: the views, the lifecycle steps and the corrections."""
    inc = sub.add_parser("incidents", help="incidents: list, show, their steps and the "
                         "command centre's corrections")
    isub = inc.add_subparsers(dest="incidents_verb", metavar="ACTION")
    lst = isub.add_parser("list", help="incidents, newest first")
    lst.add_argument("--all", action="store_true", help="include restored/closed incidents")
    lst.add_argument("--json", action="store_true")
    show = isub.add_parser("show", help="one incident: what is off, who was told, what was done")
    show.add_argument("incident_id")
    show.add_argument("--json", action="store_true", help="the stored state, for machines")
    _add_lifecycle_verbs(isub)
    corrections.add_incident_verbs(isub)


def _add_lifecycle_verbs(isub: Any) -> None:
    """``incidents ack|arrive|dispatch|restore|close``."""
    for name, text in (("ack", "confirm an incident"), ("arrive", "the crew is on site")):
        p = isub.add_parser(name, help=text)
        p.add_argument("incident_id")
        p.add_argument("--note", default="")
        p.add_argument("--actor", help="who (default: your user name)")
    disp = isub.add_parser("dispatch", help="dispatch a crew (the best one unless --crew)")
    disp.add_argument("incident_id")
    disp.add_argument("--crew", help="crew id from crews.csv")
    disp.add_argument("--note", default="")
    disp.add_argument("--actor")
    rest = isub.add_parser("restore", help="record a restoration step (all areas unless given); on "
                          "a restored incident, confirm areas whose restoration is unconfirmed")
    rest.add_argument("incident_id")
    rest.add_argument("--transformers", help="comma-separated transformer area ids or names")
    rest.add_argument("--at", help="when supply came back (default: now), e.g. '2026-11-23 14:05'")
    rest.add_argument("--note", default="")
    rest.add_argument("--actor")
    close = isub.add_parser("close", help="close out (销号) a restored incident")
    close.add_argument("incident_id")
    close.add_argument("--cause", required=True, help="cause category, e.g. 树线矛盾, 设备故障")
    close.add_argument("--device", help="the device(s) the crews found operated, several "
                                        "separated by commas (the localiser learns from "
                                        "them: `localisation history`)")
    close.add_argument("--unconfirmed-ok", action="store_true",
                       help="close even though areas counted back when the records ended "
                            "were never confirmed back (they stay counted back at that end)")
    close.add_argument("--amend", action="store_true",
                       help="correct the cause or devices of an incident closed out already "
                            "(the latest close-out counts, for reports and the localiser)")
    close.add_argument("--device-anyway", action="store_true",
                       help="keep the --device(s) although they do not feed every area the "
                            "incident confirmed off (the crew knows better than the records: "
                            "a warning is logged, the close-out names the areas)")
    close.add_argument("--note", default="")
    close.add_argument("--actor")


def _add_outbox_verbs(sub: Any) -> None:
    """``outbox list`` here; its fixes and ``silence`` come from the corrections."""
    out = sub.add_parser("outbox", help="notifications in the outbox")
    osub = out.add_subparsers(dest="outbox_verb", metavar="ACTION")
    olist = osub.add_parser("list", help="messages, oldest first")
    olist.add_argument("--status", choices=OUTBOX_STATUSES)
    corrections.add_other_verbs(sub, osub)


def _add_storm_verbs(sub: Any) -> None:
    """``storm declare|end|status``."""
    storm = sub.add_parser("storm", help="declare a storm (the localiser expects several "
                                         "faults per feeder) or end it")
    ssub = storm.add_subparsers(dest="storm_verb", metavar="ACTION")
    sdec = ssub.add_parser("declare", help="from now, until ended or --hours have passed")
    sdec.add_argument("--hours", type=float, help="ends by itself after this many hours")
    sdec.add_argument("--note", default="", help="e.g. the typhoon warning it follows")
    sdec.add_argument("--actor")
    send = ssub.add_parser("end", help="back to calm-weather priors")
    send.add_argument("--actor")
    ssub.add_parser("status", help="whether a storm is declared")


def _add_intake_verbs(sub: Any) -> None:
    """``calls list`` and ``quarantine list``: what came in from the sources."""
    calls = sub.add_parser("calls", help="trouble calls (95598 / customer-service work orders)")
    csub = calls.add_subparsers(dest="calls_verb", metavar="ACTION")
    clist = csub.add_parser("list", help="newest first: where each was placed, its incident")
    clist.add_argument("--unplaced", action="store_true",
                       help="only calls that could not be placed in a transformer area")
    clist.add_argument("--limit", type=int, default=50)

    q = sub.add_parser("quarantine", help="payloads that failed validation, and events "
                                          "whose processing kept failing")
    qsub = q.add_subparsers(dest="quarantine_verb", metavar="ACTION")
    qlist = qsub.add_parser("list", help="newest first")
    qlist.add_argument("--limit", type=int, default=20)
    qretry = qsub.add_parser("retry", help="put the stored event of a processing failure "
                                           "back for the daemon to fold (once the bug is "
                                           "fixed; it is quarantined again if it fails again)")
    qretry.add_argument("ids", nargs="+", type=int, metavar="ID",
                        help="quarantine row id (quarantine list)")
    qretry.add_argument("--actor", help="who (default: your user name)")


def _open_store(config: Any) -> Any:
    from outage_sentinel.store import Store

    config.state_dir.mkdir(parents=True, exist_ok=True)  # before the daemon's first start
    store = Store(config.database_url(), region=config.region.name)
    store.migrate()
    return store


ACTIONS = ("ack", "arrive", "dispatch", "restore", "close", *corrections.INCIDENT_ACTIONS)


def open_config(args: argparse.Namespace) -> tuple[Any, Any, Any] | int:
    """The config, its topology and the migrated store, or the exit code of what failed
    (its problems printed)."""
    config = config_from_args(args)
    if config is None:
        return EXIT_CONFIG
    topology = topology_from_config(config)
    if topology is None:
        return EXIT_TOPOLOGY
    return config, topology, _open_store(config)


def _act(args: argparse.Namespace) -> int:
    """Lifecycle steps: the incident core the daemon runs, without sources or channels."""
    from outage_sentinel.assembly import build_core
    from outage_sentinel.events import EventError
    from outage_sentinel.lifecycle import LifecycleError, parse_actor, step_outcome
    from outage_sentinel.metrics import Metrics

    problem = corrections.usage_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    config, topology, store = opened
    core = build_core(config, store, topology, metrics=Metrics(), clock=_utcnow)
    actor, action = parse_actor(args.actor), args.incidents_verb
    asked = corrections.asked_of(action, args)
    target = getattr(args, "incident_id", None) or ""
    try:
        inc = _step(core, args, actor)
        said = step_outcome(inc)
        corrections.audit(store, _utcnow(), actor, action, ok=True, outcome=said, asked=asked,
                          target=target or inc.id)
    except (LifecycleError, EventError) as exc:
        # EventError: a time the step cannot use (--at, the ETR's), named with what it takes
        print(f"error: {exc}", file=sys.stderr)
        corrections.audit(store, _utcnow(), actor, action, ok=False, outcome=str(exc),
                          asked=asked, target=target)
        return EXIT_USAGE if isinstance(exc, EventError) else EXIT_PROBLEMS
    except Exception as exc:  # kept like the board's failed actions, then shown in full
        corrections.audit(store, _utcnow(), actor, action, ok=False, outcome=repr(exc),
                          asked=asked, target=target)
        raise
    finally:
        store.close()
    print(said)
    return 0


def _step(core: Any, args: argparse.Namespace, actor: str) -> Any:
    life, action = core.lifecycle, args.incidents_verb
    if action in corrections.INCIDENT_ACTIONS:
        return corrections.run_incident_step(core, args, actor)
    if action == "ack":
        return life.ack(args.incident_id, actor, args.note)
    if action == "arrive":
        return life.arrive(args.incident_id, actor, args.note)
    if action == "close":
        return life.close(args.incident_id, actor, args.cause, args.note, device=args.device,
                          unconfirmed_ok=args.unconfirmed_ok, amend=args.amend,
                          device_anyway=args.device_anyway)
    if action == "dispatch":
        return life.dispatch(args.incident_id, actor, crew_id=args.crew, note=args.note)
    return core.processor.operator_restore(args.incident_id, actor, args.transformers, args.at,
                                           args.note, now=_utcnow())


def _utcnow() -> datetime:
    return datetime.now(UTC)


def dispatch(args: argparse.Namespace) -> int:

    verb = args.verb
    action = getattr(args, f"{verb}_verb", None)
    if action is None:
        print(f"usage: outage-sentinel {verb} ACTION (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if verb == "incidents" and action in ACTIONS:
        return _act(args)
    if verb == "incidents" and action in ("list", "show"):
        return _view(args)
    if verb == "calls":
        return _calls(args)
    if verb == "silence":
        return _silence(args)
    config = config_from_args(args)
    if config is None:
        return EXIT_CONFIG
    store = _open_store(config)
    try:
        done = _on_store(store, args, verb, action, ZoneInfo(config.timezone))
    finally:
        store.close()
    if done is not None:
        return done
    print(f"error: unknown action {verb} {action}", file=sys.stderr)
    return EXIT_USAGE


def _silence(args: argparse.Namespace) -> int:
    """``silence add|list|expire`` (see :func:`corrections.silence`)."""
    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    config, topology, store = opened
    try:
        return corrections.silence(store, topology, config, args)
    finally:
        store.close()


def _on_store(store: Any, args: argparse.Namespace, verb: str, action: str,
              tz: tzinfo = UTC) -> int | None:
    """The verbs that read or change the store alone (an outbox fix opens the topology too),
    times shown in ``tz`` (the config's ``timezone``); None for an action none of them knows."""
    if verb == "outbox" and action == "list":
        return _outbox_list(store, args)
    if verb == "outbox" and action in ("retry", "withdraw", "hold", "release"):
        return _outbox_fix(args, action)
    if verb == "storm":
        return _storm(store, args, tz)
    if verb == "quarantine" and action == "list":
        return _quarantine_list(store, args, tz)
    if verb == "quarantine" and action == "retry":
        return _quarantine_retry(store, args)
    return None


def _outbox_list(store: Any, args: argparse.Namespace) -> int:
    """``outbox list``: the messages, recipients masked."""
    from outage_sentinel.logs import redact

    # Keys name the recipient (``village:V01:sms:13800001111``): mask them like targets.
    for m in store.messages(status=args.status):
        # redact: rows stored by older versions may hold a secret in last_error.
        print(f"{m.id:6} {m.status:8} {m.channel:10} {mask_phones(m.target):30} "
              f"{mask_phones(m.key)}  {redact(m.last_error or '')}")
    return 0


def _outbox_fix(args: argparse.Namespace, action: str) -> int:
    """``outbox retry|withdraw|hold|release``."""
    # the topology says which villages are off again (a stale "power back" notice),
    # and where a liaison is reached now (a retry or release goes there)
    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    config, topology, retry_store = opened
    try:
        step = corrections.outbox_retry if action == "retry" \
            else corrections.outbox_control
        return step(retry_store, topology, config, args)
    finally:
        retry_store.close()


def _quarantine_list(store: Any, args: argparse.Namespace, tz: tzinfo = UTC) -> int:
    """``quarantine list``: the payloads that failed validation, newest first (phone numbers
    masked: a caller's number is in many a trouble call), received in ``tz`` (as the board
    shows them) with the offset, so a time is never read in the wrong zone."""
    for q in store.quarantined(args.limit):
        raw = mask_phones(q["raw"] or "")[:200]
        received = q["received_at"].astimezone(tz).isoformat(sep=" ", timespec="seconds")
        print(f"{q['id']:6} {received} {q['source']:12} "
              f"{mask_phones(q['reason'])}{_again(q, tz)}\n       raw: {raw}")
    return 0


def _quarantine_retry(store: Any, args: argparse.Namespace) -> int:
    """``quarantine retry ID…``: each processing failure's stored event put back for the
    daemon to fold at its next run (:meth:`~outage_sentinel.store.events.EventStore.
    requeue_quarantined`); the others refused, saying why (exit 1). Kept in the audit trail."""
    from outage_sentinel.lifecycle import parse_actor
    from outage_sentinel.store.events import RequeueRefused

    actor, now, refused = parse_actor(args.actor), _utcnow(), []
    for qid in args.ids:
        try:
            s = store.requeue_quarantined(qid, now, actor)
        except RequeueRefused as exc:
            refused.append(mask_phones(str(exc)))
            continue
        print(f"#{qid}: re-queued {s.event.source}/{s.event.event_id} (event row {s.row_id}); "
              "the daemon folds it at its next run, and quarantines it again if it fails again")
    for line in refused:
        print(f"error: {line}", file=sys.stderr)
    corrections.audit(store, now, actor, "quarantine retry", ok=not refused,
                      outcome="; ".join(refused) or "re-queued", asked={"ids": args.ids},
                      target=",".join(map(str, args.ids)))
    return EXIT_PROBLEMS if refused else 0


def _again(row: Mapping[str, Any], tz: tzinfo) -> str:
    """How often a quarantined record came again, and when last (the row is kept once)."""
    repeats, last = row.get("repeats") or 0, row.get("last_seen")
    if not repeats or last is None:
        return ""
    seen = last.astimezone(tz).isoformat(sep=" ", timespec="seconds")
    return f" (again {repeats} times, last {seen})"


def _view(args: argparse.Namespace) -> int:
    """``incidents list`` and ``incidents show``: text for people (local times, words, names),
    or the stored state with ``--json``."""
    from zoneinfo import ZoneInfo

    from outage_sentinel import incident_view

    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    config, topology, store = opened
    tz, lang = ZoneInfo(config.timezone), config.notify.language
    try:
        if args.incidents_verb == "list":
            rows = store.load_incidents(open_only=not args.all)
            rows.sort(key=lambda r: r["created_at"], reverse=True)
            if args.json:
                print(mask_phones(json.dumps([r["state"] for r in rows], ensure_ascii=False)))
            for r in rows if not args.json else []:
                print(incident_view.incident_line(r, topology, tz, lang))
            return 0
        row = store.get_incident(args.incident_id)
        if row is None:
            print(f"error: no incident {args.incident_id!r}", file=sys.stderr)
            return EXIT_PROBLEMS
        notices = store.messages(incident_id=args.incident_id)
        if args.json:
            detail = dict(row["state"])
            detail["stage"] = row.get("stage") or detail.get("stage")
            detail["notices"] = [
                {"key": m.key, "channel": m.channel, "status": m.status, "sent_at":
                 m.sent_at.isoformat() if m.sent_at else None} for m in notices]
            # the outbox keys name SMS recipients by number; an operator's screen masks them
            print(mask_phones(json.dumps(detail, ensure_ascii=False, indent=2)))
        else:
            print(incident_view.incident_text(row, notices, store.incident_log(args.incident_id),
                                              topology, tz, lang))
        return 0
    finally:
        store.close()


def _calls(args: argparse.Namespace) -> int:
    """``calls list``: each call (its latest revision) placed as the daemon places it."""
    from zoneinfo import ZoneInfo

    from outage_sentinel import incident_view
    from outage_sentinel.incidents import resolve_event

    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    config, topology, store = opened
    tz, lang = ZoneInfo(config.timezone), config.notify.language
    try:
        seen: set[tuple[str, str]] = set()
        shown = 0
        for stored in store.events_by_signal("call", limit=max(args.limit, 1) * 20):
            event = stored.event
            if (event.source, event.event_id) in seen:
                continue  # an older revision of a call already shown
            seen.add((event.source, event.event_id))
            resolved = resolve_event(topology, event)
            if args.unplaced and resolved.transformers:
                continue
            print(incident_view.call_line(event, resolved, stored.incident_id, topology, tz,
                                          lang))
            shown += 1
            if shown >= args.limit:
                break
        return 0
    finally:
        store.close()


def _storm(store: Any, args: argparse.Namespace, tz: tzinfo = UTC) -> int:
    """Declare, end or show the storm state the daemon's localiser reads (kv ``storm``),
    its times in ``tz``."""
    from datetime import UTC, datetime

    from outage_sentinel.lifecycle import parse_actor
    from outage_sentinel.triage import STORM_KEY, storm_declaration, storm_declared

    now = datetime.now(UTC)
    action = args.storm_verb
    if action in ("declare", "end"):
        actor = parse_actor(args.actor)
        asked = corrections.asked_of("storm", args, declare=action == "declare")
        try:
            store.kv_set(STORM_KEY, storm_declaration(
                action == "declare", actor, now,
                hours=getattr(args, "hours", None), note=getattr(args, "note", "")), now)
        except ValueError as exc:
            print(f"error: --{exc}", file=sys.stderr)
            corrections.audit(store, now, actor, "storm", ok=False, outcome=f"--{exc}",
                              asked=asked)
            return EXIT_USAGE
        corrections.audit(store, now, actor, "storm", ok=True, asked=asked,
                          outcome="storm declared" if action == "declare" else "storm ended")
    value = store.kv_get(STORM_KEY) or {}
    at = _local_text(value.get("at"), tz)
    by = mask_phones(str(value.get("by")))  # numbers masked, as the board shows them
    if storm_declared(value, now):
        until = value.get("until")
        print(f"storm declared by {by} at {at}"
              + (f", until {_local_text(until, tz)}" if until else ", until ended")
              + (f": {mask_phones(str(value['note']))}" if value.get("note") else ""))
    else:
        print("no storm declared" + (f" (ended by {by} at {at})"
                                     if value and not value.get("declared") else ""))
    return 0


def _local_text(stored: Any, tz: tzinfo) -> str:
    """A stored ISO time shown in ``tz`` with its offset (as stored if it is not one)."""
    try:
        at = datetime.fromisoformat(str(stored))
    except ValueError:
        return str(stored)
    if at.tzinfo is None:
        return str(stored)
    return at.astimezone(tz).isoformat(sep=" ", timespec="seconds")
