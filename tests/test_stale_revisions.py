"""A record's own versions (the mapping's ``revision`` field): a copy of a version already
stored is a duplicate, and a version older than one stored is stale, whatever order a lagging
replica, a cache or a retried page serves them in. Content fingerprints (records without a
version of their own) keep their rule: a record back in an earlier state is news.

Through the daemon on the tests' grid (``tests/conftest.py``; T5 is 王楼村 V3's area) and
through the store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outage_sentinel.config import FieldMap
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import Incident
from outage_sentinel.sources.mapping import RecordMapper
from outage_sentinel.store import Store
from tests.conftest import T0
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_shared_areas import ev, feed


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def deliver(d: Daemon, minutes: float) -> None:
    """The clock's check and every due message sent, at ``T0 + minutes``."""
    d.clock.now = at(minutes)  # type: ignore[attr-defined]
    d.clock_stage.run_once(d.clock())
    while d.deliverer.run_once(d.clock()):
        pass


def heard(d: Daemon, village: str) -> list[str]:
    """The purpose of every notice sent to the village's first recipient (care aside)."""
    rows = [m for m in d.store.messages() if m.audience == "liaison" and m.status == "sent"
            and m.recipient.startswith(f"village:{village}:") and m.purpose != "care"]
    first = rows[0].recipient if rows else ""
    return [m.purpose for m in rows if m.recipient == first]


def incidents(d: Daemon) -> list[Incident]:
    return [Incident.from_json(r["state"]) for r in d.store.load_incidents(open_only=False)]


def dispatches(d: Daemon) -> list[str]:
    return [m.purpose for m in d.store.messages() if m.purpose == "dispatch"]


# -- through the daemon -----------------------------------------------------------------------


def test_a_stale_copy_of_an_earlier_revision_does_not_reopen_the_outage(
        daemon: Daemon) -> None:  # noqa: F811
    """v1: T5 off; v2: restored. A lagging replica serves v1 again, then v2 again: versions
    already stored. They used to be stored as new states (``~rN``): the incident reopened,
    王楼村 heard it was off again, then 恢复送电 once more, and a crew was sent again."""
    d = daemon
    feed(d, 1, ev("N1", "T5", start=at(0), revision="v1"))
    deliver(d, 2)
    feed(d, 30, ev("N1", "T5", start=at(0), status="restored", end=at(30), revision="v2"))
    deliver(d, 31)
    sent = dispatches(d)
    for minute in (32, 34, 36):  # the replicas alternate at every poll
        feed(d, minute, ev("N1", "T5", start=at(0), revision="v1"))
        deliver(d, minute + 0.5)
        feed(d, minute + 1, ev("N1", "T5", start=at(0), status="restored", end=at(30),
                               revision="v2"))
        deliver(d, minute + 1.5)
    assert heard(d, "V3") == ["outage", "restored"]
    (inc,) = incidents(d)
    assert inc.status != "active"
    assert dispatches(d) == sent
    assert [s.event.revision for s in d.store.events()] == ["v1", "v2"]


def test_an_older_version_first_seen_after_the_restoration_opens_nothing(
        daemon: Daemon) -> None:  # noqa: F811
    """Versions 1 (off) and 3 (restored) arrive; then version 2 (off), never seen before —
    older than 3. It opened an incident nothing would end. It is quarantined instead, with
    the reason, for the operator (``quarantine list``)."""
    d = daemon
    feed(d, 1, ev("N1", "T5", start=at(0), revision="1"))
    deliver(d, 2)
    feed(d, 30, ev("N1", "T5", start=at(0), status="restored", end=at(30), revision="3"))
    deliver(d, 31)
    feed(d, 32, ev("N1", "T5", start=at(0), revision="2"))
    deliver(d, 33)
    assert heard(d, "V3") == ["outage", "restored"]
    assert all(i.status != "active" for i in incidents(d))
    (kept,) = d.store.quarantined()
    assert kept["source"] == "feed"
    assert "N1" in kept["reason"] and "'2'" in kept["reason"] and "'3'" in kept["reason"]
    assert '"revision": "2"' in kept["raw"]


# -- through the store ------------------------------------------------------------------------


def event(revision: str = "", **kw: Any) -> OutageEvent:
    fields: dict[str, Any] = {"source": "feed", "event_id": "E1", "kind": "fault",
                              "status": "active", "start": T0, "transformers": ("T1",),
                              "revision": revision}
    fields.update(kw)
    return OutageEvent(**fields)


def restored(revision: str = "", **kw: Any) -> OutageEvent:
    return event(revision, status="restored", end=T0 + timedelta(minutes=30), **kw)


def ingest(store: Store, *events: OutageEvent, minutes: int = 0) -> tuple[int, int, int]:
    counts = store.ingest("feed", PollResult(events=list(events)), T0 + timedelta(minutes=minutes))
    return counts.inserted, counts.duplicates, counts.quarantined


def revisions(store: Store) -> list[str]:
    return [s.event.revision for s in store.events()]


def test_numbered_versions_compare_as_numbers(store: Store) -> None:
    """Version 10, then 9 (as text "9" sorts after "10"): 9 is stale; 11 is news."""
    assert ingest(store, event("10")) == (1, 0, 0)
    assert ingest(store, restored("11")) == (1, 0, 0)
    assert ingest(store, event("9")) == (0, 0, 1)
    assert ingest(store, event("10")) == (0, 1, 0)  # a copy of one stored: a duplicate
    assert ingest(store, event("12")) == (1, 0, 0)  # off again, for real
    assert revisions(store) == ["10", "11", "12"]
    (kept,) = store.quarantined()
    assert "'9'" in kept["reason"] and "'11'" in kept["reason"]


def test_timestamped_versions_compare_as_times(store: Store) -> None:
    """An update time as the version, written in the forms a feed writes times: the order is
    the times', not the texts' ("2026/3/1 8:45" sorts after "2026-03-01 09:00:00" as text)."""
    assert ingest(store, event("2026-03-01 08:30:00")) == (1, 0, 0)
    assert ingest(store, restored("2026-03-01 09:00:00")) == (1, 0, 0)
    assert ingest(store, event("2026/3/1 8:45")) == (0, 0, 1)
    assert ingest(store, event("20260301083000")) == (0, 1, 0)  # the first one, re-written
    assert ingest(store, event("2026年3月1日 9时30分")) == (1, 0, 0)
    assert revisions(store) == ["2026-03-01 08:30:00", "2026-03-01 09:00:00",
                                "2026年3月1日 9时30分"]


def test_a_stale_copy_in_one_poll_with_the_current_one_is_not_used(store: Store) -> None:
    """One poll lists the record twice (a page served from two replicas): the older copy is
    stale whichever comes first."""
    assert ingest(store, event("5"), restored("6")) == (2, 0, 0)
    assert ingest(store, restored("8"), event("7")) == (1, 0, 1)
    assert revisions(store) == ["5", "6", "8"]
    # versions with no order: the one stored, served after the new one, is a copy
    assert ingest(store, event("a", event_id="E2")) == (1, 0, 0)
    assert ingest(store, restored("b", event_id="E2"), event("a", event_id="E2")) == (1, 1, 0)
    assert [s.event.revision for s in store.events() if s.event.event_id == "E2"] == ["a", "b"]


def test_a_repeated_stale_copy_is_kept_once_and_counted(store: Store) -> None:
    """A lagging replica serving the same stale version at every poll: one quarantined row,
    its repeats counted (the operator sees it in ``quarantine list``, not a row a poll)."""
    ingest(store, event("1"), minutes=0)
    ingest(store, restored("3"), minutes=1)
    for minute in range(2, 6):
        ingest(store, event("2"), minutes=minute)
    (kept,) = store.quarantined()
    assert kept["repeats"] == 3


def test_a_version_listed_again_after_an_inferred_ending_is_news(store: Store) -> None:
    """A snapshot feed ends a record that left its list with a revision of its own making
    (no version: its content's fingerprint). The record listed again, at the same version, is
    back: stored again (docs/sources_http.md), as before. An older version is still stale."""
    assert ingest(store, event("7")) == (1, 0, 0)
    inferred = restored(raw={"inferred": "record left the feed"})
    assert ingest(store, inferred) == (1, 0, 0)
    assert ingest(store, event("7")) == (1, 0, 0)
    assert ingest(store, event("7")) == (0, 1, 0)
    assert ingest(store, event("6")) == (0, 0, 1)
    assert revisions(store) == ["7", inferred.revision, "7~r3"]


def test_records_without_a_version_keep_their_rule(store: Store) -> None:
    """No version of the source's: a return to an earlier content is news, as before, even
    beside versioned records of the same source."""
    dark, back = event(), restored()
    for e, inserted in ((dark, 1), (back, 1), (dark, 1), (back, 1)):
        assert ingest(store, e)[0] == inserted
    assert ingest(store, event("3", event_id="E2")) == (1, 0, 0)
    assert store.quarantined() == []


def test_a_feed_version_read_by_the_mapping_is_compared_as_a_number(store: Store) -> None:
    """The version the mapping reads (a JSON number, 9.0 read as "9"): the order is the
    number's."""
    fields = FieldMap(event_id="id", start="start", status="status", transformers="areas",
                      revision="version", status_values={"停电": "active", "已复电": "restored"})
    mapper = RecordMapper("feed", fields, ZoneInfo("Asia/Shanghai"))

    def record(version: Any, status: str) -> OutageEvent:
        e = mapper.map({"id": "W1", "start": "2026-03-01 08:00", "status": status,
                        "areas": "T1", "version": version})
        assert e is not None
        return e

    assert ingest(store, record(10, "停电")) == (1, 0, 0)
    assert ingest(store, record(11, "已复电")) == (1, 0, 0)
    assert ingest(store, record(9.0, "停电")) == (0, 0, 1)
    assert ingest(store, record(10, "停电")) == (0, 1, 0)
    assert revisions(store) == ["10", "11"]


def test_dotted_versions_are_only_the_same_or_not() -> None:
    """Review: "1.10" read as a decimal was older than "1.9", so a release-numbered update
    was quarantined as a stale copy and never used."""
    from outage_sentinel.store.events import judge_revision, revision_order

    assert revision_order("1.10", "1.9") is None
    assert judge_revision("1.10", [("1.9", True)])[0] == "new"


def test_digits_of_a_times_length_are_compared_as_times_not_numbers() -> None:
    """Review: an epoch (1772340000: 2026-03-01 12:40 +08:00) read as a number was older than
    a compact local time (20260301090000), so a feed that changed its time format had every
    later update quarantined as stale."""
    from outage_sentinel.store.events import revision_order

    assert revision_order("1772340000", "20260301090000") != -1
    assert revision_order("20260301090000", "20260301100000") == -1
    assert revision_order("9", "10") == -1
