"""Find the artifacts of a folder and open each through the runtime, or say why it cannot be.

An artifact this host cannot execute is evaluated through the proxy its record names
(`provenance["proxy"] = {"artifact": FILE, "label": TEXT}`), or reported as not executable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.artifact import SIDECAR_SUFFIX, ArtifactRecord, sha256_file, sidecar_path
from edgeport.errors import BackendError, EdgeportError, MissingDependencyError, ModelNotFoundError
from edgeport.report.rows import MEASURED, NOT_EXECUTABLE, PROXY, SKIPPED
from edgeport.runtime import Detector

# file-name endings the report treats as models (directories: .mlpackage, NCNN's <stem>_ncnn_model)
ARTIFACT_ENDINGS = (".onnx", ".tflite", ".engine", ".plan", ".trt", ".mlpackage", ".mlmodel", ".xml", ".rknn",
                    "_ncnn_model")
SOURCE_ENDINGS = (".pt", ".pth")


@dataclass
class Found:
    """One model file of the folder: opened (`detector`), standing in through a proxy, or not usable."""

    path: Path
    status: str
    detector: Detector | None = None
    record: ArtifactRecord | None = None
    proxy_label: str | None = None
    proxy_path: Path | None = None
    reason: str = ""

    @property
    def size_bytes(self) -> int:
        from edgeport.artifact import artifact_size

        return artifact_size(self.path)  # a directory (.mlpackage) or an IR (.xml + .bin) counts whole


def is_model_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(ARTIFACT_ENDINGS + SOURCE_ENDINGS) and not name.endswith(SIDECAR_SUFFIX)


def loose_record(path: Path) -> ArtifactRecord | None:
    """The sidecar record of an artifact the runtime cannot open (`<stem>.edgeport.json` or
    `<name>.edgeport.json`); None when there is none. Raises ArtifactMismatchError for a record
    that is malformed or bound to another file."""
    from edgeport.errors import ArtifactMismatchError

    for candidate in (sidecar_path(path), path.with_name(path.name + SIDECAR_SUFFIX)):
        if not candidate.is_file():
            continue
        try:
            data: dict[str, Any] = json.loads(candidate.read_text())
        except ValueError as exc:
            raise ArtifactMismatchError(f"{candidate}: metadata record is not JSON ({exc})") from exc
        record = ArtifactRecord.from_dict(data, where=str(candidate))
        if record.artifact_sha256 and path.is_file() and record.artifact_sha256 != sha256_file(path):
            continue  # the sidecar of a sibling with the same stem
        return record
    return None


def open_artifact(path: Path, threads: int | None = None) -> Found:
    """Open one model file of the folder; never raises for a bad file (it comes back SKIPPED)."""
    if path.name.lower().endswith(SOURCE_ENDINGS):
        return Found(path, SKIPPED, reason="a source model, not an edge artifact (pass it as --baseline to "
                                           "measure against it)")
    try:
        detector = Detector(path, threads=threads)
    except (BackendError, MissingDependencyError, ModelNotFoundError) as exc:
        cannot_run = str(exc) if not path.is_dir() or isinstance(exc, MissingDependencyError) else \
            f"no backend on this host opens a {path.suffix or path.name} folder"
    except EdgeportError as exc:
        return Found(path, SKIPPED, reason=str(exc))
    except Exception as exc:  # an interpreter failing on a foreign file must not lose the other rows
        return Found(path, SKIPPED, reason=f"{type(exc).__name__}: {exc}")
    else:
        return _opened(path, detector)
    try:
        record = loose_record(path)
    except EdgeportError as exc:
        return Found(path, SKIPPED, reason=str(exc))
    found = Found(path, NOT_EXECUTABLE, record=record, reason=f"not executable on this host: {cannot_run}")
    proxy = (record.provenance.get("proxy") if record else None) or None
    if not isinstance(proxy, dict) or not proxy.get("artifact"):
        return found
    proxy_path = path.parent / str(proxy["artifact"])
    try:
        detector = Detector(proxy_path, threads=threads)
    except Exception as exc:  # a broken proxy leaves the row unmeasured, saying why
        found.reason += f"; its proxy {proxy_path.name} cannot be used ({exc})"
        return found
    return Found(path, PROXY, detector=detector, record=record, proxy_path=proxy_path,
                 proxy_label=str(proxy.get("label") or f"{proxy_path.name}, run on this host"),
                 reason=f"not executable on this host ({cannot_run}); evaluated through {proxy_path.name}")


def _opened(path: Path, detector: Detector) -> Found:
    """An artifact the runtime opened; an ONNX that only stands for an engine built on the device
    (its record's proxy names itself, as `--target tensorrt` writes) is labelled as that proxy."""
    record = detector.record
    proxy = record.provenance.get("proxy")
    if isinstance(proxy, dict) and proxy.get("artifact") == path.name and proxy.get("label"):
        return Found(path, PROXY, detector=detector, record=record, proxy_path=path, proxy_label=str(proxy["label"]),
                     reason=f"the {record.target} engine is built on the device; this file runs on this host as "
                            "its proxy")
    found = Found(path, MEASURED, detector=detector)
    if record.target == "onnx-web":
        found.reason = browser_note(path)
    return found


def browser_note(path: Path) -> str:
    """For a model of an onnx-web folder: its in-browser latency when benchmarks/web_latency.py measured it."""
    from edgeport.web import read_browser_latency

    measured = read_browser_latency(path.parent) or {}
    rows = [r for r in measured.get("rows", []) if r.get("model") == path.name]
    if not rows:
        return ("accuracy measured with onnxruntime on the same model file the page loads; in-browser latency "
                "not measured yet (python benchmarks/web_latency.py)")
    best = min(rows, key=lambda r: r.get("end_to_end_ms_p50") or float("inf"))
    return (f"in {measured.get('browser', 'the browser')} ({best.get('backend')}, {best.get('threads')} thread(s)): "
            f"end to end p50 {best.get('end_to_end_ms_p50')} ms, p99 {best.get('end_to_end_ms_p99')} ms")


def _web_models(directory: Path) -> list[Path]:
    """The models of the onnx-web folders (`<name>_web/` with the page's manifest) inside `directory`."""
    from edgeport.web import MANIFEST

    return [model for folder in sorted(directory.iterdir()) if (folder / MANIFEST).is_file()
            for model in sorted(folder.glob("*.onnx"))]


def scan(directory: Path, threads: int | None = None) -> list[Found]:
    """Every model file directly in `directory` and in its onnx-web folders, in name order; proxies are
    folded into the rows of the artifacts they stand for."""
    paths = [p for p in sorted(directory.iterdir()) if is_model_file(p)] + _web_models(directory)
    found = [open_artifact(p, threads) for p in paths]
    proxies = {f.proxy_path.resolve() for f in found if f.proxy_path is not None and f.proxy_path != f.path}
    return [f for f in found if f.path.resolve() not in proxies]
