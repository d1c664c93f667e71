"""The HTTP API on a real uvicorn server over a running daemon (a video file as the camera)."""

from __future__ import annotations

import http.client
import json
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from daemon_support import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon
from edgeport.runtime import Detector

LIMIT = 400_000


def _start(tmp_path, model, video, token: str | None = None) -> Daemon:
    config = parse_config(f"""
model: {model}
cameras: [{{id: gate, source: {video}, loop: true, fps: 15}}]
state_dir: {tmp_path / "state"}
http: {{port: 0, max_upload_bytes: {LIMIT}, max_pixels: 4000000, stream_fps: 20{", token: " + token if token else ""}}}
""")
    daemon = Daemon(config)
    threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True).start()
    wait_for(lambda: daemon.http._server.started, what="http server")
    wait_for(lambda: daemon.latest("gate") is not None, what="first frame")
    return daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, onnx_artifact, camera_video):
    d = _start(tmp_path_factory.mktemp("http"), onnx_artifact, camera_video)
    yield d
    d.stop()


def request(daemon, method, path, body=None, headers=None, chunked=False):
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def post_image(daemon, data, content_type="image/jpeg"):
    status, _, body = request(daemon, "POST", "/detect", data, {"Content-Type": content_type})
    return status, json.loads(body)


def test_binds_loopback_by_default(daemon):
    assert daemon.http._server.servers[0].sockets[0].getsockname()[0] == "127.0.0.1"


def test_health_and_metrics(daemon):
    status, _, body = request(daemon, "GET", "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["cameras"]["gate"]["state"] == "connected"
    status, content_type, body = request(daemon, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and content_type.startswith("text/plain")
    assert 'edgeport_source_state{camera="gate",state="connected"} 1' in text
    frames = [line for line in text.splitlines() if line.startswith('edgeport_frames_total{camera="gate"}')]
    assert frames and float(frames[0].split()[-1]) > 0
    assert 'edgeport_inference_milliseconds_count{camera="gate"}' in text and "edgeport_fps" in text
    assert 'edgeport_queue_depth{queue="sink_events"}' in text


def test_latest_snapshot_and_stream(daemon):
    status, _, body = request(daemon, "GET", "/cameras/gate/latest")
    latest = json.loads(body)
    assert status == 200 and latest["camera"] == "gate" and latest["image_hw"] == [360, 480]
    status, content_type, body = request(daemon, "GET", "/cameras/gate/snapshot.jpg")
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and content_type == "image/jpeg" and image.shape == (360, 480, 3)
    assert request(daemon, "GET", "/cameras/nope/latest")[0] == 404

    connection = http.client.HTTPConnection("127.0.0.1", daemon.http.port, timeout=30)
    connection.request("GET", "/cameras/gate/stream.mjpg")
    response = connection.getresponse()
    assert response.getheader("content-type").startswith("multipart/x-mixed-replace")
    data = b""
    while data.count(b"--frame") < 3:
        data += response.read1(65536)
    connection.close()
    part = data.split(b"--frame")[1]
    jpeg = part.split(b"\r\n\r\n", 1)[1]
    assert jpeg.startswith(b"\xff\xd8")


def test_detect_matches_the_runtime(daemon, onnx_artifact, val_images):
    detector = Detector(onnx_artifact)
    for path in val_images[:4]:  # the first val images include one stored rotated with an EXIF tag
        status, body = post_image(daemon, path.read_bytes())
        expected = detector.detect(path)  # a 640-pixel JPEG is decoded at 1/2 scale by both
        assert status == 200 and body["image_hw"] == list(expected.image_hw)
        got = np.array([d["xyxy"] for d in body["detections"]]).reshape(-1, 4)
        assert len(got) == len(expected) and np.allclose(got, expected.xyxy, atol=0.02)
    png = cv2.imencode(".png", cv2.resize(cv2.imread(str(val_images[1])), (240, 180)))[1].tobytes()
    assert post_image(daemon, png, "image/png")[0] == 200
    assert post_image(daemon, png, "application/octet-stream")[0] == 200


def _decodes(daemon, factor: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return next((s.value for f in text_string_to_metric_families(daemon.metrics_text()) for s in f.samples
                 if s.name == "edgeport_http_decodes_total" and s.labels == {"factor": str(factor)}), 0.0)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), xyxy."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_large_jpeg_upload_is_decoded_at_reduced_scale_with_full_scale_boxes(daemon, onnx_artifact, val_images):
    detector = Detector(onnx_artifact)
    image = cv2.resize(cv2.imread(str(val_images[2])), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()  # 4x the 320 model input
    before = _decodes(daemon, 4)
    status, body = post_image(daemon, jpeg)
    assert status == 200 and body["decode_factor"] == 4 and _decodes(daemon, 4) == before + 1
    assert body["image_hw"] == list(image.shape[:2])  # boxes in the uploaded image's own pixels
    got = np.array([d["xyxy"] for d in body["detections"]]).reshape(-1, 4)
    classes = [d["class_id"] for d in body["detections"]]
    expected = detector.detect(jpeg)  # the runtime's own reduced-scale path: the same answer
    assert len(got) == len(expected) > 0 and np.allclose(got, expected.xyxy, atol=0.02)
    full = detector.detect_rgb([detector.load(jpeg)])[0]  # decoded at full scale: the same objects
    confident = full.score > 0.5
    assert confident.any()
    overlap = _iou(full.xyxy[confident], got)
    best = overlap.argmax(axis=1)
    assert (overlap.max(axis=1) > 0.85).all()
    assert [classes[i] for i in best] == full.class_id[confident].tolist()


def test_detect_honours_exif_orientation(daemon, val_images):
    from edgeport.runtime.image_io import decode_bytes

    rotated = next(p for p in val_images if decode_bytes(p.read_bytes()).shape !=
                   decode_bytes(p.read_bytes(), exif=False).shape)
    status, body = post_image(daemon, rotated.read_bytes())
    assert status == 200 and body["image_hw"] == list(decode_bytes(rotated.read_bytes()).shape[:2])


def _tiny_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_detect_rejects_bad_uploads_with_the_right_status(daemon, val_images):
    jpeg = val_images[0].read_bytes()
    assert post_image(daemon, jpeg, "text/plain")[0] == 415  # not on the allow-list
    assert post_image(daemon, jpeg, "image/png")[0] == 415  # magic bytes disagree with the declared type
    assert post_image(daemon, b"GIF89a" + b"\0" * 100, "application/octet-stream")[0] == 415
    assert post_image(daemon, b"hello world", "image/jpeg")[0] == 415
    status, body = post_image(daemon, jpeg[: len(jpeg) // 2])
    assert status == 422 and "truncated" in body["error"]
    assert post_image(daemon, b"", "image/jpeg")[0] == 422
    status, body = post_image(daemon, _tiny_png_header(30000, 30000), "image/png")  # decompression bomb
    assert status == 413 and "exceeds the limit" in body["error"]
    big = jpeg + b"\0" * LIMIT
    assert post_image(daemon, big)[0] == 413  # by Content-Length, before the body is read
    status, _, body = request(daemon, "POST", "/detect", iter([jpeg, b"\0" * LIMIT]),
                              {"Content-Type": "image/jpeg"}, chunked=True)
    assert status == 413  # no Content-Length: cut off while reading
    assert request(daemon, "GET", "/health")[0] == 200


def _mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for position, value, mode in edits:
        if not out:
            break
        i = position % len(out)
        if mode == 0:
            out[i] = value
        elif mode == 1:
            del out[i:i + value]
        elif mode == 2:
            out[i:i] = bytes([value]) * (value % 7 + 1)
        else:
            out = out[:i]
    return bytes(out)


@pytest.fixture(scope="module")
def seeds(val_images):
    image = cv2.imread(str(val_images[2]))
    small = cv2.resize(image, (64, 48))
    return [val_images[0].read_bytes()[:20000] + val_images[0].read_bytes()[-2:],
            cv2.imencode(".jpg", small)[1].tobytes(), cv2.imencode(".png", small)[1].tobytes(),
            cv2.imencode(".bmp", small)[1].tobytes(), cv2.imencode(".webp", small)[1].tobytes()]


CONTENT_TYPES = st.sampled_from(["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff",
                                 "application/octet-stream", "text/plain", "", "image/gif",
                                 "image/jpeg; charset=binary", "multipart/form-data; boundary=x"])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data(), content_type=CONTENT_TYPES)
def test_fuzz_detect_never_fails_with_5xx(daemon, seeds, data, content_type):
    body = data.draw(st.one_of(
        st.binary(max_size=4096),
        st.builds(_mutate, st.sampled_from(seeds),
                  st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255), st.integers(0, 3)), max_size=6)),
    ))
    status, _, _ = request(daemon, "POST", "/detect", body, {"Content-Type": content_type} if content_type else {})
    assert 200 <= status < 500, f"{status} for {len(body)} bytes as {content_type!r}"


def test_server_alive_after_fuzzing(daemon):
    status, _, body = request(daemon, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    text = request(daemon, "GET", "/metrics")[2].decode()
    assert 'status="500"' not in text


def test_bearer_token(tmp_path, onnx_artifact, camera_video, val_images):
    daemon = _start(tmp_path, onnx_artifact, camera_video, token="s3cret")
    try:
        assert request(daemon, "GET", "/health")[0] == 200  # probes need no token
        assert request(daemon, "GET", "/metrics")[0] == 401
        assert request(daemon, "GET", "/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(daemon, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, _, _ = request(daemon, "POST", "/detect", val_images[0].read_bytes(),
                               {"Content-Type": "image/jpeg", "Authorization": "Bearer s3cret"})
        assert status == 200
    finally:
        daemon.stop()
