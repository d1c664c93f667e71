"""The daemon's HTTP API (FastAPI; edgeport.daemon.http_server serves it): GET /health, /metrics,
/cameras/{id}/latest, /snapshot.jpg, /stream.mjpg, and POST /detect behind admission control and the batcher.
"""

import asyncio
import hmac
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from edgeport.daemon.batcher import DeadlineExceeded, Job, QueueFull
from edgeport.daemon.config import Batching, Http
from edgeport.daemon.metrics import CONTENT_TYPE
from edgeport.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    MissingDependencyError,
    NotAnImageError,
    UnsupportedImageError,
)
from edgeport.runtime.detections import Detections
from edgeport.runtime.image_io import sniff_format

log = logging.getLogger("edgeport.daemon")
CLOSE = {"Connection": "close"}  # the rest of the body is not read: the connection cannot be reused
CLIENT_GONE = 499  # nginx's "client closed request": counted, never seen by anyone

# content types POST /detect accepts, and the formats (by magic bytes) each may carry
CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("jpeg",),
    "image/jpg": ("jpeg",),
    "image/png": ("png",),
    "image/webp": ("webp",),
    "image/bmp": ("bmp",),
    "image/tiff": ("tiff",),
    "application/octet-stream": ("jpeg", "png", "webp", "bmp", "tiff"),
}


class DaemonView(Protocol):
    """What the HTTP API reads from the running daemon."""

    camera_ids: list[str]

    def health(self) -> tuple[dict[str, Any], bool]: ...
    def metrics_text(self) -> str: ...
    def latest(self, camera: str) -> "tuple[Detections, dict[str, Any]] | None": ...
    def snapshot_jpeg(self, camera: str) -> "bytes | None": ...
    def place_upload(self, data: bytes, max_pixels: int) -> "tuple[Any, Any]": ...
    def submit_upload(self, job: Job) -> "Future[Detections]": ...
    @property
    def stopping(self) -> bool: ...


class Uploads:
    """Admission of POST /detect: at most `max_queue` uploads admitted at once (beyond: refused at once), and
    at most `max_inflight_bytes` of bodies being read or decoded (beyond: the upload waits, unread, in the
    socket: one upload is always let through); `decode_workers` threads decode. Event-loop side only."""

    def __init__(self, batching: Batching, metrics) -> None:
        self.limits, self.metrics = batching, metrics
        self.count = self.bytes = 0
        self._room: asyncio.Condition | None = None
        self.decoder = ThreadPoolExecutor(max_workers=batching.decode_workers, thread_name_prefix="decode")
        metrics.http_inflight.bind(lambda: {("uploads",): float(self.count), ("bytes",): float(self.bytes)})

    def enter(self) -> bool:
        """Count an upload in; False when `max_queue` are admitted already."""
        if self.count >= self.limits.max_queue:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1

    async def reserve(self, nbytes: int, timeout: float) -> bool:
        """Wait until `nbytes` fit in the byte budget (or nothing else is held); False after `timeout` s."""
        self._room = self._room or asyncio.Condition()
        limit = self.limits.max_inflight_bytes
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: not self.bytes or self.bytes + nbytes <= limit),
                                       max(0.0, timeout))
            except asyncio.TimeoutError:
                return False
            self.bytes += nbytes
            return True

    async def release(self, nbytes: int) -> None:
        async with self._room:
            self.bytes -= nbytes
            self._room.notify_all()

    def close(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)


def create_app(view: DaemonView, config: Http, metrics):
    """The FastAPI application over a running daemon (responses are counted by http_server.counted)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import ClientDisconnect
    except ImportError as exc:
        raise MissingDependencyError("fastapi (HTTP API)", "daemon") from exc

    app = FastAPI(title="edgeport daemon", version="1", docs_url=None, redoc_url=None)
    app.state.uploads = uploads = Uploads(config.batching, metrics)

    def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": detail}, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:  # logged once by http_server
        return problem(500, "internal error; see the daemon's log", CLOSE)

    @app.middleware("http")
    async def bearer_token(request: Request, call_next):
        if config.token and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.token.encode()):
                return problem(401, "missing or wrong bearer token")
        return await call_next(request)

    @app.get("/health")
    def health() -> JSONResponse:
        body, ok = view.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(view.metrics_text(), media_type=CONTENT_TYPE)

    def camera_state(camera: str, read) -> tuple[Any, JSONResponse | None]:
        """(what `read(camera)` returns, None), or (None, a 404/503 problem response)."""
        if camera not in view.camera_ids:
            return None, problem(404, f"no camera {camera!r}; cameras: {', '.join(view.camera_ids)}")
        found = read(camera)
        if found is None:
            return None, problem(503, f"camera {camera!r} has no frame yet", {"Retry-After": "1"})
        return found, None

    @app.get("/cameras/{camera}/latest")
    def latest(camera: str) -> JSONResponse:
        found, failed = camera_state(camera, view.latest)
        if failed:
            return failed
        detections, info = found
        return JSONResponse({**info, **detections.to_dict()})

    @app.get("/cameras/{camera}/snapshot.jpg")
    def snapshot(camera: str) -> Response:
        jpeg, failed = camera_state(camera, view.snapshot_jpeg)
        return failed or Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/cameras/{camera}/stream.mjpg")
    async def stream(camera: str, request: Request):
        if camera not in view.camera_ids:
            return problem(404, f"no camera {camera!r}")
        interval = 1.0 / config.stream_fps

        async def frames():
            last = None
            while not view.stopping and not await request.is_disconnected():
                jpeg = await run_in_threadpool(view.snapshot_jpeg, camera)
                if jpeg is not None and jpeg is not last:
                    last = jpeg
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                           + b"\r\n\r\n" + jpeg + b"\r\n")
                await asyncio.sleep(interval)

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.post("/detect")
    async def detect(request: Request) -> JSONResponse:
        started = time.monotonic()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            return problem(415, f"unsupported content type {content_type or '(none)'!r}; send the image bytes as "
                                f"one of: {', '.join(CONTENT_TYPES)}")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return problem(400, "invalid Content-Length")
            if int(declared) > config.max_upload_bytes:
                return problem(413, f"upload of {int(declared):,} bytes exceeds the limit of "
                                    f"{config.max_upload_bytes:,}", CLOSE)
        if not uploads.enter():
            metrics.http_refused.inc("queue_full")
            return problem(503, "busy (upload queue full): retry shortly", {"Retry-After": "1"})
        try:
            return await _detect_admitted(request, content_type, started, declared)
        finally:
            uploads.leave()

    async def _detect_admitted(request, content_type: str, started: float, declared: str | None) -> JSONResponse:
        deadline = started + config.batching.deadline_ms / 1000
        reserved = 2 * (int(declared) if declared is not None else config.max_upload_bytes)  # chunks, then joined
        if not await uploads.reserve(reserved, deadline - time.monotonic()):
            metrics.http_refused.inc("memory")
            return problem(503, "busy (upload bytes in flight): retry shortly", {"Retry-After": "1"})
        try:
            placed = await _receive_and_place(request, content_type)
        finally:
            await uploads.release(reserved)
        if isinstance(placed, JSONResponse):
            return placed
        (canvas, placement), found = placed
        try:
            future = view.submit_upload(Job(canvas, placement, deadline))
        except QueueFull:
            metrics.http_refused.inc("queue_full")
            return problem(503, "busy (model queue full): retry shortly", {"Retry-After": "1"})
        try:
            detections = await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except (asyncio.TimeoutError, DeadlineExceeded):
            metrics.http_refused.inc("deadline")
            return problem(504, f"no answer within the deadline of {config.batching.deadline_ms:g} ms")
        elapsed_ms = (time.monotonic() - started) * 1000
        metrics.http_request_ms.observe(elapsed_ms)
        return JSONResponse({**detections.to_dict(), "format": found,
                             "decode_factor": getattr(placement, "factor", 1), "latency_ms": round(elapsed_ms, 2)})

    async def _receive_and_place(request, content_type: str):
        """((canvas, placement), format) of the upload, or the problem response that refuses it."""
        try:
            body = await _read_body(request)
        except asyncio.TimeoutError:
            metrics.http_refused.inc("body_timeout")
            return problem(408, f"the upload did not arrive within {config.body_timeout_s:g} s", CLOSE)
        except _TooLarge:
            return problem(413, f"upload exceeds the limit of {config.max_upload_bytes:,} bytes", CLOSE)
        except ClientDisconnect:  # nobody to answer: counted as 499, nothing logged
            return problem(CLIENT_GONE, "client closed the connection during the upload")
        return await _place(body, content_type)

    async def _read_body(request) -> bytes:
        """The whole body (one join of the chunks) within body_timeout_s; raises TimeoutError or _TooLarge."""
        async def read() -> list[bytes]:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_upload_bytes:
                    raise _TooLarge()
                chunks.append(chunk)
            return chunks

        return b"".join(await asyncio.wait_for(read(), config.body_timeout_s))

    async def _place(body: bytes, content_type: str):
        """((canvas, placement), format) of an upload, or the problem response that refuses it."""
        if not body:
            return problem(422, "empty body: send the image bytes")
        found = sniff_format(body[:16])
        if found is None or found not in CONTENT_TYPES[content_type]:
            what = f"{found.upper()} data" if found else "not an image this API reads"
            return problem(415, f"content is {what}; declared {content_type}")
        loop = asyncio.get_running_loop()
        try:
            placed = await loop.run_in_executor(uploads.decoder, view.place_upload, body, config.max_pixels)
        except ImageTooLargeError as exc:
            return problem(413, str(exc))
        except UnsupportedImageError as exc:
            return problem(415, str(exc))
        except (CorruptImageError, EmptyImageError, NotAnImageError, ImageError) as exc:
            return problem(422, str(exc))
        return placed, found

    return app


class _TooLarge(Exception):
    """A body without Content-Length grew past max_upload_bytes."""
