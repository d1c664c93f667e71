"""The daemon's life cycle: clean SIGTERM drain, sd_notify and the watchdog, recovery of a cut source,
multi-camera batching; and `edgeport run`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import pytest
from daemon_support import wait_for

from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon
from edgeport.runtime import Detector


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_sigterm_drains_every_frame_to_the_sinks_and_notifies_systemd(tmp_path, onnx_artifact, camera_video):
    jsonl = tmp_path / "out" / "detections.jsonl"
    config = tmp_path / "edgeport.yaml"
    config.write_text(f"model: {onnx_artifact}\ncameras: [{{id: lane, source: {camera_video}, loop: true}}]\n"
                      f"state_dir: {tmp_path}/state\njsonl: {{path: {jsonl}}}\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: any(m.startswith("READY=1") for m in notify.messages), what="READY=1")
        wait_for(lambda: notify.messages.count("WATCHDOG=1") >= 3, what="watchdog pings from the loop")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        notify.close()
    assert process.returncode == 0, stderr
    assert "STOPPING=1" in notify.messages
    processed = int(stderr.rsplit("stopped after ", 1)[1].split()[0])
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    frames = [line for line in lines if "frame" in line and "event" not in line]
    assert processed > 0 and len(frames) == processed  # every frame run reached the sink before exit
    assert [f["frame"] for f in frames] == sorted(f["frame"] for f in frames)
    events = [line for line in lines if "event" in line]
    assert events and {e["event"] for e in events} <= {"appeared", "left"}
    assert all(os.path.exists(e["snapshot"]) for e in events[-5:])


class SlowOnce:
    """Wraps a real detector: one call hangs for `seconds` (a stuck accelerator)."""

    def __init__(self, detector: Detector, seconds: float, at_call: int = 5) -> None:
        self._detector, self.seconds, self.at_call, self.calls = detector, seconds, at_call, 0

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def infer(self, tensor):
        self.calls += 1
        if self.calls == self.at_call:
            time.sleep(self.seconds)
        return self._detector.infer(tensor)


def test_watchdog_reports_a_stuck_inference(tmp_path, onnx_artifact, camera_video, monkeypatch):
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config = parse_config(f"model: {onnx_artifact}\ncameras: [{{id: c, source: {camera_video}, loop: true}}]\n"
                          f"state_dir: {tmp_path}/state\nwatchdog: {{stall_s: 0.8}}\n")
    daemon = Daemon(config, detector=SlowOnce(Detector(onnx_artifact), seconds=3.0))
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: daemon.stalled, what="stall detected")
        body, ok = daemon.health()
        assert not ok and body["status"] == "stalled"
        wait_for(lambda: any("WATCHDOG=trigger" in m for m in notify.messages), what="WATCHDOG=trigger")
        pings_during_stall = notify.messages.count("WATCHDOG=1")
        wait_for(lambda: not daemon.stalled, timeout=10, what="recovery after the stall")
        assert daemon.health()[1]
        wait_for(lambda: notify.messages.count("WATCHDOG=1") > pings_during_stall, what="pings resume")
    finally:
        daemon.stop()
        thread.join(20)
        notify.close()


def test_daemon_recovers_a_cut_source_by_itself(tmp_path, onnx_artifact, camera_video):
    video = tmp_path / "cam.mp4"
    shutil.copy(camera_video, video)
    config = parse_config(f"""
model: {onnx_artifact}
cameras:
  - {{id: c, source: {video}, loop: true, policy: latest, reconnect: {{initial_s: 0.05, max_s: 0.3}}}}
state_dir: {tmp_path}/state
""")
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: daemon.processed > 5, what="frames")
        video.rename(tmp_path / "away.mp4")
        wait_for(lambda: daemon.health()[0]["cameras"]["c"]["state"] == "reconnecting", what="reconnecting")
        body, ok = daemon.health()
        assert ok and body["status"] == "degraded"
        assert 'edgeport_source_state{camera="c",state="reconnecting"} 1' in daemon.metrics_text()
        (tmp_path / "away.mp4").rename(video)
        wait_for(lambda: daemon.health()[0]["cameras"]["c"]["state"] == "connected", what="recovered")
        before = daemon.processed
        wait_for(lambda: daemon.processed > before + 5, what="frames after recovery")
        assert daemon.metrics.reconnects.value("c") >= 1 and daemon.health()[0]["status"] == "ok"
    finally:
        daemon.stop()
        thread.join(20)


@pytest.fixture(scope="module")
def batch2_onnx(tmp_path_factory, sample_model):
    """Ultralytics' own ONNX export with a fixed batch of 2."""
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    local = tmp_path_factory.mktemp("batch2") / sample_model.name
    shutil.copy(sample_model, local)
    return YOLO(str(local)).export(format="onnx", imgsz=320, batch=2, device="cpu", verbose=False)


def test_frames_of_several_cameras_share_one_invoke(tmp_path, batch2_onnx, camera_video):
    config = parse_config(f"""
model: {batch2_onnx}
cameras:
  - {{id: left, source: {camera_video}}}
  - {{id: right, source: {camera_video}}}
state_dir: {tmp_path}/state
""")
    daemon = Daemon(config)
    batches = []
    invoke = daemon.detector.backend.invoke
    daemon.detector.backend.invoke = lambda tensor: (batches.append(len(tensor)), invoke(tensor))[1]
    daemon.run(install_signals=False)  # files without loop: returns when both have ended
    assert daemon.metrics.frames.value("left") == 20 and daemon.metrics.frames.value("right") == 20
    assert set(batches) == {2} and len(batches) <= 22  # two cameras per invoke (a few may be padded)
    detector = Detector(batch2_onnx)
    last = cv2.cvtColor(daemon._latest["left"][0].frame.bgr, cv2.COLOR_BGR2RGB)
    expected = detector.detect_rgb([last, last])[0]
    assert len(daemon.latest("left")[0]) == len(expected)


def test_run_prints_one_line_per_frame_and_saves_the_video(tmp_path, onnx_artifact, camera_video):
    out = tmp_path / "annotated.mp4"
    result = subprocess.run([sys.executable, "-m", "edgeport.cli", "run", "--model", str(onnx_artifact),
                             "--source", str(camera_video), "--save", str(out), "--show-fps"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frame"] for line in lines] == list(range(1, 21))
    assert sum(len(line["detections"]) for line in lines) > 20
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    capture.release()


def test_run_with_a_dead_source_is_one_clear_error(tmp_path, onnx_artifact):
    result = subprocess.run([sys.executable, "-m", "edgeport.cli", "run", "--model", str(onnx_artifact),
                             "--source", str(tmp_path / "missing.mp4"), "--retries", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # reconnect attempts are logged before it
    assert last.startswith("edgeport: error:") and "missing.mp4" in last and "gave up after 2 attempts" in last


def test_port_in_use_is_a_config_error_and_nothing_keeps_running(tmp_path, onnx_artifact, camera_video):
    from daemon_support import free_port

    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    config = tmp_path / "edgeport.yaml"
    config.write_text(f"model: {onnx_artifact}\ncameras: [{{id: c, source: {camera_video}}}]\n"
                      f"state_dir: {tmp_path}/state\nhttp: {{port: {port}}}\n")
    try:
        result = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("edgeport: error: http: cannot listen on")


def test_daemon_never_imports_the_heavy_stack(tmp_path, onnx_artifact, camera_video):
    code = f"""
import sys, threading
from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon
config = parse_config('''
model: {onnx_artifact}
cameras: [{{id: c, source: {camera_video}}}]
state_dir: {tmp_path}/state
http: {{port: 0}}
jsonl: {{path: {tmp_path}/d.jsonl}}
''')
daemon = Daemon(config)
daemon.run(install_signals=False)
heavy = sorted(m for m in ("torch", "tensorflow", "ultralytics", "coremltools") if m in sys.modules)
print(daemon.processed, heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "20" and result.stdout.strip().endswith("[]")
