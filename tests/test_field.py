"""The field loop's first part: liaisons' personal links (signed, scoped, expiring), their
page, and their answers folded as evidence — over a real store and the demo topology."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from outage_sentinel.board.app import create_app
from outage_sentinel.board.serve import build
from outage_sentinel.config import CommandCentreConfig, FieldConfig, load_config
from outage_sentinel.field_links import (
    LINK_PREFIX,
    Link,
    LinkError,
    short_token,
    sign,
    verify,
    verify_short,
)
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.e2e_helpers import sign_in_form

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def test_tokens_cannot_be_forged_moved_or_used_after_expiry() -> None:
    secret = b"k" * 32
    link = Link("INC-1", "V01", "village:V01:wecom:g", T0)
    token = sign(secret, link)
    assert verify(secret, token, T0 + timedelta(days=1)) == link
    head, mac = token.split(".")
    for bad in (f"{head}.{mac[:-2]}AA", sign(b"x" * 32, link), "nonsense", f"{head}x.{mac}"):
        with pytest.raises(LinkError):
            verify(secret, bad, T0)
    # Another incident or village is another token: a token's payload cannot be swapped.
    other = sign(secret, Link("INC-2", "V01", link.recipient, T0)).split(".")[0]
    with pytest.raises(LinkError, match="not one of ours"):
        verify(secret, f"{other}.{mac}", T0)
    with pytest.raises(LinkError, match="expired"):
        verify(secret, token, T0 + timedelta(days=15))
    with pytest.raises(LinkError, match="expired"):
        verify(secret, token, T0 + timedelta(days=2), ended=T0 + timedelta(hours=1))
    assert verify(secret, token, T0 + timedelta(hours=20), ended=T0 + timedelta(hours=1))


def test_short_tokens_are_checked_against_their_stored_link() -> None:
    secret = b"k" * 32
    link = Link("INC-20261204-0001", "V01", "village:V01:wecom:g", T0)
    token = short_token(secret, link.incident_id, link.village, link.recipient)
    assert len(token) == 24 and re.fullmatch(r"[A-Za-z0-9_-]{24}", token)
    assert token == short_token(secret, link.incident_id, link.village, link.recipient)
    assert verify_short(secret, token, link, T0 + timedelta(days=1)) == link
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad, stored in ((flipped, link), (token, None), (token[:20], link),
                        (short_token(b"x" * 32, "INC-20261204-0001", "V01", link.recipient),
                         link),
                        # the row altered to point at another incident, village, recipient
                        (token, Link("INC-20261204-0002", "V01", link.recipient, T0)),
                        (token, Link(link.incident_id, "V02", link.recipient, T0)),
                        (token, Link(link.incident_id, "V01", "village:V01:sms:1", T0))):
        with pytest.raises(LinkError):
            verify_short(secret, bad, stored, T0)
    with pytest.raises(LinkError, match="expired"):
        verify_short(secret, token, link, T0 + timedelta(days=15))
    with pytest.raises(LinkError, match="expired"):
        verify_short(secret, token, link, T0 + timedelta(days=2), ended=T0 + timedelta(hours=1))
    assert verify_short(secret, token, link, T0 + timedelta(hours=20),
                        ended=T0 + timedelta(hours=1))


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def field_board(store: Store, tmp_path: Path) -> tuple[Any, Store, Clock, Topology]:
    config = load_config(ROOT / "config.yaml").model_copy(update={
        "state_dir": tmp_path,
        "field": FieldConfig(base_url="http://board.example.cn:8088"),
        "command_centre": CommandCentreConfig(channel="wecom")})
    topology = load_bundle(ROOT / "topology")
    clock = Clock()
    board = build(config, store, lambda: topology, clock)
    return board, store, clock, topology


def links_of(store: Store, incident_id: str) -> dict[str, str]:
    """village -> a liaison's token, from the notices queued."""
    out = {}
    for m in store.messages(incident_id=incident_id):
        found = re.search(r"http://board\.example\.cn:8088/f/(\S+)", m.body)
        if found and m.audience == "liaison":
            out.setdefault(m.payload["village"], found.group(1))
    return out


def sent_all(store: Store, incident_id: str, at: datetime) -> None:
    """The incident's liaison notices delivered (as the deliverer marks them)."""
    for m in store.messages(incident_id=incident_id, status="pending"):
        if m.audience == "liaison" and store.mark_inflight(m.id, at):
            store.mark_sent(m.id, at, "test")


def field_events(store: Store) -> list[Any]:
    return [e for e in store.events() if e.event.source == "field"]


def test_a_liaison_says_still_dark_and_the_area_is_off_again(field_board: Any) -> None:
    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014,T-LH01-015"}, "operator:x")
    (village, token), *_ = links_of(store, iid).items()
    sms = [m for m in store.messages(incident_id=iid) if m.channel == "sms"]
    assert all("/f/" not in m.body for m in sms)  # SMS templates carry no link
    page = client.get(f"/f/{token}")
    assert page.status_code == 200 and topology.villages[village].name in page.text
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", page.text)  # nothing personal
    inc = board.actions.core.processor.incident(iid)
    area = next(t for t in inc.off if topology.nodes[t].village == village)
    clock.now += timedelta(minutes=10)
    board.actions.core.processor.operator_restore(iid, "operator:x", area, None, "",
                                                  now=clock.now)
    assert area in board.actions.core.processor.incident(iid).restored
    clock.now += timedelta(minutes=5)
    r = client.post(f"/f/{token}/answer", json={"area": area, "answer": "dark",
                                                 "note": "3组还没电"})
    assert r.status_code == 200, r.text
    assert area in board.actions.core.processor.incident(iid).off
    assert next(a for a in r.json()["areas"] if a["id"] == area)["state"] == "off"
    assert len(field_events(store)) == 1
    # The same tap again adds no report; a changed answer is a new revision of the same one.
    assert client.post(f"/f/{token}/answer", json={"area": area, "answer": "dark"}).status_code == 200
    assert len(field_events(store)) == 1
    clock.now += timedelta(minutes=5)
    back = client.post(f"/f/{token}/answer", json={"area": area, "answer": "back"})
    assert back.status_code == 200
    assert area in board.actions.core.processor.incident(iid).restored
    revisions = [e.event.revision for e in field_events(store)]
    assert revisions == ["1", "2"]
    from outage_sentinel.board.app import incident_data
    from outage_sentinel.board.views import Viewer

    shown = incident_data(board, iid, Viewer("zh", UTC, phones=False))["answers"]  # type: ignore[index]
    assert [(a["answer_label"], a["revision"]) for a in shown] == [("已来电", 2)]
    summaries = [m.body for m in store.messages(incident_id=iid) if m.audience == "command"]
    assert len(summaries) >= 4  # opened, restored, reopened by the liaison, back again


def test_a_dark_answer_on_a_cancelled_false_alarm_goes_to_the_command_centre(
        field_board: Any) -> None:
    """The command centre cancelled the incident (the caller's own breaker) and the village
    heard so. A tap on "仍停电" must not reopen it and send the village an outage notice at
    once: the command centre is asked to check."""
    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    (village, token), *_ = links_of(store, iid).items()
    clock.now += timedelta(minutes=5)
    board.actions.steps.cancel(iid, "用户内部开关跳闸", "operator:x")
    liaison_before = [m.id for m in store.messages(incident_id=iid) if m.audience == "liaison"]
    area = next(t for t in topology.village_transformers(village))
    clock.now += timedelta(minutes=5)
    r = client.post(f"/f/{token}/answer", json={"area": area, "answer": "dark"})
    assert r.status_code == 200, r.text
    assert all(a["state"] == "unaffected" for a in r.json()["areas"])
    inc = board.actions.core.processor.incident(iid)
    assert inc.status == "cancelled"
    assert [m.id for m in store.messages(incident_id=iid)
            if m.audience == "liaison"] == liaison_before
    asks = [m for m in store.messages(incident_id=iid) if m.purpose == "field_dark"]
    assert len(asks) == 1 and "仍停电" in asks[0].body and "用户内部开关跳闸" in asks[0].body
    assert not any(i.id != iid and i.status == "active"
                   for i in map(board.actions.core.processor.incident,
                                [r["id"] for r in store.load_incidents(open_only=True)]))


def test_wrong_area_forged_and_expired_links_are_refused(field_board: Any) -> None:
    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    village, token = next(iter(links_of(store, iid).items()))
    elsewhere = next(t for t in topology.transformers if topology.nodes[t].village != village)
    r = client.post(f"/f/{token}/answer", json={"area": elsewhere, "answer": "dark"})
    assert r.status_code == 400 and "this village" in r.json()["error"]
    assert client.post(f"/f/{token}/answer", json={"area": elsewhere,
                                                   "answer": "maybe"}).status_code == 400
    assert client.get(f"/f/{token[:-3]}xyz").status_code == 403
    clock.now += timedelta(days=15)
    assert client.get(f"/f/{token}").status_code == 403
    assert field_events(store) == []


def test_a_burst_on_one_link_is_throttled(field_board: Any) -> None:
    board, store, _clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    token = next(iter(links_of(store, iid).values()))
    codes = [client.get(f"/f/{token}").status_code for _ in range(1000)]
    assert codes.count(200) == 30 and codes.count(429) == 970


def crew_token(store: Store, incident_id: str) -> tuple[str, str]:
    """(crew id, token) from the latest dispatch message."""
    m = [m for m in store.messages(incident_id=incident_id) if m.purpose == "dispatch"][-1]
    found = re.search(r"http://board\.example\.cn:8088/c/(\S+)", m.body)
    assert found, m.body
    return m.payload["crew"], found.group(1)


def test_a_crew_reports_from_its_page_through_the_lifecycle(field_board: Any) -> None:
    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-002,T-CG01-003"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")  # on WeCom
    crew, token = crew_token(store, iid)
    page = client.get(f"/c/{token}")
    assert page.status_code == 200 and iid in page.text
    inc = board.actions.core.processor.incident(iid)
    steps: list[dict[str, Any]] = [
        {"step": "accepted"}, {"step": "on_the_way"},
        {"step": "arrive", "lat": 36.4911, "lon": 115.5071},
        {"step": "fault_found", "device": inc.estimate.section[0], "cause": "树线矛盾",
         "note": "支线熔断器熔断"},
        {"step": "restore", "transformers": [inc.off[0]]},
        {"step": "restore"}]
    for body in steps:
        clock.now += timedelta(minutes=3)
        if body == {"step": "restore"}:  # nothing ticked is no "everything is back"
            r = client.post(f"/c/{token}/step", json={"step": "restore", "transformers": []})
            assert r.status_code == 409 and "none ticked" in r.text
            # The command centre set the ETR: the crew's page does not overrule it.
            etr = (clock.now + timedelta(hours=4)).astimezone(
                ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
            board.actions.incident_step(iid, "etr", {"time": etr}, "board:ops")
            r = client.post(f"/c/{token}/step", json={"step": "etr", "time": etr})
            assert r.status_code == 409 and "command centre" in r.text
        r = client.post(f"/c/{token}/step", json=body)
        assert r.status_code == 200, (body, r.text)
    assert board.actions.core.processor.incident(iid).stage == "restored"
    field = [(a["actor"], a["action"], a["ok"]) for a in store.audit_trail()
             if a["kind"] == "field"]
    assert (f"crew:{crew}", "arrive", True) in field and (f"crew:{crew}", "etr", False) in field
    actors = {e["stage"]: e["actor"] for e in store.incident_log(iid)}
    for stage in ("accepted", "on_the_way", "on_site", "fault_found"):
        assert actors[stage] == f"crew:{crew}", stage
    on_site = [e for e in store.incident_log(iid) if e["stage"] == "on_site"][0]
    assert (on_site["details"]["lat"], on_site["details"]["lon"]) == (36.4911, 115.5071)
    found = [e for e in store.incident_log(iid) if e["stage"] == "fault_found"][0]
    assert found["details"]["device"] == inc.estimate.section[0]
    restored = [e for e in store.events() if e.event.source == "operator"
                and e.event.status == "restored"]
    assert {e.event.raw["actor"] for e in restored} == {f"crew:{crew}"}
    # Liaisons heard "power restored", each recipient once per restoration step.
    back = [(m.recipient, m.revision) for m in store.messages(incident_id=iid)
            if m.purpose == "restored" and m.audience == "liaison"]
    assert back and len(back) == len(set(back))


def test_crew_pages_refuse_other_links_and_other_crews(field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-001"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    liaison = next(iter(links_of(store, iid).values()))
    assert client.get(f"/c/{liaison}").status_code == 403  # a liaison's link is no crew's
    crew, token = crew_token(store, iid)
    assert client.get(f"/f/{token}").status_code == 403  # ...and a crew's no liaison's
    r = client.post(f"/c/{token}/step", json={"step": "fault_found", "device": "nowhere"})
    assert r.status_code == 400
    assert client.post(f"/c/{token}/step", json={"step": "fly"}).status_code == 400
    assert client.post(f"/c/{token}/step", json={"step": "arrive",
                                                 "lat": 200, "lon": 0}).status_code == 400
    board.actions.incident_step(iid, "dispatch", {"crew": "CR03"}, "operator:x")
    assert client.get(f"/c/{token}").status_code == 403  # re-dispatched: the old crew's link
    _, new = crew_token(store, iid)
    assert client.get(f"/c/{new}").status_code == 200


def test_progress_reaches_the_villages_once_per_step(field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-001,T-CG01-002"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    told = {m.recipient for m in store.messages(incident_id=iid)
            if m.purpose == "outage" and m.channel != "sms"}
    for body in ({"step": "arrive"}, {"step": "arrive"},
                 {"step": "fault_found", "cause": "树线矛盾"}):
        clock.now += timedelta(minutes=2)
        assert client.post(f"/c/{token}/step", json=body).status_code in (200, 409)
    progress = [m for m in store.messages(incident_id=iid) if m.purpose.startswith("progress")]
    on_site = [m for m in progress if m.purpose == "progress_on_site"]
    found = [m for m in progress if m.purpose == "progress_fault_found"]
    assert {m.recipient for m in on_site} == told and len(on_site) == len(told)
    assert {m.recipient for m in found} == told
    assert all("树线矛盾" in m.body for m in found)
    assert all(m.channel != "sms" for m in progress)


def jpeg_with_gps() -> bytes:
    import io

    from PIL import Image

    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {2: (36.0, 30.0, 0.0), 4: (115.0, 30.0, 0.0)}  # GPS latitude/longitude
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_a_crews_photo_is_cleaned_kept_and_shown_on_the_public_progress_page(
        field_board: Any, tmp_path: Path) -> None:
    import io

    from PIL import Image

    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-001,T-CG01-002"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    original = jpeg_with_gps()
    assert b"PhoneMaker" in original
    r = client.post(f"/c/{token}/photo", content=original,
                    headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    for bad, why in ((b"not an image", "not an image"), (b"", "empty"),
                     (b"\xff" * (11 * 1024 * 1024), "MB at most")):
        r = client.post(f"/c/{token}/photo", content=bad)
        assert r.status_code == 400 and why in r.json()["error"]
    clock.now += timedelta(minutes=2)
    assert client.post(f"/c/{token}/step", json={"step": "fault_found",
                                                 "cause": "树线矛盾"}).status_code == 200
    notice = next(m for m in store.messages(incident_id=iid)
                  if m.purpose == "progress_fault_found")
    public = re.search(r"http://board\.example\.cn:8088/p/(\S+)", notice.body)
    assert public, notice.body
    page = client.get(f"/p/{public.group(1)}")
    assert page.status_code == 200 and "树线矛盾" in page.text
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", page.text)
    name = re.search(r'src="/p/[^/]+/([0-9a-f]{32}\.jpg)"', page.text).group(1)  # type: ignore[union-attr]
    photo = client.get(f"/p/{public.group(1)}/{name}")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    kept = Image.open(io.BytesIO(photo.content))
    assert kept.size == (64, 48) and not kept.getexif() and b"PhoneMaker" not in photo.content
    assert client.get(f"/p/{public.group(1)}/..%2f..%2fconfig.yaml").status_code == 404
    assert client.get(f"/p/{token}").status_code == 403  # a crew's link is no public page
    assert [e["stage"] for e in store.incident_log(iid)].count("photo") == 1


def test_old_photos_are_deleted(tmp_path: Path) -> None:
    import os
    import time

    from outage_sentinel.board.photos import photos_of, prune, store_photo

    name = store_photo(tmp_path, "INC-1", jpeg_with_gps())
    assert photos_of(tmp_path, "INC-1") == [name]
    old = tmp_path / "INC-1" / name
    os.utime(old, (time.time() - 200 * 86400,) * 2)
    assert prune(tmp_path, 180) == 1 and photos_of(tmp_path, "INC-1") == []


def test_sms_replies_answer_for_the_village_once_and_only_fresh(field_board: Any) -> None:
    from pydantic import SecretStr

    board, store, clock, topology = field_board
    board.field_desk.sms_token = SecretStr("hook-secret-123").get_secret_value()
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    sms_liaison = next(li for li in topology.liaisons if li.channel == "sms")
    area = topology.village_transformers(sms_liaison.village)[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    sent_all(store, iid, clock.now)
    notice = next(m for m in store.messages(incident_id=iid)
                  if m.channel == "sms" and m.audience == "liaison")
    phone = notice.target
    processor = board.actions.core.processor

    def off_now() -> set[str]:
        """Areas off in any open incident: still dark after the outage answered ended is a
        new outage (or the same one again, while another of its areas is off)."""
        return {t for r in store.load_incidents(open_only=True)
                for t in processor.incident(r["id"]).off}

    clock.now += timedelta(minutes=10)
    processor.operator_restore(iid, "operator:x", area, None, "", now=clock.now)
    clock.now += timedelta(minutes=5)
    beijing = clock.now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    reply = {"phone_number": phone, "content": "2", "send_time": beijing, "sequence_id": 77,
             "sign_name": "供电公司", "dest_code": "1"}
    assert client.post("/hooks/sms/wrong", json=[reply]).status_code == 404
    r = client.post("/hooks/sms/hook-secret-123", json=[reply])
    assert r.status_code == 200 and r.json()["code"] == 0 and r.json()["accepted"] == 1
    assert area in off_now()  # still dark, said the liaison by SMS
    assert client.post("/hooks/sms/hook-secret-123", json=[reply]).json()["ignored"] == 1
    stale = dict(reply, sequence_id=78, content="1",
                 send_time=(clock.now - timedelta(hours=2)).astimezone(
                     ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S"))
    unknown = dict(reply, sequence_id=79, content="好的")
    r = client.post("/hooks/sms/hook-secret-123", json=[stale, unknown, "junk"])
    assert r.json() == {"code": 0, "msg": "ok", "accepted": 0, "ignored": 3}
    assert area in off_now()
    assert client.post("/hooks/sms/hook-secret-123", content=b"{").status_code == 400
    # a replay marker is kept while a replay could still be fresh, then deleted
    assert store.kv_get("sms_reply:77") is not None
    clock.now += timedelta(days=3)
    late = dict(reply, sequence_id=80, send_time=clock.now.astimezone(
        ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S"))
    client.post("/hooks/sms/hook-secret-123", json=[late])
    assert store.kv_get("sms_reply:77") is None and store.kv_get("sms_reply:80") is not None


def test_a_reply_answers_the_notice_the_liaison_read_not_one_still_queued(
        field_board: Any) -> None:
    """A phone that serves two villages read the outage notice of the first; the second's
    is still queued (a slow SMS gateway) when the liaison replies "1": the answer is for
    the first village, not for one whose notice never reached them."""
    board, store, clock, topology = field_board
    board.field_desk.sms_token = "hook-secret-123"
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    phone, (first, second) = next(
        (li.target or li.phone, sorted({x.village for x in topology.liaisons
                                        if x.channel == "sms" and x.target == li.target})[:2])
        for li in topology.liaisons if li.channel == "sms"
        and len({x.village for x in topology.liaisons if x.target == li.target}) > 1)
    a1, a2 = (topology.village_transformers(v)[0] for v in (first, second))
    read = board.actions.open_incident({"transformers": a1}, "operator:x")
    sent_all(store, read, clock.now)
    clock.now += timedelta(minutes=5)
    queued = board.actions.open_incident({"transformers": a2}, "operator:x")
    assert any(m.target == phone and m.status == "pending"
               for m in store.messages(incident_id=queued))
    clock.now += timedelta(minutes=5)
    beijing = clock.now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    reply = {"phone_number": phone, "content": "1", "send_time": beijing, "sequence_id": 5}
    assert client.post("/hooks/sms/hook-secret-123", json=[reply]).json()["accepted"] == 1
    processor = board.actions.core.processor
    assert a1 in processor.incident(read).restored
    assert a2 in processor.incident(queued).off


def test_the_report_counts_confirmations_and_the_time_to_confirm(field_board: Any) -> None:
    from zoneinfo import ZoneInfo as Zone

    from outage_sentinel import reports

    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    start = clock.now
    iid = board.actions.open_incident({"transformers": "T-LH01-014,T-LH01-015"}, "operator:x")
    village, token = next(iter(links_of(store, iid).items()))
    processor = board.actions.core.processor
    area = next(t for t in processor.incident(iid).off if topology.nodes[t].village == village)
    clock.now += timedelta(minutes=30)
    processor.operator_restore(iid, "operator:x", area, None, "", now=clock.now)
    clock.now += timedelta(minutes=12)  # the liaison confirms twelve minutes later
    assert client.post(f"/f/{token}/answer", json={"area": area,
                                                   "answer": "back"}).status_code == 200
    tz = Zone("Asia/Shanghai")
    report = reports.build_report(store, topology, start - timedelta(hours=1),
                                  clock.now + timedelta(hours=1), tz, clock.now)
    row = report.by_village[report.by_village["village"] == village].iloc[0]
    assert row["field_confirmations"] == 1
    assert row["confirm_minutes_median"] == pytest.approx(12, abs=0.1)
    assert report.summary["field_confirmations"].iloc[0] == 1
    assert report.summary["field_still_dark"].iloc[0] == 0


def test_a_dingtalk_group_reply_is_signed_fresh_and_taken_once(field_board: Any) -> None:
    import base64
    import hashlib
    import hmac

    board, store, clock, topology = field_board
    board.field_desk.dingtalk_secret = secret = "robot-test-key"
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    group = next(li for li in topology.liaisons if li.channel == "dingtalk")
    area = topology.village_transformers(group.village)[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    sent_all(store, iid, clock.now)
    notice = next(m for m in store.messages(incident_id=iid) if m.channel == "dingtalk")

    def post(body: dict[str, Any], at: datetime, key: str = secret) -> Any:
        stamp = str(int(at.timestamp() * 1000))
        sign = base64.b64encode(hmac.new(key.encode(), f"{stamp}\n{key}".encode(),
                                         hashlib.sha256).digest()).decode()
        return client.post("/hooks/dingtalk", json=body,
                           headers={"timestamp": stamp, "sign": sign})

    body = {"msgtype": "text", "text": {"content": " 2 "}, "msgId": "m1",
            "conversationTitle": notice.target, "senderNick": "村委"}
    assert post(body, clock.now, key="wrong").status_code == 403
    assert post(body, clock.now - timedelta(hours=2)).status_code == 403
    r = post(body, clock.now)
    assert r.status_code == 200 and r.json()["text"]["content"] == "已收到：仍停电"
    inc = board.actions.core.processor.incident(iid)
    village_areas = [t for t in inc.estimate.transformers
                     if t in topology.village_transformers(group.village)]
    taken = [e for e in store.events() if e.event.source == "field"]
    assert sorted(e.event.transformers[0] for e in taken) == sorted(village_areas)
    assert post(body, clock.now).json() == {}  # the same msgId again
    assert len([e for e in store.events() if e.event.source == "field"]) == len(taken)
    assert post(dict(body, msgId="m2", text={"content": "谢谢"}), clock.now).json() == {}


def test_the_crews_fault_found_device_is_the_confirmed_device_for_learning(
        field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-002,T-CG01-003"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, token = crew_token(store, iid)
    device = board.actions.core.processor.incident(iid).estimate.section[0]
    assert client.post(f"/c/{token}/step", json={"step": "fault_found",
                                                 "device": device}).status_code == 200
    clock.now += timedelta(minutes=5)
    board.actions.incident_step(iid, "restore", {}, "operator:x")
    board.actions.incident_step(iid, "close", {"cause": "树线矛盾"}, "operator:x")
    assert store.confirmed_devices()[iid] == [device]  # the close-out named none


def test_a_feishu_group_reply_is_verified_fresh_and_taken_once(field_board: Any) -> None:
    import hashlib
    import json

    board, store, clock, topology = field_board
    desk = board.field_desk
    desk.feishu_token, desk.feishu_key = "verify-token-1", "encrypt-key-1"
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    group = next(li for li in topology.liaisons if li.channel == "feishu")
    area = topology.village_transformers(group.village)[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    sent_all(store, iid, clock.now)
    notice = next(m for m in store.messages(incident_id=iid) if m.channel == "feishu")
    desk.feishu_chats = {"oc_group1": notice.target}

    def post(body: dict[str, Any], key: str = "encrypt-key-1") -> Any:
        raw = json.dumps(body, ensure_ascii=False).encode()
        stamp, nonce = "1733299200", "n1"
        sign = hashlib.sha256((stamp + nonce + key).encode() + raw).hexdigest()
        return client.post("/hooks/feishu", content=raw, headers={
            "X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": sign, "Content-Type": "application/json"})

    check = post({"challenge": "abc", "token": "verify-token-1", "type": "url_verification"})
    assert check.json() == {"challenge": "abc"}
    event = {"schema": "2.0", "header": {
        "event_id": "ev1", "token": "verify-token-1", "event_type": "im.message.receive_v1",
        "create_time": str(int(clock.now.timestamp() * 1000))},
        "event": {"message": {"chat_id": "oc_group1", "message_id": "om_1",
                              "content": json.dumps({"text": "@_user_1 2"})}}}
    assert post(event, key="wrong").status_code == 403
    assert post(dict(event, header=dict(event["header"], token="x"))).status_code == 403
    assert post(event).json() == {"taken": True}
    taken = len([e for e in store.events() if e.event.source == "field"])
    assert taken >= 1
    assert post(event).json() == {"taken": False}  # the same event again
    old = dict(event, header=dict(event["header"], event_id="ev2", create_time=str(
        int((clock.now - timedelta(hours=3)).timestamp() * 1000))))
    assert post(old).json() == {"taken": False}
    assert len([e for e in store.events() if e.event.source == "field"]) == taken


def test_the_overview_counts_what_the_field_said_and_an_unlisted_dark_area_is_reported(
        field_board: Any) -> None:
    from outage_sentinel.board.app import overview_data
    from outage_sentinel.board.views import Viewer

    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    # T-CG01-006's fuse feeds part of its village: the rest is not in the incident.
    iid = board.actions.open_incident({"transformers": "T-CG01-006"}, "operator:x")
    village = topology.nodes["T-CG01-006"].village
    token = links_of(store, iid)[village]
    inc = board.actions.core.processor.incident(iid)
    unlisted = [t for t in topology.village_transformers(village)
                if t not in inc.estimate.transformers]
    assert unlisted
    clock.now += timedelta(minutes=3)
    assert client.post(f"/f/{token}/answer", json={"area": "T-CG01-006",
                                                   "answer": "back"}).status_code == 200
    card = next(c for c in overview_data(board, Viewer("zh", UTC, True))["incidents"]
                if c["id"] == iid)
    assert (card["field_back"], card["field_dark"]) == (1, 0)
    clock.now += timedelta(minutes=3)
    assert client.post(f"/f/{token}/answer", json={"area": unlisted[0],
                                                   "answer": "dark"}).status_code == 200
    holders = [r["id"] for r in store.load_incidents(open_only=True)
               if unlisted[0] in r["state"]["estimate"]["transformers"]]
    assert holders, "the dark report joined no incident"


def test_links_are_short_kept_with_their_message_and_the_same_in_every_notice(
        field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    urls = re.findall(r"http://board\.example\.cn:8088/f/\S+", "\n".join(
        m.body for m in store.messages(incident_id=iid)))
    assert urls and all(len(u) == len("http://board.example.cn:8088/f/") + 24 for u in urls)
    village, token = next(iter(links_of(store, iid).items()))
    kept = store.kv_get(LINK_PREFIX + token[:12])
    assert kept["incident"] == iid and kept["village"] == village
    clock.now += timedelta(minutes=5)
    board.actions.incident_step(iid, "etr", {"time": (clock.now + timedelta(hours=3))
                                             .isoformat()}, "operator:x")
    update = [m for m in store.messages(incident_id=iid) if m.purpose == "update"
              and m.payload["village"] == village and m.channel != "sms"]
    assert update and token in update[0].body  # the same link: answers stay one per area
    assert client.get(f"/f/{token}").status_code == 200


def test_a_short_link_opens_nothing_of_another_incident_and_ends_after_the_close(
        field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    first = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    clock.now += timedelta(minutes=1)
    second = board.actions.open_incident({"transformers": "T-CG01-001"}, "operator:x")
    assert first != second
    a, b = (next(iter(links_of(store, i).values())) for i in (first, second))
    # One incident's key with the other's MAC, and each the other way round: refused.
    for mixed in (a[:12] + b[12:], b[:12] + a[12:]):
        assert client.get(f"/f/{mixed}").status_code == 403
    # A stored row moved to the other incident is no longer the link its token signs.
    row = store.kv_get(LINK_PREFIX + a[:12])
    store.kv_set(LINK_PREFIX + a[:12], {**row, "incident": second}, clock.now)
    assert client.get(f"/f/{a}").status_code == 403
    store.kv_set(LINK_PREFIX + a[:12], row, clock.now)
    assert client.get(f"/f/{a}").status_code == 200
    board.actions.incident_step(first, "restore", {}, "operator:x")
    board.actions.incident_step(first, "close", {"cause": "树线矛盾"}, "operator:x")
    clock.now += timedelta(hours=23)
    assert client.get(f"/f/{a}").status_code == 200  # within the grace after the close
    clock.now += timedelta(hours=2)
    assert client.get(f"/f/{a}").status_code == 403
    assert client.get(f"/f/{b}").status_code == 200  # the other incident is still open


def test_a_long_link_sent_before_short_links_still_opens_until_it_expires(
        field_board: Any) -> None:
    board, store, clock, _topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    village = next(iter(links_of(store, iid)))
    long = sign(board.field_desk.secret, Link(iid, village, f"village:{village}:wecom:g",
                                              clock.now))
    assert len(long) > 100 and client.get(f"/f/{long}").status_code == 200
    clock.now += timedelta(days=15)
    assert client.get(f"/f/{long}").status_code == 403


def test_photos_reach_signed_in_staff_and_a_liaisons_never_the_public_page(
        field_board: Any) -> None:
    import io

    from PIL import Image

    from outage_sentinel.board import access

    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    iid = board.actions.open_incident({"transformers": "T-CG01-002,T-CG01-003"}, "operator:x")
    board.actions.incident_step(iid, "dispatch", {"crew": "CR01"}, "operator:x")
    _crew, crew = crew_token(store, iid)
    village, liaison = next(iter(links_of(store, iid).items()))
    area = topology.village_transformers(village)[0]
    big = io.BytesIO()
    Image.new("RGB", (1200, 900), (200, 40, 40)).save(big, "JPEG")
    device = board.actions.core.processor.incident(iid).estimate.section[0]
    assert client.post(f"/c/{crew}/step", json={"step": "fault_found", "device": device,
                                                "cause": "树线矛盾"}).status_code == 200
    assert client.post(f"/c/{crew}/photo", content=big.getvalue()).status_code == 200
    elsewhere = next(t for t in topology.transformers if topology.nodes[t].village != village)
    assert client.post(f"/f/{liaison}/photo?area={elsewhere}",
                       content=big.getvalue()).status_code == 400
    r = client.post(f"/f/{liaison}/photo?area={area}", content=jpeg_with_gps())
    assert r.status_code == 200, r.text
    assert client.post(f"/f/{liaison}/photo", content=b"not an image").status_code == 400
    # The public progress page shows the crew's photo only.
    public = next(re.search(r"/p/(\S+)", m.body).group(1)  # type: ignore[union-attr]
                  for m in store.messages(incident_id=iid) if m.purpose.startswith("progress"))
    shown = re.findall(r'src="/p/[^/]+/([0-9a-f]{32}\.jpg)"', client.get(f"/p/{public}").text)
    logged = {e["actor"].split(":")[0]: e["details"]["file"] for e in store.incident_log(iid)
              if e["stage"] == "photo"}
    assert shown == [logged["crew"]]
    assert client.get(f"/p/{public}/{logged['liaison']}").status_code == 404
    # Staff: not signed in, nothing; signed in, both, with who, when, where, and thumbnails.
    photo_url = f"/api/incidents/{iid}/photos/{logged['liaison']}"
    assert client.get(photo_url, follow_redirects=False).status_code in (401, 303)
    store.add_user("viewer1", "viewer", access.hash_password("a long enough password"),
                   clock())
    client.post("/login", data=sign_in_form(client, "viewer1", "a long enough password"))
    photos = client.get(f"/api/incidents/{iid}").json()["photos"]
    assert [(p["name"], p["where"]) for p in photos] == [
        (logged["crew"], topology.nodes[device].name or device),
        (logged["liaison"], topology.nodes[area].name or area)]
    assert topology.villages[village].name in photos[1]["by"] and photos[0]["at"]
    full = client.get(photos[0]["url"])
    thumb = client.get(photos[0]["thumb"])
    assert full.headers["content-type"] == thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(full.content)).size == (1200, 900)
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 320
    assert client.get(f"/api/incidents/{iid}/photos/..%2f..%2fconfig.yaml").status_code == 404
    assert client.get(f"/api/incidents/INC-other/photos/{logged['crew']}").status_code == 404


def test_a_link_is_kept_with_its_message_and_forgotten_once_too_old(store: Store) -> None:
    from outage_sentinel.field_links import link_record
    from outage_sentinel.outgoing import OutboxMessage

    def queue(incident: str, at: datetime) -> str:
        record = link_record(b"k" * 32, incident, "V01", "village:V01:wecom:g")
        with store.transaction() as conn:
            store.enqueue_in(conn, [OutboxMessage(
                incident_id=incident, revision=1, recipient="village:V01:wecom:g",
                purpose="outage", channel="wecom", target="g", audience="liaison",
                subject="s", body="b", payload={"field_links": [record]})], at)
        return LINK_PREFIX + record["key"]

    old = queue("INC-1", T0)
    assert store.kv_get(old) == {"incident": "INC-1", "village": "V01",
                                 "recipient": "village:V01:wecom:g",
                                 "issued": T0.isoformat()}
    # Queued again soon after: not written again (no queue on the row); later, renewed.
    assert queue("INC-1", T0 + timedelta(minutes=10)) == old
    assert store.kv_get(old)["issued"] == T0.isoformat()
    queue("INC-1", T0 + timedelta(hours=2))
    assert store.kv_get(old)["issued"] == (T0 + timedelta(hours=2)).isoformat()
    new = queue("INC-2", T0 + timedelta(days=15))
    assert store.kv_get(old) is None and store.kv_get(new)["incident"] == "INC-2"


def test_power_back_on_a_liaisons_word_alone_is_told_as_their_word(field_board: Any) -> None:
    """A village told "restored" because its own liaison tapped 已来电 (no feed, meter or
    operator says so) hears whose word it is; one restored by the operator hears it plain."""
    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    processor = board.actions.core.processor
    iid = board.actions.open_incident({"transformers": "T-LH01-014"}, "operator:x")
    village, token = next(iter(links_of(store, iid).items()))
    areas = [t for t in processor.incident(iid).off if topology.nodes[t].village == village]
    clock.now += timedelta(minutes=20)
    for area in areas:
        assert client.post(f"/f/{token}/answer",
                           json={"area": area, "answer": "back"}).status_code == 200
    restored = [m for m in store.messages(incident_id=iid)
                if m.purpose == "restored" and m.audience == "liaison"]
    assert restored and all("据本村联络人反馈" in m.body for m in restored), \
        [m.body for m in restored]
    # The operator's own restoration of another incident is stated plainly.
    other = board.actions.open_incident({"transformers": "T-CG01-001"}, "operator:x")
    clock.now += timedelta(minutes=20)
    processor.operator_restore(other, "operator:x", None, None, "", now=clock.now)
    plain = [m for m in store.messages(incident_id=other)
             if m.purpose == "restored" and m.audience == "liaison"]
    assert plain and not any("联络人反馈" in m.body for m in plain)


def test_a_liaisons_already_back_confirms_an_area_counted_back_unconfirmed(
        field_board: Any) -> None:
    """One record names one area of V056; the localiser puts the fuse above it, and the
    village's other areas with it. The record ends: the village is asked about those, and its
    liaison's 已来电 confirms one on the incident that asked (no new incident, nothing told
    again)."""
    from outage_sentinel.events import OutageEvent, PollResult

    board, store, clock, topology = field_board
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    processor = board.actions.core.processor

    def record(status: str) -> None:
        store.ingest("feed", PollResult(events=[OutageEvent(
            source="feed", event_id="R1", kind="fault", status=status,  # type: ignore[arg-type]
            start=clock.now - timedelta(minutes=5), transformers=("T-LH01-014",),
            end=clock.now if status == "restored" else None)]), clock.now)
        processor.process(clock.now)

    record("active")
    iid = str(store.load_incidents(open_only=True)[0]["id"])
    inc = processor.incident(iid)
    unsure = [t for t in inc.estimate.transformers if inc.mark(t) != "reported"]
    assert len(unsure) >= 2 and {topology.nodes[t].village for t in unsure} == {"V056"}, \
        inc.estimate
    token = links_of(store, iid)["V056"]
    sent_all(store, iid, clock.now)
    clock.now += timedelta(minutes=40)
    record("restored")
    inc = processor.incident(iid)
    assert inc.status == "restored" and set(inc.unconfirmed) == set(unsure)
    asked = [m for m in store.messages(incident_id=iid)
             if m.purpose == "restored" and m.payload["village"] == "V056"]
    assert asked and all("恢复送电待确认" in m.body for m in asked)
    for m in asked:  # each with its link: in the text, or as the SMS template's variable
        params = m.payload["params"]
        assert ("/f/" in m.body) if m.channel != "sms" else (
            params["sms_template"] == "unconfirmed" and params["sms"]["link"])
    page = client.get(f"/f/{token}")
    assert page.status_code == 200 and page.text.count("是否来电待确认") == len(unsure)
    liaison_before = len([m for m in store.messages(incident_id=iid) if m.audience == "liaison"])
    clock.now += timedelta(minutes=5)
    r = client.post(f"/f/{token}/answer", json={"area": unsure[0], "answer": "back"})
    assert r.status_code == 200, r.text
    states = {a["id"]: a["state"] for a in r.json()["areas"]}
    assert states[unsure[0]] == "back" and states[unsure[1]] == "unconfirmed"
    inc = processor.incident(iid)
    assert unsure[0] not in inc.unconfirmed and set(inc.unconfirmed) == set(unsure[1:])
    assert len(store.load_incidents(open_only=False)) == 1
    assert len([m for m in store.messages(incident_id=iid)
                if m.audience == "liaison"]) == liaison_before
    # 仍停电 for the other: a new outage has it; the page (and the incident) stop asking.
    r = client.post(f"/f/{token}/answer", json={"area": unsure[1], "answer": "dark"})
    assert r.status_code == 200, r.text
    states = {a["id"]: a["state"] for a in r.json()["areas"]}
    assert states[unsure[1]] == "continued" and states[unsure[0]] == "back"
    (new,) = [row["id"] for row in store.load_incidents(open_only=True)]
    assert processor.incident(iid).continued.get(unsure[1]) == new
    page = client.get(f"/f/{token}")
    assert "仍停电，已转为新的停电记录" in page.text


def test_a_reply_still_dark_to_a_question_answers_only_the_areas_asked_about(
        field_board: Any) -> None:
    """The records ended; the SMS asked whether the village's inferred areas are back. "2"
    (still dark) is about those: the area whose record ended is not reported dark again."""
    from outage_sentinel.events import OutageEvent, PollResult

    board, store, clock, topology = field_board
    board.field_desk.sms_token = "hook-secret-123"
    client = TestClient(create_app(board), base_url="http://127.0.0.1")
    processor = board.actions.core.processor

    def record(status: str, start: datetime) -> None:
        store.ingest("feed", PollResult(events=[OutageEvent(
            source="feed", event_id="R2", kind="fault", status=status,  # type: ignore[arg-type]
            start=start, transformers=("T-LH01-014",),
            end=clock.now if status == "restored" else None)]), clock.now)
        processor.process(clock.now)

    start = clock.now
    record("active", start)
    iid = str(store.load_incidents(open_only=True)[0]["id"])
    clock.now += timedelta(minutes=40)
    record("restored", start)
    unsure = set(processor.incident(iid).unconfirmed)
    assert unsure and "T-LH01-014" not in unsure
    sent_all(store, iid, clock.now)
    asked = next(m for m in store.messages(incident_id=iid) if m.channel == "sms"
                 and m.purpose == "restored" and m.audience == "liaison")
    clock.now += timedelta(minutes=5)
    beijing = clock.now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    r = client.post("/hooks/sms/hook-secret-123", json=[{
        "phone_number": asked.target, "content": "2", "send_time": beijing,
        "sequence_id": 91, "sign_name": "供电公司", "dest_code": "1"}])
    assert r.json()["accepted"] == 1
    dark = {t for row in store.load_incidents(open_only=True)
            for t in processor.incident(row["id"]).confirmed}
    assert dark and dark <= unsure


# -- payloads of the wrong shape, and text the database cannot store ----------------------------


def dingtalk_post(client: TestClient, secret: str, body: object, at: datetime) -> Any:
    import base64
    import hashlib
    import hmac
    import json

    stamp = str(int(at.timestamp() * 1000))
    sign = base64.b64encode(hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(),
                                     hashlib.sha256).digest()).decode()
    return client.post("/hooks/dingtalk", content=json.dumps(body),
                       headers={"timestamp": stamp, "sign": sign})


@pytest.mark.parametrize(("body", "error"), [
    ({"text": "1", "msgId": "m1"}, "text: a JSON object with 'content' expected, got str"),
    ({"text": {"content": ["1"]}}, "text.content: text expected, got list"),
    ({"text": {"content": "1"}, "conversationTitle": "g\x00"}, "conversationTitle: contains"),
])
def test_a_dingtalk_callback_of_the_wrong_shape_is_refused_naming_the_key(
        field_board: Any, body: dict[str, Any], error: str) -> None:
    board, _store, clock, _topology = field_board
    board.field_desk.dingtalk_secret = "robot-test-key"
    client = TestClient(create_app(board), base_url="http://127.0.0.1",
                        raise_server_exceptions=False)
    r = dingtalk_post(client, "robot-test-key", body, clock.now)
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


@pytest.mark.parametrize(("event", "error"), [
    ({"message": {"chat_id": "oc_1", "content": "[\"1\"]"}},
     "event.message.content: a JSON object expected, got list"),
    ({"message": {"chat_id": "oc_1", "content": "{"}}, "event.message.content: not JSON"),
    ({"message": {"chat_id": "oc_1", "content": {"text": "1"}}},
     "event.message.content: JSON text expected, got dict"),
    ({"message": {"chat_id": "oc_1", "content": "{\"text\": [1]}"}},
     "event.message.content.text: text expected, got list"),
    ({"message": "hello"}, "event.message: a JSON object expected, got str"),
    ("hello", "event: a JSON object expected, got str"),
    ({"message": {"chat_id": "oc\u0000", "content": "{}"}}, "event.message.chat_id: contains"),
])
def test_a_feishu_event_of_the_wrong_shape_is_refused_naming_the_key(
        field_board: Any, event: Any, error: str) -> None:
    import json

    board, _store, clock, _topology = field_board
    board.field_desk.feishu_token = "ftok-123"
    board.field_desk.feishu_chats = {"oc_1": "group-v3"}
    client = TestClient(create_app(board), base_url="http://127.0.0.1",
                        raise_server_exceptions=False)
    header = {"token": "ftok-123", "event_id": "e1",
              "create_time": str(int(clock.now.timestamp() * 1000))}
    r = client.post("/hooks/feishu", content=json.dumps({"header": header, "event": event}))
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text
    no_message = {"header": header, "event": {"chat": {"id": "oc_1"}}}  # another kind of event
    assert client.post("/hooks/feishu", content=json.dumps(no_message)).json() == {
        "taken": False}


def test_field_text_the_database_cannot_store_is_refused_and_the_rest_taken(
        field_board: Any) -> None:
    import json

    from outage_sentinel.lifecycle import StepInputError

    board, store, clock, topology = field_board
    board.field_desk.sms_token = "hook-secret-123"
    client = TestClient(create_app(board), base_url="http://127.0.0.1",
                        raise_server_exceptions=False)
    area = topology.transformers[0]
    iid = board.actions.open_incident({"transformers": area}, "operator:x")
    village, token = next(iter(links_of(store, iid).items()))
    mine = topology.village_transformers(village)[0]
    r = client.post(f"/f/{token}/answer", content=json.dumps(
        {"area": mine, "answer": "dark", "note": "\ud83d"}))
    assert r.status_code == 400 and r.json()["error"].startswith("note: contains a character")
    assert store.answers(iid) == []
    reply = {"phone_number": "1380000\x000000", "content": "2", "sequence_id": 5,
             "send_time": clock.now.astimezone(ZoneInfo("Asia/Shanghai")).strftime(
                 "%Y-%m-%d %H:%M:%S")}
    r = client.post("/hooks/sms/hook-secret-123", content=json.dumps([reply]))
    assert r.status_code == 200 and r.json()["ignored"] == 1
    # the step itself refuses before the first write, whoever calls it
    revisions, queued = store.get_incident(iid)["revision"], len(store.messages())
    with pytest.raises(StepInputError, match="^caller: contains a character"):
        board.actions.open_incident({"transformers": area, "caller": "x\x00"}, "operator:x")
    with pytest.raises(StepInputError, match="^reason: contains a character"):
        board.actions.steps.cancel(iid, "\udcff", "operator:x")
    assert (store.get_incident(iid)["revision"], len(store.messages())) == (revisions, queued)
    assert len(store.load_incidents(open_only=False)) == 1
