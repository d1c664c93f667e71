"""The MQTT link: availability with a last will, retained camera state, Home Assistant discovery,
rate-limited detections, and in-order delivery of spooled events once the broker acknowledges them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import ssl
import threading
import time
from collections import deque
from typing import Any

from edgeport.daemon.config import Mqtt
from edgeport.daemon.faults import Faults
from edgeport.daemon.metrics import Metrics
from edgeport.daemon.spool import Spool, is_corruption
from edgeport.errors import MissingDependencyError

log = logging.getLogger("edgeport.daemon")


def _paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MissingDependencyError("paho-mqtt (MQTT output)", "daemon") from exc
    return mqtt


class MqttLink:
    """One broker connection (paho, reconnecting by itself) and the event sender thread."""

    def __init__(self, config: Mqtt, spool: Spool, metrics: Metrics, cameras: list[str],
                 names: tuple[str, ...], faults: Faults | None = None) -> None:
        mqtt = _paho()
        self.config, self.spool, self.metrics = config, spool, metrics
        self.faults = faults if faults is not None else Faults()
        self.cameras, self.names = cameras, names
        self.prefix = config.topic_prefix.rstrip("/")
        self.availability_topic = f"{self.prefix}/availability"
        self._states: dict[str, str] = {}
        # camera states go out under this lock once on_connect has republished them (`_states_live`), so a
        # change that lands while on_connect runs is neither lost nor overwritten by an older value
        self._states_lock = threading.Lock()
        self._states_live = False
        self._connected = threading.Event()
        self._stop = threading.Event()
        client_id = config.client_id or f"edgeport-{'-'.join(cameras)}"[:64]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if config.username is not None:
            self.client.username_pw_set(config.username, config.password)
        if config.tls is not None:
            self.client.tls_set(ca_certs=str(config.tls.ca_certs) if config.tls.ca_certs else None,
                                certfile=str(config.tls.certfile) if config.tls.certfile else None,
                                keyfile=str(config.tls.keyfile) if config.tls.keyfile else None,
                                cert_reqs=ssl.CERT_REQUIRED)
            self.client.tls_insecure_set(config.tls.insecure)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._published = threading.Condition()  # guards the three below; notified by every on_publish
        self._awaiting: dict[int, bool] = {}  # message id of the event in flight -> acknowledged yet
        self._recent_acks: deque[tuple[int, int]] = deque(maxlen=256)  # (ack number, message id)
        self._ack_count = 0
        self._seq = spool.next_seq()
        self._backlog: deque[tuple[int, str, bytes]] = deque(maxlen=config.queue_max_events)
        self._spool_lock = threading.Lock()
        self._sender = threading.Thread(target=self._supervise_sender, name="mqtt-events", daemon=True)
        self.sender_restarts = 0
        self.last_error: str | None = None

    # life cycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self.client.loop_start()
        self._sender.start()

    def stop(self, drain_s: float = 5.0) -> None:
        """Deliver what is spooled for up to `drain_s` seconds, say offline, disconnect."""
        deadline = time.monotonic() + drain_s
        while len(self.spool) and self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.spool.wake()
        self._sender.join(timeout=5)
        with self._spool_lock:
            self._flush_backlog()
        if self._backlog:
            log.error("mqtt: %d events could not be stored (the spool is failing) and are lost at stop",
                      len(self._backlog))
        if self._connected.is_set():
            info = self.client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("mqtt: %s", self.last_error)
            return
        log.info("mqtt: connected to %s:%s", self.config.host, self.config.port)
        self.last_error = None
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        with self._states_lock:
            for camera, state in self._states.items():
                client.publish(f"{self.prefix}/{camera}/state", state, qos=1, retain=True)
            self._states_live = True
        if self.config.home_assistant.enabled:
            self._announce_home_assistant(client)
        self._connected.set()
        self.metrics.mqtt_connected.set(value=1)
        self.spool.wake()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._stop.is_set():
            log.warning("mqtt: disconnected (%s); reconnecting", reason_code)
        self._connected.clear()
        with self._states_lock:
            self._states_live = False
        self.metrics.mqtt_connected.set(value=0)

    # what the daemon publishes ------------------------------------------------------------------------
    def publish_state(self, camera: str, state: str) -> None:
        """Retained camera state; remembered and republished on every (re)connect."""
        with self._states_lock:
            self._states[camera] = state
            if self._states_live:
                self.client.publish(f"{self.prefix}/{camera}/state", state, qos=1, retain=True)

    def publish_detections(self, camera: str, payload: dict[str, Any]) -> bool:
        """Best effort (not spooled): False when the broker is down."""
        if not self._connected.is_set():
            return False
        self.client.publish(f"{self.prefix}/{camera}/detections",
                            json.dumps(payload, separators=(",", ":"), allow_nan=False),
                            qos=0)
        counts = {name: 0 for name in self.names}
        for item in payload.get("detections", []):
            counts[item["class_name"]] = counts.get(item["class_name"], 0) + 1
        self.client.publish(f"{self.prefix}/{camera}/counts", json.dumps(counts, allow_nan=False), qos=0, retain=True)
        self.metrics.published.inc("detections")
        return True

    def enqueue_event(self, camera: str, event: dict[str, Any]) -> int:
        """Spool an event (durable); it is delivered in order once the broker acknowledges it.

        When the spool cannot be written (disk full, corruption) the event waits in memory, in order,
        until the spool takes it again (reported as the 'spool' fault meanwhile). Returns its seq.
        """
        with self._spool_lock:
            seq = self._seq
            payload = json.dumps({**event, "seq": seq}, separators=(",", ":"), allow_nan=False).encode()
            self._seq += 1
            self._backlog.append((seq, f"{self.prefix}/{camera}/events", payload))
            self._flush_backlog()
        return seq

    @property
    def waiting_in_memory(self) -> int:
        """Events the spool could not take yet."""
        return len(self._backlog)

    def _flush_backlog(self) -> None:
        """Move waiting events into the spool, oldest first; stop at the first failure (caller holds the lock)."""
        while self._backlog:
            seq, topic, payload = self._backlog[0]
            try:
                self.spool.put(topic, payload, seq=seq)
            except sqlite3.Error as exc:
                if is_corruption(exc):
                    self.spool.recover(str(exc))
                    self.faults.notice(self.spool.recovered or str(exc))
                    continue
                self.faults.report("spool", f"cannot store events ({exc}); they wait in memory, in order")
                return
            self._backlog.popleft()
            self.faults.clear("spool")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """Every sent QoS 0 message and every PUBACK lands here; only an awaited id counts."""
        with self._published:
            self._ack_count += 1
            self._recent_acks.append((self._ack_count, mid))
            if mid in self._awaiting:
                self._awaiting[mid] = True
            self._published.notify_all()

    def _publish_and_wait(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Publish one event and wait for its PUBACK; False when stopping first.

        Only this message's id is awaited, and forgotten once acknowledged: paho reuses ids after
        65,535, so an id is never taken as acknowledged by an earlier message that had it.
        """
        with self._published:
            before = self._ack_count
        info = self.client.publish(topic, payload, qos=max(1, self.config.qos), retain=retain)
        with self._published:
            # a PUBACK that came back before the id was registered (acks numbered after `before`)
            early = any(n > before and mid == info.mid for n, mid in self._recent_acks)
            self._awaiting[info.mid] = early
            try:
                while not self._awaiting[info.mid] and not self._stop.is_set():
                    self._published.wait(0.5)
                return self._awaiting[info.mid]
            finally:
                del self._awaiting[info.mid]

    def _supervise_sender(self) -> None:
        """Run the sender; when it fails (an SQLite error: disk full, corruption) report it and start it
        again after a capped exponential backoff, until stopped."""
        failures = 0
        while not self._stop.is_set():
            delivered = self.metrics.published.value("events")
            try:
                self._send_events()
                return
            except Exception as exc:  # the sender must outlive any error; the fault is shown in /health
                progressed = self.metrics.published.value("events") > delivered
                failures = 1 if progressed else failures + 1  # the backoff starts again after a success
                self.sender_restarts += 1
                if is_corruption(exc):
                    with self._spool_lock:
                        self.spool.recover(str(exc))
                    self.faults.notice(self.spool.recovered or str(exc))
                self.faults.report("event_sender", f"{type(exc).__name__}: {exc}; restarting")
                self._stop.wait(min(30.0, 0.25 * 2 ** min(failures - 1, 8)))

    def _send_events(self) -> None:
        """One event in flight at a time, so order holds across disconnects.

        A message handed to paho stays in its session and is sent again after a reconnect, so it is
        published once and acknowledged (removed from the spool) only when the broker's PUBACK arrives.
        """
        while not self._stop.is_set():
            if self._backlog:
                with self._spool_lock:
                    self._flush_backlog()
            if not self._connected.wait(timeout=0.5):
                continue
            item = self.spool.peek(timeout=0.5)
            if item is None:
                self.faults.clear("event_sender")
                continue
            seq, topic, payload, retain = item
            if not self._publish_and_wait(topic, payload, retain):
                return  # stopping: the event stays spooled and is sent after the next start
            self.spool.ack(seq)
            self.faults.clear("event_sender")
            self.metrics.published.inc("events")

    def _announce_home_assistant(self, client) -> None:
        """Home Assistant MQTT discovery: one sensor per camera and class (object count), one per camera state."""
        prefix = self.config.home_assistant.discovery_prefix.rstrip("/")
        device = {"identifiers": [f"edgeport-{'-'.join(self.cameras)}"], "name": "edgeport", "manufacturer": "edgeport"}
        for camera in self.cameras:
            for name in self.names:
                slug = "".join(c if c.isalnum() else "_" for c in name)
                config = {
                    "name": f"{camera} {name} count", "unique_id": f"edgeport_{camera}_{slug}",
                    "state_topic": f"{self.prefix}/{camera}/counts",
                    "value_template": f"{{{{ value_json['{name}'] | default(0) }}}}",
                    "availability_topic": self.availability_topic, "unit_of_measurement": "objects",
                    "device": device,
                }
                client.publish(f"{prefix}/sensor/edgeport_{camera}_{slug}/config",
                               json.dumps(config, allow_nan=False), qos=1, retain=True)
            state = {"name": f"{camera} source", "unique_id": f"edgeport_{camera}_state",
                     "state_topic": f"{self.prefix}/{camera}/state",
                     "availability_topic": self.availability_topic, "device": device}
            client.publish(f"{prefix}/sensor/edgeport_{camera}_state/config", json.dumps(state, allow_nan=False),
                           qos=1, retain=True)
