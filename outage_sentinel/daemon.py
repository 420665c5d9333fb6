"""The daemon: the I/O shell around the pure core.

One cycle for a source::

    poll ─▶ store events + quarantine + cursor (one transaction) ─▶ acknowledge to the source
         ─▶ process unprocessed events: correlate, estimate, plan notices, write incident +
            outbox + "processed" mark (one transaction per round of events; if one fails,
            the round is redone with one transaction per event)
    deliver (its own job): due outbox messages ─▶ a job per (channel, target) ─▶ channels
         ─▶ mark sent / retry / dead   (a hung service holds only its own target)

Every step is restartable from the database alone, which is what makes SIGKILL safe: an event
is either stored (and will be processed) or its cursor did not move (and it will be fetched
again); an incident change and its notices commit together; a message is only ``sent`` once
its channel confirmed it.

APScheduler 3.x runs one interval job per source and one for delivery, each with
``max_instances=1`` and ``coalesce`` so an overrunning poll is skipped and counted, not piled
up. SIGTERM/SIGINT stop the scheduler, wait for running jobs to finish, give sends under way
``delivery.shutdown_grace_seconds`` to complete (then leave them in flight for recovery), and
exit 0.
"""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from outage_sentinel.channels.base import Channel
from outage_sentinel.config import Config, ReplaySourceConfig, SourceConfig
from outage_sentinel.delivery import Deliverer
from outage_sentinel.events import OutageEvent, PollResult, Quarantined, parse_time, split_list
from outage_sentinel.incidents import (
    Estimate,
    Estimator,
    Evidence,
    Incident,
    apply_event,
    correlate,
    first_estimate,
    incident_class,
    plan_notices,
    resolve_event,
    restoration_step,
)
from outage_sentinel.liaison import LiaisonPlanner, Renderer, TemplateFailure
from outage_sentinel.lifecycle import Lifecycle, incident_columns
from outage_sentinel.localise import Evidence as LocaliserEvidence
from outage_sentinel.localise import (
    FaultContext,
    LocaliserParams,
    devices_per_feeder,
    localise,
)
from outage_sentinel.logs import get_logger, redact, register_secret
from outage_sentinel.metrics import Metrics
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.signals import SignalInbox, names
from outage_sentinel.sources.base import Source, SourceError
from outage_sentinel.store import Store, StoredEvent, events_t, incidents_t
from outage_sentinel.topology import Topology, TopologyError, load_bundle

#: Give up processing an event after this many failures (it is quarantined, not lost).
MAX_PROCESSING_FAILURES = 3
#: Source name of events the operator CLI writes (restoration steps).
OPERATOR_SOURCE = "operator"
#: Source name of the screened AMI outputs (per transformer area), and the kv key of its state.
AMI_SOURCE = "ami"
SCREEN_KEY = "ami_screen"
#: kv key of a storm declared by an operator (``outage-sentinel storm declare``).
STORM_KEY = "storm"
#: Polls in a row while an AMI source still has a full batch waiting (a storm backlog).
MAX_DRAIN_POLLS = 50
#: How often the AMI screen state is saved (reports after it are re-screened on start).
SCREEN_SAVE_SECONDS = 30.0
#: Stored events fetched per processing round (AMI reports are screened a round at a time).
BATCH = 5000
#: Exit code of ``run`` when the SQLite file was deleted or replaced under it (README "Exit
#: codes"); 3-5 are the start-up codes of the CLI.
EXIT_DATABASE_FILE = 6
#: Non-observation events folded into incidents per transaction (a failure redoes the round
#: one transaction per event).
ROUND_EVENTS = 250


def utcnow() -> datetime:
    return datetime.now(UTC)


class MetricsPortError(Exception):
    """The metrics endpoint cannot listen (port in use, address not on this host)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"metrics endpoint cannot listen on {host}:{port}: {reason} "
                         "(another process holds the port? change config key metrics.port, "
                         "or metrics.enabled: false)")
        self.host, self.port = host, port


def build_source(cfg: SourceConfig, config: Config, topology: Topology | None = None) -> Source:
    """Instantiate the source a config entry describes."""
    if isinstance(cfg, ReplaySourceConfig):
        from outage_sentinel.sources.replay import ReplaySource

        return ReplaySource(cfg.name, cfg.scenario, speed=cfg.speed, loop=cfg.loop)
    if cfg.type == "http_json":
        from outage_sentinel.sources.http_json import HttpJsonSource

        return HttpJsonSource(cfg, default_tz=ZoneInfo(cfg.timezone or config.timezone))
    if cfg.type == "mqtt":
        from outage_sentinel.sources.mqtt import MqttSource

        return MqttSource(cfg, topology=topology, default_tz=config.timezone)
    if cfg.type == "file_drop":
        from outage_sentinel.sources.file_drop import FileDropSource

        return FileDropSource(cfg, topology=topology, default_tz=config.timezone)
    raise ValueError(f"unknown source type {cfg.type!r}")


def build_channels(config: Config) -> dict[str, Channel]:
    from outage_sentinel.channels.registry import build_channels as build

    return build(config.channels)


def register_config_secrets(config: Config) -> None:
    """Tell the log scrubber every secret the config holds."""

    def walk(value: Any) -> None:
        if hasattr(value, "get_secret_value"):
            register_secret(value.get_secret_value())
        elif hasattr(type(value), "model_fields"):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(config)
    url = config.database_url()
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        register_secret(url.split("@", 1)[0].split("//", 1)[-1].split(":", 1)[1])


@dataclass
class CycleReport:
    """What one ``run --once`` cycle did (also logged)."""

    polled: int = 0
    failed_polls: int = 0
    events: int = 0
    quarantined: int = 0
    processed: int = 0
    delivered: int = 0


class _Round:
    """What one processing transaction has read and written, so that a storm's events on the
    same feeder correlate with the state in memory instead of re-reading and re-parsing it.

    Only valid inside its transaction: every incident change is still written at once (the
    database stays the truth for ids, reopen links, dispatch), the cache only saves reads.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.processed: dict[int, bool] = {}
        self.members: dict[tuple[str, str], tuple[int, str]] = {}
        self.members_known: set[tuple[str, str]] = set()
        self.forget()

    def forget(self) -> None:
        self.incidents: dict[str, Incident | None] = {}
        self.created: dict[str, Any] = {}
        self.feeders: dict[str, list[str]] = {}
        self.planned: list[Incident] | None = None
        self.faults: dict[str, int] | None = None
        self.storm: bool | None = None

    def preload(self, conn: Connection, batch: list[StoredEvent]) -> None:
        self.processed.update(self.store.processed_flags_in(conn, [s.row_id for s in batch]))
        keys = [(s.event.source, s.event.event_id) for s in batch]
        self.members.update(self.store.member_incidents_in(conn, keys))
        self.members_known.update(keys)

    def is_processed(self, conn: Connection, row_id: int) -> bool:
        if row_id in self.processed:
            return self.processed[row_id]
        q = select(events_t.c.processed).where(events_t.c.id == row_id)
        if self.store.dialect == "postgresql":
            q = q.with_for_update()
        return bool(conn.execute(q).scalar())

    def member_incident(self, conn: Connection, source: str, event_id: str) -> str | None:
        key = (source, event_id)
        if key in self.members_known:
            hit = self.members.get(key)
            return hit[1] if hit else None
        row = conn.execute(select(events_t.c.incident_id)
                           .where(events_t.c.source == source, events_t.c.event_id == event_id,
                                  events_t.c.incident_id.is_not(None))
                           .order_by(events_t.c.id.desc()).limit(1)).first()
        return str(row[0]) if row else None

    def done(self, stored: StoredEvent, incident_id: str | None) -> None:
        """The event was folded (in this round's transaction) into this incident."""
        self.processed[stored.row_id] = True
        key = (stored.event.source, stored.event.event_id)
        if incident_id is not None and key in self.members_known:
            prev = self.members.get(key)
            if prev is None or stored.row_id > prev[0]:
                self.members[key] = (stored.row_id, incident_id)

    def _remember(self, row: Mapping[str, Any]) -> Incident:
        iid = str(row["id"])
        inc = self.incidents.get(iid)
        if inc is None:
            inc = Incident.from_json(row["state"])
            self.incidents[iid] = inc
            self.created[iid] = row["created_at"]
        return inc

    def get(self, conn: Connection, incident_id: str) -> Incident | None:
        if incident_id in self.incidents:
            return self.incidents[incident_id]
        row = self.store.get_incident(incident_id, conn)
        if row is None:
            return None
        return self._remember(row)

    def open_on(self, conn: Connection, feeder: str) -> list[Incident]:
        ids = self.feeders.get(feeder)
        if ids is None:
            rows = self.store.load_incidents(conn=conn, open_only=True, feeder=feeder)
            out = [self._remember(r) for r in rows]
            self.feeders[feeder] = [i.id for i in out]
            return out
        return [inc for i in ids if (inc := self.incidents.get(i)) is not None]

    def open_planned(self, conn: Connection) -> list[Incident]:
        if self.planned is None:
            self.planned = [Incident.from_json(r["state"]) for r in self.store.load_incidents(
                conn=conn, open_only=True, kinds=("planned", "temporary"))]
        return self.planned

    def open_faults(self, conn: Connection) -> dict[str, int]:
        """Open fault incidents with a fault device per feeder, kept current in the round."""
        if self.faults is None:
            self.faults = self.store.open_faults_by_feeder_in(conn)
        return self.faults

    def saved(self, before: Incident | None, after: Incident, now: datetime) -> None:
        """``after`` was just written (as :func:`incident_columns` does)."""
        if self.faults is not None:
            for inc, step in ((before, -1), (after, 1)):
                if (inc is not None and inc.kind == "fault" and inc.status == "active"
                        and inc.fault_device is not None):
                    self.faults[inc.feeder] = max(0, self.faults.get(inc.feeder, 0) + step)
        iid = after.id
        self.created.setdefault(iid, after.created_at or now)
        self.incidents[iid] = after
        for listed in self.feeders.values():
            if iid in listed:
                listed.remove(iid)
        ids = self.feeders.get(after.feeder) if after.feeder is not None else None
        if ids is not None and after.status == "active":
            ids.append(iid)
            ids.sort(key=lambda i: (self.created[i], i))  # as load_incidents orders them
        planned = ("planned", "temporary")
        if after.kind in planned or (before is not None and before.kind in planned):
            self.planned = None


class Daemon:
    """Wires config, topology, store, sources, core and channels together."""

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
        self.topology = topology or load_bundle(config.topology)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(config.database_url())
        self.store.migrate()
        self.sources: list[Source] = sources if sources is not None else [
            build_source(s, config, self.topology) for s in config.sources if s.enabled]
        self.source_configs = {s.name: s for s in config.sources}
        self.channels = dict(channels) if channels is not None else build_channels(config)
        self.estimator: Estimator = estimator or default_estimator(
            config.localisation.to_params())
        self._protective = devices_per_feeder(self.topology)
        self._protective_total = sum(self._protective.values())
        #: Override templates that failed (the built-in was used); told to the command centre.
        self._template_failures: list[TemplateFailure] = []
        self.planner = LiaisonPlanner(self.topology,
                                      Renderer(config.notify.language, config.notify.templates_dir,
                                               on_failure=self._template_failed),
                                      self.tz, config.notify.liaison_roles)
        self.deliverer = Deliverer(self.store, self.channels,
                                   RetryPolicy.from_config(config.delivery.retry), self.metrics,
                                   batch_size=config.delivery.batch_size,
                                   dry_run=config.delivery.dry_run,
                                   language=config.notify.language,
                                   quiet_hours=config.notify.quiet_windows(), tz=self.tz,
                                   on_dead=self._dead_letter_notice,
                                   workers_per_channel=config.delivery.workers_per_channel,
                                   clock=clock)
        self.window = timedelta(minutes=config.correlation.window_minutes)
        self.etr_step = timedelta(minutes=config.notify.etr_update_minutes)
        self.lifecycle = Lifecycle(self.store, self.topology, self.planner, config, clock)
        # Only a daemon that runs the AMI sources screens their reports (the operator CLI builds
        # a Daemon without sources and must not touch the screen state).
        self.ami_sources = {s.name for s in self.sources if s.type in ("mqtt", "file_drop")}
        self._load_screen()
        self._process_lock = threading.Lock()
        self._failures: dict[int, int] = {}
        self._stop = threading.Event()
        #: Signals received and not yet acted on (``run`` may have installed it before start-up).
        self.signals = signals if signals is not None else SignalInbox()
        self._started = False
        #: What :meth:`run` returns; only a lost database file changes it (see _database_intact).
        self._exit_code = 0
        self._database_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Restore source cursors and settle messages a previous process left in flight."""
        if self._started:
            return
        for source in self.sources:
            source.start(self.store.kv_get(f"cursor:{source.name}"))
        self.deliverer.recover(self.clock())
        self.metrics.up.set(time.time())
        self._started = True
        self.log.info("started", sources=[s.name for s in self.sources],
                      channels=sorted(self.channels), topology=self.topology.source,
                      transformers=len(self.topology.transformers))

    def close(self) -> None:
        # Sends under way finish (each bounded by its channel's timeout) or are left in flight
        # for the next start's recovery: the crash-between-send-and-mark case, one resend at most.
        self.deliverer.close(self.config.delivery.shutdown_grace_seconds)
        try:
            self.save_screen()
        except Exception as exc:  # the reports are stored; the next start re-screens them
            self.log.warning("ami_screen_save_failed", error=redact(repr(exc)))
        for source in self.sources:
            try:
                source.close()
            except Exception as exc:  # closing must not mask the shutdown
                self.log.warning("source_close_failed", source=source.name, error=repr(exc))
        for channel in self.channels.values():
            try:
                channel.close()
            except Exception as exc:
                self.log.warning("channel_close_failed", channel=channel.name, error=repr(exc))
        self.store.close()

    def run_once(self) -> CycleReport:
        """One cycle: poll every source, process, deliver everything that is due."""
        self.start()
        report = CycleReport()
        for source in self.sources:
            result = self.poll(source)
            report.polled += 1
            if result is None:
                report.failed_polls += 1
            else:
                report.events += len(result.events)
                report.quarantined += len(result.quarantined)
        report.processed = self.process()
        self.lifecycle.check(self.clock())
        self._template_alerts()
        for _ in range(1000):  # bounded: retries scheduled in the future are not due now
            n = self.deliverer.run_once(self.clock())
            report.delivered += n
            if n == 0:
                break
        return report

    def run(self, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0, or :data:`EXIT_DATABASE_FILE`).

        Raises :class:`MetricsPortError` (nothing started) when the metrics port is taken.
        """
        if install_signals:
            self.signals.install()
        self._serve_metrics()
        if self._stopped_during_startup():
            return 0
        self.start()
        if self._stopped_during_startup():
            return 0
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1})
        now = self.clock()
        for source in self.sources:
            cfg = self.source_configs.get(source.name)
            interval = cfg.interval_seconds if cfg else 60.0
            grace = int(cfg.misfire_grace_seconds) if cfg else 30
            scheduler.add_job(self._poll_job, "interval", seconds=interval, args=[source],
                              id=f"poll:{source.name}", next_run_time=now,
                              misfire_grace_time=max(1, grace))
        scheduler.add_job(self._deliver_job, "interval",
                          seconds=self.config.delivery.interval_seconds, id="deliver",
                          next_run_time=now, misfire_grace_time=30)
        scheduler.add_job(self._lifecycle_job, "interval",
                          seconds=self.config.lifecycle.check_interval_seconds, id="lifecycle",
                          next_run_time=now, misfire_grace_time=30)
        if self.config.command_centre.daily_report_at and self.config.command_centre.channel:
            hh, mm = self.config.command_centre.daily_report_at.split(":")
            scheduler.add_job(self._daily_report_job, "cron", hour=int(hh), minute=int(mm),
                              timezone=self.tz, id="daily_report", misfire_grace_time=3600)
        if self.ami_sources:
            scheduler.add_job(self._screen_job, "interval", seconds=2.0, id="ami_screen",
                              next_run_time=now, misfire_grace_time=30)
        scheduler.add_listener(self._on_job_event,
                               EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
        scheduler.start()
        self.log.info("running")
        try:
            while not self._stop.is_set():
                if self.signals.received:  # SIGHUPs during start-up become one reload here
                    self._act_on(self.signals.take())
                if not self._stop.is_set() and self._database_intact():
                    time.sleep(0.2)
        finally:
            self.log.info("stopping", reason="signal" if self._exit_code == 0 else "database")
            scheduler.shutdown(wait=True)  # drain: let running polls/deliveries finish
            self.close()
            self.log.info("stopped", exit_code=self._exit_code)
        return self._exit_code

    def stop(self) -> None:
        self._stop.set()

    def _stopped_during_startup(self) -> bool:
        """A SIGTERM/SIGINT came during start-up: close and start no job at all."""
        if not self.signals.stop_requested():
            return False
        self.log.info("stopping", reason="signal during start-up",
                      signals=names(self.signals.take()))
        self.close()
        self.log.info("stopped", exit_code=0)
        return True

    def _serve_metrics(self) -> None:
        if not self.config.metrics.enabled:
            return
        host, port = self.config.metrics.host, self.config.metrics.port
        try:
            self.metrics.serve(host, port)
        except OSError as exc:  # in use, or an address this host does not have
            self.close()
            raise MetricsPortError(host, port, exc.strerror or str(exc)) from None
        self.log.info("metrics_listening", host=host, port=port)

    def _database_intact(self) -> bool:
        """False (and the daemon stopping) once the SQLite file is deleted or replaced.

        Checked each main-loop turn and before each poll: SQLite keeps writing into a deleted
        file without an error, so history and the outbox would vanish at the next start and
        every notice be sent again. Stopping with :data:`EXIT_DATABASE_FILE` makes an operator
        look (the unit file does not restart on it).
        """
        problem = self.store.database_file_problem()
        if problem is None:
            return True
        with self._database_lock:
            first = self._exit_code == 0
            self._exit_code = EXIT_DATABASE_FILE
            self._stop.set()
        if first:
            self.metrics.database_file_replaced.inc()
            self.log.error("database_file_replaced", path=str(self.store.sqlite_path),
                           problem=problem, action="stop", exit_code=EXIT_DATABASE_FILE)
        return False

    def _act_on(self, signums: list[int]) -> None:
        """Stop if any signal asks to; else reload once however many SIGHUPs came."""
        if any(s != signal.SIGHUP for s in signums):
            self.log.info("signal", signals=names(signums), count=len(signums), action="stop")
            self._stop.set()
        else:
            self.log.info("signal", signals=names(signums), count=len(signums),
                          action="reload topology")
            self.reload_topology()

    def reload_topology(self) -> bool:
        """Load the topology bundle again (SIGHUP, ``systemctl reload``). A bundle with any
        problem is refused, every problem logged, and the one in use is kept."""
        started = time.perf_counter()
        try:
            topology = load_bundle(self.config.topology)
        except TopologyError as exc:
            self.metrics.topology_reloads.labels("error").inc()
            self.log.error("topology_reload_failed", topology=str(self.config.topology),
                           problems=[str(p) for p in exc.problems], kept=self.topology.source)
            return False
        except Exception as exc:  # an unreadable directory and the like: keep running
            self.metrics.topology_reloads.labels("error").inc()
            self.log.error("topology_reload_failed", topology=str(self.config.topology),
                           error=redact(repr(exc)), kept=self.topology.source)
            return False
        from outage_sentinel.ami import AmiRegistry

        # Everything derived from the bundle is built first; the swap itself is quick.
        registry = AmiRegistry.from_topology(topology)
        planner = LiaisonPlanner(topology, self.planner.renderer, self.tz,
                                 self.config.notify.liaison_roles)
        protective = devices_per_feeder(topology)
        with self._process_lock:  # between two processing rounds, never inside one
            before = len(self.topology.transformers)
            self.topology = topology
            self.planner = planner
            self.lifecycle.topology, self.lifecycle.planner = topology, planner
            self._protective = protective
            self._protective_total = sum(protective.values())
            self.screen.registry = registry
            for source in self.sources:
                update = getattr(source, "update_topology", None)
                if update is not None:
                    update(topology)
        self.metrics.topology_reloads.labels("ok").inc()
        self.log.info("topology_reloaded", topology=topology.source,
                      transformers=len(topology.transformers), transformers_before=before,
                      seconds=round(time.perf_counter() - started, 3))
        return True

    def _on_job_event(self, event: JobExecutionEvent) -> None:
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
                           error=redact(repr(getattr(event, "exception", None))))

    def _poll_job(self, source: Source) -> None:
        if self._stop.is_set() or not self._database_intact():
            return
        cfg = self.source_configs.get(source.name)
        batch = getattr(cfg, "max_batch", None)
        for _ in range(MAX_DRAIN_POLLS):
            result = self.poll(source)
            # In a storm an AMI source has more waiting than one batch: drain it now rather
            # than one batch per interval.
            full = result is not None and batch is not None and \
                len(result.events) + len(result.quarantined) >= batch
            if result is None or self._stop.is_set() or not (
                    full or getattr(source, "buffered", 0)):
                break
        self.process()

    def _screen_job(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.screen_tick(self.clock())
        except Exception as exc:
            self.log.error("ami_screen_failed", error=redact(repr(exc)))

    def _dead_letter_notice(self, row: Any, reason: str, now: datetime) -> None:
        """Every dead letter is shown to the command centre (but not one about itself)."""
        if row.audience == "command":
            return
        self.lifecycle.dead_letter(row, reason, now)

    def _template_failed(self, failure: TemplateFailure) -> None:
        """Count a failed override template; the alert is queued by :meth:`_template_alerts`
        (the failure happens inside the transaction that renders the notice)."""
        self.metrics.template_failures.labels(failure.name).inc()
        self._template_failures.append(failure)

    def _template_alerts(self) -> None:
        """Tell the command centre of each failed template, once per incident and template."""
        pending, self._template_failures = self._template_failures, []
        seen: set[tuple[str | None, str]] = set()
        for f in pending:
            if (f.incident_id, f.name) in seen:
                continue
            seen.add((f.incident_id, f.name))
            try:
                self.lifecycle.template_alert(f.incident_id, f.name, f.where, f.error,
                                              self.clock())
            except Exception as exc:  # the notice itself went out; the alert is extra
                self.log.error("template_alert_failed", error=redact(repr(exc)))

    def _lifecycle_job(self) -> None:
        if self._stop.is_set():
            return
        try:
            now = self.clock()
            self.lifecycle.check(now)
            self.metrics.storm_declared.set(int(storm_declared(self.store.kv_get(STORM_KEY), now)))
        except Exception as exc:
            self.log.error("lifecycle_check_failed", error=redact(repr(exc)))

    def _daily_report_job(self) -> None:
        try:
            self.lifecycle.daily_report(self.clock())
        except Exception as exc:
            self.log.error("daily_report_failed", error=redact(repr(exc)))

    def _deliver_job(self) -> None:
        if self._stop.is_set():
            return
        try:
            self._template_alerts()
            # Only starts the sends (each channel target on its own worker) and returns: a hung
            # service never makes this job overrun or holds up another channel.
            self.deliverer.dispatch(self.clock())
        except Exception as exc:  # the database may be briefly unavailable; try next time
            self.log.error("delivery_failed", error=redact(repr(exc)))

    # -- polling ------------------------------------------------------------------------------

    def poll(self, source: Source) -> PollResult | None:
        """Poll one source and persist what it returned. Never raises."""
        log = self.log.bind(source=source.name)
        started = time.perf_counter()
        now = self.clock()
        try:
            result = source.poll(now)
        except SourceError as exc:
            self._poll_failed(source, now, str(exc), getattr(exc, "raw", None))
            return None
        except Exception as exc:  # a source bug must not kill the daemon
            log.exception("poll_crashed")
            self._poll_failed(source, now, f"{type(exc).__name__}: {exc}", None)
            return None
        try:
            if source.name in self.ami_sources:
                counts = self._ingest_and_screen(source.name, result, now)
            else:
                counts = self.store.ingest(source.name, result, now)
        except Exception as exc:
            log.error("store_failed", error=redact(repr(exc)))
            self.metrics.polls.labels(source.name, "error").inc()
            return None
        try:
            source.acknowledge(result)
        except Exception as exc:
            log.warning("acknowledge_failed", error=redact(repr(exc)))
        self.metrics.events.labels(source.name).inc(counts.inserted)
        self.metrics.duplicates.labels(source.name).inc(counts.duplicates)
        self.metrics.quarantined.labels(source.name).inc(counts.quarantined)
        self.metrics.polls.labels(source.name, "not_modified" if result.not_modified else "ok").inc()
        self.metrics.last_success.labels(source.name).set(now.timestamp())
        self.metrics.poll_duration.labels(source.name).observe(time.perf_counter() - started)
        for q in result.quarantined:
            log.warning("quarantined", reason=q.reason)
        if counts.inserted or counts.quarantined:
            log.info("polled", new=counts.inserted, duplicates=counts.duplicates,
                     quarantined=counts.quarantined)
        return result

    def _poll_failed(self, source: Source, now: datetime, reason: str, raw: Any) -> None:
        reason = redact(reason)
        self.log.error("poll_failed", source=source.name, reason=reason)
        self.metrics.polls.labels(source.name, "error").inc()
        if raw is not None:
            try:
                self.store.quarantine(Quarantined(source.name, reason, raw), now)
                self.metrics.quarantined.labels(source.name).inc()
            except Exception as exc:
                self.log.error("quarantine_failed", source=source.name, error=redact(repr(exc)))

    # -- AMI screening ------------------------------------------------------------------------

    def _load_screen(self) -> Any:
        """The screen as of its last saved state, caught up with the reports screened since.

        Saving the whole state (megabytes in a storm) at every batch would dominate ingest, so
        it is saved at most every :data:`SCREEN_SAVE_SECONDS` with the id of the last report it
        includes; reports after that id are fed again here. Outputs are deterministic, so the
        ones re-produced are duplicates the store ignores.
        """
        from outage_sentinel.ami import AmiRegistry, AmiScreen, ScreenPolicy

        registry = AmiRegistry.from_topology(self.topology)
        policy = ScreenPolicy.from_config(self.config.ami_screen)
        saved = self.store.kv_get(SCREEN_KEY) or {}
        screen = None
        if saved.get("state"):
            try:
                screen = AmiScreen.from_state(saved["state"], registry, policy, AMI_SOURCE)
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning("ami_screen_state_unusable", error=repr(exc))
        self.screen = screen or AmiScreen(registry, policy, AMI_SOURCE)
        self._screen_row = int(saved.get("row", 0)) if screen is not None else 0
        self._screen_saved = time.monotonic()
        if self.ami_sources:
            now = self.clock()
            replay = [s for s in self.store.events_after(self._screen_row, self.ami_sources)
                      if s.event is not None and self._is_observation(s.event)]
            if replay:
                with self.store.transaction() as conn:
                    result = self.screen.feed([s.event for s in replay], now)
                    self._screen_row = max(s.row_id for s in replay)
                    self._store_screened(conn, result, now, force_save=True)
                self.log.info("ami_screen_caught_up", reports=len(replay))
        return self.screen

    def _is_observation(self, event: OutageEvent) -> bool:
        from outage_sentinel.ami import parse_device_ref

        return (event.source in self.ami_sources and event.signal in ("dead", "alive")
                and parse_device_ref(event.area_text) is not None)

    def _ingest_and_screen(self, source: str, result: PollResult, now: datetime) -> Any:
        """Store an AMI poll and screen its new reports in the same transaction: a storm's
        reports never make a round trip through the unprocessed queue."""
        with self._process_lock:
            try:
                with self.store.transaction() as conn:
                    counts = self.store.ingest_in(conn, source, result, now,
                                                  processed=self._is_observation)
                    fresh = [e for e in counts.new_events if self._is_observation(e)]
                    screened = self.screen.feed(fresh, now)
                    if counts.new_events:
                        last = conn.execute(select(func.max(events_t.c.id)).where(
                            events_t.c.source == source)).scalar()
                        self._screen_row = max(self._screen_row, int(last or 0))
                    self._store_screened(conn, screened, now)
            except Exception:
                self._load_screen()  # back to the committed state
                raise
        self.metrics.ami_observations.inc(len(fresh))
        return counts

    def _screen_batch(self, observations: list[StoredEvent]) -> None:
        """Screen stored AMI reports; store the area outputs with the reports' processed marks
        in one transaction (a crash replays the reports, to the same outputs)."""
        now = self.clock()
        try:
            with self.store.transaction() as conn:
                result = self.screen.feed([s.event for s in observations], now)
                self._screen_row = max(self._screen_row, *(s.row_id for s in observations))
                self._store_screened(conn, result, now)
                self.store.mark_many_processed_in(conn, [s.row_id for s in observations])
        except Exception:
            self._load_screen()  # back to the committed state
            raise
        self.metrics.ami_observations.inc(len(observations))

    def screen_tick(self, now: datetime) -> int:
        """Release held AMI outages that have now lasted the minimum duration."""
        due = self.screen.next_due()
        if due is None or due > now:
            return 0
        with self._process_lock:
            try:
                with self.store.transaction() as conn:
                    result = self.screen.tick(now)
                    self._store_screened(conn, result, now)
            except Exception:
                self._load_screen()
                raise
        self.process()
        return len(result.events)

    def save_screen(self) -> None:
        """Persist the screen state now (on shutdown)."""
        if self.ami_sources:
            with self._process_lock, self.store.transaction() as conn:
                self._store_screened(conn, None, self.clock(), force_save=True)

    def _store_screened(self, conn: Connection, result: Any, now: datetime,
                        force_save: bool = False) -> None:
        if result is not None:
            if result.events:
                self.store.ingest_in(conn, AMI_SOURCE, PollResult(events=list(result.events)),
                                     now)
            self.metrics.ami_momentary.inc(result.momentary)
            self.metrics.ami_customer_faults.inc(len(result.customer_faults))
            for fault in result.customer_faults:
                self.log.info("customer_side_fault",
                              **{k: str(v) for k, v in vars(fault).items()})
        if force_save or time.monotonic() - self._screen_saved >= SCREEN_SAVE_SECONDS:
            self.store.kv_set_in(conn, SCREEN_KEY, {"state": self.screen.to_state(),
                                                    "row": self._screen_row}, now)
            self._screen_saved = time.monotonic()

    # -- processing ---------------------------------------------------------------------------

    def process(self) -> int:
        """Fold every stored, unprocessed event into incidents. Returns how many were done."""
        done = 0
        with self._process_lock:
            while True:
                fetched = self.store.unprocessed_events(BATCH)
                batch = [s for s in fetched
                         if self._failures.get(s.row_id, 0) < MAX_PROCESSING_FAILURES]
                observations = [s for s in batch if self._is_observation(s.event)]
                progress = 0
                if observations:
                    try:
                        self._screen_batch(observations)
                        progress += len(observations)
                    except Exception as exc:
                        self.log.exception("ami_screening_failed", reports=len(observations))
                        for s in observations:
                            self._failed(s, exc)
                rest = [s for s in batch if not self._is_observation(s.event)]
                for i in range(0, len(rest), ROUND_EVENTS):
                    progress += self._process_round(rest[i:i + ROUND_EVENTS])
                done += progress
                if len(fetched) < BATCH or progress == 0:
                    break
            self._update_incident_gauge()
        return done

    def _process_round(self, chunk: list[StoredEvent]) -> int:
        """Fold events into incidents in one transaction (incident changes, their outbox rows
        and processed marks still commit together). If any event fails, the whole round is
        rolled back and redone with a transaction per event, so a failing event is retried or
        quarantined alone as before (a savepoint per event cost more than the storm's saves)."""
        if len(chunk) == 1:
            return int(self._process_one(chunk[0]))
        try:
            with self.store.transaction() as conn:
                rnd = _Round(self.store)
                rnd.preload(conn, chunk)
                for stored in chunk:
                    rnd.done(stored, self._apply(conn, stored, rnd))
        except Exception as exc:
            self.log.warning("processing_round_failed", events=len(chunk),
                             error=redact(repr(exc)), retry="one transaction per event")
            return sum(self._process_one(s) for s in chunk)
        for stored in chunk:
            self._failures.pop(stored.row_id, None)
        return len(chunk)

    def _process_one(self, stored: StoredEvent) -> bool:
        try:
            with self.store.transaction() as conn:
                self._apply(conn, stored, _Round(self.store))
            self._failures.pop(stored.row_id, None)
            return True
        except Exception as exc:
            self.log.exception("processing_failed", source=stored.event.source,
                               event_id=stored.event.event_id)
            self._failed(stored, exc)
            return False

    def _failed(self, stored: StoredEvent, exc: Exception) -> None:
        """Count a processing failure; after a few, quarantine the event and stop retrying
        (the event row itself stays stored, so nothing accepted is lost)."""
        event = stored.event
        n = self._failures.get(stored.row_id, 0) + 1
        self._failures[stored.row_id] = n
        self.metrics.processing_errors.inc()
        if n < MAX_PROCESSING_FAILURES:
            return
        try:
            with self.store.transaction() as conn:
                self.store.quarantine_in(conn, Quarantined(
                    event.source, f"processing failed {n} times: "
                    f"{redact(type(exc).__name__ + ': ' + str(exc))}",
                    {"event_row": stored.row_id, **event.to_json()}), self.clock())
                self.store.mark_processed_in(conn, stored.row_id, None)
        except Exception:
            self.log.exception("quarantine_failed", source=event.source, event_id=event.event_id)

    def _apply(self, conn: Connection, stored: StoredEvent, rnd: _Round) -> str | None:
        """Fold one event in; returns the incident it now belongs to (``None``: none)."""
        now = self.clock()
        event = stored.event
        # Another process (the operator CLI) may have processed it since we listed it.
        if rnd.is_processed(conn, stored.row_id):
            return None
        resolved = resolve_event(self.topology, event)
        log = self.log.bind(source=event.source, event_id=event.event_id, feeder=resolved.feeder)
        if resolved.unknown:
            log.warning("unknown_references", refs=list(resolved.unknown))
            self._quarantine_unknown(conn, stored, resolved.unknown, now)
        current: Incident | None = None
        known_id = rnd.member_incident(conn, event.source, event.event_id)
        if known_id is None and event.source == OPERATOR_SOURCE:
            # Operator steps (``incidents restore``) name their incident explicitly.
            known_id = str(event.raw.get("incident_id") or "") or None
        if known_id is not None:
            current = rnd.get(conn, known_id)
        if current is None and resolved.feeder is not None:
            # Only open incidents on the event's feeder can take it (parsing every open
            # incident's state per event would make a storm quadratic).
            current = correlate(rnd.open_on(conn, resolved.feeder), event, resolved, now,
                                self.window)
        if current is None and (event.status != "active" or event.signal not in ("notice", "dead")):
            # A restoration or alive report for nothing we know of: record it, nothing to do.
            self.store.mark_processed_in(conn, stored.row_id, None)
            log.info("event_without_incident", status=event.status, signal=event.signal)
            return None
        unplaced = not (resolved.transformers or resolved.possible or resolved.device)
        if current is None and unplaced:
            # Not dropped: it opens an incident (feeder if known, else "?") whose summary
            # carries the raw text to the command centre for a person to place.
            log.warning("event_unlocatable", area_text=event.area_text,
                        reason="no known transformer area or device", action="command_centre")
        planned = self._planned_transformers(rnd.open_planned(conn), now)
        if (current is None and incident_class(event.kind) == "unplanned" and planned
                and resolved.transformers and set(resolved.transformers) <= planned):
            # Areas off inside an announced planned outage's window: explained, not a fault.
            self.store.mark_processed_in(conn, stored.row_id, None)
            log.info("explained_by_planned_outage", transformers=list(resolved.transformers))
            return None
        estimator = self.estimator
        if isinstance(estimator, BayesEstimator):
            estimator = estimator.within(self._fault_context(conn, rnd, resolved.feeder, now))
        started = time.perf_counter()
        after = apply_event(current, event, resolved, self.topology, estimator, now,
                            lambda: self._new_incident_id(conn, event.start), planned)
        self.metrics.localise_duration.observe(time.perf_counter() - started)
        if current is None and unplaced:
            after = replace(after, feeder=resolved.feeder or "?")
        if current is None and incident_class(after.kind) == "unplanned":
            after = self._link_reopened(conn, after, now)
        notices, after = plan_notices(current, after, self.topology, self.etr_step)
        rows = self.planner.rows(after, notices, now, previous=current)
        rows += self.lifecycle.summary_rows(current, after)
        if current is None and unplaced and not any(r["audience"] == "command" for r in rows):
            # Summaries switched off: an outage nobody could place still goes to a person.
            rows += self.lifecycle.command_rows(after, "unplaced",
                                                self.lifecycle.render_summary(after))
        extra = {"priority": self.lifecycle.priority(after, now).score} \
            if after.status == "active" else {}
        self.store.save_incident_in(conn, incident_columns(after, now, **extra))
        rnd.saved(current, after, now)
        self._log_steps(conn, current, after, event, now)
        added = self.store.enqueue_in(conn, rows, now)
        if after.status == "active" and (after.off or after.feeder != "?"):
            # A crew goes only where there is a line to send it to.
            after = self._dispatch_if_waiting(conn, after, now, rnd)
        self.store.mark_processed_in(conn, stored.row_id, after.id)
        if current is None or current.revision != after.revision:
            log.info("incident_revised", incident_id=after.id, revision=after.revision,
                     status=after.status, fault_device=after.fault_device,
                     transformers=len(after.estimate.transformers),
                     customers=after.estimate.customers, villages=len(after.estimate.villages),
                     notices=[f"{n.purpose}:{len(n.villages)}" for n in notices], queued=added)
        return after.id

    def _quarantine_unknown(self, conn: Connection, stored: StoredEvent, refs: tuple[str, ...],
                            now: datetime) -> None:
        """Keep a record naming unknown lines/areas for the operator (``quarantine list``) with
        the reason; what did resolve is still processed."""
        event = stored.event
        self.store.quarantine_in(conn, Quarantined(
            event.source, unknown_references_reason(event, refs),
            dict(event.raw) or {"event_row": stored.row_id, **event.to_json()}), now)

    def _dispatch_if_waiting(self, conn: Connection, inc: Incident, now: datetime,
                             rnd: _Round | None = None) -> Incident:
        """Send a crew to a confirmed fault that has none."""
        if not (self.config.lifecycle.auto_dispatch and inc.kind == "fault"
                and inc.stage == "confirmed"):
            return inc
        crew_id = conn.execute(select(incidents_t.c.crew_id)
                               .where(incidents_t.c.id == inc.id)).scalar()
        if crew_id is not None:
            return inc
        if rnd is not None:
            rnd.forget()  # dispatching saves this incident (and may release another's crew)
        return self.lifecycle.dispatch_in(conn, inc, {"created_at": inc.created_at}, now, "daemon")

    def operator_restore(self, incident_id: str, actor: str, transformers: str | None,
                         at: str | None, note: str = "") -> Incident:
        """Record a restoration step as an operator event and process it at once.

        The step goes through the same path as a feed's restoration (stored event, incident
        revision, notices in one transaction), so the daemon and the CLI never disagree.
        """
        from outage_sentinel.lifecycle import LifecycleError

        row = self.store.get_incident(incident_id)
        if row is None:
            raise LifecycleError(f"no incident {incident_id!r}")
        inc = Incident.from_json(row["state"])
        if inc.status != "active":
            raise LifecycleError(f"{incident_id} is {inc.status}; nothing to restore")
        ids: list[str] = []
        for ref in split_list(transformers) if transformers else inc.off:
            tid = self.topology.resolve(ref)
            if tid is None or tid not in inc.estimate.transformers:
                raise LifecycleError(f"{ref!r} is not an affected transformer area of "
                                     f"{incident_id} (affected: {', '.join(inc.off[:10])})")
            ids.append(tid)
        now = self.clock()
        when = parse_time(at, "--at", self.tz) if at else now
        if when > now + timedelta(minutes=1):
            raise LifecycleError(f"--at {at} is in the future")
        event = OutageEvent(
            source=OPERATOR_SOURCE, event_id=f"{incident_id}:restore:{when.isoformat()}:"
            f"{','.join(sorted(ids))}", kind=inc.kind, status="restored",  # type: ignore[arg-type]
            signal="alive",
            start=when, end=when, transformers=tuple(ids), area_text=note,
            raw={"incident_id": incident_id, "actor": actor, "note": note})
        self.store.ingest(OPERATOR_SOURCE, PollResult(events=[event]), now)
        self.process()
        latest = self.store.get_incident(incident_id)
        assert latest is not None
        return Incident.from_json(latest["state"])

    def _log_steps(self, conn: Connection, before: Incident | None, after: Incident,
                   event: Any, now: datetime) -> None:
        """Record the lifecycle steps this change made (the report's raw material)."""
        actor = str(event.raw.get("actor") or "operator") if event.source == OPERATOR_SOURCE \
            else f"source:{event.source}"
        if before is None:
            self.store.log_in(conn, after.id, now, "detected", actor, "",
                              {"transformers": list(after.off),
                               "customers": self.topology.customers_of(after.off)})
        step = restoration_step(before, after)
        if step:
            stage = "restored" if after.status == "restored" else "partially_restored"
            # Logged at the time supply came back (an operator may record it later).
            back_at = max(after.restored[t] for t in step)
            self.store.log_in(conn, after.id, min(back_at, now), stage, actor, "",
                              {"transformers": list(step),
                               "customers": self.topology.customers_of(step),
                               "recorded_at": now.isoformat()})
        elif after.status == "restored" and (before is None or before.status != "restored"):
            self.store.log_in(conn, after.id, now, "restored", actor, "", {"transformers": [],
                                                                             "customers": 0})
        old_stage = before.stage if before is not None else None
        if after.stage != old_stage and after.stage in ("confirmed", "cancelled"):
            self.store.log_in(conn, after.id, now, after.stage, actor)
        if before is not None and before.etr != after.etr and after.status == "active":
            self.store.log_in(conn, after.id, now, "etr_changed", actor, "",
                              {"from": before.etr.isoformat() if before.etr else None,
                               "to": after.etr.isoformat() if after.etr else None})

    def _link_reopened(self, conn: Connection, inc: Incident, now: datetime) -> Incident:
        """Link a new outage on areas restored shortly before to the incident it reopens."""
        window = timedelta(minutes=self.config.lifecycle.reopen_window_minutes)
        areas = set(inc.estimate.transformers)
        for row in self.store.load_incidents(conn=conn, open_only=False, feeder=inc.feeder,
                                             status="restored", ended_after=now - window):
            if row["id"] == inc.id:
                continue
            prev = Incident.from_json(row["state"])
            if areas & set(prev.estimate.transformers):
                self.store.log_in(conn, prev.id, now, "reopened", "daemon", "",
                                  {"by": inc.id})
                return replace(inc, parent_id=prev.id)
        return inc

    def _fault_context(self, conn: Connection, rnd: _Round, feeder: str | None,
                       now: datetime) -> FaultContext:
        """The weather of the window for the localiser: a storm an operator declared, and how
        many protective devices the county's open fault incidents on other feeders hold."""
        if rnd.storm is None:
            rnd.storm = storm_declared(self.store.kv_get_in(conn, STORM_KEY), now)
            self.metrics.storm_declared.set(int(rnd.storm))
        if not self.config.localisation.county_context:
            return FaultContext(storm=rnd.storm)
        faults = rnd.open_faults(conn)
        elsewhere = sum(faults.values()) - faults.get(feeder or "", 0)
        devices = self._protective_total - self._protective.get(feeder or "", 0)
        return FaultContext(storm=rnd.storm, faults_elsewhere=min(elsewhere, devices),
                            devices_elsewhere=devices)

    def _planned_transformers(self, incidents: list[Incident], now: datetime) -> frozenset[str]:
        out: set[str] = set()
        for inc in incidents:
            if inc.kind in ("planned", "temporary") and inc.status == "active":
                if inc.start <= now and (inc.etr is None or now <= inc.etr):
                    out.update(inc.estimate.transformers)
        return frozenset(out)

    def _new_incident_id(self, conn: Connection, start: datetime) -> str:
        prefix = f"INC-{start.astimezone(self.tz):%Y%m%d}-"
        return f"{prefix}{self.store.next_incident_number(conn, prefix):04d}"

    def _update_incident_gauge(self) -> None:
        counts: dict[str, int] = {"fault": 0, "planned": 0, "temporary": 0}
        counts.update(self.store.incident_counts())
        for kind, n in counts.items():
            self.metrics.incidents_active.labels(kind).set(n)


def unknown_references_reason(event: OutageEvent, refs: tuple[str, ...]) -> str:
    """The quarantine reason for a record naming lines, areas or devices the bundle lacks."""
    def what(ref: str) -> str:
        if ref == event.feeder:
            return "line"
        if ref == event.device:
            return "device"
        if ref in event.transformers:
            return "area"
        return "area text"

    named = ", ".join(f"{ref!r} ({what(ref)})" for ref in refs)
    return f"record {event.event_id}: unknown references, not in the topology bundle: {named}"


def storm_declared(value: Any, now: datetime) -> bool:
    """Whether the stored storm declaration (``{"declared", "until", ...}``) holds at ``now``."""
    if not isinstance(value, Mapping) or not value.get("declared"):
        return False
    until = value.get("until")
    if not until:
        return True
    try:
        return now < parse_time(until, "until")
    except ValueError:
        return True  # an unreadable end: keep the operator's declaration


class BayesEstimator:
    """The Bayesian localiser (:mod:`outage_sentinel.localise`) adapted to the incident core.

    Called as an :data:`Estimator` it localises in a calm window; :meth:`within` gives one
    that knows the weather (:class:`~outage_sentinel.localise.FaultContext`).
    """

    def __init__(self, params: LocaliserParams | None = None,
                 context: FaultContext | None = None) -> None:
        self.params = params if params is not None else LocaliserParams()
        self.context = context
        # Where no trouble call reached the incident, silence is not evidence: the deployment
        # may have no call source at all, and the localiser's call model would read "no calls
        # from a big area" as "that area is alive". Neutralise the call model for such incidents.
        self.silent = replace(self.params, call_rate_shape=1e-9, spurious_call_rate=1e-12)

    def within(self, context: FaultContext) -> BayesEstimator:
        other = copy.copy(self)
        other.context = context
        return other

    def __call__(self, topology: Topology, evidence: Evidence) -> Estimate:
        result = localise(topology, LocaliserEvidence(
            dead=evidence.dead, alive=evidence.alive, calls=dict(evidence.calls),
            open_devices=evidence.open_devices, planned=evidence.planned),
            self.params if evidence.calls else self.silent, self.context)
        best = result.best
        if best is None or not best.devices:
            return first_estimate(topology, evidence)
        return Estimate(
            devices=tuple(best.devices), probability=best.probability,
            transformers=tuple(best.transformers), customers=best.customers,
            villages=tuple(best.villages), section=tuple(best.section),
            important_customers=tuple(best.important_customers),
            hypotheses=tuple(h.to_json() for h in result.hypotheses[:3]),
        )


def default_estimator(params: LocaliserParams | None = None) -> BayesEstimator:
    """The daemon's estimator: :class:`BayesEstimator` with ``params`` (the config's)."""
    return BayesEstimator(params)
