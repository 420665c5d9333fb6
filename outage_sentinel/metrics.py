"""Prometheus metrics. One registry per daemon (tests run several in one process).

Names carry units and ``_total``; labels are low-cardinality (source and channel names from
config, result words), never villages or incidents. See README "Metrics" for the list.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LOCALISE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """All metrics of one daemon, on its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "outage_sentinel_"
        self.polls = Counter(p + "polls_total", "Source polls by result "
                             "(ok, not_modified, error, skipped)", ["source", "result"], registry=r)
        self.last_success = Gauge(p + "last_successful_poll_timestamp_seconds",
                                  "Unix time of the last successful poll", ["source"], registry=r)
        self.poll_duration = Histogram(p + "poll_duration_seconds", "Time of one poll incl. storing",
                                       ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter(p + "events_ingested_total", "New events stored", ["source"],
                              registry=r)
        self.duplicates = Counter(p + "events_duplicate_total",
                                  "Events already stored (same source, id, revision)", ["source"],
                                  registry=r)
        self.quarantined = Counter(p + "events_quarantined_total",
                                   "Payloads or records that failed validation", ["source"],
                                   registry=r)
        self.processing_errors = Counter(p + "event_processing_errors_total",
                                         "Events whose processing raised (left for retry)",
                                         registry=r)
        self.incidents_active = Gauge(p + "incidents_active", "Open incidents", ["kind"],
                                      registry=r)
        self.topology_reloads = Counter(p + "topology_reloads_total",
                                        "Topology reloads (SIGHUP) by result (ok, error)",
                                        ["result"], registry=r)
        self.storm_declared = Gauge(p + "storm_declared",
                                    "1 while an operator's storm declaration holds", registry=r)
        self.notifications = Counter(p + "notifications_total",
                                     "Delivery attempts by channel and result "
                                     "(delivered, retry, permanent, dead, dry_run)",
                                     ["channel", "result"], registry=r)
        self.outbox_backlog = Gauge(p + "outbox_backlog_messages",
                                    "Messages waiting in the outbox (pending or in flight)",
                                    registry=r)
        self.dead_letters = Gauge(p + "outbox_dead_letters_messages",
                                  "Messages given up on (see the command-centre summary)",
                                  registry=r)
        self.localise_duration = Histogram(p + "localisation_duration_seconds",
                                           "Time to estimate an incident's fault point",
                                           buckets=LOCALISE_BUCKETS, registry=r)
        self.job_missed = Counter(p + "scheduler_jobs_missed_total",
                                  "Scheduled runs skipped because the previous one overran",
                                  ["job"], registry=r)
        self.ami_observations = Counter(p + "ami_observations_total",
                                        "AMI meter/terminal reports screened", registry=r)
        self.ami_momentary = Counter(p + "ami_momentary_total",
                                     "AMI outages shorter than the minimum duration (dropped)",
                                     registry=r)
        self.ami_customer_faults = Counter(p + "ami_customer_faults_total",
                                           "Single meters off: customer-side faults, not incidents",
                                           registry=r)
        self.template_failures = Counter(p + "template_failures_total",
                                         "Override templates that failed to render (the "
                                         "built-in template was used instead)", ["template"],
                                         registry=r)
        self.up = Gauge(p + "start_time_seconds", "Unix time the daemon started", registry=r)

    def serve(self, host: str, port: int) -> WSGIServer:
        """Start the ``/metrics`` HTTP endpoint in a daemon thread."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
