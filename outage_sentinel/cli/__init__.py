"""The ``outage-sentinel`` command.

Verbs::

    outage-sentinel [--config PATH] run [--once]      the daemon (or one cycle)
    outage-sentinel [--config PATH] check             validate config + topology, list problems
    outage-sentinel [--config PATH] topology stats [--topology DIR]
    outage-sentinel topology import {opendss,glm,pandapower} SRC OUTDIR
    outage-sentinel locate --topology DIR --evidence FILE [--params FILE] [--storm]
    outage-sentinel [--config PATH] localisation history [--out FILE]
    outage-sentinel localisation fit --topology DIR --history FILE --out PARAMS.yaml
    outage-sentinel [--config PATH] incidents list|show|ack|dispatch|arrive|restore|close ...
    outage-sentinel [--config PATH] incidents open|etr|scope|device|cancel|reopen ...
    outage-sentinel [--config PATH] outbox list|retry|withdraw|hold|release ...
    outage-sentinel [--config PATH] silence add|list|expire ...
    outage-sentinel [--config PATH] calls list · quarantine list|retry · storm declare|end|show
    outage-sentinel [--config PATH] board [--host H] [--port P]
    outage-sentinel [--config PATH] users add|passwd|role|disable|enable|list ...
    outage-sentinel [--config PATH] report daily|weekly|range [--format csv|xlsx|html] [--out PATH]
    outage-sentinel --version

Exit codes (also in the README):
    0 success · 1 problems found / a run failed · 2 usage error · 3 config invalid (also: the
    metrics port is taken, the log file or state directory cannot be made) · 4 topology
    invalid · 5 database unusable · 6 the SQLite file was deleted or replaced under the running
    daemon · 141 the output was closed before all of it was written (``… | head``)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outage_sentinel import __version__
from outage_sentinel.logs import mask_phones, redact

if TYPE_CHECKING:
    from outage_sentinel.daemon import Daemon
    from outage_sentinel.signals import SignalInbox

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_TOPOLOGY = 4
EXIT_DATABASE = 5
#: Standard output closed early (``… | head``): the status of a command killed by SIGPIPE.
EXIT_BROKEN_PIPE = 141


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outage-sentinel",
                                description="Outage alerting for electricity distribution.")
    p.add_argument("--version", action="version", version=f"outage-sentinel {__version__}")
    p.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--once", action="store_true", help="one poll/process/deliver cycle, then exit")

    sub.add_parser("check", help="validate config and topology; list every problem")

    topo = sub.add_parser("topology", help="topology bundle tools")
    tsub = topo.add_subparsers(dest="topology_verb", metavar="ACTION")
    stats = tsub.add_parser("stats", help="counts of a bundle")
    stats.add_argument("--topology", help="bundle directory (default: from config)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    imp = tsub.add_parser("import", help="convert a public feeder model into a bundle")
    imp.add_argument("format", choices=["opendss", "glm", "pandapower"])
    imp.add_argument("src")
    imp.add_argument("outdir")

    loc = sub.add_parser("locate", help="localise faults for evidence cases (JSON / JSON lines)")
    loc.add_argument("--topology", required=True, help="bundle directory")
    loc.add_argument("--evidence", required=True, help="JSON object or JSON-lines file ('-' = stdin)")
    loc.add_argument("--storm", action="store_true",
                     help="a storm is declared for cases that do not say (their 'storm' key)")
    loc.add_argument("--params", help="parameters file from `localisation fit`")

    from outage_sentinel.cli import board as board_cli
    from outage_sentinel.cli import localisation as localisation_cli
    from outage_sentinel.cli import operator as operator_cli
    from outage_sentinel.cli import report as report_cli

    operator_cli.add_verbs(sub)
    board_cli.add_verbs(sub)
    report_cli.add_verbs(sub)
    localisation_cli.add_verbs(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Output cut short by its reader (``… | head``) ends the command
    quietly with :data:`EXIT_BROKEN_PIPE`, never a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe is noise
        return code
    except BrokenPipeError:
        if not stdout_closed():
            raise  # a socket's, say: a real failure
        # Later writes (the interpreter's last flush) go nowhere instead of raising again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def stdout_closed() -> bool:
    """Whether standard output is a pipe or socket nothing reads any more."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    refused = unstorable_argument(args, sys.argv[1:] if argv is None else argv)
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    """Run the verb ``args`` name (its module imported only when it runs)."""
    if args.verb == "run":
        return _run(args)
    if args.verb == "check":
        return _check(args)
    if args.verb == "topology":
        if args.topology_verb == "stats":
            return _stats(args)
        if args.topology_verb == "import":
            from outage_sentinel.locate import import_main

            return int(import_main(args.format, args.src, args.outdir))
        print("usage: outage-sentinel topology {stats,import} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if args.verb == "locate":
        return _locate(args)
    if args.verb == "localisation":
        from outage_sentinel.cli import localisation as localisation_cli

        return localisation_cli.dispatch(args)
    if args.verb == "report":
        from outage_sentinel.cli import report as report_cli

        return int(report_cli.dispatch(args))
    from outage_sentinel.cli import operator as operator_cli

    if args.verb in ("board", "users"):
        from outage_sentinel.cli import board as board_cli

        opened = operator_cli.open_config(args)
        return opened if isinstance(opened, int) else board_cli.dispatch(args, opened)
    return operator_cli.dispatch(args)


#: Verbs whose arguments the database keeps (notes, reasons, names, what was asked).
STORED_VERBS = ("incidents", "outbox", "silence", "storm", "users", "quarantine")


def unstorable_argument(args: argparse.Namespace, argv: Sequence[str]) -> str | None:
    """The refusal of an argument of a :data:`STORED_VERBS` verb holding a character the
    database cannot store (a lone surrogate: bytes of the command line that are not UTF-8;
    a NUL), naming the option (``--note``) or the argument, or None."""
    if args.verb not in STORED_VERBS:
        return None
    from outage_sentinel.events import UNSTORABLE, unstorable_key

    key = unstorable_key({k: v for k, v in vars(args).items() if k != "config"})
    if key is None:
        return None
    dest = re.split(r"[.\[:]", key, maxsplit=1)[0]
    flag = "--" + dest.replace("_", "-")
    named = flag if any(a == flag or a.startswith(flag + "=") for a in argv) else dest
    return f"{named}: {UNSTORABLE}"


def _locate(args: argparse.Namespace) -> int:
    from outage_sentinel.cli.localisation import load_params
    from outage_sentinel.config import ConfigError
    from outage_sentinel.localise import FaultContext
    from outage_sentinel.locate import locate_main

    try:
        params = load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return int(locate_main(args.topology, args.evidence, sys.stdout, params,
                           context=FaultContext(storm=True) if args.storm else None))


def config_from_args(args: argparse.Namespace) -> Any:
    """The config every verb runs on, its secrets registered with the log scrubber (those
    written in the file as they are, too: a standalone board or report logs and prints)."""
    from outage_sentinel.assembly import register_config_secrets
    from outage_sentinel.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return None
    register_config_secrets(config)
    return config


def topology_from_config(config: Any) -> Any:
    """The config's topology bundle, or ``None`` with every problem printed (exit with
    :data:`EXIT_TOPOLOGY`)."""
    from outage_sentinel.assembly import configured_bundle
    from outage_sentinel.topology import TopologyError

    try:
        return configured_bundle(config)
    except TopologyError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return None


def _setup_logging(config: Any) -> str | None:
    """Logging as the config says, then what it should warn of; or why ``log.file`` cannot
    be opened (``log.file: path: cause``, for exit 3), nothing logged."""
    from outage_sentinel.logs import configure, get_logger
    from outage_sentinel.template_check import override_dir_problems

    try:
        configure(config.log.level, config.log.format, config.log.file)
    except OSError as exc:
        file = config.log.file
        return f"log.file: {file}: {file_problem(file) or os_cause(exc, file)}"
    log = get_logger(component="config")
    if literal := config.literal_secrets():  # the key paths only, never the values
        log.warning("config_secret_literal", keys=list(literal), hint=LITERAL_SECRET_HINT)
    for problem in override_dir_problems(config.notify.templates_dir):
        log.warning("templates_dir_ignored", key="notify.templates_dir", problem=problem)
    return None


def make_state_dir(config: Any) -> str | None:
    """Create ``state_dir``; or why it cannot be made or written in (``state_dir: path:
    cause``, for exit 3: the daemon would fail on it with no key named)."""
    path = config.state_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"state_dir: {path}: {directory_problem(path) or os_cause(exc, path)}"
    problem = directory_problem(path)
    return None if problem is None else f"state_dir: {path}: {problem}"


def os_cause(exc: OSError, path: Path | None = None) -> str:
    """``No such file or directory (/proc/x)``: the error and the path it names, unless that
    is ``path`` (named already)."""
    named = exc.filename is not None and str(exc.filename) != str(path)
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if named else "")


def directory_problem(path: Path, access: int = os.W_OK | os.X_OK) -> str | None:
    """Why the daemon could not make ``path`` and write in it (``not a directory``,
    ``not writable``, ``cannot be created: …``), or ``None``. A directory yet to be made is
    tried: its first missing ancestor is created and removed again, nothing left behind."""
    if os.path.isdir(path):
        return None if os.access(path, access) else "not writable"
    if os.path.lexists(path):
        return "not a directory"
    first = Path(os.path.abspath(path))
    while not os.path.lexists(first.parent):
        first = first.parent
    if not first.parent.is_dir():
        return f"cannot be created: {first.parent} is not a directory"
    try:
        first.mkdir()
    except OSError as exc:
        return f"cannot be created: {os_cause(exc, Path(os.path.abspath(path)))}"
    with contextlib.suppress(OSError):
        first.rmdir()
    return None


def file_problem(path: Path) -> str | None:
    """Why the daemon could not append to file ``path`` (creating it and its directory), or
    ``None``. A file yet to be made is tried (created and removed again) when its directory
    exists. A symbolic link is followed, as opening the file follows it."""
    path = Path(os.path.realpath(path))
    if os.path.isdir(path):
        return "is a directory"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "not writable"
    parent = Path(os.path.abspath(path)).parent
    if not parent.is_dir():
        problem = directory_problem(parent)
        return None if problem is None else f"directory {parent}: {problem}"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        return f"cannot be created: {os_cause(exc, path)}"
    with contextlib.suppress(OSError):
        os.unlink(path)
    return None


#: What to do about a secret written in the config file.
LITERAL_SECRET_HINT = ("a secret written in the config file itself; give it as ${VAR} from the "
                       "environment (under systemd: /etc/outage-sentinel/env)")


def _run(args: argparse.Namespace) -> int:
    inbox = None
    if not args.once:
        # First of all, before the slow steps (config, a topology bundle of seconds, the
        # database): a SIGHUP or SIGTERM from now on is remembered, never the default action
        # that killed a starting daemon with status 129 (see outage_sentinel/signals.py).
        from outage_sentinel.signals import SignalInbox

        inbox = SignalInbox()
        inbox.install()
    from outage_sentinel.assembly import configured_bundle
    from outage_sentinel.topology import TopologyError

    config = config_from_args(args)
    if config is None:
        return EXIT_CONFIG
    if (unusable := _setup_logging(config) or make_state_dir(config)) is not None:
        print(redact(f"error: {args.config}: {unusable}"), file=sys.stderr)
        return EXIT_CONFIG
    if _stopped_during_startup(inbox, "config"):
        return EXIT_OK
    try:
        topology = configured_bundle(config)
    except TopologyError as exc:
        print(redact(f"error: {config.topology}: {exc}"), file=sys.stderr)
        return EXIT_TOPOLOGY
    if _stopped_during_startup(inbox, "topology"):
        return EXIT_OK
    from outage_sentinel.board.serve import BoardPortError
    from outage_sentinel.supervisor import MetricsPortError, SecondDaemonError

    daemon = _build_daemon(args, config, topology, inbox)
    if isinstance(daemon, int):
        return daemon
    if args.once:
        return _run_once(daemon)
    try:
        return daemon.run(install_signals=False)  # installed above
    except (MetricsPortError, BoardPortError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SecondDaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATABASE


def _run_once(daemon: Daemon) -> int:
    """One cycle, its report printed as JSON; exit 1 if a poll failed."""
    try:
        report = daemon.run_once()
    finally:
        daemon.close()
    print(json.dumps(report.__dict__), file=sys.stdout)
    return EXIT_OK if report.failed_polls == 0 else EXIT_PROBLEMS


def _build_daemon(args: argparse.Namespace, config: Any, topology: Any,
                  inbox: SignalInbox | None) -> Daemon | int:
    """The daemon, or the exit code of why it cannot be built: a configuration ``check``
    also refuses (a region, a channel or a source that cannot be built: 3), the database
    (5), anything else (1)."""
    from outage_sentinel.channels.base import ChannelError
    from outage_sentinel.daemon import Daemon
    from outage_sentinel.region import RegionError
    from outage_sentinel.sources.base import SourceConfigError

    try:
        return Daemon(config, topology=topology, signals=inbox)
    except (RegionError, ChannelError, SourceConfigError) as exc:
        print(redact(f"error: {args.config}: {exc}"), file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(f"error: cannot start: {redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return EXIT_DATABASE if "sqlalchemy" in type(exc).__module__ else EXIT_PROBLEMS


def _stopped_during_startup(inbox: SignalInbox | None, step: str) -> bool:
    """A SIGTERM/SIGINT came while ``step`` ran: stop here, cleanly (exit 0)."""
    if inbox is None or not inbox.stop_requested():
        return False
    from outage_sentinel.logs import get_logger
    from outage_sentinel.signals import names

    get_logger(component="daemon").info("stopped", reason="signal during start-up",
                                         after=step, signals=names(inbox.take()), exit_code=0)
    return True


#: A mainland mobile number, optionally with +86 (what SMS and robot @-mentions need).
MOBILE = re.compile(r"(\+86)?1[3-9]\d{9}")
ROBOT_TYPES = ("wecom", "dingtalk", "feishu")


def collect_problems(config: Any) -> list[str]:
    """Cross-checks between config and topology that neither can do alone, and every notice
    template rendered: ``file:row (who): what`` lines."""
    from outage_sentinel.assembly import configured_bundle
    from outage_sentinel.config import MqttSourceConfig, ReplaySourceConfig
    from outage_sentinel.sources.mqtt import tls_problem
    from outage_sentinel.template_check import template_problems
    from outage_sentinel.topology import TopologyError

    problems: list[str] = []
    try:
        topology = configured_bundle(config)
    except TopologyError as exc:  # a problem of the directory itself names it already
        problems += [str(p) if Path(getattr(p, "file", "")).is_absolute()
                     else f"{config.topology}/{p}" for p in exc.problems]
    else:
        problems += routing_problems(config, topology)
        problems += region_problems(config, topology)
    problems += sms_template_notes(config)[0]
    problems += channel_problems(config)
    problems += path_problems(config)
    for i, s in enumerate(config.sources):
        if isinstance(s, ReplaySourceConfig) and not Path(s.scenario).is_file():
            problems.append(f"sources[{i}].scenario: file {s.scenario} does not exist")
        if isinstance(s, MqttSourceConfig) and (tls := tls_problem(s)) is not None:
            problems.append(f"sources[{i}].{tls}")
    problems += [f"notify.templates_dir: {p}" if not p.startswith("<built-in>") else p
                 for p in template_problems(config)]
    return list(dict.fromkeys(problems))


def path_problems(config: Any) -> list[str]:
    """The directories and files ``run`` makes and writes and cannot run without
    (``state_dir``, ``log.file``), each that cannot be made or written as ``key: path:
    cause``. Nothing is left behind (see :func:`directory_problem`)."""
    found = [("state_dir", config.state_dir, directory_problem(config.state_dir))]
    if config.log.file is not None:
        found.append(("log.file", config.log.file, file_problem(config.log.file)))
    return [f"{key}: {path}: {problem}" for key, path, problem in found if problem]


def degraded_notes(config: Any) -> list[str]:
    """What ``run`` goes on without, said by ``check`` as notes rather than problems (a
    problem fails ``check``, which the unit runs before ``run`` and before each reload: the
    whole daemon would stay down for it): a ``file_drop`` source whose directories cannot be
    made or written (that source alone fails, and is started again at each poll), and
    overrides in ``notify.templates_dir`` that would never be used (the built-in templates go
    out instead, or would fail or print "None" when a start is to be confirmed)."""
    from outage_sentinel.template_check import override_dir_problems, unverified_start_notes

    found = [f"sources[{i}].{key}: {path}: {problem}"
             for i, source in enumerate(config.sources)
             for key, path, problem in file_drop_problems(source) if problem]
    return found + [f"notify.templates_dir: {p}"
                    for p in [*override_dir_problems(config.notify.templates_dir),
                              *unverified_start_notes(config)]]


def file_drop_problems(source: Any) -> list[tuple[str, Path, str | None]]:
    """(key, path, problem or None) of an enabled ``file_drop`` source's directories: the
    source reads and empties ``directory`` and makes ``done_dir`` and ``failed_dir``
    (default: inside ``directory``, which they create) when it starts."""
    from outage_sentinel.config import FileDropSourceConfig

    if not isinstance(source, FileDropSourceConfig) or not source.enabled:
        return []
    drop = Path(source.directory)
    done = Path(source.done_dir) if source.done_dir else drop / "done"
    failed = Path(source.failed_dir) if source.failed_dir else drop / "failed"
    problem = directory_problem(drop, os.R_OK | os.W_OK | os.X_OK)
    if problem is None and not drop.exists() and drop not in (*done.parents, *failed.parents):
        problem = "does not exist (done_dir and failed_dir are elsewhere: nothing creates it)"
    return [("directory", drop, problem), ("done_dir", done, directory_problem(done)),
            ("failed_dir", failed, directory_problem(failed))]


def channel_problems(config: Any) -> list[str]:
    """Every enabled channel built as ``run`` builds it (credentials present, URLs, a robot's
    signing, SMTP security, a CA file that loads), each refusal naming its key: so that
    anything ``check`` accepts, ``run`` can start."""
    from outage_sentinel.channels.base import ChannelError
    from outage_sentinel.channels.registry import build_channel

    problems: list[str] = []
    for name, channel in config.channels.items():
        if not channel.enabled:
            continue
        try:
            build_channel(name, channel)
        except ChannelError as exc:
            problems.append(str(exc))
    return problems


def region_problems(config: Any, topology: Any) -> list[str]:
    """The substations and feeders ``region`` names must be in the bundle."""
    from outage_sentinel.region import RegionError, resolve_region

    r = config.region
    try:
        resolve_region(r.name, r.substations, r.feeders, topology)
    except RegionError as exc:
        return str(exc).split("; ")
    return []


def routing_problems(config: Any, topology: Any) -> list[str]:
    """Every liaison, crew and the command centre must reach a configured channel: a robot
    channel must have a robot for the target group, an SMS number must be a mobile number
    (a notice routed anywhere else is dead-lettered at outage time)."""
    problems: list[str] = []
    for i, li in enumerate(topology.liaisons):
        where = f"{config.topology}/liaisons.csv:{i + 2} ({li.name or li.village})"
        problems += [f"{where}: {p}" for p in _route(config, li.channel, li.target, li.phone)]
    for i, crew in enumerate(topology.crews):
        where = f"{config.topology}/crews.csv:{i + 2} ({crew.id})"
        problems += [f"{where}: {p}" for p in _route(config, crew.channel, crew.target,
                                                     crew.phone)]
    cc = config.command_centre
    if cc.channel is not None:
        problems += [f"command_centre.target: {p}" for p in _route(config, cc.channel,
                                                                    cc.target, "")]
    return problems


def _route(config: Any, channel: str, target: str, phone: str) -> list[str]:
    out = []
    if phone and not MOBILE.fullmatch(phone):
        out.append(f"phone {mask_phones(phone)!r} is not a mainland mobile number "
                   "(11 digits 1[3-9]…, optional +86)")
    cfg = config.channels.get(channel)
    if cfg is None:
        return [*out, f"channel {channel!r} is not a key of config 'channels'"]
    effective = target or phone
    if cfg.type in ROBOT_TYPES and effective not in cfg.robots:
        known = ", ".join(sorted(cfg.robots)) or "none"
        out.append(f"no robot for target {effective!r} in channels.{channel}.robots "
                   f"(configured: {known})")
    elif cfg.type == "email" and "@" not in effective:
        out.append(f"e-mail target {effective!r} is not an address")
    elif target and (problem := sms_target_problem(cfg.type, target)) is not None:
        out.append(problem)
    return out


def sms_target_problem(channel_type: str, target: str) -> str | None:
    """Why ``target`` is no number a channel of ``channel_type`` sends an SMS to, or ``None``
    (also for types that send no SMS). Aliyun: a mainland mobile; Tencent: what its channel
    takes (a mainland mobile, or E.164)."""
    from outage_sentinel.channels.base import is_sms_type
    from outage_sentinel.channels.tencent_sms import e164

    if not is_sms_type(channel_type):
        return None
    if channel_type == "tencent_sms":
        if e164(target) is None:
            return (f"SMS target {mask_phones(target)!r} is not a mobile number (11 digits "
                    "1[3-9]…, optional +86, or E.164 +CC…)")
        return None
    if not MOBILE.fullmatch(target):
        return (f"SMS target {mask_phones(target)!r} is not a mainland mobile number "
                "(11 digits 1[3-9]…, optional +86)")
    return None


def sms_template_notes(config: Any) -> tuple[list[str], list[str]]:
    """SMS purposes without a template code of their own: a problem when there is no
    ``template_code`` fallback either (those SMS would be refused; Tencent has no fallback),
    else a note."""
    from outage_sentinel.config import SmsChannelConfig, TencentSmsChannelConfig

    problems: list[str] = []
    notes: list[str] = []
    for name, ch in config.channels.items():
        if isinstance(ch, TencentSmsChannelConfig) and ch.enabled:
            problems += tencent_template_problems(name, ch, bool(config.field.base_url))
            notes += fallback_notes(name, ch.templates)
        if not isinstance(ch, SmsChannelConfig) or not ch.enabled:
            continue
        notes += fallback_notes(name, ch.templates)
        missing = ch.purposes_without_code()
        if missing and not ch.template_code:
            problems.append(f"channels.{name}.templates: no template code for "
                            f"{', '.join(missing)} and no template_code fallback")
        elif missing:
            notes.append(f"channels.{name}.templates: {', '.join(missing)} use the fallback "
                         f"template_code {ch.template_code} (parameters differ per purpose; "
                         "see docs/channels.md)")
    return problems, notes


def fallback_notes(name: str, templates: Mapping[str, Any]) -> list[str]:
    """The purposes a channel sends on another purpose's template, having none of its own
    (:data:`~outage_sentinel.sms_params.FALLBACK_PURPOSES`): a note each, since that text
    was written for the other case."""
    from outage_sentinel.sms_params import FALLBACK_PURPOSES, purpose_on

    return [f"channels.{name}.templates: {purpose} has no template and is sent on {fallback}'s "
            f"(planned work called off after it began would read as {fallback}: register one, "
            "see docs/channels.md)"
            for purpose, fallback in FALLBACK_PURPOSES.items()
            if purpose_on(purpose, templates) == fallback]


def tencent_template_problems(name: str, ch: Any, links: bool) -> list[str]:
    """A Tencent SMS channel's purposes without a template (it has no fallback: those SMS
    would be refused), and templates naming ``link`` while field links are off (``links``
    false: no message has one, so every such SMS would be refused)."""
    from outage_sentinel.sms_params import PURPOSES, purpose_on

    problems: list[str] = []
    missing = [p for p in PURPOSES if purpose_on(p, ch.templates) not in ch.templates]
    if missing:
        problems.append(f"channels.{name}.templates: no template for {', '.join(missing)} "
                        "(tencent_sms has no fallback template: those SMS would be refused)")
    for purpose, template in ch.templates.items():
        if "link" in template.params and not links:
            problems.append(f"channels.{name}.templates.{purpose}.params: 'link' while field "
                            "links are off (field.base_url unset): those SMS would be refused")
    return problems


def unused_key_notes(config: Any) -> list[str]:
    """Keys a config sets that nothing reads where it sets them: one retry block serves
    message delivery (which gives up by age) and source polls (which give up after
    ``max_attempts`` within one poll)."""
    notes: list[str] = []
    if "max_attempts" in config.delivery.retry.model_fields_set:
        notes.append("delivery.retry.max_attempts: not used (delivery gives up on a message "
                     "by age: max_age_seconds)")
    for i, source in enumerate(config.sources):
        retry = getattr(source, "retry", None)
        if retry is not None and "max_age_seconds" in retry.model_fields_set:
            notes.append(f"sources[{i}].retry.max_age_seconds: not used (a poll gives up "
                         "after max_attempts)")
    return notes


def _check(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config is None:
        return EXIT_CONFIG
    from outage_sentinel.topology.bundle import TopologyWarning

    with warnings.catch_warnings(record=True) as caught:  # the bundle's notes: said below
        warnings.simplefilter("always", TopologyWarning)
        problems = collect_problems(config)
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {redact(p)}", file=sys.stderr)
        return EXIT_PROBLEMS
    failover = [n for n in (config.failover_note(),) if n]
    bundle = list(dict.fromkeys(f"{config.topology}/{w.message}" for w in caught
                                if issubclass(w.category, TopologyWarning)))
    literal = [f"{key}: {LITERAL_SECRET_HINT}" for key in config.literal_secrets()]
    for note in [*bundle, *sms_template_notes(config)[1], *unused_key_notes(config),
                 *failover, *literal, *degraded_notes(config)]:
        print(f"note: {note}")
    print(f"ok: {args.config} and topology {config.topology} are valid")
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    """A bundle's counts: ``--topology``'s alone, else the config's as the daemon reads it
    (the tags ``priority.extra_tags`` weighs known, not warned about)."""
    from outage_sentinel.assembly import configured_bundle
    from outage_sentinel.topology import TopologyError, load_bundle

    if args.topology:
        config, directory = None, Path(args.topology)
    else:
        config = config_from_args(args)
        if config is None:
            return EXIT_CONFIG
        directory = config.topology
    try:
        topology = load_bundle(directory) if config is None else configured_bundle(config)
    except TopologyError as exc:
        print(redact(f"error: {directory}: {exc}"), file=sys.stderr)
        return EXIT_TOPOLOGY
    stats = topology.stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
    else:
        for key, value in stats.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:22} {value}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
