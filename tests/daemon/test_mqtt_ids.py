"""paho reuses message ids after 65,535: with a real mosquitto frozen (SIGSTOP) after more publishes than
that, an event must stay spooled until its own PUBACK, and arrive once the broker resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

from daemon_support import DAEMON_PROCESS, free_port, wait_for
from test_mqtt import Subscriber

from edgeport.daemon.config import Mqtt
from edgeport.daemon.metrics import Metrics
from edgeport.daemon.mqtt import MqttLink
from edgeport.daemon.spool import Spool

WRAP = 65_536 + 500


def _link(tmp_path, port: int) -> MqttLink:
    spool = Spool(tmp_path / "spool.sqlite", 1000)
    link = MqttLink(Mqtt(port=port, keepalive=60), spool, Metrics(), ["yard"], ("circle",))
    link.start()
    wait_for(lambda: link.connected, what="link connected")
    return link


def _publish_past_the_wrap(link: MqttLink, count: int = WRAP) -> float:
    """QoS 0 publishes while the broker is up (what detections do); returns the seconds it took."""
    started = time.perf_counter()
    for i in range(count):
        link.client.publish("edgeport/yard/detections", b"{}", qos=0)
        if i % 5000 == 0:  # let paho's network thread drain its queue
            wait_for(lambda: not link.client.want_write(), what="paho queue drained")
    wait_for(lambda: not link.client.want_write(), what="paho queue drained")
    return time.perf_counter() - started


def test_events_survive_id_reuse_with_a_frozen_broker(tmp_path, broker):
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    link = _link(tmp_path, broker.port)
    try:
        link.enqueue_event("yard", {"event": "appeared", "n": 0})
        wait_for(lambda: len(subscriber.on("/events")) == 1, what="first event")
        _publish_past_the_wrap(link)
        broker.process.send_signal(signal.SIGSTOP)
        try:
            for n in range(1, 6):
                link.enqueue_event("yard", {"event": "appeared", "n": n})
            time.sleep(2.0)  # with ids taken as acknowledged, the spool would empty here
            assert len(link.spool) >= 4, "events left the spool without a PUBACK"
            assert link.metrics.published.value("events") == 1
        finally:
            broker.process.send_signal(signal.SIGCONT)
        wait_for(lambda: len(link.spool) == 0, timeout=30, what="spool drained after the broker resumed")
        wait_for(lambda: len(subscriber.on("/events")) >= 6, timeout=10, what="every event")
    finally:
        link.stop(drain_s=1)
        subscriber.close()
    seqs = [json.loads(p)["seq"] for p in subscriber.on("/events")]
    assert list(dict.fromkeys(seqs)) == [1, 2, 3, 4, 5, 6]
    assert link.metrics.published.value("events") == 6
    assert not link._awaiting, "acknowledged ids are forgotten"


class _DaemonProcess:
    """A real daemon in its own process (tests/daemon_support.DAEMON_PROCESS), talked to on stdin and HTTP."""

    def __init__(self, config: str, port: int) -> None:
        self.port = port
        self.child = subprocess.Popen([sys.executable, "-c", DAEMON_PROCESS, config], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        assert self.child.stdout.readline().strip() == "ready"

    def paho_mid(self, move_to: int | None = None) -> int:
        """paho's last message id in the daemon (moved to `move_to` when given)."""
        self.child.stdin.write(f"paho_mid {'' if move_to is None else move_to}\n")
        self.child.stdin.flush()
        return int(self.child.stdout.readline().split()[1])

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.communicate("stop\n", timeout=60)


def test_daemon_delivers_every_spooled_event_once_across_the_id_wrap(tmp_path, broker, onnx_artifact, camera_video):
    subscriber = Subscriber(broker.port, topic="edgeport/+/events", client_id="wrap-subscriber")
    port = free_port()
    daemon = _DaemonProcess(f"""
model: {onnx_artifact}
cameras: [{{id: yard, source: {camera_video}, loop: true, fps: 10}}]
state_dir: {tmp_path / "state"}
mqtt: {{port: {broker.port}, keepalive: 60}}
http: {{port: {port}}}
events: {{min_hits: 1, max_misses: 1}}
""", port)
    try:
        wait_for(lambda: len(subscriber.on("/events")) >= 2, timeout=60, what="first events")
        daemon.paho_mid(65_535 - 15)  # a few publishes short of the wrap (a QoS 0 detection takes an id too)
        broker.process.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: daemon.paho_mid() < 1000, timeout=30, what="paho's ids past 65,535")
            wait_for(lambda: daemon.health()["mqtt"]["queued_events"] >= 3, timeout=30,
                     what="events spooled while the broker is frozen")
            time.sleep(1.0)  # with ids taken as acknowledged, the spool would empty here
            frozen = daemon.health()["mqtt"]
            assert frozen["queued_events"] >= 3, "events left the spool without a PUBACK"
        finally:
            broker.process.send_signal(signal.SIGCONT)
        wait_for(lambda: daemon.health()["mqtt"]["queued_events"] == 0, timeout=60, what="spool drained")
    finally:
        daemon.stop()
        time.sleep(0.5)  # the last PUBLISH reaches the subscriber
        subscriber.close()
    seqs = [json.loads(p)["seq"] for p in subscriber.on("/events")]
    assert len(seqs) >= 2 + frozen["queued_events"]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "an event was lost or delivered twice"
    assert daemon.child.returncode == 0


def test_a_camera_state_that_changes_while_the_link_connects_is_published(tmp_path, broker):
    """The camera thread may report a state while on_connect is republishing the remembered ones: that
    state must still reach the broker (it used to be remembered but never sent until a reconnect)."""
    spool = Spool(tmp_path / "spool.sqlite", 1000)
    link = MqttLink(Mqtt(port=broker.port, keepalive=60, home_assistant={"enabled": True}), spool, Metrics(),
                    ["yard"], ("circle",))
    announce = link._announce_home_assistant

    def announce_while_the_camera_connects(client) -> None:  # runs inside on_connect, after the states
        link.publish_state("yard", "connected")
        announce(client)

    link._announce_home_assistant = announce_while_the_camera_connects
    subscriber = Subscriber(broker.port)
    link.start()
    try:
        wait_for(lambda: subscriber.on("/yard/state"), what="the camera state")
        assert subscriber.on("/yard/state")[-1] == b"connected"
    finally:
        link.stop(drain_s=1)
        subscriber.close()
