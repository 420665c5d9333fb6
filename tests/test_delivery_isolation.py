"""Channels isolated (issue 10 item 5): a hung service holds up no other channel or target.

Real senders (WeCom, DingTalk, Feishu, Aliyun SMS) post to real local HTTP servers; a *hung*
service accepts the connection, reads the request and never answers. Delivery runs as the
daemon runs it — :meth:`Deliverer.dispatch` every ``INTERVAL`` seconds on its own thread — on
real SQLite and PostgreSQL. Waits are on conditions with generous deadlines; the one latency
assertion is the issue's acceptance (interval + 1 s from enqueue), and the hung service's
timeout is far longer than that, so a hung service anywhere in the critical path fails it by
tens of seconds, not by a hair.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from outage_sentinel.channels.base import Channel
from outage_sentinel.channels.common import robot_rate_key
from outage_sentinel.channels.dingtalk import DingTalkChannel
from outage_sentinel.channels.feishu import FeishuChannel
from outage_sentinel.channels.sms import SmsChannel, out_id
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.delivery import Deliverer
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import DAY, DEFAULT_LIMITS, RateLimit
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.store import OutboxRow, Store
from tests.e2e_helpers import wait_for

INTERVAL = 0.5
#: The issue's acceptance: delivered within the delivery interval + 1 s of being queued.
BOUND = INTERVAL + 1.0
#: A hung service's timeout: far beyond BOUND, so a hung send in the critical path is obvious.
HUNG_TIMEOUT = 30.0
POLICY = RetryPolicy(initial_seconds=0.2, multiplier=2, max_seconds=1, jitter=0.0,
                     max_age_seconds=3600)

#: One reply every sender reads as delivered: WeCom/DingTalk ``errcode``, Feishu ``code``,
#: Aliyun ``Code``.
OK_BODY = {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success", "Code": "OK",
           "BizId": "biz-1", "Message": "OK", "RequestId": "r-1"}


class Sink:
    """A local notification service. Requests whose path+query ``hang`` matches are read and
    never answered (until :meth:`release`); the rest are answered ``OK_BODY`` after
    ``delay`` seconds. Every request is recorded with its arrival time (monotonic)."""

    def __init__(self, hang: Callable[[str], bool] = lambda _url: False) -> None:
        self.hang = hang
        self.delay = 0.0
        self.received: list[tuple[float, str, bytes]] = []
        self.hung: list[tuple[float, str]] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                with sink._lock:
                    hang = sink.hang(self.path)
                    if hang:
                        sink.hung.append((now, self.path))
                    else:
                        sink.received.append((now, self.path, body))
                if hang:
                    sink._release.wait()  # accepted, read, never answered
                    self.close_connection = True
                    return
                time.sleep(sink.delay)
                payload = json.dumps(OK_BODY).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def _matching(self, needle: str) -> list[float]:
        """Arrival times of the answered requests whose URL, body or (for a form body) decoded
        field values contain ``needle``."""
        with self._lock:
            got = list(self.received)
        out = []
        for t, path, body in got:
            text = body.decode("utf-8", errors="replace")
            fields = " ".join(v for vs in parse_qs(text).values() for v in vs)
            if needle in path or needle in text or needle in fields:
                out.append(t)
        return out

    def count(self, needle: str = "") -> int:
        return len(self._matching(needle))

    def first_arrival(self, needle: str) -> float | None:
        times = self._matching(needle)
        return min(times) if times else None

    def forms(self) -> list[dict[str, str]]:
        """The answered requests' form bodies (Aliyun SMS), decoded."""
        with self._lock:
            bodies = [body for _, _, body in self.received]
        return [{k: v[0] for k, v in parse_qs(b.decode()).items()} for b in bodies]

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


class Ticker:
    """Calls ``dispatch`` every ``interval`` seconds on its own thread, as the daemon's
    scheduler does (one run at a time)."""

    def __init__(self, deliverer: Deliverer, interval: float = INTERVAL) -> None:
        self.deliverer = deliverer
        self.interval = interval
        self.runs = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.deliverer.dispatch(datetime.now(UTC))
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.runs += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


@pytest.fixture
def sinks() -> Iterator[dict[str, Sink]]:
    made = {name: Sink() for name in ("wecom", "dingtalk", "feishu", "sms")}
    yield made
    for s in made.values():
        s.close()


def robot(name: str, sink: Sink, targets: list[str], timeout: float = 5.0) -> Channel:
    """A real robot sender for ``targets``; each target's token is ``tok-<target>``."""
    limits = DEFAULT_LIMITS[name]
    if name == "wecom":
        return WeComChannel(name, robots={t: f"tok-{t}" for t in targets}, base_url=sink.url,
                            timeout=timeout, rate_limits=limits)
    cls = DingTalkChannel if name == "dingtalk" else FeishuChannel
    return cls(name, robots={t: (f"tok-{t}", "sec-0123456789") for t in targets},
               base_url=sink.url, timeout=timeout, rate_limits=limits)


def sms(sink: Sink, timeout: float = 5.0, per_day: int = 50) -> SmsChannel:
    return SmsChannel("sms", access_key_id="AKID0123", access_key_secret="secret-0123456789",
                      sign_name="清河供电", template_code="SMS_1", endpoint=sink.url + "/",
                      timeout=timeout, rate_limits=(RateLimit(per_day, DAY),))


def marker(channel: str, target: str, n: int) -> str:
    """What identifies notice ``n`` for ``target`` on the wire: a marker in a robot's text; the
    ``OutId`` (derived from the outbox key) for an SMS."""
    if channel == "sms":
        return out_id(f"INC-{n}/1/village:V{n}:{channel}:{target}/outage")
    return f"{channel}-{target}-{n}"


def notice(channel: str, target: str, n: int, mentions: tuple[str, ...] = ()) -> OutboxMessage:
    """Outbox row ``n`` for ``target``; its text carries ``<channel>-<target>-<n>``."""
    marker = f"{channel}-{target}-{n}"
    body = f"【故障停电通知】{marker}\n10kV 线路故障，停电，抢修中。"
    return OutboxMessage(
        incident_id=f"INC-{n}", revision=1, recipient=f"village:V{n}:{channel}:{target}",
        purpose="outage", channel=channel, target=target, audience="liaison",
        subject=body.splitlines()[0], body=body,
        payload={"mentions": list(mentions), "params": {"village": marker}},
    )


def enqueue(store: Store, rows: list[OutboxMessage]) -> float:
    """Queue ``rows`` now; returns the monotonic time just before they became visible."""
    t = time.monotonic()
    with store.transaction() as conn:
        store.enqueue_in(conn, rows, datetime.now(UTC))
    return t


def by_target(store: Store) -> dict[tuple[str, str], list[OutboxRow]]:
    out: dict[tuple[str, str], list[OutboxRow]] = {}
    for r in store.messages():
        out.setdefault((r.channel, r.target), []).append(r)
    return out


def test_a_hung_channel_does_not_delay_the_others(store: Store, sinks: dict[str, Sink]) -> None:
    """The issue's case: Feishu accepts and never answers; WeCom, DingTalk and SMS liaisons are
    told within the delivery interval + 1 s, every time, while Feishu's sends hang."""
    sinks["feishu"].hang = lambda _url: True
    channels = {
        "feishu": robot("feishu", sinks["feishu"], ["fs-a", "fs-b"], timeout=HUNG_TIMEOUT),
        "wecom": robot("wecom", sinks["wecom"], ["wx-a", "wx-b"]),
        "dingtalk": robot("dingtalk", sinks["dingtalk"], ["dd-a"]),
        "sms": sms(sinks["sms"]),
    }
    d = Deliverer(store, channels, POLICY)
    # Feishu's notices are the oldest: under serial delivery they would go first and hang.
    enqueue(store, [notice("feishu", t, n) for t in ("fs-a", "fs-b") for n in range(3)])
    healthy = [("wecom", "wx-a"), ("wecom", "wx-b"), ("dingtalk", "dd-a"),
               ("sms", "13800000001")]
    latencies: dict[str, float] = {}
    try:
        with Ticker(d) as ticker:
            assert wait_for(lambda: len(sinks["feishu"].hung) == 2, 30)  # both robots hang
            for wave in range(3):  # three waves, each while Feishu is still hung
                queued = enqueue(store, [notice(ch, t, wave) for ch, t in healthy])
                for ch, t in healthy:
                    m = marker(ch, t, wave)
                    assert wait_for(lambda ch=ch, m=m: sinks[ch].first_arrival(m)  # type: ignore[misc]
                                    is not None, 30), m
                    latencies[f"{ch}/{t}/{wave}"] = sinks[ch].first_arrival(m) - queued  # type: ignore[operator]
            assert len(sinks["feishu"].hung) == 2  # still the first two sends: nothing re-read
            # The healthy jobs end (they may still be recording the last outcome); Feishu's
            # stay busy, holding only themselves.
            assert wait_for(lambda: d.busy_groups() == {("feishu", "fs-a"), ("feishu", "fs-b")},
                            30), d.busy_groups()
        assert ticker.slowest < BOUND  # the delivery run itself never waits for a send
    finally:
        sinks["feishu"].release()
        d.close(grace_seconds=HUNG_TIMEOUT)
    print("\nlatency from enqueue (s): " + ", ".join(f"{k}={v:.3f}" for k, v in latencies.items()))
    assert max(latencies.values()) < BOUND, latencies
    groups = by_target(store)
    for ch, t in healthy:  # each healthy notice delivered once, recorded as sent
        assert [r.status for r in groups[(ch, t)]] == ["sent"] * 3, (ch, t)
        assert [sinks[ch].count(marker(ch, t, n)) for n in range(3)] == [1, 1, 1], (ch, t)
    for t in ("fs-a", "fs-b"):
        assert all(r.status != "sent" for r in groups[("feishu", t)])


def test_a_hung_target_is_retried_then_dead_lettered_and_others_get_each_message_once(
        store: Store, sinks: dict[str, Sink]) -> None:
    """One WeCom group hangs, the channel's other groups are delivered on time and exactly
    once; the hung group's messages time out, are retried per the policy and dead-lettered at
    the max age — its sends never reach anyone else."""
    wecom = sinks["wecom"]
    wecom.hang = lambda url: "tok-hung" in url
    short = RetryPolicy(initial_seconds=0.2, multiplier=2, max_seconds=1, jitter=0.0,
                        max_age_seconds=8)
    d = Deliverer(store, {"wecom": robot("wecom", wecom, ["hung", "ok1", "ok2"], timeout=1.0)},
                  short)
    enqueue(store, [notice("wecom", "hung", n) for n in range(2)])
    try:
        with Ticker(d):
            assert wait_for(lambda: len(wecom.hung) >= 1, 30)
            queued = enqueue(store, [notice("wecom", t, n) for t in ("ok1", "ok2")
                                     for n in range(3)])
            assert wait_for(lambda: wecom.count("tok-ok") == 6, 30)
            latency = max(wecom.first_arrival(f"wecom-{t}-{n}") - queued  # type: ignore[operator]
                          for t in ("ok1", "ok2") for n in range(3))
            assert wait_for(lambda: all(r.status == "dead" for r in
                                        by_target(store)[("wecom", "hung")]), 60)
    finally:
        wecom.release()
        d.close(grace_seconds=10)
    assert latency < BOUND, latency
    groups = by_target(store)
    for t in ("ok1", "ok2"):
        assert [r.status for r in groups[("wecom", t)]] == ["sent"] * 3
        assert wecom.count(f"tok-{t}") == 3  # never sent twice, never got the hung group's
    hung = groups[("wecom", "hung")]
    for r in hung:
        # the service read each request and never answered: it may have been posted, so
        # it is sent once more at most and then dead-lettered as uncertain (not retried
        # until the max age, which posted it again and again)
        assert (r.last_error or "").startswith("delivery uncertain: timeout after 1 s")
        assert r.attempts == 2
    assert sum(r.attempts for r in hung) == len(wecom.hung)  # every attempt reached it once
    assert wecom.count("tok-hung") == 0


def test_a_hung_targets_backlog_does_not_fill_the_batch(sqlite_store: Store,
                                                       sinks: dict[str, Sink]) -> None:
    """More messages for the hung group than one batch holds: the busy group is left out of
    the next reads, so the other groups' messages are still read and sent on time."""
    wecom = sinks["wecom"]
    wecom.hang = lambda url: "tok-hung" in url
    d = Deliverer(sqlite_store, {"wecom": robot("wecom", wecom, ["hung", "ok"],
                                                timeout=HUNG_TIMEOUT)}, POLICY, batch_size=3)
    enqueue(sqlite_store, [notice("wecom", "hung", n) for n in range(8)])
    try:
        with Ticker(d):
            assert wait_for(lambda: len(wecom.hung) == 1, 30)
            queued = enqueue(sqlite_store, [notice("wecom", "ok", n) for n in range(2)])
            assert wait_for(lambda: wecom.count("tok-ok") == 2, 30)
            latency = wecom.first_arrival("wecom-ok-1") - queued  # type: ignore[operator]
            assert wait_for(lambda: d.busy_groups() == {("wecom", "hung")}, 30), d.busy_groups()
            assert len(wecom.hung) == 1  # the hung group's backlog was never read again
    finally:
        wecom.release()
        d.close(grace_seconds=HUNG_TIMEOUT)
    assert latency < BOUND, latency
    statuses = Counter(r.status for r in by_target(sqlite_store)[("wecom", "hung")])
    assert statuses["sent"] == 0 and statuses["inflight"] == 0


def test_shutdown_abandons_a_hung_send_and_the_next_start_resends_it_once(
        sqlite_store: Store, sinks: dict[str, Sink]) -> None:
    """A send still hanging when the grace ends is left in flight — the crash between send and
    mark — so the next start sends it once more, and only once."""
    wecom = sinks["wecom"]
    wecom.hang = lambda url: not wecom.hung  # the first request hangs, later ones are answered
    channel = robot("wecom", wecom, ["g1"], timeout=HUNG_TIMEOUT)
    d = Deliverer(sqlite_store, {"wecom": channel}, POLICY)
    enqueue(sqlite_store, [notice("wecom", "g1", 0), notice("wecom", "g1", 1)])
    d.dispatch(datetime.now(UTC))
    assert wait_for(lambda: len(wecom.hung) == 1, 30)
    assert d.close(grace_seconds=0.2) == 1
    first, second = sqlite_store.messages()
    assert (first.status, first.inflight_count) == ("inflight", 1)
    assert (second.status, second.attempts) == ("pending", 0)  # never claimed
    # A closed deliverer claims nothing.
    assert d.dispatch(datetime.now(UTC)) == 0 and d.run_once(datetime.now(UTC)) == 0

    restarted = Deliverer(sqlite_store, {"wecom": channel}, POLICY)
    assert restarted.recover(datetime.now(UTC)) == 1
    assert restarted.run_once(datetime.now(UTC)) == 2
    restarted.close()
    assert [m.status for m in sqlite_store.messages()] == ["sent", "sent"]
    # The abandoned message: one unanswered request and one resend; the other: one request.
    assert (len(wecom.hung), wecom.count("wecom-g1-0"), wecom.count("wecom-g1-1")) == (1, 1, 1)


def test_shutdown_lets_a_send_under_way_finish_and_claims_nothing_more(
        sqlite_store: Store, sinks: dict[str, Sink]) -> None:
    wecom = sinks["wecom"]
    wecom.delay = 0.5
    d = Deliverer(sqlite_store, {"wecom": robot("wecom", wecom, ["g1"])}, POLICY)
    enqueue(sqlite_store, [notice("wecom", "g1", 0), notice("wecom", "g1", 1)])
    d.dispatch(datetime.now(UTC))
    assert wait_for(lambda: sqlite_store.messages()[0].status == "inflight", 30)
    assert d.close(grace_seconds=30) == 0  # finished within the grace: nothing abandoned
    first, second = sqlite_store.messages()
    assert first.status == "sent"
    assert (second.status, second.attempts) == ("pending", 0)
    assert wecom.count() == 1


def test_targets_sharing_a_number_never_exceed_its_limit(store: Store,
                                                         sinks: dict[str, Sink]) -> None:
    """Two SMS targets whose messages go to one number are sent side by side; the limiter
    (checked, recorded and saved as one step) lets exactly the number's quota through, and the
    saved state holds every request, so a restart cannot forget one."""
    a, b = "13800000001", "13800000002"
    d = Deliverer(store, {"sms": sms(sinks["sms"], per_day=3)}, POLICY, workers_per_channel=4)
    rows = [notice("sms", a, n) for n in range(4)]
    rows += [notice("sms", b, n, mentions=(a, b)) for n in range(10, 14)]
    enqueue(store, rows)
    d.run_once(datetime.now(UTC))
    d.close()
    to_a = [f for f in sinks["sms"].forms() if a in f["PhoneNumbers"].split(",")]
    assert len(to_a) == 3  # the quota, not more, although both groups ran at once
    saved = d.limits.saved([f"sms/{a}/SMS_1"])
    assert len(saved.history(f"sms/{a}/SMS_1")) == 3
    assert Counter(r.status for r in store.messages()) == {"sent": 3, "pending": 5}


def test_many_targets_at_once_on_one_database(store: Store, sinks: dict[str, Sink]) -> None:
    """Thirty targets on three channels, four workers each, all writing claims, outcomes and
    limiter state to one database (SQLite in WAL / PostgreSQL): no "database is locked", every
    message sent exactly once."""
    # Two digits: no target's token is a prefix of another's.
    targets = {ch: [f"{ch[:2]}{i:02d}" for i in range(10)]
               for ch in ("wecom", "dingtalk", "feishu")}
    channels = {ch: robot(ch, sinks[ch], ts) for ch, ts in targets.items()}
    d = Deliverer(store, channels, POLICY, workers_per_channel=4)
    enqueue(store, [notice(ch, t, n) for ch, ts in targets.items() for t in ts for n in range(3)])
    assert d.run_once(datetime.now(UTC)) == 90
    d.close()
    assert Counter(r.status for r in store.messages()) == {"sent": 90}
    for ch, ts in targets.items():
        for t in ts:
            assert sinks[ch].count(f"tok-{t}") == 3, (ch, t)
    keys = [f"{ch}/{robot_rate_key(f'tok-{t}')}" for ch, ts in targets.items() for t in ts]
    saved = d.limits.saved(keys)
    assert all(len(saved.history(k)) == 3 for k in keys)


def test_a_timed_out_send_backs_off_from_when_it_ended(sqlite_store: Store,
                                                      sinks: dict[str, Sink]) -> None:
    """The backoff runs from the end of the timeout, not from the start of the send: a hung
    target is not hammered again the moment each timeout ends."""
    wecom = sinks["wecom"]
    wecom.hang = lambda _url: True
    policy = RetryPolicy(initial_seconds=5, multiplier=2, max_seconds=60, jitter=0.0,
                         max_age_seconds=3600)
    d = Deliverer(sqlite_store, {"wecom": robot("wecom", wecom, ["g1"], timeout=1.0)}, policy)
    enqueue(sqlite_store, [notice("wecom", "g1", 0)])
    before = datetime.now(UTC)
    d.dispatch(datetime.now(UTC))
    try:
        assert wait_for(lambda: sqlite_store.messages()[0].attempts == 1
                        and sqlite_store.messages()[0].status == "pending", 30)
    finally:
        wecom.release()
        d.close(grace_seconds=10)
    (m,) = sqlite_store.messages()
    assert "timeout after 1 s" in (m.last_error or "")
    assert (m.next_attempt_at - before).total_seconds() >= 1.0 + 5.0


def test_due_messages_leave_out_the_busy_groups(store: Store) -> None:
    enqueue(store, [notice("wecom", "a", 0), notice("wecom", "b", 1), notice("sms", "a", 2),
                    notice("wecom", "a", 3)])
    now = datetime.now(UTC)
    assert [(m.channel, m.target) for m in store.due_messages(now)] == [
        ("wecom", "a"), ("wecom", "b"), ("sms", "a"), ("wecom", "a")]
    busy = {("wecom", "a"), ("feishu", "x")}
    assert [(m.channel, m.target) for m in store.due_messages(now, exclude=busy)] == [
        ("wecom", "b"), ("sms", "a")]  # the same target on another channel is another group
    assert [m.target for m in store.due_messages(now, limit=1, exclude=busy)] == ["b"]
