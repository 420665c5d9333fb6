"""The board's pure parts: the sign-in throttle, passwords and roles, the deadline colours, what
separates two hypotheses, the map's layout (geographic, or schematic without coordinates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outage_sentinel.board import access
from outage_sentinel.board.geo import map_payload, schematic
from outage_sentinel.board.views import Viewer, deadline_state, hypotheses, source_health
from tests.conftest import build_grid

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("failures", "seconds_since_last", "allowed", "wait"), [
    (0, 0, 5, 0.0),          # nothing failed
    (4, 0, 5, 0.0),          # under the limit
    (5, 0, 5, 2.0),          # the limit reached: 2 s
    (5, 1.5, 5, 0.5),        # counted from the last failure
    (6, 0, 5, 4.0),          # doubling
    (9, 0, 5, 32.0),
    (30, 0, 5, 300.0),       # capped at 5 min
    (5, 3, 5, 0.0),          # waited long enough
    (1, 0, 1, 2.0),          # a stricter limit
])
def test_sign_in_wait(failures: int, seconds_since_last: float, allowed: int,
                      wait: float) -> None:
    last = T0 - timedelta(seconds=seconds_since_last)
    times = [last - timedelta(seconds=i) for i in range(failures)][::-1]
    assert access.sign_in_wait(times, T0, allowed) == pytest.approx(wait)


def test_failures_outside_the_window_do_not_count() -> None:
    old = [T0 - access.FAILURE_WINDOW - timedelta(seconds=i + 1) for i in range(20)]
    assert access.sign_in_wait(old, T0, 5) == 0.0


def test_passwords_roles_and_names() -> None:
    hashed = access.hash_password("long enough password")
    assert hashed.startswith("$argon2id$")
    assert access.password_matches(hashed, "long enough password")
    assert not access.password_matches(hashed, "long enough passwore")
    assert not access.password_matches("not a hash", "x")
    with pytest.raises(access.AccessError, match="10 characters"):
        access.hash_password("short")
    with pytest.raises(access.AccessError, match="roles: viewer, operator, admin"):
        access.check_role("root")
    with pytest.raises(access.AccessError, match="no spaces"):
        access.check_name("two words")
    assert access.csrf_ok("abc", "abc") and not access.csrf_ok("abc", None)
    assert not access.csrf_ok("abc", "")
    session = access.new_session()
    assert access.token_hash(session.token) == session.token_hash != session.token


@pytest.mark.parametrize(("minutes_left", "arrived", "state"), [
    (60, False, "ok"), (14, False, "amber"), (-1, False, "red"), (-30, True, "met")])
def test_deadline_colours(minutes_left: float, arrived: bool, state: str) -> None:
    assert deadline_state(T0 + timedelta(minutes=minutes_left), T0, arrived) == state


def test_what_separates_hypotheses_is_named() -> None:
    grid = build_grid()
    ranked = [{"devices": ["B1"], "probability": 0.7, "customers": 10,
               "transformers": ["T1", "T2", "T3"]},
              {"devices": ["F2"], "probability": 0.3, "customers": 4,
               "transformers": ["T3", "T4"]}]
    out = hypotheses(ranked, grid)
    assert out[0]["only_here"] == [] and out[0]["only_first"] == []
    assert out[1]["areas"] == 2
    assert len(out[1]["only_here"]) == 1 and len(out[1]["only_first"]) == 2


def test_source_health_reads_what_the_poller_wrote() -> None:
    viewer = Viewer("zh", UTC, phones=False)
    ok = source_health("feed", {"ok": True, "last_ok": T0.isoformat(), "error": ""}, viewer)
    assert ok["ok"] and ok["last_ok_local"] == "2026-12-04 08:00"
    bad = source_health("feed", {"ok": False, "error": "HTTP 503 from 13812345678"}, viewer)
    assert not bad["ok"] and bad["last_ok"] is None and "13812345678" not in bad["error"]
    assert source_health("feed", "garbage", viewer)["ok"] is False


def test_a_bundle_without_coordinates_gets_a_schematic_tree() -> None:
    grid = build_grid()
    x, y, placed = schematic(grid)
    pos = grid.columns.pos
    energised = {n for n in grid.nodes if n in grid.sources or grid.parent_of(n) is not None}
    # An open tie switch belongs to no feeder tree.
    assert {n for n in grid.nodes if placed[pos[n]]} == energised
    for node in energised:  # each child one step right of its parent, not above its row
        parent = grid.parent_of(node)
        if parent is not None:
            assert x[pos[node]] == x[pos[parent]] + 1
            assert y[pos[node]] >= y[pos[parent]]
    leaves = [n for n in energised if not grid.children(n)]
    assert len({y[pos[n]] for n in leaves}) == len(leaves)  # one row per leaf
    payload = map_payload(grid)
    assert payload["mode"] == "schematic" and payload["level"] == "detail"
    assert sum(len(f["lines"]) for f in payload["feeders"]) == len(energised) - len(grid.sources)
    one = grid.feeders[0]
    detail = map_payload(grid, feeders=[one])
    assert [f["id"] for f in detail["feeders"]] == [one]


def test_a_large_bundle_is_sent_as_villages_first_and_feeders_on_demand() -> None:
    from pathlib import Path

    from outage_sentinel.topology import load_bundle

    demo = load_bundle(Path(__file__).resolve().parents[1] / "topology")
    county = map_payload(demo, detail_limit=10)
    assert county["level"] == "county" and county["areas"] == [] and county["devices"] == []
    assert sum(v[4] for v in county["villages"]) == len(demo.transformers)
    assert sum(v[5] for v in county["villages"]) == demo.total_customers
    assert sum(len(f["lines"]) for f in county["feeders"]) == len(county["villages"])
    whole = map_payload(demo)
    assert whole["level"] == "detail" and len(whole["areas"]) == len(demo.transformers)
    one = demo.feeders[0]
    detail = map_payload(demo, feeders=[one], detail_limit=10)
    assert detail["level"] == "detail" and {f["id"] for f in detail["feeders"]} == {one}
    assert 0 < len(detail["areas"]) < len(demo.transformers)


def test_the_card_names_the_reports_the_fault_point_does_not_explain() -> None:
    """FU2 estimated while T1 (not below it) is reported off: the card carries T1 for the
    page's warning; with R1 (above T1) estimated it carries nothing."""
    from outage_sentinel.board.views import incident_card
    from outage_sentinel.crew import Commitments
    from outage_sentinel.incidents import Estimate, Incident
    from outage_sentinel.lifecycle import incident_columns

    grid = build_grid()
    now = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    viewer = Viewer("zh", UTC, phones=False)

    def card(devices: tuple[str, ...], kind: str = "fault") -> dict[str, object]:
        areas = ("T1", "T4")
        inc = Incident(id="INC-1", feeder="F1", kind=kind, status="active", revision=1,
                       start=now, etr=None, end=None, cause="", area_text="", members={},
                       estimate=Estimate(devices, 0.97, areas, grid.customers_of(areas),
                                         tuple(grid.villages_of(areas))),
                       scope={"T1": "reported", "T4": "inferred"})
        return incident_card(incident_columns(inc, now), grid, now, viewer, Commitments())

    assert card(("FU2",))["unexplained"] == ["台区T1"]
    assert card(("B1",))["unexplained"] == []
    assert card(("FU2",), kind="planned")["unexplained"] == []
