"""RKNN simulator backend ("simulator (x86)"): runs a `.rknnsim` bundle in rknn-toolkit2's simulator.

The toolkit cannot run a .rknn file on x86, so the bundle holds what rebuilds the same model (graph and int8
ranges); a process in the isolated venv (scripts/rknn-venv.sh) rebuilds it once and serves batches over a pipe.
"""

from __future__ import annotations

import atexit
import io
import json
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from edgeport.artifact import METADATA_KEY, ArtifactRecord, TensorSpec
from edgeport.errors import BackendError, CorruptModelError
from edgeport.runtime.backends.base import Backend
from edgeport.runtime.backends.rknn_env import WORKER, venv_dir, venv_python, worker_env

RECORD_ENTRY = "edgeport.json"  # the bundle's record (edgeport.convert.rknn_worker writes the rest)


def _read_exact(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise BackendError("rknn simulator: its process ended mid-answer")
    return data


class RknnSimulatorBackend(Backend):
    """A `.rknnsim` bundle in rknn-toolkit2's simulator, in the isolated venv, over a pipe."""

    name = "rknn-sim"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__(path, threads)
        try:
            with zipfile.ZipFile(self.path) as bundle:
                self._record_json = bundle.read(RECORD_ENTRY).decode()
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise CorruptModelError(f"{path}: not an edgeport .rknnsim bundle ({exc})") from exc
        record = ArtifactRecord.from_dict(json.loads(self._record_json), where=str(path))
        self._inputs, self._outputs = list(record.inputs), list(record.outputs)
        self._python = venv_python()
        self._process: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()

    def _start(self) -> subprocess.Popen:
        """The simulator process, started on first use (it rebuilds the model: a few seconds)."""
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen([str(self._python), "-m", WORKER, "simulate", str(self.path.resolve())],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                             env=worker_env())
            atexit.register(self.close)
        return self._process

    def _failure(self, what: str) -> BackendError:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return BackendError(f"rknn simulator ({venv_dir()}): {what}: {' | '.join(lines[-2:]) or 'no output'}")

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, H, W, 3) uint8 RGB; returns the per-level float32 outputs of each image, batched."""
        process = self._start()
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(batch, dtype=np.uint8), allow_pickle=False)
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(struct.pack("<Q", buffer.tell()) + buffer.getvalue())
            process.stdin.flush()
            (count,) = struct.unpack("<Q", _read_exact(process.stdout, 8))
            outputs = []
            for _ in range(count):
                (size,) = struct.unpack("<Q", _read_exact(process.stdout, 8))
                outputs.append(np.load(io.BytesIO(_read_exact(process.stdout, size)), allow_pickle=False))
        except (BrokenPipeError, BackendError, struct.error) as exc:
            process.kill()
            raise self._failure("the simulator process failed") from exc
        return outputs

    @classmethod
    def available(cls) -> bool:
        return (venv_dir() / "bin" / "python").is_file()

    def embedded_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: self._record_json}

    def close(self) -> None:
        """End the simulator process (also at exit)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
