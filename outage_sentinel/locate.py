"""The ``outage-sentinel locate`` and ``outage-sentinel topology import`` commands.

``locate`` (docs/design.md §3): the evidence file is one JSON object, a JSON array of objects, or
JSON lines (one case per line). A case is ``{"id", "dead": [...], "alive": [...], "calls":
[one entry per call], "open_devices": [...]}`` plus, optionally, ``"planned"`` and
``"known_open"``, and ``"calls_observed": true`` when a call source was watching and nobody
called (without it, a case with no call at all had no call source: its silence is no data),
likewise ``"alive_observed"`` (an alive-report source) and ``"open_observed"`` (telemetry);
ids may be transformer, node-name, meter or customer ids. A case may also
carry the weather of its window (:class:`~outage_sentinel.localise.FaultContext`): ``"storm"``
(true/false, a storm declared), ``"faults_elsewhere"`` and ``"devices_elsewhere"`` (protective
devices operated elsewhere in the county in the window, out of how many); a case without them
is a calm window (or the caller's default context). Each case gets one
output line ``{"id", "hypotheses": [...], "unknown": [...], "explained": [...],
"elapsed_ms"}``; a case that cannot be read gets ``{"id", "line", "error"}`` and the rest go
on. The exit code is 0 when every case was read, 1 otherwise, 2 when the topology is bad.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from outage_sentinel.events import load_json
from outage_sentinel.importers import FORMATS, ImportError_, import_topology
from outage_sentinel.localise import Evidence, FaultContext, LocaliserParams, localise
from outage_sentinel.topology import Topology, TopologyError, load_bundle

LIST_FIELDS = ("dead", "alive", "calls", "open_devices", "planned", "known_open")
CONTEXT_FIELDS = ("storm", "faults_elsewhere", "devices_elsewhere")


class CaseError(ValueError):
    """A case that cannot be read (its line number and what is wrong)."""


def read_cases(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line, parsed object or None, error)`` for every case in the file's text."""
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = load_json(stripped)
    except json.JSONDecodeError:
        whole = None
    else:
        first_line = text[: text.index(stripped[0])].count("\n") + 1
        if isinstance(whole, list):
            for k, item in enumerate(whole):
                yield first_line, item, None if isinstance(item, dict) else (
                    f"case {k + 1} of the array is not a JSON object")
            return
        if isinstance(whole, dict):
            yield first_line, whole, None
            return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, load_json(line), None
        except json.JSONDecodeError as exc:
            yield n, None, f"invalid JSON on line {n}: {exc.msg} (column {exc.colno})"


def evidence_of(case: Any, line: int) -> Evidence:
    """Turn one parsed case into :class:`Evidence` (raises :class:`CaseError`)."""
    if not isinstance(case, dict):
        raise CaseError(f"line {line}: a case must be a JSON object, got {type(case).__name__}")
    lists: dict[str, list[str]] = {}
    for name in LIST_FIELDS:
        value = case.get(name, [])
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str | int) and
                                                  not isinstance(v, bool) for v in value):
            raise CaseError(f"line {line}: {name!r} must be a list of ids")
        lists[name] = [str(v) for v in value]
    observed: dict[str, bool | None] = {}
    for name in ("calls_observed", "alive_observed", "open_observed"):
        value = case.get(name)
        if value is not None and not isinstance(value, bool):
            raise CaseError(f"line {line}: {name!r} must be true or false")
        observed[name] = value
    return Evidence.from_call_list(lists["calls"], dead=lists["dead"], alive=lists["alive"],
                                   open_devices=lists["open_devices"], planned=lists["planned"],
                                   known_open=lists["known_open"], **observed)


def context_of(case: Any, line: int, default: FaultContext | None = None) -> FaultContext:
    """The case's weather (``storm``, ``faults_elsewhere``, ``devices_elsewhere``) over the
    ``default`` context; raises :class:`CaseError` naming the case and the key."""
    base = default if default is not None else FaultContext()
    if not isinstance(case, dict):
        return base
    where = f"line {line}" + (f" (case {case['id']!r})" if case.get("id") is not None else "")
    changes = {name: case[name] for name in CONTEXT_FIELDS if case.get(name) is not None}
    try:
        return replace(base, **changes)  # FaultContext checks every value and names the key
    except ValueError as exc:
        raise CaseError(f"{where}: {exc}") from None


def locate_case(topology: Topology, case: Any, line: int,
                params: LocaliserParams | None = None,
                context: FaultContext | None = None) -> dict[str, Any]:
    """Localise one parsed case into its output object (raises :class:`CaseError`).
    ``context`` is the default weather for cases that do not give theirs."""
    t0 = time.perf_counter()
    evidence = evidence_of(case, line)
    result = localise(topology, evidence, params, context_of(case, line, context))
    body = result.to_json()
    elapsed = (time.perf_counter() - t0) * 1000.0
    return {"id": case.get("id"), **body, "elapsed_ms": round(elapsed, 3)}


def read_evidence(path: str) -> str:
    """The evidence text of ``path`` (``-``: standard input), UTF-8 with or without a BOM."""
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8-sig")
    return Path(path).read_text(encoding="utf-8-sig")


#: ``locate``'s exit code for a bundle that does not load (the CLI's ``EXIT_TOPOLOGY``).
TOPOLOGY_INVALID = 4


def locate_main(topology_dir: str, evidence_path: str, out: TextIO,
                params: LocaliserParams | None = None,
                context: FaultContext | None = None) -> int:
    """Run ``locate``: load the topology once, answer every case, one JSON line each.
    ``context`` is the default weather (e.g. a ``--storm`` flag) for cases without theirs."""
    try:
        topology = load_bundle(topology_dir)
    except TopologyError as exc:
        print(f"outage-sentinel locate: {exc}", file=sys.stderr)
        return TOPOLOGY_INVALID
    try:
        text = read_evidence(evidence_path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"outage-sentinel locate: cannot read {evidence_path}: {exc}", file=sys.stderr)
        return 1
    ok = True
    for line, case, error in read_cases(text):
        if error is None:
            try:
                answer = locate_case(topology, case, line, params, context)
            except CaseError as exc:
                error = str(exc)
        if error is not None:
            ok = False
            case_id = case.get("id") if isinstance(case, dict) else None
            answer = {"id": case_id, "line": line, "error": error}
        out.write(json.dumps(answer, ensure_ascii=False) + "\n")
        out.flush()
    return 0 if ok else 1


def import_main(fmt: str, src: str, outdir: str) -> int:
    """Run ``topology import FMT SRC OUTDIR``: write a bundle beside ``outdir``, check it
    loads, and only then put it in place (a bundle that would not load leaves ``outdir`` as
    it was)."""
    if fmt not in FORMATS:
        print(f"outage-sentinel topology import: unknown format {fmt!r} "
              f"(expected {'|'.join(FORMATS)})", file=sys.stderr)
        return 2
    try:
        summary = import_topology(fmt, src, outdir)
    except ImportError_ as exc:
        print(f"outage-sentinel topology import: {exc}", file=sys.stderr)
        return 1
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    devices = ", ".join(f"{n} {k}" for k, n in summary.devices.items()) or "none"
    print(f"wrote {summary.outdir}: {summary.nodes} nodes, {summary.edges} edges, "
          f"{summary.transformers} transformer areas, {summary.customers} customers, "
          f"devices: {devices} ({summary.normally_open} normally open), "
          f"feeders: {', '.join(summary.feeders)}, {summary.villages} synthetic villages")
    return 0
