"""Prometheus metrics. One registry per daemon (tests run several in one process).

Names carry units and ``_total``; labels are low-cardinality (source and channel names from
config, result words), never villages or incidents. See README "Metrics" for the list.

Two kinds. Per process: what this process did or is (counters and histograms of its own
work, whether it leads, its start, its configuration, its scheduler): a standby's counters
stay flat, so sums and rates across instances hold. Per leader (:class:`LeaderGauge`): the
state of the region that only its leader knows (a source's last successful poll and health,
the open incidents, the outbox's backlog and dead letters, deadlines at risk, the storm):
exported only during a term of this node's leadership, from the first time the term sets it;
a standby exports none of it and a deposed leader drops it (``Metrics.end_term``), so that no
frozen value alerts or counts twice in a sum across the region's nodes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LOCALISE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
#: Every ``result`` of ``notifications_total``. A dead letter is ``dead`` (given up on by age,
#: unsure twice, no such channel) or ``permanent`` (refused for good, dead-lettered at once).
NOTIFICATION_RESULTS = ("delivered", "retry", "uncertain", "permanent", "dead", "dry_run",
                        "rate_limited", "silenced", "superseded")
#: Every ``fallback`` of ``summaries_unrendered_total``: the built-in template rendered the
#: command centre's summary, or a plain text naming the incident stood in for it.
SUMMARY_FALLBACKS = ("builtin", "plain")


#: The metrics only the region's leader exports (README "Metrics", docs/operations.md).
PER_LEADER_METRICS = tuple("outage_sentinel_" + name for name in (
    "last_successful_poll_timestamp_seconds", "source_connected", "snapshot_held_polls",
    "incidents_active", "storm_declared", "outbox_backlog_messages",
    "outbox_dead_letters_messages", "arrival_deadline_at_risk_incidents",
    "ami_clock_offset_hours"))


class LeaderGauge:
    """A gauge of the region's state, exported only while this node's term holds it.

    Used as a prometheus_client ``Gauge``: ``set(v)`` unlabelled, ``labels(*values).set(v)``
    labelled. A value is exported once set in the term; :meth:`close` (the term ended) drops
    every value and ignores the sets that come after it (a job or a send of the ended term
    finishing late), until :meth:`open` (the next term)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._labelnames = labelnames  # where prometheus_client's own metrics keep them
        self._values: dict[tuple[str, ...], float] = {}
        self._open = True
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def labels(self, *values: object) -> LeaderGaugeChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, given {values}")
        return LeaderGaugeChild(self, tuple(str(v) for v in values))

    def set(self, value: float) -> None:
        self.labels().set(value)

    def set_labelled(self, key: tuple[str, ...], value: float) -> None:
        with self._lock:
            if self._open:
                self._values[key] = float(value)

    def open(self) -> None:
        """A term begins: values set from now on are exported."""
        with self._lock:
            self._open = True

    def close(self) -> None:
        """The term ended: nothing is exported, and later sets are ignored until :meth:`open`."""
        with self._lock:
            self._open = False
            self._values.clear()

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            values = sorted(self._values.items())
        for key, value in values:
            family.add_metric(list(key), value)
        return [family]


class LeaderGaugeChild:
    """One labelled series of a :class:`LeaderGauge` (``gauge.labels(...)``)."""

    def __init__(self, gauge: LeaderGauge, key: tuple[str, ...]) -> None:
        self.gauge, self.key = gauge, key

    def set(self, value: float) -> None:
        self.gauge.set_labelled(self.key, value)


class Metrics:
    """All metrics of one daemon, on its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "outage_sentinel_"
        self._source_metrics(r, p)
        self._incident_metrics(r, p)
        self._delivery_metrics(r, p)
        self.template_failures = Counter(p + "template_failures_total",
                                         "Override templates that failed to render (the "
                                         "built-in template was used instead)", ["template"],
                                         registry=r)
        self.summaries_unrendered = Counter(
            p + "summaries_unrendered_total", "Command-centre summaries that could not be "
            "rendered as configured, by the fallback sent in their place (builtin: the "
            "built-in template; plain: a plain text naming the incident)", ["fallback"],
            registry=r)
        for fallback in SUMMARY_FALLBACKS:  # at 0: the first one must show in increase()
            self.summaries_unrendered.labels(fallback)
        self.database_file_replaced = Counter(
            p + "database_file_replaced_total",
            "Times the SQLite file was found deleted or replaced under the daemon (it stops)",
            registry=r)
        self.up = Gauge(p + "start_time_seconds", "Unix time the daemon started", registry=r)
        self.deadline_at_risk = LeaderGauge(p + "arrival_deadline_at_risk_incidents",
                                            "Fault incidents that will miss or have missed the "
                                            "crew arrival commitment (no crew on site yet)",
                                            registry=r)
        self.leader = Gauge(p + "leader", "1 while this daemon leads its region (a single "
                            "node always does)", ["region"], registry=r)
        # The standard process (CPU, memory, file descriptors), Python and GC collectors.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def _source_metrics(self, r: CollectorRegistry, p: str) -> None:
        """Polls, ingestion, and what the sources say of themselves."""
        self.polls = Counter(p + "polls_total", "Source polls by result "
                             "(ok, not_modified, error, skipped)", ["source", "result"], registry=r)
        self.last_success = LeaderGauge(p + "last_successful_poll_timestamp_seconds",
                                        "Unix time of the last successful poll (at the start "
                                        "of a term: the last one stored, else the term's "
                                        "start)", ("source",), registry=r)
        self.poll_duration = Histogram(p + "poll_duration_seconds", "Time of one poll incl. storing",
                                       ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter(p + "events_ingested_total", "New events stored", ["source"],
                              registry=r)
        self.duplicates = Counter(p + "events_duplicate_total",
                                  "Events already stored (same source, id, revision)", ["source"],
                                  registry=r)
        self.events_other_region = Counter(
            p + "events_other_region_total", "Events left to the regions whose feeders they "
            "are on (region sharding)", ["source"], registry=r)
        self.quarantined = Counter(p + "events_quarantined_total",
                                   "Payloads or records that failed validation", ["source"],
                                   registry=r)
        self.poll_interval = Gauge(p + "poll_interval_seconds",
                                   "Configured poll interval of each source (the stale-source "
                                   "alert fires after three)", ["source"], registry=r)
        self.source_connected = LeaderGauge(p + "source_connected",
                                            "1 while a streaming source (MQTT) is connected to "
                                            "its broker", ("source",), registry=r)
        self.snapshot_incomplete = Counter(
            p + "snapshot_incomplete_polls_total", "Snapshot feed polls that saw less than the "
            "whole list (fewer records than the feed counts, totals changed between pages, "
            "page limit, null list): no record was ended from them", ["source"], registry=r)
        self.snapshot_held = LeaderGauge(
            p + "snapshot_held_polls", "Polls in a row that held back a record gone from a "
            "snapshot feed (incomplete polls, or a record without a readable id that may be "
            "it): its villages are not told their power is back", ("source",), registry=r)

    def _incident_metrics(self, r: CollectorRegistry, p: str) -> None:
        """Processing, incidents, the storm."""
        self.processing_errors = Counter(p + "event_processing_errors_total",
                                         "Events whose processing raised (left for retry)",
                                         registry=r)
        self.incidents_active = LeaderGauge(p + "incidents_active", "Open incidents",
                                            ("kind",), registry=r)
        self.topology_reloads = Counter(p + "topology_reloads_total",
                                        "Topology reloads (SIGHUP) by result (ok, error)",
                                        ["result"], registry=r)
        self.storm_declared = LeaderGauge(p + "storm_declared",
                                          "1 while an operator's storm declaration holds",
                                          registry=r)

    def _delivery_metrics(self, r: CollectorRegistry, p: str) -> None:
        """The outbox, the localiser, the scheduler and the AMI screen."""
        self.notifications = Counter(p + "notifications_total",
                                     "Delivery attempts by channel and result (delivered, "
                                     "retry, uncertain: a send whose outcome is unknown, "
                                     "permanent: refused, dead-lettered; dead, dry_run, "
                                     "rate_limited, silenced, superseded)",
                                     ["channel", "result"], registry=r)
        self.outbox_backlog = LeaderGauge(p + "outbox_backlog_messages",
                                          "Messages waiting in the outbox (pending or in "
                                          "flight)", registry=r)
        self.dead_letters = LeaderGauge(p + "outbox_dead_letters_messages",
                                        "Messages given up on (see the command-centre "
                                        "summary)", registry=r)
        self.localise_duration = Histogram(p + "localisation_duration_seconds",
                                           "Time to estimate an incident's fault point",
                                           buckets=LOCALISE_BUCKETS, registry=r)
        # Not ``job``: Prometheus would scrape a metric's own job label as exported_job.
        self.job_missed = Counter(p + "scheduler_jobs_missed_total",
                                  "Scheduled runs skipped because the previous one overran",
                                  ["job_name"], registry=r)
        self.ami_observations = Counter(p + "ami_observations_total",
                                        "AMI meter/terminal reports screened", registry=r)
        self.ami_momentary = Counter(p + "ami_momentary_total",
                                     "AMI outages shorter than the minimum duration (dropped)",
                                     registry=r)
        self.ami_flapped = Counter(p + "ami_flapped_total",
                                   "AMI area restorations taken back: the area went off again "
                                   "before it settled (ami_screen.restore_settle_seconds), one "
                                   "outage", registry=r)
        self.ami_customer_faults = Counter(p + "ami_customer_faults_total",
                                           "Single meters off: customer-side faults, not incidents",
                                           registry=r)
        self.ami_unknown_devices = Counter(
            p + "ami_unknown_device_reports_total", "AMI reports from meters or terminals in "
            "no transformer area (not in meters.csv; kept under unknown_devices: keep, they "
            "count toward no outage)", ["source"], registry=r)
        self.ami_clock_offset = LeaderGauge(
            p + "ami_clock_offset_hours", "Hours an AMI source's report times sit steadily "
            "from their arrival (report time minus arrival; 0: none): its times without an "
            "offset are probably read in the wrong zone (set its ami.timezone)", ("source",),
            registry=r)

    def per_leader(self) -> list[LeaderGauge]:
        """The gauges only the region's leader exports (:data:`PER_LEADER_METRICS`)."""
        return [m for m in vars(self).values() if isinstance(m, LeaderGauge)]

    def begin_term(self) -> None:
        """This node leads: the region's state is exported as the term sets it."""
        for gauge in self.per_leader():
            gauge.open()

    def end_term(self) -> None:
        """Deposed, or a standby: none of the region's state is exported (idempotent)."""
        for gauge in self.per_leader():
            gauge.close()

    def create_channel_series(self, channels: Iterable[str]) -> None:
        """Export ``notifications_total`` at 0 for every channel x result: a series' first
        sample is invisible to ``increase()``, so the first dead letter of a channel after a
        start would not alert if its series were born at 1."""
        for channel in channels:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(channel, result)

    def serve(self, host: str, port: int,
              ready: Callable[[], str | None] = lambda: None) -> WSGIServer:
        """Start the HTTP endpoint in a daemon thread: ``/metrics``; ``/healthz`` (the process
        answers: 200); ``/readyz`` (200, or 503 with the reason ``ready()`` returns)."""
        server = make_server(host, port, health_app(make_wsgi_app(self.registry), ready),
                             ThreadingWSGIServer, handler_class=QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request (a slow scrape never blocks a probe)."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """Scrapes and probes are not for the log."""


def health_app(metrics_app: Callable[..., Iterable[bytes]], ready: Callable[[], str | None]
               ) -> Callable[..., Iterable[bytes]]:
    """The metrics app plus ``/healthz`` and ``/readyz``."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            try:
                reason = ready()
            except Exception as exc:  # the check itself failed: not ready
                reason = f"readiness check failed: {type(exc).__name__}"
            status = "200 OK" if reason is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [(reason or "ready").encode() + b"\n"]
        return metrics_app(environ, start_response)
    return app
