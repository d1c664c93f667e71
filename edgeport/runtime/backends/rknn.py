"""RKNN board backend: a `.rknn` on a Rockchip NPU through rknn-toolkit-lite2 (`rknnlite.api.RKNNLite`).

Rockchip ships rknn-toolkit-lite2 as aarch64 wheels for the board (not on PyPI). The model takes the letterboxed
uint8 RGB frame (NHWC); the NPU's outputs come back as float32, one array per output, in the record's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeport.artifact import read_sidecar
from edgeport.errors import BackendError, CorruptModelError, MetadataMissingError
from edgeport.runtime.backends.base import Backend

# --device for this backend: which NPU cores run the model (RKNNLite.NPU_CORE_*; RK3588 has three)
CORE_MASKS = {"auto": "NPU_CORE_AUTO", "0": "NPU_CORE_0", "1": "NPU_CORE_1", "2": "NPU_CORE_2",
              "0_1": "NPU_CORE_0_1", "0_1_2": "NPU_CORE_0_1_2", "all": "NPU_CORE_ALL"}


class RknnLiteMissingError(BackendError):
    """rknn-toolkit-lite2 is not installed (it exists for the Rockchip board only)."""


def rknnlite_class(path: Path) -> type:
    """rknnlite.api.RKNNLite; raises RknnLiteMissingError off the board, naming the simulator bundle of `path`."""
    try:
        from rknnlite.api import RKNNLite
    except ImportError as exc:
        raise RknnLiteMissingError(
            f"{path.name}: rknn-toolkit-lite2 (rknnlite) is not installed: a .rknn runs on the Rockchip board with "
            f"Rockchip's aarch64 wheel of it; on x86 run the simulator instead: edgeport evaluate "
            f"{path.with_suffix('.rknnsim').name} (edgeport report does it for you)") from exc
    return RKNNLite


class RknnBackend(Backend):
    """A .rknn on the NPU. `core_mask`: auto, 0, 1, 2, 0_1, 0_1_2 or all; `runtime_class` stands in for
    RKNNLite (tests)."""

    name = "rknn"

    def __init__(self, path: Path, threads: int | None = None, core_mask: str = "auto",
                 runtime_class: Callable[[], Any] | None = None) -> None:
        super().__init__(path, threads)
        if str(core_mask).lower() not in CORE_MASKS:
            raise BackendError(f"rknn: core mask {core_mask!r} is not one of {', '.join(CORE_MASKS)}")
        record = read_sidecar(self.path)
        if record is None:
            raise MetadataMissingError(f"{path}: no edgeport record beside it ({self.path.stem}.edgeport.json); "
                                       "convert with `edgeport convert MODEL --target rknn`")
        self._inputs, self._outputs = list(record.inputs), list(record.outputs)
        runtime_class = runtime_class or rknnlite_class(self.path)
        self._runtime = runtime_class()
        if self._runtime.load_rknn(str(self.path)) != 0:
            raise CorruptModelError(f"{path}: RKNNLite cannot load this model")
        mask = getattr(runtime_class, CORE_MASKS[str(core_mask).lower()])
        if self._runtime.init_runtime(core_mask=mask) != 0:
            raise BackendError(f"{path}: RKNNLite init_runtime(core_mask={core_mask}) failed (is the NPU driver "
                               "loaded, and does the model's platform match this board?)")

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("rknnlite") is not None

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, H, W, 3) uint8 RGB; the model is batch 1, so images run one at a time."""
        per_image = []
        for frame in batch:
            outputs = self._runtime.inference(inputs=[np.ascontiguousarray(frame[None], dtype=np.uint8)],
                                              data_format="nhwc")
            if outputs is None or len(outputs) != len(self._outputs):
                raise BackendError(f"{self.path}: RKNNLite returned {0 if outputs is None else len(outputs)} "
                                   f"outputs, the record names {len(self._outputs)}")
            per_image.append(outputs)
        results = []
        for index, spec in enumerate(self._outputs):
            arrays = [np.asarray(image[index], dtype=np.float32).reshape(spec.shape) for image in per_image]
            results.append(np.concatenate(arrays))
        return results

    def close(self) -> None:
        self._runtime.release()
