"""Operator verbs that read (and later act on) the daemon's database while it runs.

``incidents list|show``, ``outbox list``, ``quarantine list``. They open the same database as
the daemon (SQLite in WAL mode lets them read while it writes).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_verbs(sub: Any) -> None:
    inc = sub.add_parser("incidents", help="list or show incidents")
    isub = inc.add_subparsers(dest="incidents_verb", metavar="ACTION")
    lst = isub.add_parser("list", help="incidents, newest first")
    lst.add_argument("--all", action="store_true", help="include restored/closed incidents")
    lst.add_argument("--json", action="store_true")
    show = isub.add_parser("show", help="one incident with its events and notices")
    show.add_argument("incident_id")

    out = sub.add_parser("outbox", help="notifications in the outbox")
    osub = out.add_subparsers(dest="outbox_verb", metavar="ACTION")
    olist = osub.add_parser("list", help="messages, oldest first")
    olist.add_argument("--status", choices=["pending", "inflight", "sent", "dead"])

    q = sub.add_parser("quarantine", help="payloads that failed validation")
    qsub = q.add_subparsers(dest="quarantine_verb", metavar="ACTION")
    qlist = qsub.add_parser("list", help="newest first")
    qlist.add_argument("--limit", type=int, default=20)


def _store(args: argparse.Namespace) -> Any:
    from outage_sentinel.cli import _load_config
    from outage_sentinel.store import Store

    config = _load_config(args)
    if config is None:
        return None
    store = Store(config.database_url())
    store.migrate()
    return store


def dispatch(args: argparse.Namespace) -> int:
    from outage_sentinel.cli import EXIT_CONFIG, EXIT_PROBLEMS, EXIT_USAGE

    verb = args.verb
    action = getattr(args, f"{verb}_verb", None)
    if action is None:
        print(f"usage: outage-sentinel {verb} ACTION (see --help)", file=sys.stderr)
        return EXIT_USAGE
    store = _store(args)
    if store is None:
        return EXIT_CONFIG
    try:
        if verb == "incidents" and action == "list":
            rows = store.load_incidents(open_only=not args.all)
            rows.sort(key=lambda r: r["created_at"], reverse=True)
            if args.json:
                print(json.dumps([r["state"] for r in rows], ensure_ascii=False))
            for r in rows if not args.json else []:
                s = r["state"]
                print(f"{r['id']}  {r['status']:9} {r['kind']:9} {r['feeder']:8} "
                      f"rev {r['revision']:<3} device {r['fault_device'] or '-':14} "
                      f"customers {r['customers']:<6} villages {len(s['estimate']['villages'])}")
            return 0
        if verb == "incidents" and action == "show":
            row = store.get_incident(args.incident_id)
            if row is None:
                print(f"error: no incident {args.incident_id!r}", file=sys.stderr)
                return EXIT_PROBLEMS
            detail = dict(row["state"])
            detail["notices"] = [
                {"key": m.key, "channel": m.channel, "status": m.status, "sent_at":
                 m.sent_at.isoformat() if m.sent_at else None}
                for m in store.messages(incident_id=args.incident_id)]
            print(json.dumps(detail, ensure_ascii=False, indent=2))
            return 0
        if verb == "outbox" and action == "list":
            from outage_sentinel.logs import mask_phone

            for m in store.messages(status=args.status):
                print(f"{m.id:6} {m.status:8} {m.channel:10} {mask_phone(m.target):30} "
                      f"{m.key}  {m.last_error or ''}")
            return 0
        if verb == "quarantine" and action == "list":
            for q in store.quarantined(args.limit):
                raw = (q["raw"] or "")[:200]
                print(f"{q['id']:6} {q['received_at']:%Y-%m-%d %H:%M:%S} {q['source']:12} "
                      f"{q['reason']}\n       raw: {raw}")
            return 0
    finally:
        store.close()
    print(f"error: unknown action {verb} {action}", file=sys.stderr)
    return EXIT_USAGE
