"""What a digest said is kept, and says what the notices it stands for said.

When the rate limit merges a group's messages into a digest, the digest's text is stored as its
own outbox row (purpose ``digest``, sent, linked both ways with the messages it covers), so the
board shows exactly what the group read. The digest counts villages and households from the
command centre's summaries too (it said "0条线路，0个村，0户"), keeps villages only possibly
affected apart from confirmed ones, and keeps the expected restoration and the incident id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.channels.base import Message
from outage_sentinel.channels.wecom import WeComChannel
from outage_sentinel.crew import deadline_true_at
from outage_sentinel.delivery import Deliverer, message_of
from outage_sentinel.digest import build_digest
from outage_sentinel.metrics import Metrics
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.ratelimit import RateLimit
from outage_sentinel.store import Store
from tests.channels.conftest import FakeService
from tests.conftest import T0
from tests.test_delivery import POLICY, enqueue
from tests.test_lifecycle import Harness, ev

#: no secret registered by another test redacts this file's messages and errors
pytestmark = pytest.mark.usefixtures("no_secrets")


@pytest.fixture
def wecom_service() -> Iterator[FakeService]:
    s = FakeService()
    yield s
    s.close()


def village_notice(i: int) -> OutboxMessage:
    village = f"第{i}村"
    return OutboxMessage(
        incident_id=f"INC-{i}", revision=1, recipient=f"village:V{i}:wecom:town",
        purpose="outage", channel="wecom", target="town", audience="liaison",
        subject=f"【故障停电通知】{village}", body=f"【故障停电通知】{village}\n停电。",
        payload={"mentions": [f"1380000000{i}"],
                 "params": {"village": village, "feeder": "10kV马集线", "households": 10 * i,
                            "confirmed": 10 * i, "etr": "2026-03-01 12:00",
                            "incident": f"INC-{i}", "kind": "fault"}})


def test_a_digest_is_kept_as_its_own_sent_row(store: Store,
                                              wecom_service: FakeService) -> None:
    channel = WeComChannel("wecom", robots={"town": "key-town-0123456789abcdef"},
                           base_url=wecom_service.url, rate_limits=(RateLimit(2, 60),))
    d = Deliverer(store, {"wecom": channel}, POLICY, Metrics(), rand=lambda: 0.5)
    enqueue(store, *(village_notice(i) for i in range(1, 6)))
    d.run_once(T0)
    (request,) = wecom_service.requests
    said = request.json()["text"]["content"]
    assert said.splitlines()[0] == "停电汇总：5起事件，1条线路，5个村，150户"
    (digest,) = [m for m in store.messages() if m.purpose == "digest"]
    covered = [m for m in store.messages() if m.purpose == "outage"]
    assert (digest.status, digest.body, digest.target) == ("sent", said, "town")
    assert sorted(digest.payload["covers"]) == sorted(m.id for m in covered)
    assert digest.payload["mentions"] == [f"1380000000{i}" for i in range(1, 6)]
    for m in covered:
        assert (m.status, m.payload["digest"]) == ("sent", digest.id)
        assert m.last_error == f"in digest #{digest.id}: ok"
    d.run_once(T0 + timedelta(minutes=5))
    assert len(wecom_service.requests) == 1  # the digest row itself is never sent again


def test_a_digest_line_keeps_possible_villages_the_etr_and_the_id() -> None:
    def notice(key: str, village: str, households: int, confirmed: int) -> Message:
        return Message(key=key, channel="wecom", target="town", text=f"{village} 通知",
                       incident_id="INC-20260301-0001", purpose="outage",
                       params={"village": village, "feeder": "10kV马集线", "kind": "fault",
                               "households": households, "confirmed": confirmed,
                               "etr": "2026-03-01 12:00", "incident": "INC-20260301-0001"})

    (part,) = build_digest([notice("a", "马集村", 70, 40), notice("b", "刘庄村", 70, 70),
                            notice("c", "王楼村", 60, 0)], limit_bytes=2048)
    header, line = part.message.text.splitlines()
    assert header == "停电汇总：1起事件，1条线路，3个村（1个仅可能受影响），确认110户，另可能90户"
    assert line == ("【故障停电】10kV马集线：马集村(确认40户+可能30户)、刘庄村(70户)；"
                    "可能受影响：王楼村(60户)；共确认110户+可能90户；预计03-01 12:00恢复；"
                    "INC-20260301-0001")


@pytest.fixture
def h(tmp_path: Path, db_url: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url)
    yield harness
    harness.daemon.close()


def test_command_summaries_give_a_digest_its_counts(h: Harness) -> None:
    h.feed(ev("F1", "T1", "T2", "T3", etr=h.now + timedelta(hours=3)))  # ahead of its clock
    h.feed(ev("F2", "T4"))
    rows = [m for m in h.daemon.store.messages() if m.audience == "command"]
    incidents = sorted({m.incident_id for m in rows})
    assert len(incidents) == 2
    (part,) = build_digest([message_of(m) for m in rows], limit_bytes=2048)
    header, *lines = part.message.text.splitlines()
    assert "0条线路" not in header and "0个村" not in header and not header.endswith("，0户")
    assert all(any(i in line for line in lines) for i in incidents)
    assert any("预计" in line and "恢复" in line for line in lines)


@pytest.fixture
def told(tmp_path: Path) -> Iterator[Harness]:
    """The daemon writing real notices (its own SQLite file): the rows a group would get."""
    (tmp_path / "notices").mkdir()
    harness = Harness(tmp_path / "notices", f"sqlite:///{tmp_path / 'notices.db'}")
    yield harness
    harness.daemon.close()


def read_by(store: Store, service: FakeService, rows: list[OutboxMessage], target: str
            ) -> list[str]:
    """What one WeCom group over its limit (1 a minute) reads of ``rows``, as delivered."""
    channel = WeComChannel("wecom", robots={target: f"key-{target}-0123456789abcdef"},
                           base_url=service.url, rate_limits=(RateLimit(1, 60),))
    enqueue(store, *(OutboxMessage(
        incident_id=r.incident_id, revision=r.revision, recipient=r.recipient,
        purpose=r.purpose, channel="wecom", target=target, audience=r.audience,
        subject=r.subject, body=r.body, payload=r.payload) for r in rows))
    before = len(service.requests)
    Deliverer(store, {"wecom": channel}, POLICY, Metrics(), rand=lambda: 0.5).run_once(T0)
    return [r.json()["text"]["content"] for r in service.requests[before:]]


def rows_to(h: Harness, audience: str, *targets: str) -> list[OutboxMessage]:
    return [m for m in h.daemon.store.messages()
            if m.audience == audience and (not targets or m.target in targets)]


def test_a_group_reads_an_outage_called_off_as_cancelled(
        store: Store, wecom_service: FakeService, told: Harness) -> None:
    told.feed(ev("A", "T3"))
    told.at(5)
    told.feed(ev("A", "T3", status="cancelled"))
    told.at(6)
    told.feed(ev("B", "T4"))
    (said,) = read_by(store, wecom_service, rows_to(told, "liaison", "V2群", "V3群"), "town")
    assert "【故障停电已取消】10kV一号线：西村(80户)，如仍停电请拨打95598；INC-20261123-0001" in said
    (centre,) = read_by(store, wecom_service, rows_to(told, "command"), "centre")
    assert "【故障停电已取消】10kV一号线：西村(80户)，如仍停电请拨打95598" in centre
    assert "已恢复送电" not in said + centre


def test_a_crew_over_its_robots_limit_reads_each_order_whole_in_turn(
        store: Store, wecom_service: FakeService, told: Harness) -> None:
    """A crew's messages are never merged into a digest (a dispatch's deadline, section and
    care list would be lost): the first goes whole, the rest wait their turn, in order."""
    told.feed(ev("A", "T2"))
    told.at(20)
    told.feed(ev("A", "T2", status="restored"))
    rows = rows_to(told, "crew")
    assert [r.purpose for r in rows] == ["dispatch", "crew_power_back"]
    (said,) = read_by(store, wecom_service, rows, "crew")
    # Whole, its minutes left counted when it goes (:func:`crew.deadline_true_at`; this
    # file's deliverer runs at its own T0).
    whole, _ = deadline_true_at(rows[0].body, rows[0].payload["params"], T0)
    assert said == whole and "汇总" not in said
    waiting = [m for m in store.messages(status="pending") if m.audience == "crew"]
    assert [m.purpose for m in waiting] == ["crew_power_back"]
    assert waiting[0].last_error is not None and "rate limited" in waiting[0].last_error


def test_a_group_reads_its_care_notice_and_households_as_confirmed_or_possible(
        store: Store, wecom_service: FakeService, told: Harness) -> None:
    told.feed(ev("A", "T2"))
    (said,) = read_by(store, wecom_service, rows_to(told, "liaison", "V1群"), "east")
    assert "东村(确认50户+可能100户)" in said
    assert "重点关怀（东村）：本村有1户特殊关怀用户，名单已发送给抢修一班" in said
