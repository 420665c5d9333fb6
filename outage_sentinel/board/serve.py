"""Building and serving the board: from the config (``outage-sentinel board``, or inside
``outage-sentinel run`` when ``board.enabled``), with uvicorn."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO
from zoneinfo import ZoneInfo

import uvicorn

from outage_sentinel.assembly import link_secret
from outage_sentinel.board import access
from outage_sentinel.board.actions import Actions
from outage_sentinel.board.app import Board, create_app
from outage_sentinel.board.bundle import BundleCore, core_builder, refit_stamp
from outage_sentinel.board.field import FieldDesk
from outage_sentinel.config import Config
from outage_sentinel.outbox_control import OutboxControl, command_of
from outage_sentinel.region import region_feeders
from outage_sentinel.signals import SignalInbox
from outage_sentinel.silencing import Silencing
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology


def utcnow() -> datetime:
    return datetime.now(UTC)


def build(config: Config, store: Store, topology: Callable[[], Topology],
          clock: Callable[[], datetime] = utcnow) -> Board:
    """The board over the daemon's store; ``topology`` is read per request, so a daemon that
    reloads its bundle shows the new one at once, and the board's actions run on it
    (:class:`BundleCore`)."""
    cores = BundleCore(core_builder(config, store, clock), topology,
                       refit_stamp(store) if config.localisation.refit_at else lambda: None)
    core = cores()
    tz = ZoneInfo(config.timezone)
    actions = Actions(cores, store, Silencing(store, topology, tz), clock, tz,
                      OutboxControl(store, topology, command_of(config), tz))
    f = config.field
    desk = FieldDesk(store, actions, topology, link_secret(config, store, clock()), clock,
                     photos=config.state_dir / "photos", photo_days=f.photo_retention_days,
                     sms_token=f.sms_reply_token.get_secret_value() if f.sms_reply_token
                     else None,
                     dingtalk_secret=f.dingtalk_app_secret.get_secret_value()
                     if f.dingtalk_app_secret else None,
                     sms_keywords=dict(f.sms_keywords),
                     feishu_token=f.feishu_verification_token.get_secret_value()
                     if f.feishu_verification_token else None,
                     feishu_key=f.feishu_encrypt_key.get_secret_value()
                     if f.feishu_encrypt_key else None,
                     feishu_chats=dict(f.feishu_chats))
    return Board(config.board, store, topology, actions, core.lifecycle.params.commitments,
                 clock, tz, config.notify.language, desk, sms_channels=core.planner.sms,
                 feeders=lambda t: region_feeders(config.region, t))


def first_admin(store: Store, now: datetime, out: TextIO) -> str | None:
    """With no user at all, create ``admin`` with a one-time password, print it once on ``out``
    (never to the log) and return it; it must be changed at the first sign-in."""
    if store.users():
        return None
    password = access.one_time_password()
    if not store.add_user("admin", "admin", access.hash_password(password), now,
                          must_change=True):
        return None
    out.write(f"board: first admin created — user admin, one-time password {password} "
              "(change it at the first sign-in; it is not shown again)\n")
    out.flush()
    return password


#: On stop, how long requests under way may take before open event streams are closed.
SHUTDOWN_GRACE_SECONDS = 1


class BoardPortError(Exception):
    """The board cannot listen (port in use, address not on this host)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"board cannot listen on {host}:{port}: {reason} (another process "
                         "holds the port? change config key board.port, or board.enabled: "
                         "false)")


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BoardPortError(host, port, exc.strerror or str(exc)) from None


class BoardServer:
    """uvicorn in a thread of its own (inside ``run``), stopped with the daemon."""

    def __init__(self, board: Board, owns_store: bool = False) -> None:
        self.board, self.owns_store = board, owns_store
        self.config = uvicorn.Config(create_app(board), host=board.settings.host,
                                     port=board.settings.port, log_config=None,
                                     access_log=False, lifespan="on",
                                     # Event streams never end by themselves: give requests
                                     # under way a moment, then close the rest.
                                     timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="board", daemon=True)

    def start(self) -> None:
        """Start serving; :class:`BoardPortError` if the address cannot be listened on."""
        check_port(self.config.host, self.config.port)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.owns_store:
            self.board.store.close()


def serve(board: Board, reload: Callable[[], object] | None = None) -> int:
    """Serve until SIGTERM/SIGINT (``outage-sentinel board``), then exit 0; SIGHUP calls
    ``reload`` (the topology bundle). uvicorn runs in a thread, so the signals stay ours."""
    inbox = SignalInbox()
    inbox.install()
    server = BoardServer(board)
    server.start()
    while server.thread.is_alive():
        if inbox.received:
            if inbox.stop_requested():
                break
            inbox.take()
            if reload is not None:
                reload()
        time.sleep(0.2)
    server.stop(timeout=10)
    return 0


def serve_board(config: Config, topology: Callable[[], Topology],
                clock: Callable[[], datetime]) -> BoardServer | None:
    """Inside ``run``: the board in a thread when ``board.enabled`` (its address and, the first
    time, the admin's one-time password printed on standard output). It has a store of its
    own: staff act from any node, leader or standby, so its writes are never fenced."""
    if not config.board.enabled:
        return None
    store = Store(config.database_url(), region=config.region.name)
    server = BoardServer(build(config, store, topology, clock), owns_store=True)
    server.start()
    if config.board.first_admin:
        first_admin(store, clock(), sys.stdout)
    print(f"board: http://{config.board.host}:{config.board.port}/", file=sys.stdout,
          flush=True)
    return server
