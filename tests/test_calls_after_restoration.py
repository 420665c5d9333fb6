"""A trouble call about an outage already over (「早上停电了」, placed after the meters said its
area was back) is no evidence of the next fault on the line: the next incident took it in as
its own and stated its fault at a fuse that does not feed the one dark area."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.incidents import Incident
from outage_sentinel.sources.mapping import RecordMapper
from tests.test_call_truth import CUSTOMERS_002, FIELDS, TZ, calls_in, order
from tests.test_daemon_ami_truth import NOW, Run, report

OFF, ON = "3.26.0.85", "3.26.0.216"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.daemon.close()


def area(run: Run, name: str, code: str, at: datetime) -> None:
    run.step(at + timedelta(seconds=12), [report(f"M-{name}-{i:03d}", code, at + timedelta(
        seconds=i)) for i in range(1, 11)])


def active(run: Run) -> list[Incident]:
    return [i for i in (Incident.from_json(r["state"])
                        for r in run.daemon.store.load_incidents(open_only=False))
            if i.status == "active"]


def call_from_002(run: Run, at: datetime) -> None:
    mapper = RecordMapper("orders", FIELDS, TZ)
    calls_in(run, [mapper.map(order("W0", at, custNo=CUSTOMERS_002[0], content="早上停电了"))],
             at + timedelta(minutes=1))


def test_a_call_about_an_outage_already_over_does_not_place_the_next_one(run: Run) -> None:
    area(run, "T-CG01-002", OFF, NOW)
    run.step(NOW + timedelta(minutes=3))
    area(run, "T-CG01-002", ON, NOW + timedelta(minutes=40))
    run.step(NOW + timedelta(minutes=46))  # the area stayed on (restore_settle_seconds)
    assert active(run) == []
    call_from_002(run, NOW + timedelta(minutes=70))  # half an hour after it came back
    area(run, "T-CG01-022", OFF, NOW + timedelta(minutes=80))  # another fuse's area
    run.step(NOW + timedelta(minutes=83))
    (new,) = active(run)
    topo = run.daemon.topology
    assert "T-CG01-002" not in new.estimate.transformers
    assert all(topo.is_downstream("T-CG01-022", d) for d in new.estimate.devices), \
        (new.estimate.devices, new.estimate.probability)


def test_a_call_from_an_area_dark_again_is_still_the_next_outages_evidence(run: Run) -> None:
    """The same call, its area dark again in the new outage: it is that outage's caller."""
    area(run, "T-CG01-002", OFF, NOW)
    run.step(NOW + timedelta(minutes=3))
    area(run, "T-CG01-002", ON, NOW + timedelta(minutes=40))
    run.step(NOW + timedelta(minutes=46))  # the area stayed on (restore_settle_seconds)
    call_from_002(run, NOW + timedelta(minutes=70))
    area(run, "T-CG01-002", OFF, NOW + timedelta(minutes=71))
    run.step(NOW + timedelta(minutes=74))
    (new,) = active(run)
    assert any(m.signal == "call" for m in new.members.values())
