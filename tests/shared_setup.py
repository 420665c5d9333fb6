"""Set-up several test modules share, kept in one place.

- The demo county: ``demo``, the topology bundle shipped in ``topology/`` (loaded once per
  module), and ``store``, a fresh SQLite store of the test's own (it stands in for conftest's
  ``store``, which is also run on PostgreSQL).
- The AMI terminals of areas reporting power off or on: :func:`terminal_reports`.
- A message held, then sent: ``h`` and ``h_en``, the daemon's core (:class:`Harness`, SQLite /
  PostgreSQL) notifying in Chinese or in English, and :func:`hold_then_send`, the command
  centre holding a queued row and releasing it later, and the deliverer sending it.

A test module takes a fixture by importing it under its own name
(``from tests.shared_setup import store as store  # noqa: F401  (the fixture)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from outage_sentinel.ami import compact_time, device_ref
from outage_sentinel.channels.base import Message
from outage_sentinel.events import OutageEvent
from outage_sentinel.outbox_control import OutboxControl
from outage_sentinel.store import OutboxRow, Store
from outage_sentinel.topology import Topology, load_bundle
from tests.test_lifecycle import Harness

ROOT = Path(__file__).resolve().parents[1]


# -- the demo county ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Topology:
    """The demo county's topology bundle."""
    return load_bundle(ROOT / "topology")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store in ``tmp_path``, closed after the test."""
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.migrate()
    yield s
    s.close()


def terminal_reports(areas: tuple[str, ...], on: bool, at: datetime) -> list[OutageEvent]:
    """The terminal of each of ``areas`` (``TM-<area>``, source ``ami-mqtt``) reporting power
    off (``on``: on) at ``at``, as an AMI source hands them to the screen."""
    word = "on" if on else "off"
    return [OutageEvent(source="ami-mqtt", event_id=f"TM-{a}:{word}:{compact_time(at)}",
                        kind="fault", status="restored" if on else "active",
                        signal="alive" if on else "dead", start=at, end=at if on else None,
                        transformers=(a,), area_text=device_ref("terminal", f"TM-{a}"))
            for a in areas]


# -- a message held, then sent ------------------------------------------------------------------


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    """The daemon's core on SQLite and on PostgreSQL (see conftest ``db_url``)."""
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


@pytest.fixture
def h_en(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    """As ``h``, notifying in English."""
    harness = Harness(tmp_path, db_url, notify={"language": "en"})
    yield harness
    harness.daemon.close()


def hold_then_send(h: Harness, row: OutboxRow, until: datetime) -> list[Message]:
    """The command centre holds ``row`` at ``h.now`` and releases it at ``until`` (the clock
    set there); the deliverer sends all that is due. Returns what went out with ``row``'s
    purpose, oldest first."""
    control = OutboxControl(h.daemon.store, lambda: h.daemon.topology)
    control.take("hold", [row.id], "board:wang", h.now, reason="核实")
    h.now = until
    control.take("release", [row.id], "board:wang", h.now)
    while h.daemon.deliverer.run_once(h.now):
        pass
    return [m for m in h.channel.sent if m.purpose == row.purpose]
