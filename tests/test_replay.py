"""The replay source: a scenario played on a timeline, resumable from its cursor."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outage_sentinel.events import PollResult
from outage_sentinel.sources.base import Source, SourceError
from outage_sentinel.sources.replay import ReplaySource
from tests.conftest import REPO, T0


def line(at: float | None, event_id: str, **kw: Any) -> str:
    rec: dict[str, Any] = {"event_id": event_id, "kind": "fault", "status": "active",
                           "feeder": "F1", "transformers": ["T1"], **kw}
    if at is not None:
        rec["at"] = at
    return json.dumps(rec, ensure_ascii=False)


def scenario(tmp_path: Path, *lines: str, name: str = "scen.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def ids(result: PollResult) -> list[str]:
    return [e.event_id for e in result.events]


def poll_ack(src: ReplaySource, seconds: float) -> PollResult:
    result = src.poll(T0 + timedelta(seconds=seconds))
    src.acknowledge(result)
    return result


@pytest.fixture
def three(tmp_path: Path) -> Path:
    return scenario(tmp_path,
                    line(0, "A", start_offset=-60, etr_offset=3600),
                    line(20, "B"),
                    line(40, "A", status="restored", start_offset=-60, end_offset=40))


def test_is_a_source() -> None:
    assert isinstance(ReplaySource("r", Path("x")), Source)


def test_timeline_plays_lines_when_due(three: Path) -> None:
    src = ReplaySource("demo", three)
    src.start(None)
    first = poll_ack(src, 0)
    assert ids(first) == ["A"]
    assert poll_ack(src, 19.9).events == []
    assert poll_ack(src, 19.9).not_modified
    assert ids(poll_ack(src, 25)) == ["B"]
    last = poll_ack(src, 100)
    assert ids(last) == ["A"] and last.events[0].status == "restored"
    assert poll_ack(src, 1000).events == []  # no loop: the scenario is over


def test_offsets_are_relative_to_the_replay_start(three: Path) -> None:
    src = ReplaySource("demo", three)
    src.start(None)
    (a,) = poll_ack(src, 0).events
    assert a.source == "demo"
    assert a.start == T0 - timedelta(seconds=60)
    assert a.expected_restoration == T0 + timedelta(hours=1)
    assert a.end is None
    assert a.transformers == ("T1",) and a.feeder == "F1"
    assert a.raw["at"] == 0
    restored = poll_ack(src, 100).events[-1]
    assert restored.end == T0 + timedelta(seconds=40)
    assert restored.revision != a.revision  # a later line of the same record is a new revision


def test_absolute_times_and_defaults(tmp_path: Path) -> None:
    p = scenario(tmp_path, line(0, "P", kind="planned", start="2026-03-02 08:00:00+08:00",
                                expected_restoration="2026-03-02T18:00:00Z",
                                transformers="T1、T2", area_text="东街", cause="检修"),
                 line(0, "N", start_offset=None, signal="call"))
    src = ReplaySource("r", p)
    p_ev, n_ev = poll_ack(src, 0).events
    assert p_ev.start == T0 + timedelta(days=1)  # 08:00+08:00 is 00:00 UTC
    assert p_ev.expected_restoration == T0 + timedelta(days=1, hours=18)
    assert p_ev.transformers == ("T1", "T2")
    assert (p_ev.kind, p_ev.area_text, p_ev.cause) == ("planned", "东街", "检修")
    assert n_ev.start == T0  # no start: the replay start
    assert n_ev.signal == "call"


def test_speed_compresses_the_timeline(three: Path) -> None:
    src = ReplaySource("demo", three, speed=4.0)
    assert ids(poll_ack(src, 0)) == ["A"]
    assert ids(poll_ack(src, 5)) == ["B"]  # 5 s x 4 = 20 s of scenario
    assert ids(poll_ack(src, 10)) == ["A"]
    # Offsets are scenario seconds from the start: speed changes when, not what.
    src2 = ReplaySource("demo", three, speed=4.0)
    assert src2.poll(T0).events[0].expected_restoration == T0 + timedelta(hours=1)


def test_nothing_is_lost_until_acknowledged(three: Path) -> None:
    src = ReplaySource("demo", three)
    unacked = src.poll(T0)
    assert ids(unacked) == ["A"]
    # The store did not commit (no acknowledge): the next poll offers the same line again.
    again = src.poll(T0 + timedelta(seconds=25))
    assert ids(again) == ["A", "B"]
    assert again.events[0] == unacked.events[0]
    assert again.events[0].revision == unacked.events[0].revision
    src.acknowledge(again)
    assert src.poll(T0 + timedelta(seconds=30)).events == []


def test_cursor_resume_continues_without_re_emission(three: Path) -> None:
    first = ReplaySource("demo", three)
    first.start(None)
    assert ids(poll_ack(first, 0)) == ["A"]
    r = poll_ack(first, 25)
    assert ids(r) == ["B"]
    cursor = json.loads(json.dumps(r.cursor))  # as the store keeps it
    assert cursor["emitted"] == 2

    # The daemon restarts 50 s after the original start, with the persisted cursor.
    second = ReplaySource("demo", three)
    second.start(cursor)
    resumed = poll_ack(second, 50)
    assert ids(resumed) == ["A"] and resumed.events[0].status == "restored"
    # Times stay on the original timeline, not the restart's.
    assert resumed.events[0].end == T0 + timedelta(seconds=40)
    assert resumed.events[0].start == T0 - timedelta(seconds=60)
    assert poll_ack(second, 500).events == []


def test_same_line_replayed_gives_the_same_revision(three: Path) -> None:
    """A re-emission after a crash (same anchor) dedupes in the store: same id and revision."""
    a = ReplaySource("demo", three).poll(T0).events[0]
    b = ReplaySource("demo", three)
    b.start({"anchor": T0.isoformat(), "emitted": 0, "round": 0})
    assert b.poll(T0 + timedelta(seconds=5)).events[0] == a


def test_bad_lines_are_quarantined_with_their_line_number(tmp_path: Path) -> None:
    p = scenario(tmp_path,
                 "# a comment",                                   # line 1
                 line(0, "A"),                                    # line 2
                 "",                                              # line 3
                 '{"at": 0, "event_id": "B", "kind": "fault"',    # line 4: truncated JSON
                 line(0, "C", kind="earthquake"),                 # line 5: bad kind
                 json.dumps({"at": 0, "kind": "fault", "status": "active"}),  # 6: no event_id
                 line(0, "D", start_offset="soon"),               # line 7: bad offset
                 "[1, 2]",                                        # line 8: not an object
                 line(0, "E"))                                    # line 9
    src = ReplaySource("demo", p)
    result = poll_ack(src, 0)
    assert ids(result) == ["A", "E"]
    reasons = [q.reason for q in result.quarantined]
    assert len(reasons) == 5
    assert reasons[0].startswith("scen.jsonl:4: not valid JSON")
    assert reasons[1].startswith("scen.jsonl:5: kind")
    assert reasons[2] == "scen.jsonl:6: event_id: required"
    assert reasons[3].startswith("scen.jsonl:7: start_offset: expected seconds")
    assert reasons[4].startswith("scen.jsonl:8: expected a JSON object")
    assert all(q.source == "demo" for q in result.quarantined)
    assert result.quarantined[0].raw == '{"at": 0, "event_id": "B", "kind": "fault"'
    assert not result.not_modified
    assert poll_ack(src, 20).quarantined == []  # quarantined once, not on every poll


def test_loop_starts_the_timeline_again_with_fresh_ids(three: Path) -> None:
    src = ReplaySource("demo", three, loop=True)
    assert ids(poll_ack(src, 0)) == ["A"]
    assert ids(poll_ack(src, 40)) == ["B", "A"]
    assert poll_ack(src, 40.5).events == []  # the round lasts until last line + 1 s
    r = poll_ack(src, 41)
    assert ids(r) == ["A#r1"]  # round 1: new ids, so the store doesn't drop them as duplicates
    assert r.events[0].start == T0 + timedelta(seconds=41 - 60)
    assert r.cursor == {"anchor": (T0 + timedelta(seconds=41)).isoformat(), "emitted": 1,
                        "round": 1}
    assert ids(poll_ack(src, 41 + 25)) == ["B#r1"]


def test_loop_catches_up_several_rounds_in_one_poll(three: Path) -> None:
    src = ReplaySource("demo", three, loop=True)
    assert ids(poll_ack(src, 0)) == ["A"]
    r = poll_ack(src, 41 * 2 + 5)
    assert ids(r) == ["B", "A", "A#r1", "B#r1", "A#r1", "A#r2"]
    assert r.cursor is not None and r.cursor["round"] == 2


def test_missing_scenario_is_a_source_error(tmp_path: Path) -> None:
    src = ReplaySource("demo", tmp_path / "gone.jsonl")
    with pytest.raises(SourceError, match="gone.jsonl"):
        src.poll(T0)


def test_the_demo_scenario_plays_cleanly() -> None:
    src = ReplaySource("demo-feed", REPO / "fixtures" / "scenarios" / "demo.jsonl")
    result = src.poll(T0 + timedelta(days=30))
    assert result.events and result.quarantined == []


@pytest.mark.parametrize("bad", ["Infinity", "-Infinity", "NaN", "1e300", '"20"', "true"])
def test_a_line_due_at_no_real_time_is_quarantined_and_the_rest_plays(
        tmp_path: Path, bad: str) -> None:
    p = scenario(tmp_path, line(0, "A"), line(0, "B").replace('"at": 0', f'"at": {bad}'),
                 line(1, "C"), line(2, "D"))
    src = ReplaySource("demo", p)
    first = poll_ack(src, 0)
    assert ids(first) == ["A"]
    assert [q.reason.split(" (")[0] for q in first.quarantined] == [
        "scen.jsonl:2: at: expected seconds"]
    assert ids(poll_ack(src, 10)) == ["C", "D"]  # the timeline goes on


@pytest.mark.parametrize("key", ["start_offset", "etr_offset", "end_offset"])
def test_an_offset_at_no_real_time_is_quarantined(tmp_path: Path, key: str) -> None:
    p = scenario(tmp_path, line(0, "A", **{key: 1e300}),
                 line(0, "B").replace('"at": 0', f'"at": 0, "{key}": Infinity'), line(0, "C"))
    result = poll_ack(ReplaySource("demo", p), 0)
    assert ids(result) == ["C"]
    assert [q.reason.split(":")[1:3] for q in result.quarantined] == [
        ["1", f" {key}"], ["2", f" {key}"]]
