"""The RKNN tests' shared parts: the isolated rknn-toolkit2 venv (skip, or fail under CI, when missing) and one
int8 rk3588 conversion of the bundled YOLOv8n per test session, cached here for tests/convert and tests/runtime."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest


def require_rknn_venv() -> Path:
    """The venv's python; skips when scripts/rknn-venv.sh has not made it, except under CI (fails there)."""
    from edgeport.runtime.backends.rknn_env import venv_dir

    python = venv_dir() / "bin" / "python"
    if python.is_file():
        return python
    message = f"rknn-toolkit2's venv missing ({venv_dir()}): run scripts/rknn-venv.sh (scripts/setup.sh does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@lru_cache(maxsize=1)
def _convert(out_dir: str):
    from edgeport import sample
    from edgeport.convert import ConvertOptions, convert

    options = ConvertOptions(out_dir=Path(out_dir), precision="int8", data=sample.data_yaml(), calibration_images=24,
                             platform="rk3588")
    return convert(sample.model_path(), "rknn", options)


def rknn_int8(tmp_path_factory) -> "object":
    """The Artifact of the session's int8 rk3588 conversion of the bundled YOLOv8n (made on first use), with its
    agreement check against the float model already run in the simulator."""
    require_rknn_venv()
    root = tmp_path_factory.getbasetemp() / "rknn-int8"
    root.mkdir(exist_ok=True)
    return _convert(str(root))
