"""paho reuses message ids after 65,535: with a real mosquitto frozen (SIGSTOP) after more publishes than
that, an event must stay spooled until its own PUBACK, and arrive once the broker resumes."""

from __future__ import annotations

import json
import signal
import time

from daemon_support import wait_for
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
