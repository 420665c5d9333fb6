"""The store's engine, schema upgrades and transactions, shared by every table's methods."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url

from outage_sentinel.store.schema import (
    MIGRATIONS,
    metadata,
    schema_version_t,
    sqlite_begin,
    sqlite_pragmas,
    utc_now,
)

#: The PostgreSQL advisory lock held while the schema is upgraded (any fixed number).
MIGRATION_LOCK = 0x05E471E1

#: The session setting every PostgreSQL connection is opened with. Times are stored as naive
#: UTC (``timestamp without time zone``) and the lease SQL compares them with ``now()``, which
#: PostgreSQL renders in the session's TimeZone: any zone but UTC (a server initialised on a
#: Beijing host defaults to Asia/Shanghai) would shift every lease by hours.
PG_SESSION_OPTIONS = "-c timezone=UTC"

#: The drivers built on libpq, which take the ``options`` startup parameter.
LIBPQ_DRIVERS = ("psycopg2", "psycopg")


def pg_options(given: str | tuple[str, ...] | None) -> str:
    """The libpq ``options`` to connect with: the user's own (the URL's ``options=``, else the
    ``PGOPTIONS`` environment variable, which libpq ignores once ``options`` is passed) with
    :data:`PG_SESSION_OPTIONS` last, so that it wins over a ``timezone`` set there."""
    if given is None:
        given = os.environ.get("PGOPTIONS", "")
    elif not isinstance(given, str):
        given = " ".join(given)
    return f"{given.strip()} {PG_SESSION_OPTIONS}".strip()


def _set_utc_session(dbapi_conn: Any, _record: Any) -> None:
    """Connect hook for PostgreSQL drivers without libpq ``options``: the session in UTC."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        cursor.close()
    dbapi_conn.commit()


class StoreBase:
    """One engine over SQLite or PostgreSQL; thread-safe through the engine pool."""

    def __init__(self, url: str, *, echo: bool = False, region: str = "default") -> None:
        self.url = url
        #: The region this store reads and writes (``region.name``): events, incidents, outbox
        #: rows and key/value state of other regions sharing the database are not seen.
        self.region = region
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        libpq = self.dialect == "postgresql" and parsed.get_driver_name() in LIBPQ_DRIVERS
        if libpq:  # every session in UTC, whatever the server's or role's default zone
            kwargs["connect_args"] = {"options": pg_options(parsed.query.get("options"))}
        database = parsed.database or ""
        #: The SQLite file, absolute (None for PostgreSQL and in-memory SQLite).
        self.sqlite_path: Path | None = (
            Path(database).resolve() if self.dialect == "sqlite" and database
            and database != ":memory:" and not database.startswith("file:") else None)
        self._file_identity: tuple[int, int] | None = None
        if self.sqlite_path is not None:
            kwargs["creator"] = self._sqlite_connect
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)
            event.listen(self.engine, "begin", sqlite_begin)
        elif self.dialect == "postgresql" and not libpq:
            event.listen(self.engine, "connect", _set_utc_session)
        #: Statements built once and reused (the storm path executes them thousands of times).
        self.statements: dict[Any, Any] = {}

    def _sqlite_connect(self) -> sqlite3.Connection:
        """A connection to the SQLite file. Once the file was made, no connection makes or opens
        another file at its path: a new file (an empty one where the old was deleted, or a copy
        moved over it) would reset the WAL index (``-shm``) that open connections have mapped,
        and the process die of SIGBUS before the file watch could stop it cleanly."""
        assert self.sqlite_path is not None
        if self._file_identity is None:
            return sqlite3.connect(self.sqlite_path, check_same_thread=False, timeout=30)
        problem = self.database_file_problem()
        if problem is not None:  # replaced: opening the new file would reset the -shm too
            raise sqlite3.OperationalError(f"database file {self.sqlite_path} {problem}")
        uri = f"file:{urllib.parse.quote(str(self.sqlite_path))}?mode=rw"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force. On SQLite the
        write lock is taken first (:meth:`transaction`): two processes starting together (the
        daemon and an operator's CLI) queue, where a deferred transaction that read the version
        and then wrote failed with "database is locked" and the daemon exited 5."""
        with self.transaction(fenced=False) as conn:
            if self.dialect == "postgresql":  # nodes starting together upgrade one at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            schema_version_t.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version_t.c.version))).scalar() or 0
            for version, step in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                step(conn)
                conn.execute(schema_version_t.insert().values(version=version, applied_at=utc_now()))
            version_now = len(MIGRATIONS) if current < len(MIGRATIONS) else int(current)
        self.database_file_problem()  # the file exists now: remember which one it is
        return version_now

    def database_file_problem(self) -> str | None:
        """``"missing"`` or ``"replaced"`` once the SQLite file at :attr:`sqlite_path` is not
        the one this store opened (compared by device and inode); None while it is, and always
        for PostgreSQL and in-memory SQLite. The first call remembers the file (``migrate``
        makes it). SQLite itself notices neither: it goes on writing into the deleted file."""
        if self.sqlite_path is None:
            return None
        try:
            st = os.stat(self.sqlite_path)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:  # e.g. a directory on the path removed or made unreadable
            return f"missing ({exc.strerror or exc})"
        identity = (st.st_dev, st.st_ino)
        if self._file_identity is None:
            self._file_identity = identity
        return None if identity == self._file_identity else "replaced"

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(schema_version_t.c.version))).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()

    #: Called first in every write transaction when set (active/standby: refuses the writes
    #: of a node that no longer holds its region's lease; see ``leadership.py``).
    fence: Callable[[Connection], None] | None = None

    @contextmanager
    def transaction(self, fenced: bool = True) -> Iterator[Connection]:
        """One database transaction; commits on success, rolls back on any exception."""
        with self.engine.connect() as conn:
            # SQLite: take the write lock up front so two writers (daemon threads, the operator
            # CLI) queue on busy_timeout instead of failing with "database is locked" mid-way.
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                if fenced and self.fence is not None:
                    self.fence(conn)
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A consistent read of several queries (one deferred transaction, rolled back):
        unlike :meth:`transaction` it takes no write lock on SQLite, so a reader (the board
        rebuilding its cards) never holds up the daemon's writers, nor waits for them."""
        with self.engine.connect() as conn, conn.begin() as tx:
            yield conn
            tx.rollback()

    def in_region(self, table: Table) -> Any:
        """The condition selecting ``table``'s rows of this store's region."""
        return table.c.region == self.region

    def insert_stmt(self, table: Table) -> Any:
        """INSERT for ``table`` in the dialect that supports ON CONFLICT."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"database {self.dialect!r} is not supported (sqlite, postgresql)")

    def ping(self) -> None:
        """Raise unless the database answers a trivial query (the readiness probe)."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def count(self, table: str) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
