"""Evidence that disagrees is shown, never settled by the weaker word: a liaison's 已来电 while
the meters of the area still report it off does not tell anyone its power is back (kept,
logged for the command centre); an outage-system record that ends while the meters still say
off holds the area off and says so in the incident's log.

Over the demo bundle and a real store (SQLite, and PostgreSQL when reachable), with the board's
field desk (its SMS reply hook) and the processor the daemon folds with."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.incidents import disputed_areas
from outage_sentinel.store import Store
from tests.test_field import field_board as field_board  # noqa: F401  (the fixture)
from tests.test_field import sent_all

HOOK = "hook-secret-123"


def record(store: Store, board: Any, now: datetime, source: str, event_id: str, area: str,
           start: datetime, **kw: Any) -> None:
    """A source's record of ``area`` stored at ``now`` and folded in."""
    store.ingest(source, PollResult(events=[OutageEvent(
        source=source, event_id=event_id, kind="fault", start=start, transformers=(area,),
        **kw)]), now)
    board.actions.core.processor.process(now)


def meters_dark(store: Store, board: Any, now: datetime, area: str, start: datetime) -> None:
    """The AMI screen's report that ``area``'s meters went dark at ``start`` and still are."""
    record(store, board, now, "ami", f"{area}@x", area, start, signal="dead", status="active")


def meters_back(store: Store, board: Any, now: datetime, area: str, start: datetime) -> None:
    """The AMI screen's record of that outage, closed by the meters' power-on at ``now``."""
    record(store, board, now, "ami", f"{area}@x", area, start, signal="alive",
           status="restored", end=now)


def sms_reply(board: Any, client: TestClient, phone: str, content: str, now: datetime,
              seq: int) -> dict[str, Any]:
    beijing = now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    r = client.post(f"/hooks/sms/{HOOK}", json=[{
        "phone_number": phone, "content": content, "send_time": beijing, "sequence_id": seq,
        "sign_name": "供电公司", "dest_code": "1"}])
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def liaison_purposes(store: Store, iid: str, village: str) -> list[str]:
    return list(dict.fromkeys(m.purpose for m in store.messages(incident_id=iid)
                              if m.audience == "liaison" and m.payload.get("village") == village))


def dark_by_meters(field_board: Any) -> tuple[Any, Store, Any, str, str, str, TestClient]:
    """An SMS liaison's village, one of its areas dark by its meters, the outage told."""
    board, store, clock, topology = field_board
    board.field_desk.sms_token = HOOK
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    li = next(x for x in topology.liaisons if x.channel == "sms")
    area = topology.village_transformers(li.village)[0]
    start = clock.now - timedelta(minutes=5)
    meters_dark(store, board, clock.now, area, start)
    (row,) = store.load_incidents(open_only=True)
    iid = str(row["id"])
    assert area in board.actions.core.processor.incident(iid).off
    sent_all(store, iid, clock.now)
    phone = next(m.target for m in store.messages(incident_id=iid)
                 if m.channel == "sms" and m.audience == "liaison"
                 and m.payload.get("village") == li.village)
    return board, store, clock, iid, area, phone, client


def test_a_liaisons_power_back_does_not_overrule_meters_still_dark(field_board: Any) -> None:
    board, store, clock, iid, area, phone, client = dark_by_meters(field_board)
    village = field_board[3].nodes[area].village
    processor = board.actions.core.processor
    clock.now += timedelta(minutes=10)
    assert sms_reply(board, client, phone, "1", clock.now, 1)["accepted"] == 1
    inc = processor.incident(iid)
    assert inc.status == "active" and area in inc.off, "the meters still say off"
    assert liaison_purposes(store, iid, village) == ["outage"]
    # the answer is kept, and the command centre sees that the meters disagree
    assert [a["answer"] for a in store.answers(iid)] == ["back"]
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "evidence_conflict"]
    assert step["details"]["transformers"] == [area]
    assert step["details"]["said"] == "field_back" and "meters" in step["note"]
    (alert,) = [m for m in store.messages(incident_id=iid) if m.purpose == "field_conflict"]
    assert alert.audience == "command" and "电表仍报停电" in alert.body
    assert list(disputed_areas(inc)) == [area]
    assert not [e for e in store.incident_log(iid) if e["stage"] == "meters_disagree"]
    # the same reply again (a second tap) adds nothing
    assert sms_reply(board, client, phone, "1", clock.now, 2)["accepted"] == 1
    assert len([e for e in store.incident_log(iid) if e["stage"] == "evidence_conflict"]) == 1
    # the meters' own power-on brings it back
    clock.now += timedelta(minutes=5)
    meters_back(store, board, clock.now, area, clock.now - timedelta(minutes=20))
    inc = processor.incident(iid)
    assert inc.status == "restored" and area in inc.restored
    assert liaison_purposes(store, iid, village) == ["outage", "restored"]


def test_the_command_centre_restores_by_hand_what_the_liaison_said_and_the_meters_deny(
        field_board: Any) -> None:
    board, store, clock, iid, area, phone, client = dark_by_meters(field_board)
    village = field_board[3].nodes[area].village
    processor = board.actions.core.processor
    clock.now += timedelta(minutes=10)
    sms_reply(board, client, phone, "1", clock.now, 1)
    assert area in processor.incident(iid).off
    clock.now += timedelta(minutes=5)
    processor.operator_restore(iid, "operator:li", area, None, "村委电话确认", now=clock.now)
    inc = processor.incident(iid)
    assert inc.status == "restored" and disputed_areas(inc) == {}
    assert liaison_purposes(store, iid, village) == ["outage", "restored"]


def test_still_dark_by_sms_beside_the_meters_changes_nothing(field_board: Any) -> None:
    board, store, clock, iid, area, phone, client = dark_by_meters(field_board)
    clock.now += timedelta(minutes=10)
    assert sms_reply(board, client, phone, "2", clock.now, 1)["accepted"] == 1
    inc = board.actions.core.processor.incident(iid)
    assert area in inc.off and disputed_areas(inc) == {}
    assert not [e for e in store.incident_log(iid) if e["stage"] == "evidence_conflict"]


def test_a_record_ending_while_the_meters_are_dark_is_a_revision_naming_the_area(
        field_board: Any) -> None:
    """The outage system's record of an area ends; its meters still report it off. The area
    stays off, the village hears nothing, and the incident moves to a new revision (the
    command centre's summary) that names the area and the record the meters contradict."""
    board, store, clock, topology = field_board
    processor = board.actions.core.processor
    li = next(x for x in topology.liaisons if x.channel == "sms")
    area = topology.village_transformers(li.village)[0]
    start = clock.now - timedelta(minutes=5)
    record(store, board, clock.now, "oms", "R1", area, start, status="active")
    (row,) = store.load_incidents(open_only=True)
    iid = str(row["id"])
    clock.now += timedelta(minutes=1)
    meters_dark(store, board, clock.now, area, start + timedelta(minutes=1))
    sent_all(store, iid, clock.now)
    inc = processor.incident(iid)
    assert set(inc.members) == {"oms|R1", f"ami|{area}@x"} and disputed_areas(inc) == {}
    summaries = len([m for m in store.messages(incident_id=iid) if m.purpose == "summary"])
    clock.now += timedelta(minutes=30)
    record(store, board, clock.now, "oms", "R1", area, start, status="restored", end=clock.now)
    after = processor.incident(iid)
    assert after.status == "active" and area in after.off
    assert after.revision == inc.revision + 1
    assert disputed_areas(after) == {area: ("oms|R1",)}
    assert len([m for m in store.messages(incident_id=iid)
                if m.purpose == "summary"]) == summaries + 1
    assert liaison_purposes(store, iid, li.village) == ["outage"]
    # the log says the record ended and the meters disagree: once, naming the record
    (step,) = [e for e in store.incident_log(iid) if e["stage"] == "meters_disagree"]
    assert step["details"]["transformers"] == [area]
    assert step["details"]["records"] == ["oms|R1"]
    assert step["details"]["customers"] == topology.customers_of([area]) > 0
    assert not [e for e in store.incident_log(iid) if e["stage"] == "evidence_conflict"]
