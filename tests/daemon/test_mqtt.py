"""MQTT against a real mosquitto: availability and last will, retained state, discovery, and no lost
events when the broker dies mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from daemon_support import wait_for

from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon


class Subscriber:
    """A paho client that records every message; a persistent session so nothing is missed across
    a broker restart (mosquitto saves sessions on SIGTERM)."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-subscriber") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(lambda: self.client.is_connected(), what="subscriber connection")
        time.sleep(0.2)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _config(tmp_path, port: int, video, **extra):
    text = f"""
model: {extra.pop("model")}
cameras:
  - id: yard
    source: {video}
    loop: true
    fps: 25
state_dir: {tmp_path / "state"}
mqtt:
  port: {port}
  detections_max_hz: 5
  home_assistant: {{enabled: true}}
events: {{min_hits: 1, max_misses: 1}}
"""
    return parse_config(text)


def _run(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return thread


def test_availability_state_discovery_and_rate_limited_detections(tmp_path, broker, camera_video, onnx_artifact):
    subscriber = Subscriber(broker.port)
    daemon = Daemon(_config(tmp_path, broker.port, camera_video, model=onnx_artifact))
    thread = _run(daemon)
    try:
        _check_outputs(daemon, subscriber)
    finally:
        daemon.stop()
        thread.join(20)
    assert not thread.is_alive()
    wait_for(lambda: subscriber.on("edgeport/availability")[-1] == b"offline", what="offline on clean stop")
    subscriber.close()

    # a late subscriber sees the retained state and availability
    late = Subscriber(broker.port, client_id="late")
    wait_for(lambda: late.on("/yard/state") and late.on("edgeport/availability"), what="retained messages")
    assert late.on("/yard/state")[-1] == b"stopped" and late.on("edgeport/availability")[-1] == b"offline"
    late.close()


def _check_outputs(daemon, subscriber) -> None:
    wait_for(lambda: len(subscriber.on("/yard/detections")) >= 5, what="detections")
    started = time.monotonic()
    count = len(subscriber.on("/yard/detections"))
    time.sleep(2.0)
    rate = (len(subscriber.on("/yard/detections")) - count) / (time.monotonic() - started)
    assert rate <= 5 * 1.3  # detections_max_hz: 5, while the loop runs faster
    assert daemon.processed / max(1e-9, time.monotonic() - daemon._started) > rate
    detection = json.loads(subscriber.on("/yard/detections")[-1])
    assert detection["camera"] == "yard" and "detections" in detection
    assert subscriber.on("edgeport/availability")[0] == b"online"
    assert subscriber.on("/yard/state")[-1] == b"connected"
    discovery = [json.loads(p) for t, p, _ in subscriber.messages if t.startswith("homeassistant/sensor/")]
    assert {d["unique_id"] for d in discovery} >= {"edgeport_yard_circle", "edgeport_yard_state"}
    assert all(d["availability_topic"] == "edgeport/availability" for d in discovery)
    counts = json.loads(subscriber.on("/yard/counts")[-1])
    assert set(counts) == {"circle", "square", "triangle"}


def test_last_will_when_the_daemon_dies(tmp_path, broker, camera_video, onnx_artifact):
    config = tmp_path / "edgeport.yaml"
    config.write_text(f"model: {onnx_artifact}\ncameras: [{{id: yard, source: {camera_video}, loop: true}}]\n"
                      f"state_dir: {tmp_path}/state\nmqtt: {{port: {broker.port}, keepalive: 5}}\n")
    subscriber = Subscriber(broker.port)
    process = subprocess.Popen([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: subscriber.on("edgeport/availability") == [b"online"], what="online")
        process.send_signal(signal.SIGKILL)  # no chance to say goodbye: the broker publishes the will
        process.wait(10)
        wait_for(lambda: subscriber.on("edgeport/availability")[-1:] == [b"offline"], timeout=20, what="last will")
    finally:
        process.kill()
        subscriber.close()


def test_no_event_lost_or_reordered_when_the_broker_dies(tmp_path, broker, camera_video, onnx_artifact):
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    daemon = Daemon(_config(tmp_path, broker.port, camera_video, model=onnx_artifact))
    thread = _run(daemon)
    try:
        wait_for(lambda: len(subscriber.on("/events")) >= 10, what="first events")

        broker.stop()  # the broker dies mid-run
        wait_for(lambda: not daemon.mqtt.connected, what="daemon notices the broker is gone")
        frames_then = daemon.processed
        wait_for(lambda: len(daemon.spool) >= 10, what="events spooled on disk while the broker is down")
        wait_for(lambda: daemon.processed > frames_then + 5, what="the loop goes on without the broker")
        health, ok = daemon.health()
        assert ok and health["mqtt"]["connected"] is False and health["mqtt"]["queued_events"] >= 10

        broker.start()  # it comes back on the same port
        wait_for(lambda: daemon.mqtt.connected, timeout=40, what="daemon reconnects")
        wait_for(lambda: len(daemon.spool) < 5, timeout=30, what="spool drains")
    finally:
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive()
    last_seq = max(json.loads(p)["seq"] for p in subscriber.on("/events")) if subscriber.on("/events") else 0
    wait_for(lambda: len({json.loads(p)["seq"] for p in subscriber.on("/events")}) >= last_seq, timeout=20,
             what="every event")
    seqs = [json.loads(p)["seq"] for p in subscriber.on("/events")]
    unique = list(dict.fromkeys(seqs))  # at-least-once: a redelivered duplicate is allowed, a gap is not
    assert unique == sorted(unique), "events arrived out of order"
    assert unique == list(range(1, len(unique) + 1)), "an event was lost"
    assert daemon.metrics.events.value("yard", "appeared") + daemon.metrics.events.value("yard", "left") == len(unique)
    subscriber.close()


def _make_certificates(folder) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    from conftest import require_program

    openssl = require_program("openssl")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "ca_key", "server", "server_key")}
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edgeport test CA",
        "-keyout", paths["ca_key"], "-out", paths["ca"])
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", paths["server_key"],
        "-out", str(folder / "server.csr"))
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(folder / "server.csr"), "-CA", paths["ca"], "-CAkey", paths["ca_key"],
        "-CAcreateserial", "-days", "2", "-extfile", str(folder / "ext.cnf"), "-out", paths["server"])
    return paths


def test_tls_and_password(tmp_path, camera_video, onnx_artifact):
    from conftest import require_program
    from daemon_support import Broker, free_port

    certs = _make_certificates(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run([require_program("mosquitto_passwd"), "-c", "-b", str(passwords), "camera", "pa55"], check=True)
    port = free_port()
    secure = Broker(tmp_path, port)
    secure.conf.write_text(f"{Broker.user_line()}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
                           f"cafile {certs['ca']}\ncertfile {certs['server']}\nkeyfile {certs['server_key']}\n")
    secure.start()
    try:
        def daemon_with(password: str) -> Daemon:
            return Daemon(parse_config(f"""
model: {onnx_artifact}
cameras: [{{id: yard, source: {camera_video}, loop: true}}]
state_dir: {tmp_path / ("state-" + password)}
mqtt: {{port: {port}, username: camera, password: {password}, tls: {{ca_certs: {certs['ca']}}}}}
"""))

        good = daemon_with("pa55")
        thread = _run(good)
        wait_for(lambda: good.mqtt.connected, what="TLS connection with the right password")
        good.stop()
        thread.join(20)

        bad = daemon_with("wrong")
        thread = _run(bad)
        wait_for(lambda: bad.mqtt.last_error, what="refusal")
        body, ok = bad.health()
        assert ok and body["mqtt"]["connected"] is False and "refused" in body["mqtt"]["error"]
        assert bad.processed >= 0 and thread.is_alive()  # a refused broker does not stop detection
        bad.stop()
        thread.join(20)
    finally:
        secure.stop()
