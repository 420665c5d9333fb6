"""The ``mqtt`` source: AMI meter / terminal power-off and power-on events from an MQTT broker.

Delivery: at least once, end to end.

* A persistent session under the configured fixed ``client_id`` (MQTT 5 ``clean_start=False``
  with ``session_expiry_seconds``; MQTT 3.1.1 ``clean_session=False``) and a QoS 1
  subscription: while the daemon is down the broker queues what is published for it.
* ``manual_ack``: a message is acknowledged (PUBACK) only in :meth:`MqttSource.acknowledge`,
  which the daemon calls after it committed the poll's events. A message received but not
  committed when the daemon crashes is redelivered by the broker when it reconnects.
* A poll whose result is *not* acknowledged before the next poll (the commit failed) is offered
  again by the next poll — its messages are still unacknowledged at the broker, so nothing is
  lost while the daemon keeps running. Duplicates dedupe in the store by
  ``(source, event_id, revision)``, the ids being deterministic from content.
* On a reconnect where the broker still has the session, it redelivers every unacknowledged
  message, so copies buffered from the old connection are dropped; acknowledgements for
  messages of an old connection are skipped (their packet ids belong to the old connection).
* ``close`` returns only once the broker has *read* the acknowledgements sent before it (it
  answers an UNSUBSCRIBE of a filter the session does not hold, and a broker reads a
  connection in order). Written is not read: the next connection under this ``client_id``
  (the next term, on this node or another) takes the session over, and Mosquitto closes the
  old connection without reading what is left in it — acknowledged messages came again.

Flow control. Messages are acknowledged once per poll, so the broker must let a whole poll's
worth of messages be in flight unacknowledged. With MQTT 5 (the default) the client announces
``receive_maximum`` (65535) and Mosquitto honours it; with 3.1.1 Mosquitto allows only its
``max_inflight_messages`` (default 20) — i.e. 20 messages per poll. The in-flight window also
bounds this source's memory. Broker side, for a storm while the daemon is down, raise
Mosquitto's ``max_queued_messages`` (default 1000 per client — beyond that it *drops* QoS 1
messages for an offline client) and keep ``persistence true`` (see docs/ami.md).
QoS 2 gives no more than QoS 1 here (paho acknowledges PUBREC before the message is processed);
use QoS 1.

Payloads: ``json`` (an object, an array, or an envelope — see
:mod:`outage_sentinel.sources.ami_payload`) or ``csv``. A malformed message or record is
quarantined with the reason (naming the topic), the rest goes on, and the message is still
acknowledged after commit, so it is not redelivered forever. So is a message whose parsing fails
in a way nobody foresaw (``could not be parsed: ...``): it costs only itself, and no message
taken from the buffer is ever dropped (should a poll fail anyway, they go back to the buffer).
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from outage_sentinel.ami import AmiRegistry
from outage_sentinel.config import MqttSourceConfig
from outage_sentinel.events import PollResult, Quarantined, decode_text
from outage_sentinel.sources.ami_payload import AmiPayloadParser, Parsed, PayloadError
from outage_sentinel.sources.base import SourceConfigError, SourceError
from outage_sentinel.topology import Topology

log = structlog.get_logger(__name__)

#: At most this many characters of a quarantined payload are kept.
RAW_LIMIT = 65536

#: How long ``close`` waits for the broker to have read the last acknowledgements, and then
#: for the DISCONNECT to be written.
CLOSE_SECONDS = 5.0

#: The filter ``close`` unsubscribes from to learn the broker has read all before it; never
#: subscribed to (a configured topic of that name gets a suffix, see :func:`barrier_filter`).
BARRIER_FILTER = "outage-sentinel/close-barrier"


def barrier_filter(topics: list[str]) -> str:
    """A topic filter none of ``topics`` is: unsubscribing from it leaves the session's
    subscriptions alone (an UNSUBSCRIBE matches filters exactly, wildcards included)."""
    name = BARRIER_FILTER
    while name in topics:
        name += "/_"
    return name


def tls_problem(config: MqttSourceConfig) -> str | None:
    """What is wrong with the source's TLS files, as the broker connection would find it at
    start (``ca_file: ...``), or None: each file must load (PEM CA certificates; the client
    certificate with its key), and none is given without ``tls: true``."""
    files = {k: getattr(config, k) for k in ("ca_file", "cert_file", "key_file")}
    if not config.tls:
        given = [k for k, v in files.items() if v is not None]
        return f"{given[0]}: only used with tls: true" if given else None
    if config.key_file is not None and config.cert_file is None:
        return "key_file: given without cert_file"
    key = "ca_file"
    try:
        context = ssl.create_default_context()
        if config.ca_file is not None:
            context.load_verify_locations(cafile=str(config.ca_file))
        key = "cert_file"
        if config.cert_file is not None:
            context.load_cert_chain(str(config.cert_file),
                                    str(config.key_file) if config.key_file else None)
    except ssl.SSLError as exc:  # the file is there and is not what it should be
        return f"{key}: cannot load {files[key]} ({exc.reason or exc})"
    except OSError as exc:
        return f"{key}: cannot load {files[key]} ({exc.strerror or exc})"
    return None


class _Message(NamedTuple):
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class MqttSource:
    """Subscribes to AMI event topics; see the module docstring for the delivery contract.

    ``poll`` drains up to ``max_batch`` events from the messages buffered by paho's network
    thread; ``acknowledge`` sends the PUBACKs of a committed poll.
    """

    type = "mqtt"

    def __init__(self, config: MqttSourceConfig, *, registry: AmiRegistry | None = None,
                 topology: Topology | None = None,
                 default_tz: tzinfo | str = "Asia/Shanghai",
                 connect_timeout_seconds: float = 5.0) -> None:
        """``registry`` (or one built from ``topology``'s ``meters.csv``) places devices in
        transformer areas; ``default_tz`` is for payload times without an offset."""
        problem = tls_problem(config)
        if problem is not None:
            raise SourceConfigError(f"sources ({config.name}).{problem}")
        self.config = config
        self.name: str = config.name
        if registry is None and topology is not None:
            registry = AmiRegistry.from_topology(topology)
        self.parser = AmiPayloadParser(config.name, config.ami, registry, default_tz)
        self.connect_timeout_seconds = connect_timeout_seconds
        self._lock = threading.Lock()
        self._buffer: deque[_Message] = deque()
        self._pending: list[tuple[PollResult, list[_Message]]] = []
        self._generation = 0
        self._connected = threading.Event()
        #: Set once the first connection attempt of a start came to an end (connected and
        #: subscribed, or failed): ``start`` waits for no more than that.
        self._settled = threading.Event()
        #: Set once the client's own DISCONNECT (and every PUBACK before it) is written.
        self._gone = threading.Event()
        #: Set by an UNSUBACK (only ``close`` unsubscribes) or a disconnection.
        self._read_up = threading.Event()
        self._last_error = "not started"
        self._client: mqtt.Client | None = None
        self._subscribe_mid: int | None = None
        #: Counters for metrics: messages received / acknowledged, records skipped (not power
        #: codes), records and messages quarantined, connections made.
        self.stats: dict[str, int] = {"messages": 0, "acked": 0, "ignored": 0,
                                      "quarantined": 0, "connects": 0, "requeued": 0}

    # -- Source protocol ----------------------------------------------------------------------

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        """Connect (in the background; paho reconnects by itself) and wait for the first
        attempt's outcome, ``connect_timeout_seconds`` at most: a broker that refuses or
        cannot be reached ends the wait at once (``poll`` then raises "not connected", naming
        why). The daemon makes this start at the source's first poll, never in the lease's
        renewal (``term.py``), since a broker that does not answer is waited for.

        The cursor is unused: the broker session is the cursor.
        """
        c = self.config
        v5 = c.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if c.username is not None:
            client.username_pw_set(
                c.username, c.password.get_secret_value() if c.password is not None else None)
        if c.tls:
            client.tls_set(
                ca_certs=str(c.ca_file) if c.ca_file else None,
                certfile=str(c.cert_file) if c.cert_file else None,
                keyfile=str(c.key_file) if c.key_file else None,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = c.session_expiry_seconds
            properties.ReceiveMaximum = c.receive_maximum
            client.connect_async(c.host, c.port, keepalive=c.keepalive_seconds,
                                 clean_start=False, properties=properties)
        else:
            client.connect_async(c.host, c.port, keepalive=c.keepalive_seconds)
        self._client = client
        self._settled.clear()
        client.loop_start()
        self._settled.wait(self.connect_timeout_seconds)
        if not self._connected.is_set():
            log.warning("mqtt.not_connected", source=self.name, host=c.host, port=c.port,
                        reason=self._last_error)

    def poll(self, now: datetime) -> PollResult:
        """Parse up to ``max_batch`` events from the buffered messages.

        Raises :class:`SourceError` when disconnected with nothing buffered.
        """
        with self._lock:
            if self._pending:
                # The previous result was not acknowledged: its commit failed. Offer it again
                # (its messages are still unacknowledged at the broker).
                requeue = [m for _, msgs in self._pending for m in msgs]
                self._buffer.extendleft(reversed(requeue))
                self.stats["requeued"] += len(requeue)
                self._pending.clear()
        taken: list[_Message] = []
        parsed = Parsed()
        try:
            self._take(taken, parsed)
        except BaseException:
            # Nothing taken may be lost: whatever went wrong, the messages go back, in order.
            with self._lock:
                self._buffer.extendleft(reversed(taken))
            raise
        connected = self._connected.is_set()
        if not taken:
            if not connected:
                c = self.config
                raise SourceError(f"{self.name}: not connected to mqtt://{c.host}:{c.port}: "
                                  f"{self._last_error}")
            return PollResult(not_modified=True)
        self.stats["ignored"] += parsed.ignored
        self.stats["quarantined"] += len(parsed.quarantined)
        result = PollResult(events=parsed.events, quarantined=parsed.quarantined)
        with self._lock:
            self._pending.append((result, taken))
        return result

    def acknowledge(self, result: PollResult) -> None:
        """Send PUBACKs for the messages of a committed poll."""
        with self._lock:
            for i, (pending, taken) in enumerate(self._pending):
                if pending is result:
                    msgs = taken
                    del self._pending[i]
                    break
            else:
                return
            generation = self._generation
        client = self._client
        if client is None:
            return
        acked = 0
        for msg in msgs:
            # A message of an earlier connection: the broker redelivers it (session present)
            # or has forgotten it (session lost); its packet id means nothing now.
            if msg.qos > 0 and msg.generation == generation:
                client.ack(msg.mid, msg.qos)
                acked += 1
        self.stats["acked"] += acked

    def update_topology(self, topology: Topology) -> None:
        """Use a reloaded bundle's ``meters.csv`` from the next poll on."""
        self.parser.registry = AmiRegistry.from_topology(topology)

    def close(self) -> None:
        """Disconnect cleanly once the broker has read the acknowledgements already sent (the
        next connection under this client id may take the session over at once); unacknowledged
        messages stay with the broker's session."""
        client = self._client
        if client is None:
            return
        self._client = None
        was_connected = self._connected.is_set()
        self._gone.clear()
        try:
            if was_connected:
                self._wait_until_read(client)
            client.disconnect()
            # The network thread writes the PUBACKs of the last acknowledge, then the
            # DISCONNECT; stopping it before then would drop them and the broker would deliver
            # those messages again.
            if was_connected:
                self._gone.wait(CLOSE_SECONDS)
        finally:
            client.loop_stop()
            self._connected.clear()

    def _wait_until_read(self, client: mqtt.Client) -> None:
        """Wait (``CLOSE_SECONDS`` at most) until the broker has read all this connection sent
        so far, acknowledgements included: it answers an UNSUBSCRIBE only after reading what
        came before it. Bounded: a broker that never answers costs redeliveries, not a hang."""
        self._read_up.clear()
        if not self._connected.is_set():  # gone meanwhile: nothing more can be read
            return
        rc, _ = client.unsubscribe(barrier_filter(self.config.topics))
        if rc == mqtt.MQTT_ERR_SUCCESS:
            self._read_up.wait(CLOSE_SECONDS)

    # -- inspection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    @property
    def buffered(self) -> int:
        """Messages received and not yet polled (a backlog indicator for metrics)."""
        return len(self._buffer)

    # -- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._last_error = f"connection refused: {reason_code}"
            log.warning("mqtt.connect_refused", source=self.name, reason=str(reason_code))
            self._settled.set()
            return
        with self._lock:
            self._generation += 1
            if flags.session_present:
                # The broker redelivers every unacknowledged message of the session.
                kept = deque(m for m in self._buffer if m.generation == self._generation)
                self._buffer = kept
        self.stats["connects"] += 1
        topics: list[tuple[str, int]] = [(topic, self.config.qos) for topic in self.config.topics]
        # Ready (``connected``) only once the broker confirmed the subscription (SUBACK).
        _, self._subscribe_mid = client.subscribe(topics)
        log.info("mqtt.connected", source=self.name, session_present=flags.session_present)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [f"{t}: {rc}" for t, rc in zip(self.config.topics, reason_codes, strict=False)
                   if rc.is_failure]
        if refused:
            # Not fatal: the other topics flow; the refusal is logged and kept for SourceError.
            self._last_error = f"subscription refused: {'; '.join(refused)}"
            log.error("mqtt.subscribe_refused", source=self.name, topics=refused)
        self._connected.set()
        self._settled.set()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                        reason_codes: list[Any], properties: Any) -> None:
        """The answer ``close`` waits for; its reason (no such subscription) does not matter."""
        self._read_up.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """The broker could not be reached (refused, unreachable, name unknown): paho tries
        again by itself; ``start`` waits no longer."""
        c = self.config
        self._last_error = f"cannot connect to {c.host}:{c.port}"
        self._settled.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        self._gone.set()
        self._settled.set()
        self._read_up.set()
        self._last_error = f"disconnected: {reason_code}"
        if self._client is not None:
            log.warning("mqtt.disconnected", source=self.name, reason=str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        msg = _Message(self._generation, message.mid, message.qos, message.topic,
                       bytes(message.payload))
        with self._lock:
            self._buffer.append(msg)
        self.stats["messages"] += 1

    # -- parsing ------------------------------------------------------------------------------

    def _take(self, taken: list[_Message], parsed: Parsed) -> None:
        """Pop and parse buffered messages into ``taken`` / ``parsed`` until ``max_batch``
        events. Pop under the lock, parse outside it, so paho's network thread is never held
        up."""
        limit = self.config.max_batch
        while len(parsed.events) < limit:
            with self._lock:
                if not self._buffer:
                    break
                msg = self._buffer.popleft()
            taken.append(msg)
            self._parse_safely(msg, parsed)

    def _parse_safely(self, msg: _Message, out: Parsed) -> None:
        """:meth:`_parse`; a failure nobody foresaw quarantines that message alone (it is
        acknowledged with the poll, kept in the quarantine), never the batch."""
        one = Parsed()
        try:
            self._parse(msg, one)
        except Exception as exc:  # a parser bug or an input nobody foresaw
            error = _printable(f"{type(exc).__name__}: {exc}")[:500]
            log.error("mqtt.unparseable", source=self.name, topic=msg.topic, error=error)
            one = Parsed(records=1)
            one.quarantined.append(self._quarantined(
                msg, f"topic {msg.topic}: could not be parsed: {error}"))
        out.extend(one)

    def _quarantined(self, msg: _Message, reason: str) -> Quarantined:
        """The message kept for a person to read: its text as the parser would decode it
        (UTF-8 or GB18030), else with what cannot be decoded replaced."""
        head = msg.payload[:RAW_LIMIT]
        try:
            said = decode_text(head)
        except UnicodeDecodeError:  # cut inside a character, or neither encoding
            said = head.decode("utf-8", errors="replace")
        return Quarantined(self.name, reason, {"topic": msg.topic, "payload": said})

    def _parse(self, msg: _Message, out: Parsed) -> None:
        where = f"topic {msg.topic}"
        try:
            text = decode_text(msg.payload)
            if self.config.payload_format == "json":
                out.extend(self.parser.json_payload(text, where))
            else:
                out.extend(self.parser.csv_text(text, where))
        except (PayloadError, UnicodeDecodeError) as exc:
            reason = (f"{where}: not UTF-8 or GB18030 text: {exc}"
                      if isinstance(exc, UnicodeDecodeError)
                      else f"{where}: {exc}")
            out.records += 1
            out.quarantined.append(self._quarantined(msg, reason))


def _printable(text: str) -> str:
    """``text`` any log or quarantine line can hold: lone surrogates written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
