"""The running daemon under hostile input and failing parts: a decompression bomb on POST /detect, a full
disk under the state folder, camera credentials, NaN model outputs, failed snapshots."""

from __future__ import annotations

import http.client
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_support import free_port, wait_for
from test_faults import small_disk  # noqa: F401 (fixture)
from test_mqtt import Subscriber

from edgeport.daemon.config import parse_config
from edgeport.daemon.events import Event, SnapshotStore
from edgeport.daemon.service import Daemon

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))  # the bomb's maker
from test_image_bomb import bomb_png  # noqa: E402


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _up(port: int) -> bool:
    try:
        return _get(port, "/health")[0] == 200
    except OSError:
        return False


def _post(port: int, data: bytes, content_type: str = "image/png") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/detect", body=data, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _start(text: str) -> tuple[Daemon, threading.Thread]:
    daemon = Daemon(parse_config(text))
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    wait_for(lambda: daemon.http is None or daemon.http._server.started, what="http server")
    return daemon, thread


def test_bomb_on_post_detect_is_refused_and_the_daemon_stays_small(tmp_path, onnx_artifact, camera_video):
    port = free_port()
    config = tmp_path / "edgeport.yaml"
    config.write_text(f"model: {onnx_artifact}\ncameras: [{{id: yard, source: {camera_video}, loop: true, fps: 10}}]\n"
                      f"state_dir: {tmp_path}/state\nhttp: {{port: {port}}}\n")
    process = subprocess.Popen([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _up(port) or process.poll() is not None, timeout=60, interval=0.5, what="daemon up")
        bomb = bomb_png()
        results: list[tuple[int, str]] = []
        for _ in range(3):  # 3 clients at once, 3 times
            clients = [threading.Thread(target=lambda: results.append(_post(port, bomb))) for _ in range(3)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        assert [status for status, _ in results] == [413] * 9
        assert "100000x100000" in results[0][1]
        peak_kb = int(next(line.split()[1] for line in open(f"/proc/{process.pid}/status")
                           if line.startswith("VmHWM")))
        assert peak_kb / 1024 < 600, f"daemon peak RSS {peak_kb / 1024:.0f} MB"
        assert _get(port, "/health")[0] == 200
    finally:
        process.terminate()
        process.wait(20)


def test_full_disk_end_to_end(small_disk, broker, onnx_artifact, camera_video):  # noqa: F811
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    daemon, thread = _start(f"""
model: {onnx_artifact}
cameras: [{{id: yard, source: {camera_video}, loop: true, fps: 20}}]
state_dir: {small_disk.folder}
mqtt: {{port: {broker.port}}}
http: {{port: 0}}
events: {{min_hits: 1, max_misses: 1, max_snapshots: 8}}
""")
    # 8 snapshots (about 0.2 MB) fit the 1 MB disk: with the default 200, the backlog's snapshots filled the
    # freed disk again under load, and the fault (rightly) came back before /health was read
    port = daemon.http.port
    try:
        wait_for(lambda: len(subscriber.on("/events")) >= 3, timeout=30, what="first events")
        small_disk.fill()
        wait_for(lambda: json.loads(_get(port, "/health")[1])["faults"], timeout=30, what="a fault in /health")
        health = json.loads(_get(port, "/health")[1])
        said = json.dumps(health["faults"])  # SQLite's words or the OS's (a snapshot write)
        assert health["status"] == "degraded" and ("disk is full" in said or "No space left" in said)
        assert 'edgeport_fault{component="' in _get(port, "/metrics")[1]
        frames = daemon.processed
        wait_for(lambda: daemon.processed > frames + 10, what="detection goes on with a full disk")
        small_disk.free()
        wait_for(lambda: not json.loads(_get(port, "/health")[1])["faults"], timeout=60, what="faults cleared")
        assert json.loads(_get(port, "/health")[1])["status"] == "ok"
    finally:
        daemon.stop()
        thread.join(30)
    events = int(daemon.metrics.events.value("yard", "appeared") + daemon.metrics.events.value("yard", "left"))
    wait_for(lambda: len({json.loads(p)["seq"] for p in subscriber.on("/events")}) >= events, timeout=30,
             what="every event delivered")
    seqs = list(dict.fromkeys(json.loads(p)["seq"] for p in subscriber.on("/events")))
    assert sorted(seqs) == list(range(1, events + 1))
    assert any("snapshot_error" in json.loads(p) for p in subscriber.on("/events"))
    assert not list((small_disk.folder / "snapshots").glob("*.tmp"))
    subscriber.close()


def test_camera_credentials_never_shown(tmp_path, onnx_artifact, caplog, capfd):
    url = f"rtsp://admin:S3cretPass@127.0.0.1:{free_port()}/stream"
    caplog.set_level(logging.INFO, logger="edgeport.daemon")
    daemon, thread = _start(f"""
model: {onnx_artifact}
cameras: [{{id: door, source: "{url}", timeout_s: 1, reconnect: {{initial_s: 0.1, max_s: 0.2}}}}]
state_dir: {tmp_path / "state"}
http: {{port: 0}}
""")
    try:
        wait_for(lambda: daemon.captures["door"].reconnects >= 2, timeout=30, what="failed attempts")
        status, body = _get(daemon.http.port, "/health")
        assert "rtsp://***@127.0.0.1" in body
    finally:
        daemon.stop()
        thread.join(30)
    captured = capfd.readouterr()
    for text in (body, caplog.text, captured.out, captured.err):
        assert "S3cretPass" not in text


def test_nan_model_outputs_give_no_500_and_strict_json(tmp_path, onnx_artifact, camera_video, val_images):
    daemon, thread = _start(f"""
model: {onnx_artifact}
cameras: [{{id: yard, source: {camera_video}, loop: true, fps: 10}}]
state_dir: {tmp_path / "state"}
http: {{port: 0}}
jsonl: {{path: {tmp_path / "out.jsonl"}}}
""")
    invoke = daemon.detector.backend.invoke

    def poisoned(tensor):  # the real model runs; a fault then puts NaN and Inf into its outputs
        outputs = [o.copy() for o in invoke(tensor)]
        for out in outputs:
            flat = out.reshape(-1)
            flat[::7] = np.nan
            flat[3::11] = np.inf
        return outputs

    daemon.detector.backend.invoke = poisoned
    try:
        status, body = _post(daemon.http.port, val_images[0].read_bytes(), "image/jpeg")
        assert status == 200, body
        json.loads(body, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
        wait_for(lambda: daemon.processed > 5, what="frames through the poisoned model")
    finally:
        daemon.stop()
        thread.join(30)
    for line in (tmp_path / "out.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert sum(s.errors for s in daemon.sinks) == 0


def test_failed_snapshot_leaves_no_tmp_and_stale_tmp_is_cleaned(small_disk):  # noqa: F811
    folder = small_disk.folder / "snapshots"
    folder.mkdir()
    (folder / "yard-1-1-appeared.tmp").write_bytes(b"half a jpeg")
    store = SnapshotStore(folder, 10)
    assert not list(folder.glob("*.tmp"))
    small_disk.fill()
    event = Event("yard", "appeared", 1, "circle", 0.9, (0, 0, 10, 10), time.time(), 1)
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with pytest.raises(OSError):
        store.save(noise, event)
    assert not list(folder.glob("*.tmp")) and len(store) == 0


def test_corrupt_spool_at_start_end_to_end(tmp_path, broker, onnx_artifact, camera_video):
    """A daemon restarted over a corrupt spool (systemd would crash-loop it before) starts, says so once
    in /health and the log, and numbers its events after the last seq it ever gave."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "mqtt-spool.sqlite").write_bytes(b"\x00not sqlite\x00" * 700)
    (state / "mqtt-spool.sqlite.seq").write_text("41\n")  # the seq the previous run reached
    subscriber = Subscriber(broker.port, topic="edgeport/+/events")
    daemon, thread = _start(f"""
model: {onnx_artifact}
cameras: [{{id: yard, source: {camera_video}, loop: true, fps: 20}}]
state_dir: {state}
mqtt: {{port: {broker.port}}}
http: {{port: 0}}
events: {{min_hits: 1, max_misses: 1}}
""")
    try:
        health = json.loads(_get(daemon.http.port, "/health")[1])
        assert len(health["notices"]) == 1 and "corrupt" in health["notices"][0]
        assert "seq continues after 41" in health["notices"][0]
        wait_for(lambda: len(subscriber.on("/events")) >= 3, timeout=30, what="events after the restart")
    finally:
        daemon.stop()
        thread.join(30)
    seqs = [json.loads(p)["seq"] for p in subscriber.on("/events")]
    assert seqs[:3] == [42, 43, 44]
    assert len(list(state.glob("mqtt-spool.sqlite.corrupt-*"))) == 1
    subscriber.close()


def test_run_with_a_password_in_the_url_never_prints_it(onnx_artifact):
    url = f"rtsp://admin:S3cretPass@127.0.0.1:{free_port()}/stream"
    result = subprocess.run([sys.executable, "-m", "edgeport.cli", "run", "--model", str(onnx_artifact),
                             "--source", url, "--retries", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "rtsp://***@127.0.0.1" in result.stderr
    assert "S3cretPass" not in result.stdout + result.stderr
