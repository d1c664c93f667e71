"""LiteRT backend: `.tflite` artifacts through ai-edge-litert, tflite-runtime or tf.lite, in that order."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.artifact import TensorSpec
from edgeport.errors import CorruptModelError, MissingDependencyError
from edgeport.runtime.backends.base import Backend


def interpreter_class() -> tuple[Any, Any, str]:
    """Return (Interpreter, load_delegate, provider name) from the first TFLite interpreter installed.

    Raises MissingDependencyError when none is.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # the heaviest choice, used only when it is what is installed
        return tf.lite.Interpreter, tf.lite.experimental.load_delegate, "tensorflow"
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert (or tflite-runtime)", "tflite") from exc


def tensor_spec(detail: dict[str, Any]) -> TensorSpec:
    """Turn one TFLite tensor detail into a TensorSpec (per-tensor quantization only)."""
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantized = dtype in ("uint8", "int8", "int16") and scale
    return TensorSpec(name=detail["name"], shape=tuple(int(d) for d in detail["shape"]), dtype=dtype,
                      scale=float(scale) if quantized else None, zero_point=int(zero_point) if quantized else None)


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, path: Path, threads: int | None = None, delegates: list[Any] | None = None) -> None:
        super().__init__(path, threads)
        interpreter, _, self.provider = interpreter_class()
        try:
            # like onnxruntime, use every core unless told otherwise (LiteRT's own default is one thread)
            self._interpreter = interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1,
                                            experimental_delegates=delegates or None)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise CorruptModelError(f"{path}: the TFLite interpreter cannot load this file ({exc})") from exc
        self._input_details = self._interpreter.get_input_details()
        self._output_details = self._interpreter.get_output_details()
        self._inputs = [tensor_spec(d) for d in self._input_details]
        self._outputs = [tensor_spec(d) for d in self._output_details]

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        self._interpreter.set_tensor(self._input_details[0]["index"], batch)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(d["index"]) for d in self._output_details]

    def embedded_metadata(self) -> dict[str, str]:
        """Ultralytics appends its metadata as a zip entry `metadata.json` to the flatbuffer."""
        try:
            with zipfile.ZipFile(self.path) as archive:
                data = json.loads(archive.read("metadata.json"))
        except (zipfile.BadZipFile, KeyError, OSError, ValueError):
            return {}
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
