"""Channels isolated, through the daemon as a subprocess (issue 10 item 5).

The shipped config with its ``wecom`` channel pointed at a local WeCom-like service that hangs
(accepts, reads, never answers; 30 s timeout) while the other channels write to the file sink.
The demo feed's first fault notifies 南谢庄村's liaisons on WeCom *and* SMS: the SMS notices
must arrive within the delivery interval + 1 s of being queued, no delivery run may be skipped,
SIGTERM must stop the daemon promptly leaving the hung sends in flight, and the next start —
with the service answering again — sends each of those at most once more.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from outage_sentinel.store import Store
from tests.e2e_helpers import ROOT, json_lines, make_config, sink_lines, start_daemon, stop, wait_for
from tests.test_delivery_isolation import Sink

pytestmark = pytest.mark.slow

DELIVERY_INTERVAL = 1.0
BOUND = DELIVERY_INTERVAL + 1.0


def wecom_targets() -> list[str]:
    targets = set()
    for name in ("liaisons.csv", "crews.csv"):
        with (ROOT / "topology" / name).open(encoding="utf-8") as fh:
            targets |= {r["target"] for r in csv.DictReader(fh) if r["channel"] == "wecom"}
    return sorted(targets)


def config_with_wecom_at(tmp: Path, url: str) -> Path:
    path = make_config(tmp, speed=10.0, interval=0.5, delivery_interval=DELIVERY_INTERVAL)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["channels"]["wecom"] = {
        "type": "wecom", "base_url": url, "timeout_seconds": 30,
        "robots": {t: {"key": f"key{i:03d}-0123456789"} for i, t in enumerate(wecom_targets())},
    }
    data["delivery"]["shutdown_grace_seconds"] = 1.0
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def outbox(tmp: Path) -> list[Any]:
    store = Store(f"sqlite:///{tmp / 'state' / 'sentinel.db'}")
    try:
        return store.messages()
    finally:
        store.close()


def log_events(tmp: Path) -> list[dict[str, Any]]:
    return json_lines(tmp / "daemon.log")


def test_hung_wecom_holds_up_no_other_channel_in_the_daemon(tmp_path: Path) -> None:
    wecom = Sink(hang=lambda _url: True)
    try:
        cfg = config_with_wecom_at(tmp_path, wecom.url)
        proc = start_daemon(cfg)
        try:
            assert wait_for(lambda: any(m["channel"] == "sms" for m in sink_lines(tmp_path))
                            and len(wecom.hung) >= 2, 60), (sink_lines(tmp_path), wecom.hung)
            # Let a few more delivery runs pass while WeCom still hangs.
            assert wait_for(lambda: sum(1 for e in log_events(tmp_path)
                                        if e.get("event") == "delivered") >= 4, 30)
            rows = outbox(tmp_path)
            assert proc.poll() is None
        finally:
            assert stop(proc) == 0  # promptly: the grace is 1 s, not the 30 s timeout
        lines = sink_lines(tmp_path)
        created = {hashlib.sha256(r.key.encode()).hexdigest(): r.created_at for r in rows}
        latencies = {m["key"]: (datetime.fromisoformat(m["sent_at"])
                                - created[m["key_sha256"]]).total_seconds()
                     for m in lines if m["key_sha256"] in created}
        assert any(m["channel"] == "sms" and "南谢庄村" in m["text"] for m in lines)
        assert latencies and max(latencies.values()) < BOUND, latencies
        events = log_events(tmp_path)
        assert not [e for e in events if e.get("event") == "job_skipped"
                    and e.get("job") == "deliver"]  # no delivery run waited for WeCom
        wecom_rows = [r for r in outbox(tmp_path) if r.channel == "wecom"]
        assert wecom_rows and not [r for r in wecom_rows if r.status == "sent"]
        abandoned = [r for r in wecom_rows if r.status == "inflight"]
        assert abandoned, "the hung sends were left in flight at shutdown"
        assert any(e.get("event") == "delivery_abandoned" for e in events)

        # Next start: WeCom answers again. Recovery resends each abandoned message once.
        wecom.hang = lambda _url: False
        proc = start_daemon(cfg)
        try:
            assert wait_for(lambda: all(r.status == "sent" for r in outbox(tmp_path)
                                        if r.channel == "wecom"), 60), Counter(
                (r.channel, r.status) for r in outbox(tmp_path))
        finally:
            assert stop(proc) == 0
        # A resend is byte-identical (no timestamp in WeCom's body): each robot request answered
        # once means each WeCom message was delivered once.
        answered = Counter((path, body) for _, path, body in wecom.received)
        assert answered and max(answered.values()) == 1
        keys = [m["key_sha256"] for m in sink_lines(tmp_path)]
        assert len(keys) == len(set(keys))  # and nothing twice in the file sink
    finally:
        wecom.close()
