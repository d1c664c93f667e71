"""TensorRT backend: a serialized `.engine` / `.plan` (built on the device by `edgeport jetson build-engine`).

tensorrt and the CUDA memory binding (cuda-python, else pycuda) are imported when a model opens;
no torch. The metadata record is the engine's sidecar `<stem>.edgeport.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.artifact import TensorSpec
from edgeport.errors import BackendError, CorruptModelError, EdgeportError, MissingDependencyError
from edgeport.runtime.backends.base import Backend



class TensorRTMissingError(MissingDependencyError):
    """TensorRT (or trtexec) is not on this machine; it comes with JetPack, not from pip."""

    def __init__(self, what: str = "TensorRT's Python module (tensorrt) is not installed") -> None:
        EdgeportError.__init__(self, f"{what}; on a Jetson it comes with JetPack (sudo apt install "
                               "python3-libnvinfer tensorrt), see edgeport/devices/jetson/README.md")
        self.package, self.extra = "tensorrt", "jetson"


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...) tuples; raise on an error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise BackendError(f"CUDA runtime error {error}")
    return values[0] if len(values) == 1 else values


class CudaPythonMemory:
    """Device buffers and copies through cuda-python's runtime API."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self._cudart = cudart
        self.stream = _check(cudart.cudaStreamCreate())

    def malloc(self, nbytes: int) -> int:
        return int(_check(self._cudart.cudaMalloc(nbytes)))

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self._cudart.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self.stream))

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self._cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        _check(self._cudart.cudaStreamSynchronize(self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)


class PyCudaMemory:
    """The same through pycuda (older JetPack images ship it)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as driver

        self._driver = driver
        self.stream = driver.Stream()
        self._buffers: list[Any] = []

    def malloc(self, nbytes: int) -> int:
        buffer = self._driver.mem_alloc(nbytes)
        self._buffers.append(buffer)
        return int(buffer)

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self._driver.memcpy_htod_async(pointer, host, self.stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self._driver.memcpy_dtoh_async(host, pointer, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)


def cuda_memory() -> Any:
    """cuda-python, else pycuda; raises MissingDependencyError when neither is installed."""
    for memory in (CudaPythonMemory, PyCudaMemory):
        try:
            return memory()
        except ImportError:
            continue
    raise MissingDependencyError("cuda-python (or pycuda)", "jetson")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, threads: int | None = None, tensorrt_module: Any | None = None,
                 memory: Any | None = None) -> None:
        """`tensorrt_module` and `memory` replace `import tensorrt` and the CUDA binding (tests)."""
        super().__init__(path, threads)
        trt = tensorrt_module
        if trt is None:
            try:
                import tensorrt as trt
            except ImportError as exc:
                raise TensorRTMissingError() from exc
        self._memory = memory if memory is not None else cuda_memory()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self._engine is None:
            raise CorruptModelError(f"{path}: TensorRT cannot deserialize this engine (built by another TensorRT "
                                    "version or for another GPU? build it again on this device)")
        self._context = self._engine.create_execution_context()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise CorruptModelError(f"{path}: tensor {name!r} has a dynamic shape {list(shape)}; edgeport engines "
                                        "are built from static-shape ONNX")
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            spec = TensorSpec(name=name, shape=shape, dtype=dtype.name)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)
            self._host[name] = np.empty(shape, dtype)
            self._device[name] = self._memory.malloc(self._host[name].nbytes)
            self._context.set_tensor_address(name, self._device[name])

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        spec = self._inputs[0]
        if tuple(batch.shape) != spec.shape:
            raise BackendError(f"{self.path}: input shape {list(batch.shape)}, the engine takes {list(spec.shape)}")
        host = self._host[spec.name]
        np.copyto(host, batch, casting="same_kind")
        self._memory.to_device(self._device[spec.name], host)
        if not self._context.execute_async_v3(self._memory.stream_handle):
            raise BackendError(f"{self.path}: TensorRT execution failed")
        for out in self._outputs:
            self._memory.to_host(self._host[out.name], self._device[out.name])
        self._memory.synchronize()
        return [self._host[out.name].copy() for out in self._outputs]
