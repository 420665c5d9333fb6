"""The daemon and an operator's CLI starting together on a new SQLite database both migrate
it: they queue on the write lock, neither fails with "database is locked" (the daemon exited
5 when it lost that race)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e_helpers import ROOT

SCRIPT = "import sys; from outage_sentinel.store import Store; Store(sys.argv[1]).migrate()"


def test_processes_migrating_one_new_database_together_all_succeed(tmp_path: Path) -> None:
    for round_ in range(6):
        url = f"sqlite:///{tmp_path / f'db{round_}.sqlite'}"
        procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, url], cwd=str(ROOT),
                                  stderr=subprocess.PIPE, text=True) for _ in range(5)]
        failed = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for e in failed if e][:1]
