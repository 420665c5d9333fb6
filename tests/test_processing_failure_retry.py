"""Audit: an event whose processing failed :data:`MAX_PROCESSING_FAILURES` times (a bug in our
code, not in the payload) was quarantined for good. Its row stayed stored, marked processed
with no incident; the failures were counted in memory only, so neither a restart nor an
upgrade that fixed the bug ever folded it, and nothing but a database edit could: the outage
it reported was never told to anyone.

Now the operator puts it back: ``outage-sentinel quarantine retry ID`` re-queues the stored
event of a processing failure (kept in the audit trail, the quarantine row saying when and by
whom); the daemon folds it at its next run, the running one included (it forgets the failures
it counted once the event is quarantined). Nothing is retried by itself: an event that fails
again is quarantined again after as many tries (``quarantine list`` says it came again), and
stays there across restarts until the operator asks again.

Through the real path: the repo's config and demo bundle, a real SQLite store, the incident
core as the daemon builds it (its estimator, a capability, failing the way a bug in the
localiser would), and the CLI as a subprocess.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.assembly import Core, build_core
from outage_sentinel.config import Config, load_config
from outage_sentinel.estimation import default_estimator
from outage_sentinel.events import OutageEvent, PollResult, Quarantined
from outage_sentinel.failures import MAX_PROCESSING_FAILURES
from outage_sentinel.incidents import Estimate, Evidence
from outage_sentinel.metrics import Metrics
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.e2e_helpers import ROOT, make_config
from tests.test_cli import cli

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VILLAGE = "V037"  # 王庄村 on 10kV 王庄线 (MJ02)


class Buggy:
    """The localiser with a bug for its first ``fails`` calls (then the fixed one)."""

    def __init__(self, fails: int) -> None:
        self.fails, self.real = fails, default_estimator()

    def __call__(self, topology: Topology, evidence: Evidence) -> Estimate:
        if self.fails > 0:
            self.fails -= 1
            raise ZeroDivisionError("division by zero in the localiser")
        return self.real(topology, evidence)


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_bundle(ROOT / "topology")


class Rig:
    """A daemon's incident core over the config's database; ``restart`` builds a new one."""

    def __init__(self, tmp: Path, topology: Topology) -> None:
        self.path = make_config(tmp)
        (tmp / "state").mkdir()
        self.cfg: Config = load_config(self.path)
        self.store = Store(self.cfg.database_url())
        self.store.migrate()
        self.topology = topology

    def core(self, estimator: Buggy) -> Core:
        return build_core(self.cfg, self.store, self.topology, metrics=Metrics(),
                          clock=lambda: NOW, estimator=estimator)

    def store_record(self) -> None:
        area = sorted(t for t, n in self.topology.nodes.items()
                      if n.kind == "transformer" and n.village == VILLAGE)[0]
        event = OutageEvent(source="demo-feed", event_id="R1", kind="fault", status="active",
                            start=NOW, transformers=(area,), signal="notice")
        self.store.ingest("demo-feed", PollResult(events=[event]), NOW)

    def quarantine_by_failures(self, core: Core) -> dict[str, Any]:
        """Fold until the processor gives up; returns the quarantine row it wrote."""
        for _ in range(MAX_PROCESSING_FAILURES):
            core.processor.run_once(NOW)
        (row,) = self.store.quarantined()
        assert row["reason"].startswith(f"processing failed {MAX_PROCESSING_FAILURES} times")
        assert self.store.unprocessed_events() == []
        return row

    def told(self) -> list[Any]:
        return [m for m in self.store.messages() if m.purpose == "outage"
                and m.recipient.startswith(f"village:{VILLAGE}:")]

    def retry(self, *ids: int) -> Any:
        return cli("--config", str(self.path), "quarantine", "retry", *map(str, ids),
                   "--actor", "王工")


@pytest.fixture
def rig(tmp_path: Path, demo: Topology) -> Any:
    r = Rig(tmp_path, demo)
    yield r
    r.store.close()


def test_the_operator_retries_a_processing_failure_and_the_running_daemon_folds_it(
        rig: Rig) -> None:
    core = rig.core(Buggy(fails=MAX_PROCESSING_FAILURES))
    rig.store_record()
    q = rig.quarantine_by_failures(core)
    assert rig.store.load_incidents(open_only=False) == [] and rig.told() == []
    # A restart after the fix (a new core, a working localiser) does not fold it by itself.
    rig.core(Buggy(fails=0)).processor.run_once(NOW)
    assert rig.store.load_incidents(open_only=False) == []

    done = rig.retry(q["id"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"#{q['id']}" in done.stdout and "demo-feed/R1" in done.stdout, done.stdout
    # The daemon that quarantined it (running all along, now fixed) folds it at its next run.
    core.processor.run_once(NOW)
    (incident,) = rig.store.load_incidents(open_only=False)
    assert rig.told(), "the villages hear of the outage the record reported"
    assert [s.incident_id for s in rig.store.events()] == [incident["id"]]
    # The quarantine row and the audit trail say who put it back, and when.
    (row,) = rig.store.quarantined()
    assert "re-queued" in row["reason"] and "王工" in row["reason"]
    audit = [a for a in rig.store.audit_trail() if a["action"] == "quarantine retry"]
    assert audit and audit[0]["actor"] == "operator:王工" and audit[0]["ok"]

    # Asked again: it was folded; nothing to put back, and nothing folded twice.
    again = rig.retry(q["id"])
    assert again.returncode == 1 and "re-queued already" in again.stderr, again.stderr
    assert rig.store.unprocessed_events() == []


def test_a_retry_that_fails_again_is_quarantined_again_and_never_loops(rig: Rig) -> None:
    core = rig.core(Buggy(fails=10 * MAX_PROCESSING_FAILURES))  # the bug is still there
    rig.store_record()
    q = rig.quarantine_by_failures(core)
    assert rig.retry(q["id"]).returncode == 0
    for _ in range(MAX_PROCESSING_FAILURES + 2):
        core.processor.run_once(NOW)
    # The same row, counted again (``quarantine list``: again 1 times), no longer re-queued.
    (row,) = rig.store.quarantined()
    assert row["id"] == q["id"] and row["repeats"] == 1
    assert "re-queued" not in row["reason"]
    assert rig.store.unprocessed_events() == []
    # A restart leaves it where it is: only the operator puts it back.
    restarted = rig.core(Buggy(fails=0))
    restarted.processor.run_once(NOW)
    assert rig.store.load_incidents(open_only=False) == [] and rig.told() == []
    listed = cli("--config", str(rig.path), "quarantine", "list")
    assert "again 1 times" in listed.stdout, listed.stdout
    # Put back once more, the fixed daemon folds it.
    assert rig.retry(q["id"]).returncode == 0
    restarted.processor.run_once(NOW)
    assert rig.told()


def test_a_payload_refused_by_validation_is_not_retried(rig: Rig) -> None:
    """A record that failed validation was never stored as an event: there is nothing to
    fold, and a payload naming an ``event_row`` of its own does not reach another event."""
    rig.store_record()
    rig.core(Buggy(fails=0)).processor.run_once(NOW)
    (event,) = rig.store.events()
    rig.store.quarantine(Quarantined("demo-feed", "record 1: start: expected a time",
                                     {"event_row": event.row_id, "start": "x"}), NOW)
    (q,) = rig.store.quarantined()
    refused = rig.retry(q["id"], 999)
    assert refused.returncode == 1
    assert f"#{q['id']}" in refused.stderr and "not a processing failure" in refused.stderr
    assert "#999" in refused.stderr and "no quarantined" in refused.stderr
    assert rig.store.unprocessed_events() == []
