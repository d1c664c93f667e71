"""Provenance of an artifact: source hash, tool versions, the command that made it."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeport.artifact import sha256_file

TOOLS = ("edgeport", "ultralytics", "torch", "onnx", "onnxslim", "onnxruntime", "ai-edge-litert", "litert-torch")


def tool_versions(names: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """Return the installed version of each named distribution that is installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(source: Path, command: str, calibration_sha256: str | None = None) -> dict[str, Any]:
    """Return the provenance block of a metadata record."""
    return {
        "source": source.name,
        "source_sha256": sha256_file(source),
        "calibration_sha256": calibration_sha256,
        "tools": tool_versions(),
        "python": platform.python_version(),
        "command": command or " ".join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
