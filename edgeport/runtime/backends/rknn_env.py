"""Where the isolated rknn-toolkit2 venv lives (scripts/rknn-venv.sh makes it) and the error when it is missing.

Light on purpose: both the converter and the simulator backend ask it, neither imports the toolkit.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeport.errors import MissingDependencyError

VENV_ENV = "EDGEPORT_RKNN_VENV"
WORKER = "edgeport.convert.rknn_worker"


class RknnVenvMissingError(MissingDependencyError):
    """The isolated rknn-toolkit2 venv does not exist (converter and x86 simulator need it)."""

    def __init__(self, venv: Path) -> None:
        Exception.__init__(self, f"rknn-toolkit2's isolated venv is missing ({venv}/bin/python); make it with: "
                                 f"scripts/rknn-venv.sh (or set {VENV_ENV} to one)")
        self.package, self.extra = "rknn-toolkit2", "rknn"


def venv_dir() -> Path:
    """$EDGEPORT_RKNN_VENV, else ~/.cache/edgeport/rknn-venv."""
    return Path(os.environ.get(VENV_ENV) or Path.home() / ".cache" / "edgeport" / "rknn-venv")


def venv_python() -> Path:
    """The venv's python; raises RknnVenvMissingError when there is none."""
    python = venv_dir() / "bin" / "python"
    if not python.is_file():
        raise RknnVenvMissingError(venv_dir())
    return python


def worker_env() -> dict[str, str]:
    """The environment of a worker process: this edgeport tree first on its path, quiet progress bars."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TQDM_DISABLE", "1")
    return env
