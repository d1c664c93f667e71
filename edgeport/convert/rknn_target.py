"""RKNN target (Rockchip NPUs): `<stem>_rknn_<platform>.rknn` built by rknn-toolkit2, int8 (w8a8) or fp16.

The toolkit runs in its own venv and process (edgeport.convert.rknn_worker; scripts/rknn-venv.sh makes the venv).
The graph is edgeport's raw head (per level: box logits, class logits, decoded in float by the runtime), taking
uint8 RGB NHWC (the normalization is inside the model). Beside it: `.rknnsim`, what the x86 simulator rebuilds.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.artifact import ArtifactRecord, Decode, Preprocess, TensorSpec
from edgeport.convert.base import Artifact, ConvertOptions
from edgeport.convert.job import Job, write_record
from edgeport.convert.provenance import provenance
from edgeport.errors import ConversionError, UnsupportedModelError
from edgeport.runtime.backends.rknn_env import WORKER, venv_python, worker_env

PRECISIONS = ("int8", "fp16")
DEFAULT_PLATFORM = "rk3588"
# what rknn-toolkit2 2.5.0's config(target_platform=...) accepts
PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1103b", "rv1106", "rv1106b",
             "rv1126b", "rk2118")
# --calibration-method -> rknn-toolkit2's quantized_algorithm, and how the record describes it
ALGORITHMS = {"minmax": "normal", "entropy": "kl_divergence"}
ALGORITHM_TEXT = {"normal": "minmax per tensor (rknn-toolkit2 'normal')",
                  "kl_divergence": "KL divergence (rknn-toolkit2 'kl_divergence')"}
SIMULATOR_LABEL = ("simulator (x86): rknn-toolkit2's simulator running the same build (graph and int8 ranges "
                   "from the .rknnsim beside the .rknn), not the NPU")
FP16_SIMULATOR_LABEL = "simulator (x86): rknn-toolkit2's simulator running the same fp16 build, not the NPU"


def check_options(source: Path, options: ConvertOptions, platform: str = DEFAULT_PLATFORM) -> str:
    """Refuse, in one line and before any work, what this target cannot do; return the platform."""
    platform = platform.lower()
    if platform not in PLATFORMS:
        raise ConversionError(f"rknn: unknown --platform {platform!r}; rknn-toolkit2 2.5 builds for: "
                              f"{', '.join(PLATFORMS)}")
    if options.precision not in PRECISIONS:
        raise ConversionError(f"rknn: precision {options.precision!r} is not available; choose --int8 (default, "
                              "needs --data) or --fp16")
    if options.precision == "int8" and options.data is None:
        raise ConversionError("rknn: int8 calibrates on representative images: pass --data DATA.yaml, an image "
                              "folder or a video (or --fp16)")
    if (options.calibration_method or "minmax") not in ALGORITHMS:
        raise ConversionError(f"rknn: calibration method {options.calibration_method!r} is not available; choose "
                              f"{' or '.join(ALGORITHMS)} (the toolkit's {' / '.join(ALGORITHMS.values())})")
    if source.suffix.lower() != ".pt":
        raise UnsupportedModelError(f"{source}: the rknn target converts from the Ultralytics .pt (PyTorch) model")
    return platform


def artifact_paths(source: Path, options: ConvertOptions, platform: str) -> tuple[Path, Path]:
    """(.rknn, .rknnsim) paths; fp16 artifacts carry _fp16 in their name."""
    stem = f"{options.name or source.stem}_rknn_{platform}{'_fp16' if options.precision == 'fp16' else ''}"
    return options.out_dir / f"{stem}.rknn", options.out_dir / f"{stem}.rknnsim"


def output_names(strides: tuple[int, ...]) -> list[str]:
    return [f"{kind}_{stride}" for stride in strides for kind in ("box", "cls")]


def export_raw_onnx(loaded, path: Path, opset: int) -> None:
    """torch.onnx export of the SourceModel's raw head, NCHW float input (the toolkit adds the uint8 NHWC input)."""
    import torch

    size = loaded.imgsz
    try:
        with torch.no_grad():
            torch.onnx.export(loaded.raw_head("NCHW"), (torch.zeros(1, 3, size, size),), str(path),
                              opset_version=opset, input_names=["images"], output_names=output_names(loaded.strides),
                              do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise ConversionError(f"rknn: torch.onnx export of {loaded.path.name} failed: "
                              f"{str(exc).splitlines()[0]}") from exc


def write_dataset(frames: np.ndarray, folder: Path) -> Path:
    """The toolkit's dataset file: one NCHW uint8 .npy per calibration frame (the runtime's letterbox), one a line."""
    lines = []
    for index, frame in enumerate(frames):
        path = folder / f"calibration_{index:04d}.npy"
        np.save(path, np.ascontiguousarray(frame.transpose(2, 0, 1)[None]))
        lines.append(str(path))
    dataset = folder / "dataset.txt"
    dataset.write_text("\n".join(lines) + "\n")
    return dataset


def run_worker(job_path: Path, say, stderr_path: Path) -> dict[str, Any]:
    """Run the toolkit's process on a job, forwarding its progress lines; return its result.
    Raises ConversionError (one line) when it fails."""
    command = [str(venv_python()), "-m", WORKER, "convert", str(job_path)]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=worker_env())
        assert process.stdout is not None
        for line in process.stdout:
            say(line.rstrip("\n"))
        code = process.wait()
    result_path = Path(json.loads(job_path.read_text())["result"])
    if code != 0 or not result_path.is_file():
        tail = [line for line in stderr_path.read_text(errors="replace").splitlines() if line.strip()][-2:]
        raise ConversionError(f"rknn: the rknn-toolkit2 process failed (exit {code}): "
                              f"{' | '.join(tail) or 'no output'}")
    result = json.loads(result_path.read_text())
    if "error" in result:
        raise ConversionError(f"rknn: {result['error']}")
    return result


def build_record(loaded, platform: str, precision: str, outputs: list[dict], prov: dict[str, Any]) -> ArtifactRecord:
    """The record of a .rknn: uint8 RGB NHWC in, per-level float32 raw-head outputs (the runtime asks the NPU for
    float outputs), decoded by the runtime ("dfl"; top-k for one-to-one heads)."""
    size = loaded.imgsz
    names = output_names(loaded.strides)
    specs = tuple(TensorSpec(name, tuple(o["shape"]), "float32") for name, o in zip(names, outputs))
    levels = tuple({"box": f"box_{stride}", "cls": f"cls_{stride}", "stride": stride,
                    "grid": [size // stride, size // stride]} for stride in loaded.strides)
    return ArtifactRecord(
        names=loaded.names, imgsz=(size, size), layout="NHWC",
        inputs=(TensorSpec("images", (1, size, size, 3), "uint8"),), outputs=specs,
        preprocess=Preprocess(),  # uint8 pixels in; the model scales them by 1/255 (mean 0, std 255) itself
        decode=Decode(kind="dfl", boxes="", scores="", box_format="ltrb", normalized=False, levels=levels,
                      reg_max=loaded.reg_max, nms=not loaded.one_to_one),
        target="rknn", precision=precision, provenance={**prov, "platform": platform, "head": loaded.describe()})


def _calibrate(job: Job, size: int, folder: Path, algorithm: str) -> tuple[Path, dict[str, Any]]:
    calibration = job.calibration(size)  # built once per job, shared with the other targets
    return write_dataset(calibration.frames, folder), {
        "calibration_sha256": calibration.sha256, "calibration_images": len(calibration),
        "calibration_method": f"{ALGORITHM_TEXT[algorithm]}, asymmetric int8 activations"}


def convert_rknn(job: Job) -> Artifact:
    """Write DIR/<stem>_rknn_<platform>.rknn (+ sidecar record) and its simulator bundle .rknnsim; return the
    Artifact. Raises ConversionError, UnsupportedModelError, RknnVenvMissingError (a MissingDependencyError)."""
    source, options, say = job.source, job.options, job.say
    platform = check_options(source, options, job.target_options.platform)
    venv_python()  # a missing venv fails here, before any work
    out, bundle = artifact_paths(source, options, platform)
    loaded = job.model()
    # default: the toolkit's minmax; for the NMS-free one-to-one heads (YOLO26, YOLOv10) KL divergence, which
    # kept the YOLO26n sample within 0.13 point where minmax lost 1.84 (docs/rknn.md)
    algorithm = ALGORITHMS[options.calibration_method or ("entropy" if loaded.one_to_one else "minmax")]
    if loaded.attention:
        say("rknn: the model has attention blocks; the toolkit maps them to NPU ops where it can")
    with tempfile.TemporaryDirectory(prefix="edgeport-rknn-") as tmp:
        work = Path(tmp)
        say(f"rknn: exporting {source.name} ({loaded.family}, {loaded.head_kind} head) as its raw head, opset "
            f"{options.opset}")
        onnx_path = work / f"{source.stem}_raw.onnx"
        export_raw_onnx(loaded, onnx_path, options.opset)
        prov = provenance(source, options.command)
        task: dict[str, Any] = {"onnx": str(onnx_path), "out": str(out.resolve()), "bundle": str(bundle.resolve()),
                               "platform": platform, "precision": options.precision, "imgsz": loaded.imgsz,
                               "quantized_dtype": "w8a8", "quantized_algorithm": algorithm,
                               "result": str(work / "result.json"), "dataset": None}
        if options.precision == "int8":
            dataset, calibration = _calibrate(job, loaded.imgsz, work, algorithm)
            task["dataset"] = str(dataset)
            prov = {**provenance(source, options.command, calibration["calibration_sha256"]), **calibration}
        job_path = work / "job.json"
        job_path.write_text(json.dumps(task))
        result = run_worker(job_path, say, work / "stderr.txt")
    label = SIMULATOR_LABEL if options.precision == "int8" else FP16_SIMULATOR_LABEL
    prov = {**prov, "tools": {**prov.get("tools", {}), "rknn-toolkit2": result["toolkit_version"]},
            "io": "uint8 RGB NHWC in (mean 0, std 255 inside the model), float32 outputs",
            "proxy": {"artifact": bundle.name, "label": label},
            "board_runtime": "rknn-toolkit-lite2 (RKNNLite) on the board: edgeport detect MODEL.rknn"}
    record = build_record(loaded, platform, options.precision, result["outputs"], prov)
    write_record(out, record)
    embed_record(bundle, record, out.name)
    say(f"rknn: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {bundle.name} (what the x86 simulator runs)")
    return Artifact(path=out, record=record, extra_files=(bundle,))


def embed_record(bundle: Path, record: ArtifactRecord, rknn_name: str) -> None:
    """Add the bundle's own record (the .rknn's, marked as its simulator proxy) into the bundle."""
    import zipfile

    from dataclasses import replace

    from edgeport.runtime.backends.rknn_sim import RECORD_ENTRY

    prov = {k: v for k, v in record.provenance.items() if k != "proxy"}
    own = replace(record, provenance={**prov, "proxy_for": rknn_name,
                                      "proxy_label": record.provenance["proxy"]["label"]})
    with zipfile.ZipFile(bundle, "a") as archive:
        archive.writestr(RECORD_ENTRY, own.to_json())
