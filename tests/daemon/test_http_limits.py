"""The HTTP server under hostile and heavy clients, on a real uvicorn: idle sockets, slow headers and bodies,
honest status counts, admission control (503 + Retry-After, 504) and the memory of large uploads."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from daemon_support import DAEMON_PROCESS, free_port, wait_for

from edgeport.daemon.config import parse_config
from edgeport.daemon.service import Daemon


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def status_count(daemon, route: str, status: int) -> float:
    return samples_of(daemon.metrics_text()).get(
        ("edgeport_http_requests_total", (("route", route), ("status", str(status)))), 0.0)


def refused_count(daemon, reason: str) -> float:
    return samples_of(daemon.metrics_text()).get(("edgeport_http_refused_total", (("reason", reason),)), 0.0)


def start(tmp_path, model, video, http: str) -> Daemon:
    config = parse_config(f"""
model: {model}
cameras: [{{id: gate, source: {video}, loop: true, fps: 5}}]
state_dir: {tmp_path / "state"}
http: {{port: 0, {http}}}
""")
    daemon = Daemon(config)
    threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True).start()
    wait_for(lambda: daemon.http._server.started, what="http server")
    return daemon


def get(daemon, path: str, headers=None, timeout: float = 20) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http.port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def post(daemon, data: bytes, timeout: float = 60) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http.port, timeout=timeout)
    try:
        connection.request("POST", "/detect", body=data, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), json.loads(body) if body else {}
    finally:
        connection.close()


def raw(daemon, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.http.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing the socket, or None when it is still open after `within` s."""
    sock.settimeout(within)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        return received


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, onnx_artifact, camera_video):
    daemon = start(tmp_path_factory.mktemp("guarded"), onnx_artifact, camera_video,
                   "token: s3cret, header_timeout_s: 1.0, body_timeout_s: 1.0, max_connections: 40, "
                   "batching: {max_queue: 2}")
    yield daemon
    daemon.stop()


def test_idle_sockets_never_refuse_requests(guarded):
    idle = [raw(guarded, b"") for _ in range(80)]  # more than uvicorn's 64 and than max_connections
    try:
        time.sleep(0.3)
        assert get(guarded, "/health") == 200
        assert get(guarded, "/metrics", {"Authorization": "Bearer s3cret"}) == 200  # the token is checked, no 503
        assert get(guarded, "/metrics") == 401
        assert refused_count(guarded, "connections_idle_closed") >= 40
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_never_finishes_its_headers_is_closed(guarded):
    slow = raw(guarded, b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: headers never end
    assert closed_by_server(slow, within=8) is not None
    slow.close()
    assert refused_count(guarded, "header_timeout") >= 1


def test_a_body_shorter_than_its_content_length_gets_408(guarded, val_images):
    jpeg = val_images[0].read_bytes()
    head = (f"POST /detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(jpeg) + 1000}\r\n\r\n").encode()
    sock = raw(guarded, head + jpeg)
    answer = closed_by_server(sock, within=8)
    sock.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")
    assert status_count(guarded, "/detect", 408) >= 1 and refused_count(guarded, "body_timeout") >= 1


def test_a_full_upload_queue_answers_503_with_retry_after_and_counts_it(guarded, val_images):
    jpeg = val_images[0].read_bytes()
    head = (f"POST /detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
    before = status_count(guarded, "/detect", 503)
    holding = [raw(guarded, head + jpeg[:100]) for _ in range(2)]  # max_queue uploads, bodies still arriving
    try:
        wait_for(lambda: guarded.http.app.state.uploads.count == 2, what="both uploads admitted")
        connection = http.client.HTTPConnection("127.0.0.1", guarded.http.port, timeout=20)
        connection.request("POST", "/detect", body=jpeg,
                           headers={"Content-Type": "image/jpeg", "Authorization": "Bearer s3cret"})
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
    finally:
        for sock in holding:
            sock.close()
    assert status_count(guarded, "/detect", 503) == before + 1 and refused_count(guarded, "queue_full") >= 1


@pytest.fixture(scope="module")
def plain(tmp_path_factory, onnx_artifact, camera_video):
    daemon = start(tmp_path_factory.mktemp("plain"), onnx_artifact, camera_video,
                   "batching: {enabled: true, max_batch: 4, max_queue_delay_ms: 200}")
    yield daemon
    daemon.stop()


def test_a_failing_model_is_counted_500_not_200(plain, val_images, caplog):
    original = plain.detector.postprocess
    calls = []

    def fail_once(*args, **kwargs):  # fault injection: the next HTTP batch raises inside the model step
        if not calls and threading.current_thread().name == "http-batcher":
            calls.append(1)
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    plain.detector.postprocess = fail_once
    try:
        ok_before = status_count(plain, "/detect", 200)
        status, _, body = post(plain, val_images[0].read_bytes())
    finally:
        plain.detector.postprocess = original
    assert status == 500 and "internal error" in body["error"]
    assert status_count(plain, "/detect", 500) == 1 and status_count(plain, "/detect", 200) == ok_before
    assert post(plain, val_images[0].read_bytes())[0] == 200


def test_a_client_gone_mid_upload_is_counted_without_a_traceback(plain, val_images, caplog):
    jpeg = val_images[0].read_bytes()
    head = f"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    with caplog.at_level(logging.INFO):
        sock = raw(plain, head.encode() + jpeg[:1000])
        time.sleep(0.3)
        sock.close()
        wait_for(lambda: status_count(plain, "/detect", 499) >= 1, what="the disconnect counted")
        assert get(plain, "/health") == 200
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_concurrent_uploads_share_invokes_and_get_their_own_answers(plain, val_images):
    from edgeport.runtime import Detector

    images = [p.read_bytes() for p in val_images[:8]]
    sizes = []
    invoke = plain.detector.backend.invoke
    plain.detector.backend.invoke = lambda t: (sizes.append(threading.current_thread().name), invoke(t))[1]
    before = samples_of(plain.metrics_text()).get(("edgeport_http_batch_size_count", ()), 0)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda data: post(plain, data), images))
    finally:
        plain.detector.backend.invoke = invoke
    samples = samples_of(plain.metrics_text())
    batches = samples[("edgeport_http_batch_size_count", ())] - before
    assert all(status == 200 for status, _, _ in answers)
    assert batches < 8 and sizes.count("http-batcher") == 8  # fewer turns than uploads; batch-1 model: per image
    detector = Detector(plain.detector.path)
    for path, (_, _, body) in zip(val_images[:8], answers):
        expected = detector.detect(path)  # /detect decodes as the runtime does (640-pixel JPEGs at 1/2 scale)
        got = np.array([d["xyxy"] for d in body["detections"]]).reshape(-1, 4)
        assert len(got) == len(expected) and np.allclose(got, expected.xyxy, atol=0.02)


def test_a_request_past_its_deadline_gets_504(tmp_path, onnx_artifact, camera_video, val_images):
    daemon = start(tmp_path, onnx_artifact, camera_video, "batching: {deadline_ms: 1}")
    try:
        status, _, body = post(daemon, val_images[0].read_bytes())
        assert status == 504 and "deadline" in body["error"]
        assert status_count(daemon, "/detect", 504) == 1
        assert refused_count(daemon, "deadline") + refused_count(daemon, "deadline_queued") >= 1
    finally:
        daemon.stop()


def test_waiting_for_the_model_is_not_a_stall(tmp_path, onnx_artifact, camera_video):
    config = parse_config(f"""
model: {onnx_artifact}
cameras: [{{id: gate, source: {camera_video}, loop: true}}]
state_dir: {tmp_path / "state"}
watchdog: {{stall_s: 1.0}}
""")
    daemon = Daemon(config)
    threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True).start()
    try:
        wait_for(lambda: daemon.processed > 0, what="first frame")
        stop = time.monotonic() + 3.0

        def http_batches():  # back-to-back 0.3 s HTTP batches from three threads, 3 s long
            while time.monotonic() < stop:
                with daemon.turns.turn("http"):
                    time.sleep(0.3)

        holders = [threading.Thread(target=http_batches) for _ in range(3)]
        for holder in holders:
            holder.start()
        while time.monotonic() < stop:
            assert not daemon.stalled  # the camera waits for its turn; no invoke runs longer than 0.3 s
            time.sleep(0.05)
        for holder in holders:
            holder.join()
        before = daemon.processed
        wait_for(lambda: daemon.processed > before, what="the camera's next frame")
        assert not daemon.stalled
    finally:
        daemon.stop()


def test_http_load_does_not_starve_the_camera(tmp_path, onnx_artifact, camera_video, val_images):
    config = parse_config(f"""
model: {onnx_artifact}
cameras: [{{id: gate, source: {camera_video}, loop: true}}]
state_dir: {tmp_path / "state"}
http: {{port: 0, batching: {{enabled: false}}}}
""")
    daemon = Daemon(config)
    threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True).start()
    try:
        wait_for(lambda: daemon.processed > 0, what="first frame")
        jpeg = val_images[0].read_bytes()
        frames_before = daemon.processed
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(lambda _: post(daemon, jpeg)[0], range(96)))
        camera_frames = daemon.processed - frames_before
        waits = samples_of(daemon.metrics_text())
    finally:
        daemon.stop()
    assert statuses.count(200) == 96
    assert camera_frames >= 10  # the camera kept taking turns between HTTP invokes
    assert waits[("edgeport_model_wait_milliseconds_count", (("user", "camera"),))] >= camera_frames


def big_jpeg(nbytes: int) -> bytes:
    """A noise JPEG of just under `nbytes` (noise hardly compresses: about 3 Mpixels for 10 MB)."""
    rng, side = np.random.default_rng(0), int((nbytes / 2.2) ** 0.5)
    while True:
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
        if 0.97 * nbytes <= len(data) <= nbytes:
            return data
        side = int(side * (0.985 * nbytes / len(data)) ** 0.5)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def test_sixty_ten_megabyte_uploads_stay_under_the_units_memory_max(tmp_path, onnx_artifact, camera_video):
    port = free_port()
    config = (f"model: {onnx_artifact}\ncameras: [{{id: gate, source: {camera_video}, loop: true, fps: 5}}]\n"
              f"state_dir: {tmp_path / 'state'}\nhttp: {{port: {port}, batching: {{deadline_ms: 120000}}}}\n")
    child = subprocess.Popen([sys.executable, "-c", DAEMON_PROCESS, config], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout.readline().strip() == "ready"
        data = big_jpeg(9_900_000)

        def upload(_):
            for _ in range(200):  # a client that honours Retry-After
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                connection.request("POST", "/detect", body=data, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                connection.close()
                if response.status != 503:
                    return response.status
                time.sleep(float(response.getheader("Retry-After", "1")))
            return 503

        with ThreadPoolExecutor(60) as pool:
            statuses = list(pool.map(upload, range(60)))
        peak = peak_rss_mb(child.pid)
    finally:
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(30)
    assert statuses == [200] * 60
    assert peak < 1024, f"peak RSS {peak:.0f} MB"
