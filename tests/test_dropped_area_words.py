"""What people read of an area an outage-system record dropped while it stays open (a
transfer round the fault, a record put right): the area is counted back unconfirmed
(:func:`~outage_sentinel.incidents.dropped_areas`), but the record did not end.

- The village's 【恢复送电待确认】 said the records "已于…全部结束" and the area was "可能受影响",
  "不在已结束的停电记录中": false — the record is open, and the area had been confirmed off. It
  now says the record no longer includes the area since the edit, that it may be supplied
  from another line now, and asks.
- The command centre's summary listed it under 停电记录已结束、恢复送电未经确认 while the
  record was open: it is now 已移出停电记录（疑似转供）.
- The SMS ``unconfirmed`` template's ``ended`` is the time of that edit (when the area left
  the record), not a record's end.

Through the daemon's real processing (SQLite, hand-made grid: P7 names T1, T2 of 马集村 V1
and T3 of 刘庄村 V2, then only T1 and T2), in both languages.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import dropped_areas
from tests.conftest import T0, build_grid
from tests.test_shared_areas import ev, feed, incident, make_daemon

H = timedelta(hours=1)
EDIT = 26  # minutes after T0: the revision that drops T3


def make(tmp_path: Path, db_url: str, language: str) -> Daemon:
    return make_daemon(tmp_path, db_url, build_grid(), notify={"language": language})


@pytest.fixture(params=["zh", "en"])
def dropped(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    """P7 names T1, T2, T3, then (at EDIT) only T1 and T2; still open."""
    d = make(tmp_path, db_url, request.param)
    record = {"device": "R1", "expected_restoration": T0 + 2 * H, "cause": "重合器跳闸"}
    feed(d, 1, ev("P7", "T1", "T2", "T3", **record))
    feed(d, EDIT, ev("P7", "T1", "T2", **record))
    inc = incident(d, "fault")
    assert inc.status == "active" and dropped_areas(inc) == ("T3",)
    yield d
    d.close()


def language(d: Daemon) -> str:
    return d.config.notify.language


def asked(d: Daemon, channel: str = "dingtalk") -> list[dict[str, object]]:
    return [{"body": m.body, "params": m.payload.get("params", {})}
            for m in d.store.messages() if m.purpose == "restored" and m.channel == channel
            and m.recipient.startswith("village:V2:")]


def last_summary(d: Daemon) -> str:
    return [m.body for m in d.store.messages() if m.audience == "command"
            and m.purpose == "summary"][-1]


def test_the_village_hears_its_area_left_the_open_record_not_that_records_ended(
        dropped: Daemon) -> None:
    (notice,) = asked(dropped)
    body = str(notice["body"])
    if language(dropped) == "zh":
        assert body.startswith("【恢复送电待确认】刘庄村"), body
        assert "的停电记录已于2026-03-01 08:26不再包括本村台区T3（50户）" in body, body
        assert "可能已转由其他线路供电" in body and "是否已来电尚未得到确认" in body, body
        for false in ("全部结束", "已结束的停电记录", "可能受影响"):
            assert false not in body, (false, body)
    else:
        assert body.startswith("[Restoration to confirm] 刘庄村"), body
        assert "no longer includes 台区T3 (50 households) in this village" in body, body
        assert "since 2026-03-01 08:26" in body, body
        assert "another line" in body and "not confirmed" in body, body
        for false in ("all ended", "possibly affected", "no record that ended"):
            assert false not in body, (false, body)


def test_the_sms_asks_with_the_time_the_area_left_the_record(dropped: Daemon) -> None:
    """The SMS template's parameters (carried with every liaison row; 刘庄村's liaison is on
    DingTalk): ``ended`` is when T3 left the record, which the suggested text states as
    自…起已不在停电记录中 (docs/channels.md)."""
    (notice,) = asked(dropped)
    params = notice["params"]
    assert isinstance(params, dict) and params["sms_template"] == "unconfirmed"
    sms = params["sms"]
    assert sms["ended"] == "2026-03-01 08:26" and sms["areas"] == "台区T3", sms
    assert sms["households"] == "50"


def test_the_summary_says_dropped_from_the_record_not_records_ended(dropped: Daemon) -> None:
    body = last_summary(dropped)
    if language(dropped) == "zh":
        (line,) = [x for x in body.splitlines() if "台区T3" in x]
        assert line.startswith("已移出停电记录（疑似转供），恢复送电未经确认（已请联络人确认；"
                               "确认后请记录恢复）："), line
        assert "停电记录已结束" not in body, body
    else:
        (line,) = [x for x in body.splitlines() if "台区T3" in x]
        assert line.startswith("Dropped from the outage record (likely switched to another "
                               "supply), restoration not confirmed"), line
        assert "Records ended" not in body, body


def test_once_the_record_ends_an_area_back_unasked_is_still_listed_as_records_ended(
        dropped: Daemon) -> None:
    """The record's end at 60 min: T3 is still the dropped one (asked at the edit); an area
    only inferred off and never named would be listed as 停电记录已结束 (guarded here: the
    dropped area does not move there)."""
    feed(dropped, 60, ev("P7", "T1", "T2", device="R1", status="restored",
                         end=T0 + 59 * timedelta(minutes=1)))
    inc = incident(dropped, "fault")
    assert inc.status == "restored" and inc.unconfirmed == ("T3",)
    body = last_summary(dropped)
    (line,) = [x for x in body.splitlines() if "台区T3" in x]
    assert ("已移出停电记录" in line) if language(dropped) == "zh" else ("Dropped from" in line)
