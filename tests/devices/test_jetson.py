"""Jetson: engine build (TensorRT Python API faked: no GPU here; trtexec as a real subprocess), the
TensorRT backend (fake engine that runs the same ONNX in onnxruntime), CSI pipeline, --providers."""

from __future__ import annotations

import enum
import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from edgeport.artifact import sha256_file
from edgeport.cli import main
from edgeport.devices.jetson.camera import csi_pipeline, opencv_has_gstreamer
from edgeport.devices.jetson.engine import EngineOptions, build_engine, plan_build, trtexec_command
from edgeport.errors import BackendError, ConfigError, ConversionError, MetadataMissingError
from edgeport.runtime import Detector
from edgeport.runtime.backends import backend_for
from edgeport.runtime.backends.onnxruntime import resolve_providers
from edgeport.runtime.backends.tensorrt import TensorRTBackend, TensorRTMissingError

ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"


class FakeTensorRT:
    """The slice of the tensorrt module edgeport uses. A "serialized engine" is the magic line
    plus the ONNX bytes; executing it runs that ONNX in onnxruntime on the fake device memory."""

    __version__ = "10.3.0-fake"

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 5

    class BuilderFlag(enum.Enum):
        FP16 = "fp16"
        INT8 = "int8"
        GPU_FALLBACK = "gpu_fallback"

    class MemoryPoolType(enum.Enum):
        WORKSPACE = "workspace"

    class DeviceType(enum.Enum):
        GPU = "gpu"
        DLA = "dla"

    class TensorIOMode(enum.Enum):
        INPUT = "input"
        OUTPUT = "output"

    class DataType(enum.Enum):
        FLOAT = "float"
        HALF = "half"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    def __init__(self, parse_ok: bool = True):
        self.parse_ok = parse_ok
        self.builds: list[dict] = []
        trt = self

        class Config:
            def __init__(self):
                self.flags, self.pools, self.default_device_type, self.DLA_core = set(), {}, trt.DeviceType.GPU, -1
                self.cache = None

            def set_flag(self, flag):
                self.flags.add(flag)

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def create_timing_cache(self, data):
                return SimpleNamespace(loaded=bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache

            def get_timing_cache(self):
                return SimpleNamespace(serialize=lambda: self.cache.loaded + b"+timing")

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                return SimpleNamespace(flags=flags, onnx=None)

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                trt.builds.append({"network_flags": network.flags, "config": config})
                return ENGINE_MAGIC + network.onnx

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network
                if not trt.parse_ok:
                    self.num_errors = 1

            def parse(self, data):
                self.network.onnx = data
                return trt.parse_ok

            def get_error(self, index):
                return "In node 3 (importConv): unsupported"

        self.Builder, self.OnnxParser = Builder, OnnxParser

    @staticmethod
    def nptype(data_type):
        return {"float": np.float32, "half": np.float16}[data_type.value]

    def Runtime(self, logger):  # noqa: N802 (TensorRT's name)
        trt = self

        class Engine:
            def __init__(self, onnx_bytes):
                self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
                io = [(t, trt.TensorIOMode.INPUT) for t in self.session.get_inputs()]
                io += [(t, trt.TensorIOMode.OUTPUT) for t in reversed(self.session.get_outputs())]  # scores first
                self.io = io
                self.num_io_tensors = len(io)

            def get_tensor_name(self, index):
                return self.io[index][0].name

            def _arg(self, name):
                return next(t for t, _ in self.io if t.name == name)

            def get_tensor_shape(self, name):
                return tuple(self._arg(name).shape)

            def get_tensor_dtype(self, name):
                return trt.DataType.FLOAT

            def get_tensor_mode(self, name):
                return next(mode for t, mode in self.io if t.name == name)

            def create_execution_context(self):
                engine = self

                class Context:
                    addresses: dict[str, int] = {}

                    def set_tensor_address(self, name, pointer):
                        self.addresses[name] = pointer

                    def execute_async_v3(self, stream):
                        memory = FakeMemory.instances[stream]
                        feeds = {t.name: memory.read(self.addresses[t.name], t.shape)
                                 for t, mode in engine.io if mode == trt.TensorIOMode.INPUT}
                        names = [t.name for t, mode in engine.io if mode == trt.TensorIOMode.OUTPUT]
                        for name, value in zip(names, engine.session.run(names, feeds)):
                            memory.write(self.addresses[name], value)
                        return True

                return Context()

        class Runtime:
            def deserialize_cuda_engine(self, data):
                return Engine(data[len(ENGINE_MAGIC):]) if data.startswith(ENGINE_MAGIC) else None

        return Runtime()


class FakeTensorRT8(FakeTensorRT):
    """TensorRT 8.x (JetPack 5, JetPack 6.0): no strongly typed networks, explicit batch needed."""

    __version__ = "8.6.2-fake"

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0


class FakeMemory:
    """Device memory as host byte buffers, with the copies counted."""

    instances: dict[int, "FakeMemory"] = {}

    def __init__(self):
        self.buffers: dict[int, bytearray] = {}
        self.copies = {"to_device": 0, "to_host": 0}
        self.stream_handle = id(self)
        FakeMemory.instances[self.stream_handle] = self

    def malloc(self, nbytes):
        pointer = 0x1000 + 0x100000 * len(self.buffers)
        self.buffers[pointer] = bytearray(nbytes)
        return pointer

    def to_device(self, pointer, host):
        self.buffers[pointer][:] = host.tobytes()
        self.copies["to_device"] += 1

    def to_host(self, host, pointer):
        host[...] = np.frombuffer(bytes(self.buffers[pointer]), host.dtype).reshape(host.shape)
        self.copies["to_host"] += 1

    def synchronize(self):
        pass

    def read(self, pointer, shape):
        return np.frombuffer(bytes(self.buffers[pointer]), np.float32).reshape(shape)

    def write(self, pointer, value):
        self.buffers[pointer][:] = np.ascontiguousarray(value, np.float32).tobytes()


@pytest.fixture()
def trt_onnx(tmp_path, onnx_precisions) -> dict[str, Path]:
    """Copies of the tensorrt-target ONNX in a fresh folder (engines are written beside them)."""
    copies = {}
    for precision in ("fp16", "int8"):
        source = onnx_precisions[("tensorrt", precision)]
        copies[precision] = tmp_path / source.name
        copies[precision].write_bytes(source.read_bytes())
    return copies


def test_python_api_build_is_strongly_typed_for_qdq_and_writes_engine_and_record(trt_onnx, tmp_path):
    trt = FakeTensorRT()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    engine, record = build_engine(trt_onnx["int8"], options=EngineOptions(precision="int8", workspace_mb=512,
                                                                           timing_cache=cache),
                                  tensorrt_module=trt)
    build = trt.builds[-1]
    assert build["network_flags"] == 1 << 5  # STRONGLY_TYPED
    assert build["config"].flags == set()  # a strongly typed network takes its precision from the QDQ graph
    assert build["config"].pools == {trt.MemoryPoolType.WORKSPACE: 512 << 20}
    assert cache.read_bytes() == b"old+timing"  # loaded, then written back
    assert engine == trt_onnx["int8"].with_suffix(".engine") and engine.read_bytes().startswith(ENGINE_MAGIC)
    assert record.target == "tensorrt" and record.precision == "int8"
    assert record.artifact_sha256 == sha256_file(engine)
    assert record.provenance["engine"]["onnx_sha256"] == sha256_file(trt_onnx["int8"])
    assert record.provenance["engine"]["builder"] == "tensorrt python api"
    assert (engine.parent / record.provenance["proxy"]["artifact"]).is_file()
    assert "run in onnxruntime" in record.provenance["proxy"]["label"]


def test_fp32_onnx_with_fp16_flag_and_dla(onnx_artifact, tmp_path):
    trt = FakeTensorRT()
    engine, record = build_engine(onnx_artifact, tmp_path / "out" / "model.plan",
                                  EngineOptions(precision="fp16", dla_core=1), tensorrt_module=trt)
    config = trt.builds[-1]["config"]
    assert trt.builds[-1]["network_flags"] == 0  # weakly typed: the builder picks fp16 kernels
    assert config.flags == {trt.BuilderFlag.FP16, trt.BuilderFlag.GPU_FALLBACK}
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert record.precision == "fp16"
    assert (engine.parent / onnx_artifact.name).is_file()  # the proxy is copied beside an engine written elsewhere


def test_build_refuses_what_the_onnx_cannot_give(onnx_artifact, ultralytics_onnx, tmp_path):
    trt = FakeTensorRT()
    with pytest.raises(ConversionError, match="--int8 needs an explicitly quantized"):
        build_engine(onnx_artifact, tmp_path / "a.engine", EngineOptions(precision="int8"), tensorrt_module=trt)
    with pytest.raises(MetadataMissingError, match="--target tensorrt"):
        build_engine(ultralytics_onnx, tmp_path / "b.engine", tensorrt_module=trt)
    with pytest.raises(ConversionError, match="cannot parse .*importConv"):
        build_engine(onnx_artifact, tmp_path / "c.engine", tensorrt_module=FakeTensorRT(parse_ok=False))
    assert not (tmp_path / "c.engine").exists()


def _fake_trtexec(folder: Path, exit_code: int = 0, strongly_typed: bool = True) -> Path:
    """A trtexec stand-in: logs its arguments and writes the engine named by --saveEngine."""
    script = folder / "trtexec"
    script.write_text(f"""#!{sys.executable}
import sys
args = sys.argv[1:]
if args == ['--help']:
    print('  --fp16  Enable fp16 precision' + ({strongly_typed!r} and '  --stronglyTyped  Create a strongly typed network' or ''))
    sys.exit(0)
open({str(folder / 'args.json')!r}, 'w').write(__import__('json').dumps(args))
if {exit_code}:
    print('[E] Error[4]: network has no outputs'); sys.exit({exit_code})
onnx = next(a.split('=', 1)[1] for a in args if a.startswith('--onnx='))
out = next(a.split('=', 1)[1] for a in args if a.startswith('--saveEngine='))
open(out, 'wb').write({ENGINE_MAGIC!r} + open(onnx, 'rb').read())
print('&&&& PASSED TensorRT.trtexec')
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_trtexec_fallback_when_the_python_api_is_absent(trt_onnx, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trtexec = _fake_trtexec(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    engine, record = build_engine(trt_onnx["fp16"], options=EngineOptions(workspace_mb=256, dla_core=0,
                                                                          timing_cache=tmp_path / "t.cache"))
    args = json.loads((bin_dir / "args.json").read_text())
    assert args == [f"--onnx={trt_onnx['fp16']}", f"--saveEngine={engine}", "--skipInference", "--stronglyTyped",
                    "--memPoolSize=workspace:256M", f"--timingCacheFile={tmp_path / 't.cache'}", "--useDLACore=0",
                    "--allowGPUFallback"]
    assert record.provenance["engine"]["builder"] == "trtexec" and record.precision == "fp16"
    assert trtexec_command(str(trtexec), Path("m.onnx"), Path("m.engine"),
                           plan_build(record, EngineOptions(precision="fp16")), EngineOptions()) == [
        str(trtexec), "--onnx=m.onnx", "--saveEngine=m.engine", "--skipInference", "--stronglyTyped"]


def test_tensorrt_8_builds_qdq_with_the_int8_flag(trt_onnx, tmp_path, monkeypatch):
    trt = FakeTensorRT8()
    _, record = build_engine(trt_onnx["int8"], tmp_path / "py.engine", tensorrt_module=trt)
    assert trt.builds[-1]["network_flags"] == 1 << 0  # EXPLICIT_BATCH
    assert trt.builds[-1]["config"].flags == {trt.BuilderFlag.INT8}
    assert record.provenance["engine"]["int8_flag"] and not record.provenance["engine"]["strongly_typed"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_trtexec(bin_dir, strongly_typed=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    build_engine(trt_onnx["int8"], tmp_path / "cli.engine", EngineOptions(builder="trtexec"))
    args = json.loads((bin_dir / "args.json").read_text())
    assert "--int8" in args and "--stronglyTyped" not in args


def test_trtexec_failure_and_missing_tensorrt(trt_onnx, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_trtexec(bin_dir, exit_code=1)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConversionError, match="trtexec failed .*network has no outputs"):
        build_engine(trt_onnx["int8"], options=EngineOptions(builder="trtexec"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("edgeport.devices.jetson.engine.TRTEXEC_PATHS", ())
    with pytest.raises(TensorRTMissingError, match="nor trtexec .*JetPack"):
        build_engine(trt_onnx["int8"])
    assert main(["jetson", "build-engine", str(trt_onnx["int8"])]) == 2


def test_tensorrt_backend_maps_engine_outputs_to_the_record(trt_onnx, val_images):
    trt = FakeTensorRT()
    engine, _ = build_engine(trt_onnx["int8"], tensorrt_module=trt)
    assert backend_for(engine) is TensorRTBackend and backend_for(engine.with_suffix(".plan")) is TensorRTBackend
    memory = FakeMemory()
    detector = Detector(engine, backend_options={"tensorrt_module": trt, "memory": memory})
    assert detector.backend_name == "tensorrt"
    assert [o.name for o in detector.backend.outputs] == ["scores", "boxes"]  # the engine's own order
    reference = Detector(trt_onnx["int8"])
    for image in val_images[:3]:
        ours, theirs = detector.detect(image), reference.detect(image)
        assert len(ours) == len(theirs) > 0
        np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=1e-3)
        np.testing.assert_array_equal(ours.class_id, theirs.class_id)
    assert memory.copies == {"to_device": 3, "to_host": 6}
    with pytest.raises(BackendError, match="input shape"):
        detector.backend.invoke(np.zeros((1, 3, 64, 64), np.float32))


def test_tensorrt_backend_without_tensorrt_says_how_to_get_it(trt_onnx, tmp_path):
    engine, _ = build_engine(trt_onnx["fp16"], tensorrt_module=FakeTensorRT())
    with pytest.raises(TensorRTMissingError, match="python3-libnvinfer"):
        Detector(engine)
    (tmp_path / "junk.engine").write_bytes(b"not an engine")
    with pytest.raises(Exception, match="cannot deserialize"):
        TensorRTBackend(tmp_path / "junk.engine", tensorrt_module=FakeTensorRT(), memory=FakeMemory())


def test_csi_pipeline():
    pipeline = csi_pipeline(sensor_id=1, width=1280, height=720, fps=60, flip=2, out_width=640, out_height=360)
    elements = [e.strip() for e in pipeline.split("!")]
    assert elements[0] == "nvarguscamerasrc sensor-id=1"
    assert "width=(int)1280, height=(int)720, framerate=(fraction)60/1" in elements[1]
    assert elements[1].startswith("video/x-raw(memory:NVMM)")
    assert elements[2] == "nvvidconv flip-method=2" and "width=(int)640, height=(int)360" in elements[3]
    assert elements[-1].startswith("appsink drop=true max-buffers=1")
    assert "width=(int)1920" in csi_pipeline()
    for bad in ({"flip": 8}, {"fps": 0}, {"sensor_id": -1}, {"width": "1920"}):
        with pytest.raises(ConfigError):
            csi_pipeline(**bad)
    assert opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")


def test_csi_pipeline_cli(capsys):
    assert main(["jetson", "csi-pipeline", "--sensor-id", "0", "--fps", "15"]) == 0
    assert "framerate=(fraction)15/1" in capsys.readouterr().out
    assert main(["jetson", "csi-pipeline", "--flip", "9"]) == 2


def test_providers_resolve_and_refuse_what_is_not_installed(onnx_artifact, val_images, capsys):
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["tensorrt", "cuda"], available) == available
    assert resolve_providers(["CUDAExecutionProvider"], available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, available) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="'cuda' is not available .*available: CPUExecutionProvider"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])
    detector = Detector(onnx_artifact, backend_options={"providers": ["cpu"]})
    assert detector.backend.providers == ["CPUExecutionProvider"] and len(detector.detect(val_images[0])) > 0
    installed = ort.get_available_providers()
    missing = "cuda" if "CUDAExecutionProvider" not in installed else "rocm-not-a-provider"
    assert main(["detect", str(val_images[0]), "--model", str(onnx_artifact), "--providers", missing]) == 2
    assert "available: " in capsys.readouterr().err
    assert main(["detect", str(val_images[0]), "--model", str(onnx_artifact), "--providers", "cpu"]) == 0
