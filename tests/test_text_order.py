"""What the texts list comes out in the same order on every run: Python's set order changes
with the interpreter's hash seed, and a crew's orders once named the same two areas as
"T1、T2" on one run and "T2、T1" on the next. Run in subprocesses under several seeds."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e_helpers import ROOT

SCRIPT = """
from outage_sentinel.incidents import widen_scope
areas = [f"T-{i:03d}" for i in range(40)]
scope = widen_scope({}, frozenset(areas[:20]), frozenset(areas[20:]), (), {})
print(list(scope))
"""


def ordered_under(seed: int) -> str:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         cwd=str(ROOT), env=env, timeout=120, check=True)
    return run.stdout


def test_the_areas_a_scope_adds_are_in_one_order_whatever_the_hash_seed() -> None:
    runs = {ordered_under(seed) for seed in (1, 2, 3, 4)}
    assert len(runs) == 1, runs
