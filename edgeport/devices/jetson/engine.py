"""Build a TensorRT engine from an edgeport ONNX on the device, and write its metadata record.

TensorRT's Python API when it is importable (strongly typed network for fp16 and QDQ ONNX),
else `trtexec` from PATH; every TensorRT call sits in `build_with_python_api`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from edgeport.artifact import METADATA_KEY, ArtifactRecord, read_sidecar, sha256_file, write_sidecar
from edgeport.errors import ConversionError, MetadataMissingError
from edgeport.runtime.backends.tensorrt import TensorRTMissingError

TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec",)  # where JetPack puts it (not on PATH by default)


@dataclass(frozen=True)
class EngineOptions:
    """What `edgeport jetson build-engine` accepts.

    precision: None (what the ONNX holds: its fp16 or int8 QDQ types), "fp16" (also lets TensorRT
    pick fp16 kernels for an fp32 ONNX) or "int8" (needs an int8 QDQ ONNX).
    """

    precision: str | None = None
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    builder: str = "auto"  # auto (Python API, else trtexec), python or trtexec


@dataclass(frozen=True)
class BuildPlan:
    """The decisions a build makes from the ONNX record and the options (the same for both builders)."""

    strongly_typed: bool  # the network keeps the ONNX's own types (fp16 weights, QDQ int8); TensorRT >= 9
    fp16_flag: bool  # weakly typed: allow fp16 kernels
    int8_flag: bool  # weakly typed QDQ graph (TensorRT 8.x explicit quantization)
    precision: str  # what the engine runs: fp32, fp16, int8


def onnx_record(onnx_path: Path) -> ArtifactRecord:
    """The edgeport record embedded in an ONNX; raises MetadataMissingError without one."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise MetadataMissingError(f"{onnx_path}: no edgeport record; write it with `edgeport convert MODEL --target "
                                   "tensorrt [--fp16|--int8]`")
    return ArtifactRecord.from_dict(json.loads(meta[METADATA_KEY]), where=str(onnx_path))


def plan_build(record: ArtifactRecord, options: EngineOptions, strongly_typed_available: bool = True) -> BuildPlan:
    """Decide typing and flags; raises ConversionError for a request the ONNX cannot honour.

    TensorRT 8.x (JetPack 5, JetPack 6.0) has no strongly typed networks: there a QDQ ONNX is
    built with the INT8 flag (explicit quantization) and an fp16 ONNX with the FP16 flag.
    """
    if options.precision not in (None, "fp16", "int8"):
        raise ConversionError(f"build-engine: unknown precision {options.precision!r}; use --fp16 or --int8")
    if options.precision == "int8" and record.precision != "int8":
        raise ConversionError(
            f"build-engine: --int8 needs an explicitly quantized (QDQ) ONNX, this one is {record.precision}; write it "
            "with `edgeport convert MODEL --target tensorrt --int8 --data DATA.yaml` (TensorRT's implicit int8 "
            "calibrators are deprecated)")
    if options.dla_core is not None and options.dla_core < 0:
        raise ConversionError(f"build-engine: --dla-core must be 0 or more, got {options.dla_core}")
    if record.precision in ("fp16", "int8"):  # the ONNX's own types decide; DLA falls back to the GPU per layer
        if strongly_typed_available:
            return BuildPlan(strongly_typed=True, fp16_flag=False, int8_flag=False, precision=record.precision)
        return BuildPlan(strongly_typed=False, fp16_flag=record.precision == "fp16" or options.dla_core is not None,
                         int8_flag=record.precision == "int8", precision=record.precision)
    fp16 = options.precision == "fp16" or options.dla_core is not None  # DLA has no fp32 kernels
    return BuildPlan(strongly_typed=False, fp16_flag=fp16, int8_flag=False, precision="fp16" if fp16 else "fp32")


def trtexec_command(trtexec: str, onnx_path: Path, engine: Path, plan: BuildPlan, options: EngineOptions) -> list[str]:
    """The trtexec command line for the same build the Python API would do."""
    command = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine}", "--skipInference"]
    if plan.strongly_typed:
        command.append("--stronglyTyped")
    if plan.fp16_flag:
        command.append("--fp16")
    if plan.int8_flag:
        command.append("--int8")
    if options.workspace_mb:
        command.append(f"--memPoolSize=workspace:{int(options.workspace_mb)}M")
    if options.timing_cache:
        command.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        command += [f"--useDLACore={int(options.dla_core)}", "--allowGPUFallback"]
    return command


def build_with_python_api(trt: Any, onnx_path: Path, plan: BuildPlan, options: EngineOptions,
                          say: Callable[[str], None]) -> bytes:
    """Parse the ONNX and build the serialized engine with the TensorRT module `trt`."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    creation = trt.NetworkDefinitionCreationFlag
    if plan.strongly_typed:
        flags = 1 << int(creation.STRONGLY_TYPED)
    else:  # TensorRT 8.x parses ONNX only into explicit-batch networks (implied from 10 on)
        flags = 1 << int(creation.EXPLICIT_BATCH) if hasattr(creation, "EXPLICIT_BATCH") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"build-engine: TensorRT cannot parse {onnx_path.name}: {'; '.join(errors) or 'unknown'}")
    config = builder.create_builder_config()
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        config.set_flag(trt.BuilderFlag.INT8)
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = None
    if options.timing_cache:
        known = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(known)
        config.set_timing_cache(cache, False)
    say(f"build-engine: building with TensorRT {getattr(trt, '__version__', '?')} "
        f"({'strongly typed' if plan.strongly_typed else 'weakly typed'}, {plan.precision}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError("build-engine: TensorRT could not build the engine (see its log above)")
    if cache is not None:
        options.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        options.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _import_tensorrt() -> Any | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def find_trtexec() -> str | None:
    """trtexec from PATH, else where JetPack installs it."""
    return shutil.which("trtexec") or next((p for p in TRTEXEC_PATHS if Path(p).is_file()), None)


def build_engine(onnx_path: str | Path, engine: str | Path | None = None, options: EngineOptions = EngineOptions(),
                 progress: Callable[[str], None] | None = None, *, tensorrt_module: Any | None = None,
                 run: Callable[..., Any] = subprocess.run) -> tuple[Path, ArtifactRecord]:
    """Build `engine` (default: the ONNX's name with .engine) and its sidecar record; return both.

    `tensorrt_module` replaces `import tensorrt` and `run` replaces subprocess.run (tests).
    Raises MetadataMissingError, ConversionError, MissingDependencyError (no TensorRT, no trtexec).
    """
    say = progress or (lambda line: None)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConversionError(f"build-engine: ONNX not found: {onnx_path}")
    engine = Path(engine) if engine else onnx_path.with_suffix(".engine")
    record = onnx_record(onnx_path)
    plan_build(record, options)  # refuse a bad request before looking for TensorRT
    trt = tensorrt_module if tensorrt_module is not None else (
        None if options.builder == "trtexec" else _import_tensorrt())
    engine.parent.mkdir(parents=True, exist_ok=True)
    if trt is not None:
        plan = plan_build(record, options, hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"))
        engine.write_bytes(build_with_python_api(trt, onnx_path, plan, options, say))
        builder, version = "tensorrt python api", str(getattr(trt, "__version__", "unknown"))
    else:
        if options.builder == "python":
            raise TensorRTMissingError()
        trtexec = find_trtexec()
        if trtexec is None:
            raise TensorRTMissingError("neither TensorRT's Python module (tensorrt) nor trtexec is installed")
        helps = run([trtexec, "--help"], capture_output=True, text=True)
        plan = plan_build(record, options, "--stronglyTyped" in (helps.stdout + helps.stderr))
        command = trtexec_command(trtexec, onnx_path, engine, plan, options)
        say("build-engine: " + " ".join(command))
        result = run(command, capture_output=True, text=True)
        if result.returncode != 0 or not engine.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise ConversionError(f"build-engine: trtexec failed (exit {result.returncode}): {tail}")
        builder, version = "trtexec", "see trtexec log"
    engine_record = _engine_record(record, onnx_path, engine, plan, options, builder, version)
    write_sidecar(engine, engine_record)
    say(f"build-engine: wrote {engine} ({engine.stat().st_size / 1e6:.1f} MB) and {engine.stem}.edgeport.json")
    return engine, read_sidecar(engine)


def _engine_record(record: ArtifactRecord, onnx_path: Path, engine: Path, plan: BuildPlan, options: EngineOptions,
                   builder: str, version: str) -> ArtifactRecord:
    """The ONNX's record, retargeted to the engine; the ONNX (copied beside the engine when it lies
    elsewhere) is named as the proxy this host can run."""
    proxy = engine.parent / onnx_path.name
    if proxy.resolve() != onnx_path.resolve():
        shutil.copy(onnx_path, proxy)
    prov = {**record.provenance,
            "engine": {"builder": builder, "tensorrt": version, "strongly_typed": plan.strongly_typed,
                       "fp16_flag": plan.fp16_flag, "int8_flag": plan.int8_flag, "workspace_mb": options.workspace_mb,
                       "dla_core": options.dla_core, "timing_cache": str(options.timing_cache or "") or None,
                       "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path)},
            "proxy": {"artifact": proxy.name,
                      "label": f"the {record.precision} ONNX this engine was built from, run in onnxruntime"}}
    return replace(record, target="tensorrt", precision=plan.precision, provenance=prov)
