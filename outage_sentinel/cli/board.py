"""``outage-sentinel board`` (the command-centre board on its own) and
``outage-sentinel users add|passwd|role|disable|enable|list`` (who may sign in to it)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from typing import Any

from outage_sentinel.cli import EXIT_CONFIG, EXIT_PROBLEMS, EXIT_USAGE

#: Read the new password from this environment variable instead of prompting (scripts, tests).
PASSWORD_ENV = "OUTAGE_SENTINEL_PASSWORD"


def add_verbs(sub: Any) -> None:
    board = sub.add_parser("board", help="serve the command-centre board (its own process)")
    board.add_argument("--host", help="listen address (default: config board.host)")
    board.add_argument("--port", type=int, help="port (default: config board.port)")

    users = sub.add_parser("users", help="who may sign in to the board")
    usub = users.add_subparsers(dest="users_verb", metavar="ACTION")
    add = usub.add_parser("add", help="add a user (password prompted, or from "
                                      f"${PASSWORD_ENV}, or --password-stdin)")
    add.add_argument("name")
    add.add_argument("--role", default="viewer", help="viewer | operator | admin")
    add.add_argument("--password-stdin", action="store_true")
    pw = usub.add_parser("passwd", help="set a user's password (ends their sessions)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    for verb, text in (("disable", "stop a user signing in (ends their sessions)"),
                       ("enable", "let a disabled user sign in again")):
        usub.add_parser(verb, help=text).add_argument("name")
    role = usub.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role")
    usub.add_parser("list", help="users, their roles and whether they may sign in")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def users(args: argparse.Namespace, store: Any) -> int:
    from outage_sentinel.board import access

    now, verb = datetime.now(UTC), args.users_verb
    try:
        if verb == "add":
            name, role = access.check_name(args.name), access.check_role(args.role)
            if not store.add_user(name, role, access.hash_password(_password(args)), now):
                raise access.AccessError(f"user {name!r} exists (users passwd to change it)")
            print(f"user {name} added ({role})")
        elif verb == "list":
            for u in store.users():
                state = "disabled" if u["disabled"] else "active"
                print(f"{u['name']:20} {u['role']:9} {state}"
                      + ("  (must change password)" if u["must_change"] else ""))
        else:
            print(_change(verb, args, store, now))
    except (access.AccessError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    return 0


def _change(verb: str, args: argparse.Namespace, store: Any, now: datetime) -> str:
    """Apply ``users passwd|role|disable|enable`` and say what was done
    (``user wang: role viewer → operator``)."""
    from outage_sentinel.board import access

    before = next((u for u in store.users() if u["name"] == args.name), None)
    values = _update(verb, args)
    if before is None or not store.update_user(args.name, now, **values):
        raise access.AccessError(f"no user {args.name!r}")
    if verb == "role":
        return f"user {args.name}: role {before['role']} → {values['role']}" + (
            " (unchanged)" if before["role"] == values["role"] else "")
    return {"passwd": f"user {args.name}: password changed (signed out everywhere)",
            "disable": f"user {args.name}: disabled (signed out everywhere)",
            "enable": f"user {args.name}: enabled"}[verb]


def _update(verb: str, args: argparse.Namespace) -> dict[str, Any]:
    from outage_sentinel.board import access

    if verb == "passwd":
        return {"password_hash": access.hash_password(_password(args)), "must_change": False}
    if verb == "role":
        return {"role": access.check_role(args.role)}
    if verb in ("disable", "enable"):
        return {"disabled": verb == "disable"}
    raise ValueError(f"unknown action {verb!r}")


def serve_board(args: argparse.Namespace, config: Any, topology: Any, store: Any) -> int:
    from outage_sentinel.assembly import configured_bundle
    from outage_sentinel.board.serve import build, check_port, first_admin, serve
    from outage_sentinel.logs import configure, get_logger, redact
    from outage_sentinel.region import RegionError, region_feeders
    from outage_sentinel.topology import TopologyError

    configure(config.log.level, config.log.format, config.log.file)
    settings = config.board.model_copy(update={
        k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    config = config.model_copy(update={"board": settings})
    check_port(settings.host, settings.port)
    if settings.first_admin:
        first_admin(store, datetime.now(UTC), sys.stdout)
    print(f"board: http://{settings.host}:{settings.port}/", flush=True)
    current = [topology]
    log = get_logger(component="board")

    def reload() -> None:
        """SIGHUP: the edited bundle, or the one in use if it has problems or lacks the
        region's substations or feeders (refused as the daemon refuses it). The board's
        actions run on the new one from their next request (``build``'s core follows it)."""
        try:
            loaded = configured_bundle(config)
            region_feeders(config.region, loaded)
        except RegionError as exc:
            log.error("topology_reload_refused", topology=str(config.topology),
                      problem=str(exc))
            return
        except Exception as exc:  # problems, or an unreadable directory: keep serving
            problems = [str(p) for p in exc.problems] if isinstance(exc, TopologyError) \
                else [redact(repr(exc))]
            log.error("topology_reload_failed", topology=str(config.topology),
                      problems=problems)
            return
        current[0] = loaded
        log.info("topology_reloaded", topology=str(config.topology))

    return serve(build(config, store, lambda: current[0]), reload)


def dispatch(args: argparse.Namespace, opened: tuple[Any, Any, Any]) -> int:
    config, topology, store = opened
    try:
        if args.verb == "board":
            from outage_sentinel.board.serve import BoardPortError

            try:
                return serve_board(args, config, topology, store)
            except BoardPortError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_CONFIG
        if args.users_verb is None:
            print("usage: outage-sentinel users ACTION (see --help)", file=sys.stderr)
            return EXIT_USAGE
        return users(args, store)
    finally:
        store.close()
