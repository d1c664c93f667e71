"""Daemon test support, registered as a pytest plugin by the root conftest (`pytest_plugins`): a video file made from the sample val images (the camera), a real mosquitto broker."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import require_program


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_video(path: Path, images: list[Path], size=(480, 360), fps: float = 10.0, repeat: int = 1) -> Path:
    """An MP4 of the images, each letterboxed (not stretched) into `size`, each shown `repeat` frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for image_path in images:
        image = cv2.imread(str(image_path))
        scale = min(size[0] / image.shape[1], size[1] / image.shape[0])
        resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas = np.full((size[1], size[0], 3), 114, np.uint8)
        y, x = (size[1] - resized.shape[0]) // 2, (size[0] - resized.shape[1]) // 2
        canvas[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
        for _ in range(repeat):
            writer.write(canvas)
    writer.release()
    return path


@pytest.fixture(scope="session")
def camera_video(tmp_path_factory, val_images) -> Path:
    """20 frames: 10 val images shown twice each (objects appear, stay a frame, then leave)."""
    return write_video(tmp_path_factory.mktemp("video") / "camera.mp4", val_images[:10], repeat=2)


class Broker:
    """A real mosquitto on loopback that a test can stop and start again on the same port."""

    def __init__(self, folder: Path, port: int, extra: str = "") -> None:
        self.exe = require_program("mosquitto")
        self.folder, self.port = folder, port
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"{self.user_line()}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n{extra}")
        self.process: subprocess.Popen | None = None

    @staticmethod
    def user_line() -> str:
        """As root, mosquitto would switch to its own user, who cannot read pytest's private tmp folders."""
        return "user root\n" if os.geteuid() == 0 else ""

    def start(self) -> "Broker":
        self.process = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited with {self.process.returncode}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, free_port()).start()
    yield b
    b.stop()


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(autouse=True)
def _stop_capture_threads(monkeypatch):
    """Stop every capture thread a test started, even when it failed half-way: an OpenCV reader
    still running at interpreter exit aborts the whole run ('terminate called ...')."""
    from edgeport.daemon import sources

    started = []
    original = sources.CaptureThread.start

    def start(self):
        started.append(self)
        return original(self)

    monkeypatch.setattr(sources.CaptureThread, "start", start)
    yield
    for capture in started:
        capture.stop()


# A daemon in its own process (for its own RSS, or its own cores): prints "ready" once HTTP is up, stops at a
# line on stdin; with --metrics it prints /metrics' text before stopping. Run: python -c DAEMON_PROCESS CONFIG.
# The line "paho_mid N" moves the MQTT client's message-id counter to N (the 65,535 wrap without 65k publishes)
# and prints the id it had; "paho_mid" alone prints it.
DAEMON_PROCESS = """
import sys, threading, time
from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon
daemon = Daemon(parse_config(sys.argv[1]))
thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
thread.start()
while not (daemon.http._server.started or daemon.stopping):
    time.sleep(0.05)
print("ready", flush=True)
for line in sys.stdin:
    if not line.startswith("paho_mid"):
        break
    client = daemon.mqtt.client
    with client._mid_generate_mutex:
        print("paho_mid", client._last_mid, flush=True)
        if line.split()[1:]:
            client._last_mid = int(line.split()[1])
if "--metrics" in sys.argv[2:]:
    print(daemon.metrics_text(), flush=True)
daemon.stop()
thread.join(30)
"""
