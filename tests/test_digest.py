"""Digests: every pending message covered once, worst first, within the byte limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outage_sentinel.channels.base import Message
from outage_sentinel.digest import build_digest, entries_from_messages
from outage_sentinel.textlimits import utf8_len


def msg(key: str, incident: str, **params: object) -> Message:
    return Message(key=key, channel="wecom", target="g1", text=f"通知 {key}\n详情",
                   incident_id=incident, params=params, mentions=("13800000001",))


def test_worst_first_and_totals() -> None:
    msgs = [
        msg("a", "I1", kind="planned", feeder="10kV 东线", villages={"东村": 30}),
        msg("b", "I2", kind="fault", feeder="10kV 城关线", villages={"张家村": 120, "李家村": 80}),
        msg("c", "I3", kind="fault", feeder="10kV 北线", villages=["王庄"], households=10),
    ]
    (part,) = build_digest(msgs, limit_bytes=2048)
    lines = part.message.text.splitlines()
    assert lines[0] == "停电汇总：3起事件，3条线路，4个村，240户"
    assert lines[1].startswith("【故障停电】10kV 城关线：张家村(120户)、李家村(80户)")
    assert lines[2].startswith("【故障停电】10kV 北线：王庄")
    assert lines[3].startswith("【计划停电】")
    assert set(part.covers) == {"a", "b", "c"}
    assert part.message.mentions == ("13800000001",)
    assert part.message.purpose == "digest"


def test_messages_of_one_incident_merge_and_restoration_sorts_last() -> None:
    msgs = [
        msg("r1", "I1", kind="fault", feeder="F1", villages={"甲村": 50}),
        msg("r2", "I1", kind="fault", feeder="F1", villages={"甲村": 50, "乙村": 20},
            status="restored"),
        msg("x", "I2", kind="planned", feeder="F2", villages={"丙村": 5}),
    ]
    entries = entries_from_messages(msgs)
    assert [e.incident_id for e in entries] == ["I2", "I1"]
    assert entries[1].status == "restored" and set(entries[1].restored) == {"甲村", "乙村"}
    (part,) = build_digest(msgs, limit_bytes=2048, language="en")
    assert "[Restored] F1: 甲村(50 households), 乙村(20 households)" in part.message.text
    assert "[Restored] F1" in part.message.text


def test_message_without_params_is_quoted() -> None:
    m = Message(key="k", channel="wecom", target="g", text="张家村 10 点停电\n第二行")
    (part,) = build_digest([m], limit_bytes=500)
    assert "张家村 10 点停电" in part.message.text and part.covers == ("k",)


def test_digest_key_is_stable() -> None:
    msgs = [msg(str(i), f"I{i}", feeder="F", village=f"村{i}") for i in range(5)]
    a = build_digest(msgs, limit_bytes=2048)
    b = build_digest(list(reversed(msgs)), limit_bytes=2048)
    assert a[0].message.key == b[0].message.key


@given(st.integers(1, 120), st.sampled_from([600, 2048, 4096]))
def test_every_message_covered_exactly_once_within_limit(n: int, limit: int) -> None:
    msgs = [msg(f"k{i}", f"I{i % 37}", kind=("fault", "planned")[i % 2], feeder=f"F{i % 7}",
                villages={f"第{i}村": i}) for i in range(n)]
    parts = build_digest(msgs, limit_bytes=limit)
    covered = [k for p in parts for k in p.covers]
    assert sorted(covered) == sorted(m.key for m in msgs)
    villages = {f"第{i}村" for i in range(n)}
    text = "\n".join(p.message.text for p in parts)
    assert all(v in text for v in villages)
    assert all(utf8_len(p.message.text) <= limit for p in parts)
    if len(parts) > 1:
        assert parts[0].message.text.splitlines()[0].endswith(f"（第1/{len(parts)}部分）")


def test_liaison_rows_one_per_village_sum_households_and_track_restoration() -> None:
    def liaison(key: str, village: str, hh: int, purpose: str = "outage") -> Message:
        return Message(key=key, channel="wecom", target="g", text=f"{village} 通知",
                       incident_id="INC-7", purpose=purpose,
                       params={"village": village, "feeder": "10kV 马集线", "households": hh})

    msgs = [liaison("a", "马集村", 120), liaison("b", "后庄", 40), liaison("c", "前庄", 15),
            liaison("d", "前庄", 15, purpose="restored")]
    (e,) = entries_from_messages(msgs)
    assert e.villages == {"马集村": 120, "后庄": 40} and e.restored == {"前庄": 15}
    assert e.households == 160 and e.status == "active"
    (part,) = build_digest(msgs, limit_bytes=2048)
    assert part.message.text.splitlines()[1] == (
        "【停电】10kV 马集线：马集村(120户)、后庄(40户)、共160户；已恢复送电：前庄(15户)；INC-7")
    assert part.message.text.splitlines()[0] == "停电汇总：1起事件，1条线路，2个村，160户"


def test_a_corrected_village_is_not_listed_as_off_and_a_care_call_changes_nothing() -> None:
    def liaison(key: str, village: str, hh: int, purpose: str = "outage") -> Message:
        return Message(key=key, channel="wecom", target="g", text=f"{village} 通知",
                       incident_id="INC-8", purpose=purpose,
                       params={"village": village, "feeder": "马集I线", "households": hh})

    msgs = [liaison("a", "王楼村", 60), liaison("b", "马集村", 70),
            liaison("c", "王楼村", 60, purpose="corrected"),
            liaison("d", "马集村", 70, purpose="restored"),
            liaison("e", "马集村", 70, purpose="care")]
    (e,) = entries_from_messages(msgs)
    assert e.villages == {} and e.restored == {"马集村": 70} and e.corrected == {"王楼村": 60}
    assert e.status == "restored"
    (part,) = build_digest(msgs[:3], limit_bytes=2048)
    assert part.message.text.splitlines()[1] == "【停电】马集I线：马集村(70户)、共70户；INC-8"
    (only,) = build_digest([msgs[0], msgs[2]], limit_bytes=2048)
    assert only.message.text.splitlines()[1] == "【更正：不涉及】马集I线：王楼村(60户)；INC-8"
    assert set(only.covers) == {"a", "c"}


def test_a_village_whose_restoration_nobody_confirmed_is_not_listed_as_back() -> None:
    """Liaison notices, one per village: 甲村's areas came back on a record's word, 乙村's
    only inferred area was counted back at the end with nothing saying so."""
    msgs = [
        Message(key=k, channel="wecom", target="g1", text=f"【{head}】\n…", incident_id="I1",
                purpose=purpose, params={"kind": "fault", "feeder": "F1", "village": v,
                                         "households": hh, **extra})
        for k, head, purpose, v, hh, extra in (
            ("o1", "故障停电通知", "outage", "甲村", 50, {}),
            ("o2", "故障停电通知", "outage", "乙村", 20, {}),
            ("b1", "恢复送电", "restored", "甲村", 50, {}),
            ("b2", "恢复送电待确认", "restored", "乙村", 20, {"status": "unconfirmed"}))]
    (entry,) = entries_from_messages(msgs)
    assert entry.restored == {"甲村": 50} and entry.unconfirmed == {"乙村": 20}
    assert entry.villages == {} and entry.status == "unconfirmed"
    (part,) = build_digest(msgs, limit_bytes=2048)
    line = part.message.text.splitlines()[1]
    assert line.startswith("【恢复待确认】F1：乙村(20户)；已恢复送电：甲村(50户)"), line
    (only_back,) = build_digest(msgs[:3], limit_bytes=2048)
    assert "恢复待确认" not in only_back.message.text
