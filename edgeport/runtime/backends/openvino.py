"""OpenVINO backend: `.xml` IR artifacts (weights in the `.bin` beside) on CPU, GPU or NPU.

The device name passes through to OpenVINO (`--device GPU`, `NPU`, `AUTO`...); threads apply on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.artifact import TensorSpec
from edgeport.errors import BackendError, CorruptModelError, MissingDependencyError
from edgeport.runtime.backends.base import Backend

_OV_TYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "i32": "int32", "i64": "int64"}


def _spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    kind = port.get_element_type().get_type_name()
    return TensorSpec(name=port.get_any_name(), shape=shape, dtype=_OV_TYPES.get(kind, kind))


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        """`threads`: CPU inference threads (None: OpenVINO's default, one stream over every core).
        `device`: OpenVINO device name (CPU, GPU, GPU.1, NPU, AUTO); default CPU."""
        super().__init__(path, threads)
        try:
            import openvino as ov
        except ImportError as exc:
            raise MissingDependencyError("openvino", "openvino") from exc
        self.device = (device or "CPU").strip()
        core = ov.Core()
        if self.device.split(".")[0].split(":")[0] not in ("AUTO", "MULTI", "HETERO", "BATCH") and \
                self.device not in core.available_devices and self.device.split(".")[0] not in core.available_devices:
            raise BackendError(f"OpenVINO device {self.device!r} is not available on this host; available: "
                               f"{', '.join(core.available_devices)} (GPU and NPU need Intel's drivers)")
        if not Path(path).with_suffix(".bin").is_file():
            raise CorruptModelError(f"{path}: the IR's weights {Path(path).with_suffix('.bin').name} are not beside "
                                    "it; copy the .xml and the .bin together")
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with its own text
            raise CorruptModelError(f"{path}: OpenVINO cannot read this IR ({str(exc).splitlines()[0]})") from exc
        # one stream, latency first: what a camera loop needs (and what the other backends do)
        config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            # float layers in float32: on a CPU with bf16 (AVX512-BF16, AMX) OpenVINO would otherwise run them
            # in bfloat16 (measured here: an fp32 YOLOv8n IR lost 4 points of mAP50-95)
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise BackendError(f"{path}: OpenVINO cannot compile it for {self.device} "
                               f"({str(exc).splitlines()[0]})") from exc
        self._request = self._compiled.create_infer_request()
        self._inputs = [_spec(p) for p in self._compiled.inputs]
        self._outputs = [_spec(p) for p in self._compiled.outputs]
        self._rt_info = model.get_rt_info()

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        self._request.infer({0: np.ascontiguousarray(batch)})
        return [np.array(self._request.get_output_tensor(i).data) for i in range(len(self._outputs))]

    def embedded_metadata(self) -> dict[str, str]:
        return {}
