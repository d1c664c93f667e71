"""The daemon's HTTP API (FastAPI, served by uvicorn in its own thread).

GET /health, /metrics, /cameras/{id}/latest, /cameras/{id}/snapshot.jpg, /cameras/{id}/stream.mjpg and
the validated synchronous path POST /detect.
"""

import asyncio
import hmac
import logging
import threading
import time
from typing import Any, Protocol

from edgeport.daemon.config import Http
from edgeport.errors import (
    ConfigError,
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
    def detect_bytes(self, data: bytes, max_pixels: int) -> Detections: ...
    def count_request(self, route: str, status: int) -> None: ...
    @property
    def stopping(self) -> bool: ...


def create_app(view: DaemonView, config: Http):
    """The FastAPI application over a running daemon."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:
        raise MissingDependencyError("fastapi (HTTP API)", "daemon") from exc

    app = FastAPI(title="edgeport daemon", version="1", docs_url=None, redoc_url=None)

    def problem(status: int, detail: str, route: str) -> JSONResponse:
        view.count_request(route, status)
        return JSONResponse({"error": detail}, status_code=status)

    @app.middleware("http")
    async def bearer_token(request: Request, call_next):
        if config.token and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.token.encode()):
                return problem(401, "missing or wrong bearer token", "auth")
        return await call_next(request)

    @app.get("/health")
    def health() -> JSONResponse:
        body, ok = view.health()
        view.count_request("/health", 200 if ok else 503)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        view.count_request("/metrics", 200)
        return Response(view.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def camera_state(camera: str, route: str, read) -> tuple[Any, JSONResponse | None]:
        """(what `read(camera)` returns, None), or (None, a 404/503 problem response)."""
        if camera not in view.camera_ids:
            return None, problem(404, f"no camera {camera!r}; cameras: {', '.join(view.camera_ids)}", route)
        found = read(camera)
        if found is None:
            return None, problem(503, f"camera {camera!r} has no frame yet", route)
        view.count_request(route, 200)
        return found, None

    @app.get("/cameras/{camera}/latest")
    def latest(camera: str) -> JSONResponse:
        found, failed = camera_state(camera, "/latest", view.latest)
        if failed:
            return failed
        detections, info = found
        return JSONResponse({**info, **detections.to_dict()})

    @app.get("/cameras/{camera}/snapshot.jpg")
    def snapshot(camera: str) -> Response:
        jpeg, failed = camera_state(camera, "/snapshot", view.snapshot_jpeg)
        return failed or Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/cameras/{camera}/stream.mjpg")
    async def stream(camera: str, request: Request):
        if camera not in view.camera_ids:
            return problem(404, f"no camera {camera!r}", "/stream")
        view.count_request("/stream", 200)
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
        route = "/detect"
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            return problem(415, f"unsupported content type {content_type or '(none)'!r}; send the image bytes as "
                                f"one of: {', '.join(CONTENT_TYPES)}", route)
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return problem(400, "invalid Content-Length", route)
            if int(declared) > config.max_upload_bytes:
                return problem(413, f"upload of {int(declared):,} bytes exceeds the limit of "
                                    f"{config.max_upload_bytes:,}", route)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_upload_bytes:
                return problem(413, f"upload exceeds the limit of {config.max_upload_bytes:,} bytes", route)
        if not body:
            return problem(422, "empty body: send the image bytes", route)
        found = sniff_format(bytes(body[:16]))
        if found is None or found not in CONTENT_TYPES[content_type]:
            what = f"{found.upper()} data" if found else "not an image this API reads"
            return problem(415, f"content is {what}; declared {content_type}", route)
        started = time.perf_counter()
        try:
            detections = await run_in_threadpool(view.detect_bytes, bytes(body), config.max_pixels)
        except ImageTooLargeError as exc:
            return problem(413, str(exc), route)
        except UnsupportedImageError as exc:
            return problem(415, str(exc), route)
        except (CorruptImageError, EmptyImageError, NotAnImageError, ImageError) as exc:
            return problem(422, str(exc), route)
        view.count_request(route, 200)
        return JSONResponse({**detections.to_dict(), "format": found,
                             "latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    return app


class HttpServer:
    """uvicorn serving `create_app` in a background thread; `port` is the bound port once started."""

    def __init__(self, view: DaemonView, config: Http) -> None:
        try:
            import uvicorn
        except ImportError as exc:
            raise MissingDependencyError("uvicorn (HTTP API)", "daemon") from exc
        self.config = config
        app = create_app(view, config)
        self._server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                                     lifespan="off", access_log=False, limit_concurrency=64,
                                                     timeout_keep_alive=5))
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; return the bound port. Raises ConfigError when the address cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"http: cannot listen on {self.config.host}:{self.config.port} (address in use "
                                  "or not allowed); change http.port or http.host")
            time.sleep(0.02)
        return self.port

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
