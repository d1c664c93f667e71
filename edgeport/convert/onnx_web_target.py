"""`onnx-web` target: a folder with ONNX model(s) for onnxruntime-web, their records and a self-contained page.

The models come from the `onnx` target (fp32, int8 QDQ for the WASM backend, fp16 for WebGPU); this module
checks their ops against onnxruntime's CPU kernels (what the WASM backend runs), re-labels the record and
copies the page and onnxruntime-web's own files (never fetched from a CDN, never downloaded).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeport.artifact import ArtifactRecord, sha256_file, sidecar_path
from edgeport.convert.base import Artifact, ConvertOptions
from edgeport.convert.job import Job, write_record
from edgeport.errors import ConversionError, MissingDependencyError
from edgeport.web import MANIFEST, ORT_FILES, ORT_WEB_VERSION, PAGE_FILES, find_ort_web, page_source_dir

# the backend each precision is made for (docs/design.md: WebGPU has no integer conv kernels; fp16 needs shader-f16)
BACKEND_OF = {"fp32": "wasm", "int8": "wasm", "fp16": "webgpu"}


def web_dir_for(source: Path, options: ConvertOptions) -> Path:
    """The folder the target writes: OUT/<name>_web."""
    return options.out_dir / f"{options.name or source.stem}_web"


def onnx_model(job: Job, precision: str, work_dir: Path) -> Artifact:
    """Convert with the `onnx` target at `precision` into work_dir (the job's calibration set); return
    its Artifact.

    Raises ConversionError when the onnx target does not make that precision.
    """
    if precision == "int8" and job.options.data is None:
        raise ConversionError("onnx-web --int8 needs --data (DATA.yaml, image folder or video) for calibration")
    artifact = job.convert("onnx", out_dir=work_dir, precision=precision, check=False)
    if artifact.record.precision != precision:
        raise ConversionError(f"onnx-web: unsupported precision {precision!r}: the onnx target of this edgeport "
                              f"wrote {artifact.record.precision!r}")
    return artifact


def cpu_kernel_check(model) -> dict[str, Any]:
    """Check every node against onnxruntime's CPU kernel registry (what onnxruntime-web's WASM backend runs).

    Returns {"ops": {op: count}, "opsets": {domain: version}, "problems": [...], "checked_against": str}.
    """
    import onnx
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

    kernels: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for kernel in ort_c.get_all_opkernel_def():
        if kernel.provider == "CPUExecutionProvider":
            kernels.setdefault((kernel.domain or "", kernel.op_name), []).append(tuple(kernel.version_range))
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
    counts: Counter[str] = Counter()
    problems: list[str] = []
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        name = node.op_type if not domain else f"{domain}.{node.op_type}"
        counts[name] += 1
        if counts[name] > 1:
            continue
        version = opsets.get(domain, 1)
        try:
            version = onnx.defs.get_schema(node.op_type, version, domain).since_version
        except Exception:  # a contrib op onnx does not know: use the opset version itself
            pass
        ranges = kernels.get((domain, node.op_type))
        if not ranges:
            problems.append(f"{name}: no onnxruntime CPU kernel (the WASM backend cannot run it)")
        elif not any(low <= version <= high for low, high in ranges):
            problems.append(f"{name} version {version}: onnxruntime CPU kernels cover {sorted(ranges)}")
    return {"ops": dict(sorted(counts.items())), "opsets": {k or "ai.onnx": v for k, v in opsets.items()},
            "problems": problems,
            "checked_against": f"onnxruntime {onnxruntime.__version__} CPU kernel registry (onnxruntime-web "
                               f"{ORT_WEB_VERSION}'s WASM backend is the same CPU kernels built to WebAssembly); "
                               "WebGPU coverage is not checked statically: ops without a WebGPU kernel run on the CPU"}


def write_ort_format(model: Path) -> Path:
    """Write <stem>.ort beside the ONNX: onnxruntime's ORT format, graph optimized at the 'extended' level.

    'extended' fusions are platform independent; 'all' would bake in x86 NCHWc layouts the WASM build lacks.
    """
    import onnxruntime

    target = model.with_suffix(".ort")
    session_options = onnxruntime.SessionOptions()
    session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session_options.optimized_model_filepath = str(target)
    session_options.add_session_config_entry("session.save_model_format", "ORT")
    try:
        onnxruntime.InferenceSession(str(model), session_options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ConversionError(f"onnx-web: writing the ORT format of {model.name} failed: {exc}") from exc
    return target


def _copy_runtime(dist: Path, web_dir: Path, backends: set[str]) -> list[Path]:
    written = []
    for backend in sorted(backends):
        for name in ORT_FILES[backend]:
            target = web_dir / name
            if not target.is_file() or target.stat().st_size != (dist / name).stat().st_size:
                shutil.copy2(dist / name, target)
            written.append(target)
    for name in PAGE_FILES:
        shutil.copy2(page_source_dir() / name, web_dir / name)
        written.append(web_dir / name)
    return written


def _update_manifest(web_dir: Path, entry: dict[str, Any], ort_version: str) -> Path:
    path = web_dir / MANIFEST
    models: list[dict[str, Any]] = []
    if path.is_file():
        try:
            models = [m for m in json.loads(path.read_text()).get("models", []) if m.get("file") != entry["file"]
                      and (web_dir / str(m.get("file"))).is_file()]
        except (OSError, ValueError, AttributeError):
            models = []
    models.append(entry)
    order = {"int8": 0, "fp32": 1, "fp16": 2}
    models.sort(key=lambda m: order.get(m.get("precision"), 9))
    path.write_text(json.dumps({"schema": "edgeport.web/1", "onnxruntime_web": ort_version,
                                "models": models}, indent=2))
    return path


def convert_onnx_web(job: Job) -> Artifact:
    """Write OUT/<name>_web/ (model, record, page, onnxruntime-web files); return the model's Artifact.

    Raises ConversionError (unknown precision, an op the WASM backend lacks, --int8 without --data),
    OrtWebNotFoundError (onnxruntime-web not installed) or MissingDependencyError (onnx).
    """
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "convert") from exc
    source, options, say = job.source, job.options, job.say
    precision = options.precision
    if precision not in BACKEND_OF:
        raise ConversionError(f"onnx-web: precision {precision!r} is not offered; use fp32 (default), "
                              "--int8 --data D (WASM backend) or --fp16 (WebGPU)")
    own = job.target_options
    dist, ort_version = find_ort_web(own.ort_web_dir)  # before the slow part: fail fast
    if ort_version != ORT_WEB_VERSION:
        say(f"onnx-web: warning: onnxruntime-web {ort_version} in {dist}; the page is tested with {ORT_WEB_VERSION}")
    web_dir = web_dir_for(source, options)
    web_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-web-") as tmp:
        made = onnx_model(job, precision, Path(tmp))
        model = onnx.load(str(made.path))
    say(f"onnx-web: checking {len(model.graph.node)} nodes against onnxruntime's CPU kernels (WASM backend)")
    ops = cpu_kernel_check(model)
    if ops["problems"]:
        raise ConversionError("onnx-web: onnxruntime-web's WASM backend cannot run this model: "
                              + "; ".join(ops["problems"]))
    backend = BACKEND_OF[precision]
    web_info = {"backend": backend, "onnxruntime_web": ort_version, "opsets": ops["opsets"], "ops": ops["ops"],
                "op_check": ops["checked_against"]}
    if precision == "fp16":
        web_info["requires"] = "WebGPU adapter with the shader-f16 feature"
    record: ArtifactRecord = replace(made.record, target="onnx-web",
                                     provenance={**made.record.provenance, "onnx_web": web_info})
    out = web_dir / f"{options.name or source.stem}_{precision}.onnx"
    sidecar = write_record(out, record, onnx_model=model, sidecar=True)
    files = _copy_runtime(dist, web_dir, {"wasm", backend})
    entry = {"file": out.name, "record": sidecar.name, "precision": precision, "backend": backend,
             "sha256": sha256_file(out), "size_bytes": out.stat().st_size}
    if own.ort_format:
        ort_file = write_ort_format(out)
        say(f"onnx-web: wrote {ort_file.name} (ORT format; the page loads it with ?format=ort)")
        entry["ort_file"] = ort_file.name
        files.append(ort_file)
    else:
        out.with_suffix(".ort").unlink(missing_ok=True)  # a stale one from an earlier conversion
    manifest = _update_manifest(web_dir, entry, ort_version)
    say(f"onnx-web: wrote {web_dir}/ ({out.name} {out.stat().st_size / 1e6:.1f} MB for {backend}, index.html, "
        f"onnxruntime-web {ort_version}); open it with: edgeport serve-web {web_dir}")
    return Artifact(path=out, record=record, extra_files=(sidecar_path(out), manifest, *files))
