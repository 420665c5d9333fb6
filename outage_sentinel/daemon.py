"""The daemon: the composition root that assembles the stages and runs them on a schedule.

Stages (each in its own module, each with ``run_once(now)``; see docs/architecture.md)::

    Poller (poller.py)            poll ─▶ store events + quarantine + cursor ─▶ acknowledge
    AmiScreener (screening.py)    AMI reports ─▶ per-area events (in the storing transaction)
    IncidentProcessor (processing.py)
                                  events ─▶ triage ─▶ incidents + notices + log (one transaction
                                  per round of events; a failing round is redone per event)
    Deliverer (delivery.py)       due outbox messages ─▶ a worker per (channel, target)
    LifecycleClock (lifecycle_clock.py)
                                  deadlines, reminders, storm gauge, template alerts
    ReportJob (report_job.py)     the daily report (and, when a term begins, the one missed
                                  while no node ran: see ``catch_up_reports``)
    RefitJob (refit_job.py)       the localiser learning from close-outs, daily

Every step is restartable from the database alone, which is what makes SIGKILL safe: an event
is either stored (and will be processed) or its cursor did not move (and it will be fetched
again); an incident change and its notices commit together; a message is only ``sent`` once
its channel confirmed it.

APScheduler 3.x runs one interval job per source and one per other stage, each with
``max_instances=1`` and ``coalesce`` so an overrunning poll is skipped and counted, not piled
up. SIGTERM/SIGINT stop the scheduler, wait for running jobs to finish, give sends under way
``delivery.shutdown_grace_seconds`` to complete (then leave them in flight for recovery), and
exit 0. SIGHUP reloads the topology bundle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler

from outage_sentinel.assembly import (
    build_channels,
    build_core,
    build_deliverer,
    build_source,
    configured_bundle,
    load_replacement,
    register_config_secrets,
    screened_sources,
)
from outage_sentinel.board.serve import BoardPortError, BoardServer, serve_board
from outage_sentinel.channels.base import Channel
from outage_sentinel.config import Config
from outage_sentinel.cycle import CycleReport, run_cycle
from outage_sentinel.estimation import BayesEstimator
from outage_sentinel.events import PollResult
from outage_sentinel.held_notices import DarkAgain
from outage_sentinel.incidents import Estimator
from outage_sentinel.leadership import build_leadership
from outage_sentinel.lifecycle_clock import LifecycleClock
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.metrics import Metrics
from outage_sentinel.poller import PendingStarts, Poller
from outage_sentinel.refit_job import RefitJob
from outage_sentinel.region import RegionError, RegionScope, resolve_region
from outage_sentinel.report_job import ReportJob
from outage_sentinel.screening import AmiScreener
from outage_sentinel.signals import SignalInbox
from outage_sentinel.silencing import Silencing
from outage_sentinel.sources.base import Source
from outage_sentinel.sources.capabilities import TopologyAware
from outage_sentinel.store import Store
from outage_sentinel.supervisor import (
    HEARTBEAT_SECONDS,
    DatabaseWatch,
    Health,
    MetricsPortError,
    ProcessLoop,
    Schedule,
    SecondDaemonError,
    SqliteNodeLock,
    close_all,
    serve_metrics,
)
from outage_sentinel.term import Term
from outage_sentinel.topology import Topology

#: How often the AMI screen releases held outages (seconds).
SCREEN_TICK_SECONDS = 2.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Builds the stages from the config and runs them; knows nothing of their insides."""

    def __init__(
        self,
        config: Config,
        *,
        topology: Topology | None = None,
        store: Store | None = None,
        channels: Mapping[str, Channel] | None = None,
        sources: list[Source] | None = None,
        clock: Callable[[], datetime] = utcnow,
        estimator: Estimator | None = None,
        metrics: Metrics | None = None,
        signals: SignalInbox | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.log = get_logger(component="daemon")
        register_config_secrets(config)
        self.tz = ZoneInfo(config.timezone)
        self.metrics = metrics or Metrics()
        self.topology = topology or configured_bundle(config)
        #: The feeders this daemon group serves (``region``; raises RegionError naming the key).
        self.region = resolve_region(config.region.name, config.region.substations,
                                     config.region.feeders, self.topology)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(config.database_url(), region=config.region.name)
        if self.store.region != self.region.name:
            raise ValueError(f"the store serves region {self.store.region!r}, the config "
                             f"{self.region.name!r}")
        self.store.migrate()
        self.sources: list[Source] = sources if sources is not None else [
            build_source(s, config, self.topology) for s in config.sources if s.enabled]
        self.channels = dict(channels) if channels is not None else build_channels(config)
        #: Only the region's leader polls, processes and sends (``ha``); a sole node always leads.
        self.leadership = build_leadership(config, self.store, self._leadership_changed)
        self._build_stages(estimator)
        self._stop = threading.Event()
        #: Signals received and not yet acted on (``run`` may have installed it before start-up).
        self.signals = signals if signals is not None else SignalInbox()
        #: Held by ``run`` on SQLite: a second daemon on the same file stops at once.
        self.node_lock: SqliteNodeLock | None = None
        #: The board, when ``board.enabled`` and running (not in ``--once``).
        self.board: BoardServer | None = None
        #: Stops the daemon (exit 6) if the SQLite file is deleted or replaced under it.
        self.database = DatabaseWatch(self.store, self.metrics, self._stop, self.log)
        #: Readiness, systemd's watchdog and STATUS line.
        self.health = Health(self.store, self._stop, lambda: self.poller.last_success,
                             self.tz, self.leadership)

    def _build_stages(self, estimator: Estimator | None) -> None:
        config, store, metrics = self.config, self.store, self.metrics
        #: Held between processing rounds and AMI screening (and by a topology swap).
        self.process_lock = threading.Lock()
        # Only a daemon that runs the AMI sources screens their reports.
        ami = screened_sources(config, self.sources)
        self.screener = AmiScreener(store, self.topology, config, metrics, ami,
                                    self.process_lock)
        self.screener.load(self.clock())
        core = build_core(config, store, self.topology, metrics=metrics, clock=self.clock,
                          estimator=estimator, lock=self.process_lock, screen=self.screener,
                          on_template_failure=lambda f: self.clock_stage.template_failed(f))
        self.renderer, self.planner = core.renderer, core.planner
        self.lifecycle, self.processor = core.lifecycle, core.processor
        self.clock_stage = LifecycleClock(self.lifecycle, store, metrics, self.process_lock)
        self.report_job = ReportJob(self.lifecycle)
        #: A term began and the report it may have missed is still to be caught up.
        self.catch_up_due = False
        estimator = self.processor.estimator
        self.refit_job = RefitJob(store, lambda: self.topology, estimator,
                                  config.localisation.to_params()) \
            if isinstance(estimator, BayesEstimator) else None
        self.scope = RegionScope(self.region, self.topology)
        self.processor.use_topology(self.topology, self.planner, self.region.feeders)
        starts = PendingStarts()
        self.poller = Poller(store, metrics, {s.name: s for s in config.sources},
                             {name: self.screener.ingest for name in ami},
                             scope=lambda result: self.scope.keep(result), starts=starts)
        self.deliverer = build_deliverer(config, store, self.channels, metrics, self.clock,
                                         on_dead=self.clock_stage.alerts.dead_letter_notice,
                                         muter=Silencing(store, lambda: self.topology),
                                         moot=DarkAgain(store, lambda: self.topology),
                                         may_send=self.leadership.is_leader)
        #: This node's term as leader: begun at start (or takeover), ended when deposed.
        self.term = Term(store, self.sources, self.screener, self.deliverer, metrics,
                         self.leadership.region, self.clock, self.log, starts)

    # -- one cycle, and the stages as the tests and benchmarks drive them ----------------------

    def start(self) -> None:
        """Take the lead if this node can (always, without ``ha``); a standby stays warm."""
        self.health.started = True
        self.metrics.up.set(time.time())
        for cfg in self.config.sources:
            self.metrics.poll_interval.labels(cfg.name).set(cfg.interval_seconds)
        if self.leadership.renew():
            self._leadership_changed(True)
        else:
            self.restore_refit()
            self.term.end()
            self.log.info("standby", region=self.leadership.region)
        self.catch_up_tick()

    def _leadership_changed(self, leader: bool) -> None:
        if leader and not self.term.active:
            # Not here: this runs inside the lease's renewal, which a report's build must
            # not hold up (a lease that lapses meanwhile would bounce the leadership).
            self.catch_up_due = True
            self.restore_refit()  # at start, or a takeover: the old leader may have refit
        self.term.changed(leader, channels=sorted(self.channels),
                          topology=self.topology.source,
                          transformers=len(self.topology.transformers))

    def restore_refit(self) -> None:
        """Localise with what the last refit (this node's or another's) learnt and kept in
        the store, not with the configured parameters alone until the next refit; with the
        refit off (``refit_at: null``), the configured ones, whatever an earlier refit kept."""
        if self.refit_job is not None and self.config.localisation.refit_at:
            self.refit_job.restore()

    def daily_report_tick(self, now: datetime) -> int:
        """The scheduled daily report (:meth:`ReportJob.run_once`). One that fails (the
        database busy past its timeout, ...) logs and leaves the report to the catch-up tick,
        which tries again until it is queued or no longer due (the report's outbox key keeps
        it to one message). Never raises; returns the messages queued."""
        try:
            return self.report_job.run_once(now)
        except Exception as exc:
            self.log.error("daily_report_failed", error=redact(repr(exc)), retry="catch_up")
            self.catch_up_due = True
            return 0

    def catch_up_tick(self) -> int:
        """The report catch-up a term's beginning (or a failed daily report job) asked for
        (:meth:`catch_up_reports`), run once: at start, and by its own job after a standby's
        takeover or the job's failure (again at each tick while it fails)."""
        if not self.catch_up_due or not self.leadership.is_leader():
            return 0
        self.catch_up_due = False
        return self.catch_up_reports(self.clock())

    def catch_up_reports(self, now: datetime) -> int:
        """A term begins (start, or a standby's takeover): queue yesterday's daily report if
        ``daily_report_at`` passed today while no node ran the job (or the job failed).
        Never raises: a failure leaves it due, for the next tick to try again; the report's
        outbox key keeps it to one message however often this runs, on however many nodes."""
        cc = self.config.command_centre
        if not (cc.daily_report_at and cc.channel):
            return 0
        try:
            queued = self.report_job.catch_up(now, cc.daily_report_at)
        except Exception as exc:
            self.log.error("daily_report_catch_up_failed", error=redact(repr(exc)))
            self.catch_up_due = True
            return 0
        if queued:
            self.log.info("daily_report_caught_up", at=cc.daily_report_at, queued=queued)
        return queued

    def close(self) -> None:
        if self.board is not None:
            self.board.stop()
        # Sends under way finish (each bounded by its channel's timeout) or are left in flight
        # for the next start's recovery: the crash-between-send-and-mark case, one resend at most.
        self.deliverer.close(self.config.delivery.shutdown_grace_seconds)
        self.leadership.release()  # a standby takes over at once
        try:
            self.screener.save(self.clock())
        except Exception as exc:  # the reports are stored; the next start re-screens them
            self.log.warning("ami_screen_save_failed", error=redact(repr(exc)))
        close_all(self.sources, "source", self.log)
        close_all(list(self.channels.values()), "channel", self.log)
        self.store.close()
        if self.node_lock is not None:  # last: a next daemon starts only once this one is done
            self.node_lock.release()

    def run_once(self) -> CycleReport:
        """One cycle: poll every source, process, deliver everything that is due."""
        self.start()
        return run_cycle(self.sources, self.poller, self.processor, self.clock_stage,
                         self.deliverer, self.clock)

    def poll(self, source: Source) -> PollResult | None:
        """Poll one source and persist what it returned. Never raises."""
        return self.poller.poll(source, self.clock())

    def process(self) -> int:
        """Fold every stored, unprocessed event into incidents. Returns how many were done."""
        return self.processor.process(self.clock())

    def screen_tick(self, now: datetime) -> int:
        """Release held AMI outages that have now lasted the minimum duration, and fold them."""
        released = self.screener.run_once(now)
        if released:
            self.process()
        return released

    # -- running ------------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0, or :data:`EXIT_DATABASE_FILE`).

        Raises :class:`MetricsPortError` (nothing started) when the metrics port is taken.
        """
        if install_signals:
            self.signals.install()
        try:
            if self.store.sqlite_path is not None:
                self.node_lock = SqliteNodeLock(self.store.sqlite_path)
                self.node_lock.acquire()
            serve_metrics(self.config, self.metrics, self.log, self.health.readiness)
            self.board = serve_board(self.config, lambda: self.topology, self.clock)
        except (MetricsPortError, BoardPortError, SecondDaemonError):
            self.close()
            raise
        note = self.config.failover_note()
        if note:
            self.log.warning("failover_slower_than_polls", note=note)
        loop = ProcessLoop(self.signals, self._stop, self.database, self.log)
        return loop.run(start=self.start, close=self.close, scheduler=self._scheduler,
                        reload=self.reload_topology, healthy=self.health.healthy,
                        status=self.health.status)

    def _scheduler(self) -> BackgroundScheduler:
        """One job per source and per stage; each job runs one stage and never raises."""
        jobs = Schedule(self.metrics, self.log, self.clock())
        configs = {s.name: s for s in self.config.sources}
        for source in self.sources:
            cfg = configs.get(source.name)
            jobs.every(self._poll_job, cfg.interval_seconds if cfg else 60.0,
                       f"poll:{source.name}", cfg.misfire_grace_seconds if cfg else 30, [source])
        jobs.every(self.health.beat, HEARTBEAT_SECONDS, "heartbeat")
        if self.config.ha.enabled:
            jobs.every(self._renew, self.config.ha.lease_seconds / 3, "lease")
        jobs.every(self._guarded("delivery", self._deliver), self.config.delivery.interval_seconds,
                   "deliver")
        jobs.every(self._guarded("lifecycle_check", self.clock_stage.run_once),
                   self.config.lifecycle.check_interval_seconds, "lifecycle")
        if self.screener.sources:
            jobs.every(self._guarded("ami_screen", self.screen_tick), SCREEN_TICK_SECONDS,
                       "ami_screen")
        cc = self.config.command_centre
        if cc.daily_report_at and cc.channel:
            jobs.daily(self._guarded("daily_report", self.daily_report_tick),
                       cc.daily_report_at, self.tz, "daily_report")
            jobs.every(self._guarded("report_catch_up", lambda _now: self.catch_up_tick()),
                       self.config.lifecycle.check_interval_seconds, "report_catch_up")
        if self.refit_job is not None and self.config.localisation.refit_at:
            jobs.daily(self._guarded("refit", self.refit_job.run_once),
                       self.config.localisation.refit_at, self.tz, "refit")
        return jobs.scheduler

    def stop(self) -> None:
        self._stop.set()

    def reload_topology(self) -> bool:
        """Load the topology bundle again (SIGHUP, ``systemctl reload``). A bundle with any
        problem is refused, every problem logged, and the one in use is kept."""
        started = time.perf_counter()
        loaded = load_replacement(self.config, self.renderer, self.metrics, self.log,
                                  self.topology.source)
        if loaded is None:
            return False
        topology, planner = loaded
        scope = self._scope_in(topology)
        if scope is None:
            return False
        planner.links = self.planner.links  # the field links go on with the new bundle
        planner.clock_flags = self.planner.clock_flags  # and the AMI screen's clock flags
        with self.process_lock:  # between two processing rounds, never inside one
            before = len(self.topology.transformers)
            self.topology, self.planner = topology, planner
            self.lifecycle.topology, self.lifecycle.planner = topology, planner
            self.processor.use_topology(topology, planner, scope.region.feeders)
            self.scope = scope
            self.screener.use_topology(topology)
            for source in self.sources:
                if isinstance(source, TopologyAware):
                    source.update_topology(topology)
        self.metrics.topology_reloads.labels("ok").inc()
        self.log.info("topology_reloaded", topology=topology.source,
                      transformers=len(topology.transformers), transformers_before=before,
                      seconds=round(time.perf_counter() - started, 3))
        return True

    def _scope_in(self, topology: Topology) -> RegionScope | None:
        """The region in a new bundle; None (the reload refused, said why) when the bundle
        lacks a substation or feeder the region names."""
        try:
            region = resolve_region(self.region.name, self.config.region.substations,
                                    self.config.region.feeders, topology)
        except RegionError as exc:
            self.metrics.topology_reloads.labels("error").inc()
            self.log.error("topology_reload_refused", topology=topology.source, problem=str(exc))
            return None
        self.region = region
        return RegionScope(region, topology)

    # -- scheduler jobs ---------------------------------------------------------------------

    def _poll_job(self, source: Source) -> None:
        """Poll ``source`` and fold what it brought. A failure (the database away: the poll
        itself never raises, the processing may) is logged ``poll_job_failed``, never raised;
        the next run tries again."""
        if self._stop.is_set() or not self.leadership.is_leader() or not self.database.intact():
            return
        try:
            self.poller.run_once(source, self.clock, keep_going=lambda: not self._stop.is_set()
                                 and self.leadership.is_leader())
            self.process()
        except Exception as exc:
            self.log.error("poll_job_failed", source=source.name, error=redact(repr(exc)))

    def _guarded(self, what: str, step: Callable[[datetime], Any]) -> Callable[[], None]:
        """A job running ``step(now)`` that logs a failure (the database may be briefly
        unavailable; the next run tries again) instead of raising."""
        def job() -> None:
            if self._stop.is_set() or not self.leadership.is_leader():
                return
            try:
                step(self.clock())
            except Exception as exc:
                self.log.error(f"{what}_failed", error=redact(repr(exc)))
        job.__qualname__ = f"Daemon.{what}"
        return job

    def _renew(self) -> None:
        if not self._stop.is_set():
            self.leadership.renew()

    def _deliver(self, now: datetime) -> None:
        self.clock_stage.alert_templates(now)
        # Only starts the sends (each channel target on its own worker) and returns: a hung
        # service never makes this job overrun or holds up another channel.
        self.deliverer.dispatch(now)
