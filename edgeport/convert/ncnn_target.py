"""NCNN target: `<stem>_ncnn_model/` (model.ncnn.param + model.ncnn.bin) through pnnx, fp16 weight storage by default.

TorchScript of the SourceModel's raw head (NCHW, per level box and class logits, cut before the decode) goes
through the pnnx converter in a temporary folder; the runtime decodes in float (decode kind "dfl"), top-k for
one-to-one heads. The record sits beside the folder (`<stem>_ncnn_model.edgeport.json`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from edgeport.artifact import ArtifactRecord, Decode, Preprocess
from edgeport.convert.base import Artifact, ConvertOptions
from edgeport.convert.job import Job, write_record
from edgeport.convert.provenance import provenance, tool_versions
from edgeport.errors import ConversionError, MissingDependencyError, UnsupportedModelError

PRECISIONS = ("fp16", "fp32")
PNNX_TIMEOUT_S = 600
FRIGATE_NOTE = ("Frigate has no NCNN detector (its detector plugins: cpu/edgetpu TFLite, openvino, onnx, tensorrt, "
                "rknn, hailo, ...), so no Frigate `detectors:` block runs this folder; run it with edgeport "
                "(`edgeport detect` / `edgeport run`), or give Frigate the tflite or onnx artifact")


def folder_name(stem: str, precision: str) -> str:
    """`<stem>_ncnn_model` (fp16, as Ultralytics names it) or `<stem>_fp32_ncnn_model`."""
    return f"{stem}_ncnn_model" if precision == "fp16" else f"{stem}_{precision}_ncnn_model"


def check_options(source: Path, options: ConvertOptions) -> None:
    """Refuse, before any work, what this target cannot do (one line the user can act on)."""
    if options.precision not in PRECISIONS:
        hint = " (NCNN int8 needs its own calibration table; not supported yet)" if options.precision == "int8" else ""
        raise ConversionError(f"ncnn: unknown precision {options.precision!r}; choose one of "
                              f"{', '.join(PRECISIONS)}{hint}")
    if source.suffix.lower() != ".pt":
        raise UnsupportedModelError(f"{source}: the ncnn target converts from the Ultralytics .pt (PyTorch) model")


def pnnx_executable() -> str:
    """Path of the pnnx converter program of the `pnnx` package; raises MissingDependencyError."""
    try:
        import pnnx
    except ImportError as exc:
        raise MissingDependencyError("pnnx", "convert") from exc
    return pnnx.EXEC_PATH


def raw_head_module(source):
    """torch module: NCHW image -> per level (box logits (1, h*w, 4*reg_max), class logits (1, h*w, nc)).

    The walker's own RawHead registers the head's branch a second time, which pnnx then cannot fold into
    Convolution layers; this one reaches the branch through a plain tuple."""
    import torch

    from edgeport.convert.source import head_branch, walk_backbone

    class RawHeadNCHW(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = source.net
            self.branch = head_branch(source.head)  # a tuple: not registered twice

        def forward(self, image):
            box_convs, cls_convs = self.branch
            outputs = []
            for level, feat in enumerate(walk_backbone(self.net, image)):
                box, cls = box_convs[level](feat), cls_convs[level](feat)
                outputs.append(box.permute(0, 2, 3, 1).reshape(box.shape[0], -1, box.shape[1]))
                outputs.append(cls.permute(0, 2, 3, 1).reshape(cls.shape[0], -1, cls.shape[1]))
            return tuple(outputs)

    return RawHeadNCHW().eval()


def run_pnnx(source, work: Path, fp16: bool) -> tuple[Path, Path]:
    """Trace the raw head to TorchScript and convert it with pnnx inside `work`; return (param, bin).

    Raises ConversionError with pnnx's last message when it fails.
    """
    import torch

    executable = pnnx_executable()
    size = source.imgsz
    traced = work / "raw_head.pt"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated; pnnx reads TorchScript
            torch.jit.trace(raw_head_module(source), (torch.zeros(1, 3, size, size),), check_trace=False).save(
                str(traced))
    except Exception as exc:
        raise ConversionError(f"ncnn: TorchScript trace of {source.path.name} failed: "
                              f"{str(exc).splitlines()[0]}") from exc
    param, weights = work / "model.ncnn.param", work / "model.ncnn.bin"
    command = [executable, str(traced), f"inputshape=[1,3,{size},{size}]f32", "device=cpu",
               f"ncnnparam={param}", f"ncnnbin={weights}", f"ncnnpy={work / 'model_ncnn.py'}",
               f"pnnxparam={work / 'model.pnnx.param'}", f"pnnxbin={work / 'model.pnnx.bin'}",
               f"pnnxpy={work / 'model_pnnx.py'}", f"pnnxonnx={work / 'model.pnnx.onnx'}", f"fp16={int(fp16)}"]
    try:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"ncnn: pnnx did not finish in {PNNX_TIMEOUT_S} s") from exc
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise ConversionError(f"ncnn: pnnx failed on {source.path.name} (exit {done.returncode}): {last[0]}")
    return param, weights


def declare_input_shape(param: Path, size: int) -> None:
    """Write the input shape into the param file's Input layer (0=w 1=h 2=c): NCNN's own place for it,
    which the runtime reads (pnnx leaves it empty)."""
    lines = param.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == ["Input"]:
            lines[i] = f"{line.rstrip()} 0={size} 1={size} 2=3"
            break
    else:
        raise ConversionError(f"ncnn: pnnx wrote no Input layer in {param.name}")
    param.write_text("\n".join(lines) + "\n")


def build_record(folder: Path, source, precision: str, prov: dict) -> ArtifactRecord:
    """The record of the written folder, its tensors read by opening it in the runtime's NCNN backend."""
    from edgeport.runtime.backends.ncnn import NcnnBackend

    backend = NcnnBackend(folder, threads=1, fp16=precision == "fp16")
    outputs = backend.outputs
    size = source.imgsz
    levels = tuple({"box": outputs[2 * i].name, "cls": outputs[2 * i + 1].name, "stride": stride,
                    "grid": [size // stride, size // stride]} for i, stride in enumerate(source.strides))
    return ArtifactRecord(
        names=source.names, imgsz=(size, size), layout="NCHW", inputs=tuple(backend.inputs), outputs=tuple(outputs),
        preprocess=Preprocess(),
        decode=Decode(kind="dfl", boxes="", scores="", box_format="ltrb", normalized=False, levels=levels,
                      reg_max=source.reg_max, nms=not source.one_to_one),
        target="ncnn", precision=precision, provenance={**prov, "head": source.describe()})


def convert_ncnn(job: Job) -> Artifact:
    """Write DIR/<stem>_ncnn_model/ (fp16 weights; `<stem>_fp32_ncnn_model/` at fp32) and its sidecar record;
    return the Artifact. Raises ConversionError, UnsupportedModelError, MissingDependencyError."""
    source, options, say = job.source, job.options, job.say
    check_options(source, options)
    pnnx_executable()
    loaded = job.model()
    fp16 = options.precision == "fp16"
    folder = options.out_dir / folder_name(options.name or source.stem, options.precision)
    say(f"ncnn: converting {source.name} with pnnx (NCHW 1x3x{loaded.imgsz}x{loaded.imgsz}, {loaded.family}, raw "
        f"{loaded.head_kind} head cut before the decode, {'fp16' if fp16 else 'fp32'} weight storage)")
    with tempfile.TemporaryDirectory(prefix="edgeport-ncnn-") as tmp:  # pnnx writes its side files here
        param, weights = run_pnnx(loaded, Path(tmp), fp16)
        declare_input_shape(param, loaded.imgsz)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.move(str(param), folder / param.name)
        shutil.move(str(weights), folder / weights.name)
    prov = {**provenance(source, options.command), "tools": tool_versions() | tool_versions(("pnnx", "ncnn")),
            "weights": "float16" if fp16 else "float32", "calibration_method": "none", "calibration_images": 0,
            "io": "float"}
    record = build_record(folder, loaded, options.precision, prov)
    write_record(folder, record)
    say(f"ncnn: wrote {folder}/ ({sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.1f} MB)")
    say(f"ncnn: {FRIGATE_NOTE}")
    return Artifact(path=folder, record=record)
