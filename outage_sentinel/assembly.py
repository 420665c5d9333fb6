"""Assembly: builds the incident core and the daemon's parts from the config.

The daemon (:mod:`outage_sentinel.daemon`) and every other actor — the operator CLI, later the
board — build the same incident core here, so a step taken by any of them runs the same code:
:func:`build_core` gives the liaison planner, the lifecycle and the incident processor over one
store and topology, without sources, channels or a scheduler.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.channels.base import Channel
from outage_sentinel.config import (
    Config,
    FileDropSourceConfig,
    ReplaySourceConfig,
    SourceConfig,
)
from outage_sentinel.delivery import Deliverer, Moot, Muter
from outage_sentinel.estimation import default_estimator
from outage_sentinel.field_links import PUBLIC, IssuedLink, link_record, short_token
from outage_sentinel.held_areas import HeldDark
from outage_sentinel.incidents import Estimator
from outage_sentinel.liaison import (
    ClockFlags,
    LiaisonPlanner,
    LinkMaker,
    Renderer,
    TemplateFailure,
    sms_channels,
)
from outage_sentinel.lifecycle import Lifecycle
from outage_sentinel.localise import LocaliserParams
from outage_sentinel.logs import redact, register_secret
from outage_sentinel.metrics import Metrics
from outage_sentinel.processing import IncidentProcessor, ObservationScreen
from outage_sentinel.refit_job import kept_params
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.screening import AmiScreener
from outage_sentinel.sources.base import Source
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology, TopologyError, load_bundle


@dataclass
class Core:
    """The incident core over one store and topology."""

    renderer: Renderer
    planner: LiaisonPlanner
    lifecycle: Lifecycle
    processor: IncidentProcessor


def build_core(config: Config, store: Store, topology: Topology, *, metrics: Metrics,
               clock: Callable[[], datetime], estimator: Estimator | None = None,
               lock: threading.Lock | None = None, screen: ObservationScreen | None = None,
               on_template_failure: Callable[[TemplateFailure], None] | None = None) -> Core:
    """Planner, lifecycle and processor as every actor uses them."""
    renderer = Renderer(config.notify.language, config.notify.templates_dir,
                        on_failure=on_template_failure)
    planner = LiaisonPlanner(topology, renderer, ZoneInfo(config.timezone),
                             config.notify.liaison_roles, links=link_maker(config, store, clock),
                             sms=sms_channels(config.channels), clock_flags=clock_flags(screen))
    lifecycle = Lifecycle(store, topology, planner, config, clock, metrics=metrics)
    processor = IncidentProcessor(
        store, topology, planner, lifecycle, config, metrics,
        estimator or default_estimator(localiser_params(config, store),
                                       config.localisation.area_min_probability), lock=lock,
        screen=screen, held=held_dark(screen))
    return Core(renderer, planner, lifecycle, processor)


def held_dark(screen: ObservationScreen | None) -> HeldDark | None:
    """What the AMI screen holds dark, for the processor to keep off when a record's end
    says otherwise (:meth:`AmiScreener.held_dark`). ``None`` (nothing held) without an AMI
    screen (the board, the CLI: they screen nothing; only the leader screens)."""
    return screen if isinstance(screen, AmiScreener) else None


def clock_flags(screen: ObservationScreen | None) -> ClockFlags | None:
    """The AMI sources flagged as read in the wrong zone, as the AMI screen has them now: a
    village's notices state no start that only they give (:func:`liaison.stated_start`).
    Read through the screener, whose screen a reload of its saved state replaces. ``None``
    (no flags) without an AMI screen (the board, the CLI: they run no AMI source)."""
    if not isinstance(screen, AmiScreener):
        return None
    return lambda: screen.screen.clock_offsets()


def localiser_params(config: Config, store: Store) -> LocaliserParams:
    """The configured localiser parameters, with what the daemon's last refit learnt (kept
    in the store) in place of the configured ones, as the refit itself puts them: the
    board's and the CLI's estimates are the daemon's. With ``refit_at: null`` (the refit
    off) the configured ones alone, whatever an earlier refit kept."""
    base = config.localisation.to_params()
    if config.localisation.refit_at is None:
        return base
    return kept_params(store, base) or base


LINK_SECRET_KEY = "field:link_secret"


def link_secret(config: Config, store: Store, now: datetime) -> bytes:
    """The field links' signing key: ``field.link_secret``, else one generated once and kept
    in the database (so every node and the board share it)."""
    if config.field.link_secret is not None:
        return config.field.link_secret.get_secret_value().encode()
    return str(store.kv_setdefault(LINK_SECRET_KEY, secrets.token_hex(32), now)).encode()


def link_maker(config: Config, store: Store, clock: Callable[[], datetime]
               ) -> LinkMaker | None:
    """Each liaison's personal link to the incident's field page (``field.base_url``): a
    short link, kept by the store when the message carrying it is queued."""
    base = config.field.base_url
    if not base:
        return None
    secret = link_secret(config, store, clock())

    def make(incident_id: str, village: str, recipient: str) -> IssuedLink:
        token = short_token(secret, incident_id, village, recipient)
        # a crew's page, the public progress page, a liaison's page
        page = "c" if village.startswith("crew:") else "p" if village == PUBLIC else "f"
        return IssuedLink(f"{base.rstrip('/')}/{page}/{token}", token,
                          link_record(secret, incident_id, village, recipient))
    return make


def build_source(cfg: SourceConfig, config: Config, topology: Topology | None = None) -> Source:
    """Instantiate the source a config entry describes."""
    if isinstance(cfg, ReplaySourceConfig):
        from outage_sentinel.sources.replay import ReplaySource

        return ReplaySource(cfg.name, cfg.scenario, speed=cfg.speed, loop=cfg.loop,
                            tz=ZoneInfo(config.timezone))
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


def screened_sources(config: Config, sources: Iterable[Source]) -> set[str]:
    """Names of the sources whose reports the AMI screen turns into events: MQTT and dropped
    AMI exports (not dropped work orders, which are events already)."""
    configs = {c.name: c for c in config.sources}
    out: set[str] = set()
    for s in sources:
        cfg = configs.get(s.name)
        orders = isinstance(cfg, FileDropSourceConfig) and cfg.content == "work_orders"
        if s.type == "mqtt" or (s.type == "file_drop" and not orders):
            out.add(s.name)
    return out


def build_deliverer(config: Config, store: Store, channels: Mapping[str, Channel],
                    metrics: Metrics, clock: Callable[[], datetime], *,
                    on_dead: Callable[[OutboxRow, str, datetime], None],
                    muter: Muter, moot: Moot | None = None,
                    may_send: Callable[[], bool] = lambda: True) -> Deliverer:
    """The delivery stage as the config's ``delivery`` and ``notify`` sections set it up."""
    d = config.delivery
    return Deliverer(store, channels, RetryPolicy.from_config(d.retry), metrics,
                     batch_size=d.batch_size, dry_run=d.dry_run,
                     language=config.notify.language, quiet_hours=config.notify.quiet_windows(),
                     tz=ZoneInfo(config.timezone), on_dead=on_dead,
                     workers_per_channel=d.workers_per_channel, clock=clock, muter=muter,
                     moot=moot, may_send=may_send)


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


def configured_bundle(config: Config) -> Topology:
    """The config's topology bundle, its ``customers.csv`` tags read with the ones the
    operator weighs (``priority.extra_tags``: known, not warned about)."""
    return load_bundle(config.topology, tags=config.priority.extra_tags)


def load_replacement(config: Config, renderer: Renderer, metrics: Metrics, log: Any,
                     kept: str) -> tuple[Topology, LiaisonPlanner] | None:
    """The bundle loaded again and its planner, ready to swap in; None (every problem logged,
    ``kept`` still in use) when the bundle has any problem or cannot be read."""
    try:
        topology = configured_bundle(config)
    except Exception as exc:  # problems, or an unreadable directory: keep running
        metrics.topology_reloads.labels("error").inc()
        problems = [str(p) for p in exc.problems] if isinstance(exc, TopologyError) \
            else [redact(repr(exc))]
        log.error("topology_reload_failed", topology=str(config.topology), problems=problems,
                  kept=kept)
        return None
    return topology, LiaisonPlanner(topology, renderer, ZoneInfo(config.timezone),
                                    config.notify.liaison_roles,
                                    sms=sms_channels(config.channels))
