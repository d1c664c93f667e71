"""The onnxruntime-web page of the `onnx-web` target: its sources and where onnxruntime-web's files come from.

index.html and edgeport-web.mjs are package data; `serve` runs a loopback server for a web folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgeport.errors import MissingDependencyError

ORT_WEB_VERSION = "1.30.0"  # pinned in package.json; the page is tested against it
ENV_ORT_WEB_DIR = "EDGEPORT_ORT_WEB_DIR"
PAGE_FILES = ("index.html", "edgeport-web.mjs")
MANIFEST = "edgeport-web.json"  # the models in a web folder, read by the page
BROWSER_LATENCY = "browser_latency.json"  # written by benchmarks/web_latency.py
# onnxruntime-web runtime files per backend: the wasm build (CPU) and the WebGPU build (which also has the
# CPU kernels, but its asyncify wasm is slower on CPU, so the wasm build stays the CPU path)
ORT_FILES = {
    "wasm": ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
}


class OrtWebNotFoundError(MissingDependencyError):
    """onnxruntime-web's dist files are not where edgeport looked."""

    def __init__(self, looked: list[str]) -> None:
        Exception.__init__(self, f"onnxruntime-web {ORT_WEB_VERSION} not found (looked in: {'; '.join(looked)}); "
                           f"run `npm install onnxruntime-web@{ORT_WEB_VERSION}` in this folder or the repository, "
                           f"or pass --ort-web-dir node_modules/onnxruntime-web (or set {ENV_ORT_WEB_DIR})")
        self.package, self.extra = "onnxruntime-web", "npm"


def page_source_dir() -> Path:
    """The folder holding index.html and edgeport-web.mjs."""
    return Path(__file__).resolve().parent


def _dist_of(candidate: Path) -> Path | None:
    """Return the dist folder when candidate is onnxruntime-web's package folder or its dist, else None."""
    for folder in (candidate / "dist", candidate, candidate / "node_modules" / "onnxruntime-web" / "dist"):
        if (folder / ORT_FILES["wasm"][0]).is_file():
            return folder
    return None


def find_ort_web(explicit: str | Path | None = None) -> tuple[Path, str]:
    """Return (onnxruntime-web dist folder, its version).

    Order: `explicit` (--ort-web-dir), $EDGEPORT_ORT_WEB_DIR, node_modules of the current folder and of
    the edgeport checkout. Never downloads. Raises OrtWebNotFoundError naming where it looked.
    """
    looked: list[str] = []
    env = os.environ.get(ENV_ORT_WEB_DIR)
    if explicit or env:
        candidates = [Path(explicit or env)]  # an explicit choice is never second-guessed
    else:
        candidates = [Path.cwd() / "node_modules" / "onnxruntime-web",
                      page_source_dir().parent.parent / "node_modules" / "onnxruntime-web"]
    for candidate in candidates:
        looked.append(str(candidate))
        dist = _dist_of(candidate)
        if dist is not None:
            return dist, _version(dist)
    raise OrtWebNotFoundError(looked)


def _version(dist: Path) -> str:
    try:
        return str(json.loads((dist.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def read_browser_latency(web_dir: str | Path) -> dict | None:
    """The in-browser latency measured for a web folder (benchmarks/web_latency.py writes it), or None.

    Keys: "measured_on", "browser", "onnxruntime_web", "image", "runs", and "rows": one per model and thread
    setting with "model", "precision", "backend", "threads", "cross_origin_isolated", "inference_ms_p50",
    "inference_ms_p99", "end_to_end_ms_p50", "end_to_end_ms_p99" (milliseconds; end to end = letterbox +
    inference + decoding and NMS in the page, the image already decoded).
    """
    path = Path(web_dir) / BROWSER_LATENCY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
