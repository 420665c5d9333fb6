"""Follow-ups of the board's and the probabilities' fixes:

1. the card's ``device_reported`` is the shared per-device basis (:func:`crew.device_bases`),
   and a fault point part reported, part inferred reads on the page as the crew reads it;
2. every probability the page shows is the texts' own label (one rounding), the number kept
   for sorting;
3. the CLI names times in local time like the board (``--until``, a silence in force, a past
   ETR), and ``--force`` says it goes past silences too;
4. one rule says whether a crew is held to an arrival deadline, the lifecycle's and the
   board's: a crew on site has met it;
5. a care list does not overtake the outage notice it follows: a held outage notice is
   released without force; a notice that replaces it (an update) still overtakes it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel import crew as crews
from outage_sentinel.board import access, views
from outage_sentinel.board.app import Board, create_app
from outage_sentinel.board.serve import BoardServer, build
from outage_sentinel.cli import main
from outage_sentinel.config import load_config
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_grid
from tests.e2e_helpers import free_port, wait_for
from tests.test_board_app import PASSWORD, Clock, post, signed_in
from tests.test_board_audit_fixes import TZ, cli_config, cli_open, open_village
from tests.test_board_audit_fixes import demo as demo  # noqa: F401  (the fixture)
from tests.test_board_audit_fixes import env as env  # noqa: F401  (the fixture)
from tests.test_board_page import PASSWORD as PAGE_PASSWORD
from tests.test_board_page import _up
from tests.test_board_page import sign_in as page_sign_in

ROOT = Path(__file__).resolve().parents[1]
_ = cli_config  # the fixture, used by name

GridEnv = tuple[Any, Store, Clock, Board]


def grid_board(config_dir: Path, store: Store, clock: Clock) -> tuple[Board, Topology]:
    config = load_config(ROOT / "config.yaml").model_copy(update={"state_dir": config_dir})
    grid = build_grid()
    return build(config, store, lambda: grid, clock), grid


@pytest.fixture
def grid_env(store: Store, tmp_path: Path) -> Iterator[GridEnv]:
    """The board over the tests' grid (马集1号/2号熔断器), its clock just after ``T0``."""
    clock = Clock()
    clock.now = T0 + timedelta(minutes=1)
    assert store.add_user("ops", "operator", access.hash_password(PASSWORD), clock())
    board, _grid = grid_board(tmp_path, store, clock)
    yield create_app(board), store, clock, board


def ev(event_id: str, *areas: str, **kw: Any) -> OutageEvent:
    return OutageEvent(**{"source": "feed", "event_id": event_id, "kind": "fault",
                          "status": "active", "start": T0, "transformers": areas, **kw})


def ingest(board: Board, store: Store, now: datetime, *events: OutageEvent) -> str:
    """Fold ``events`` in as the daemon's poll would; the one open incident's id."""
    store.ingest("feed", PollResult(events=list(events)), now)
    board.actions.core.processor.process(now)
    (row,) = store.load_incidents(open_only=True)
    return str(row["id"])


def mixed_pair(board: Board, store: Store, now: datetime) -> str:
    """T1 and T2 (below 马集1号熔断器) reported off, the outage system naming 马集2号熔断器:
    a fault point of both, one reported, one inferred."""
    return ingest(board, store, now, ev("N1", "T1", "T2", device="FU2"))


# -- 1. device_reported is the shared basis; a mixed pair reads as the crew reads it ------------


def test_a_fault_point_the_command_centre_set_is_not_reported_by_a_source(grid_env: GridEnv
                                                                         ) -> None:
    """Set by the command centre on a device a source also named, the card said
    ``device_reported`` (a source's fact) while its certainty said 运行人员确认."""
    app, store, clock, board = grid_env
    iid = ingest(board, store, clock(), ev("N1", "T1", "T2", device="FU1"))
    client, csrf = signed_in(app, "ops")
    card = client.get(f"/api/incidents/{iid}").json()
    assert card["certainty"]["basis"] == "reported" and card["device_reported"] is True
    r = post(client, csrf, f"/api/incidents/{iid}/device", {"devices": "FU1", "note": "调度确认"})
    assert r.status_code == 200, r.text
    card = client.get(f"/api/incidents/{iid}").json()
    assert card["certainty"]["basis"] == "set"
    assert card["device_reported"] is False


def test_a_mixed_pairs_card_is_not_reported_and_carries_the_crews_words(grid_env: GridEnv
                                                                       ) -> None:
    app, store, clock, board = grid_env
    iid = mixed_pair(board, store, clock())
    client, _csrf = signed_in(app, "ops")
    card = client.get(f"/api/incidents/{iid}").json()
    inc = Incident.from_json(store.get_incident(iid)["state"])  # type: ignore[index]
    assert inc.estimate.probability is not None
    p = crews.percent_label(inc.estimate.probability)
    assert card["device_reported"] is False
    assert card["certainty"]["label"] == (
        f"马集2号熔断器数据源报告动作；马集1号熔断器疑似动作，两处同时动作的可能性{p}")


# -- 2. one rounding: the texts' label with every probability the page shows ------------------


@pytest.mark.parametrize("p", [0.99496, 0.304963, 0.0049996, 0.995, 0.5])
def test_the_cards_probability_label_is_the_texts(grid_env: GridEnv, p: float) -> None:
    """The card sent round(p, 4) and the page rounded it again: 0.99496 read ＞99% on the
    board and 约99% in the texts; 0.304963 31% against 约30%; 0.0049996 1% against ＜1%."""
    _app, store, clock, board = grid_env
    iid = ingest(board, store, clock(), ev("N1", "T1"))
    row = copy.deepcopy(store.get_incident(iid))
    assert row is not None
    row["state"]["estimate"]["probability"] = p
    row["state"]["estimate"]["hypotheses"] = [
        {**h, "probability": p} for h in row["state"]["estimate"]["hypotheses"][:1]]
    for language in ("zh", "en"):
        viewer = views.Viewer(language, TZ, phones=False)
        card = views.incident_card(row, board.topology(), clock(), viewer, crews.Commitments())
        assert card["probability_label"] == crews.percent_label(p, language)
        assert card["probability"] is not None  # the number stays, for sorting
        inc = Incident.from_json(row["state"])
        ranked = views.hypotheses(inc.estimate.hypotheses, board.topology(), language)
        assert [h["probability_label"] for h in ranked] == [crews.percent_label(p, language)]
        assert ranked[0]["probability"] == p


def test_a_card_without_a_probability_has_no_label(grid_env: GridEnv) -> None:
    app, store, clock, board = grid_env
    iid = ingest(board, store, clock(), ev("N1", "T1", "T2", device="FU1"))
    client, csrf = signed_in(app, "ops")
    assert post(client, csrf, f"/api/incidents/{iid}/device", {"devices": "FU1"}
                ).status_code == 200
    card = client.get(f"/api/incidents/{iid}").json()
    assert card["certainty"]["basis"] == "set" and card["probability_label"] == ""


def test_the_page_computes_no_percent_of_its_own() -> None:
    script = (ROOT / "outage_sentinel" / "board" / "static" / "board.js").read_text("utf-8")
    assert "function pct(" not in script
    assert "probability_label" in script


@pytest.fixture
def grid_served(tmp_path: Path) -> Iterator[tuple[str, Store, Board]]:
    """The board over the tests' grid served on a port of its own."""
    config = load_config(ROOT / "config.yaml")
    port = free_port()
    config = config.model_copy(update={
        "state_dir": tmp_path / "state",
        "board": config.board.model_copy(update={"enabled": True, "port": port})})
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url())
    store.migrate()
    store.add_user("ops", "operator", access.hash_password(PAGE_PASSWORD), datetime.now(UTC))
    grid = build_grid()
    board = build(config, store, lambda: grid)
    server = BoardServer(board)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), 10)
        yield url, store, board
    finally:
        server.stop()
        store.close()


@pytest.mark.slow
def test_the_page_states_a_mixed_pair_and_its_hypotheses_as_the_texts_do(
        browser: Any, grid_served: tuple[str, Store, Board]) -> None:
    """A pair, one device reported, one inferred, read "推断: 马集1号熔断器、马集2号熔断器
    (55%)" — neither which one a source named nor the texts' rounding; a crew on site
    shows its deadline met."""
    url, store, board = grid_served
    now = board.clock()
    iid = ingest(board, store, now, ev("N1", "T1", "T2", device="FU2", start=now))
    inc = Incident.from_json(store.get_incident(iid)["state"])  # type: ignore[index]
    label = crews.certainty(board.topology(), inc)["label"]
    page = page_sign_in(browser, url)
    row = f'#incidents-table tr[data-incident="{iid}"]'
    page.wait_for_selector(row, timeout=10000)
    assert label in (page.text_content(row) or "")
    page.goto(f"{url}/#/incident/{iid}")
    page.wait_for_selector("#certainty", timeout=10000)
    text = page.text_content("#view") or ""
    assert f"故障点: {label}" in text
    for h in inc.estimate.hypotheses:
        assert f"概率 {crews.percent_label(h['probability'])}" in text
    # On site: the deadline it was held to is met.
    board.actions.core.lifecycle.dispatch(iid, "board:ops")
    board.actions.core.lifecycle.arrive(iid, "board:ops")
    page.goto(f"{url}/")
    page.wait_for_selector(f"{row}.stage-on_site", timeout=10000)
    assert (page.text_content(f"{row} td.deadline") or "").strip() == "✓"
    page.context.close()


# -- 3. the CLI names local times -------------------------------------------------------------


def local_minute(at: datetime) -> str:
    return at.astimezone(TZ).strftime("%Y-%m-%d %H:%M")


def test_the_cli_names_a_past_until_in_local_time(cli_config: str, capsys: Any) -> None:
    past = local_minute(datetime.now(TZ) - timedelta(days=1))
    assert main(["--config", cli_config, "silence", "add", "--feeder", "CG01", "--until", past,
                 "--reason", "检修"]) != 0
    err = capsys.readouterr().err
    assert f"--until {past} has passed" in err, err


def test_the_cli_names_a_silences_end_in_local_time(cli_config: str, capsys: Any) -> None:
    """A release refused for a silence in force said its end in UTC ISO."""
    iid = cli_open(cli_config, capsys)
    store = Store(load_config(Path(cli_config)).database_url())
    try:
        # The village's care list (the last message of its chain: nothing overtakes it).
        mid = next(m.id for m in store.messages(incident_id=iid)
                   if m.purpose == "care" and m.audience == "liaison")
        assert main(["--config", cli_config, "outbox", "hold", str(mid)]) == 0
        until = local_minute(datetime.now(TZ) + timedelta(days=1))
        assert main(["--config", cli_config, "silence", "add", "--incident", iid, "--until",
                     until, "--reason", "村里要求", "--force"]) == 0
        (silence,) = store.silences(holding_at=datetime.now(TZ))
        capsys.readouterr()
        assert main(["--config", cli_config, "outbox", "release", str(mid)]) != 0
        err = capsys.readouterr().err
        assert f"silence {silence.id} in force until {until}; end it or --force" in err, err
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", err), err
        assert store.messages(ids=[mid])[0].status == "held"
    finally:
        store.close()


def test_the_cli_names_a_past_etr_in_local_time(cli_config: str, capsys: Any) -> None:
    iid = cli_open(cli_config, capsys)
    past = local_minute(datetime.now(TZ) - timedelta(hours=2))
    assert main(["--config", cli_config, "incidents", "etr", iid, past]) != 0
    err = capsys.readouterr().err
    assert f"{past} has passed" in err, err
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", err), err


def test_the_cli_force_says_it_goes_past_silences(cli_config: str, capsys: Any) -> None:
    for verb in ("retry", "release"):
        with pytest.raises(SystemExit):
            main(["--config", cli_config, "outbox", verb, "--help"])
        said = " ".join(capsys.readouterr().out.split())
        force = said.partition("--force")[2]
        assert "silence" in force, (verb, said)


# -- 4. one rule for the arrival deadline -----------------------------------------------------


def test_one_rule_holds_a_crew_to_its_arrival_deadline() -> None:
    """The lifecycle wrote its stages inline (no ``on_site``), the board its own (with it)."""
    from outage_sentinel.lifecycle import held_to_deadline

    assert vars(views)["held_to_deadline"] is held_to_deadline  # the board's is the core's
    # On site too: the crew was held to it and has met it (the board shows it met; the
    # daemon's checks pass over it).
    for stage in ("detected", "confirmed", "dispatched", "on_site", "partially_restored"):
        assert held_to_deadline("fault", stage), stage
    for stage in ("restored", "cancelled", "closed"):
        assert not held_to_deadline("fault", stage), stage
    assert not held_to_deadline("planned", "detected")
    assert not held_to_deadline("temporary", "confirmed")


def test_a_crew_on_site_has_met_its_deadline_and_is_not_escalated(env: Any) -> None:
    app, store, clock, board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    assert post(client, csrf, f"/api/incidents/{iid}/dispatch", {}).status_code == 200
    assert post(client, csrf, f"/api/incidents/{iid}/arrive", {}).status_code == 200
    clock.now += timedelta(hours=5)  # long past the deadline
    board.actions.core.lifecycle.check(clock())
    assert not [m for m in store.messages(incident_id=iid) if m.purpose.startswith("escalation")]
    detail = client.get(f"/api/incidents/{iid}").json()
    assert detail["stage"] == "on_site"
    assert detail["deadline"] and detail["deadline_state"] == "met"
    (card,) = [c for c in client.get("/api/overview").json()["incidents"] if c["id"] == iid]
    assert card["deadline"] and card["deadline_state"] == "met"


# -- 5. a care list does not overtake the outage notice it follows ----------------------------


def outage_notice(store: Store, iid: str) -> Any:
    """The outage notice of the liaison (group) who also gets the village's care list."""
    rows = store.messages(incident_id=iid)
    care = {m.recipient for m in rows if m.purpose == "care" and m.audience == "liaison"}
    return next(m for m in rows if m.purpose == "outage" and m.recipient in care)


def test_a_held_outage_notice_is_released_although_its_care_list_followed(env: Any) -> None:
    """Refused "out of date (overtaken by message N (care)); force resends it anyway"."""
    app, store, _clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)  # V003: special-care households
    m = outage_notice(store, iid)
    assert post(client, csrf, "/api/outbox/hold", {"ids": [m.id], "reason": "先核实"}
                ).status_code == 200
    r = post(client, csrf, "/api/outbox/release", {"ids": [m.id]})
    assert r.status_code == 200, r.text
    assert store.messages(ids=[m.id])[0].status == "pending"


def test_a_held_outage_notice_an_update_replaced_is_still_out_of_date(env: Any) -> None:
    app, store, clock, _board = env
    client, csrf = signed_in(app, "ops")
    iid = open_village(client, csrf)
    m = outage_notice(store, iid)
    assert post(client, csrf, "/api/outbox/hold", {"ids": [m.id], "reason": "先核实"}
                ).status_code == 200
    etr = local_minute(clock() + timedelta(hours=4))
    assert post(client, csrf, f"/api/incidents/{iid}/etr", {"time": etr}).status_code == 200
    update = next(o for o in store.messages(incident_id=iid)
                  if o.recipient == m.recipient and o.purpose == "update")
    r = post(client, csrf, "/api/outbox/release", {"ids": [m.id]})
    assert r.status_code == 409, r.text
    assert f"overtaken by message {update.id} (update)" in r.json()["error"]
    assert store.messages(ids=[m.id])[0].status == "held"


def test_a_care_list_overtakes_only_another_care_list() -> None:
    """The rule itself: a later care list or crew's progress adds to what a recipient was
    told, and replaces only one of its own purpose."""
    from outage_sentinel.resend import overtakes

    pairs = {("outage", "care"): False, ("outage", "progress_on_site"): False,
             ("outage", "update"): True, ("outage", "restored"): True,
             ("outage", "cancelled"): True, ("outage", "corrected"): True,
             ("outage", "outage"): True, ("update", "update"): True,
             ("care", "care"): True, ("care", "update"): False, ("care", "restored"): True,
             ("restored", "outage"): True, ("dispatch", "care"): False,
             ("dispatch", "dispatch"): True, ("dispatch", "stand_down"): True}
    for (first, later), expected in pairs.items():
        assert overtakes(later, first) is expected, (first, later)
