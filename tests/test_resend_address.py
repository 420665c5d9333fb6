"""Where a retried message goes now (``resend.current_address``): the contact directory's
address for the recipient it was for — a new number of the same person, never another person
who has a message of their own."""

from __future__ import annotations

from typing import Any

import pytest

from outage_sentinel.resend import GoneRecipient, current_address
from outage_sentinel.store import OutboxRow
from outage_sentinel.topology import Topology
from tests.conftest import T0, build_topology

ZHANG = {"village": "V1", "name": "张", "role": "village_liaison", "phone": "13800000001",
         "channel": "sms", "target": ""}
LI = {"village": "V1", "name": "李", "role": "village_liaison", "phone": "13800000002",
      "channel": "sms", "target": ""}


def topology(*liaisons: dict[str, Any]) -> Topology:
    return build_topology([("S1", "B1"), ("B1", "T1")], villages={"T1": "V1"},
                          liaisons=list(liaisons))


def sms_to(phone: str, names: list[str] | None) -> OutboxRow:
    payload: dict[str, Any] = {"mentions": [phone], "village": "V1",
                               "roles": ["village_liaison"]}
    if names is not None:
        payload["names"] = names
    return OutboxRow(incident_id="INC-1", revision=1, recipient=f"village:V1:sms:{phone}",
                     purpose="outage", channel="sms", target=phone, audience="liaison",
                     subject="s", body="b", payload=payload, id=1, status="dead", attempts=3,
                     inflight_count=0, next_attempt_at=T0, created_at=T0, sent_at=None,
                     last_error="HTTP 500")


def test_a_person_whose_number_changed_is_reached_at_the_new_one() -> None:
    moved = {**ZHANG, "phone": "13800000009"}
    got = current_address(topology(moved, LI), sms_to("13800000001", ["张"]))
    assert (got.target, got.mentions) == ("13800000009", ("13800000009",))


def test_a_person_gone_from_the_directory_is_not_replaced_by_another() -> None:
    """张 left; 李, the village's other liaison of the role, had a message of his own."""
    with pytest.raises(GoneRecipient, match="张"):
        current_address(topology(LI), sms_to("13800000001", ["张"]))
    # A message from before names were kept cannot tell who it was for.
    with pytest.raises(GoneRecipient):
        current_address(topology(LI), sms_to("13800000001", None))
    # The number still in the directory: it goes there, whoever else is listed.
    assert current_address(topology(ZHANG, LI), sms_to("13800000001", None)).target \
        == "13800000001"
