"""Region leases for active/standby daemons on one PostgreSQL (see ``leadership.py``).

Times are the database's (``now()``), so the nodes' clocks do not matter. Taking or renewing a
lease locks its row (``FOR UPDATE``); a fenced write locks it shared (``FOR SHARE``) and checks
that the writer still holds the lease at its epoch, so a takeover waits for the deposed
leader's last transaction and every later one of its transactions is refused.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from outage_sentinel.store.base import StoreBase
from outage_sentinel.store.schema import leases_t


class FencedError(RuntimeError):
    """A write by a node that no longer leads its region (refused, rolled back)."""


#: The ``application_name`` a bid for a lease row carries while it runs (``SET LOCAL``): a
#: takeover never ends another node's bid, only what the bids wait for.
BID_NAME = "outage-sentinel lease bid"

#: The sessions a waiting bid is blocked by, followed through the bids queued before it: a
#: row lock's second waiter is blocked by the first waiter (which holds the row's tuple lock),
#: not by the session holding the row, so the chain is followed through bids (and only
#: through bids: a holder's own waits are none of the takeover's business) to its ends.
BLOCKERS_SQL = """
WITH RECURSIVE chain(pid, bid) AS (
    SELECT b.pid, coalesce(a.application_name = :bid_name, false)
    FROM unnest(pg_blocking_pids(:probe)) AS b(pid)
    LEFT JOIN pg_stat_activity a ON a.pid = b.pid
  UNION
    SELECT n.pid, coalesce(a.application_name = :bid_name, false)
    FROM chain c CROSS JOIN LATERAL unnest(pg_blocking_pids(c.pid)) AS n(pid)
    LEFT JOIN pg_stat_activity a ON a.pid = n.pid
    WHERE c.bid
)
SELECT DISTINCT pid FROM chain WHERE NOT bid
"""


def mark_bid(conn: Connection, seconds: float) -> None:
    """Make the transaction on ``conn`` a bid for a lease row of ``seconds``: it waits for
    the row a quarter of the lease at most, and is known as a bid (:data:`BID_NAME`)."""
    conn.execute(text(f"SET LOCAL lock_timeout = {max(100, int(seconds * 250))}"))
    conn.execute(text(f"SET LOCAL application_name = '{BID_NAME}'"))


class LeaseStore(StoreBase):
    """The ``leases`` table."""

    def take_lease(self, region: str, node: str, seconds: float) -> int | None:
        """Take or renew the region's lease for ``node``; its epoch, or None while another
        node's lease is live. A node whose own lease lapsed takes it at a new epoch. Raises
        (the caller tries again) when the row stays locked for a quarter of the lease, after
        ending the sessions that hold it if the lease has lapsed (:meth:`end_lapsed_holders`)."""
        try:
            return self._take_lease(region, node, seconds)
        except OperationalError as exc:
            if "lock timeout" in str(exc):
                self.end_lapsed_holders(region, seconds)
            raise

    def end_lapsed_holders(self, region: str, seconds: float = 1.0) -> int:
        """End the database sessions holding the region's lease row while its lease has
        lapsed: a leader frozen in the middle of a statement (not idle in a transaction,
        which PostgreSQL ends by itself) would otherwise block every takeover for as long as
        it stays frozen. Its work is rolled back; returns how many sessions were ended. Only
        the sessions this region's row waits for are ended (:class:`_Probe`): other
        regions' leaders, whose fenced transactions hold their own rows, go on, and so do the
        other standbys' bids queued for the row (:data:`BID_NAME`)."""
        with self.engine.connect() as conn:
            if not self._lapsed(conn, region):
                return 0
            probe = _Probe(self, region, seconds)
            try:
                holders = probe.holders(conn)
                if not holders:
                    return 0
                ended = conn.execute(text(  # still lapsed: no new leader's session is ended
                    "SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS integer[])) "
                    "AS pid WHERE EXISTS (SELECT 1 FROM leases WHERE region = :region "
                    "AND expires_at < now())"), {"pids": holders, "region": region}).all()
                conn.commit()
                return len(ended)
            finally:
                probe.finish()

    def _lapsed(self, conn: Connection, region: str) -> bool:
        return bool(conn.execute(select(leases_t.c.expires_at < func.now())
                                 .where(leases_t.c.region == region)).scalar())

    def _take_lease(self, region: str, node: str, seconds: float) -> int | None:
        ttl = timedelta(seconds=seconds)
        with self.transaction(fenced=False) as conn:
            if self.dialect == "postgresql":  # a held row: give up, and see why, in time
                mark_bid(conn, seconds)
            now = conn.execute(select(func.now())).scalar_one()
            row = conn.execute(select(leases_t).where(leases_t.c.region == region)
                               .with_for_update()).first()
            if row is None:
                stmt = self.insert_stmt(leases_t).values(
                    region=region, holder=node, epoch=1, expires_at=now + ttl, renewed_at=now)
                if conn.execute(stmt.on_conflict_do_nothing(index_elements=["region"])).rowcount:
                    return 1
                return None  # another node inserted it first
            live = row.expires_at > now
            if row.holder != node and live:
                return None
            epoch = row.epoch if row.holder == node and live else row.epoch + 1
            conn.execute(update(leases_t).where(leases_t.c.region == region).values(
                holder=node, epoch=epoch, expires_at=now + ttl, renewed_at=now))
            return int(epoch)

    def release_lease(self, region: str, node: str, epoch: int) -> None:
        """Give the lease up at once (a clean stop): a standby need not wait for it to lapse."""
        with self.transaction(fenced=False) as conn:
            conn.execute(update(leases_t).where(
                leases_t.c.region == region, leases_t.c.holder == node,
                leases_t.c.epoch == epoch).values(expires_at=func.now()))

    def check_lease_in(self, conn: Connection, region: str, node: str, epoch: int) -> None:
        """Raise :class:`FencedError` unless ``node`` holds the live lease at ``epoch``."""
        held = conn.execute(select(leases_t.c.epoch).where(
            leases_t.c.region == region, leases_t.c.holder == node, leases_t.c.epoch == epoch,
            leases_t.c.expires_at > func.now()).with_for_update(read=True)).first()
        if held is None:
            raise FencedError(f"{node} no longer leads region {region} (epoch {epoch})")

    def lease(self, region: str) -> dict[str, object] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(leases_t).where(leases_t.c.region == region)).first()
            return dict(row._mapping) if row else None


class _Probe:
    """A bid for a region's lease row on a connection of its own that, while it waits,
    shows who holds the row: the ends of the chain of sessions it waits for
    (:data:`BLOCKERS_SQL`; a row lock is not listed in ``pg_locks`` otherwise).
    The probe changes nothing and gives up after a quarter of the lease."""

    def __init__(self, store: LeaseStore, region: str, seconds: float) -> None:
        self.store, self.region, self.seconds = store, region, seconds
        self.millis = max(100, int(seconds * 250))
        self.pid: int | None = None
        self.ready, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._bid, name="lease-probe", daemon=True)
        self.thread.start()

    def _bid(self) -> None:
        try:
            with self.store.engine.connect() as conn, conn.begin() as tx:
                mark_bid(conn, self.seconds)
                self.pid = int(conn.execute(select(func.pg_backend_pid())).scalar_one())
                self.ready.set()
                conn.execute(select(leases_t.c.region).where(leases_t.c.region == self.region)
                             .with_for_update())
                tx.rollback()
        except Exception:  # noqa: S110 - timed out, or its holder ended: nothing to do
            pass
        finally:
            self.ready.set()
            self.done.set()

    def holders(self, conn: Connection) -> list[int]:
        """The sessions the probe waits for (none once it got the row or gave up)."""
        self.ready.wait(self.millis / 1000 + 5)
        while self.pid is not None and not self.done.is_set():
            pids = conn.execute(text(BLOCKERS_SQL),
                                {"probe": self.pid, "bid_name": BID_NAME}).scalars().all()
            if pids:
                return sorted(int(p) for p in pids)
            self.done.wait(0.01)
        return []

    def finish(self) -> None:
        self.thread.join(self.millis / 1000 + 5)
