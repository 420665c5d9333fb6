"""An area's own fault through the daemon (SQLite and the local PostgreSQL): the outage system
names T4 alone (under 马集2号熔断器 FU2, with T5 of another village), and its customers call in
while T5's 60 stay silent. The estimate is T4's own transformer, not the fuse: T5's village is
told nothing, the crew is sent to T4, and the command centre reads it as the area's own fault.
The same record without the calls keeps the fuse (and T5 is told it may be affected)."""

from __future__ import annotations

from datetime import timedelta

from outage_sentinel.daemon import Daemon
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed
from tests.test_stand_down import deliver, one_incident


def calls(n: int, area: str) -> list:
    return [ev(f"C{k}", area, signal="call", start=T0 + timedelta(seconds=10 * k))
            for k in range(n)]


def told(d: Daemon, incident_id: str) -> set[str]:
    return {str(m.payload.get("village")) for m in d.store.messages(incident_id=incident_id)
            if m.audience == "liaison" and m.purpose == "outage" and m.status == "sent"}


def test_a_lone_area_calling_in_is_its_own_fault(daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"), *calls(15, "T4"))
    iid = one_incident(daemon)
    inc = daemon.processor.incident(iid)
    assert inc.estimate.devices == ("T4",)
    assert inc.off == ("T4",) and "T5" not in inc.estimate.transformers
    deliver(daemon)
    assert told(daemon, iid) == {"V2"}
    orders = [m for m in daemon.store.messages(incident_id=iid) if m.purpose == "dispatch"][-1]
    assert "- 台区T4（" in orders.body
    summary = [m for m in daemon.store.messages(incident_id=iid) if m.audience == "command"][-1]
    assert "推断故障点：台区T4（台区自身故障：配变或跌落式熔断器）" in summary.body
    # V3 had an outage notice queued by the record alone (the fuse inferred), taken back
    # unsent when the calls came in the same round; the command centre sees it withdrawn
    v3 = [m for m in daemon.store.messages(incident_id=iid) if m.recipient.startswith(
        "village:V3:")]
    assert v3 and all(m.status == "withdrawn" for m in v3)
    # T5 reported off later: the fuse after all. V3 was never told, so it hears now.
    feed(daemon, 5, ev("N2", "T5"))
    assert daemon.processor.incident(iid).estimate.devices == ("FU2",)
    deliver(daemon)
    assert told(daemon, iid) == {"V2", "V3"}


def test_without_the_calls_the_fuse_stays_the_estimate(daemon: Daemon) -> None:  # noqa: F811
    feed(daemon, 1, ev("N1", "T4"))
    iid = one_incident(daemon)
    inc = daemon.processor.incident(iid)
    assert inc.estimate.devices == ("FU2",)
    deliver(daemon)
    assert told(daemon, iid) == {"V2", "V3"}
