"""The MQTT source against the real Mosquitto at 127.0.0.1:1883 (skipped when it is not there).

Every test uses its own topic and client ids, and removes its broker sessions afterwards.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from outage_sentinel.ami import AmiRegistry, AmiScreen
from outage_sentinel.config import MqttSourceConfig
from outage_sentinel.events import PollResult
from outage_sentinel.sources.base import Source, SourceError
from outage_sentinel.sources.mqtt import MqttSource
from outage_sentinel.topology import Meter, Topology, topology_from_records

HOST, PORT = "127.0.0.1", 1883


def _broker_up() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker at 127.0.0.1:1883")

NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def topology() -> Topology:
    """S1 - B1 - J1 - T1, T2 (transformer areas) with a terminal and 6 meters each."""
    nodes = [
        {"id": "S1", "kind": "source", "name": "Sub 10kV I", "feeder": "F1"},
        {"id": "B1", "kind": "breaker", "name": "F1 breaker", "feeder": "F1"},
        {"id": "J1", "kind": "junction", "name": "J1", "feeder": "F1"},
    ] + [{"id": f"T{i}", "kind": "transformer", "name": f"Area {i}", "feeder": "F1",
          "village": "V1", "customers": 6} for i in (1, 2)]
    base = topology_from_records(
        nodes, [("S1", "B1"), ("B1", "J1"), ("J1", "T1"), ("J1", "T2")],
        villages=[{"id": "V1", "name": "V1", "township": "X", "grid": "G", "area_type": "rural"}])
    meters = [Meter(f"T{i}-TERM", f"T{i}", "terminal") for i in (1, 2)]
    meters += [Meter(f"T{i}-M{m}", f"T{i}", "meter") for i in (1, 2) for m in range(6)]
    return Topology(base.nodes, base.edges, base.villages, base.liaisons, base.crews,
                    base.customers, meters)


@pytest.fixture
def ids() -> Iterator[dict[str, str]]:
    """A unique topic and consumer client id; the broker session is removed afterwards."""
    tag = uuid.uuid4().hex[:12]
    names = {"topic": f"test/ami/{tag}/events", "client_id": f"test-ami-{tag}"}
    yield names
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=names["client_id"],
                          protocol=mqtt.MQTTv5)
    cleaner.connect(HOST, PORT, clean_start=True)
    cleaner.disconnect()


@pytest.fixture
def publish() -> Iterator[Callable[[str, Any], None]]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.connect(HOST, PORT)
    client.loop_start()

    def send(topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        client.publish(topic, data, qos=1).wait_for_publish(5)

    yield send
    client.disconnect()
    client.loop_stop()


class LaggingLink:
    """A TCP relay to the broker that hands on what the client writes ``lag`` seconds late: the
    broker reads that connection behind time, as a loaded Mosquitto does (it reads one packet
    per connection per turn of its loop)."""

    def __init__(self) -> None:
        self.lag = 0.0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            broker = socket.create_connection((HOST, PORT))
            threading.Thread(target=self._relay, args=(client, broker), daemon=True).start()

    def _relay(self, client: socket.socket, broker: socket.socket) -> None:
        back = threading.Thread(target=self._pump, args=(broker, client, False), daemon=True)
        back.start()
        self._pump(client, broker, True)
        back.join()
        client.close()
        broker.close()

    def _pump(self, src: socket.socket, dst: socket.socket, lagged: bool) -> None:
        try:
            while data := src.recv(65536):
                if lagged:
                    time.sleep(self.lag)
                dst.sendall(data)
        except OSError:
            pass
        with suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def lagging_link() -> Iterator[LaggingLink]:
    link = LaggingLink()
    yield link
    link.server.close()


def make_source(ids: dict[str, str], **extra: Any) -> MqttSource:
    cfg = MqttSourceConfig.model_validate({
        "type": "mqtt", "name": "ami-mqtt", "topics": [ids["topic"]],
        "client_id": ids["client_id"], "session_expiry_seconds": 300, **extra})
    source = MqttSource(cfg, registry=AmiRegistry.from_topology(topology()), default_tz="UTC")
    source.start(None)
    assert source.connected
    return source


def poll_until(source: MqttSource, count: int, timeout: float = 20.0) -> list[PollResult]:
    """Poll (acknowledging each result, like the daemon after a commit) until ``count``
    events + quarantined records arrived."""
    results: list[PollResult] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = source.poll(NOW)
        if not r.not_modified:
            results.append(r)
            source.acknowledge(r)
        if sum(len(x.events) + len(x.quarantined) for x in results) >= count:
            break
        time.sleep(0.05)
    return results


def crash(source: MqttSource) -> None:
    """Drop the connection without DISCONNECT and without acknowledging: a killed daemon."""
    client = source._client
    assert client is not None
    source._client = None
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()


def ev(device: str, code: str, t: str) -> dict[str, str]:
    return {"meter_id": device, "code": code, "time": t}


def test_is_a_source(ids: dict[str, str]) -> None:
    source = make_source(ids)
    try:
        assert isinstance(source, Source)
        assert source.poll(NOW).not_modified
    finally:
        source.close()


def test_events_published_while_down_arrive_after_restart(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    make_source(ids).close()  # subscribed once: the broker now keeps the session
    for m in range(3):
        publish(ids["topic"], ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z"))
    source = make_source(ids)
    try:
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M0", "meter:T1-M1", "meter:T1-M2"]
        assert all(e.transformers == ("T1",) and e.feeder == "F1"
                   for r in results for e in r.events)
    finally:
        source.close()


def test_mqtt_311_persistent_session_too(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    make_source(ids, protocol="3.1.1").close()
    publish(ids["topic"], ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"))
    source = make_source(ids, protocol="3.1.1")
    try:
        assert len(poll_until(source, 1)[0].events) == 1
    finally:
        source.close()


def test_unacknowledged_messages_are_redelivered_after_a_crash(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    source = make_source(ids)
    publish(ids["topic"], [ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"),
                           ev("T1-M1", "3.26.0.85", "2026-07-01T08:00:01Z")])
    publish(ids["topic"], ev("T1-M2", "3.26.0.85", "2026-07-01T08:00:02Z"))
    deadline = time.monotonic() + 5
    while source.buffered < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = source.poll(NOW)
    assert len(first.events) == 3
    crash(source)  # polled, never committed, never acknowledged

    again = make_source(ids)
    try:
        results = poll_until(again, 3)
        redelivered = [e for r in results for e in r.events]
        assert sorted((e.event_id, e.revision) for e in redelivered) == sorted(
            (e.event_id, e.revision) for e in first.events)  # same ids: the store dedupes
        again.close()
        # Acknowledged this time: a further restart gets nothing.
        third = make_source(ids)
        try:
            time.sleep(0.5)
            assert third.poll(NOW).not_modified
        finally:
            third.close()
    finally:
        again.close()


def test_result_not_acknowledged_is_offered_again(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    source = make_source(ids)
    try:
        publish(ids["topic"], ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"))
        deadline = time.monotonic() + 5
        while source.buffered < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        failed_commit = source.poll(NOW)
        assert len(failed_commit.events) == 1
        retry = source.poll(NOW)  # no acknowledge in between: the commit failed
        assert [e.event_id for e in retry.events] == [e.event_id for e in failed_commit.events]
        source.acknowledge(retry)
        assert source.stats["acked"] == 1
        source.acknowledge(failed_commit)  # stale: ignored
        assert source.stats["acked"] == 1
    finally:
        source.close()


def test_malformed_payloads_are_quarantined_and_the_rest_goes_on(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    source = make_source(ids)
    try:
        publish(ids["topic"], b"\xff\xfe not json")
        publish(ids["topic"], [ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"),
                               ev("T1-M1", "3.26.0.85", "half past eight")])
        publish(ids["topic"], ev("T1-M2", "3.26.0.85", "2026-07-01T08:00:02Z"))
        results = poll_until(source, 4)
        events = [e for r in results for e in r.events]
        quarantined = [q for r in results for q in r.quarantined]
        assert sorted(e.area_text for e in events) == ["meter:T1-M0", "meter:T1-M2"]
        reasons = sorted(q.reason for q in quarantined)
        assert reasons[0].startswith(f"topic {ids['topic']} record 2: time: expected a time")
        assert reasons[1].startswith(f"topic {ids['topic']}: not UTF-8 or GB18030 text")
        assert quarantined[0].raw is not None
    finally:
        source.close()
    # Quarantined messages were acknowledged with the commit: not redelivered forever.
    again = make_source(ids)
    try:
        time.sleep(0.5)
        assert again.poll(NOW).not_modified
    finally:
        again.close()


def test_a_gbk_payload_is_read_not_quarantined(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    """Concentrators still send GBK without saying so; a quarantined report is acknowledged,
    so reading it as bad text would lose the power-off for good."""
    source = make_source(ids)
    try:
        report = {**ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"), "note": "停电事件"}
        publish(ids["topic"], json.dumps(report, ensure_ascii=False).encode("gbk"))
        publish(ids["topic"], "\ufeff".encode() + json.dumps(
            ev("T1-M1", "3.26.0.85", "2026-07-01T08:00:01Z")).encode())
        results = poll_until(source, 2)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M0", "meter:T1-M1"]
        assert not [q for r in results for q in r.quarantined]
    finally:
        source.close()


def test_a_gbk_payload_quarantined_is_kept_readable(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    """What a person reads in the quarantine is the text as sent, not GBK bytes mangled as
    UTF-8 replacement characters."""
    source = make_source(ids)
    try:
        publish(ids["topic"], "集中器3号 停电事件 (not JSON)".encode("gbk"))
        [bad] = [q for r in poll_until(source, 1) for q in r.quarantined]
        assert bad.raw["payload"] == "集中器3号 停电事件 (not JSON)"
    finally:
        source.close()


def test_a_poison_time_is_quarantined_and_acked_and_never_redelivered(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    """Issue 11: a message whose time no system can hold costs only itself."""
    source = make_source(ids)
    try:
        publish(ids["topic"], ev("T1-M0", "3.26.0.85", "2026-07-01T08:00:00Z"))
        publish(ids["topic"], ev("T1-M1", "3.26.0.85", "99999999999999999999"))
        publish(ids["topic"], ev("T1-M2", "3.26.0.85", "2026-07-01T08:00:02Z"))
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M0", "meter:T1-M2"]
        [poison] = [q for r in results for q in r.quarantined]
        assert "time" in poison.reason and "99999999999999999999" in json.dumps(poison.raw)
    finally:
        source.close()
    again = make_source(ids)
    try:
        assert poll_until(again, 1, timeout=1.0) == []  # nothing comes back after reconnect
    finally:
        again.close()


def test_duplicates_blips_and_a_terminal_outage_through_the_broker(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    source = make_source(ids)
    screen = AmiScreen(AmiRegistry.from_topology(topology()))
    try:
        # T2: a reclosing blip on six meters (off, back 15 s later).
        blip = [ev(f"T2-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z") for m in range(6)]
        back = [ev(f"T2-M{m}", "3.26.0.216", f"2026-07-01T08:00:1{m}Z") for m in range(6)]
        # T1: the terminal reports power off, then the meters, one of them twice.
        t1 = [{"terminal_id": "T1-TERM", "code": "3106", "off_time": "2026-07-01T08:01:00Z"}]
        t1 += [ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:01:0{m + 1}Z") for m in range(6)]
        publish(ids["topic"], blip)
        publish(ids["topic"], back)
        publish(ids["topic"], t1)
        publish(ids["topic"], t1[1])  # a duplicate report
        results = poll_until(source, 6 + 6 + 7 + 1)
        observations = [e for r in results for e in r.events]
        assert len(observations) == 20
        out = screen.feed(observations, datetime(2026, 7, 1, 8, 1, 30, tzinfo=UTC))
        assert out.events == [] and out.momentary == 1 and out.merged == 1
        later = screen.tick(datetime(2026, 7, 1, 8, 2, 0, tzinfo=UTC))
        assert [(e.signal, e.transformers, e.feeder, e.start) for e in later.events] == [
            ("dead", ("T1",), "F1", datetime(2026, 7, 1, 8, 1, tzinfo=UTC))]
    finally:
        source.close()


def test_poll_raises_when_the_broker_is_unreachable() -> None:
    cfg = MqttSourceConfig.model_validate({
        "type": "mqtt", "name": "ami-mqtt", "host": "127.0.0.1", "port": 1,
        "topics": ["x"], "client_id": f"test-ami-{uuid.uuid4().hex[:8]}"})
    source = MqttSource(cfg, connect_timeout_seconds=0.5)
    source.start(None)
    try:
        with pytest.raises(SourceError, match="not connected to mqtt://127.0.0.1:1"):
            source.poll(NOW)
    finally:
        source.close()


def test_a_lone_surrogate_device_id_costs_its_message_only(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    """With unknown devices kept, the id went into the revision hash before any check: the
    UnicodeEncodeError escaped poll() and every message taken in the batch was lost."""
    source = make_source(ids, ami={"unknown_devices": "keep"})
    try:
        for m in range(3):
            publish(ids["topic"], ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z"))
        publish(ids["topic"], b'{"meter_id": "X\\ud800", "code": "3.26.0.85", '
                              b'"time": "2026-07-01T08:00:00Z"}')
        for m in range(3, 5):
            publish(ids["topic"], ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z"))
        results = poll_until(source, 6)
        assert sorted(e.area_text for r in results for e in r.events) == [
            f"meter:T1-M{m}" for m in range(5)]
        [bad] = [q for r in results for q in r.quarantined]
        assert bad.reason == (f"topic {ids['topic']} record 1: device id (meter_id): contains a "
                              "character the database cannot store (NUL or a lone surrogate)")
    finally:
        source.close()
    again = make_source(ids)
    try:
        assert poll_until(again, 1, timeout=1.0) == []  # all six acknowledged
    finally:
        again.close()


def test_a_message_failing_as_nobody_foresaw_is_quarantined_alone(
        ids: dict[str, str], publish: Callable[[str, Any], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_source(ids)
    real = source.parser.json_payload

    def parse(payload: bytes | str, where: str) -> Any:
        if "T1-M1" in str(payload):
            raise RuntimeError("a parser bug")
        return real(payload, where)

    monkeypatch.setattr(source.parser, "json_payload", parse)
    try:
        for m in range(3):
            publish(ids["topic"], ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z"))
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M0", "meter:T1-M2"]
        [bad] = [q for r in results for q in r.quarantined]
        assert bad.reason == (f"topic {ids['topic']}: could not be parsed: "
                              "RuntimeError: a parser bug")
        assert "T1-M1" in bad.raw["payload"]
        assert source.buffered == 0
    finally:
        source.close()


def test_a_csv_payload_with_a_stray_carriage_return_loses_no_row(
        ids: dict[str, str], publish: Callable[[str, Any], None]) -> None:
    source = make_source(ids, payload_format="csv")
    try:
        publish(ids["topic"], b"meter_id,code,time,note\n"
                              b"T1-M0,3.26.0.85,2026-07-01T08:00:00Z,a\rb\n"
                              b"T1-M1,3.26.0.85,2026-07-01T08:00:01Z,ok\n"
                              b"T1-M2,3.26.0.85,2026-07-01T08:00:02Z,ok\n")
        results = poll_until(source, 3)
        assert sorted(e.area_text for r in results for e in r.events) == [
            "meter:T1-M1", "meter:T1-M2"]
        [bad] = [q for r in results for q in r.quarantined]
        assert bad.reason.startswith(f"topic {ids['topic']} row 2: bad CSV: a line break")
        assert bad.raw == {"line": "T1-M0,3.26.0.85,2026-07-01T08:00:00Z,a\rb\n"}
    finally:
        source.close()


def test_what_close_acknowledged_is_not_redelivered_to_the_next_connection(
        ids: dict[str, str], publish: Callable[[str, Any], None],
        lagging_link: LaggingLink) -> None:
    """The next term (on this node or another) connects under the same client id as soon as
    this one closed. A broker that had not yet read the old connection's last PUBACKs hands
    the session over to the new connection without them and delivers those messages again
    (duplicate events; the flaky reconnect checks above). ``close`` returns only once the
    broker has read all that came before it."""
    source = make_source(ids, port=lagging_link.port)
    try:
        for m in range(3):
            publish(ids["topic"], ev(f"T1-M{m}", "3.26.0.85", f"2026-07-01T08:00:0{m}Z"))
        deadline = time.monotonic() + 5
        while source.buffered < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        lagging_link.lag = 0.5  # from now on the broker reads this connection late
        result = source.poll(NOW)
        assert len(result.events) == 3
        source.acknowledge(result)  # committed
    finally:
        source.close()
    again = make_source(ids)  # straight to the broker: takes the session over at once
    try:
        assert poll_until(again, 1, timeout=1.0) == []
    finally:
        again.close()
