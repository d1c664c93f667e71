"""CoreML target: an ML Program .mlpackage (image input, Vision's outputs), optionally with NMS.

The conversion runs in its own process (edgeport.convert.coreml_worker): coremltools segfaulted
here when imported after tensorflow and torch, so this module never imports it. Off macOS no
CoreML model runs, so every package names an ONNX proxy beside it (provenance["proxy"]).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeport import errors
from edgeport.artifact import ArtifactRecord, Decode, Preprocess, TensorSpec
from edgeport.convert.base import Artifact, ConvertOptions
from edgeport.convert.job import Job
from edgeport.convert.provenance import provenance
from edgeport.errors import ConversionError, MissingDependencyError, UnsupportedModelError

PRECISIONS = ("fp16", "fp32", "int8w", "w8a8", "palette6")
WORKER = "edgeport.convert.coreml_worker"
PROXY_LABELS = {
    "fp32": "fp32 ONNX of the same network with the weights read back from the mlpackage, run in onnxruntime",
    "fp16": "fp32 ONNX with the fp16 weights read back from the mlpackage, run in onnxruntime "
            "(CoreML also computes activations in fp16; the proxy does not)",
    "int8w": "fp32 ONNX with the int8 weights decompressed from the mlpackage, run in onnxruntime "
             "(activations in fp32; CoreML computes them in fp16)",
    "palette6": "fp32 ONNX with the 6-bit palettized weights decompressed from the mlpackage, run in onnxruntime "
                "(activations in fp32; CoreML computes them in fp16)",
    "w8a8": "QDQ ONNX of the calibrated coremltools.optimize.torch model the mlpackage was converted from "
            "(same int8 weights and activation scales), run in onnxruntime",
}


def package_record(names: tuple[str, ...], size: int, anchors: int, precision: str, prov: dict[str, Any],
                   nms: dict[str, float] | None = None, one_to_one: bool = False) -> ArtifactRecord:
    """The record of a package: RGB uint8 NHWC image in (the model itself scales it by 1/255, as
    preprocess.scale says), Vision's outputs.

    The model's outputs are (N, 4) and (N, nc); the CoreML backend hands them on with a batch axis.
    With `nms` (the pipeline) N is however many boxes survive the model's own NMS. `one_to_one` (an
    NMS-free head: YOLOv10, YOLO26): the runtime keeps the top-k (decode.nms False), as Ultralytics does.
    """
    count = -1 if nms else anchors
    return ArtifactRecord(
        names=tuple(names), imgsz=(size, size), layout="NHWC",
        inputs=(TensorSpec("image", (1, size, size, 3), "uint8"),),
        outputs=(TensorSpec("coordinates", (1, count, 4), "float32"),
                 TensorSpec("confidence", (1, count, len(names)), "float32")),
        preprocess=Preprocess(),
        decode=Decode(kind="split", boxes="coordinates", scores="confidence", box_format="xywh", normalized=True,
                      nms=not one_to_one),
        target="coreml", precision=precision,
        provenance={**prov, **({"nms": {"iou_threshold": nms["iou"], "confidence_threshold": nms["conf"],
                                        "per_class": True}} if nms else {})})


def proxy_record(package: ArtifactRecord, package_name: str) -> ArtifactRecord:
    """The record of the ONNX proxy of a package: float NCHW input, the same outputs and decode."""
    size = package.imgsz[0]
    prov = {k: v for k, v in package.provenance.items() if k != "proxy"}
    return ArtifactRecord(
        names=package.names, imgsz=package.imgsz, layout="NCHW",
        inputs=(TensorSpec("images", (1, 3, size, size), "float32"),), outputs=package.outputs,
        preprocess=package.preprocess, decode=package.decode, target="onnx", precision=package.precision,
        provenance={**prov, "proxy_for": package_name, "proxy_label": package.provenance["proxy"]["label"]})


def artifact_paths(source: Path, options: ConvertOptions, precision: str) -> tuple[Path, Path, Path]:
    """(package, package with NMS, ONNX proxy) paths of a conversion."""
    stem = f"{options.name or source.stem}_coreml_{precision}"
    return (options.out_dir / f"{stem}.mlpackage", options.out_dir / f"{stem}_nms.mlpackage",
            options.out_dir / f"{stem}_proxy.onnx")


def worker_command(job: Path) -> list[str]:
    """The command line of the conversion process."""
    return [sys.executable, "-m", WORKER, "convert", str(job)]


def run_worker(command: list[str], say, stderr_path: Path) -> None:
    """Run the conversion process, forwarding its progress lines; raise ConversionError when it fails."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        assert process.stdout is not None
        for line in process.stdout:
            say(line.rstrip("\n"))
        code = process.wait()
    if code == 0:
        return
    tail = [line for line in stderr_path.read_text(errors="replace").splitlines() if line.strip()][-3:]
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise ConversionError(f"coreml: the conversion process died with {name} (it runs apart so that this "
                              f"process survives); last output: {' | '.join(tail) or 'none'}")
    raise ConversionError(f"coreml: the conversion process failed (exit {code}): {' | '.join(tail) or 'no output'}")


def convert_coreml(job: Job) -> Artifact:
    """Write DIR/<stem>_coreml_<precision>.mlpackage (+ sidecar), its ONNX proxy and, with
    --nms (job.target_options.nms), DIR/<stem>_coreml_<precision>_nms.mlpackage; return the package's Artifact.

    Raises ConversionError, UnsupportedModelError, MissingDependencyError.
    """
    source, options, say, own = job.source, job.options, job.say, job.target_options
    precision = options.precision
    if precision not in PRECISIONS:
        raise ConversionError(f"coreml: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} "
                              "(CLI: --fp16 (default), --int8-weights, --w8a8, --palettize)")
    if source.suffix.lower() != ".pt":
        raise UnsupportedModelError(f"{source}: the coreml target converts from the Ultralytics .pt (PyTorch) model")
    if precision == "w8a8" and options.data is None:
        raise ConversionError("coreml: --w8a8 calibrates its activations on representative images: pass --data "
                              "DATA.yaml, an image folder or a video")
    if not 0 < own.nms_iou <= 1 or not 0 <= own.nms_conf <= 1:
        raise ConversionError(f"coreml: NMS thresholds must be in 0..1 (iou {own.nms_iou}, conf {own.nms_conf})")
    import importlib.util

    if importlib.util.find_spec("coremltools") is None:
        raise MissingDependencyError("coremltools", "coreml")
    out, nms_out, proxy = artifact_paths(source, options, precision)
    for stale in (out, nms_out):
        if stale.is_dir():
            shutil.rmtree(stale)
    with tempfile.TemporaryDirectory(prefix="edgeport-coreml-") as tmp:
        request = {"source": str(source.resolve()), "out": str(out.resolve()), "proxy": str(proxy.resolve()),
               "imgsz": options.imgsz, "precision": precision, "result": str(Path(tmp) / "result.json"),
               "provenance": provenance(source, options.command),
               "nms": {"iou": own.nms_iou, "conf": own.nms_conf} if own.nms else None,
               "calibration": None}
        if precision == "w8a8":
            request["calibration"] = _calibration(job, Path(tmp), request)
        request_path = Path(tmp) / "job.json"
        request_path.write_text(json.dumps(request))
        run_worker(worker_command(request_path), say, Path(tmp) / "stderr.txt")
        result = json.loads(Path(request["result"]).read_text())
    if "error" in result:
        error_class = getattr(errors, result["error"], ConversionError)
        raise error_class(result["message"])
    record = ArtifactRecord.from_dict(result["record"], where=str(out))
    return Artifact(path=out, record=record, extra_files=tuple(Path(p) for p in result["extra_files"]))


def _calibration(job: Job, tmp: Path, request: dict) -> str:
    """The job's calibration set (the runtime's letterbox) at the model's size, its frames saved for the
    worker process; the request gets its provenance and size."""
    import numpy as np

    size = job.options.imgsz or job.model().imgsz
    calibration = job.calibration(size)
    request["provenance"].update(calibration_sha256=calibration.sha256, calibration_images=len(calibration),
                                 calibration_method="moving-average min/max (coremltools.optimize.torch observers)")
    path = tmp / "calibration.npz"
    np.savez(path, frames=calibration.frames)
    request["imgsz"] = size
    return str(path)
