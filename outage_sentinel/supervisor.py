"""What keeps the daemon's process honest, apart from the stages: the metrics endpoint, the
watch on the SQLite file, the scheduler (one job per source and per stage) and what it says
about jobs that were skipped or failed, and the main loop with its signals. The daemon
(``daemon.py``) composes these."""

from __future__ import annotations

import fcntl
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, Any, Protocol
from wsgiref.simple_server import WSGIServer

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from outage_sentinel.config import Config
from outage_sentinel.leadership import Leadership
from outage_sentinel.logs import redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.sd_notify import Notifier
from outage_sentinel.signals import SignalInbox, names
from outage_sentinel.store import Store

#: Exit code of ``run`` when the SQLite file was deleted or replaced under it (README "Exit
#: codes"); 3-5 are the start-up codes of the CLI.
EXIT_DATABASE_FILE = 6


class SecondDaemonError(Exception):
    """Another daemon already runs on this SQLite file."""


class SqliteNodeLock:
    """SQLite is one node: ``run`` holds an exclusive lock on ``<database>.lock`` while it runs,
    and a second daemon on the same file stops at once, saying so (two would both poll and
    send). PostgreSQL daemons coordinate with ``ha`` instead."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SecondDaemonError(
                f"another daemon already runs on the SQLite database {self.path.with_suffix('')}"
                " (SQLite is one node; for two nodes use PostgreSQL with ha.enabled)") from None
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


class MetricsPortError(Exception):
    """The metrics endpoint cannot listen (port in use, address not on this host)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"metrics endpoint cannot listen on {host}:{port}: {reason} "
                         "(another process holds the port? change config key metrics.port, "
                         "or metrics.enabled: false)")
        self.host, self.port = host, port


def serve_metrics(config: Config, metrics: Metrics, log: Any,
                  ready: Callable[[], str | None] = lambda: None) -> WSGIServer | None:
    """Start the metrics endpoint (with ``/healthz`` and ``/readyz``) if enabled, every
    configured channel's notification series at 0 from its first scrape; the server, or
    :class:`MetricsPortError` if it cannot listen."""
    if not config.metrics.enabled:
        return None
    metrics.create_channel_series(config.channels)
    host, port = config.metrics.host, config.metrics.port
    try:
        server = metrics.serve(host, port, ready)
    except OSError as exc:  # in use, or an address this host does not have
        raise MetricsPortError(host, port, exc.strerror or str(exc)) from None
    log.info("metrics_listening", host=host, port=port)
    return server


class DatabaseWatch:
    """Stops the daemon (exit :data:`EXIT_DATABASE_FILE`) once its SQLite file is deleted or
    replaced.

    SQLite keeps writing into a deleted file without an error, so history and the outbox would
    vanish at the next start and every notice be sent again. Stopping makes an operator look
    (the unit file does not restart on it).
    """

    def __init__(self, store: Store, metrics: Metrics, stop: threading.Event, log: Any) -> None:
        self.store, self.metrics, self.stop, self.log = store, metrics, stop, log
        self.exit_code = 0
        self._lock = threading.Lock()

    def intact(self) -> bool:
        """False (and ``stop`` set) once the file is gone or another one."""
        problem = self.store.database_file_problem()
        if problem is None:
            return True
        with self._lock:
            first = self.exit_code == 0
            self.exit_code = EXIT_DATABASE_FILE
            self.stop.set()
        if first:
            self.metrics.database_file_replaced.inc()
            self.log.error("database_file_replaced", path=str(self.store.sqlite_path),
                           problem=problem, action="stop", exit_code=EXIT_DATABASE_FILE)
        return False


#: Jobs with a thread of their own, never held up by the others (a feed hanging until its
#: timeout): the heartbeat (systemd's watchdog is fed only while it runs), the lease (a leader
#: that does not renew it is deposed) and the delivery.
OWN_POOL_JOBS = ("heartbeat", "lease", "deliver")
#: Threads of the shared pool beyond one for each job on it.
POOL_MARGIN = 2


class SizedScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler is untyped
    """A scheduler whose shared pool, made as it starts, has a thread for every job on it
    plus :data:`POOL_MARGIN`: each job runs at most once at a time, so however many sources
    hang, none waits for a thread (APScheduler's default pool has ten, however many jobs)."""

    def start(self, paused: bool = False) -> None:
        shared = sum(1 for job in self.get_jobs() if job.executor == "default")
        self.add_executor(ThreadPoolExecutor(shared + POOL_MARGIN), "default")
        super().start(paused)


@dataclass
class Schedule:
    """The daemon's jobs, each at most once at a time (an overrunning poll is skipped and
    counted, not piled up); skipped and failed jobs are counted and logged. The jobs of
    :data:`OWN_POOL_JOBS` each have a thread of their own; the others share a pool with a
    thread for each."""

    metrics: Metrics
    log: Any
    now: datetime
    scheduler: BackgroundScheduler = field(default_factory=lambda: SizedScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}))

    def __post_init__(self) -> None:
        self.scheduler.add_listener(
            self.on_job_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
        for job_id in OWN_POOL_JOBS:  # threads start only once a job runs there
            self.scheduler.add_executor(ThreadPoolExecutor(1), job_id)

    def every(self, fn: Callable[..., None], seconds: float, job_id: str, grace: float = 30,
              args: list[Any] | None = None) -> None:
        """Run ``fn`` now and every ``seconds``."""
        self.scheduler.add_job(fn, "interval", seconds=seconds, args=args or [], id=job_id,
                               next_run_time=self.now, misfire_grace_time=max(1, int(grace)),
                               executor=job_id if job_id in OWN_POOL_JOBS else "default")

    def daily(self, fn: Callable[[], None], at: str, tz: tzinfo, job_id: str) -> None:
        """Run ``fn`` every day at local ``HH:MM``."""
        hh, mm = at.split(":")
        self.scheduler.add_job(fn, "cron", hour=int(hh), minute=int(mm), timezone=tz,
                               id=job_id, misfire_grace_time=3600)

    def on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code in (EVENT_JOB_MISSED, EVENT_JOB_MAX_INSTANCES):
            job = str(event.job_id)
            self.metrics.job_missed.labels(job).inc()
            if job.startswith("poll:"):
                self.metrics.polls.labels(job[5:], "skipped").inc()
            self.log.warning("job_skipped", job=job,
                             reason="previous run still going" if event.code ==
                             EVENT_JOB_MAX_INSTANCES else "missed its time")
        elif event.code == EVENT_JOB_ERROR:
            self.log.error("job_failed", job=str(event.job_id),
                           error=redact(repr(event.exception)))


#: How often the scheduler's heartbeat job runs (the watchdog needs it recent).
HEARTBEAT_SECONDS = 2.0


class Health:
    """What the daemon says of itself: ``/readyz``, whether systemd's watchdog may be fed (the
    scheduler's heartbeat is recent and the database answers: a hung daemon is restarted), and
    systemd's STATUS line."""

    def __init__(self, store: Store, stopping: threading.Event,
                 last_poll: Callable[[], datetime | None], tz: tzinfo,
                 leadership: Leadership) -> None:
        self.store, self.stopping, self.last_poll = store, stopping, last_poll
        self.tz, self.leadership = tz, leadership
        self.started = False
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        """The scheduler's heartbeat job."""
        self.last_beat = time.monotonic()

    def readiness(self) -> str | None:
        """None when started (leader or warm standby), not stopping, and the database
        answers; else why not."""
        if not self.started:
            return "starting"
        if self.stopping.is_set():
            return "stopping"
        self.store.ping()  # raises: not ready
        return None

    def healthy(self) -> bool:
        if time.monotonic() - self.last_beat > 3 * HEARTBEAT_SECONDS:
            return False
        self.store.ping()
        return True

    def status(self) -> str:
        last = self.last_poll()
        backlog = sum(n for s, n in self.store.outbox_counts().items()
                      if s in ("pending", "inflight"))
        polled = f"last successful poll {last.astimezone(self.tz):%H:%M:%S}" if last \
            else "no successful poll yet"
        role = "leader" if self.leadership.is_leader() else "standby"
        return f"{role} of region {self.leadership.region}; {polled}; outbox backlog {backlog}"


class Closeable(Protocol):
    name: str

    def close(self) -> None: ...


def close_all(items: Sequence[Closeable], kind: str, log: Any) -> None:
    """Close each of ``items``; a failure is logged (``<kind>_close_failed``), never raised, so
    closing one never masks the shutdown or leaves the others open."""
    for item in items:
        try:
            item.close()
        except Exception as exc:
            log.warning(f"{kind}_close_failed", name=item.name, error=redact(repr(exc)))


@dataclass
class ProcessLoop:
    """The main thread of ``run``: start-up that a SIGTERM can cut short, the scheduler, the
    signals received (SIGTERM/SIGINT stop, SIGHUPs become one reload), the database-file watch,
    systemd's notify protocol (READY once the stages run, a STATUS line, watchdog keep-alives
    only while ``healthy()``), and a drained shutdown. What to start, schedule, reload and close
    is the daemon's."""

    signals: SignalInbox
    stop: threading.Event
    database: DatabaseWatch
    log: Any
    notifier: Notifier = field(default_factory=Notifier)
    #: Seconds between two STATUS lines.
    status_every: float = 10.0

    def run(self, *, start: Callable[[], None], close: Callable[[], None],
            scheduler: Callable[[], BackgroundScheduler], reload: Callable[[], object],
            healthy: Callable[[], bool] = lambda: True,
            status: Callable[[], str] = lambda: "running") -> int:
        """Run until stopped; the exit code (0, or :data:`EXIT_DATABASE_FILE`)."""
        if self.stopped_during_startup(close):
            return 0
        start()
        if self.stopped_during_startup(close):
            return 0
        jobs = scheduler()
        jobs.start()
        self.log.info("running")
        self.notifier.send("READY=1", f"STATUS={self._status(status)}")
        try:
            self._loop(jobs, reload, healthy, status)
        finally:
            code = self.database.exit_code
            self.log.info("stopping", reason="signal" if code == 0 else "database")
            self.notifier.send("STOPPING=1")
            jobs.shutdown(wait=True)  # drain: let running polls/deliveries finish
            close()
            self.log.info("stopped", exit_code=code)
        return code

    def _loop(self, jobs: BackgroundScheduler, reload: Callable[[], object],
              healthy: Callable[[], bool], status: Callable[[], str]) -> None:
        last_status = last_alive = time.monotonic()
        interval = self.notifier.watchdog_interval
        while not self.stop.is_set():
            if self.signals.received:  # SIGHUPs during start-up become one reload here
                self.act_on(self.signals.take(), reload)
            now = time.monotonic()
            if interval is not None and now - last_alive >= interval and jobs.running:
                if self._healthy(healthy):
                    self.notifier.send("WATCHDOG=1")
                    last_alive = now
            if now - last_status >= self.status_every:
                self.notifier.send(f"STATUS={self._status(status)}")
                last_status = now
            if not self.stop.is_set() and self.database.intact():
                time.sleep(0.2)

    def _healthy(self, healthy: Callable[[], bool]) -> bool:
        try:
            return healthy()
        except Exception as exc:  # a failing check is an unhealthy daemon, not a dead loop
            self.log.warning("health_check_failed", error=redact(repr(exc)))
            return False

    def _status(self, status: Callable[[], str]) -> str:
        try:
            return status().replace("\n", " ")
        except Exception as exc:
            return f"status unavailable: {type(exc).__name__}"

    def stopped_during_startup(self, close: Callable[[], None]) -> bool:
        """A SIGTERM/SIGINT came during start-up: close and start no job at all."""
        if not self.signals.stop_requested():
            return False
        self.log.info("stopping", reason="signal during start-up",
                      signals=names(self.signals.take()))
        close()
        self.log.info("stopped", exit_code=0)
        return True

    def act_on(self, signums: list[int], reload: Callable[[], object]) -> None:
        """Stop if any signal asks to; else reload once however many SIGHUPs came."""
        if any(s != signal.SIGHUP for s in signums):
            self.log.info("signal", signals=names(signums), count=len(signums), action="stop")
            self.stop.set()
        else:
            self.log.info("signal", signals=names(signums), count=len(signums),
                          action="reload topology")
            self.notifier.send("RELOADING=1")
            reload()
            self.notifier.send("READY=1")
