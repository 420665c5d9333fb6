"""What the daemon's refit learnt is kept in the store, so a restarted daemon, a standby that
takes over and the board's and the CLI's cores localise with it at once — not with the
configured parameters until the next refit, up to a day later (refit_job.py ``REFIT_KEY``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outage_sentinel.assembly import localiser_params
from outage_sentinel.board.serve import build
from outage_sentinel.config import parse_config
from outage_sentinel.daemon import Daemon
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import OutageEvent
from outage_sentinel.fitting import downstream
from outage_sentinel.incidents import apply_event, resolve_event
from outage_sentinel.lifecycle import incident_columns
from outage_sentinel.localise import LocaliserParams
from outage_sentinel.refit_job import REFIT_KEY, RefitJob
from outage_sentinel.store import Store
from tests.test_fitting import DEVICES, TOPOLOGY

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def close_outs(store: Store, n: int, seed: int) -> None:
    """``n`` incidents closed with the device the crew found, 40 % of its areas reported."""
    rng = random.Random(seed)
    estimator = BayesEstimator()
    for k in range(n):
        device = rng.choice(DEVICES)
        reported = [a for a in downstream(TOPOLOGY, device) if rng.random() < 0.4] or \
            downstream(TOPOLOGY, device)[:1]
        event = OutageEvent(source="feed", event_id=f"E{k}", kind="fault", status="active",
                            start=NOW, transformers=tuple(reported))
        inc = apply_event(None, event, resolve_event(TOPOLOGY, event), TOPOLOGY, estimator,
                          NOW, lambda k=k: f"INC-{k}")
        with store.transaction() as conn:
            store.save_incident_in(conn, incident_columns(inc, NOW))
            store.log_in(conn, inc.id, NOW, "closed", "zhang", "", {"device": device})


@pytest.fixture
def daemon_config(tmp_path: Path, db_url: str) -> Iterator[dict[str, object]]:
    yield {"state_dir": str(tmp_path / "state"), "database": {"url": db_url},
           "sources": [{"name": "unused", "type": "replay",
                        "scenario": str(tmp_path / "x.jsonl")}],
           "channels": {"sink": {"type": "file", "path": str(tmp_path / "sink.jsonl")}},
           "command_centre": {"channel": "sink", "target": "指挥中心"}}


@pytest.fixture
def refit(store: Store) -> LocaliserParams:
    """The parameters a refit on 30 close-outs learnt (and kept in ``store``)."""
    close_outs(store, 30, seed=3)
    estimator = BayesEstimator()
    assert RefitJob(store, lambda: TOPOLOGY, estimator, LocaliserParams()).run_once(NOW)
    assert estimator.params != LocaliserParams()
    return estimator.params


def test_a_new_estimator_takes_up_what_the_last_refit_kept(store: Store,
                                                          refit: LocaliserParams) -> None:
    kept = store.kv_get(REFIT_KEY)
    assert kept["cases"] == 30 and kept["at"] == NOW.isoformat()
    fresh = BayesEstimator()
    assert RefitJob(store, lambda: TOPOLOGY, fresh, LocaliserParams()).restore()
    assert fresh.params == refit


def test_the_board_and_the_cli_cores_localise_with_the_refit(
        daemon_config: dict[str, object], store: Store, refit: LocaliserParams) -> None:
    config = parse_config({**daemon_config, "localisation": {"max_hypotheses": 3}})
    params = localiser_params(config, store)
    assert params.dead_detect_a == refit.dead_detect_a
    assert params.count_tilts == refit.count_tilts
    assert params.max_hypotheses == 3  # what the config sets and the refit does not fit


def test_a_kept_value_out_of_bounds_keeps_the_configured_parameters(
        store: Store, daemon_config: dict[str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    store.kv_set(REFIT_KEY, {"at": NOW.isoformat(), "cases": 20,
                             "values": {"open_report_true": 1.5}}, NOW)
    fresh = BayesEstimator()
    assert not RefitJob(store, lambda: TOPOLOGY, fresh, LocaliserParams()).restore()
    assert fresh.params == LocaliserParams()
    assert "localisation_refit_not_restored" in capsys.readouterr().out
    config = parse_config(daemon_config)
    assert localiser_params(config, store) == config.localisation.to_params()


def test_a_restarted_daemon_localises_with_the_refit_at_once(
        daemon_config: dict[str, object], blank_store: Store,
        capsys: pytest.CaptureFixture[str]) -> None:
    first = Daemon(parse_config(daemon_config), topology=TOPOLOGY, sources=[])
    first.start()
    try:
        close_outs(first.store, 25, seed=8)
        assert first.refit_job is not None and first.refit_job.run_once(NOW + timedelta(days=1))
        learnt = first.processor.estimator.params  # type: ignore[attr-defined]
    finally:
        first.close()
    capsys.readouterr()
    again = Daemon(parse_config(daemon_config), topology=TOPOLOGY, sources=[])
    again.start()
    try:
        assert again.processor.estimator.params == learnt  # type: ignore[attr-defined]
        assert learnt != parse_config(daemon_config).localisation.to_params()
        # The board's cores read the refit too; the start says it was taken up once.
        assert localiser_params(parse_config(daemon_config), again.store) == learnt
        assert capsys.readouterr().out.count("localisation_refit_restored") == 1
    finally:
        again.close()


def test_with_the_refit_off_the_configured_parameters_rule(
        daemon_config: dict[str, object], store: Store, refit: LocaliserParams) -> None:
    """An operator who turns the refit off (it went bad) gets the configured parameters,
    whatever an earlier refit kept."""
    config = parse_config({**daemon_config,
                           "localisation": {"refit_at": None, "dead_detect_a": 7.0}})
    assert localiser_params(config, store) == config.localisation.to_params()
    assert refit.dead_detect_a != 7.0
    d = Daemon(config, topology=TOPOLOGY, sources=[])
    d.start()
    try:
        assert d.processor.estimator.params.dead_detect_a == 7.0  # type: ignore[attr-defined]
    finally:
        d.close()


def test_the_board_follows_a_refit_made_after_it_started(
        daemon_config: dict[str, object], store: Store) -> None:
    """The daemon refits at night while the board runs: the board's next action
    (``device --clear``'s re-estimate) localises with what the refit learnt."""
    board = build(parse_config(daemon_config), store, lambda: TOPOLOGY, lambda: NOW)
    assert board.actions.core.processor.estimator.params == LocaliserParams()  # type: ignore[attr-defined]
    close_outs(store, 30, seed=3)
    daemon = BayesEstimator()
    assert RefitJob(store, lambda: TOPOLOGY, daemon, LocaliserParams()).run_once(
        NOW + timedelta(days=1))
    assert board.actions.core.processor.estimator.params == daemon.params  # type: ignore[attr-defined]
