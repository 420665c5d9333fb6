"""Reports: customer-hours, AIHC-1 and RS-1 against a hand calculation; CSV/XLSX/HTML open.

The scenario runs on the shared two-feeder grid (conftest)::

    customers  T1 40  T2 30  T3 50 (F1)   T4 20  T5 60 (F1)   T6 35  T7 45 (F2)   total 280
    villages   V1 = T1+T2 = 70   V2 = T3+T4 = 70   V3 = T5 = 60   V4 = T6+T7 = 80
    feeders    F1 = T1..T5 = 200                   F2 = T6+T7 = 80

Report period: local day 2026-03-02 (Asia/Shanghai), ``now`` = 2026-03-03 09:00.

====  =========  =======================================================  ==================
inc   kind       what happens (local times)                               customer-hours
====  =========  =======================================================  ==================
A     fault      T1,T2,T3 off 08:00; T3 back 10:00, T1+T2 back 11:30      50×2 + 70×3.5 = 345
                 (estimate shrank to T1,T2 after the first step)
B     planned    T6,T7 off 09:00–12:00                                    80×3          = 240
C     planned    T4,T5 from 14:00, cancelled at 09:30 (never started)     0
D     fault      T5 off 03-01 22:00 – 03-02 01:30 (crosses the start)     60×1.5        = 90
E     fault      T6 off 23:00, still active at now (crosses the end)      35×1          = 35
F     planned    T4 on 03-05 (future, outside the day)                    not listed
G     fault      T7 03-01 10:00–12:00 (before the day)                    not listed
====  =========  =======================================================  ==================

Whole area: CH = 345 + 240 + 90 + 35 = 710; AIHC-1 = 710 / 280 = 2.5357 h;
RS-1 = (1 − 2.5357 / 24) × 100 = 89.4345 %. Fault 470, planned 240.
F1: A 345 + D 90 = 435 / 200 = 2.175 h, RS-1 90.9375 %. F2: B 240 + E 35 = 275 / 80 = 3.4375 h.
V1 245/70 = 3.5; V2 100/70; V3 90/60 = 1.5; V4 275/80.
Notice latency (minutes): A 4, B 1, D 2, E 10 → median 3, p90 8.2. Crew arrivals: A met,
D missed (no arrival, restored after its deadline), E met. Dead letters in the day (given up
on in it, whenever created): 2, D's (created the evening before) and B's.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import yaml

from outage_sentinel.cli import report as report_cli
from outage_sentinel.events import OutageEvent, PollResult
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.report_view import chart_pngs, render_html, write_report
from outage_sentinel.reports import (
    Report,
    build_report,
    daily_report_message,
    day_period,
    last_full_week,
    range_period,
    week_period,
    yesterday,
)
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology, load_bundle
from tests.conftest import build_grid

TZ = ZoneInfo("Asia/Shanghai")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def L(day: int, hour: int, minute: int = 0) -> datetime:  # noqa: N802 (reads like a clock)
    """A local (Asia/Shanghai) time in March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=TZ)


NOW = L(3, 9)
DAY_START, DAY_END = L(2, 0), L(3, 0)


# -- scenario -----------------------------------------------------------------------------------


def _incident(store: Store, conn: Any, iid: str, *, feeder: str, kind: str, status: str,
              start: datetime, end: datetime | None, transformers: list[str], customers: int,
              updated: datetime, **extra: Any) -> None:
    store.save_incident_in(conn, {
        "id": iid, "feeder": feeder, "kind": kind, "status": status, "revision": 1,
        "start": start, "etr": None, "end_time": end, "fault_device": None,
        "customers": customers, "created_at": start, "updated_at": updated,
        "state": {"id": iid, "estimate": {"transformers": transformers, "customers": customers,
                                          "villages": []}},
        **extra,
    })


def _evidence(store: Store, iid: str, received: list[datetime], kind: str = "fault") -> None:
    """Events of the incident, received at the given times (first = first evidence)."""
    for n, at in enumerate(received):
        ev = OutageEvent(source="s95598", event_id=f"{iid}-{n}", kind=kind,  # type: ignore[arg-type]
                         status="active", start=at, transformers=("T1",), revision="1")
        store.ingest("s95598", PollResult(events=[ev]), at)
    rows = {s.event.event_id: s.row_id for s in store.events(limit=100000)}
    with store.transaction() as conn:
        for n in range(len(received)):
            store.mark_processed_in(conn, rows[f"{iid}-{n}"], iid)


def _message(store: Store, iid: str, recipient: str, audience: str, created: datetime,
             outcome: str, at: datetime) -> None:
    with store.transaction() as conn:
        store.enqueue_in(conn, [OutboxMessage(
            incident_id=iid, revision=1, recipient=recipient, purpose="outage",
            channel="wecom", target="group", audience=audience,  # type: ignore[arg-type]
            subject="", body="停电通知", payload={},
        )], created)
    row = next(m for m in store.messages(incident_id=iid) if m.recipient == recipient)
    if outcome == "sent":
        store.mark_sent(row.id, at)
    elif outcome == "dead":
        store.mark_dead(row.id, at, "HTTP 500 five times")


def populate(store: Store) -> None:
    """The scenario of the module docstring."""
    with store.transaction() as c:
        # A: fault with two restoration steps; the estimate shrank to what is still off.
        _incident(store, c, "A", feeder="F1", kind="fault", status="restored", start=L(2, 8),
                  end=L(2, 11, 30), transformers=["T1", "T2"], customers=70,
                  updated=L(2, 12), stage="closed", crew_id="CR1", cause_category="外力破坏",
                  closed_at=L(2, 12))
        store.log_in(c, "A", L(2, 8, 3), "confirmed", "daemon")
        store.log_in(c, "A", L(2, 8, 10), "dispatched", "daemon",
                     details={"crew": "CR1", "deadline": L(2, 9, 40).isoformat(),
                              "area_type": "rural"})
        store.log_in(c, "A", L(2, 9, 10), "on_site", "operator:wang")
        store.log_in(c, "A", L(2, 10), "partially_restored", "operator:wang",
                     details={"transformers": ["T3"], "customers": 50})
        store.log_in(c, "A", L(2, 11, 30), "restored", "operator:wang",
                     details={"transformers": ["T1", "T2"], "customers": 70})
        store.log_in(c, "A", L(2, 12), "closed", "operator:wang", details={"cause": "外力破坏"})
        # B: planned work on F2, announced the day before.
        _incident(store, c, "B", feeder="F2", kind="planned", status="restored", start=L(2, 9),
                  end=L(2, 12), transformers=["T6", "T7"], customers=80, updated=L(2, 12))
        # C: planned, cancelled before it started (end_time = the announced stop time).
        _incident(store, c, "C", feeder="F1", kind="planned", status="cancelled",
                  start=L(2, 14), end=L(2, 18), transformers=["T4", "T5"], customers=80,
                  updated=L(2, 9, 30))
        store.log_in(c, "C", L(2, 9, 30), "cancelled", "source:s95598")
        # D: fault crossing the start of the day; crew never reported arriving.
        _incident(store, c, "D", feeder="F1", kind="fault", status="restored", start=L(1, 22),
                  end=L(2, 1, 30), transformers=["T5"], customers=60, updated=L(2, 1, 30))
        store.log_in(c, "D", L(1, 22, 5), "dispatched", "daemon",
                     details={"crew": "CR1", "deadline": L(2, 0, 5).isoformat(),
                              "area_type": "remote"})
        # E: fault crossing the end of the day, still active at NOW.
        _incident(store, c, "E", feeder="F2", kind="fault", status="active", start=L(2, 23),
                  end=None, transformers=["T6"], customers=35, updated=L(2, 23, 5))
        store.log_in(c, "E", L(2, 23, 5), "dispatched", "daemon",
                     details={"crew": "CR2", "deadline": L(2, 23, 50).isoformat(),
                              "area_type": "urban"})
        store.log_in(c, "E", L(2, 23, 40), "on_site", "operator:li")
        # F: planned for later; G: over before the day.
        _incident(store, c, "F", feeder="F1", kind="planned", status="active", start=L(5, 8),
                  end=None, transformers=["T4"], customers=20, updated=L(2, 10))
        _incident(store, c, "G", feeder="F2", kind="fault", status="restored", start=L(1, 10),
                  end=L(1, 12), transformers=["T7"], customers=45, updated=L(1, 12))
    _evidence(store, "A", [L(2, 8, 2), L(2, 8, 5)])
    _evidence(store, "B", [L(1, 10)], kind="planned")
    _evidence(store, "D", [L(1, 22, 1)])
    _evidence(store, "E", [L(2, 23, 1)])
    _message(store, "A", "cmd", "command", L(2, 8, 2), "sent", L(2, 8, 3))  # not a liaison
    _message(store, "A", "liaison:V1", "liaison", L(2, 8, 5), "sent", L(2, 8, 6))
    _message(store, "A", "liaison:V2", "liaison", L(2, 8, 5), "sent", L(2, 8, 30))
    _message(store, "B", "liaison:V4", "liaison", L(1, 10), "sent", L(1, 10, 1))
    _message(store, "B", "liaison:V4b", "liaison", L(2, 9), "dead", L(2, 9, 10))
    _message(store, "D", "liaison:V3", "liaison", L(1, 22, 2), "sent", L(1, 22, 3))
    _message(store, "E", "liaison:V4", "liaison", L(2, 23, 2), "sent", L(2, 23, 11))
    _message(store, "G", "liaison:V4", "liaison", L(1, 10), "dead", L(1, 10, 30))  # 03-01
    # Retried across midnight: created the day before, given up on in the day (and the reverse)
    _message(store, "D", "cmd", "command", L(1, 23, 55), "dead", L(2, 0, 25))
    _message(store, "E", "cmd", "command", L(2, 23, 58), "dead", L(3, 0, 30))


@pytest.fixture
def grid_topology() -> Topology:
    return build_grid()


@pytest.fixture
def report(store: Store, grid_topology: Topology) -> Report:
    populate(store)
    return build_report(store, grid_topology, DAY_START, DAY_END, TZ, NOW)


# -- numbers ------------------------------------------------------------------------------------

CH = {"A": 50 * 2 + 70 * 3.5, "B": 80 * 3, "C": 0.0, "D": 60 * 1.5, "E": 35 * 1}
TOTAL_CH = 345 + 240 + 0 + 90 + 35
assert sum(CH.values()) == TOTAL_CH == 710
AIHC1 = 710 / 280
RS1 = (1 - AIHC1 / 24) * 100


def test_customer_hours_per_incident_match_the_hand_calculation(report: Report) -> None:
    inc = report.incidents.set_index("id")
    assert list(report.incidents["id"]) == ["D", "A", "B", "C", "E"]  # by start; F, G outside
    for iid, ch in CH.items():
        assert inc.loc[iid, "customer_hours"] == pytest.approx(ch), iid
    assert inc.loc["A", "customers"] == 120  # the union of estimate and restoration steps
    assert inc.loc["A", "duration_h"] == pytest.approx(3.5)
    assert inc.loc["D", "duration_h"] == pytest.approx(3.5)  # whole outage, not clipped
    assert inc.loc["C", "duration_h"] == 0
    assert inc.loc["A", "villages"] == "马集村、刘庄村"
    assert inc.loc["A", "class"] == "fault" and inc.loc["B", "class"] == "planned"
    assert inc.loc["A", "cause_category"] == "外力破坏" and inc.loc["A", "stage"] == "closed"
    assert inc.loc["A", "start"] == pd.Timestamp("2026-03-02 08:00", tz=TZ)
    assert pd.isna(inc.loc["E", "end"])
    assert inc.loc["C", "end"] == inc.loc["C", "start"]  # never started


def test_whole_area_aihc1_and_rs1(report: Report) -> None:
    s = report.summary.iloc[0]
    assert s["customers"] == 280
    assert s["hours_in_period"] == 24
    assert s["customer_hours"] == pytest.approx(710)
    assert s["fault_customer_hours"] == pytest.approx(470)
    assert s["planned_customer_hours"] == pytest.approx(240)
    assert s["aihc1_h"] == pytest.approx(AIHC1) == pytest.approx(2.535714, abs=1e-6)
    assert s["rs1_pct"] == pytest.approx(RS1) == pytest.approx(89.434524, abs=1e-6)
    # C, planned work cancelled before it began, interrupted nothing: not an outage event.
    assert (s["incidents"], s["fault_incidents"], s["planned_incidents"]) == (4, 3, 1)
    assert (s["cancelled_incidents"], s["active_incidents"]) == (1, 1)


def test_by_feeder_and_by_village(report: Report) -> None:
    f = report.by_feeder.set_index("feeder")
    assert f.loc["F1", "customers"] == 200 and f.loc["F2", "customers"] == 80
    assert f.loc["F1", "customer_hours"] == pytest.approx(435)
    assert f.loc["F1", "aihc1_h"] == pytest.approx(2.175)
    assert f.loc["F1", "rs1_pct"] == pytest.approx(90.9375)
    assert f.loc["F2", "customer_hours"] == pytest.approx(275)
    assert f.loc["F2", "planned_customer_hours"] == pytest.approx(240)
    assert f.loc["F2", "aihc1_h"] == pytest.approx(3.4375)
    assert f.loc["F1", "incidents"] == 2  # A and D (C, cancelled before it began, is none)
    assert f.loc["F1", "feeder_name"] == "马集I线"
    v = report.by_village.set_index("village")
    expected = {"V1": (245, 70), "V2": (100, 70), "V3": (90, 60), "V4": (275, 80)}
    for village, (ch, n) in expected.items():
        assert v.loc[village, "customer_hours"] == pytest.approx(ch), village
        assert v.loc[village, "customers"] == n
        assert v.loc[village, "aihc1_h"] == pytest.approx(ch / n)
        assert v.loc[village, "rs1_pct"] == pytest.approx((1 - ch / n / 24) * 100)
    assert v.loc["V1", "village_name"] == "马集村"
    # Incidents a village had: not C, cancelled before it began (it interrupted no one).
    assert [v.loc[x, "incidents"] for x in ("V1", "V2", "V3", "V4")] == [1, 1, 1, 2]
    assert v.loc["V4", "planned_incidents"] == 1 and v.loc["V4", "fault_incidents"] == 1


def test_notice_latency_crew_arrivals_and_dead_letters(report: Report) -> None:
    inc = report.incidents.set_index("id")
    assert inc.loc["A", "notice_latency_min"] == pytest.approx(4)  # command message ignored
    assert inc.loc["B", "notice_latency_min"] == pytest.approx(1)
    assert pd.isna(inc.loc["C", "notice_latency_min"])
    s = report.summary.iloc[0]
    assert s["notices_measured"] == 4
    assert s["notice_latency_median_min"] == pytest.approx(3)
    assert s["notice_latency_p90_min"] == pytest.approx(8.2)
    assert inc.loc["A", "crew"] == "CR1" and inc.loc["A", "crew_name"] == "马集抢修班"
    # E is the only incident still off with a crew deadline; it has arrived: nothing pending.
    assert s["crew_arrivals_pending"] == 0
    assert inc.loc["A", "arrival_deadline"] == pd.Timestamp("2026-03-02 09:40", tz=TZ)
    assert inc.loc["A", "arrived_at"] == pd.Timestamp("2026-03-02 09:10", tz=TZ)
    assert inc.loc["A", "met_commitment"] is True or inc.loc["A", "met_commitment"] == True  # noqa: E712
    assert not inc.loc["D", "met_commitment"]
    assert bool(inc.loc["E", "met_commitment"])
    assert pd.isna(inc.loc["B", "met_commitment"])
    assert (s["crew_arrivals_met"], s["crew_arrivals_missed"]) == (2, 1)
    assert s["dead_letters"] == 2
    assert list(report.dead_letters["incident_id"]) == ["D", "B"]
    assert list(report.dead_letters["dead_at"]) == [pd.Timestamp("2026-03-02 00:25", tz=TZ),
                                                     pd.Timestamp("2026-03-02 09:10", tz=TZ)]


def test_future_planned_counts_zero_and_hours_stop_at_now(store: Store,
                                                          grid_topology: Topology) -> None:
    populate(store)
    start, end = range_period(L(2, 0).date(), L(6, 0).date(), TZ)
    r = build_report(store, grid_topology, start, end, TZ, NOW)
    inc = r.incidents.set_index("id")
    assert "F" in inc.index and inc.loc["F", "customer_hours"] == 0
    # E has been off from 23:00 to now (09:00 next day): 10 h × 35.
    assert inc.loc["E", "customer_hours"] == pytest.approx(350)
    s = r.summary.iloc[0]
    assert s["hours_in_period"] == pytest.approx(33)  # 03-02 00:00 .. now 03-03 09:00
    assert s["customer_hours"] == pytest.approx(345 + 240 + 90 + 350)
    assert s["rs1_pct"] == pytest.approx((1 - (1025 / 280) / 33) * 100)


def test_empty_period(store: Store, grid_topology: Topology) -> None:
    r = build_report(store, grid_topology, DAY_START, DAY_END, TZ, NOW)
    s = r.summary.iloc[0]
    assert s["incidents"] == 0 and s["customer_hours"] == 0 and s["rs1_pct"] == 100
    assert pd.isna(s["notice_latency_median_min"])
    html_text = render_html(r)
    assert html_text.count("data:image/png;base64,") == 3
    assert "停电事件 0 起" in daily_report_message(r)


def test_periods() -> None:
    assert day_period(L(2, 0).date(), TZ) == (L(2, 0), L(3, 0))
    # 2026-03-04 is a Wednesday; its week is Mon 03-02 .. Sun 03-08.
    assert week_period(L(4, 0).date(), TZ) == (L(2, 0), L(9, 0))
    assert yesterday(datetime(2026, 3, 2, 17, 0, tzinfo=UTC), TZ) == L(2, 0).date()  # 01:00 +08
    assert last_full_week(L(4, 12), TZ) == datetime(2026, 2, 23).date()
    assert last_full_week(L(9, 0), TZ) == L(2, 0).date()
    with pytest.raises(ValueError):
        range_period(L(3, 0).date(), L(2, 0).date(), TZ)


# -- files --------------------------------------------------------------------------------------


def test_csv_loads_back_in_pandas(report: Report, tmp_path: Path) -> None:
    written = write_report(report, "csv", tmp_path / "daily.csv")
    names = sorted(p.name for p in written)
    assert names == sorted(["daily.csv", "daily_incidents.csv", "daily_by_feeder.csv",
                            "daily_by_village.csv", "daily_summary.csv",
                            "daily_dead_letters.csv", "daily_areas.csv"])
    inc = pd.read_csv(tmp_path / "daily.csv").set_index("id")
    assert inc.loc["A", "customer_hours"] == pytest.approx(345)
    assert inc.loc["A", "villages"] == "马集村、刘庄村"
    assert pd.Timestamp(inc.loc["A", "start"]) == pd.Timestamp("2026-03-02 08:00", tz=TZ)
    summary = pd.read_csv(tmp_path / "daily_summary.csv")
    assert summary.loc[0, "customer_hours"] == pytest.approx(710)
    assert summary.loc[0, "aihc1_h"] == pytest.approx(AIHC1)
    assert summary.loc[0, "rs1_pct"] == pytest.approx(RS1)
    feeders = pd.read_csv(tmp_path / "daily_by_feeder.csv").set_index("feeder")
    assert feeders.loc["F2", "customer_hours"] == pytest.approx(275)
    areas = pd.read_csv(tmp_path / "daily_areas.csv")
    assert areas["customer_hours"].sum() == pytest.approx(710)
    assert len(pd.read_csv(tmp_path / "daily_dead_letters.csv")) == 2


def test_xlsx_loads_back_in_pandas(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "daily.xlsx"
    write_report(report, "xlsx", path)
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == ["汇总", "停电事件", "通知与抢修", "分线路", "分村庄", "未送达通知",
                            "台区明细"]
    inc = sheets["停电事件"].set_index("编号")
    assert inc.loc["A", "停电时户数"] == pytest.approx(345)
    assert inc.loc["A", "开始"] == pd.Timestamp("2026-03-02 08:00")  # local wall clock
    assert inc.loc["A", "类型"] == "故障停电" and inc.loc["A", "线路"] == "马集I线"
    summary = sheets["汇总"].set_index("指标")["数值"]
    assert float(summary["RS-1（%）"]) == pytest.approx(RS1, abs=1e-4)  # rounded to 4 places
    assert sheets["分村庄"].set_index("村庄").loc["城关社区", "停电时户数"] == pytest.approx(275)
    assert len(sheets["分村庄"]) == len(report.by_village)  # every village, in the workbook
    crews = sheets["通知与抢修"].set_index("编号")
    assert crews.loc["A", "抢修班组"] == "马集抢修班" and crews.loc["A", "按时到达"] == "是"
    assert crews.loc["A", "阶段"] == "已销号"
    en = tmp_path / "daily_en.xlsx"
    write_report(report, "xlsx", en, language="en")
    assert list(pd.read_excel(en, sheet_name=None))[:2] == ["Summary", "Incidents"]


def test_html_embeds_charts_that_decode_to_pngs(report: Report, tmp_path: Path) -> None:
    from matplotlib import image as mpimg

    path = tmp_path / "daily.html"
    write_report(report, "html", path)
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    images = re.findall(r'<img alt="([a-z_]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">',
                        text)
    assert [name for name, _ in images] == ["customer_hours_by_feeder", "incidents_by_day",
                                            "notice_latency"]
    for _, data in images:
        png = base64.b64decode(data, validate=True)
        assert png.startswith(PNG_SIGNATURE)
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 300
        assert pixels.std() > 0  # something was drawn
    assert "马集村" in text and "停电事件" in text and "<script" not in text
    assert "<th>停电时户数</th>" in text and "<th>customer_hours</th>" not in text
    assert "345.0" in text and "2026-03-02 08:00" in text and "马集抢修班" in text
    assert set(chart_pngs(report)) == {name for name, _ in images}
    english = render_html(report, "en")
    assert "<th>Customer-hours</th>" in english and "Outage report 2026-03-02" in english


def test_daily_message_in_chinese(report: Report) -> None:
    text = daily_report_message(report)
    assert text.startswith("【停电日报】2026-03-02")
    assert "停电事件 4 起：故障 3 起，计划/临时 1 起，仍在停电 1 起；另已取消 1 起" in text
    assert "停电时户数 710.0 时·户" in text
    assert "AIHC-1 2.5357 小时/户" in text and "RS-1 89.4345%" in text
    assert "中位 3.0 分钟" in text and "按时 2 次，超时 1 次" in text
    assert "死信）2 条" in text
    assert len(text.encode("utf-8")) < 2048  # fits a WeCom text message


def test_unknown_format_is_refused(report: Report, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_report(report, "pdf", tmp_path / "x.pdf")


# -- command line -------------------------------------------------------------------------------


def _cli_setup(tmp_path: Path) -> tuple[Path, int]:
    """A config over the demo county with one 2-hour fault on one transformer on 2026-03-02;
    returns the config path and that transformer's customers."""
    from tests.e2e_helpers import make_config

    cfg = make_config(tmp_path)
    data = yaml.safe_load(cfg.read_text("utf-8"))
    data["timezone"] = "Asia/Shanghai"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    topo = load_bundle(data["topology"])
    tx = topo.transformers[0]
    (tmp_path / "state").mkdir(exist_ok=True)
    store = Store(f"sqlite:///{tmp_path / 'state' / 'sentinel.db'}")
    store.migrate()
    with store.transaction() as conn:
        _incident(store, conn, "INC-1", feeder=topo.feeder_of(tx), kind="fault",
                  status="restored", start=L(2, 8), end=L(2, 10), transformers=[tx],
                  customers=topo.nodes[tx].customers, updated=L(2, 10))
    store.close()
    return cfg, topo.nodes[tx].customers


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    sub = p.add_subparsers(dest="verb")
    report_cli.add_verbs(sub)
    return p.parse_args(list(argv))


def test_cli_dispatch_writes_each_format(tmp_path: Path) -> None:
    cfg, customers = _cli_setup(tmp_path)
    out = tmp_path / "out" / "r.csv"
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "daily", "--date",
                                     "2026-03-02", "--format", "csv", "--out", str(out))) == 0
    assert pd.read_csv(out).loc[0, "customer_hours"] == pytest.approx(customers * 2)
    xlsx = tmp_path / "out" / "w.xlsx"
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "weekly", "--week-of",
                                     "2026-03-04", "--format", "xlsx", "--out", str(xlsx))) == 0
    summary = pd.read_excel(xlsx, sheet_name="汇总").set_index("指标")["数值"]
    assert float(summary["统计小时数"]) == 7 * 24
    assert float(summary["停电时户数"]) == pytest.approx(customers * 2)
    english = tmp_path / "out" / "e.xlsx"
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "weekly", "--week-of",
                                     "2026-03-04", "--format", "xlsx", "--lang", "en",
                                     "--out", str(english))) == 0
    summary = pd.read_excel(english, sheet_name="Summary").set_index("Measure")["Value"]
    assert float(summary["Customer-hours"]) == pytest.approx(customers * 2)
    html_path = tmp_path / "out" / "r.html"
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "range", "--from",
                                     "2026-03-01", "--to", "2026-03-03", "--out",
                                     str(html_path))) == 0
    assert html_path.read_text("utf-8").count("data:image/png;base64,") == 3
    # An inverted range is a usage error; a missing config is exit 3.
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "range", "--from",
                                     "2026-03-03", "--to", "2026-03-01")) == 2
    assert report_cli.dispatch(_args("--config", str(tmp_path / "nope.yaml"), "report",
                                     "daily")) == 3


def test_cli_default_period_and_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    cfg, _ = _cli_setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # 09:00 local: yesterday = 03-02
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "daily"), now=now) == 0
    assert (tmp_path / "report-daily-2026-03-02.html").is_file()
    assert report_cli.dispatch(_args("--config", str(cfg), "report", "weekly", "--format",
                                     "csv"), now=now) == 0
    assert (tmp_path / "report-weekly-2026-02-23_2026-03-01_summary.csv").is_file()


def _cli_wired() -> bool:
    from outage_sentinel import cli

    parser = cli._parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if "report" in getattr(action, "choices", {}):
            return True
    return False


@pytest.mark.skipif(not _cli_wired(), reason="cli.py does not have the report verb yet")
def test_report_verb_through_the_command(tmp_path: Path) -> None:
    cfg, customers = _cli_setup(tmp_path)
    out = tmp_path / "r.csv"
    r = subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), "report",
                        "daily", "--date", "2026-03-02", "--format", "csv", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout.splitlines()
    assert pd.read_csv(out).loc[0, "customer_hours"] == pytest.approx(customers * 2)


def test_a_restored_incident_without_an_arrival_is_not_pending(store: Store,
                                                              grid_topology: Topology) -> None:
    with store.transaction() as c:
        for iid, status in (("H", "restored"), ("K", "active")):
            _incident(store, c, iid, feeder="F1", kind="fault", status=status,
                      start=L(2, 20), end=L(2, 21) if status == "restored" else None,
                      transformers=["T3"], customers=50, updated=L(2, 21))
            store.log_in(c, iid, L(2, 20, 5), "dispatched", "daemon",
                         details={"crew": "CR1", "deadline": L(3, 12).isoformat()})
    s = build_report(store, grid_topology, *day_period(L(2, 0).date(), TZ), TZ,
                     NOW).summary.iloc[0]
    assert s["crew_arrivals_pending"] == 1  # K only: H is over, no crew is still expected
