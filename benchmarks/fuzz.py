"""A long fuzz run of every parser (issue 11): inputs tried and escapes, per target.

    .venv/bin/python benchmarks/fuzz.py                   # 100,000 inputs per target
    .venv/bin/python benchmarks/fuzz.py --quick           # 2,000 per target
    .venv/bin/python benchmarks/fuzz.py --per-target 20000 --only feed ami --seed 7

The runners and their checks are the test suite's (tests/test_fuzz_parsers.py: the HTTP feed
with each preset and a custom mapping, feed bodies, AMI payloads, dropped files, locate
evidence; tests/test_fuzz_config.py: config files and topology bundles). The test suite drives
them with hypothesis; here a seeded mutational generator (valid seeds with values replaced by
hostile ones, keys dropped or added, structures nested, bytes spliced, lines broken) makes the
hundreds of thousands of inputs hypothesis would take an hour to draw. An escape is any
exception a runner lets through: an undocumented error, a good record lost, a problem without a
place, a secret in a message. Exit status 1 when anything escaped.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import test_fuzz_config as cfg  # noqa: E402
from tests import test_fuzz_parsers as parsers  # noqa: E402

HOSTILE: list[Any] = [
    None, True, False, 0, -1, 10**30, -10**30, 1e400, float("nan"), 1.5, "", " ", "\x00",
    "a\x00b", "\ud800", "线路\udfff故障", "253402300800000", "99999999999999999999",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00", "2026-11-23 08:00:00", "inf",
    "nan", "1e400", "2026/11/23 08:00", "2026-02-30 08:00:00", "3.26.0.85", "3.26.0.216",
    "TX1-M0", "meter:TX1-M0", "\u202e", "🙂" * 40, "x" * 3000, "1", "2", "3", "[", "{", "\r",
    [], {}, [[[]]], {"a": {"b": {}}}, ["T1", None, 3],
]
PIECES = [b",", b'"', b"\n", b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf", b"[", b"{", b"}", b"]",
          b":", b"\\u0000", b"\\ud800", b"1e400", b"nan", b"null", b" "]


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with a few random changes (the structure of a valid input mostly kept)."""
    roll = rng.random()
    if roll < 0.15 or depth > 4:
        return rng.choice(HOSTILE)
    if isinstance(value, dict):
        out = dict(value)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if out and op < 0.5:
                key = rng.choice(list(out))
                out[key] = mutate(rng, out[key], depth + 1)
            elif out and op < 0.7:
                out.pop(rng.choice(list(out)))
            else:
                out[rng.choice(["x", "", "\x00", "id", *list(out)[:3]])] = rng.choice(HOSTILE)
        return out
    if isinstance(value, list):
        out_l = [mutate(rng, v, depth + 1) if rng.random() < 0.5 else v for v in value]
        if rng.random() < 0.3:
            out_l.insert(rng.randint(0, len(out_l)), rng.choice(HOSTILE))
        if rng.random() < 0.1:
            out_l = [out_l]
        return out_l
    if isinstance(value, str) and rng.random() < 0.5:
        at = rng.randint(0, len(value))
        return value[:at] + str(rng.choice(HOSTILE))[:20] + value[at + rng.randint(0, 3):]
    return rng.choice(HOSTILE)


def splice(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(buf))
        piece = rng.choice(PIECES) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 6))
        buf[at:at + rng.randint(0, 4)] = piece
    if rng.random() < 0.05:
        buf = buf.replace(b"\n", b"\r")
    if rng.random() < 0.05:
        buf = buf[: rng.randint(0, len(buf))]
    return bytes(buf)


def feed_target(mapping: str) -> Callable[[random.Random], None]:
    good = parsers.GOOD_RECORDS[mapping]
    return lambda rng: parsers.run_feed_case(
        mapping, [mutate(rng, good) for _ in range(rng.randint(1, 3))])


def feed_body_target(mapping: str) -> Callable[[random.Random], None]:
    path = parsers.MAPPINGS[mapping][0]
    body = json.dumps(parsers.put(path, [parsers.GOOD_RECORDS[mapping]] * 2)).encode()
    return lambda rng: parsers.run_feed_case(mapping, [], splice(rng, body))


def ami_target(rng: random.Random) -> None:
    good_csv = "meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    parsers.run_ami_case([mutate(rng, parsers.GOOD_AMI) for _ in range(rng.randint(1, 3))],
                         splice(rng, good_csv.encode()).decode("utf-8", "replace"))


def work_order_target(rng: random.Random) -> None:
    good_csv = "orderNo,acceptTime,custNo,faultType\nW1,2026-11-23 06:42:00,C1,无电\n"
    good = parsers.GOOD_RECORDS["95598_workorder"]
    parsers.run_work_order_case([mutate(rng, good) for _ in range(rng.randint(1, 3))],
                                splice(rng, good_csv.encode()).decode("utf-8", "replace"))


def locate_target(rng: random.Random) -> None:
    case = {"id": "a", "dead": ["T1", "T2"], "alive": ["T3"], "calls": {"T1": 2},
            "open_devices": ["FU1"], "storm": False}
    text = "\n".join(json.dumps(mutate(rng, case), default=str) for _ in range(2))
    parsers.run_locate_case(splice(rng, text.encode()).decode("utf-8", "replace")
                            if rng.random() < 0.3 else text)


def file_target(scratch: Path) -> Callable[[random.Random], None]:
    good = b"meter_id,code,time\nTX1-M0,3.26.0.85,2026-07-01 16:00:00\n"
    lines = json.dumps(parsers.GOOD_AMI).encode() + b"\n"
    return lambda rng: parsers.run_file_case(
        scratch, rng.choice(["a.csv", "a.jsonl", "a.txt"]),
        splice(rng, rng.choice([good, lines])))


def config_target(rng: random.Random) -> None:
    cfg.run_config_case(splice(rng, cfg.BASE_CONFIG.encode()))


def bundle_target(rng: random.Random) -> None:
    files: dict[str, bytes | None] = {k: v.encode() for k, v in cfg.SMALL_BUNDLE.items()}
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(files))
        data = files[name] or b""
        op = rng.random()
        files[name] = (None if op < 0.05 else b"" if op < 0.1 else
                       data.decode("utf-8", "replace").encode("gbk", "replace") if op < 0.15
                       else splice(rng, data))
    cfg.run_bundle_case(files)


def targets() -> dict[str, Callable[[random.Random], None]]:
    out: dict[str, Callable[[random.Random], None]] = {}
    for mapping in sorted(parsers.MAPPINGS):
        out[f"feed:{mapping}"] = feed_target(mapping)
        out[f"feed-body:{mapping}"] = feed_body_target(mapping)
    out["ami"] = ami_target
    out["work-orders"] = work_order_target
    out["locate"] = locate_target
    out["file_drop"] = file_target(Path(tempfile.mkdtemp(prefix="fuzz-files-")))
    out["config"] = config_target
    out["bundle"] = bundle_target
    return out


def run(target: Callable[[random.Random], None], n: int, seed: int,
        seconds: float) -> tuple[int, int, str, float]:
    tried = escapes = 0
    first = ""
    started = time.perf_counter()
    for i in range(n):
        if time.perf_counter() - started > seconds:
            break
        rng = random.Random(seed * 1_000_003 + i)  # input i is reproducible on its own
        tried += 1
        try:
            target(rng)
        except Exception as exc:  # an escape: count it, keep going
            escapes += 1
            if not first:
                first = f"input {i}: {type(exc).__name__}: {exc}"[:400]
    return tried, escapes, first, time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-target", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2,000 inputs per target")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3600.0,
                    help="time budget per target (the inputs actually tried are printed)")
    ap.add_argument("--only", nargs="*", help="target names (prefixes) to run")
    args = ap.parse_args()
    n = 2_000 if args.quick else args.per_target
    total = 0
    print(f"{'target':28} {'inputs':>9} {'escapes':>8} {'seconds':>8}", flush=True)
    for name, target in targets().items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        tried, escapes, first, spent = run(target, n, args.seed, args.seconds)
        total += escapes
        print(f"{name:28} {tried:>9,} {escapes:>8} {spent:>8.1f}", flush=True)
        if first:
            print(f"    first escape: {first}", flush=True)
    print(f"escapes in total: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
