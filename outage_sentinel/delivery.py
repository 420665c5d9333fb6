"""Outbox delivery: take due messages, send each through its channel, record the outcome.

The guarantees (docs/design.md §3) and how they are kept:

* A message is marked ``sent`` only when the channel confirms it (``Outcome.DELIVERED``).
* Before a send the row is claimed as ``inflight`` in its own committed transaction, so a crash
  mid-send leaves a trace. :meth:`Deliverer.recover` (at start) asks the channel whether it
  holds the message (the file sink can tell); if it can't tell, the message is sent once more.
  A send whose reply never came or carried no verdict (``SendResult.uncertain``) is the same
  case, and so is a send whose outcome could not be recorded (the database was away for longer
  than the writes are retried): each run sweeps the messages left in flight, not being sent by
  this process, claimed longer ago than their channel's timeout plus :data:`STUCK_MARGIN`.
  All of them count in the row's ``interruptions``, which nothing but an operator's retry
  resets: a message with one such send is sent once more, one with a second is dead-lettered as
  "delivery uncertain" rather than risk a second duplicate
  (:meth:`~outage_sentinel.sending.Outcomes.settle_interrupted`).
* Failures are retried on the immutable :class:`~outage_sentinel.retry.RetryPolicy`; a message
  older than its max age, or permanently refused, is dead-lettered (counted, logged, kept).
  Its age counts from its queueing or from the end of a quiet-hours hold, whichever is later
  (:func:`~outage_sentinel.sending.age_from`): a night held on purpose is not time failing.
* A target that keeps failing only delays itself. Within a target, the messages of one
  incident to one recipient (a *chain*) go in the order they were queued, and an off-notice a
  later back-notice made moot is superseded, never sent (:mod:`outage_sentinel.ordering`,
  applied to each run's batch from the outbox, so it holds across workers and restarts).
  A command-centre summary not sent yet is superseded by a later whole summary of its
  incident, and one waiting for ``command_centre.summary_min_interval_seconds`` (queued with
  its time by :class:`~outage_sentinel.revision_writer.RevisionWriter`) holds up nothing else.
* A notice is true when it goes, not only when it was queued (:func:`moot_after_start`,
  :func:`as_sent`): a reminder of planned work ("将于…停电，请提前做好准备") still waiting when
  the work begins (a channel down, a retry) is superseded, never sent — a warning after the
  fact is none, and the announcement already told the village; an announcement of work queued
  before it began and sent after says so in a line under its heading; a reminder's SMS
  ``hours`` is counted from the moment it goes. What went is what the row keeps (the board
  shows it), and a message in parts keeps the text its first part was cut from.
* Per-target rate limits (:mod:`outage_sentinel.ratelimit`) are checked before every request
  and the window is saved to the store *before* the request goes out
  (:mod:`outage_sentinel.shared_limits`), so neither a restart, a takeover nor a second region
  bursts past a robot's limit. A message over the limit waits (without counting an attempt);
  when more messages wait for one robot group than its budget allows, they are merged into a
  digest (:mod:`outage_sentinel.digest`) instead of trickling out minutes late. Every merged
  message is marked sent only when the digest that covers it is confirmed.

Channels isolated: no channel or target is held up by another
--------------------------------------------------------------

* Due messages are grouped per ``(channel, target)`` — one robot group, one phone number, one
  mailbox. Each group is one *job* on its channel's *lane*, a small pool of worker threads
  (``delivery.workers_per_channel``). Within a job the group's messages go one at a time in
  outbox order, so a target still gets its notices in order and its rate limit and digest are
  decided in one place, as before.
* A group whose job is still queued or running is *busy*: later runs do not even read its
  messages (``Store.due_messages(exclude=...)``), so a hung target's backlog never fills the
  batch, never blocks the run, and holds only its own rows.
* Every request is bounded by its channel's ``timeout_seconds``; a timeout is a RETRY like any
  transport failure, so the hung target's messages follow the retry policy (backoff, then dead
  letter at the max age, or as "delivery uncertain" at the second timeout after the request
  went out) while everyone else's are delivered.
* The daemon's job only *starts* the work (:meth:`Deliverer.dispatch`) and returns at once, so
  runs are never skipped for overrunning. :meth:`Deliverer.run_once` starts it and waits (the
  ``run --once`` cycle and the tests); its groups still run side by side.
* Shared state under concurrency: a limiter key's window is checked, recorded and saved as one
  step under its row's lock (two workers of any node or region never both take the last slot
  of a window, and an older window is never saved over a newer one); a digest is built by the
  one job that owns the group, from the group's own rows, so it shares nothing. The store is
  one pooled engine used from several threads: SQLite runs in WAL with ``BEGIN IMMEDIATE``
  and a 30 s ``busy_timeout`` (writers queue instead of failing with "database is locked");
  claims stay ``UPDATE ... WHERE status = 'pending'``, so a row is claimed once whoever asks. A channel's
  sender is shared by its workers: the HTTP senders' connection pool (urllib3) is thread-safe,
  the file sink locks per path, the e-mail sender opens a connection per message.
* Shutdown (:meth:`Deliverer.close`): after SIGTERM nothing new is claimed; sends under way get
  ``delivery.shutdown_grace_seconds`` to finish and be recorded; a send still running after
  that is abandoned *in flight*, which is exactly the crash between send and mark: the next
  start's :meth:`Deliverer.recover` sends it at most once more.

Why a lane per channel, not one shared pool or one thread per channel: a shared pool lets a
channel whose many targets all hang (Feishu down, 30 village groups) take every thread and
stall WeCom and SMS — the failure this replaces. One long-lived thread per channel with
per-target queues makes a channel's targets wait for each other (one hung village group stalls
the rest) unless that thread multiplexes, which is a pool again; and a thread per target is
unbounded (SMS targets are phone numbers). Lanes are bounded (channels × workers threads,
started on demand, gone when idle) and a channel only ever uses its own: a hung channel cannot
delay another at all, and hung targets delay the rest of their own channel only when more of
them hang at once than the lane has threads — and then only until their timeout.
Lane threads are daemon threads (not a ``ThreadPoolExecutor``, whose threads are joined at
interpreter exit) so that an abandoned send cannot keep a stopping daemon alive.

This module holds the run (:class:`Deliverer`) and the lanes; what one group's job does — claim,
send, record, rate limits and digests — is :class:`~outage_sentinel.sending.GroupSender`'s.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_jobs
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import Literal, Protocol

from outage_sentinel.channels.base import Channel, Timed
from outage_sentinel.crew import deadline_true_at
from outage_sentinel.logs import get_logger, mask_phones, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.ordering import REMINDER_PREFIX, chain_of, order
from outage_sentinel.outgoing import LATEST_ONLY
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sending import AS_SENT, GroupSender, parts_sent
from outage_sentinel.sending import message_of as message_of
from outage_sentinel.shared_limits import SharedLimits
from outage_sentinel.sms_params import with_hours, without_etr
from outage_sentinel.store import OutboxRow, Store

#: A message waiting for an earlier one of its chain that is being sent is due again after
#: this long (one waiting for a pending one is due with it, and sorts after it by id).
HOLD_STEP = timedelta(seconds=1)
#: A message in flight that no send of this process holds counts as interrupted once it was
#: claimed longer ago than its channel's timeout plus this (its send cannot be under way any
#: more: the process that claimed it lost the outcome, or died).
STUCK_MARGIN = timedelta(seconds=60)
#: The timeout assumed for a channel that states none.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Quiet hours let a notice of an outage not begun yet (planned or temporary work: its notice,
#: an update, a reminder) go no later than this long before the outage starts — or at once,
#: when it was queued later than that (a one-hour reminder): "停电…请提前做好准备" arriving
#: after the work began would be no warning at all.
#: The same lead holds before the expected restoration an update (or announcement) of an
#: outage already in force states, when that time falls inside the quiet hours: held to the
#: window's end, "预计恢复时间调整为 06:00" would be read at 07:00, a time gone by.
PRE_START_LEAD = timedelta(hours=1)
#: Purposes whose text counts the minutes to a crew's arrival deadline (剩N分钟), counted again
#: when they go (:func:`recounted`): the crew's dispatch, the command centre's warning that no
#: crew is free, and the escalations (``escalation_at_risk``, ``escalation_overdue``, …).
COUNTED_PURPOSES = frozenset({"dispatch", "waiting_for_crew"})
ESCALATION_PREFIX = "escalation_"
#: Purposes whose words promise the expected restoration they carry (``params["etr"]``).
ETR_PURPOSES = frozenset({"outage", "update"})
#: The lines a liaison's notice sent after a time it speaks of carries under its heading
#: (:func:`late_lines`): its words were written for work not begun, or a time still ahead.
LATE_LINES = {
    "zh": {"started": "（本通知发出时停电已于{start}开始）",
           "etr": "（本通知发出时已过预计恢复时间{etr}，恢复时间待定）"},
    "en": {"started": "(Sent after the outage began at {start}.)",
           "etr": "(Sent after the expected restoration {etr} had passed; restoration time "
                  "not yet known.)"},
}

#: A delivery group: ``(channel name, target)``.
GroupKey = tuple[str, str]
Job = Callable[[], int]


def utcnow() -> datetime:
    """The wall clock, aware UTC (the default clock of a :class:`Deliverer`)."""
    return datetime.now(UTC)


class Lane:
    """One channel's worker threads: at most ``workers``, started when jobs wait and no thread
    is free, each leaving after ``idle_seconds`` without work (see the module docstring)."""

    def __init__(self, name: str, workers: int, idle_seconds: float = 30.0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.name = name
        self.workers = workers
        self.idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._queue: deque[tuple[Future[int], Job]] = deque()
        self._threads = 0
        self._waiting = 0
        self._closed = False

    def submit(self, job: Job) -> Future[int]:
        """Queue ``job``; its future holds its result or whatever it raised."""
        future: Future[int] = Future()
        with self._cond:
            self._queue.append((future, job))
            # Threads woken by notify() still count as waiting until they run, so compare with
            # the whole queue: a second job before the first is taken gets a thread of its own.
            if self._waiting < len(self._queue) and self._threads < self.workers:
                self._threads += 1
                threading.Thread(target=self._run, name=f"deliver:{self.name}",
                                 daemon=True).start()
            self._cond.notify()
        return future

    def close(self) -> None:
        """Let the threads leave once the queue is empty (queued jobs still run)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next(self) -> tuple[Future[int], Job] | None:
        with self._cond:
            deadline = monotonic() + self.idle_seconds
            while not self._queue:
                remaining = deadline - monotonic()
                if self._closed or remaining <= 0:
                    self._threads -= 1
                    return None
                self._waiting += 1
                self._cond.wait(remaining)
                self._waiting -= 1
            return self._queue.popleft()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled at shutdown before it started: its rows stay due
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to whoever waits (a test's simulated crash)
                future.set_exception(exc)


class Muter(Protocol):
    """Decides which due messages a silence mutes (see :mod:`outage_sentinel.silencing`)."""

    def muted(self, rows: Sequence[OutboxRow], now: datetime) -> dict[int, str]:
        """Outbox id -> the silence muting it."""


class Moot(Protocol):
    """Decides which due messages are no longer true to send (see
    :class:`outage_sentinel.held_notices.DarkAgain`)."""

    def moot(self, rows: Sequence[OutboxRow], now: datetime) -> dict[int, str]:
        """Outbox id -> why it is no longer true."""


class Deliverer:
    """Sends due outbox messages, each ``(channel, target)`` group on its channel's lane.

    It owns the run — the due batch read (busy groups left out) and what of it goes now (quiet
    hours, silences, messages no longer true, chain order), the groups handed to the lanes,
    recovery at start, shutdown, the gauges — while what a group's job does (claim, send,
    record; rate limits and digests) is its :attr:`sender`'s
    (:class:`~outage_sentinel.sending.GroupSender`).

    :meth:`dispatch`, :meth:`run_once`, :meth:`recover` and :meth:`close` are called from one
    thread at a time (the scheduler's delivery job, the start/stop path); the workers they
    start share only the store and the limiter, which is locked.
    """

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: Metrics | None = None,
        *,
        batch_size: int = 100,
        dry_run: bool = False,
        rand: Callable[[], float] = random.random,
        language: Literal["zh", "en"] = "zh",
        quiet_hours: Mapping[str, tuple[time, time]] | None = None,
        tz: tzinfo = UTC,
        on_dead: Callable[[OutboxRow, str, datetime], None] | None = None,
        workers_per_channel: int = 4,
        clock: Callable[[], datetime] = utcnow,
        muter: Muter | None = None,
        moot: Moot | None = None,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self._init_lanes(workers_per_channel)
        self.store = store
        self.channels = channels
        self.metrics = metrics or Metrics()
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.quiet_hours = dict(quiet_hours or {})
        self.tz = tz
        self.clock = clock
        self.muter = muter
        self.moot = moot
        self.language = language
        self.log = get_logger(component="delivery")
        #: The channels' rate-limit windows, shared by every node and region.
        self.limits = SharedLimits(store, clock())
        self._gauge_lock = threading.Lock()
        #: What a group's job does: claim, send, record (and the claims not yet settled).
        self.sender = GroupSender(store, channels, policy, self.metrics, self.limits, self.log,
                                  self._stopping, dry_run=dry_run, rand=rand, language=language,
                                  on_dead=on_dead, may_send=may_send)

    def _init_lanes(self, workers_per_channel: int) -> None:
        """The lanes' bookkeeping: ``workers_per_channel`` threads at most on each channel's
        lane, the groups whose job is queued or running, the lanes, the jobs handed to them,
        and the stop that ends claiming."""
        if workers_per_channel < 1:
            raise ValueError("workers_per_channel must be >= 1")
        self.workers_per_channel = workers_per_channel
        #: Guards the bookkeeping below.
        self._lock = threading.Lock()
        self._busy: set[GroupKey] = set()
        self._lanes: dict[str, Lane] = {}
        self._jobs: set[Future[int]] = set()
        self._stopping = threading.Event()

    def recover(self, now: datetime) -> int:
        """Settle messages a previous process (or leader) left in flight, each as a send whose
        outcome is unknown, but for this process's own sends under way (the lease renewed
        makes this node the leader, and its delivery job may claim, before the new term's
        recovery runs). Returns how many were settled."""
        rows = self.store.inflight_messages()
        mine = self.sender.claimed_ids()  # read after the rows: a claim is noted before it is made
        rows = [r for r in rows if r.id not in mine]
        for row in rows:
            self.sender.outcomes.settle_interrupted(row, now, "interrupted mid-send "
                                                    "(in flight at the start of this term)")
        return len(rows)

    def sweep(self, now: datetime) -> int:
        """Settle the messages left in flight whose send is not under way any more: not one
        of this process's sends, and claimed longer ago than the channel's timeout plus
        :data:`STUCK_MARGIN` (the outcome was lost to a database error, or the sender died).
        Each counts as interrupted, as in :meth:`recover`. Returns how many."""
        if not self.sender.may_send():
            return 0
        mine = self.sender.claimed_ids()
        stuck = [r for r in self.store.inflight_messages(claimed_before=now - STUCK_MARGIN)
                 if r.id not in mine and r.next_attempt_at <= now - self._stuck_after(r)]
        for row in stuck:
            self.log.warning("stuck_in_flight", key=mask_phones(row.key), channel=row.channel,
                             claimed_at=row.next_attempt_at.isoformat())
            self.sender.outcomes.settle_interrupted(row, now, "its send's outcome was never "
                                                    "recorded (left in flight)")
        return len(stuck)

    def _stuck_after(self, row: OutboxRow) -> timedelta:
        """How long after its claim ``row``'s send cannot be under way any more."""
        channel = self.channels.get(row.channel)
        timeout = channel.timeout if isinstance(channel, Timed) else DEFAULT_TIMEOUT_SECONDS
        return timedelta(seconds=timeout) + STUCK_MARGIN

    def dispatch(self, now: datetime) -> int:
        """Hand one batch of due messages to the channels' workers and return at once.

        Groups still busy from an earlier call are left out. Each send is stamped by
        ``clock`` when it happens (a worker may start a little after this call). Returns how
        many messages were handed over or settled here (dry run, unknown channel).
        """
        _, n = self._start(now, self.clock)  # jobs tracked in self._jobs
        self.update_gauges()
        return n

    def run_once(self, now: datetime) -> int:
        """Deliver one batch of due messages and wait for every group; return how many were
        attempted. Groups run side by side (a hung target costs its timeout, not everyone's);
        every step is stamped ``now``."""
        at = now
        jobs, n = self._start(at, lambda: at)
        wait_for_jobs(jobs)
        self.update_gauges()
        for job in jobs:
            job.result()  # re-raise what killed a job (a test's simulated crash)
        return n

    def close(self, grace_seconds: float = 0.0) -> int:
        """Stop: nothing is claimed from now on; sends under way get ``grace_seconds`` to
        finish and be recorded. Returns how many are abandoned in flight — each is the
        "crash between send and mark" case, sent at most once more by the next
        :meth:`recover`."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs)
            lanes = list(self._lanes.values())
            self._lanes.clear()
        _, unfinished = wait_for_jobs(jobs, timeout=grace_seconds)
        for job in unfinished:
            job.cancel()  # still queued: nothing claimed, its rows stay due for the next start
        for lane in lanes:
            lane.close()
        abandoned = self.sender.unsettled()
        if abandoned:
            self.sender.abandon()
            self.log.warning("delivery_abandoned", count=len(abandoned), grace_s=grace_seconds,
                             keys=[mask_phones(k) for k in abandoned],
                             note="left in flight; the next start sends each at most once more")
        return len(abandoned)

    def busy_groups(self) -> set[GroupKey]:
        """The ``(channel, target)`` groups whose job is queued or running."""
        with self._lock:
            return set(self._busy)

    def _start(self, now: datetime, clock: Callable[[], datetime]
               ) -> tuple[list[Future[int]], int]:
        """Read due messages (busy groups left out) and start a job per group."""
        if self._stopping.is_set():
            return [], 0
        self.sweep(now)
        rows = self.store.due_messages(now, self.batch_size, exclude=self.busy_groups())
        rows = self._not_too_late(rows, now)
        rows = self._defer_quiet(rows, now)
        rows = self._unmuted(rows, now)
        rows = self._still_true(rows, now)
        rows = [as_sent(r, now, self.tz, self.language) for r in self._in_order(rows, now)]
        self.limits.forget_idle(now)
        groups: dict[GroupKey, list[OutboxRow]] = {}
        for row in rows:
            groups.setdefault((row.channel, row.target), []).append(row)
        jobs: list[Future[int]] = []
        handled = 0
        for key, group in groups.items():
            if key[0] not in self.channels or self.dry_run:
                for row in group:  # settled in the store alone: no worker needed
                    self.sender.deliver(row, now)
                handled += len(group)
                continue
            job = self._submit(key, group, clock)
            if job is not None:
                jobs.append(job)
                handled += len(group)
        return jobs, handled

    def _unmuted(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """``rows`` without those a silence mutes (each marked ``silenced``, counted, logged)."""
        if self.muter is None or not rows:
            return rows
        return self._set_aside(rows, self.muter.muted(rows, now), now, "silenced")

    def _not_too_late(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """``rows`` without the reminders whose work has begun (each marked ``superseded``
        with why, :func:`moot_after_start`): checked before quiet hours, which would hold
        them to the morning instead."""
        why = {r.id: reason for r in rows
               if (reason := moot_after_start(r, now, self.tz)) is not None}
        return self._set_aside(rows, why, now, "superseded") if why else rows

    def _still_true(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """``rows`` without those no longer true to send (each marked ``superseded``, counted,
        logged with why)."""
        if self.moot is None or not rows:
            return rows
        return self._set_aside(rows, self.moot.moot(rows, now), now, "superseded")

    def _set_aside(self, rows: list[OutboxRow], why: Mapping[int, str], now: datetime,
                   status: Literal["silenced", "superseded"]) -> list[OutboxRow]:
        """``rows`` without those ``why`` names, each given ``status`` (with why), counted
        and logged; one already settled meanwhile is left as it is."""
        mark = self.store.mark_silenced if status == "silenced" else self.store.mark_superseded
        for row in rows:
            reason = why.get(row.id)
            if reason is not None and mark(row.id, now, reason):
                self.metrics.notifications.labels(row.channel, status).inc()
                self.log.info(status, key=row.key, channel=row.channel, reason=reason)
        return [r for r in rows if r.id not in why]

    def _in_order(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """``rows`` their chains let go now, in id order; the off-notices a later back-notice
        made moot, and the command centre's summaries a later whole summary of their
        incident made out of date, are marked ``superseded`` (see
        :mod:`outage_sentinel.ordering`)."""
        if not rows:
            return rows
        chains = self.store.chain_messages({chain_of(r) for r in rows})
        plan = order(rows, chains, {r.id for r in chains if (r.payload or {}).get(LATEST_ONLY)})
        purposes = {r.id: r.purpose for r in chains}
        for row in chains:
            back = plan.superseded.get(row.id)
            if back is None:
                continue
            reason = f"superseded by #{back} ({purposes[back]}) before it could be sent"
            if self.store.mark_superseded(row.id, now, reason):
                self.metrics.notifications.labels(row.channel, "superseded").inc()
                self.log.info("superseded", key=row.key, channel=row.channel, by=back)
        self._hold(plan.held, {r.id: r for r in chains}, now)
        ready = set(plan.ready)
        return sorted((r for r in rows if r.id in ready), key=lambda r: r.id)

    def _hold(self, held: dict[int, int], rows: dict[int, OutboxRow], now: datetime) -> None:
        """Move each waiting message behind the one it waits for: left due, waiting messages
        would fill every run's batch while the earlier ones, retried later, were never read
        again (a storm's retries stalled every channel)."""
        for row_id, blocker_id in held.items():
            blocker = rows.get(blocker_id)
            if blocker is not None and blocker.status == "pending":
                self.store.postpone(row_id, blocker.next_attempt_at)
            else:
                self.store.postpone(row_id, now + HOLD_STEP)

    def _submit(self, key: GroupKey, rows: Sequence[OutboxRow],
                clock: Callable[[], datetime]) -> Future[int] | None:
        with self._lock:
            if key in self._busy or self._stopping.is_set():
                return None
            self._busy.add(key)
            lane = self._lanes.get(key[0])
            if lane is None:
                lane = self._lanes[key[0]] = Lane(key[0], self.workers_per_channel)
            job = lane.submit(lambda: self._work(key, rows, clock))
            self._jobs.add(job)
        job.add_done_callback(self._job_done)
        return job

    def _job_done(self, job: Future[int]) -> None:
        with self._lock:
            self._jobs.discard(job)

    def _work(self, key: GroupKey, rows: Sequence[OutboxRow],
              clock: Callable[[], datetime]) -> int:
        """One group's messages, in order (runs on the channel's lane)."""
        try:
            return self.sender.send_group(self.channels[key[0]], rows, clock)
        except Exception as exc:  # the database may be briefly unavailable: rows stay due
            self.log.error("delivery_failed", channel=key[0], target=mask_phones(key[1]),
                           error=redact(repr(exc)))
            return 0
        finally:
            with self._lock:
                self._busy.discard(key)
            self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        """Gauges after a job: the backlog shrinks when sends finish, not at the next run."""
        try:
            self.update_gauges()
        except Exception as exc:  # a metric must not turn a finished job into a failed one
            self.log.warning("gauge_update_failed", error=redact(repr(exc)))

    def _defer_quiet(self, rows: Sequence[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Hold non-fault messages for an audience in its quiet hours until they end — or,
        for a notice of an outage not begun yet (or an update of one in force stating an
        expected restoration inside the window), until :data:`PRE_START_LEAD` before that
        time (:meth:`_quiet_release`). Its age limit counts from the hold's end
        (``age_from``, :func:`~outage_sentinel.sending.age_from`)."""
        if not self.quiet_hours:
            return list(rows)
        out = []
        for row in rows:
            until = self._quiet_release(row, now)
            if until is None:
                out.append(row)
            else:
                self.store.mark_retry(row.id, until, "quiet hours", age_from=until)
        return out

    def _quiet_release(self, row: OutboxRow, now: datetime) -> datetime | None:
        """When quiet hours let ``row`` go, or ``None`` for now. Faults are never held. A
        notice goes no later than :data:`PRE_START_LEAD` before the time it is about
        (:func:`time_ahead`: its outage's start, or for an outage in force the expected
        restoration its update states), or when it was queued if that was later; any other
        waits for the end."""
        window = self.quiet_hours.get(row.audience)
        params = (row.payload or {}).get("params") or {}
        if window is None or params.get("kind", "fault") == "fault":
            return None
        until = quiet_until(now, window, self.tz)
        if until is None:
            return None
        ahead = time_ahead(row, now, self.tz)
        if ahead is not None:
            until = min(until, max(row.created_at, ahead - PRE_START_LEAD))
        return until if until > now else None

    def update_gauges(self) -> None:
        """Set the backlog and dead-letter gauges from the outbox."""
        # Read and set under one lock: otherwise a job that read the counts before another
        # job's last mark could set its stale number after the fresh one.
        with self._gauge_lock:
            counts = self.store.outbox_counts()
            self.metrics.outbox_backlog.set(counts.get("pending", 0) + counts.get("inflight", 0))
            self.metrics.dead_letters.set(counts.get("dead", 0))



def outage_start(params: Mapping[str, object], tz: tzinfo) -> datetime | None:
    """The outage's start a notice states (``params["start"]``: local ``YYYY-MM-DD HH:MM`` in
    ``tz``, as the planner writes it, or an ISO time), or ``None`` when it states none."""
    return stated_time(params, "start", tz)


def params_of(row: OutboxRow) -> Mapping[str, object]:
    """A message's ``payload["params"]`` (empty when it has none)."""
    params = (row.payload or {}).get("params")
    return params if isinstance(params, Mapping) else {}


def time_ahead(row: OutboxRow, now: datetime, tz: tzinfo) -> datetime | None:
    """The time still ahead a notice is about, which quiet hours must not hold it past: its
    outage's start; for an outage in force, the expected restoration an announcement or
    update states (``params["etr"]``; "" once it has passed). ``None`` when neither is ahead."""
    params = params_of(row)
    start = outage_start(params, tz)
    if start is not None and start > now:
        return start
    etr = stated_time(params, "etr", tz) if row.purpose in ETR_PURPOSES else None
    return etr if etr is not None and etr > now else None


def moot_after_start(row: OutboxRow, now: datetime, tz: tzinfo) -> str | None:
    """Why a reminder (``reminder_*``) is no longer true at ``now``: the work it warns of has
    begun (its stated start is at or before ``now``). "将于…停电，请提前做好准备" after the
    start is no warning at all; the village was told of the work by its announcement, and
    the command centre sees this one superseded with the reason. ``None`` otherwise."""
    if not row.purpose.startswith(REMINDER_PREFIX):
        return None
    start = outage_start(params_of(row), tz)
    if start is None or start > now:
        return None
    return f"the work began at {local_minute(start, tz)} before the reminder could be sent"


def as_sent(row: OutboxRow, now: datetime, tz: tzinfo, language: str = "zh") -> OutboxRow:
    """``row`` as it is true to send at ``now`` (:func:`true_now`), marked
    :data:`~outage_sentinel.sending.AS_SENT` when that changed it: its body and params are
    then kept on the stored row when a part of it, or the whole, is confirmed — the board
    and ``/api/outbox`` show what was sent, not what was queued. A message a part of which
    already went is left as it is (its row holds the text that part was cut from): its
    rest is of that text, never one rendered anew, whose late line would shift the cut and
    send a line twice."""
    if parts_sent(row):
        return row
    sent = true_now(row, now, tz, language)
    if sent.body == row.body and sent.payload == row.payload:
        return row
    return replace(sent, payload={**(sent.payload or {}), AS_SENT: now.isoformat()})


def true_now(row: OutboxRow, now: datetime, tz: tzinfo, language: str = "zh") -> OutboxRow:
    """``row``'s words as they are true at ``now``: a reminder's SMS ``hours`` counted from
    now (:func:`~outage_sentinel.sms_params.with_hours`), and a liaison's announcement or
    update with :func:`late_lines` under its heading — and, when the expected restoration it
    states has passed, its SMS ``etr`` 待定 (:func:`~outage_sentinel.sms_params.without_etr`);
    a crew dispatch's or a command-centre escalation's minutes to the arrival deadline
    counted now (:func:`recounted`: held or retried, it said the minutes left when it was
    queued)."""
    params = params_of(row)
    payload = row.payload or {}
    if row.purpose in COUNTED_PURPOSES or row.purpose.startswith(ESCALATION_PREFIX):
        return recounted(row, now, language)
    start = outage_start(params, tz)
    if row.purpose.startswith(REMINDER_PREFIX) and start is not None:
        hours = (start - now).total_seconds() / 3600.0
        return replace(row, payload={**payload, "params": with_hours(params, hours)})
    lines = late_lines(row, now, tz, language)
    if not lines:
        return row
    etr = stated_time(params, "etr", tz)
    if etr is not None and etr <= now:
        payload = {**payload, "params": without_etr(params, language)}
    head, sep, rest = row.body.partition("\n")
    return replace(row, body="\n".join([head, *lines]) + sep + rest, payload=payload)


def recounted(row: OutboxRow, now: datetime, language: str = "zh") -> OutboxRow:
    """``row`` (a dispatch or an escalation) with the minutes to its arrival deadline and the
    outage's duration counted at ``now`` (:func:`~outage_sentinel.crew.deadline_true_at`), in
    its text, in the markdown a group robot sends instead of it and in its subject (the text's
    first line: an at-risk heading turned overdue goes with it); unchanged when its params
    keep neither."""
    params, payload = params_of(row), row.payload or {}
    body, said = deadline_true_at(row.body, params, now, language)
    if body == row.body:
        return row
    payload = {**payload, "params": said}
    markdown = payload.get("markdown")
    if isinstance(markdown, str) and markdown:
        payload["markdown"] = body if markdown == row.body else deadline_true_at(
            markdown, params, now, language)[0]
    head = row.body.split("\n", 1)[0]
    subject = body.split("\n", 1)[0] if row.subject == head else row.subject
    return replace(row, body=body, subject=subject, payload=payload)


def late_lines(row: OutboxRow, now: datetime, tz: tzinfo, language: str = "zh") -> list[str]:
    """The lines a liaison's announcement or update sent late carries under its heading, its
    words having been written for a time gone by: :data:`LATE_LINES` ``started`` for planned
    or temporary work queued before it began ("请提前做好准备" — the village still needs to
    hear why it is dark), ``etr`` when the expected restoration it states has passed (a
    channel down, retries: "预计恢复时间调整为 06:00" read at 07:00)."""
    if row.audience != "liaison" or row.purpose not in ETR_PURPOSES:
        return []
    words = LATE_LINES.get(language, LATE_LINES["en"])
    params = params_of(row)
    start, etr = outage_start(params, tz), stated_time(params, "etr", tz)
    lines = []
    if (row.purpose == "outage" and start is not None and row.created_at < start <= now
            and params.get("kind") in ("planned", "temporary")):
        lines.append(words["started"].format(start=local_minute(start, tz)))
    if etr is not None and etr <= now:
        lines.append(words["etr"].format(etr=local_minute(etr, tz)))
    return lines


def local_minute(at: datetime, tz: tzinfo) -> str:
    """``at`` as notices state times: local ``YYYY-MM-DD HH:MM``."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def stated_time(params: Mapping[str, object], key: str, tz: tzinfo) -> datetime | None:
    """A time a notice states (``params[key]``: local ``YYYY-MM-DD HH:MM`` in ``tz``, as the
    planner writes it, or an ISO time), or ``None`` when it states none."""
    text = params.get(key)
    if not isinstance(text, str) or not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


def quiet_until(now: datetime, window: tuple[time, time], tz: tzinfo) -> datetime | None:
    """The end of the quiet window ``now`` falls in (local times ``(start, end)``, which may
    cross midnight), or ``None`` when ``now`` is outside it."""
    start, end = window
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)
