"""Capture threads: policies, fps cap, end of file, reconnect with backoff, failure after max attempts."""

from __future__ import annotations

import random
import shutil
import sys
import time
import types

import cv2
import numpy as np
import pytest
from daemon_support import wait_for

from edgeport.daemon.config import Camera, Reconnect
from edgeport.daemon.sources import (
    CaptureThread,
    FolderSource,
    Picamera2Source,
    SourceEnded,
    SourceError,
    backoff_delays,
    csi_pipeline,
    make_source,
    source_kind,
)


def _drain(capture: CaptureThread, timeout: float = 20.0, pause: float = 0.0) -> list:
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = capture.take(timeout=0.1)
        if frame is not None:
            frames.append(frame)
            time.sleep(pause)
        elif capture.state in ("ended", "failed") and not capture.alive and capture.take() is None:
            break
    return frames


def test_source_kinds_from_the_source_string(tmp_path):
    kinds = {0: "v4l2", "2": "v4l2", "/dev/video0": "v4l2", "rtsp://cam/1": "url", "http://cam/mjpg": "url",
             "picamera2": "picamera2", "picamera2:1": "picamera2", "csi:0": "csi", str(tmp_path): "folder",
             "clip.mp4": "file"}
    for source, kind in kinds.items():
        assert source_kind(Camera(id="c", source=source)) == kind, source


def test_every_policy_delivers_every_frame_of_a_file(camera_video):
    capture = CaptureThread(Camera(id="c", source=str(camera_video))).start()
    assert capture.policy == "every"
    frames = _drain(capture, pause=0.01)  # a consumer slower than the file: nothing may be lost
    assert [f.index for f in frames] == list(range(1, 21))
    assert capture.state == "ended" and capture.dropped == 0
    assert frames[0].bgr.shape == (360, 480, 3)


def test_latest_policy_never_builds_a_queue(camera_video):
    capture = CaptureThread(Camera(id="c", source=str(camera_video), policy="latest")).start()
    wait_for(lambda: capture.state == "ended", what="end of file")
    frames = _drain(capture)
    assert len(frames) == 1 and frames[0].index == 20  # only the newest frame waits
    assert capture.dropped == 19


def test_fps_cap(camera_video):
    capture = CaptureThread(Camera(id="c", source=str(camera_video), fps=40)).start()
    started = time.monotonic()
    frames = _drain(capture)
    elapsed = time.monotonic() - started
    assert len(frames) == 20 and elapsed >= 19 / 40 * 0.9


def test_loop_restarts_a_file(camera_video):
    capture = CaptureThread(Camera(id="c", source=str(camera_video), loop=True, policy="latest")).start()
    wait_for(lambda: capture.frames_read > 45, what="frames after the loop")
    capture.stop()
    assert capture.state == "stopped"


def test_cut_source_reconnects_with_backoff_and_recovers(tmp_path, camera_video):
    video = tmp_path / "cam.mp4"
    shutil.copy(camera_video, video)
    states: list[str] = []
    camera = Camera(id="c", source=str(video), loop=True, policy="latest", reconnect=Reconnect(initial_s=0.05, max_s=0.2))
    capture = CaptureThread(camera, on_state=lambda cid, s: states.append(s)).start()
    wait_for(lambda: capture.frames_read > 5, what="first frames")
    video.rename(tmp_path / "away.mp4")  # the source is cut: the next reopen at the end of the loop fails
    wait_for(lambda: capture.state == "reconnecting", what="reconnecting")
    wait_for(lambda: capture.reconnects >= 3, what="several attempts")
    (tmp_path / "away.mp4").rename(video)
    wait_for(lambda: capture.state == "connected", what="recovery")
    before = capture.frames_read
    wait_for(lambda: capture.frames_read > before + 5, what="frames after recovery")
    capture.stop()
    assert states[:3] == ["connected", "reconnecting", "connected"] or "reconnecting" in states
    assert states.index("reconnecting") < len(states) - 1 - states[::-1].index("connected")


def test_gives_up_after_max_attempts(tmp_path):
    camera = Camera(id="c", source=str(tmp_path / "missing.mp4"), reconnect=Reconnect(initial_s=0.01, max_attempts=3))
    capture = CaptureThread(camera).start()
    wait_for(lambda: not capture.alive, what="thread end")
    assert capture.state == "failed" and "gave up after 3 attempts" in capture.error
    assert "video file not found" in capture.error


def test_backoff_is_exponential_capped_and_jittered():
    delay = backoff_delays(0.5, 2.0, 8.0, 0.2, random.Random(1))
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (12, 8.0)]:
        values = [delay(attempt) for _ in range(50)]
        assert all(base * 0.8 <= v <= base * 1.2 for v in values)
        assert max(values) - min(values) > 0  # jitter spreads reconnect storms


def test_folder_source_skips_corrupt_images(tmp_path, val_images):
    for image in val_images[:3]:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    source = FolderSource(tmp_path)
    source.open()
    frames = [source.read() for _ in range(3)]
    with pytest.raises(SourceEnded):
        source.read()
    assert source.skipped == 1 and all(f.ndim == 3 for f in frames)
    # frames are BGR like OpenCV's, with EXIF orientation applied (the first val image carries a tag)
    from edgeport.runtime import load_image
    assert np.array_equal(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), load_image(val_images[0]))


def test_picamera2_source_with_a_stand_in_camera(monkeypatch):
    """picamera2 exists only on a Raspberry Pi: a stand-in module checks our calls around it."""
    calls = []

    class FakePicamera2:
        def __init__(self, index):
            calls.append(("init", index))

        def create_video_configuration(self, main):
            return {"main": main}

        def configure(self, config):
            calls.append(("configure", config["main"]["size"], config["main"]["format"]))

        def start(self):
            calls.append("start")

        def capture_array(self, stream):
            return np.zeros((720, 1280, 4), np.uint8)

        def stop(self):
            calls.append("stop")

        def close(self):
            calls.append("close")

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    source = make_source(Camera(id="pi", source="picamera2:1", width=1280, height=720))
    assert isinstance(source, Picamera2Source)
    source.open()
    assert source.read().shape == (720, 1280, 3)
    source.close()
    assert calls == [("init", 1), ("configure", (1280, 720), "RGB888"), "start", "stop", "close"]


def test_picamera2_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="python3-picamera2"):
        Picamera2Source().open()


def test_csi_pipeline_for_jetson():
    pipeline = csi_pipeline(1, 1920, 1080, 30)  # edgeport.devices.jetson.camera's, tested there
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1")
    source = make_source(Camera(id="csi", source="csi:1", width=1920, height=1080, fps=30))
    assert source.api == cv2.CAP_GSTREAMER and source.target == pipeline


def test_dead_v4l2_device_reports_failed(tmp_path):
    camera = Camera(id="usb", source="/dev/video99", reconnect=Reconnect(initial_s=0.01, max_attempts=2))
    capture = CaptureThread(camera).start()
    wait_for(lambda: not capture.alive, what="thread end")
    assert capture.state == "failed" and "/dev/video99" in capture.error


class MjpegCamera:
    """A network camera on loopback: an HTTP MJPEG stream that a test can cut and bring back."""

    def __init__(self, frames: list[bytes]) -> None:
        import http.server
        import socketserver

        from daemon_support import free_port

        self.port = free_port()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not camera.cut:
                        jpeg = frames[i % len(frames)]
                        i += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        time.sleep(0.03)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server_class, self._handler = Server, Handler
        self.cut = False
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        import threading

        self.cut = False
        self.server = self._server_class(("127.0.0.1", self.port), self._handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.cut = True
        self.server.shutdown()
        self.server.server_close()


def test_network_camera_cut_and_back(val_images):
    frames = [cv2.imencode(".jpg", cv2.resize(cv2.imread(str(p)), (320, 240)))[1].tobytes() for p in val_images[:5]]
    network_camera = MjpegCamera(frames)
    camera = Camera(id="ip", source=network_camera.url, timeout_s=2, reconnect=Reconnect(initial_s=0.1, max_s=0.5))
    assert source_kind(camera) == "url"
    capture = CaptureThread(camera).start()
    try:
        wait_for(lambda: capture.frames_read > 10, what="frames from the stream")
        assert capture.take(timeout=1).bgr.shape == (240, 320, 3)
        network_camera.stop()  # the camera goes away (power cut, Wi-Fi drop)
        wait_for(lambda: capture.state == "reconnecting", what="reconnecting")
        network_camera.start()  # and comes back
        wait_for(lambda: capture.state == "connected", timeout=30, what="reconnected")
        before = capture.frames_read
        wait_for(lambda: capture.frames_read > before + 10, what="frames after the camera came back")
    finally:
        capture.stop()
        network_camera.stop()
