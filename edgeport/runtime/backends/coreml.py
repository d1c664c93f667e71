"""CoreML backend: `.mlpackage` / `.mlmodel` through coremltools, on macOS only (Core ML runs only there).

The package takes the letterboxed RGB frame as an image (the model scales it by 1/255 itself) and
returns Vision's (N, 4) / (N, nc) arrays, which this backend hands on with a batch axis.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeport.artifact import TensorSpec
from edgeport.errors import BackendError, CorruptModelError, MissingDependencyError
from edgeport.runtime.backends.base import Backend

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
_ARRAY_TYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32"}


class CoreMLUnavailableError(BackendError):
    """Core ML is not available on this host (it runs only on macOS)."""


def on_macos() -> bool:
    return platform.system() == "Darwin"


def load_mlmodel(path: Path, compute_units: str = "ALL") -> Any:
    """Open a package with coremltools on macOS; raise CoreMLUnavailableError elsewhere."""
    if not on_macos():
        raise CoreMLUnavailableError(
            f"{path}: CoreML models can only be executed on macOS; on this host ({platform.system()}) the report "
            "uses the proxy named in the model's record (provenance.proxy, an .onnx beside it)")
    try:
        import coremltools as ct
    except ImportError as exc:
        raise MissingDependencyError("coremltools", "coreml") from exc
    try:
        return ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
    except Exception as exc:  # coremltools raises plain Exception / RuntimeError for bad packages
        raise CorruptModelError(f"{path}: Core ML cannot load this package ({str(exc).splitlines()[0]})") from exc


class CoreMLBackend(Backend):
    name = "coreml"

    def __init__(self, path: Path, threads: int | None = None, compute_units: str = "ALL",
                 model_loader: Callable[[Path, str], Any] | None = None) -> None:
        """`compute_units`: ALL, CPU_ONLY, CPU_AND_GPU or CPU_AND_NE. `model_loader(path, compute_units)`
        replaces `load_mlmodel` (tests stand in for macOS with it)."""
        super().__init__(path, threads)
        if compute_units not in COMPUTE_UNITS:
            raise BackendError(f"compute units {compute_units!r} is not one of {', '.join(COMPUTE_UNITS)}")
        self._model = (model_loader or load_mlmodel)(self.path, compute_units)
        spec = self._model.get_spec()
        images = [f for f in spec.description.input if f.type.WhichOneof("Type") == "imageType"]
        if not images:
            raise BackendError(f"{path}: the model has no image input; edgeport packages take an RGB image")
        image = images[0].type.imageType
        self._image_name = images[0].name
        self._inputs = [TensorSpec(self._image_name, (1, int(image.height), int(image.width), 3), "uint8")]
        self._outputs = [self._spec(f) for f in spec.description.output]
        self._metadata = dict(spec.description.metadata.userDefined)

    @classmethod
    def available(cls) -> bool:
        return on_macos()

    @staticmethod
    def _spec(feature) -> TensorSpec:
        array = feature.type.multiArrayType
        if array.shapeRange.sizeRanges:  # flexible (the NMS pipeline): -1 where the size varies
            shape = tuple(int(r.lowerBound) if r.lowerBound == r.upperBound else -1 for r in array.shapeRange.sizeRanges)
        else:
            shape = tuple(int(d) for d in array.shape)
        dtype = _ARRAY_TYPES.get(type(array).ArrayDataType.Name(array.dataType), "float32")
        return TensorSpec(feature.name, (1, *shape), dtype)

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, H, W, 3) uint8 RGB; returns each output with its batch axis."""
        from PIL import Image

        results = [self._model.predict({self._image_name: Image.fromarray(np.ascontiguousarray(frame))})
                   for frame in batch]
        return [np.stack([np.asarray(result[spec.name], dtype=spec.dtype) for result in results])
                for spec in self._outputs]

    def embedded_metadata(self) -> dict[str, str]:
        return dict(self._metadata)
