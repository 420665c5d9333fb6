"""Who may poll and send: one leader per region among the daemons sharing one PostgreSQL.

A leader holds its region's lease (``store/leases.py``) and renews it every third of
``ha.lease_seconds``. It acts only while it believes the lease valid by its own monotonic clock,
counted from *before* the renewal's request, so a leader that was stopped (SIGSTOP, a VM pause,
a lost connection) stops polling and sending before any standby can take the lease over.
Every write it makes carries its epoch and is refused by the database once another node holds
the lease (fencing), so a deposed leader that wakes up changes nothing. A single node without
``ha`` is always the leader of region ``default`` and nothing is fenced.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Connection

from outage_sentinel.config import Config
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.store import Store

#: Of the lease's length, the part a leader acts on after a renewal (the rest is margin for
#: the renewal round trip and the database's own view of time).
VALID_FRACTION = 0.8


class Leadership(Protocol):
    region: str

    def is_leader(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...


class SoleNode:
    """No active/standby: this daemon always leads."""

    def __init__(self, region: str = "default") -> None:
        self.region = region

    def is_leader(self) -> bool:
        return True

    def renew(self) -> bool:
        return True

    def release(self) -> None:
        pass


class Lease:
    """Leadership by a renewed lease with a fencing epoch."""

    def __init__(self, store: Store, region: str, node: str, seconds: float,
                 on_change: Callable[[bool], None] = lambda _leader: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store, self.region, self.node, self.seconds = store, region, node, seconds
        self.on_change, self.monotonic = on_change, monotonic
        self.epoch: int | None = None
        self.valid_until = 0.0
        #: What ``on_change`` was last told.
        self._acting = False
        self._lock = threading.Lock()
        self.log = get_logger(component="leadership", region=region, node=node)
        store.fence = self.fence
        self._bound_idle_transactions(seconds)

    def _bound_idle_transactions(self, seconds: float) -> None:
        """A leader frozen inside a transaction (SIGSTOP, a VM pause) would hold its shared
        lock on the lease row, and with it every takeover, for as long as it stays frozen.
        PostgreSQL ends such a session after ``seconds`` idle in its transaction (the work is
        rolled back and redone by whoever leads), so a standby waits at most that long."""
        millis = max(1000, int(seconds * 1000))

        def bound(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute(f"SET idle_in_transaction_session_timeout = {millis}")
            cursor.close()
            # The SET began a transaction: committed, it holds for the session; left open, the
            # connection's first rollback (a read's end) undid it.
            dbapi_conn.commit()

        event.listen(self.store.engine, "connect", bound)
        self.store.engine.dispose()  # connections opened before now get it when reopened

    def is_leader(self) -> bool:
        """Whether this node acts: it holds the lease by its own clock, and its term's
        beginning did not fail (``on_change(True)`` raised: told again at the next renewal,
        and until then it neither polls, sends nor writes)."""
        return self._acting and self._holds()

    def _holds(self) -> bool:
        return self.epoch is not None and self.monotonic() < self.valid_until

    def renew(self) -> bool:
        """Take or renew the lease; tells ``on_change`` when leadership starts or ends. A
        beginning that took longer than a renewal's interval (a term's start) is followed by
        one more renewal at once, so that the lease and this node's trust in it count from
        after it, not from before."""
        asked = self.monotonic()
        was, now = self._take()
        if now != was:
            self.log.info("leadership", leader=now, epoch=self.epoch)
            if self._tell(now, was) and now and self.monotonic() - asked > self.seconds / 3:
                was, now = self._take()
                if now != was:  # lost meanwhile (another node took the lapsed lease)
                    self.log.info("leadership", leader=now, epoch=self.epoch)
                    self._tell(now, was)
        return self._acting

    def _take(self) -> tuple[bool, bool]:
        """One bid: (whether this node acted before it, whether it does now)."""
        with self._lock:
            was = self._acting
            asked = self.monotonic()
            try:
                epoch = self.store.take_lease(self.region, self.node, self.seconds)
            except Exception as exc:  # the database is away: the lease lapses by itself
                self.log.warning("lease_renewal_failed", error=redact(repr(exc)))
            else:
                if was and epoch is not None and not self._same_term(epoch):
                    self.on_change(False)  # another node led meanwhile: a new term
                    was = False
                self.epoch = epoch
                self.valid_until = asked + self.seconds * VALID_FRACTION if epoch else 0.0
            now = self._acting = self._holds()
        return was, now

    def _same_term(self, epoch: int) -> bool:
        """Whether ``epoch`` continues this node's term: its own, or the next one when this
        node took its own lapsed lease back (no other node held it in between: every change
        of holder counts one, so another's would make it two or more)."""
        return self.epoch is not None and epoch in (self.epoch, self.epoch + 1)

    def _tell(self, leader: bool, was: bool) -> bool:
        """Tell ``on_change``; one that raised is told again at the next renewal (logged
        ``leadership_change_failed``, not acting meanwhile). Whether it succeeded."""
        try:
            self.on_change(leader)
            return True
        except Exception as exc:
            with self._lock:
                self._acting = was
            self.log.error("leadership_change_failed", leader=leader, error=redact(repr(exc)))
            return False

    def fence(self, conn: Connection) -> None:
        """The store's fence: refuse writes unless we hold the lease at our epoch."""
        from outage_sentinel.store import FencedError

        epoch = self.epoch
        if epoch is None or not self.is_leader():
            raise FencedError(f"{self.node} does not lead region {self.region}")
        self.store.check_lease_in(conn, self.region, self.node, epoch)

    def release(self) -> None:
        """On a clean stop: give the lease up so a standby takes over at once."""
        with self._lock:
            epoch, self.epoch, self.valid_until, self._acting = self.epoch, None, 0.0, False
        if epoch is not None:
            try:
                self.store.release_lease(self.region, self.node, epoch)
            except Exception as exc:
                self.log.warning("lease_release_failed", error=redact(repr(exc)))


def build_leadership(config: Config, store: Store, on_change: Callable[[bool], None]
                     ) -> Leadership:
    """A :class:`Lease` with ``ha.enabled`` (PostgreSQL), else a :class:`SoleNode`."""
    ha = config.ha
    if not ha.enabled:
        return SoleNode(config.lease_region)
    node = ha.node or f"{socket.gethostname()}:{os.getpid()}"
    return Lease(store, config.lease_region, node, ha.lease_seconds, on_change)
