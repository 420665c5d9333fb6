"""Signals the daemon process has received and not yet acted on.

``outage-sentinel run`` installs the handlers first thing, before the config, the topology
bundle (4–7 s for a province) and the database are loaded. Until then a signal has its default
action: SIGHUP (``systemctl reload``) killed the process with status 129, and systemd counts a
death by SIGHUP as a clean exit, so ``Restart=on-failure`` did not bring it back. Now a signal
during start-up is only remembered: a SIGTERM/SIGINT stops the start-up after the step under
way (exit 0), a SIGHUP becomes one topology reload as soon as the daemon runs.

This module imports nothing heavy, so installing the handlers costs nothing before the slow
imports of the daemon itself.
"""

from __future__ import annotations

import signal
from typing import Any

#: The signals the daemon handles: the first two stop it, SIGHUP reloads the topology.
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SignalInbox:
    """Signal numbers received, in order, until :meth:`take` hands them to the main loop."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        """Handle :data:`HANDLED` from now on (main thread only, as Python requires)."""
        for signum in HANDLED:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, _frame: Any) -> None:
        """The handler. It runs in the main thread between two bytecodes, possibly on top of
        itself (signals in quick succession) or of a log call: it must take no lock (Event.set
        and logging both do, and a second signal inside them deadlocked the daemon). Appending
        to a list is atomic; the main loop acts on it."""
        self.received.append(signum)

    def take(self) -> list[int]:
        """Remove and return the signals received so far, oldest first."""
        taken: list[int] = []
        while self.received:
            taken.append(self.received.pop(0))
        return taken

    def stop_requested(self) -> bool:
        """Whether a signal that stops the daemon (anything but SIGHUP) is waiting."""
        return any(s != signal.SIGHUP for s in list(self.received))


def names(signums: list[int]) -> list[str]:
    """Sorted distinct names (``["SIGHUP", "SIGTERM"]``) for a log line."""
    return sorted({signal.Signals(s).name for s in signums})
