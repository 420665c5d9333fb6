"""``outage-sentinel localisation history|fit`` and ``locate --params``: the localiser learning
from close-outs (:mod:`outage_sentinel.fitting`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from outage_sentinel.cli import EXIT_CONFIG, EXIT_PROBLEMS, EXIT_TOPOLOGY, EXIT_USAGE


def add_verbs(sub: Any) -> None:
    loc = sub.add_parser("localisation", help="learn the localiser's reliabilities from "
                                              "close-outs")
    lsub = loc.add_subparsers(dest="localisation_verb", metavar="ACTION")
    hist = lsub.add_parser("history", help="closed incidents with a confirmed device, as "
                                           "locate cases with their truth (JSON lines)")
    hist.add_argument("--out", help="file to write (default: standard output)")
    fit = lsub.add_parser("fit", help="fit the evidence reliabilities and a calibration map "
                                      "to a history; write a parameters file")
    fit.add_argument("--topology", required=True, help="bundle directory")
    fit.add_argument("--history", required=True, help="JSON lines: locate cases + truth")
    fit.add_argument("--out", required=True, help="parameters file to write (YAML)")
    fit.add_argument("--base", help="parameters file to start from (default: the defaults)")


def dispatch(args: argparse.Namespace) -> int:
    if args.localisation_verb == "history":
        return _history(args)
    if args.localisation_verb == "fit":
        return _fit(args)
    print("usage: outage-sentinel localisation history|fit (see --help)", file=sys.stderr)
    return EXIT_USAGE


def load_params(path: str | None) -> Any:
    """The parameters of a file written by ``localisation fit`` (None: the defaults); raises
    ``ConfigError`` naming the file and key."""
    from outage_sentinel.config import load_localisation
    from outage_sentinel.localise import LocaliserParams

    return load_localisation(path).to_params() if path else LocaliserParams()


def _history(args: argparse.Namespace) -> int:
    from outage_sentinel.cli.operator import open_config
    from outage_sentinel.refit_job import store_history

    opened = open_config(args)
    if isinstance(opened, int):
        return opened
    _, _, store = opened
    try:
        lines = [json.dumps(case, ensure_ascii=False) for case in store_history(store)]
    finally:
        store.close()
    text = "".join(f"{line}\n" for line in lines)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(lines)} case(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from outage_sentinel.config import ConfigError
    from outage_sentinel.fitting import HistoryError, fit_with_calibration
    from outage_sentinel.topology import TopologyError, load_bundle

    try:
        topology = load_bundle(args.topology)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TOPOLOGY
    try:
        base = load_params(args.base)
        cases, contexts, problems = _read_history(topology, args.history)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, UnicodeDecodeError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not cases:
        print(f"error: {args.history}: no usable case", file=sys.stderr)
        return EXIT_PROBLEMS
    fitted, figures = fit_with_calibration(topology, cases, base, contexts)
    Path(args.out).write_text(_params_yaml(fitted, figures), encoding="utf-8")
    print(f"fitted on {fitted.cases} case(s); wrote {args.out}")
    for change in fitted.changes:
        print(f"  {change}")
    print(f"  top answer right {figures['accuracy']:.1%}; calibration error "
          f"{figures['ece_before']:.3f} -> {figures['ece_after']:.3f} (on these cases)")
    own = ", ".join(key for key, _ in fitted.params.calibration_maps) or "none"
    print(f"  {figures['storm_cases']:.0f} case(s) in a storm window; calibration maps of "
          f"their own: {own}")
    return 0


def _read_history(topology: Any, path: str) -> tuple[list[Any], list[Any], list[str]]:
    """The usable cases of a history (evidence, solved case), the weather of each (as
    ``locate`` reads it: calm without the keys), and a problem per line left out."""
    from outage_sentinel.fitting import HistoryError, solved_case, truth_of
    from outage_sentinel.locate import CaseError, context_of, evidence_of, read_cases, read_evidence

    cases: list[Any] = []
    contexts: list[Any] = []
    problems: list[str] = []
    for line, case, error in read_cases(read_evidence(path)):
        where = f"{path} line {line}"
        if error is not None:
            problems.append(f"{where}: {error}")
            continue
        try:
            evidence = evidence_of(case, line)
            context = context_of(case, line)
            cases.append((evidence, solved_case(topology, evidence, truth_of(case, where),
                                                where)))
            contexts.append(context)
        except (CaseError, HistoryError) as exc:
            problems.append(str(exc))
    return cases, contexts, problems


def _params_yaml(fitted: Any, figures: dict[str, float]) -> str:
    from outage_sentinel.fitting import fitted_values

    body = fitted_values(fitted.params)
    head = (f"# outage-sentinel localisation fit: {fitted.cases} case(s); top answer right "
            f"{figures['accuracy']:.1%}; calibration error {figures['ece_before']:.3f} -> "
            f"{figures['ece_after']:.3f} on them.\n"
            "# Use it with `locate --params FILE` or config key localisation.params_file.\n")
    return head + str(yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
