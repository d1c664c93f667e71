"""The rknn-toolkit2 process, run with the isolated venv's python (scripts/rknn-venv.sh):
`convert JOB.json` builds the .rknn and its simulator bundle; `simulate BUNDLE` serves the x86 simulator on a pipe.

Only this process imports rknn-toolkit2 (its numpy/onnx/protobuf pins cannot live in edgeport's venv). Progress
lines go to stdout (convert), the toolkit's own chatter to stderr; an error comes back as one line in the result.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import struct
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

BUNDLE_STEM = "model"  # names inside a .rknnsim bundle: model.model, model.data, model.quantization.cfg / model.onnx
RECORD_ENTRY = "edgeport.json"


# --- torch placeholder --------------------------------------------------------------------------


class _Missing(type):
    """Any torch attribute: subclassable, usable as a decorator; calling it gives another placeholder."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], _Missing):
            return args[0]  # @torch.no_grad() and friends
        return _missing(f"{cls.__qualname__}()")

    def __mro_entries__(cls, bases):
        return (object,)


def _missing(name: str) -> type:
    return _Missing(name, (), {"__qualname__": name})


class _TorchModule(types.ModuleType):
    __version__ = "2.4.0"  # the toolkit compares versions at import; it converts ONNX here, never torch

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(f"{self.__name__}.{name}")


class _TorchFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torch" or fullname.startswith("torch."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _TorchModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def import_rknn():
    """rknn.api.RKNN, with a placeholder standing in for torch when torch is not installed (the toolkit imports
    it at import time, for load_pytorch only)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        sys.meta_path.insert(0, _TorchFinder())
    from rknn.api import RKNN

    _guard_sdpa_rule()
    return RKNN


SDPA_RULE = "_p_fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"
SPLIT_RULE = "_p_seperate_conv_rs_split"
SDPA_SKIPPED: list[str] = []
# rules of rknn-toolkit2 2.5.0 that raise IndexError on graphs they should leave alone: module, rule, where to note it
GUARDED_RULES = (("matmul", SDPA_RULE, SDPA_SKIPPED), ("conv", SPLIT_RULE, []))


def _guard_sdpa_rule() -> None:
    """rknn-toolkit2 2.5.0's rule that fuses MatMul-Softmax-MatMul into one attention op raises IndexError on
    Ultralytics' attention blocks (YOLO11/12/26: Softmax, then Transpose, then MatMul) and stops the build; its
    rule that splits a Conv before a Reshape raises it on the decoded head's 1x1 DFL Conv (the Frigate-layout
    graph). Let each answer "no match" there instead (its own no-match value), so those ops stay unfused."""
    import gc
    import importlib

    for module_name, rule_name, skipped in GUARDED_RULES:
        try:
            rules = importlib.import_module(f"rknn.api.rules.{module_name}")
        except ImportError:
            continue
        rule = getattr(rules, rule_name, None)
        for holder in gc.get_referrers(rule) if rule is not None else ():
            if isinstance(holder, dict) and holder.get("proc") is rule:
                def guarded(*args, _rule=rule, _name=rule_name, _skipped=skipped, **kwargs):
                    try:
                        return _rule(*args, **kwargs)
                    except IndexError:
                        _skipped.append(_name)
                        return [], []
                holder["proc"] = guarded


_OUT: list[BinaryIO] = []  # this process's real stdout, once `own_stdout` moved fd 1 to stderr


def own_stdout() -> BinaryIO:
    """Keep fd 1 for edgeport's own output: the toolkit (its C++ too) prints on stdout, so fd 1 becomes stderr
    and the returned stream is the original stdout (progress lines, or the simulator's pipe)."""
    if not _OUT:
        sys.stdout.flush()
        _OUT.append(os.fdopen(os.dup(1), "wb"))
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    return _OUT[0]


def say(line: str) -> None:
    out = own_stdout()
    out.write((line + "\n").encode())
    out.flush()


# --- conversion ---------------------------------------------------------------------------------


def _configured(RKNN, job: dict[str, Any]):
    rknn = RKNN(verbose=False)
    rknn.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=job["platform"],
                quantized_dtype=job.get("quantized_dtype", "w8a8"),
                quantized_algorithm=job.get("quantized_algorithm", "normal"), optimization_level=3)
    return rknn


def _check(code: int, step: str) -> None:
    if code != 0:
        raise RuntimeError(f"rknn-toolkit2 {step} failed (return code {code}; its log is above)")


def build_session(RKNN, job: dict[str, Any], work: Path):
    """An RKNN object holding the built model of `job` (int8: hybrid step1 writes the calibrated ranges into
    `work`, step2 builds from them, so the simulator bundle rebuilds the same model without images)."""
    rknn = _configured(RKNN, job)
    if job["precision"] == "fp16":
        _check(rknn.load_onnx(job["onnx"]), "load_onnx")
        _check(rknn.build(do_quantization=False), "build")
        return rknn
    _check(rknn.load_onnx(job["onnx"]), "load_onnx")
    cwd = os.getcwd()
    os.chdir(work)  # step1 writes <onnx stem>.model/.data/.quantization.cfg in the working folder
    try:
        _check(rknn.hybrid_quantization_step1(dataset=job["dataset"], proposal=False), "calibration")
    finally:
        os.chdir(cwd)
    rknn.release()
    stem = Path(job["onnx"]).stem
    if job.get("float_layers"):
        kept = keep_float(work / f"{stem}.model", work / f"{stem}.quantization.cfg", job["float_layers"])
        say(f"rknn: {kept} tensors of the decode tail kept in float16 (hybrid quantization)")
    rknn = _configured(RKNN, job)
    _check(rknn.hybrid_quantization_step2(model_input=str(work / f"{stem}.model"),
                                          data_input=str(work / f"{stem}.data"),
                                          model_quantization_cfg=str(work / f"{stem}.quantization.cfg")), "build")
    return rknn


def keep_float(model_path: Path, cfg_path: Path, nodes: list[str]) -> int:
    """Mark as float16, in step1's quantization.cfg, every tensor written by the toolkit's nodes named in `nodes`
    (the source ONNX's decode tail) and by everything after them; return how many. The toolkit renames and fuses
    nodes, so the named ones that survive are the seeds and the rest follows the toolkit's own graph."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wanted, tail, front = set(nodes), set(), [node for node in graph.node if node.name in set(nodes)]
    while front:
        node = front.pop()
        if id(node) not in tail:
            tail.add(id(node))
            front.extend(c for out in node.output for c in consumers.get(out, []))
    text = cfg_path.read_text()
    head, rest = text.split("\n", 1)
    if head.strip() != "custom_quantize_layers: {}" or not wanted:
        raise RuntimeError(f"unexpected hybrid quantization config {cfg_path.name} (first line {head!r})")
    keys = [out for node in graph.node if id(node) in tail for out in node.output if f"\n    {out}:" in rest]
    if not keys:
        raise RuntimeError("none of the decode tail's nodes survived the toolkit's graph rewrite")
    cfg_path.write_text("custom_quantize_layers:\n" + "".join(f"    {json.dumps(k)}: float16\n" for k in keys) + rest)
    return len(keys)


def write_bundle(path: Path, job: dict[str, Any], work: Path) -> None:
    """The simulator bundle: what rebuilds the same model on x86 (quantized graph and ranges, or the float ONNX)."""
    stem = Path(job["onnx"]).stem
    settings = {k: job[k] for k in ("platform", "precision", "quantized_dtype", "quantized_algorithm")}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("settings.json", json.dumps(settings))
        if job["precision"] == "fp16":
            bundle.write(job["onnx"], f"{BUNDLE_STEM}.onnx")
        else:
            for ending in (".model", ".data", ".quantization.cfg"):
                bundle.write(work / f"{stem}{ending}", f"{BUNDLE_STEM}{ending}")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Build, export the .rknn and the simulator bundle, run the simulator once on the first calibration frame."""
    import importlib.metadata

    RKNN = import_rknn()

    version = importlib.metadata.version("rknn-toolkit2")
    with tempfile.TemporaryDirectory(prefix="edgeport-rknn-") as tmp:
        what = "int8 (w8a8), calibrating" if job["precision"] == "int8" else "fp16 (no quantization)"
        say(f"rknn: building for {job['platform']} with rknn-toolkit2 {version}: {what}")
        rknn = build_session(RKNN, job, Path(tmp))
        if SDPA_SKIPPED:
            say("rknn: attention blocks left unfused (the toolkit's SDPA fusion rule fails on them)")
        _check(rknn.export_rknn(job["out"]), "export_rknn")
        say(f"rknn: wrote {job['out']}")
        write_bundle(Path(job["bundle"]), job, Path(tmp))
        _check(rknn.init_runtime(), "init_runtime (simulator)")
        frame = np.zeros((1, job["imgsz"], job["imgsz"], 3), np.uint8)
        outputs = rknn.inference(inputs=[frame], data_format="nhwc")
        if job.get("check_frames"):  # (N, H, W, 3) uint8: the simulator's outputs on them, for the parent's check
            frames = np.load(job["check_frames"])
            answers = [rknn.inference(inputs=[f[None]], data_format="nhwc") for f in frames]
            np.savez(job["check_outputs"], *[np.concatenate([a[i] for a in answers]).astype(np.float32)
                                             for i in range(len(answers[0]))])
        rknn.release()
    return {"toolkit_version": version, "attention_unfused": bool(SDPA_SKIPPED),
            "outputs": [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in outputs]}


# --- the simulator on a pipe ---------------------------------------------------------------------


def read_array(stream: BinaryIO) -> np.ndarray | None:
    """One length-prefixed .npy from the stream; None at its end."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    import io

    return np.load(io.BytesIO(stream.read(size)), allow_pickle=False)


def write_array(stream: BinaryIO, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    stream.write(struct.pack("<Q", buffer.tell()) + buffer.getvalue())


def simulate(bundle: Path) -> int:
    """Rebuild the bundle's model in the simulator, then for each (B, H, W, 3) uint8 batch read on stdin write
    a count and the outputs (float32) of each image to stdout. A line on stderr says when it is ready."""
    sink, source = own_stdout(), sys.stdin.buffer  # the pipe carries arrays only; the toolkit prints to stderr
    RKNN = import_rknn()
    with tempfile.TemporaryDirectory(prefix="edgeport-rknnsim-") as tmp, zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp)
        settings = json.loads((Path(tmp) / "settings.json").read_text())
        work = Path(tmp)
        job = {**settings, "onnx": str(work / f"{BUNDLE_STEM}.onnx")}
        rknn = _configured(RKNN, job)
        if settings["precision"] == "fp16":
            _check(rknn.load_onnx(job["onnx"]), "load_onnx")
            _check(rknn.build(do_quantization=False), "build")
        else:
            _check(rknn.hybrid_quantization_step2(
                model_input=str(work / f"{BUNDLE_STEM}.model"), data_input=str(work / f"{BUNDLE_STEM}.data"),
                model_quantization_cfg=str(work / f"{BUNDLE_STEM}.quantization.cfg")), "build")
        _check(rknn.init_runtime(), "init_runtime (simulator)")
    print("edgeport-rknnsim: ready", file=sys.stderr, flush=True)
    while (batch := read_array(source)) is not None:
        per_image = [rknn.inference(inputs=[frame[None]], data_format="nhwc") for frame in batch]
        outputs = [np.concatenate([image[i] for image in per_image]).astype(np.float32)
                   for i in range(len(per_image[0]))]
        sink.write(struct.pack("<Q", len(outputs)))
        for output in outputs:
            write_array(sink, output)
        sink.flush()
    rknn.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TQDM_DISABLE", "1")
    if len(argv) == 2 and argv[0] == "convert":
        job = json.loads(Path(argv[1]).read_text())
        own_stdout()
        try:
            result = run_job(job)
        except Exception as exc:  # one line back to the parent, which raises ConversionError with it
            result = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"}
        Path(job["result"]).write_text(json.dumps(result))
        return 0
    if len(argv) == 2 and argv[0] == "simulate":
        return simulate(Path(argv[1]))
    print("usage: python -m edgeport.convert.rknn_worker convert JOB.json | simulate BUNDLE.rknnsim", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
