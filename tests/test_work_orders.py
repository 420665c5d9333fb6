"""Trouble calls (95598 / customer-service work orders) as a source.

Unit: the ``95598_workorder`` mapping, the dropped-file parser, placing a call. End to end:
the daemon (a subprocess) polls work orders from a local HTTP server and reads a dropped CSV;
the calls join the open fault as call evidence and change its estimate; a call nobody can
place is listed by ``calls list --unplaced``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from outage_sentinel.config import FieldMap, load_config
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import resolve_event
from outage_sentinel.sources.mapping import PRESETS, RecordMapper
from outage_sentinel.sources.work_orders import WorkOrderParser
from outage_sentinel.topology import load_bundle
from tests.e2e_helpers import ROOT, make_config, start_daemon, stop, wait_for

TZ = ZoneInfo("Asia/Shanghai")
TOPOLOGY = load_bundle(ROOT / "topology")
FIELDS = PRESETS["95598_workorder"].fields


def order(no: str, **kw: Any) -> dict[str, Any]:
    return {"orderNo": no, "acceptTime": datetime.now(TZ).strftime("%Y-%m-%d %H:%M:%S"),
            "faultType": "无电", "content": "家中无电", **kw}


def test_a_work_order_is_a_call_placed_by_customer_meter_or_area() -> None:
    mapper = RecordMapper("orders", FIELDS, TZ)
    ev = mapper.map(order("W1", custNo="C00213", address="马集镇南谢庄村"))
    assert ev is not None and ev.signal == "call" and ev.kind == "fault"
    assert ev.transformers == ("C00213",) and "无电" in ev.cause
    assert resolve_event(TOPOLOGY, ev).transformers == ("T-MJ01-025",)
    by_meter = mapper.map(order("W2", meterNo="M-T-MJ01-026-001"))
    assert by_meter is not None
    assert resolve_event(TOPOLOGY, by_meter).transformers == ("T-MJ01-026",)


def test_a_low_voltage_order_is_no_outage_evidence() -> None:
    mapper = RecordMapper("orders", FIELDS, TZ)
    assert mapper.map(order("W3", faultType="电压低", custNo="C00213")) is None
    custom = RecordMapper("orders", FIELDS.model_copy(
        update={"outage_categories": ["电压低"]}), TZ)
    assert custom.map(order("W3", faultType="电压低", custNo="C00213")) is not None


def test_an_address_naming_a_whole_village_places_no_area() -> None:
    """One caller is one customer: counting the call on every area of the village would
    make a village's worth of calls out of one."""
    ev = OutageEvent(source="orders", event_id="W4", kind="fault", status="active",
                     start=datetime.now(UTC), signal="call", area_text="南谢庄村全村")
    resolved = resolve_event(TOPOLOGY, ev)
    assert resolved.transformers == () and resolved.feeder == "MJ01"  # it still finds its fault
    notice = OutageEvent(source="feed", event_id="N1", kind="fault", status="active",
                         start=datetime.now(UTC), area_text="南谢庄村全村")
    assert len(resolve_event(TOPOLOGY, notice).transformers) > 1


def test_a_dropped_csv_of_work_orders() -> None:
    text = ("orderNo,acceptTime,custNo,meterNo,address,faultType,content\n"
            "W1,2026-12-04 08:00:00,C00213,,南谢庄村,无电,全家停电\n"
            "W2,not a time,C00288,,,无电,\n"
            "W3,2026-12-04 08:01:00,,,,电压低,灯暗\n"
            "\n")
    parsed = WorkOrderParser("orders", None, TZ).csv_text(text, "orders.csv")
    assert [e.event_id for e in parsed.events] == ["W1"]
    assert parsed.events[0].start == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    (bad,) = parsed.quarantined
    assert bad.reason.startswith("orders.csv row 3: start (acceptTime): ")
    assert (parsed.records, parsed.ignored) == (3, 1)


def test_a_row_with_too_many_columns_is_quarantined_not_misread() -> None:
    """An unquoted comma in the address shifts every column after it: the order would be read
    with its address as its fault type and ignored as no outage."""
    text = ("orderNo,acceptTime,custNo,meterNo,address,faultType,content\n"
            "W1,2026-12-04 08:00:00,C00213,,南谢庄村,无电,全家停电\n"
            "W2,2026-12-04 08:01:00,C00288,,马集镇,南谢庄村5组,无电,家中无电\n"
            "W3,2026-12-04 08:02:00,C00213\n")
    parsed = WorkOrderParser("orders", None, TZ).csv_text(text, "orders.csv")
    assert [e.event_id for e in parsed.events] == ["W1"]
    assert [q.reason for q in parsed.quarantined] == [
        "orders.csv row 3: expected 7 columns, got 8 (an unquoted comma or a missing field?)",
        "orders.csv row 4: expected 7 columns, got 3 (an unquoted comma or a missing field?)"]
    assert "南谢庄村5组" in parsed.quarantined[0].raw["row"]
    assert (parsed.records, parsed.ignored) == (3, 0)


def test_a_stray_carriage_return_in_a_dropped_file_costs_its_row_only(tmp_path: Path) -> None:
    """A bare CR in one address made the csv module raise: the orders after it were neither
    read nor quarantined, and the file still went to done/ as if fully read."""
    import os

    from outage_sentinel.config import FileDropSourceConfig
    from outage_sentinel.sources.file_drop import FileDropSource

    rows = ["orderNo,acceptTime,custNo,address,faultType"]
    addresses = {2: "南谢庄村", 3: "村\r东头", 4: "南谢庄村", 5: "南谢庄村", 6: "南谢庄村"}
    rows += [f"W{i},2026-12-04 08:0{i}:00,C00213,{a},无电" for i, a in addresses.items()]
    rows.append("W7,202612040807,C00213,南谢庄村,无电")  # a compact local time
    path = tmp_path / "orders.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("utf-8"))
    os.utime(path, (0, 0))
    source = FileDropSource(FileDropSourceConfig.model_validate(
        {"type": "file_drop", "name": "orders", "directory": str(tmp_path),
         "content": "work_orders"}), default_tz="Asia/Shanghai")
    source.start(None)
    result = source.poll(datetime.now(UTC))
    assert [e.event_id for e in result.events] == ["W2", "W4", "W5", "W6", "W7"]
    assert result.events[-1].start == datetime(2026, 12, 4, 0, 7, tzinfo=UTC)
    [bad] = result.quarantined
    assert bad.reason.startswith("orders.csv row 3: bad CSV: a line break (a carriage return)")
    assert "W3" in bad.raw["line"]
    source.acknowledge(result)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["orders.csv"]


def test_a_csv_without_order_columns_is_refused_naming_them() -> None:
    from outage_sentinel.sources.ami_payload import PayloadError

    with pytest.raises(PayloadError, match="orderNo"):
        WorkOrderParser("orders", None, TZ).csv_text("a,b\n1,2\n", "x.csv")


def test_json_lines_of_work_orders_with_a_custom_field_map() -> None:
    fields = FieldMap(event_id="id", start="time", signal="call", customer="cust")
    text = (json.dumps({"id": "A", "time": "2026-12-04T08:00:00+08:00", "cust": "C00213"})
            + "\n[" + json.dumps({"id": "B", "time": "2026-12-04T08:00:00+08:00"})
            + ", 5]\n{bad json\n")
    parsed = WorkOrderParser("orders", fields, TZ).json_lines(text, "o.jsonl")
    assert [e.event_id for e in parsed.events] == ["A", "B"]
    assert [q.reason.split(":")[0] for q in parsed.quarantined] == ["o.jsonl line 2 item 1",
                                                                    "o.jsonl line 3"]


# -- end to end ---------------------------------------------------------------------------------


class Orders:
    """The work-order service: serves whatever the test has put in ``records``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def body(self) -> bytes:
        with self.lock:
            return json.dumps({"code": 0, "data": {"records": self.records, "pages": 1}},
                              ensure_ascii=False).encode("utf-8")


@pytest.fixture
def orders_server() -> Iterator[tuple[Orders, str]]:
    orders = Orders()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = orders.body()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield orders, f"http://127.0.0.1:{server.server_address[1]}/api/workorders"
    server.shutdown()
    server.server_close()


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outage_sentinel", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=120)


def incident_state(cfg: Path) -> dict[str, Any] | None:
    r = cli(cfg, "incidents", "list", "--json")
    states = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []
    return states[0] if states else None


def test_work_orders_from_http_and_a_dropped_file_become_call_evidence(
        tmp_path: Path, orders_server: tuple[Orders, str]) -> None:
    orders, url = orders_server
    scenario = tmp_path / "fault.jsonl"
    scenario.write_text(json.dumps({
        "at": 0, "event_id": "F1", "kind": "fault", "status": "active", "start_offset": -60,
        "feeder": "MJ01", "transformers": ["T-MJ01-020", "T-MJ01-021"]}) + "\n",
        encoding="utf-8")
    drop = tmp_path / "drop"
    drop.mkdir()
    cfg = make_config(tmp_path, sources=[
        {"name": "feed", "type": "replay", "scenario": str(scenario), "speed": 1.0,
         "interval_seconds": 0.5},
        {"name": "orders", "type": "http_json", "url": url, "preset": "95598_workorder",
         "interval_seconds": 0.5},
        {"name": "orders-files", "type": "file_drop", "directory": str(drop),
         "content": "work_orders", "settle_seconds": 0, "interval_seconds": 0.5},
    ])
    assert load_config(cfg).sources[1].snapshot is False  # a work-order list is no snapshot
    proc = start_daemon(cfg)
    try:
        assert wait_for(lambda: incident_state(cfg) is not None, 30)
        before = incident_state(cfg)
        assert before is not None and before["estimate"]["devices"] == ["FU-MJ01-05"]
        with orders.lock:
            orders.records = [order("W1", custNo="C00213", address="南谢庄村"),
                              order("W2", faultType="电压低", custNo="C00288"),
                              order("W3", custNo="C99999", address="不知道哪里")]
        (drop / "orders.csv.tmp").write_text(
            "orderNo,acceptTime,meterNo,address,faultType\n"
            f"W4,{datetime.now(TZ):%Y-%m-%d %H:%M:%S},M-T-MJ01-026-001,,无电\n",
            encoding="utf-8")
        (drop / "orders.csv.tmp").rename(drop / "orders.csv")

        def calls_joined() -> bool:
            state = incident_state(cfg)
            return state is not None and {"orders|W1", "orders-files|W4"} <= set(
                state["members"])
        assert wait_for(calls_joined, 30)
        after = incident_state(cfg)
        assert after is not None
        # Calls from inside the suspected section make the estimate surer.
        assert after["estimate"]["probability"] > before["estimate"]["probability"] + 0.1
        assert not any(k.endswith("|W2") for k in after["members"])  # 电压低: no evidence
        assert wait_for(lambda: (drop / "done" / "orders.csv").exists(), 10)
        unplaced = cli(cfg, "calls", "list", "--unplaced")
        assert unplaced.returncode == 0, unplaced.stderr
        assert "orders:W3" in unplaced.stdout and "未定位" in unplaced.stdout
        assert "orders:W1" not in unplaced.stdout
        every = cli(cfg, "calls", "list").stdout
        assert "orders:W1" in every and "南谢庄村" in every and after["id"] in every
        assert "orders-files:W4" in every
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    # The report counts the calls, per incident and those that joined none.
    today = datetime.now(TZ).strftime("%Y-%m-%d")
    out = tmp_path / "r.csv"
    r = cli(cfg, "report", "range", "--from", today, "--format", "csv", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = pd.read_csv(tmp_path / "r_summary.csv").iloc[0]
    assert (summary["trouble_calls"], summary["trouble_calls_without_incident"]) == (3, 1)
    incidents = pd.read_csv(tmp_path / "r_incidents.csv")
    assert incidents.loc[incidents["id"] == after["id"], "calls"].item() == 2


def test_a_work_order_drop_with_an_unknown_timezone_is_refused_naming_it(tmp_path: Path) -> None:
    from outage_sentinel.config import ConfigError

    cfg = make_config(tmp_path, sources=[{"name": "orders-files", "type": "file_drop",
                                          "directory": str(tmp_path), "content": "work_orders",
                                          "timezone": "Mars/Base"}])
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "sources[0]" in str(info.value) and "Mars/Base" in str(info.value)
