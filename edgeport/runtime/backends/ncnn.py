"""NCNN backend: a `<stem>_ncnn_model/` folder (model.ncnn.param + model.ncnn.bin) through the `ncnn` package.

The input shape comes from the param file's Input layer (edgeport's converter writes it there), the output
shapes from one run on zeros when the model opens; fp16 storage and arithmetic follow the artifact's precision.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeport.artifact import TensorSpec, sidecar_path
from edgeport.errors import CorruptModelError, MissingDependencyError, ModelNotFoundError
from edgeport.runtime.backends.base import Backend

PARAM_NAME = "model.ncnn.param"  # the names Ultralytics' NCNN export uses too
BIN_NAME = "model.ncnn.bin"
FOLDER_SUFFIX = "_ncnn_model"
PARAM_MAGIC = "7767517"


def model_files(path: Path) -> tuple[Path, Path, Path]:
    """(folder, param, bin) of an NCNN artifact given as its folder or its .param file.

    Raises ModelNotFoundError naming the file that is missing.
    """
    path = Path(path)
    if path.is_dir():
        folder, param = path, path / PARAM_NAME
        if not param.is_file():
            params = sorted(path.glob("*.param"))
            param = params[0] if len(params) == 1 else param
    else:
        folder, param = path.parent, path
    weights = param.with_suffix(".bin")
    for needed in (param, weights):
        if not needed.is_file():
            raise ModelNotFoundError(f"{path}: NCNN model file {needed.name} not found in {folder} (an NCNN model "
                                     f"is a folder with {PARAM_NAME} and {BIN_NAME})")
    return folder, param, weights


def input_shape(param: Path) -> tuple[str, tuple[int, ...]]:
    """(input blob name, (1, c, h, w)) read from the param file's Input layer (params 0=w 1=h 2=c).

    Raises CorruptModelError for a file that is not an NCNN param or whose Input layer has no shape.
    """
    try:
        lines = param.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{param}: cannot read the NCNN param file ({exc})") from exc
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise CorruptModelError(f"{param}: not an NCNN param file (first line is not the magic {PARAM_MAGIC})")
    for line in lines[2:]:
        fields = line.split()
        if len(fields) >= 5 and fields[0] == "Input":
            outputs = int(fields[3])
            blob = fields[4 + int(fields[2])]
            params = dict(f.split("=", 1) for f in fields[4 + int(fields[2]) + outputs:] if "=" in f)
            if not {"0", "1", "2"} <= params.keys():
                raise CorruptModelError(f"{param}: its Input layer {blob!r} declares no shape (0=w 1=h 2=c); "
                                        "convert the model with `edgeport convert --target ncnn`")
            return blob, (1, int(params["2"]), int(params["1"]), int(params["0"]))
    raise CorruptModelError(f"{param}: the NCNN param file has no Input layer")


def recorded_precision(folder: Path) -> str | None:
    """The precision the artifact's sidecar record names (fp16, fp32), None without a readable record;
    the Detector checks the record fully after the backend opens."""
    try:
        return str(json.loads(sidecar_path(folder).read_text()).get("precision"))
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Collect what NCNN's C++ code prints on file descriptor 2 while loading (its reasons for a failure) into
    the yielded list, so that the error the user sees stays one line that quotes them."""
    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            said.extend(line.strip() for line in capture.read().decode(errors="replace").splitlines() if line.strip())


def import_ncnn(spin: bool = False):
    """The `ncnn` module; raises MissingDependencyError. Unless `spin`, the OpenMP runtime NCNN's wheel loads
    (libgomp) is told to let idle workers sleep (OMP_WAIT_POLICY=PASSIVE, read once when NCNN is first
    imported; a value already in the environment wins): with spinning workers and the cores shared, one
    preempted thread stalls every layer's barrier (measured here: 2 threads 0.5-1.1 s per image, 84 ms passive)."""
    if not spin and "ncnn" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import ncnn
    except ImportError as exc:
        raise MissingDependencyError("ncnn", "ncnn") from exc
    return ncnn


def default_threads() -> int:
    """Every core; one in a process where torch is loaded (the workstation side: convert's check, a report
    with a .pt baseline): its OpenMP runtime, started first, made NCNN's 2 threads take 320 ms here against
    36 ms in a process of its own."""
    return 1 if "torch" in sys.modules else os.cpu_count() or 1


class NcnnBackend(Backend):
    name = "ncnn"

    def __init__(self, path: Path, threads: int | None = None, fp16: bool | None = None, spin: bool = False) -> None:
        """`threads`: NCNN's num_threads (None: `default_threads`). `fp16`: NCNN's fp16 storage, packing and arithmetic
        (used where the CPU has them, as on ARMv8.2); None: on, except for an artifact recorded as fp32.
        `spin`: let idle OpenMP workers spin-wait; off, they sleep (see `import_ncnn`)."""
        folder, self.param_path, self.bin_path = model_files(Path(path))
        super().__init__(folder, threads)
        ncnn = import_ncnn(spin)
        self.fp16 = fp16 if fp16 is not None else recorded_precision(folder) != "fp32"
        self._input_name, shape = input_shape(self.param_path)
        self._net = ncnn.Net()
        options = self._net.opt
        options.num_threads = int(threads or default_threads())
        options.use_fp16_storage = options.use_fp16_packed = options.use_fp16_arithmetic = self.fp16
        options.use_vulkan_compute = False
        options.openmp_blocktime = 20 if spin else 0  # milliseconds of spinning (LLVM OpenMP builds)
        with native_stderr() as said:
            param_status = self._net.load_param(str(self.param_path))
            model_status = self._net.load_model(str(self.bin_path)) if param_status == 0 else 0
        why = f" (ncnn: {'; '.join(said[:2])})" if said else ""
        if param_status != 0:
            raise CorruptModelError(f"{self.param_path}: NCNN cannot parse this param file{why}")
        if model_status != 0:
            raise CorruptModelError(f"{self.bin_path}: NCNN cannot read the weights, truncated or not this "
                                    f"model's .bin{why}; convert again")
        self._output_names = list(self._net.output_names())
        self._inputs = [TensorSpec(self._input_name, shape, "float32")]
        first = self.invoke(np.zeros(shape, np.float32))  # NCNN knows output shapes only by running
        self._outputs = [TensorSpec(name, tuple(out.shape), "float32")
                         for name, out in zip(self._output_names, first)]

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, C, H, W) float32; NCNN runs one image per extractor, outputs get the batch axis back."""
        import ncnn

        per_image = []
        for image in batch:
            extractor = self._net.create_extractor()
            pixels = np.ascontiguousarray(image, dtype=np.float32)
            # a Mat owning its memory: an in-place first layer on a Mat that wraps numpy's buffer crashes NCNN
            extractor.input(self._input_name, ncnn.Mat(pixels).clone())
            outputs = []
            for name in self._output_names:
                status, mat = extractor.extract(name)
                if status != 0:
                    raise CorruptModelError(f"{self.param_path}: NCNN failed to compute output {name!r} "
                                            f"(status {status})")
                outputs.append(np.array(mat, dtype=np.float32))
            per_image.append(outputs)
        return [np.stack(group) for group in zip(*per_image)]
