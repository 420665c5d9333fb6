"""A send whose outcome could not be recorded is never left in flight for good.

Two defences, both tested here on real databases against a real local robot service:

* the outcome write is tried again while the database is briefly away (PostgreSQL behind a
  TCP proxy that drops every connection for a while, right as the service answers);
* every delivery run sweeps the messages in flight that no send of this process holds and that
  were claimed longer ago than their channel's timeout plus a margin (the outcome was lost for
  longer, or the writer died): each counts as an interrupted send — sent once more, or
  dead-lettered as "delivery uncertain" when it already had one — so the message's chain moves
  on and its max age applies.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from outage_sentinel import sending
from outage_sentinel.channels.base import Message, SendResult
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import STUCK_MARGIN, Deliverer
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sending import message_of
from outage_sentinel.store import OutboxRow, Store
from tests.channels.conftest import FakeService, Reply
from tests.channels.conftest import service as service  # noqa: F401  (the fixture)
from tests.conftest import T0
from tests.e2e_helpers import wait_for

POLICY = RetryPolicy(initial_seconds=1, multiplier=1, max_seconds=1, jitter=0.0,
                     max_age_seconds=3600)
TIMEOUT = 2.0
BUSY = Reply(503, {"errcode": -1, "errmsg": "system busy"})


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


class Proxy:
    """A TCP proxy to the test PostgreSQL that can drop every connection and refuse new ones
    for a while (a failover, a network blip)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def down(self, seconds: float) -> None:
        self.up.clear()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        threading.Timer(seconds, self.up.set).start()

    def close(self) -> None:
        self.listener.close()


class DropsTheDatabaseOnReply(WeComChannel):
    """A real WeCom sender; the first reply it reads takes the database away for a while:
    the outcome is written while it is gone."""

    def __init__(self, proxy: Proxy, seconds: float, **kw: object) -> None:
        super().__init__("wx", **kw)  # type: ignore[arg-type]
        self.proxy, self.seconds, self.armed = proxy, seconds, True

    def send(self, message: Message) -> SendResult:
        result = super().send(message)
        if self.armed:
            self.armed = False
            self.proxy.down(self.seconds)
        return result


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[Proxy, Store]]:
    url = sa.engine.make_url(pg_url)
    proxy = Proxy(url.port or 5432)
    store = Store(url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False))
    store.migrate()
    yield proxy, store
    store.close()
    proxy.close()


def wecom(service: FakeService) -> WeComChannel:
    return WeComChannel("wx", robots={"g1": "key-g1"}, base_url=service.url, timeout=TIMEOUT)


def notice(purpose: str = "outage", n: int = 1) -> OutboxMessage:
    body = f"【{purpose}】MARK-{n}-{purpose}\n10kV 线路故障"
    return OutboxMessage(incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}",
                         purpose=purpose, channel="wx", target="g1", audience="liaison",
                         subject=body.splitlines()[0], body=body,
                         payload={"mentions": [], "params": {"village": f"MARK-{n}"}})


def enqueue(store: Store, *rows: OutboxMessage, now: datetime = T0) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, list(rows), now)


def by_purpose(store: Store) -> dict[str, OutboxRow]:
    return {m.purpose: m for m in store.messages()}


def texts(service: FakeService) -> list[str]:
    return [r.json()["text"]["content"].split("\n")[0] for r in service.requests]


def test_a_send_whose_writer_died_is_swept_and_its_chain_moves_on(
        store: Store, service: FakeService) -> None:
    """The outage notice was claimed and its outcome never written (the job died); the
    update after it waits for it. While the daemon keeps running, a run after the channel's
    timeout plus the margin takes it as interrupted: sent once more, then the update."""
    enqueue(store, notice("outage"), notice("update"))
    assert store.mark_inflight(by_purpose(store)["outage"].id, T0)
    d = Deliverer(store, {"wx": wecom(service)}, POLICY, Metrics())
    d.run_once(T0 + STUCK_MARGIN)  # not yet: it could still be under way somewhere
    assert by_purpose(store)["outage"].status == "inflight" and service.requests == []
    d.run_once(T0 + STUCK_MARGIN + timedelta(seconds=TIMEOUT + 1))
    rows = by_purpose(store)
    assert (rows["outage"].status, rows["outage"].interruptions) == ("sent", 1)
    assert rows["update"].status == "sent"
    assert texts(service) == ["【outage】MARK-1-outage", "【update】MARK-1-update"]


def test_a_swept_send_counts_toward_the_one_resend(store: Store, service: FakeService) -> None:
    """After a crash (one resend used up), a resend whose outcome is lost is the second
    unknown outcome: dead-lettered, never posted a third time."""
    enqueue(store, notice())
    ch = wecom(service)
    row = by_purpose(store)["outage"]
    assert store.mark_inflight(row.id, T0)
    ch.send(message_of(row))  # posted; the process dies
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    d.recover(T0)
    row = by_purpose(store)["outage"]
    assert store.mark_inflight(row.id, T0)
    ch.send(message_of(row))  # the resend is posted; its outcome is lost
    d.run_once(T0 + timedelta(minutes=5))
    m = by_purpose(store)["outage"]
    assert m.status == "dead" and (m.last_error or "").startswith("delivery uncertain: ")
    d.run_once(T0 + timedelta(minutes=10))
    assert len(service.requests) == 2


def test_the_sweep_leaves_a_send_under_way_alone(sqlite_store: Store,
                                                service: FakeService) -> None:
    service.default = Reply(200, {"errcode": 0, "errmsg": "ok"}, delay=1.5)
    d = Deliverer(sqlite_store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(sqlite_store, notice(), now=datetime.now(UTC))
    d.dispatch(datetime.now(UTC))
    try:
        assert wait_for(lambda: by_purpose(sqlite_store)["outage"].status == "inflight", 10)
        assert d.sweep(datetime.now(UTC) + timedelta(days=1)) == 0
        assert by_purpose(sqlite_store)["outage"].status == "inflight"
        assert wait_for(lambda: by_purpose(sqlite_store)["outage"].status == "sent", 10)
    finally:
        d.close(grace_seconds=5)
    assert (len(service.requests), by_purpose(sqlite_store)["outage"].interruptions) == (1, 0)


def test_a_new_term_s_recovery_leaves_this_process_s_own_sends_alone(
        sqlite_store: Store, service: FakeService) -> None:
    """The lease renewed makes this node the leader before the new term's recovery runs, so
    its delivery job may already be sending: recovery counted that send as interrupted (and
    with an earlier unknown send behind it, dead-lettered a notice the service then got)."""
    service.default = Reply(200, {"errcode": 0, "errmsg": "ok"}, delay=1.5)
    d = Deliverer(sqlite_store, {"wx": wecom(service)}, POLICY, Metrics())
    enqueue(sqlite_store, notice(), now=datetime.now(UTC))
    with sqlite_store.transaction() as conn:  # one unknown send before (a reply timeout)
        conn.execute(sa.text("UPDATE outbox SET interruptions = 1"))
    d.dispatch(datetime.now(UTC))
    try:
        assert wait_for(lambda: by_purpose(sqlite_store)["outage"].status == "inflight", 10)
        assert d.recover(datetime.now(UTC)) == 0
        assert wait_for(lambda: by_purpose(sqlite_store)["outage"].status == "sent", 10)
    finally:
        d.close(grace_seconds=5)
    m = by_purpose(sqlite_store)["outage"]
    assert (len(service.requests), m.interruptions, m.status) == (1, 1, "sent")


def test_a_database_blip_as_the_service_answers_is_waited_out(
        proxied: tuple[Proxy, Store], service: FakeService) -> None:
    """WeCom answers 503 and PostgreSQL is away for 1.5 s: the retry is recorded once it is
    back, and the message goes on the next run (no resend counted: the 503 is certain)."""
    proxy, store = proxied
    service.reply(BUSY)
    ch = DropsTheDatabaseOnReply(proxy, 1.5, robots={"g1": "key-g1"}, base_url=service.url,
                                 timeout=TIMEOUT)
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    enqueue(store, notice())
    d.run_once(T0)
    m = by_purpose(store)["outage"]
    assert (m.status, m.attempts, m.last_error) == ("pending", 1, 'HTTP 503: {"errcode": -1, '
                                                                 '"errmsg": "system busy"}')
    d.run_once(T0 + timedelta(seconds=10))
    m = by_purpose(store)["outage"]
    assert (m.status, m.interruptions, len(service.requests)) == ("sent", 0, 2)


def test_an_outcome_lost_to_a_longer_outage_is_swept_while_the_daemon_runs(
        proxied: tuple[Proxy, Store], service: FakeService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database stays away longer than the outcome is retried: the message is left in
    flight, and a later run takes it as interrupted (it may have been posted: counted)."""
    monkeypatch.setattr(sending, "RECORD_PATIENCE_SECONDS", 0.3)
    proxy, store = proxied
    service.reply(BUSY)
    ch = DropsTheDatabaseOnReply(proxy, 2.0, robots={"g1": "key-g1"}, base_url=service.url,
                                 timeout=TIMEOUT)
    d = Deliverer(store, {"wx": ch}, POLICY, Metrics())
    enqueue(store, notice())
    with contextlib.suppress(sa.exc.OperationalError):  # the gauges read while it is away
        d.run_once(T0)
    assert wait_for(proxy.up.is_set, 10)
    time.sleep(0.2)
    assert by_purpose(store)["outage"].status == "inflight"
    d.run_once(T0 + timedelta(seconds=30))
    assert by_purpose(store)["outage"].status == "inflight"  # within timeout + margin
    d.run_once(T0 + STUCK_MARGIN + timedelta(seconds=TIMEOUT + 1))
    m = by_purpose(store)["outage"]
    assert (m.status, m.interruptions, len(service.requests)) == ("sent", 1, 2)


def test_an_outcome_written_again_after_a_lost_acknowledgement_changes_nothing(
        store: Store) -> None:
    """The outcome writes retried while the database is away are the ones a repeat leaves
    as they are: a digest is stored once, an interrupted send counted once."""
    enqueue(store, notice("outage", 1), notice("outage", 2), notice("outage", 3))
    one, two, three = store.messages()
    for m in (one, two, three):
        assert store.mark_inflight(m.id, T0)
    digest = OutboxMessage(incident_id="", revision=0, recipient="digest:abc", purpose="digest",
                           channel="wx", target="g1", audience="liaison", subject="汇总",
                           body="汇总", payload={"mentions": []})
    first = store.record_digest(digest, [one.id, two.id], T0, "ok")
    assert store.record_digest(digest, [one.id, two.id], T0, "ok") == first
    assert [m.purpose for m in store.messages()].count("digest") == 1
    notes = {"allowed": 1, "resend_note": "again", "dead_note": "uncertain"}
    assert store.settle_interrupted(three.id, T0, T0, **notes) == "resend"  # type: ignore[arg-type]
    # asked again, it says what the first commit did, and counts nothing more
    assert store.settle_interrupted(three.id, T0, T0, **notes) == "resend"  # type: ignore[arg-type]
    assert [m.interruptions for m in store.messages(ids=[three.id])] == [1]
    assert store.mark_inflight(three.id, T0)
    assert store.settle_interrupted(three.id, T0, T0, **notes) == "dead"  # type: ignore[arg-type]
    # the dead letter is reported again (its caller tells the command centre), not lost
    assert store.settle_interrupted(three.id, T0, T0, **notes) == "dead"  # type: ignore[arg-type]
    assert [m.interruptions for m in store.messages(ids=[three.id])] == [2]
    # settled by another with its own words: not this caller's to report
    other = {**notes, "dead_note": "someone else's"}
    assert store.settle_interrupted(three.id, T0, T0, **other) is None  # type: ignore[arg-type]
