"""A loopback HTTP server for a web folder: the right MIME types for .mjs/.wasm, optional cross-origin isolation.

Cross-origin isolation (COOP same-origin + COEP require-corp) lets onnxruntime-web use wasm threads
(SharedArrayBuffer); without it the page runs single-threaded.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MIME = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
        ".json": "application/json", ".onnx": "application/octet-stream", ".ort": "application/octet-stream"}


class _Handler(SimpleHTTPRequestHandler):
    isolated = True
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}

    def end_headers(self) -> None:
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # quiet: the page's own status says what happens
        pass


def make_server(directory: str | Path, port: int = 0, host: str = "127.0.0.1",
                isolated: bool = True) -> ThreadingHTTPServer:
    """Return a server for `directory` (port 0: any free port; `server.server_port` says which)."""
    handler = type("EdgeportWebHandler", (_Handler,), {"isolated": isolated})
    return ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(directory)))


def serve_in_background(directory: str | Path, isolated: bool = True) -> tuple[ThreadingHTTPServer, str]:
    """Start a loopback server in a daemon thread; return (server, base URL ending in '/'). Call server.shutdown()."""
    server = make_server(directory, isolated=isolated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"
