"""Shared fixtures: a hand-made topology builder and a store on SQLite and PostgreSQL.

The ``store`` fixture is parametrized: every test using it runs on a temporary SQLite file and,
when the local PostgreSQL (``postgresql+psycopg2://postgres@127.0.0.1:5432/test``) is reachable,
on PostgreSQL too, each test in a schema of its own (created before, dropped after) so that
tests running side by side never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from outage_sentinel import logs
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, topology_from_records
from tests.browser import browser  # noqa: F401 (one Chromium for the whole session)

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("OUTAGE_SENTINEL_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
#: A fixed instant for tests that need "now" (pure code takes it as an argument).
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


# -- topology builder ---------------------------------------------------------------------------

_PREFIX_KINDS = (
    ("TIE", "switch"), ("SW", "switch"), ("SEC", "sectionalizer"), ("FU", "fuse"),
    ("S", "source"), ("B", "breaker"), ("R", "recloser"), ("J", "junction"), ("T", "transformer"),
)


def kind_from_id(node_id: str) -> str:
    """Kind guessed from the id prefix (S source, B breaker, R recloser, FU fuse, SW/TIE switch,
    SEC sectionalizer, J junction, T transformer) so small test networks read like diagrams."""
    for prefix, kind in _PREFIX_KINDS:
        if node_id.startswith(prefix):
            return kind
    raise ValueError(f"cannot guess the kind of {node_id!r}; pass it in kinds=")


def build_topology(
    edges: Iterable[tuple[str, str]],
    *,
    kinds: Mapping[str, str] | None = None,
    feeders: Mapping[str, str] | None = None,
    customers: Mapping[str, int] | None = None,
    villages: Mapping[str, str] | None = None,
    normally_open: Iterable[str] = (),
    names: Mapping[str, str] | None = None,
    node_extra: Mapping[str, Mapping[str, str]] | None = None,
    village_rows: Iterable[Mapping[str, Any]] | None = None,
    liaisons: Iterable[Mapping[str, Any]] = (),
    crews: Iterable[Mapping[str, Any]] = (),
    customer_rows: Iterable[Mapping[str, Any]] = (),
) -> Topology:
    """A validated :class:`Topology` from an edge list (through ``Topology.from_records``).

    Kinds come from ``kinds`` or the id prefix; every transformer gets 10 customers and village
    ``V1`` unless told otherwise; every node's ``feeder`` column is ``F1`` unless ``feeders``
    says otherwise; ``villages.csv`` defaults to one row per village id used.
    """
    edges = list(edges)
    kinds = dict(kinds or {})
    feeders = feeders or {}
    customers = customers or {}
    villages = villages or {}
    names = names or {}
    node_extra = node_extra or {}
    no = set(normally_open)
    ids = list(dict.fromkeys(n for e in edges for n in e))
    for nid in kinds:
        if nid not in ids:
            ids.append(nid)
    nodes = []
    for nid in ids:
        kind = kinds.get(nid) or kind_from_id(nid)
        is_tx = kind == "transformer"
        nodes.append({
            "id": nid, "kind": kind, "name": names.get(nid, f"name-{nid}"),
            "feeder": feeders.get(nid, "F1"), "normally_open": "1" if nid in no else "0",
            "village": villages.get(nid, "V1") if is_tx else "",
            "customers": customers.get(nid, 10) if is_tx else 0, "lat": "", "lon": "",
            **dict(node_extra.get(nid, {})),
        })
    if village_rows is None:
        used = sorted({n["village"] for n in nodes if n["village"]})
        village_rows = [{"id": v, "name": f"village-{v}", "township": "tw", "grid": "g1",
                         "area_type": "rural"} for v in used]
    return topology_from_records(nodes, edges, [dict(r) for r in village_rows],
                                 [dict(r) for r in liaisons], [dict(r) for r in crews],
                                 [dict(r) for r in customer_rows])


# The small two-feeder network most pure-core tests share:
#
#   F1: S1 ─ B1 ─ J1 ─ R1 ─ J2 ─ FU1 ─ T1 (V1, 40), T2 (V1, 30)
#                 │          └─ T3 (V2, 50)
#                 ├─ FU2 ─ T4 (V2, 20), T5 (V3, 60)
#                 └─ TIE (normally open) ─ J3
#   F2: S2 ─ B2 ─ J3 ─ FU3 ─ T6 (V4, 35), T7 (V4, 45)
GRID_EDGES = [
    ("S1", "B1"), ("B1", "J1"), ("J1", "R1"), ("R1", "J2"), ("J2", "FU1"), ("FU1", "T1"),
    ("FU1", "T2"), ("J2", "T3"), ("J1", "FU2"), ("FU2", "T4"), ("FU2", "T5"), ("J1", "TIE"),
    ("TIE", "J3"), ("S2", "B2"), ("B2", "J3"), ("J3", "FU3"), ("FU3", "T6"), ("FU3", "T7"),
]
GRID_CUSTOMERS = {"T1": 40, "T2": 30, "T3": 50, "T4": 20, "T5": 60, "T6": 35, "T7": 45}
GRID_VILLAGES = {"T1": "V1", "T2": "V1", "T3": "V2", "T4": "V2", "T5": "V3", "T6": "V4",
                 "T7": "V4"}
GRID_F2 = {"S2", "B2", "J3", "FU3", "T6", "T7"}
GRID_LIAISONS = [
    # V1: two liaisons in one WeCom group (one message, both mentioned) + an SMS manager.
    {"village": "V1", "name": "张三", "role": "village_liaison", "phone": "13800000001",
     "channel": "wecom", "target": "group-v1"},
    {"village": "V1", "name": "李四", "role": "grid_manager", "phone": "13800000002",
     "channel": "wecom", "target": "group-v1"},
    {"village": "V1", "name": "王五", "role": "transformer_manager", "phone": "13800000003",
     "channel": "sms", "target": ""},
    {"village": "V2", "name": "赵六", "role": "village_liaison", "phone": "13800000004",
     "channel": "dingtalk", "target": "group-v2"},
    {"village": "V3", "name": "钱七", "role": "village_liaison", "phone": "13800000005",
     "channel": "feishu", "target": "group-v3"},
    {"village": "V4", "name": "孙八", "role": "village_liaison", "phone": "13800000006",
     "channel": "sms", "target": ""},
]
GRID_VILLAGE_ROWS = [
    {"id": "V1", "name": "马集村", "township": "马集镇", "grid": "g1", "area_type": "rural"},
    {"id": "V2", "name": "刘庄村", "township": "马集镇", "grid": "g1", "area_type": "rural"},
    {"id": "V3", "name": "王楼村", "township": "", "grid": "g2", "area_type": "remote"},
    {"id": "V4", "name": "城关社区", "township": "城关镇", "grid": "g3", "area_type": "urban"},
]


GRID_CREWS = [{"id": "CR1", "name": "马集抢修班", "phone": "13900000001", "channel": "wecom",
               "target": "crew-1", "feeders": "F1"},
              {"id": "CR2", "name": "城关抢修班", "phone": "13900000002", "channel": "wecom",
               "target": "crew-2", "feeders": "F2"}]


def build_grid(crews: Iterable[Mapping[str, Any]] = GRID_CREWS) -> Topology:
    """The two-feeder network drawn above, with villages, liaisons, crews and customers."""
    feeders = {n: ("F2" if n in GRID_F2 else "F1") for e in GRID_EDGES for n in e}
    return build_topology(
        GRID_EDGES,
        feeders=feeders,
        customers=GRID_CUSTOMERS,
        villages=GRID_VILLAGES,
        normally_open=["TIE"],
        names={"S1": "10kV马集线", "S2": "10kV城关线", "FU1": "马集1号熔断器",
               "FU2": "马集2号熔断器", "R1": "马集重合器", "B1": "马集出线开关",
               **{t: f"台区{t}" for t in GRID_CUSTOMERS}},
        node_extra={"S1": {"feeder_name": "马集I线", "substation": "马集变"},
                    "S2": {"feeder_name": "城关II线", "substation": "城关变"}},
        village_rows=GRID_VILLAGE_ROWS,
        liaisons=GRID_LIAISONS,
        crews=crews,
        customer_rows=[
            {"id": "C-HOSP", "transformer": "T1", "name": "镇卫生院", "phone": "13700000001",
             "importance": "special", "tags": ""},
            {"id": "C-LIFE", "transformer": "T4", "name": "居民甲", "phone": "13700000002",
             "importance": "", "tags": "life_support;elderly_alone"},
            {"id": "C-PLAIN", "transformer": "T2", "name": "商店", "phone": "13700000003",
             "importance": "", "tags": ""},
        ],
    )


@pytest.fixture
def grid() -> Topology:
    return build_grid()


# -- stores -------------------------------------------------------------------------------------

_pg_state: dict[str, Any] = {}


def _pg_unreachable_reason() -> str | None:
    """None when the test PostgreSQL answers; else why not (checked once per session)."""
    if "reason" not in _pg_state:
        try:
            engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # driver missing, refused, auth, unknown database ...
            _pg_state["reason"] = (f"PostgreSQL at {PG_URL} is not reachable "
                                   f"({type(exc).__name__}: {str(exc).strip()[:200]})")
    return _pg_state["reason"]  # type: ignore[no-any-return]


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret registered for redaction during the test (those other tests or a config
    load registered would turn parts of the messages and errors it compares into ***); the
    registry is restored afterwards."""
    monkeypatch.setattr(logs, "_secrets", set())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sentinel.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema of their own (dropped after)."""
    reason = _pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database: a temporary SQLite file, or an isolated PostgreSQL schema."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def blank_store(db_url: str) -> Iterator[Store]:
    """A store on an empty, un-migrated database (both backends)."""
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store(blank_store: Store) -> Store:
    """A migrated store on SQLite and on PostgreSQL."""
    blank_store.migrate()
    return blank_store


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A migrated store on a temporary SQLite file only."""
    s = Store(sqlite_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
