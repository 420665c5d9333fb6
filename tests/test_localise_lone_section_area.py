"""A lone area reported dead in the breaker's own section of the demo county (issue 14, the
storm audit; docs/localisation.md, session 29).

With the defaults (``transformer_prior_factor`` 1e-4, the benchmark's worlds, which have no
own faults) the localiser reads that area's report as false and names a silent fuse elsewhere
(about 26 %, and 98.9 % once alive reports rule the other fuses out): the trade-off measured
in session 29 keeps that default. A county that knows its own-fault rate sets it (or the
refit learns it from close-outs that name a transformer): this test runs ``locate --params``
as such a county would and checks that the answer is then stated in honest proportions
between the area's own fault and a false report, and never near-certain for either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONE = "T-CG01-001"  # directly under BRK-CG01, below no fuse
#: one alive report under every fuse of CG01 but FU-CG01-01-1 (the storm's next minutes)
ALIVE = ["T-CG01-003", "T-CG01-010", "T-CG01-015", "T-CG01-020", "T-CG01-024", "T-CG01-027"]


def locate(tmp_path: Path, cases: list[dict[str, object]], params: str) -> list[dict]:
    evidence = tmp_path / "cases.jsonl"
    evidence.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    p = tmp_path / "params.yaml"
    p.write_text(params, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "outage_sentinel", "locate", "--topology",
                        str(ROOT / "topology"), "--evidence", str(evidence), "--params", str(p)],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_countys_own_fault_rate_states_the_lone_area_in_honest_proportions(
        tmp_path: Path) -> None:
    lone, later = locate(tmp_path, [{"id": "lone", "dead": [LONE]},
                                    {"id": "later", "dead": [LONE], "alive": ALIVE}],
                         "transformer_prior_factor: 0.02\n")
    for answer in (lone, later):
        top = answer["hypotheses"][0]
        # the area's own fault is named first, but not as a certainty: a false report (a
        # fault elsewhere that sent nothing) keeps a real share
        assert top["devices"] == [LONE], answer
        assert 0.2 <= top["probability"] <= 0.6, answer
        unexplained = [h for h in answer["hypotheses"] if LONE not in h["transformers"]]
        assert unexplained and all(h["probability"] < 0.5 for h in unexplained), answer
    # the alive reports that ruled the other fuses out no longer make the one fuse left,
    # from which nothing was heard, near-certain (0.989 with the defaults)
    assert max(h["probability"] for h in later["hypotheses"]) < 0.9
