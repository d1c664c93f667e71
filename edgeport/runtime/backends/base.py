"""The one small interface every inference engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeport.artifact import TensorSpec


class Backend(ABC):
    """An opened model: its tensor specs and one `invoke`.

    Subclasses set `name` (the registry key; the file types each opens by default are in
    edgeport.runtime.backends.BY_SUFFIX)
    and raise edgeport.errors.CorruptModelError when the engine cannot load the file.
    """

    name: ClassVar[str]

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self._inputs: list[TensorSpec] = []  # subclasses fill both when they open the model
        self._outputs: list[TensorSpec] = []

    @property
    def inputs(self) -> list[TensorSpec]:
        """Input tensors, in the order `invoke` takes them."""
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output tensors, in the order `invoke` returns them."""
        return self._outputs

    @abstractmethod
    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on one input batch (the input's own dtype and layout); return raw outputs."""

    @classmethod
    def available(cls) -> bool:
        """Whether this host can run the engine at all (CoreML: only macOS); True unless overridden."""
        return True

    def embedded_metadata(self) -> dict[str, str]:
        """Key/value metadata stored inside the model file, empty when the format has none."""
        return {}
