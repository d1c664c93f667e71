"""The daemon's HTTP server: uvicorn in its own thread, with connection limits that idle sockets cannot exhaust.

A connection must send its request headers within `header_timeout_s`; at `max_connections` the oldest
idle connection is closed to make room (a busy one never is); every response is counted once, 500s included.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from edgeport.daemon.config import Http
from edgeport.daemon.http import CLIENT_GONE, create_app
from edgeport.errors import ConfigError, MissingDependencyError

log = logging.getLogger("edgeport.daemon")

ROUTES = {"/health": "/health", "/metrics": "/metrics", "/detect": "/detect"}
CAMERA_ROUTES = {"latest": "/latest", "snapshot.jpg": "/snapshot", "stream.mjpg": "/stream"}


def route_of(path: str) -> str:
    """The metric label of a request path (camera ids are not labels: their number is unbounded)."""
    if path in ROUTES:
        return ROUTES[path]
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "cameras" and parts[2] in CAMERA_ROUTES:
        return CAMERA_ROUTES[parts[2]]
    return "other"


def counted(app, count: Callable[[str, int], None]):
    """ASGI wrapper: counts the status each request was answered with; an exception in the app is one log
    line and a counted 500; a client gone mid-request is counted as 499 without a traceback."""
    from starlette.requests import ClientDisconnect

    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        route, started = route_of(scope.get("path", "")), False

        async def send_counted(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(route, message["status"])  # before the client can see the answer
            await send(message)

        try:
            await app(scope, receive, send_counted)
        except ClientDisconnect:
            if not started:
                count(route, CLIENT_GONE)
        except Exception as exc:  # a bug must not cost a 60-line traceback per request, nor go uncounted
            log.error("HTTP %s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, exc)
            if not started:
                body = json.dumps({"error": "internal error; see the daemon's log"}).encode()
                await send_counted({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})

    return wrapper


def protocol_class(config: Http, on_refused: Callable[[str], None]):
    """uvicorn's h11 protocol with a header deadline and eviction of idle connections at the limit."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer, self._idle_since = None, time.monotonic()
            if len(self.connections) > config.max_connections:
                idle = [c for c in self.connections if c is not self and c._idle()]
                victim = min(idle, key=lambda c: c._idle_since) if idle else self
                on_refused("connections_idle_closed" if idle else "connections_busy")
                victim._close()
                if victim is self:
                    return
            self._arm_header_deadline()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _close(self) -> None:
            if not self.transport.is_closing():
                try:
                    self.conn.send(h11.ConnectionClosed())
                except h11.LocalProtocolError:
                    pass
                self.transport.close()

        def _arm_header_deadline(self) -> None:
            self._idle_since = time.monotonic()
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(config.header_timeout_s, self._header_deadline, self.cycle)

        def _header_deadline(self, cycle_when_armed) -> None:
            if self.cycle is cycle_when_armed and not self.transport.is_closing():  # no new request began
                on_refused("header_timeout")
                self._close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()

        def connection_lost(self, exc) -> None:
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

    return GuardedProtocol


class HttpServer:
    """uvicorn serving the daemon's API in a background thread; `port` is the bound port once started."""

    def __init__(self, view, config: Http, metrics) -> None:
        try:
            import uvicorn
        except ImportError as exc:
            raise MissingDependencyError("uvicorn (HTTP API)", "daemon") from exc

        self.config = config
        self.app = create_app(view, config, metrics)
        refused = lambda reason: metrics.http_refused.inc(reason)  # noqa: E731
        app = counted(self.app, lambda route, status: metrics.http_requests.inc(route, str(status)))
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", lifespan="off", access_log=False,
            http=protocol_class(config, refused), timeout_keep_alive=config.keep_alive_s,
            h11_max_incomplete_event_size=16 * 1024, limit_concurrency=None))
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
        self.app.state.uploads.close()
