"""Time-zone fixes: PostgreSQL sessions in UTC whatever the server's default (HA leases),
replay's naive absolute times in the config's zone, ``ami.timezone`` validated, and
``quarantine list`` in local time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from outage_sentinel.config import Config, ConfigError, parse_config
from outage_sentinel.store import FencedError, Store
from outage_sentinel.store.base import PG_SESSION_OPTIONS, pg_options
from tests.conftest import PG_URL
from tests.e2e_helpers import ROOT, make_config
from tests.test_cli import cli

CN = ZoneInfo("Asia/Shanghai")


# -- 1. PostgreSQL sessions in UTC ----------------------------------------------------------------

@pytest.fixture
def pg_schema(pg_url: str) -> str:
    """The fresh schema of ``pg_url`` (the fixture's ``options=-csearch_path=...``)."""
    options = sa.engine.make_url(pg_url).query["options"]
    assert isinstance(options, str) and options.startswith("-csearch_path=")
    return options.removeprefix("-csearch_path=")


def _show(store: Store, setting: str) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(sa.text(f"SHOW {setting}")).scalar_one())


def _lease_cycle(store: Store, standby: Store) -> None:
    """Take, renew, write fenced, hand over and be refused, as the daemon's Lease does."""
    from outage_sentinel.leadership import Lease

    store.migrate()
    leader = Lease(store, "county", "a", 30)
    other = Lease(standby, "county", "b", 30)
    before = datetime.now(UTC)
    assert leader.renew() and leader.epoch == 1
    # stored as naive UTC: expires about 30 s from now, not 8 h off
    expires = store.lease("county")["expires_at"]  # type: ignore[index]
    assert isinstance(expires, datetime)
    assert before + timedelta(seconds=25) < expires < datetime.now(UTC) + timedelta(seconds=35)
    assert not other.renew()  # a's lease is live
    assert leader.renew() and leader.epoch == 1  # renewed at the same epoch
    store.kv_set("x", 1, datetime.now(UTC))  # a fenced write by the leader
    assert store.kv_get("x") == 1
    leader.release()
    assert other.renew() and other.epoch == 2  # a clean release hands over at once
    with pytest.raises(FencedError):  # the old epoch is refused by the database
        with store.transaction(fenced=False) as conn:
            store.check_lease_in(conn, "county", "a", 1)
    standby.kv_set("x", 2, datetime.now(UTC))
    assert standby.kv_get("x") == 2


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for s in made:
        s.close()


def test_pgoptions_asking_for_beijing_time_is_overridden_and_its_other_options_kept(
        pg_schema: str, monkeypatch: pytest.MonkeyPatch, stores: list[Store]) -> None:
    # A server whose default zone is Asia/Shanghai, simulated for this process's sessions
    # (the shared server's and role's defaults are not to be touched):
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={pg_schema} -c timezone=Asia/Shanghai")
    plain = sa.create_engine(PG_URL)
    try:
        with plain.connect() as conn:  # the simulation works on a plain engine
            assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "Asia/Shanghai"
    finally:
        plain.dispose()
    a, b = Store(PG_URL, region="county"), Store(PG_URL, region="county")
    stores += [a, b]
    assert _show(a, "timezone") == "UTC"
    assert _show(a, "search_path") == pg_schema  # the user's other option still applies
    _lease_cycle(a, b)
    with a.engine.connect() as conn:  # every table landed in the test's schema
        assert conn.execute(sa.text("SELECT to_regclass(:t)"),
                            {"t": f'"{pg_schema}".leases'}).scalar_one() is not None


def test_a_url_asking_for_beijing_time_still_gets_utc_sessions(
        pg_schema: str, stores: list[Store]) -> None:
    url = sa.engine.make_url(PG_URL).update_query_dict(
        {"options": f"-csearch_path={pg_schema} -ctimezone=Asia/Shanghai"}
    ).render_as_string(hide_password=False)
    a, b = Store(url, region="county"), Store(url, region="county")
    stores += [a, b]
    _lease_cycle(a, b)  # (before the fix: the fresh lease already "lapsed", writes refused)
    assert _show(a, "timezone") == "UTC"
    assert _show(a, "search_path") == pg_schema
    # now() and the stored naive-UTC times agree
    with a.engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        local = conn.execute(sa.text("SELECT now()::timestamp")).scalar_one()
    assert abs(now.replace(tzinfo=None) - local) < timedelta(seconds=1)
    assert now.utcoffset() == timedelta(0)


def test_the_default_test_store_is_utc_and_sqlite_is_untouched(
        pg_url: str, tmp_path: Path, stores: list[Store]) -> None:
    s = Store(pg_url)
    stores.append(s)
    assert _show(s, "timezone") == "UTC"
    lite = Store(f"sqlite:///{tmp_path / 'x.db'}")
    stores.append(lite)
    assert lite.migrate() >= 1


def test_pg_options_puts_utc_last_after_the_users_options(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert pg_options(None) == PG_SESSION_OPTIONS
    assert pg_options("-c search_path=x") == f"-c search_path=x {PG_SESSION_OPTIONS}"
    assert pg_options(("-c a=1", "-c b=2")) == f"-c a=1 -c b=2 {PG_SESSION_OPTIONS}"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=5000")
    assert pg_options(None) == f"-c statement_timeout=5000 {PG_SESSION_OPTIONS}"
    assert pg_options("") == PG_SESSION_OPTIONS  # options given (empty): libpq ignores the env


# -- 2. replay: naive absolute times in the config's timezone -------------------------------------

def _config(tmp: Path, sources: list[dict[str, object]], **extra: object) -> Config:
    return parse_config({"state_dir": str(tmp / "state"), "topology": str(ROOT / "topology"),
                         "channels": {"cc": {"type": "file", "path": str(tmp / "cc.jsonl")}},
                         "sources": sources, **extra})


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin"])
def test_replay_reads_naive_absolute_times_in_the_configs_timezone(tmp_path: Path,
                                                                   zone: str) -> None:
    from outage_sentinel.assembly import build_source

    scenario = tmp_path / "s.jsonl"
    scenario.write_text(json.dumps({
        "at": 0, "event_id": "F1", "kind": "fault", "status": "active",
        "start": "2026-12-07 08:30:00", "expected_restoration": "2026-12-07T12:00:00+08:00",
        "end": "2026-12-07 13:00", "transformers": ["T-CG01-001"]}) + "\n", encoding="utf-8")
    cfg = _config(tmp_path, [{"name": "demo", "type": "replay", "scenario": str(scenario)}],
                  timezone=zone)
    src = build_source(cfg.sources[0], cfg)
    ev = src.poll(datetime(2026, 12, 7, 1, 0, tzinfo=UTC)).events[0]
    tz = ZoneInfo(zone)
    assert ev.start == datetime(2026, 12, 7, 8, 30, tzinfo=tz)
    assert ev.end == datetime(2026, 12, 7, 13, 0, tzinfo=tz)
    # a time with an offset keeps it
    assert ev.expected_restoration == datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


# -- 3. ami.timezone validated --------------------------------------------------------------------

AMI_SOURCES = [
    {"name": "ami", "type": "mqtt", "topics": ["a/#"], "client_id": "c",
     "ami": {"timezone": "Asia/Shangai"}},
    {"name": "drop", "type": "file_drop", "directory": "/tmp", "ami": {"timezone": "Asia/Shangai"}},
]


@pytest.mark.parametrize("source", AMI_SOURCES, ids=lambda s: str(s["type"]))
def test_an_unknown_ami_timezone_is_refused_naming_the_key(tmp_path: Path,
                                                           source: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, [source])
    assert "sources[0].ami.timezone" in str(caught.value)
    assert "'Asia/Shangai' is not a known IANA zone" in str(caught.value)
    good = {**source, "ami": {"timezone": "Asia/Shanghai"}}
    parsed = _config(tmp_path, [good]).sources[0]
    assert getattr(parsed, "ami").timezone == "Asia/Shanghai"  # noqa: B009


def test_check_refuses_an_ami_timezone_typo(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, sources=[{**AMI_SOURCES[1], "directory": str(tmp_path)}])
    r = cli("--config", str(cfg), "check")
    assert r.returncode != 0
    assert "ami.timezone" in r.stdout + r.stderr and "Asia/Shangai" in r.stdout + r.stderr


# -- 4. quarantine list in the config's timezone --------------------------------------------------

@pytest.mark.parametrize(("zone", "shown"), [("Asia/Shanghai", "2026-12-07 09:15:00+08:00"),
                                             ("America/New_York", "2026-12-06 20:15:00-05:00")])
def test_quarantine_list_shows_local_times_with_their_offset(tmp_path: Path, zone: str,
                                                             shown: str) -> None:
    from outage_sentinel.config import load_config
    from outage_sentinel.events import PollResult, Quarantined

    cfg = make_config(tmp_path, timezone=zone)
    (tmp_path / "state").mkdir()
    store = Store(load_config(cfg).database_url())
    store.migrate()
    try:
        received = datetime(2026, 12, 7, 9, 15, tzinfo=CN).astimezone(UTC)
        store.ingest("feed", PollResult(quarantined=[Quarantined("feed", "startTime: bad", "{}")]),
                     received)
    finally:
        store.close()
    listed = cli("--config", str(cfg), "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert shown in listed.stdout, listed.stdout
    assert "01:15:00" not in listed.stdout
