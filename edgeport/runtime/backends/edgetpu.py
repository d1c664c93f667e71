"""Edge TPU backend: a compiled `*_edgetpu.tflite` through LiteRT with the libedgetpu delegate."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Callable

from edgeport.errors import BackendError
from edgeport.runtime.backends.litert import LiteRTBackend, interpreter_class

LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


class EdgeTpuUnavailableError(BackendError):
    """The Edge TPU runtime library or the device itself is missing."""


def default_device() -> str | None:
    """The device from EDGEPORT_EDGETPU_DEVICE ('usb', 'usb:0', 'pci:0'); None: the first found."""
    return os.environ.get("EDGEPORT_EDGETPU_DEVICE") or None


def load_edgetpu_delegate(device: str | None = None, library: str | None = None) -> Any:
    """Load the libedgetpu delegate for `device`; raise EdgeTpuUnavailableError saying what is missing."""
    library = library or LIBRARY.get(platform.system(), "libedgetpu.so.1")
    if device is not None and not (device in ("usb", "pci") or device.split(":")[0] in ("usb", "pci")):
        raise EdgeTpuUnavailableError(f"Edge TPU device {device!r} is not one of usb, usb:N, pci, pci:N")
    _, load_delegate, _ = interpreter_class()
    try:
        return load_delegate(library, {"device": device} if device else {})
    except (ValueError, OSError, RuntimeError) as exc:
        raise EdgeTpuUnavailableError(
            f"cannot load the Edge TPU delegate {library} for device {device or 'any'} ({exc}); install the "
            "Edge TPU runtime (Debian/Ubuntu: apt install libedgetpu1-std), plug the accelerator in, check the "
            "udev rule in edgeport/devices/coral/ and run the smoke test") from exc


class EdgeTpuBackend(LiteRTBackend):
    name = "edgetpu"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None,
                 delegate_loader: Callable[[str | None], Any] | None = None) -> None:
        """`delegate_loader` replaces `load_edgetpu_delegate` (tests run the CPU int8 model through
        this same path with a loader that returns no delegate)."""
        self.device = device or default_device()
        delegate = (delegate_loader or load_edgetpu_delegate)(self.device)
        super().__init__(path, threads, delegates=[delegate] if delegate is not None else None)
