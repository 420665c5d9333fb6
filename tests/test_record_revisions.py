"""How the core reads an outage-system record's revisions and endings, through the daemon's
processing: a record revised to name fewer areas no longer reports the dropped ones off
(their power is not said back either: they are asked about), and a record's explicit end
brings its areas back even though another open record's vague area text could cover them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outage_sentinel.board.field import answer_event
from outage_sentinel.daemon import Daemon
from outage_sentinel.reports import build_report
from tests.conftest import T0, build_grid
from tests.test_shared_areas import ev, feed, incident, make_daemon, told

H = timedelta(hours=1)


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, db_url, build_grid())
    yield d
    d.close()


def bodies(d: Daemon, village: str, purpose: str) -> list[str]:
    return [m.body for m in d.store.messages() if m.purpose == purpose
            and m.recipient.startswith(f"village:{village}:") and m.channel == "dingtalk"]


def summaries(d: Daemon) -> list[str]:
    return [m.body for m in d.store.messages() if m.audience == "command"
            and m.purpose == "summary"]


def record(*areas: str, **kw: object) -> dict[str, object]:
    return {"device": "R1", "expected_restoration": T0 + 2 * H, "cause": "重合器跳闸",
            **kw}


def test_a_fault_record_revised_to_fewer_areas_counts_the_dropped_ones_back_unconfirmed(
        daemon: Daemon) -> None:
    """P7 names T1, T2 (马集村 V1) and T3 (刘庄村 V2), then only T1 and T2 (the rest switched
    to another supply). T3 is no longer reported off: the summary counts 2 areas off, and
    刘庄村 is asked whether its power is back — never told 恢复送电 as fact, nor a
    restoration time of the record it left."""
    feed(daemon, 1, ev("P7", "T1", "T2", "T3", **record()))
    feed(daemon, 26, ev("P7", "T1", "T2", **record(cause="重合器跳闸，已转供部分负荷")))
    inc = incident(daemon, "fault")
    assert inc.status == "active"
    assert sorted(inc.off) == ["T1", "T2"]
    assert inc.unconfirmed == ("T3",)
    # T3 (the recloser's own section) counted back on no evidence is no sign the recloser
    # closed again: the fault point stays the device the record names.
    assert inc.estimate.devices == ("R1",)
    assert "当前停电2个台区70户" in summaries(daemon)[-1]
    (asked,) = bodies(daemon, "V2", "restored")
    assert "是否已来电尚未得到确认" in asked
    # The record's later revisions and its end are V1's news only.
    feed(daemon, 40, ev("P7", "T1", "T2", **record(expected_restoration=T0 + 3 * H)))
    feed(daemon, 60, ev("P7", "T1", "T2", **record(status="restored", end=T0 + 59 * timedelta(
        minutes=1), cause="已恢复")))
    inc = incident(daemon, "fault")
    assert inc.status == "restored" and inc.unconfirmed == ("T3",)
    v2 = [p for v, p, _ in told(daemon) if v == "V2"]
    assert v2 == ["outage", "restored"]
    assert len(bodies(daemon, "V2", "restored")) == 1
    assert not bodies(daemon, "V2", "update")
    assert [p for v, p, _ in told(daemon) if v == "V1"][-1] == "restored"


def test_an_area_dropped_from_one_record_stays_off_while_another_names_it(
        daemon: Daemon) -> None:
    """T3 is named by a second open record of the same outage: P7 dropping it says nothing
    of its power."""
    feed(daemon, 1, ev("P7", "T1", "T2", "T3", **record()))
    feed(daemon, 2, ev("P8", "T3", **record()))
    feed(daemon, 26, ev("P7", "T1", "T2", **record()))
    inc = incident(daemon, "fault")
    assert "T3" in inc.off and not inc.unconfirmed
    assert not bodies(daemon, "V2", "restored")


def test_an_area_named_again_is_off_again(daemon: Daemon) -> None:
    """A record that drops T3 and names it again at its next revision has it off again,
    reported (the liaison was asked about it, not told it is back)."""
    feed(daemon, 1, ev("P7", "T1", "T2", "T3", **record()))
    feed(daemon, 26, ev("P7", "T1", "T2", **record()))
    feed(daemon, 40, ev("P7", "T1", "T2", "T3", **record()))
    inc = incident(daemon, "fault")
    assert "T3" in inc.off and inc.mark("T3") == "reported" and not inc.unconfirmed


def test_an_explicit_end_outweighs_another_records_vague_area_text(daemon: Daemon) -> None:
    """B1 names T1, B2 names T2, both with the vague text 马集村部分区域 (each makes the
    other's area possibly off). B1's end brings T1 back at its end, whatever B2's text
    could cover; 马集村 is still off (T2)."""
    vague = {"device": "FU1", "area_text": "马集村部分区域", "cause": "熔断器熔断",
             "expected_restoration": T0 + 3 * H}
    feed(daemon, 1, ev("B1", "T1", **vague))
    feed(daemon, 2, ev("B2", "T2", **vague, start=T0 + timedelta(minutes=1)))
    inc = incident(daemon, "fault")
    assert sorted(inc.off) == ["T1", "T2"] and inc.mark("T1") == "reported"
    feed(daemon, 20, ev("B1", "T1", **vague, status="restored", end=T0 + 19 * timedelta(
        minutes=1)))
    inc = incident(daemon, "fault")
    assert inc.off == ("T2",)
    assert inc.restored["T1"] == T0 + 19 * timedelta(minutes=1)
    assert "当前停电1个台区30户" in summaries(daemon)[-1]
    assert "已报停电、不在故障点下游" not in summaries(daemon)[-1]
    assert not bodies(daemon, "V1", "restored")  # T2 is still off


def test_a_vague_record_begun_after_an_explicit_end_makes_the_area_possible_again(
        daemon: Daemon) -> None:
    """Vague text about an outage that began after B1 ended is news: T1 may be off again
    (possibly), not back."""
    feed(daemon, 1, ev("B1", "T1", "T2", device="FU1", expected_restoration=T0 + 3 * H))
    feed(daemon, 20, ev("B1", "T1", device="FU1", status="restored",
                        end=T0 + 19 * timedelta(minutes=1)),
         ev("B3", "T2", device="FU1", area_text="马集村部分区域",
            start=T0 + 20 * timedelta(minutes=1)))
    inc = incident(daemon, "fault")
    assert "T1" in inc.off and inc.mark("T1") != "inferred"


def test_the_report_counts_a_dropped_area_off_until_the_record_left_it(daemon: Daemon) -> None:
    """Reliability figures: T3 is off from the record's start until the edit that dropped it
    (26 min), not until the record ended, nor until the liaison confirmed it after the end."""
    feed(daemon, 1, ev("P7", "T1", "T2", "T3", **record()))
    feed(daemon, 26, ev("P7", "T1", "T2", **record()))
    feed(daemon, 60, ev("P7", "T1", "T2", **record(status="restored", end=T0 + 59 * timedelta(
        minutes=1))))
    inc = incident(daemon, "fault")
    feed(daemon, 90, answer_event("link-1", inc, "T3", "back", inc.revision,
                                  T0 + 90 * timedelta(minutes=1)))
    assert not incident(daemon, "fault").unconfirmed
    now = T0 + 2 * H
    report = build_report(daemon.store, daemon.topology, T0 - H, T0 + 3 * H,
                          ZoneInfo("Asia/Shanghai"), now)
    areas = report.areas.set_index("transformer")
    assert areas.loc["T3", "hours"] == pytest.approx(26 / 60)
    assert areas.loc["T1", "hours"] == pytest.approx(59 / 60)
