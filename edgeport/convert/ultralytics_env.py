"""Runs Ultralytics offline: no pip installs at run time, no network probes, no analytics.

`load_ultralytics()` is the only way edgeport imports ultralytics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType

OFFLINE_ENV = {
    "YOLO_OFFLINE": "true",  # must be the string "true"
    "YOLO_AUTOINSTALL": "false",
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "YOLO_VERBOSE": os.environ.get("YOLO_VERBOSE", "false"),
}


def load_ultralytics() -> ModuleType:
    """Import ultralytics with the offline environment and settings; return the module.

    Raises edgeport.errors.MissingDependencyError when the convert extra is not installed.
    """
    from edgeport.errors import MissingDependencyError

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "edgeport-ultralytics")))
    config_dir.mkdir(parents=True, exist_ok=True)
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("ultralytics", "convert") from exc
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    return ultralytics
