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
