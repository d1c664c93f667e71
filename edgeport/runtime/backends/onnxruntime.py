"""onnxruntime backend: `.onnx` artifacts on CPU (other execution providers when asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.artifact import TensorSpec
from edgeport.errors import BackendError, CorruptModelError, MissingDependencyError
from edgeport.runtime.backends.base import Backend

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


# short names accepted by --providers, in the order onnxruntime should try them
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def resolve_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """Execution providers for a session, CPU last as the fallback; short names (tensorrt, cuda, cpu)
    or onnxruntime's own names. Raises BackendError naming the installed providers when one is missing."""
    if not requested:
        return ["CPUExecutionProvider"]
    resolved = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
        if full not in available:
            raise BackendError(
                f"onnxruntime execution provider {name!r} is not available in this installation; available: "
                f"{', '.join(available)} (CUDA needs the onnxruntime-gpu wheel, TensorRT also TensorRT's libraries)")
        if full not in resolved:
            resolved.append(full)
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")
    return resolved


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None,
                 spin: bool = False) -> None:
        """`threads`: intra-op threads (None: onnxruntime's default, one per core). `spin`: let idle worker
        threads spin-wait for work (off: they sleep, which holds up when other threads share the cores)."""
        super().__init__(path, threads)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "onnx") from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        spinning = "1" if spin else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        self.providers = resolve_providers(providers, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise CorruptModelError(f"{path}: onnxruntime cannot load this file ({str(exc).splitlines()[0]})") from exc
        self._inputs = [self._spec(t) for t in self._session.get_inputs()]
        self._outputs = [self._spec(t) for t in self._session.get_outputs()]
        self._output_names = [t.name for t in self._outputs]

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        return TensorSpec(name=arg.name, shape=shape, dtype=_ORT_TYPES.get(arg.type, arg.type))

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._output_names, {self._inputs[0].name: batch})

    def embedded_metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)
