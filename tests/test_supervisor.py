"""The process loop on its own: start-up cut short by a signal, SIGHUP bursts become one reload,
the database watch stops it with exit 6, and closing never lets one failure mask the rest."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from outage_sentinel.logs import get_logger
from outage_sentinel.metrics import Metrics
from outage_sentinel.signals import SignalInbox
from outage_sentinel.store import Store
from outage_sentinel.supervisor import (
    EXIT_DATABASE_FILE,
    DatabaseWatch,
    ProcessLoop,
    close_all,
)


class Recorder:
    def __init__(self, inbox: SignalInbox, stop: threading.Event) -> None:
        self.inbox, self.stop = inbox, stop
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def close(self) -> None:
        self.calls.append("close")

    def scheduler(self) -> BackgroundScheduler:
        self.calls.append("schedule")
        return BackgroundScheduler()

    def reload(self) -> bool:
        self.calls.append("reload")
        # The next signals arrive while the loop runs: a stop after the reload.
        self.inbox.on_signal(signal.SIGTERM, None)
        return True


def loop_for(tmp_path: Path) -> tuple[ProcessLoop, Recorder, Store]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    stop, inbox = threading.Event(), SignalInbox()
    watch = DatabaseWatch(store, Metrics(), stop, get_logger(component="test"))
    return ProcessLoop(inbox, stop, watch, get_logger(component="test")), Recorder(inbox, stop), \
        store


def run(loop: ProcessLoop, rec: Recorder) -> int:
    return loop.run(start=rec.start, close=rec.close, scheduler=rec.scheduler,
                    reload=rec.reload)


def test_a_stop_signal_during_start_up_starts_no_job(tmp_path: Path) -> None:
    loop, rec, store = loop_for(tmp_path)
    loop.signals.on_signal(signal.SIGINT, None)
    assert run(loop, rec) == 0
    assert rec.calls == ["close"]
    store.close()


def test_sighups_received_together_become_one_reload_then_a_stop_drains(tmp_path: Path) -> None:
    loop, rec, store = loop_for(tmp_path)
    for _ in range(5):
        loop.signals.on_signal(signal.SIGHUP, None)
    assert run(loop, rec) == 0
    assert rec.calls == ["start", "schedule", "reload", "close"]
    store.close()


def test_a_replaced_database_file_stops_the_loop_with_exit_6(tmp_path: Path) -> None:
    loop, rec, store = loop_for(tmp_path)
    (tmp_path / "db.sqlite").unlink()
    assert run(loop, rec) == EXIT_DATABASE_FILE
    assert rec.calls == ["start", "schedule", "close"]
    store.close()


class Item:
    def __init__(self, name: str, fails: bool, closed: list[str]) -> None:
        self.name, self.fails, self.closed = name, fails, closed

    def close(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise RuntimeError("token=abc broken")


def test_close_all_closes_every_item_and_logs_each_failure() -> None:
    closed: list[str] = []
    logged: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            logged.append((event, kw))

    close_all([Item("a", True, closed), Item("b", False, closed)], "source", Log())
    assert closed == ["a", "b"]
    assert [e for e, _ in logged] == ["source_close_failed"]
    assert logged[0][1]["name"] == "a"


class NotifySocket:
    """systemd's end of the notify protocol: a datagram socket collecting what is sent."""

    def __init__(self, tmp: Path) -> None:
        import socket

        self.path = str(tmp / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.got: list[str] = []
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:  # as systemd does: read as datagrams arrive
        while not self.done.is_set():
            try:
                self.got.append(self.sock.recv(4096).decode())
            except OSError:
                continue

    def drain(self) -> list[str]:
        threading.Event().wait(0.2)
        self.done.set()
        self.reader.join(2)
        self.sock.close()
        return self.got


def test_systemd_hears_ready_status_keepalives_only_while_healthy_and_stopping(
        tmp_path: Path) -> None:
    from outage_sentinel.sd_notify import Notifier

    systemd = NotifySocket(tmp_path)
    loop, rec, store = loop_for(tmp_path)
    loop.notifier = Notifier({"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "400000"})
    loop.status_every = 0.3
    health = {"ok": True}

    def scheduler() -> BackgroundScheduler:
        return BackgroundScheduler()

    def stop_later() -> None:
        threading.Event().wait(1.2)
        health["ok"] = False  # the scheduler wedged: no more keep-alives
        threading.Event().wait(1.2)
        loop.signals.on_signal(signal.SIGTERM, None)

    threading.Thread(target=stop_later, daemon=True).start()
    code = loop.run(start=rec.start, close=rec.close, scheduler=scheduler, reload=rec.reload,
                    healthy=lambda: health["ok"], status=lambda: "leader; backlog 0")
    assert code == 0
    got = systemd.drain()
    assert got[0] == "READY=1\nSTATUS=leader; backlog 0"
    assert got[-1] == "STOPPING=1"
    assert "STATUS=leader; backlog 0" in got
    alive = [i for i, m in enumerate(got) if m == "WATCHDOG=1"]
    assert len(alive) >= 3  # every 0.2 s while healthy
    # None in the last second (unhealthy): the last keep-alive is well before the stop.
    statuses_after = [m for m in got[alive[-1]:] if m.startswith("STATUS=")]
    assert len(statuses_after) >= 2
    store.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    from outage_sentinel.sd_notify import Notifier

    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_interval is None
    assert quiet.send("READY=1") is False
    gone = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock", "WATCHDOG_USEC": "x"})
    assert gone.send("READY=1") is False and gone.watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"


def test_a_receiver_that_does_not_read_never_stalls_the_sender(tmp_path: Path) -> None:
    import socket

    from outage_sentinel.sd_notify import Notifier

    path = str(tmp_path / "deaf.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as deaf:
        deaf.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        sent = [notifier.send("WATCHDOG=1") for _ in range(500)]  # returns at once, full or not
    assert sent[0] is True and sent[-1] is False
