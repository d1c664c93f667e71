"""Backend registry: one module per engine, chosen from the artifact's file type or by name."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgeport.errors import BackendError
from edgeport.runtime.backends.base import Backend

# name -> "module:Class"; modules are imported only when chosen, so one interpreter suffices.
REGISTRY: dict[str, str] = {
    "onnxruntime": "edgeport.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "litert": "edgeport.runtime.backends.litert:LiteRTBackend",
    "edgetpu": "edgeport.runtime.backends.edgetpu:EdgeTpuBackend",
    "tensorrt": "edgeport.runtime.backends.tensorrt:TensorRTBackend",
    "coreml": "edgeport.runtime.backends.coreml:CoreMLBackend",
    "rknn": "edgeport.runtime.backends.rknn:RknnBackend",  # on the Rockchip board (rknn-toolkit-lite2)
    "rknn-sim": "edgeport.runtime.backends.rknn_sim:RknnSimulatorBackend",  # rknn-toolkit2's x86 simulator
    "ncnn": "edgeport.runtime.backends.ncnn:NcnnBackend",
    "openvino": "edgeport.runtime.backends.openvino:OpenVinoBackend",
}
# file-name ending -> backend names in order of preference; the longest matching ending wins
BY_SUFFIX: dict[str, tuple[str, ...]] = {
    ".onnx": ("onnxruntime",),
    ".tflite": ("litert",),
    "_edgetpu.tflite": ("edgetpu",),  # what edgetpu_compiler writes
    ".engine": ("tensorrt",),  # serialized TensorRT engines (edgeport jetson build-engine)
    ".plan": ("tensorrt",),
    ".mlpackage": ("coreml",),  # a directory
    ".mlmodel": ("coreml",),
    ".rknn": ("rknn",),
    ".rknnsim": ("rknn-sim",),  # the simulator bundle written beside each .rknn
    "_ncnn_model": ("ncnn",),  # a directory: model.ncnn.param + model.ncnn.bin
    ".param": ("ncnn",),  # the param file inside that directory
    ".xml": ("openvino",),  # OpenVINO IR (weights in the .bin beside it)
}


def backend_class(name: str) -> type[Backend]:
    """Return the backend class registered under `name`; raise BackendError for an unknown name."""
    if name not in REGISTRY:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_for(path: Path, name: str | None = None) -> type[Backend]:
    """Return the backend class for an artifact: `name` if given, else the first for its file type."""
    if name:
        return backend_class(name)
    file_name = Path(path).name.lower()
    endings = [ending for ending in BY_SUFFIX if file_name.endswith(ending)]
    names = BY_SUFFIX[max(endings, key=len)] if endings else None
    if not names:
        raise BackendError(
            f"{path}: no backend runs '{Path(path).suffix}' files; supported: {', '.join(sorted(BY_SUFFIX))}")
    return backend_class(names[0])


def runnable_here(path: Path, name: str | None = None) -> bool:
    """Whether this host can run the artifact at all (False: CoreML off macOS); the file is not opened."""
    return backend_for(path, name).available()
