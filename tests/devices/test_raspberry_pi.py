"""The light runtime on an emulated Raspberry Pi (arm64 Debian 12 rootfs under qemu, scripts/pi-rootfs.sh):
the wheels-only install, detect with EXIF orientation, evaluate, `edgeport run` on a video, the daemon over HTTP.
Results are compared with the same files on x86; no timing is asserted (everything inside is emulated)."""

from __future__ import annotations

import http.client
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon_support import free_port
from edgeport.evaluate import evaluate
from edgeport.evaluate.metrics import box_iou
from edgeport.runtime import Detector

pytestmark = pytest.mark.arm64
HEAVY = ("torch", "tensorflow", "ultralytics", "coremltools")
EVAL_IMAGES = 6  # emulated: about a second or more per image


@pytest.fixture(scope="module")
def int8_tflite(tflite_artifacts) -> Path:
    """The full-integer TFLite: what a Pi without an accelerator runs."""
    return tflite_artifacts["int8"]


def _confident(detections: dict, conf: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    kept = [d for d in detections["detections"] if d["score"] >= conf]
    return (np.array([d["xyxy"] for d in kept], np.float64).reshape(-1, 4),
            np.array([d["class_id"] for d in kept], np.int64))


def _same_objects(a: dict, b: dict, min_iou: float) -> bool:
    """Every confident detection of `a` has one of the same class in `b` overlapping it by min_iou, and back."""
    (box_a, cls_a), (box_b, cls_b) = _confident(a), _confident(b)
    if len(box_a) == 0 or len(box_b) == 0:
        return len(box_a) == len(box_b)
    ious = box_iou(box_a, box_b) * (cls_a[:, None] == cls_b[None, :])
    return bool((ious.max(axis=1) >= min_iou).all() and (ious.max(axis=0) >= min_iou).all())


def test_wheels_only_install_is_light_and_arm64(pi):
    done = pi.run(["python", "-c", "import importlib.util as u, platform, edgeport.runtime, edgeport.daemon; "
                   f"print(platform.machine(), [m for m in {HEAVY!r} if u.find_spec(m)])"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["aarch64", "[]\n"]


def test_detect_applies_exif_orientation_on_arm64(pi, int8_tflite, val_images, tmp_path):
    upright = tmp_path / "upright.jpg"
    shutil.copy(val_images[3], upright)
    pixels = np.asarray(Image.open(upright).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left: a viewer turns it right
    rotated = tmp_path / "rotated_exif6.jpg"
    Image.fromarray(np.rot90(pixels, k=1).copy()).save(rotated, "JPEG", quality=95, exif=exif.tobytes())

    done = pi.run(["edgeport", "detect", upright, rotated, "--model", int8_tflite],
                  mounts=[int8_tflite.parent, tmp_path])
    assert done.returncode == 0, done.stderr
    on_pi = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(d["image"]).name for d in on_pi] == ["upright.jpg", "rotated_exif6.jpg"]
    assert on_pi[0]["image_hw"] == on_pi[1]["image_hw"] == list(pixels.shape[:2])  # orientation applied
    assert _confident(on_pi[0])[0].size > 0
    assert _same_objects(on_pi[0], on_pi[1], min_iou=0.7)  # boxes in the upright frame
    detector = Detector(int8_tflite)
    for image, pi_result in zip((upright, rotated), on_pi):
        assert _same_objects(detector.detect(image).to_dict(), pi_result, min_iou=0.85)


def test_evaluate_on_arm64_is_close_to_x86(pi, int8_tflite, val_images, tmp_path):
    from edgeport.report.arm64 import dataset_folders

    data = _data_yaml(tmp_path / "data", val_images[::10][:EVAL_IMAGES])
    out = tmp_path / "arm64.json"
    done = pi.run(["edgeport", "evaluate", int8_tflite, "--data", data, "--json", out],
                  mounts=[int8_tflite.parent, *dataset_folders(data)], writable=[tmp_path])
    assert done.returncode == 0, done.stderr
    arm64 = json.loads(out.read_text())  # written inside the Pi, read here
    x86 = evaluate(int8_tflite, data, progress=False)
    assert arm64["backend"] == "litert" and arm64["images"] == x86.images == EVAL_IMAGES
    assert abs(arm64["map50_95"] - x86.map50_95) < 0.05, (arm64["map50_95"], x86.map50_95)
    assert arm64["map50_95"] > 0.3


def _data_yaml(folder: Path, images: list[Path]) -> Path:
    """A DATA.yaml over these images (an image list: their labels are found beside them)."""
    import yaml

    from edgeport.sample import data_yaml

    folder.mkdir()
    (folder / "val.txt").write_text("".join(f"{p}\n" for p in images))
    names = yaml.safe_load(data_yaml().read_text())["names"]
    (folder / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "val.txt", "names": names}))
    return folder / "data.yaml"


def test_run_on_a_video_on_arm64(pi, int8_tflite, camera_video):
    done = pi.run(["edgeport", "run", "--model", int8_tflite, "--source", camera_video, "--max-frames", "4"],
                  mounts=[int8_tflite.parent, camera_video.parent])
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["frame"] for f in frames] == [1, 2, 3, 4]
    assert all(f["image_hw"] == [360, 480] for f in frames)
    assert sum(len(f["detections"]) for f in frames) > 0


def test_daemon_serves_http_on_arm64(pi, int8_tflite, val_images, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for image in val_images[:3]:
        shutil.copy(image, frames)
    port = free_port()
    config = tmp_path / "edgeport.yaml"
    config.write_text(f"model: {int8_tflite}\ncameras: [{{id: porch, source: {frames}, loop: true, fps: 2}}]\n"
                      f"state_dir: {tmp_path / 'state'}\nhttp: {{port: {port}}}\n")
    process = pi.start(["edgeport", "daemon", "--config", config], mounts=[int8_tflite.parent],
                       writable=[tmp_path], log=tmp_path.parent / f"{tmp_path.name}-daemon.log")
    try:
        health = _wait_for_health(port, process, timeout=400)
        assert health["status"] == "ok" and health["cameras"]["porch"]["state"] == "connected"
        status, body = _request(port, "POST", "/detect", val_images[5].read_bytes(), {"Content-Type": "image/jpeg"})
        assert status == 200
        posted = json.loads(body)
        expected = Detector(int8_tflite).detect(val_images[5]).to_dict()
        assert _same_objects(expected, posted, min_iou=0.85)
        _, metrics = _request(port, "GET", "/metrics")
        counted = [line for line in metrics.decode().splitlines()
                   if line.startswith('edgeport_frames_total{camera="porch"}')]
        assert counted and float(counted[0].split()[-1]) > 0
    finally:
        pi.stop(process)


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_for_health(port: int, process, timeout: float) -> dict:
    """/health once the daemon inside the Pi answers it and its camera has delivered a frame."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the daemon inside the Pi exited with {process.returncode}"
        try:
            status, body = _request(port, "GET", "/health")
            last = json.loads(body)
            if status == 200 and last["cameras"]["porch"]["state"] == "connected":
                return last
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(2)
    raise AssertionError(f"no healthy daemon on port {port} after {timeout} s (last /health: {last})")
