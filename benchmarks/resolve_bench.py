"""How long placing one record's words on the network takes (``resolve_event``), per kind of
wording, against the plain id lookup measured in the same run.

A storm brings thousands of records a poll, each read through :func:`resolve_event`: its
area references (ids, names, names spelt otherwise: full-width digits, spaces, 1#公变) and its
scope text (whole villages, parts, exclusions, number ranges, line names with their
substation). The cases include wordings the reader does not understand (unplaced text, a
name nobody has), since the field sends those too; every case is reported.

    python benchmarks/resolve_bench.py [--topology DIR] [--rounds N]

Prints, per case, the median microseconds per record and the ratio to the id lookup.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outage_sentinel.events import OutageEvent  # noqa: E402
from outage_sentinel.incidents import resolve_event  # noqa: E402
from outage_sentinel.topology import Topology, load_bundle  # noqa: E402

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def event(refs: tuple[str, ...] = (), text: str = "", feeder: str | None = None
          ) -> OutageEvent:
    return OutageEvent(source="bench", event_id="E", kind="fault", status="active", start=T0,
                       transformers=refs, area_text=text, feeder=feeder)


def cases(topology: Topology) -> dict[str, OutageEvent]:
    """One record per kind of wording, built from the bundle's own names."""
    villages = [v for v in topology.villages.values()
                if len(topology.village_transformers(v.id)) >= 3]
    v, w = villages[0], villages[1]
    areas = topology.village_transformers(v.id)
    name = topology.nodes[areas[0]].name
    feeder = topology.feeder_of(areas[0])
    line = topology.feeder_names.get(feeder, feeder)
    wide = name.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    return {
        "id (baseline)": event((areas[0],)),
        "name": event((name,)),
        "name, full-width digits": event((wide,)),
        "two names in one reference": event((f"{name} {topology.nodes[areas[1]].name}",)),
        "unknown reference": event(("无此台区9号",)),
        "text: whole village": event(text=f"{v.name}全村"),
        "text: part of a village": event(text=f"{v.name}部分用户"),
        "text: village with a space": event(text=f"{v.name} 全村"),
        "text: number range": event(text=f"{v.name}1-3号台区"),
        "text: exclusion": event(text=f"{v.name}全村，{w.name}除外"),
        "text: line with substation": event(text=f"某某变{line}", feeder=None),
        "text: two villages, a line": event(text=f"{line}：{v.name}、{w.name}全村"),
        "text: nothing known": event(text="城区东部部分用户临时停电"),
    }


def timed(fn: Callable[[], object], rounds: int) -> float:
    """Median seconds of ``fn`` over ``rounds`` batches of 200 calls, per call."""
    per: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(200):
            fn()
        per.append((time.perf_counter() - start) / 200)
    return statistics.median(per)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", type=Path, default=ROOT / "topology")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    topology = load_bundle(args.topology)
    all_cases = cases(topology)
    for ev in all_cases.values():  # the indexes are built once per topology: not timed
        resolve_event(topology, ev)
    base = timed(lambda: resolve_event(topology, all_cases["id (baseline)"]), args.rounds)
    print(f"{'case':34} {'µs/record':>10} {'× id lookup':>12}")
    for label, ev in all_cases.items():
        t = timed(lambda ev=ev: resolve_event(topology, ev), args.rounds)  # type: ignore[misc]
        print(f"{label:34} {t * 1e6:10.1f} {t / base:12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
