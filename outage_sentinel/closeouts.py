"""What the crews found: the devices a close-out (or, before it, the crew's page) says
operated. One rule for every reader — the localiser's history (the store's
``confirmed_devices``) and the reports (areas below such a device count as off) — so the two
can never disagree. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The lifecycle steps that name devices found operated.
FOUND_STAGES = ("closed", "fault_found")


def found_devices(log: Iterable[Mapping[str, Any]]) -> list[str]:
    """The devices found operated, from one incident's log in order: the latest close-out
    naming devices, else the crew's "fault found"; a close-out naming none takes back an
    earlier close-out's, never the crew's own finding."""
    found: list[str] = []
    by_crew = False
    for e in log:
        if e["stage"] not in FOUND_STAGES:
            continue
        details = e.get("details") or {}
        if details.get("device"):
            found = [str(d) for d in details.get("devices") or [details["device"]]]
            by_crew = by_crew or e["stage"] == "fault_found"
        elif e["stage"] == "closed" and not by_crew:
            found = []
    return found
