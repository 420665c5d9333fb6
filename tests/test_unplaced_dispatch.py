"""An outage nobody could place (no transformer area known: the record named none the bundle
has, and its area text could not be read) is not dispatched as 停电…0户, nor scored as if
nobody were off: the crew reads 停电户数待核实, and the priority counts the line's customers.

The network is the tests' two-feeder grid (tests/conftest.py)::

    F1 (马集I线, 200 customers): T1 (V1, 40), T2 (V1, 30), T3 (V2, 50), T4 (V2, 20), T5 (V3, 60)
    F2 (城关II线, 80 customers): T6 (V4, 35), T7 (V4, 45)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel import crew as crews
from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.liaison import Renderer
from outage_sentinel.priority import PriorityWeights, score, summary
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_grid
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed, make_daemon

#: An area text nobody can read: no area, village, device or line of the bundle in it.
UNREADABLE = "东头那片没电了"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def incidents(d: Daemon) -> list[Incident]:
    return [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]


def bodies(d: Daemon, incident_id: str, purpose: str) -> list[str]:
    return [m.body for m in d.store.messages(incident_id=incident_id) if m.purpose == purpose]


def heading_priority(body: str) -> int:
    found = re.search(r"优先级(\d+)", body.splitlines()[0])
    assert found, body
    return int(found.group(1))


def says_zero_households(text: str) -> bool:
    return re.search(r"(?<![\d.])0户", text) is not None


# -- the crew's orders -------------------------------------------------------------------------


def test_an_unplaced_outage_is_dispatched_with_its_households_to_be_checked(
        daemon: Daemon) -> None:  # noqa: F811
    """The record names 马集I线's head only by the line and an area text nobody can read.
    The command centre is told 无法定位到台区，请人工核实; the crew read 停电：…0户 and
    优先原因：停电0户 (priority 0), a figure nobody knows stated as fact."""
    feed(daemon, 1, ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE))
    (inc,) = incidents(daemon)
    assert not inc.estimate.transformers and inc.feeder == "F1"  # the case: placed nowhere
    (summary_body, *_) = bodies(daemon, inc.id, "summary")
    assert "无法定位到台区，请人工核实" in summary_body
    (body,) = bodies(daemon, inc.id, "dispatch")
    assert not says_zero_households(body), body
    assert "停电户数待核实" in body and UNREADABLE in body, body
    assert heading_priority(body) > 0
    # by SMS too: the customers variable is no count
    (msg,) = [m for m in daemon.store.messages(incident_id=inc.id) if m.purpose == "dispatch"]
    sms = msg.payload["params"]["sms"]
    assert sms["customers"] == "待核实" and sms["villages"] != "无", sms


def test_an_unplaced_outage_is_scored_before_a_known_small_outage(
        daemon: Daemon) -> None:  # noqa: F811
    """A known outage (T6 reported off on 城关II线: its fuse, T6 and T7, 80 households) and
    one on 马集I线 nobody could place, at the same time: the unplaced one (the whole line, 200
    households, may be off) comes first, not last."""
    feed(daemon, 1, ev("K1", "T6", start=at(0)),
         ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE))
    known, unplaced = sorted(incidents(daemon), key=lambda i: bool(i.estimate.transformers),
                             reverse=True)
    assert known.estimate.transformers == ("T6", "T7") and not unplaced.estimate.transformers
    known_priority = heading_priority(bodies(daemon, known.id, "dispatch")[0])
    unplaced_priority = heading_priority(bodies(daemon, unplaced.id, "dispatch")[-1])
    assert unplaced_priority > known_priority
    dispatched = [r for r in daemon.store.incident_log(unplaced.id) if r["stage"] == "dispatched"]
    assert dispatched and all(r["details"]["priority"] == unplaced_priority for r in dispatched)


def test_an_unplaced_outages_priority_stays_the_lines_at_later_revisions(
        daemon: Daemon) -> None:  # noqa: F811
    """The stored priority (the board's order, the crew's reassignment, the deadline checks)
    went back to nobody off at the next revision: 92 at the dispatch, 2 after a new ETR."""
    feed(daemon, 1, ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE))
    feed(daemon, 5, ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE,
                       expected_restoration=at(120), revision="2"))
    (inc,) = incidents(daemon)
    (row,) = daemon.store.load_incidents(open_only=False)
    dispatched = heading_priority(bodies(daemon, inc.id, "dispatch")[-1])
    assert inc.etr == at(120) and row["priority"] >= dispatched > 0


@pytest.fixture
def crewless(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, build_grid(crews=()))
    yield d
    d.close()


def test_an_unplaced_outage_waiting_for_a_crew_is_flagged_to_the_command_centre(
        crewless: Daemon) -> None:
    """No crew is free: the command centre's warning carries the priority, and its reasons
    say the outage is not placed and its households are to be checked (not 停电0户)."""
    feed(crewless, 1, ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE))
    (inc,) = incidents(crewless)
    (body,) = bodies(crewless, inc.id, "waiting_for_crew")
    assert heading_priority(body) > 0
    assert "优先原因：无法定位到台区，停电户数待核实" in body and "停电0户" not in body, body


def test_the_english_dispatch_of_an_unplaced_outage_states_no_count(
        daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", start=at(0), feeder="10kV马集线", area_text=UNREADABLE))
    (inc,) = incidents(daemon)
    topology = daemon.lifecycle.topology
    pr = crews.incident_priority(topology, inc, at(1), PriorityWeights(), "en")
    assert pr.unplaced and pr.assumed_customers == 200
    ctx = crews.dispatch_context(topology, inc, pr, None, at(90), "rural", at(1),
                                 ZoneInfo("Asia/Shanghai"), "en")
    body = Renderer("en").render("crew_dispatch", **ctx)
    assert "0 customers" not in body and "customers off: to be checked" in body, body
    assert UNREADABLE in body
    assert crews.dispatch_params(ctx, "en")["sms"]["customers"] == "to be checked"


# -- the priority rule -------------------------------------------------------------------------


@pytest.fixture
def grid() -> Topology:
    return build_grid()


def test_an_unplaced_outage_on_a_known_line_counts_the_line_s_customers(grid: Topology) -> None:
    p = score(grid, (), T0, T0, unplaced=True, feeder="F2")
    assert p.unplaced and p.customers == 0 and p.assumed_customers == 80
    assert p.breakdown["customers"] == pytest.approx(40 * math.log10(1 + 80))
    assert p.score == round(sum(p.breakdown.values()))
    assert p.reasons[0] == "无法定位到台区，停电户数待核实（按全线80户计）"
    assert summary(p) == "停电户数待核实（按全线80户计）"
    assert not says_zero_households(summary(p))
    assert summary(p, "en") == "customers off to be checked (scored as the whole line's 80)"


def test_an_unplaced_outage_on_no_known_line_counts_the_largest_line(grid: Topology) -> None:
    for feeder in ("?", None, "NO-SUCH-LINE"):
        p = score(grid, (), T0, T0 + timedelta(minutes=30), unplaced=True, feeder=feeder)
        assert p.assumed_customers == 200  # F1, the larger of the two
        assert p.reasons[0] == "无法定位到台区，停电户数待核实（按最大线路200户计）"
        assert p.reasons[-1] == "已停电30分钟"


def test_an_unplaced_outage_outranks_a_known_single_area_but_not_an_important_user(
        grid: Topology) -> None:
    unplaced = score(grid, (), T0, T0, unplaced=True, feeder="F1").score
    assert unplaced > max(score(grid, (t,), T0, T0).score for t in ("T2", "T3", "T5"))
    assert unplaced < score(grid, ("T1",), T0, T0).score  # 镇卫生院, special grade
    assert unplaced < score(grid, ("T4",), T0, T0).score  # a life-support household


def test_known_areas_win_over_the_unplaced_flag_and_no_flag_keeps_the_plain_score(
        grid: Topology) -> None:
    placed = score(grid, ("T2",), T0, T0, unplaced=True, feeder="F1")
    assert placed == score(grid, ("T2",), T0, T0) and not placed.unplaced
    plain = score(grid, (), T0, T0)
    assert plain.score == 0 and not plain.unplaced  # nothing off is still nothing
