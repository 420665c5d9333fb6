"""The weather the daemon tells its localiser: a storm an operator declared (``outage-sentinel
storm``) and the protective devices held by the county's other open fault incidents; and the
``localisation`` config section that sets the localiser's parameters."""

from __future__ import annotations

import getpass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from outage_sentinel import cli
from outage_sentinel.command_steps import CommandSteps
from outage_sentinel.config import ConfigError, load_config, parse_config
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.incidents import Evidence
from outage_sentinel.localise import FaultContext, devices_per_feeder
from outage_sentinel.store import MIGRATIONS, Store, schema_version_t
from outage_sentinel.triage import STORM_KEY
from tests.localise_fixture import build
from tests.test_lifecycle import T0, Harness, county, ev


class Watching(BayesEstimator):
    """The daemon's own estimator, noting the context of every estimate."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: list[FaultContext] = []

    def within(self, context: FaultContext) -> BayesEstimator:
        self.seen.append(context)
        return super().within(context)


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Harness, Watching]:
    h = Harness(tmp_path)
    watching = Watching(params=h.config.localisation.to_params())
    h.daemon.processor.estimator = watching
    yield h, watching
    h.daemon.close()


def test_protective_devices_are_counted_per_feeder() -> None:
    # F1: S1, B1, FU1, FU2; F2: S2, B2, FU3 (sources count, as in the localiser)
    assert devices_per_feeder(county()) == {"F1": 4, "F2": 3}


def test_open_faults_on_other_feeders_reach_the_localiser(
        watched: tuple[Harness, Watching]) -> None:
    h, watching = watched
    h.feed(ev("A", "T4", "T5"))  # a fault on F2
    assert watching.seen[-1] == FaultContext(faults_elsewhere=0, devices_elsewhere=4)
    h.feed(ev("B", "T3"))  # then one on F1: F2's fault is elsewhere for it
    assert watching.seen[-1] == FaultContext(faults_elsewhere=1, devices_elsewhere=3)
    h.feed(ev("A", "T4", "T5", status="restored"))
    h.feed(ev("C", "T1"))  # F2 is back: nothing open elsewhere any more
    assert watching.seen[-1].faults_elsewhere == 0


def test_a_declared_storm_reaches_the_localiser_until_it_ends(
        watched: tuple[Harness, Watching]) -> None:
    h, watching = watched
    store = h.daemon.store
    store.kv_set(STORM_KEY, {"declared": True, "by": "operator:zhang",
                             "until": (T0 + timedelta(hours=2)).isoformat()}, T0)
    gauge = lambda: h.daemon.metrics.registry.get_sample_value(  # noqa: E731
        "outage_sentinel_storm_declared")
    h.feed(ev("A", "T4"))
    assert watching.seen[-1].storm is True and gauge() == 1
    h.at(180)  # past its end
    h.feed(ev("B", "T1"))
    assert watching.seen[-1].storm is False and gauge() == 0
    store.kv_set(STORM_KEY, {"declared": True, "by": "operator:zhang", "until": None}, h.now)
    h.feed(ev("C", "T3"))
    assert watching.seen[-1].storm is True


def test_county_context_can_be_switched_off(tmp_path: Path) -> None:
    h = Harness(tmp_path, localisation={"county_context": False})
    try:
        watching = Watching()
        h.daemon.processor.estimator = watching
        h.feed(ev("A", "T4"), ev("B", "T1"))
        assert watching.seen and all(c == FaultContext() for c in watching.seen)
    finally:
        h.daemon.close()


def test_the_estimator_localises_in_the_context_it_is_given() -> None:
    # F1 clearly out; one dead report and one call under F2 (see test_localise WEAK_F2)
    topo = build()
    evidence = Evidence(dead=frozenset({"T1", "T2", "T3"}), alive=frozenset({"T7", "T4", "T8"}),
                        calls={"T1": 4, "T2": 3, "T3": 1})
    estimator = BayesEstimator()
    assert estimator(topo, evidence).devices == ("F1",)
    assert set(estimator.within(FaultContext(storm=True))(topo, evidence).devices) == {"F1", "F2"}
    assert estimator.within(FaultContext())(topo, evidence).devices == ("F1",)


def test_localisation_config_sets_the_localiser_parameters() -> None:
    base = {"sources": [{"name": "r", "type": "replay", "scenario": "x.jsonl"}],
            "channels": {"f": {"type": "file", "path": "s.jsonl"}}}
    params = parse_config({**base, "localisation": {"fault_prior": 1e-4, "max_devices": 3}}
                          ).localisation.to_params()
    assert (params.fault_prior, params.max_devices) == (1e-4, 3)
    assert params.storm_fault_prior == parse_config(base).localisation.to_params().storm_fault_prior
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "localisation": {"fault_prior": 2, "storm_prior": 0.1}})
    text = str(err.value)
    assert "localisation.fault_prior" in text and "localisation.storm_prior" in text


def test_storm_verbs_declare_show_and_end(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "sources: [{name: r, type: replay, scenario: x.jsonl}]\n"
        "channels: {f: {type: file, path: s.jsonl}}\n", encoding="utf-8")
    run = lambda *a: cli.main(["--config", str(config), *a])  # noqa: E731
    assert run("storm", "status") == 0
    assert "no storm declared" in capsys.readouterr().out
    assert run("storm", "declare", "--hours", "6", "--actor", "zhang", "--note", "台风蓝色预警") == 0
    out = capsys.readouterr().out
    assert "storm declared by operator:zhang" in out and "台风蓝色预警" in out and "until 20" in out
    # in the config's zone (Asia/Shanghai by default), as the board shows them
    assert out.count("+08:00") == 2 and "+00:00" not in out
    assert run("storm", "declare", "--hours", "0") == cli.EXIT_USAGE
    assert "--hours must be greater than 0" in capsys.readouterr().err
    assert run("storm", "end", "--actor", "li") == 0
    assert "no storm declared (ended by operator:li" in capsys.readouterr().out
    # declared, refused and ended: each in the audit trail the board shows
    store = Store(load_config(config).database_url())
    trail = [e for e in reversed(store.audit_trail()) if e["kind"] == "cli"]
    store.close()
    assert [(e["actor"], e["action"], e["ok"]) for e in trail] == [
        ("operator:zhang", "storm", True), (f"operator:{getpass.getuser()}", "storm", False),
        ("operator:li", "storm", True)]
    assert '"declare": true' in trail[0]["detail"] and "台风蓝色预警" in trail[0]["detail"]
    assert "--hours must be greater than 0" in trail[1]["detail"]
    assert trail[2]["detail"].startswith("storm ended")


def test_an_incident_of_two_devices_counts_two_operated_elsewhere(
        watched: tuple[Harness, Watching]) -> None:
    """The storm context counts devices operated, not incidents: a fault on F1 whose fault
    point is FU1 and FU2 is two devices elsewhere for a fault on F2."""
    h, watching = watched
    h.feed(ev("B", "T1", "T2", "T3"))
    (row,) = h.daemon.store.load_incidents(open_only=True)
    CommandSteps(h.daemon.lifecycle, h.daemon.processor, h.daemon.clock).device(
        str(row["id"]), "FU1,FU2", "ops")
    h.feed(ev("A", "T4", "T5"))
    assert watching.seen[-1] == FaultContext(faults_elsewhere=2, devices_elsewhere=4)
    h.feed(ev("A", "T4", "T5", status="restored"))
    h.feed(ev("B", "T1", "T2", "T3", status="restored"))
    h.feed(ev("C", "T4"))
    assert watching.seen[-1].faults_elsewhere == 0


def test_incidents_written_before_the_device_count_count_one_device(db_url: str) -> None:
    """Schema 11 -> 12: an open fault incident with a fault device counts one until its next
    revision writes its count."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        schema_version_t.create(conn)
        for version, step in enumerate(MIGRATIONS[:11], start=1):
            step(conn)
            conn.execute(schema_version_t.insert().values(version=version, applied_at=T0))
        # The first migration builds today's table: take the column away, as it was at 11.
        conn.execute(sa.text("ALTER TABLE incidents DROP COLUMN fault_devices"))
        for iid, device in (("INC-1", "FU1"), ("INC-2", None)):
            conn.execute(sa.text(
                "INSERT INTO incidents (id, feeder, kind, status, revision, start, state, "
                "created_at, updated_at, fault_device) VALUES (:id, 'F1', 'fault', 'active', "
                "1, :t, '{}', :t, :t, :device)"),
                {"id": iid, "t": T0.replace(tzinfo=None), "device": device})
    engine.dispose()
    store = Store(db_url)
    try:
        assert store.migrate() == len(MIGRATIONS)
        with store.transaction() as conn:
            assert store.open_fault_devices_by_feeder_in(conn) == {"F1": 1}
    finally:
        store.close()
